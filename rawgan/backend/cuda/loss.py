"""Sigmoid cross-entropy with logits on the CUDA backend: launchers of kernels/loss.cu.

Signatures and semantics: rawgan.backend.reference.loss (after ``rt`` is bound). ``targets`` is
a float (the same target for every element, e.g. 1.0 / 0.0 / 0.9) or an array of the logits'
shape; ``dloss`` is a float or a 0-d device array (read on the device, no host sync).

Launch shapes: forward — grid = 1, block = 256 (one block reduces the (N, 1) logits into a 0-d
array); backward — grid-stride, grid = min(ceil(n / 256), block cap), block = 256.
"""
import numpy as np

from ..reference.loss import halves_targets
from .common import contiguous, f32, i64, kernel, launch_1d

MODULE = "loss"
OPS = ("sigmoid_bce_with_logits_forward", "sigmoid_bce_with_logits_backward",
       "sigmoid_bce_with_logits_forward_backward",
       "sigmoid_bce_with_logits_forward_backward_halves")


def _targets(rt, targets, x):
    """(pointer-or-None, scalar) kernel arguments for targets given as a number or an array."""
    if isinstance(targets, (int, float, np.generic)):
        return None, f32(targets)
    t = targets.astype(f32, copy=False)
    if t.shape != x.shape:                      # e.g. a 0-d device array: broadcast on the device
        t = rt.xp.broadcast_to(t, x.shape)
    return contiguous(rt, t), f32(0)


def sigmoid_bce_with_logits_forward(rt, logits, targets):
    """Mean loss as a 0-d float32 device array."""
    x = contiguous(rt, logits)
    t, t_scalar = _targets(rt, targets, x)
    out = rt.empty((), x.dtype)
    kernel(rt, MODULE, "sigmoid_bce_with_logits_forward")((1,), (256,), (x, t, t_scalar, out, i64(x.size)))
    return out


def sigmoid_bce_with_logits_backward(rt, logits, targets, dloss=1.0):
    """d(mean loss)/d logits = dloss · (σ(x) − t) / numel; like ``logits``."""
    x = contiguous(rt, logits)
    t, t_scalar = _targets(rt, targets, x)
    if isinstance(dloss, (int, float, np.generic)):
        dloss_dev, scale = None, f32(float(dloss) / x.size)
    else:                                       # device scalar: multiplied in on the device
        dloss_dev, scale = contiguous(rt, dloss.astype(f32).reshape(1)), f32(1.0 / x.size)
    dx = rt.empty(x.shape, x.dtype)
    launch_1d(rt, MODULE, "sigmoid_bce_with_logits_backward", x.size,
              (x, t, t_scalar, dloss_dev, scale, dx, i64(x.size)))
    return dx


def sigmoid_bce_with_logits_forward_backward(rt, logits, targets, dloss=1.0):
    """``(loss, dlogits, mean σ(logits))`` in ONE launch (``sigmoid_bce_with_logits_fused``:
    grid = 1, block = 256), bit-identical to the forward, backward and tensor.sigmoid_mean
    kernels. ``dloss`` must be a number here (the GAN step's 1.0)."""
    if not isinstance(dloss, (int, float, np.generic)):
        raise TypeError("sigmoid_bce_with_logits_forward_backward: dloss must be a number")
    x = contiguous(rt, logits)
    t, t_scalar = _targets(rt, targets, x)
    loss = rt.empty((), x.dtype)
    dx = rt.empty(x.shape, x.dtype)
    sig_mean = rt.empty((), x.dtype)
    kernel(rt, MODULE, "sigmoid_bce_with_logits_fused")(
        (1,), (256,), (x, t, t_scalar, f32(float(dloss) / x.size), loss, dx, sig_mean, i64(x.size)))
    return loss, dx, sig_mean


def sigmoid_bce_with_logits_forward_backward_halves(rt, logits, targets, dloss=1.0):
    """``((loss_0, loss_1), dlogits, (mean σ half 0, mean σ half 1), loss_0 + loss_1)`` of a
    batch of two halves with one scalar target each (semantics: the reference) in ONE launch
    (``sigmoid_bce_with_logits_halves``: grid = 1, block = 256), bit-identical to the fused
    kernel on each half and an add_scalars. Outputs are 0-d device arrays and dlogits (like
    logits)."""
    t0, t1 = halves_targets(logits, targets)
    if not isinstance(dloss, (int, float, np.generic)):
        raise TypeError("sigmoid_bce_with_logits_forward_backward_halves: dloss must be a number")
    x = contiguous(rt, logits)
    n_half = x.size // 2
    loss0, loss1, loss_sum = (rt.empty((), x.dtype) for _ in range(3))
    dx = rt.empty(x.shape, x.dtype)
    sig0, sig1 = rt.empty((), x.dtype), rt.empty((), x.dtype)
    kernel(rt, MODULE, "sigmoid_bce_with_logits_halves")(
        (1,), (256,), (x, f32(t0), f32(t1), f32(float(dloss) / n_half), loss0, loss1, loss_sum,
                       dx, sig0, sig1, i64(n_half)))
    return (loss0, loss1), dx, (sig0, sig1), loss_sum
