"""Batch normalization, training and eval modes, forward and backward (NumPy reference).

Statistics are per channel over (N, H, W) for 4-D input (N, C, H, W) and per feature over N for
2-D input (N, F); M is the number of elements per channel. Dtype float32/float64; every output
has the dtype of ``x``. Source: Ioffe & Szegedy, "Batch Normalization" (2015), Algorithm 1
(forward) and §3 (backward).

Training mode normalizes with the batch mean μ and the *biased* batch variance σ² = mean((x−μ)²):

    x̂ = (x − μ) · invstd,  invstd = 1/√(σ² + eps),  y = γ·x̂ + β

and updates the running statistics with a momentum m (PyTorch's convention, ``running ←
(1−m)·running + m·batch``; m = 0.1 equals TensorFlow's ``decay=0.9`` used by DCGAN-tensorflow).
Variance convention of the running variance: by default the *biased* σ² as in TensorFlow's
``tf.nn.moments``/``batch_norm`` (the DCGAN reference); ``unbiased=True`` stores σ²·M/(M−1) as
PyTorch does.

Backward, training mode (the full batch-coupled gradient; Ioffe & Szegedy's chain rule through
μ and σ², collected):

    dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ·invstd/M · (M·dy − dβ − x̂·dγ)

Eval mode uses the running statistics as constants: dx = dy·γ/√(running_var + eps).

Ghost batches (``ghost_batches`` = G >= 1, training mode only; Hoffer, Hubara & Soudry, "Train
longer, generalize better", 2017): the batch axis is split into G equal consecutive sub-batches
of N/G samples and each is normalised with its own statistics — exactly G separate calls, one per
sub-batch, in order. The saved statistics are then (G, C) (row g = sub-batch g; (C,) when G = 1),
the running statistics are updated once per sub-batch, g = 0 first, dγ/dβ are the sums over the
sub-batches (sub-batch 0's written or added as ``accumulate`` says, the others added), and dx is
each sub-batch's own batch-coupled gradient. The DCGAN's D uses G = 2 to see its real and fake
halves in one pass with the statistics of two separate passes (rawgan.models.dcgan).
"""
import numpy as np

from .activations import leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward
from .tensor import write_grad


def _axes_and_shape(x):
    """The reduction axes of ``x`` and the shape that broadcasts a (C,) vector against it."""
    if x.ndim == 4:
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:
        return (0,), (1, -1)
    raise ValueError(f"batchnorm: expected 2-D (N, F) or 4-D (N, C, H, W) input, got {x.ndim}-D")


def ghost_split(x, ghost_batches):
    """The number of ghost batches G, checked: an int >= 1 dividing the batch size N = x.shape[0]
    with more than one value per channel in each sub-batch. Raises ValueError otherwise."""
    G = ghost_batches
    if isinstance(G, bool) or not isinstance(G, (int, np.integer)) or G < 1:
        raise ValueError(f"batchnorm: ghost_batches must be an int >= 1, got {G!r}")
    G = int(G)
    N = x.shape[0]
    if N % G:
        raise ValueError(f"batchnorm: ghost_batches={G} does not divide the batch size N={N}")
    if G > 1 and (x.size // x.shape[1]) // G < 2:
        raise ValueError(f"batchnorm: ghost_batches={G} leaves a single value per channel in each "
                         f"sub-batch of an input of shape {tuple(x.shape)}")
    return G


def check_saved_stats(x, save_mean, save_invstd, G):
    """Raise ValueError unless the saved statistics fit ``G`` ghost batches of ``x``'s C
    channels: (C,) for G = 1, (G, C) for G > 1 — what a training forward with that G returns
    (a backward with another G would mix sub-batches' statistics, or read past them)."""
    want = (x.shape[1],) if G == 1 else (G, x.shape[1])
    for name, s in (("save_mean", save_mean), ("save_invstd", save_invstd)):
        if tuple(s.shape) != want:
            raise ValueError(f"batchnorm backward: {name} of shape {tuple(s.shape)} does not fit "
                             f"ghost_batches={G} of an input of shape {tuple(x.shape)} (expected "
                             f"{want}: the forward's statistics for the same ghost_batches)")


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps,
                            unbiased=False, ghost_batches=1):
    """Training-mode forward; updates ``running_mean``/``running_var`` (C,) in place.

    Returns ``(y, save_mean, save_invstd)``; the two saved arrays, (C,) — or (G, C) with
    ``ghost_batches`` G > 1: one separate call per sub-batch, in order (module docstring) —
    feed the backward. Raises ValueError for a G that does not divide N.
    """
    G = ghost_split(x, ghost_batches)
    if G > 1:
        parts = [batchnorm_forward_train(xg, gamma, beta, running_mean, running_var, momentum,
                                         eps, unbiased) for xg in np.split(x, G)]
        return (np.concatenate([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                np.stack([p[2] for p in parts]))
    axes, bshape = _axes_and_shape(x)
    M = x.size // x.shape[1]
    dt = x.dtype.type
    mean = x.mean(axis=axes)
    xc = x - mean.reshape(bshape)
    var = (xc * xc).mean(axis=axes)
    invstd = 1 / np.sqrt(var + dt(eps))
    y = xc * invstd.reshape(bshape) * gamma.reshape(bshape) + beta.reshape(bshape)
    update_running_stats(running_mean, running_var, mean, var, M, momentum, unbiased)
    return y, mean, invstd


def update_running_stats(running_mean, running_var, mean, var, M, momentum, unbiased=False):
    """running ← (1−m)·running + m·batch, in place, for the batch ``mean``/biased ``var`` (C,)
    of M elements per channel; ``unbiased=True`` stores var·M/(M−1) (PyTorch)."""
    dt = running_mean.dtype.type
    m = dt(momentum)
    var_run = var * dt(M / (M - 1)) if (unbiased and M > 1) else var
    running_mean *= 1 - m
    running_mean += m * mean
    running_var *= 1 - m
    running_var += m * var_run


def batchnorm_backward_train(dy, x, gamma, save_mean, save_invstd, dgamma_out=None,
                             dbeta_out=None, accumulate=False, ghost_batches=1, dbias_out=None):
    """Training-mode backward. Returns ``(dx, dgamma, dbeta)``.

    ``dgamma_out``/``dbeta_out``: gradient buffers written (``accumulate``: added to) and
    returned in place of new arrays, as :func:`~.tensor.write_grad`. ``ghost_batches`` G: as the
    forward's, with its (G, C) saved statistics; one call per sub-batch in order, the first
    writing (or adding, per ``accumulate``) dγ/dβ, the others adding. ``dbias_out`` (C,): also
    the gradient of a bias b added to x before BN (a convolution's bias folded into BN,
    rawgan.layers.fold_bias_into_bn), db = Σ dx over N, H, W, written (``accumulate``: added
    to) into it — 0 up to rounding, since train-mode BN subtracts the batch mean."""
    if dbias_out is not None:
        dx, dg, db = batchnorm_backward_train(dy, x, gamma, save_mean, save_invstd, dgamma_out,
                                              dbeta_out, accumulate, ghost_batches)
        write_grad(dbias_out, dx.sum(axis=_axes_and_shape(x)[0]), accumulate)
        return dx, dg, db
    G = ghost_split(x, ghost_batches)
    check_saved_stats(x, save_mean, save_invstd, G)
    if G > 1:
        C = x.shape[1]
        mean, invstd = save_mean.reshape(G, C), save_invstd.reshape(G, C)
        dxs, dg, db = [], dgamma_out, dbeta_out
        for g, (dyg, xg) in enumerate(zip(np.split(dy, G), np.split(x, G))):
            dxg, dg, db = batchnorm_backward_train(dyg, xg, gamma, mean[g], invstd[g], dg, db,
                                                   accumulate or g > 0)
            dxs.append(dxg)
        return np.concatenate(dxs), dg, db
    axes, bshape = _axes_and_shape(x)
    M = x.size // x.shape[1]
    xhat = (x - save_mean.reshape(bshape)) * save_invstd.reshape(bshape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    k = (gamma * save_invstd / M).reshape(bshape)
    dx = k * (M * dy - dbeta.reshape(bshape) - xhat * dgamma.reshape(bshape))
    return (dx.astype(x.dtype, copy=False), write_grad(dgamma_out, dgamma, accumulate),
            write_grad(dbeta_out, dbeta, accumulate))


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode forward with the running statistics. Returns y."""
    _, bshape = _axes_and_shape(x)
    invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
    scale = (gamma * invstd).reshape(bshape)
    return (x - running_mean.reshape(bshape)) * scale + beta.reshape(bshape)


def batchnorm_backward_eval(dy, x, gamma, running_mean, running_var, eps, dgamma_out=None,
                            dbeta_out=None, accumulate=False):
    """Eval-mode backward (statistics are constants). Returns ``(dx, dgamma, dbeta)``;
    ``dgamma_out``/``dbeta_out``/``accumulate`` as in :func:`batchnorm_backward_train`."""
    axes, bshape = _axes_and_shape(x)
    invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
    xhat = (x - running_mean.reshape(bshape)) * invstd.reshape(bshape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = dy * (gamma * invstd).reshape(bshape)
    return dx, write_grad(dgamma_out, dgamma, accumulate), write_grad(dbeta_out, dbeta, accumulate)


# -- BatchNorm + activation (rawgan.layers.BatchNormAct) -------------------------------------------
# The plain composition, the truth for the CUDA backend's fused kernels (kernels/batchnorm.cu,
# act = 1/2). ``act`` is "relu" or "leaky_relu" (slope > 0). The backward takes the op's output y
# instead of the BN output z: relu_backward reads y > 0 itself, and for a LeakyReLU with slope > 0
# y > 0 exactly when z > 0, so leaky_relu_backward(dy, y, slope) = leaky_relu_backward(dy, z, slope).

def _act_forward(z, act, slope):
    if act == "relu":
        return relu_forward(z)
    if act == "leaky_relu":
        return leaky_relu_forward(z, slope)
    raise ValueError(f"batchnorm_act: act must be 'relu' or 'leaky_relu', got {act!r}")


def _act_backward(dy, y, act, slope):
    if act == "relu":
        return relu_backward(dy, y)
    if act == "leaky_relu":
        return leaky_relu_backward(dy, y, slope)
    raise ValueError(f"batchnorm_act: act must be 'relu' or 'leaky_relu', got {act!r}")


def batchnorm_act_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps,
                                unbiased, act, slope=0.0, in_bias=None, ghost_batches=1):
    """y = act(BN(x)) in training mode. Returns ``(y, save_mean, save_invstd)``; updates the
    running statistics like :func:`batchnorm_forward_train`.

    ``in_bias`` (C,): the previous layer's bias, not yet added: y = act(BN(x + in_bias)), and
    save_mean is returned for x itself (the batch mean minus in_bias), so the backward runs on x
    unchanged. (The CUDA kernels never add it: BN is shift-invariant, only the running mean
    needs + in_bias.) ``ghost_batches``: as :func:`batchnorm_forward_train`."""
    if in_bias is None:
        z, mean, invstd = batchnorm_forward_train(x, gamma, beta, running_mean, running_var,
                                                  momentum, eps, unbiased, ghost_batches)
        return _act_forward(z, act, slope), mean, invstd
    _, bshape = _axes_and_shape(x)
    z, mean, invstd = batchnorm_forward_train(x + in_bias.reshape(bshape), gamma, beta,
                                              running_mean, running_var, momentum, eps, unbiased,
                                              ghost_batches)
    return _act_forward(z, act, slope), mean - in_bias, invstd


def batchnorm_act_forward_eval(x, gamma, beta, running_mean, running_var, eps, act, slope=0.0):
    """y = act(BN_eval(x)) with the running statistics."""
    return _act_forward(batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps),
                        act, slope)


def batchnorm_act_backward_train(dy, y, x, gamma, save_mean, save_invstd, act, slope=0.0,
                                 dgamma_out=None, dbeta_out=None, accumulate=False,
                                 ghost_batches=1, dbias_out=None):
    """Backward of y = act(BN(x)) (training mode) given dy (like y), the output y and the input x.
    Returns ``(dx, dgamma, dbeta)``; gradient buffers, ``ghost_batches`` and ``dbias_out`` as
    :func:`batchnorm_backward_train`."""
    return batchnorm_backward_train(_act_backward(dy, y, act, slope), x, gamma, save_mean,
                                    save_invstd, dgamma_out, dbeta_out, accumulate, ghost_batches,
                                    dbias_out)


def batchnorm_act_backward_eval(dy, y, x, gamma, running_mean, running_var, eps, act, slope=0.0,
                                dgamma_out=None, dbeta_out=None, accumulate=False):
    """Backward of y = act(BN_eval(x)). Returns ``(dx, dgamma, dbeta)``."""
    return batchnorm_backward_eval(_act_backward(dy, y, act, slope), x, gamma, running_mean,
                                   running_var, eps, dgamma_out, dbeta_out, accumulate)
