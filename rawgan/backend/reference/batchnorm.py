"""Batch normalization, training and eval modes, forward and backward (NumPy reference).

Statistics are per channel over (N, H, W) for 4-D input (N, C, H, W) and per feature over N for
2-D input (N, F). Source: Ioffe & Szegedy, "Batch Normalization" (2015), Algorithm 1 (forward)
and §3 (backward).

Training mode normalizes with the batch mean μ and the *biased* batch variance σ² = mean((x−μ)²):

    x̂ = (x − μ) · invstd,  invstd = 1/√(σ² + eps),  y = γ·x̂ + β

and updates the running statistics with a momentum m (PyTorch's convention, ``running ←
(1−m)·running + m·batch``; m = 0.1 equals TensorFlow's ``decay=0.9`` used by DCGAN-tensorflow).
Variance convention of the running variance: by default the *biased* σ² as in TensorFlow's
``tf.nn.moments``/``batch_norm`` (the DCGAN reference); ``unbiased=True`` stores σ²·M/(M−1) as
PyTorch does (M = elements per channel).

Backward, training mode (the full batch-coupled gradient), with M elements per channel:

    dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ·invstd/M · (M·dy − dβ − x̂·dγ)

Eval mode uses the running statistics as constants: dx = dy·γ/√(running_var + eps).
"""
import numpy as np

from . import _parallel

_PAR_MIN = 1 << 17          # elements below which the row passes run on one thread


def _axes_and_shape(x):
    if x.ndim == 4:
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:
        return (0,), (1, -1)
    raise ValueError(f"batchnorm: expected 2-D (N, F) or 4-D (N, C, H, W) input, got {x.ndim}-D")


def _rows(x):
    """A (M, C) *view* of x with the channel axis last, or None if the memory does not allow it.

    2-D x is already (N, F); a 4-D x whose memory is channels-last (what the reference convolutions
    return) is ``x.transpose(0, 2, 3, 1).reshape(-1, C)`` without a copy.
    """
    if x.ndim == 2:
        return x if x.flags.c_contiguous else None
    xt = x.transpose(0, 2, 3, 1)
    return xt.reshape(-1, x.shape[1]) if xt.flags.c_contiguous else None


def _colsum(a):
    """Per-channel sums of a (M, C) matrix, in two levels (blocks of rows) for float32 accuracy."""
    M, C = a.shape
    nb = 1
    while nb * nb < M:
        nb *= 2
    if M % nb == 0 and nb > 1:
        return a.reshape(nb, M // nb, C).sum(axis=1).sum(axis=0)
    return a.sum(axis=0)


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps,
                            unbiased=False):
    """Training-mode forward; updates ``running_mean``/``running_var`` in place.

    Returns ``(y, save_mean, save_invstd)``; the two saved (C,) arrays feed the backward.
    ``y`` has the memory order of ``x`` (channels-last in, channels-last out).
    """
    axes, bshape = _axes_and_shape(x)
    M = x.size // x.shape[1]
    dt = x.dtype.type
    X = _rows(x)
    if X is None:                                   # NCHW memory: the plain formulation
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(bshape)
        var = (xc * xc).mean(axis=axes)
        invstd = 1 / np.sqrt(var + dt(eps))
        y = xc * invstd.reshape(bshape) * gamma.reshape(bshape) + beta.reshape(bshape)
    else:                                           # (M, C) rows, blocks of rows per thread
        Mr, C = X.shape
        y2 = np.empty_like(X)
        s1, s2 = {}, {}

        def sums(lo, hi):
            s1[lo] = _colsum(X[lo:hi])
        _parallel.parallel_for(sums, Mr, _PAR_MIN, C)
        mean = sum(s1[k] for k in sorted(s1)) / dt(M)

        def center(lo, hi):
            xc = np.subtract(X[lo:hi], mean, out=y2[lo:hi])
            s2[lo] = _colsum(np.multiply(xc, xc))
        _parallel.parallel_for(center, Mr, _PAR_MIN, C)
        var = sum(s2[k] for k in sorted(s2)) / dt(M)
        invstd = 1 / np.sqrt(var + dt(eps))
        scale = (invstd * gamma).astype(x.dtype, copy=False)
        beta_ = beta.astype(x.dtype, copy=False)

        def affine(lo, hi):
            yb = y2[lo:hi]
            yb *= scale
            yb += beta_
        _parallel.parallel_for(affine, Mr, _PAR_MIN, C)
        y = y2.reshape(x.shape[0], *x.shape[2:], x.shape[1]).transpose(0, 3, 1, 2) \
            if x.ndim == 4 else y2
    m = dt(momentum)
    var_run = var * dt(M / (M - 1)) if (unbiased and M > 1) else var
    running_mean *= 1 - m
    running_mean += m * mean
    running_var *= 1 - m
    running_var += m * var_run
    return y, mean, invstd


def batchnorm_backward_train(dy, x, gamma, save_mean, save_invstd):
    """Training-mode backward. Returns ``(dx, dgamma, dbeta)``."""
    axes, bshape = _axes_and_shape(x)
    M = x.size // x.shape[1]
    X = _rows(x)
    if X is None or x.ndim != dy.ndim:
        xhat = (x - save_mean.reshape(bshape)) * save_invstd.reshape(bshape)
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * xhat).sum(axis=axes)
        k = (gamma * save_invstd / M).reshape(bshape)
        dx = k * (M * dy - dbeta.reshape(bshape) - xhat * dgamma.reshape(bshape))
        return dx.astype(x.dtype, copy=False), dgamma, dbeta
    # Rows form: dx = A·dy + Bc·(x − μ) + Cc per channel, with
    #   A = γ·invstd, Bc = −γ·invstd²·dγ/M (dγ = invstd·Σ dy·(x − μ)), Cc = −γ·invstd·dβ/M.
    dt = x.dtype.type
    C = x.shape[1]
    dyt = dy.transpose(0, 2, 3, 1) if dy.ndim == 4 else dy
    if dyt.flags.c_contiguous:
        DY = dyt.reshape(-1, C)
    else:
        DY = np.ascontiguousarray(dyt).reshape(-1, C)
    Mr = X.shape[0]
    t = np.empty_like(X)
    s1, s2 = {}, {}

    def pass1(lo, hi):
        xc = np.subtract(X[lo:hi], save_mean, out=t[lo:hi])
        s1[lo] = _colsum(DY[lo:hi])
        s2[lo] = _colsum(np.multiply(DY[lo:hi], xc))
    _parallel.parallel_for(pass1, Mr, _PAR_MIN, C)
    dbeta = sum(s1[k] for k in sorted(s1))
    dgamma = sum(s2[k] for k in sorted(s2)) * save_invstd
    A = (gamma * save_invstd).astype(x.dtype, copy=False)
    Bc = (-A * save_invstd * dgamma / dt(M)).astype(x.dtype, copy=False)
    Cc = (-A * dbeta / dt(M)).astype(x.dtype, copy=False)

    def pass2(lo, hi):
        tb = t[lo:hi]
        tb *= Bc
        tb += np.multiply(DY[lo:hi], A)
        tb += Cc
    _parallel.parallel_for(pass2, Mr, _PAR_MIN, C)
    dx = t.reshape(x.shape[0], *x.shape[2:], C).transpose(0, 3, 1, 2) if x.ndim == 4 else t
    return dx, dgamma.astype(x.dtype, copy=False), dbeta


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode forward with the running statistics. Returns y."""
    _, bshape = _axes_and_shape(x)
    invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
    scale = (gamma * invstd).reshape(bshape)
    return (x - running_mean.reshape(bshape)) * scale + beta.reshape(bshape)


def batchnorm_backward_eval(dy, x, gamma, running_mean, running_var, eps):
    """Eval-mode backward (statistics are constants). Returns ``(dx, dgamma, dbeta)``."""
    axes, bshape = _axes_and_shape(x)
    invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
    xhat = (x - running_mean.reshape(bshape)) * invstd.reshape(bshape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = dy * (gamma * invstd).reshape(bshape)
    return dx, dgamma, dbeta
