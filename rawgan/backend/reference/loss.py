"""Sigmoid cross-entropy with logits, mean-reduced (NumPy reference).

For logits x and targets t ∈ [0, 1] (soft targets allowed, e.g. 0.9 for label smoothing):

    ℓ(x, t) = −t·log σ(x) − (1 − t)·log(1 − σ(x)) = max(x, 0) − x·t + log(1 + e^{−|x|})

The right-hand form (TensorFlow's ``sigmoid_cross_entropy_with_logits``) is finite for every finite
x: no exp overflows and log1p's argument is in (0, 1]. The loss is the mean over all elements;
∂loss/∂x = (σ(x) − t) / numel.
"""
import numpy as np

from .activations import sigmoid_forward
from .tensor import scalar_add, sigmoid_mean


def sigmoid_bce_with_logits_forward(logits, targets):
    """Mean loss as a 0-d array (stays on the device for the CUDA backend)."""
    x = logits
    l = np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x)))
    return np.asarray(l.mean(dtype=x.dtype), dtype=x.dtype)


def sigmoid_bce_with_logits_backward(logits, targets, dloss=1.0):
    """d(mean loss)/d logits = dloss · (σ(x) − t) / numel; same shape and dtype as ``logits``."""
    scale = logits.dtype.type(dloss / logits.size)
    return (sigmoid_forward(logits) - targets) * scale


def sigmoid_bce_with_logits_forward_backward(logits, targets, dloss=1.0):
    """``(loss, dlogits, mean σ(logits))``: the forward, the backward (with the float ``dloss``)
    and the D(x) metric of one loss, as the GAN step uses them together (one kernel on CUDA)."""
    return (sigmoid_bce_with_logits_forward(logits, targets),
            sigmoid_bce_with_logits_backward(logits, targets, dloss), sigmoid_mean(logits))


def halves_targets(logits, targets):
    """The two scalar targets of :func:`sigmoid_bce_with_logits_forward_backward_halves`,
    checked: a pair of numbers, and an even, non-empty batch (first axis). Raises
    ValueError/TypeError."""
    if not isinstance(targets, (tuple, list)) or len(targets) != 2:
        raise ValueError(f"sigmoid_bce_with_logits_forward_backward_halves: targets must be a pair "
                         f"(first half, second half), got {targets!r}")
    if not all(isinstance(t, (int, float, np.generic)) for t in targets):
        raise TypeError("sigmoid_bce_with_logits_forward_backward_halves: the targets must be "
                        "numbers")
    if logits.ndim < 1 or logits.shape[0] % 2 or logits.size == 0:
        raise ValueError(f"sigmoid_bce_with_logits_forward_backward_halves: the batch of logits of "
                         f"shape {tuple(logits.shape)} does not split into two halves "
                         f"(even, non-empty)")
    return float(targets[0]), float(targets[1])


def sigmoid_bce_with_logits_forward_backward_halves(logits, targets, dloss=1.0):
    """The loss of a batch of two halves with one scalar target each (the DCGAN's D step in one
    pass: real then fake logits, ``targets`` = (1.0, 0.0)): each half is its own mean loss.

    ``logits`` (2N, ...) and ``targets`` a pair of numbers (first half, second half); ``dloss`` a
    number. Returns ``((loss_0, loss_1), dlogits, (mean σ half 0, mean σ half 1), loss_0 +
    loss_1)`` — exactly :func:`sigmoid_bce_with_logits_forward_backward` on each half (dlogits of
    half h = dloss·(σ(x) − t_h)/numel(half)) and ``scalar_add`` of the two losses. Raises
    ValueError for an odd or empty batch or targets that are not a pair, TypeError for
    non-number targets or dloss."""
    t0, t1 = halves_targets(logits, targets)
    if not isinstance(dloss, (int, float, np.generic)):
        raise TypeError("sigmoid_bce_with_logits_forward_backward_halves: dloss must be a number")
    a, b = np.split(logits, 2)
    la, da, sa = sigmoid_bce_with_logits_forward_backward(a, t0, dloss)
    lb, db, sb = sigmoid_bce_with_logits_forward_backward(b, t1, dloss)
    return (la, lb), np.concatenate([da, db]), (sa, sb), scalar_add(la, lb)
