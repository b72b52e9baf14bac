"""Training-mode batch normalization on the fast CPU backend ("rows form"); eval mode: reference.

Formulas, sources and signatures: ``rawgan.backend.reference.batchnorm``. Difference: when the
memory of x allows a (M, C) view with the channel axis last — 2-D (N, F) input, or 4-D input in
the channels-last memory the fast convolutions return — the per-channel sums run down the rows of
that view in blocks over the thread pool (``_parallel``), with two-level sums for float32
accuracy, and y/dx are written in place with ``out=`` in the same memory order. Otherwise (NCHW
memory) the reference runs.
"""
import numpy as np

from ..reference import batchnorm as reference
from ..reference.tensor import write_grad
from . import _parallel, activations

_PAR_MIN = 1 << 17          # elements below which the row passes run on one thread


def _rows(x):
    """A (M, C) *view* of x with the channel axis last, or None if the memory does not allow it.

    2-D x is already (N, F); a 4-D x whose memory is channels-last (what the fast convolutions
    return) is ``x.transpose(0, 2, 3, 1).reshape(-1, C)`` without a copy. Other ranks: None (the
    reference then raises its ValueError).
    """
    if x.ndim == 2:
        return x if x.flags.c_contiguous else None
    if x.ndim != 4:
        return None
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
                            unbiased=False, ghost_batches=1):
    """Training-mode forward; updates ``running_mean``/``running_var`` in place.

    Returns ``(y, save_mean, save_invstd)``. ``y`` has the memory order of ``x`` (channels-last
    in, channels-last out). ``ghost_batches`` G: as the reference — sub-batch g is the row range
    [g·M/G, (g+1)·M/G) of the (M, C) view, normalised with its own statistics, in order.
    """
    G = reference.ghost_split(x, ghost_batches)
    X = _rows(x)
    if X is None:                                   # NCHW memory: the plain formulation
        return reference.batchnorm_forward_train(x, gamma, beta, running_mean, running_var,
                                                 momentum, eps, unbiased, G)
    M, C = X.shape
    Mg = M // G
    y2 = np.empty_like(X)
    stats = [_forward_rows(X[g * Mg:(g + 1) * Mg], y2[g * Mg:(g + 1) * Mg], gamma, beta, eps)
             for g in range(G)]
    for mean, var, _ in stats:                      # sub-batch 0 first, as G separate calls
        reference.update_running_stats(running_mean, running_var, mean, var, Mg, momentum,
                                       unbiased)
    y = y2.reshape(x.shape[0], *x.shape[2:], C).transpose(0, 3, 1, 2) if x.ndim == 4 else y2
    if G == 1:
        return y, stats[0][0], stats[0][2]
    return y, np.stack([s[0] for s in stats]), np.stack([s[2] for s in stats])


def _forward_rows(X, y2, gamma, beta, eps):
    """Normalise the (M, C) rows X into y2 (same shape) with their own statistics, in blocks of
    rows over the thread pool. Returns ``(mean, biased var, invstd)`` (C,)."""
    M, C = X.shape                                  # (M, C) rows, blocks of rows per thread
    dt = X.dtype.type
    s1, s2 = {}, {}

    def sums(lo, hi):
        s1[lo] = _colsum(X[lo:hi])
    _parallel.parallel_for(sums, M, _PAR_MIN, C)
    mean = sum(s1[k] for k in sorted(s1)) / dt(M)

    def center(lo, hi):
        xc = np.subtract(X[lo:hi], mean, out=y2[lo:hi])
        s2[lo] = _colsum(np.multiply(xc, xc))
    _parallel.parallel_for(center, M, _PAR_MIN, C)
    var = sum(s2[k] for k in sorted(s2)) / dt(M)
    invstd = 1 / np.sqrt(var + dt(eps))
    scale = (invstd * gamma).astype(X.dtype, copy=False)
    beta_ = beta.astype(X.dtype, copy=False)

    def affine(lo, hi):
        yb = y2[lo:hi]
        yb *= scale
        yb += beta_
    _parallel.parallel_for(affine, M, _PAR_MIN, C)
    return mean, var, invstd


def batchnorm_backward_train(dy, x, gamma, save_mean, save_invstd, dgamma_out=None,
                             dbeta_out=None, accumulate=False, ghost_batches=1, dbias_out=None):
    """Training-mode backward. Returns ``(dx, dgamma, dbeta)``; dx in the memory order of x;
    ``dgamma_out``/``dbeta_out``/``accumulate`` as in the reference (gradient buffers written or
    added to); ``ghost_batches`` G as the reference (per sub-batch row range, dγ/dβ summed in
    order); ``dbias_out``: a folded bias's gradient Σ dx per channel (the sum bias_grad of dx
    computed before the fold), written or added to as the reference. Raises ValueError as the
    reference (bad G, saved statistics that do not fit it).

    Rows form: dx = A·dy + Bc·(x − μ) + Cc per channel, with A = γ·invstd,
    Bc = −γ·invstd²·dγ/M (dγ = invstd·Σ dy·(x − μ)) and Cc = −γ·invstd·dβ/M — the reference's
    formula with x̂ expanded, so that one pass over (dy, x) gives both sums.
    """
    G = reference.ghost_split(x, ghost_batches)
    reference.check_saved_stats(x, save_mean, save_invstd, G)
    X = _rows(x)
    if X is None or x.ndim != dy.ndim:
        return reference.batchnorm_backward_train(dy, x, gamma, save_mean, save_invstd,
                                                  dgamma_out, dbeta_out, accumulate, G, dbias_out)
    M, C = X.shape
    Mg = M // G
    dyt = dy.transpose(0, 2, 3, 1) if dy.ndim == 4 else dy
    if dyt.flags.c_contiguous:
        DY = dyt.reshape(-1, C)
    else:
        DY = np.ascontiguousarray(dyt).reshape(-1, C)
    t = np.empty_like(X)
    mean, invstd = save_mean.reshape(G, C), save_invstd.reshape(G, C)
    dg, db = dgamma_out, dbeta_out
    for g in range(G):                              # sub-batch 0 writes (or adds), the rest add
        rows = slice(g * Mg, (g + 1) * Mg)
        dgamma, dbeta = _backward_rows(DY[rows], X[rows], t[rows], gamma, mean[g], invstd[g])
        dg = write_grad(dg, dgamma, accumulate or g > 0)
        db = write_grad(db, dbeta, accumulate or g > 0)
    dx = t.reshape(x.shape[0], *x.shape[2:], C).transpose(0, 3, 1, 2) if x.ndim == 4 else t
    if dbias_out is not None:                       # bias_grad(dx)'s sum: the same bits
        write_grad(dbias_out, dx.sum(axis=(0,) + tuple(range(2, dx.ndim))), accumulate)
    return dx, dg, db


def _backward_rows(DY, X, t, gamma, save_mean, save_invstd):
    """dx of the (M, C) rows X (gradient DY) into t (same shape); returns ``(dgamma, dbeta)``."""
    M, C = X.shape
    dt = X.dtype.type
    s1, s2 = {}, {}

    def pass1(lo, hi):
        xc = np.subtract(X[lo:hi], save_mean, out=t[lo:hi])
        s1[lo] = _colsum(DY[lo:hi])
        s2[lo] = _colsum(np.multiply(DY[lo:hi], xc))
    _parallel.parallel_for(pass1, M, _PAR_MIN, C)
    dbeta = sum(s1[k] for k in sorted(s1))
    dgamma = sum(s2[k] for k in sorted(s2)) * save_invstd
    A = (gamma * save_invstd).astype(X.dtype, copy=False)
    Bc = (-A * save_invstd * dgamma / dt(M)).astype(X.dtype, copy=False)
    Cc = (-A * dbeta / dt(M)).astype(X.dtype, copy=False)

    def pass2(lo, hi):
        tb = t[lo:hi]
        tb *= Bc
        tb += np.multiply(DY[lo:hi], A)
        tb += Cc
    _parallel.parallel_for(pass2, M, _PAR_MIN, C)
    return dgamma.astype(X.dtype, copy=False), dbeta


# -- BatchNorm + activation: the reference's composition of this package's fast BN and
#    activations (the fusion itself is the CUDA backend's; on a CPU it would save little) ---------
def _act_forward(z, act, slope):
    if act == "relu":
        return activations.relu_forward(z)
    if act == "leaky_relu":
        return activations.leaky_relu_forward(z, slope)
    raise ValueError(f"batchnorm_act: act must be 'relu' or 'leaky_relu', got {act!r}")


def _act_backward(dy, y, act, slope):
    if act == "relu":
        return activations.relu_backward(dy, y)
    if act == "leaky_relu":                       # y > 0 exactly when z > 0 (slope > 0)
        return activations.leaky_relu_backward(dy, y, slope)
    raise ValueError(f"batchnorm_act: act must be 'relu' or 'leaky_relu', got {act!r}")


def batchnorm_act_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps,
                                unbiased, act, slope=0.0, in_bias=None, ghost_batches=1):
    """reference.batchnorm_act_forward_train with this package's BN and activations."""
    if in_bias is None:
        z, mean, invstd = batchnorm_forward_train(x, gamma, beta, running_mean, running_var,
                                                  momentum, eps, unbiased, ghost_batches)
        return _act_forward(z, act, slope), mean, invstd
    xb = x + in_bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    z, mean, invstd = batchnorm_forward_train(xb, gamma, beta, running_mean, running_var,
                                              momentum, eps, unbiased, ghost_batches)
    return _act_forward(z, act, slope), mean - in_bias, invstd


def batchnorm_act_backward_train(dy, y, x, gamma, save_mean, save_invstd, act, slope=0.0,
                                 dgamma_out=None, dbeta_out=None, accumulate=False,
                                 ghost_batches=1, dbias_out=None):
    """reference.batchnorm_act_backward_train with this package's BN and activations."""
    return batchnorm_backward_train(_act_backward(dy, y, act, slope), x, gamma, save_mean,
                                    save_invstd, dgamma_out, dbeta_out, accumulate, ghost_batches,
                                    dbias_out)
