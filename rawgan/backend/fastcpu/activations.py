"""ReLU, LeakyReLU and tanh backward on the fast CPU backend (the other activations: reference).

Signatures and values: ``rawgan.backend.reference.activations``. Differences: big arrays are
split along their leading axis over the thread pool (``_parallel``), each piece written with
``out=`` into the result (no temporaries), and LeakyReLU runs without a select for
0 ≤ slope ≤ 1. Outputs keep the memory order of the input (channels-last in, channels-last out).
"""
import numpy as np

from . import _parallel

_PAR_MIN = 1 << 17          # elements below which a pass runs on one thread


def _split0(fn, n, size):
    """fn(lo, hi) over slices of the leading axis, on the pool when the array is big."""
    _parallel.parallel_for(fn, n, _PAR_MIN, max(1, size // max(n, 1)))


def relu_forward(x):
    """y = max(x, 0)."""
    if x.ndim == 0:
        return np.maximum(x, x.dtype.type(0))
    y = np.empty_like(x)
    _split0(lambda lo, hi: np.maximum(x[lo:hi], x.dtype.type(0), out=y[lo:hi]), x.shape[0],
            x.size)
    return y


def relu_backward(dy, y):
    """dx = dy · [y > 0] (the subgradient at 0 is taken as 0, as in PyTorch)."""
    if dy.ndim == 0 or dy.shape != y.shape:
        return dy * (y > 0)
    dx = np.empty_like(dy)
    _split0(lambda lo, hi: np.multiply(dy[lo:hi], y[lo:hi] > 0, out=dx[lo:hi]), dy.shape[0],
            dy.size)
    return dx


def leaky_relu_forward(x, slope, bias=None):
    """y = x if x > 0 else slope·x (Maas et al. 2013; DCGAN's D uses slope 0.2); ``bias`` (C,):
    y = lrelu(x + b per channel of axis 1) (rawgan.backend.reference.activations).

    For 0 ≤ slope ≤ 1 this is max(x, slope·x) (two passes, no mask); NaN propagates either way.
    """
    if bias is not None:
        x = x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    a = x.dtype.type(slope)
    if not 0 <= slope <= 1 or x.ndim == 0:
        return np.where(x > 0, x, x * a)
    y = np.empty_like(x)

    def work(lo, hi):
        yb = np.multiply(x[lo:hi], a, out=y[lo:hi])
        np.maximum(x[lo:hi], yb, out=yb)
    _split0(work, x.shape[0], x.size)
    return y


def leaky_relu_backward(dy, x, slope):
    """dx = dy if x > 0 else slope·dy.

    For 0 ≤ slope ≤ 1 as dy·f with the exact factor f = max([x > 0], slope) ∈ {slope, 1}
    (cheap passes with no masked/select loop); otherwise the plain select.
    """
    a = dy.dtype.type(slope)
    if not 0 <= slope <= 1 or dy.ndim == 0 or dy.shape != x.shape:
        return np.where(x > 0, dy, dy * a)
    dx = np.empty_like(dy)

    def work(lo, hi):
        f = np.greater(x[lo:hi], 0).astype(dy.dtype)
        np.maximum(f, a, out=f)
        np.multiply(f, dy[lo:hi], out=dx[lo:hi])
    _split0(work, dy.shape[0], dy.size)
    return dx


def tanh_backward(dy, y):
    """dx = dy · (1 − y²)."""
    t = np.multiply(y, y)
    np.subtract(y.dtype.type(1), t, out=t)
    return np.multiply(dy, t, out=t)
