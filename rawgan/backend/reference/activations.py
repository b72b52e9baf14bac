"""Pointwise activations, forward and backward side by side (NumPy reference).

Each backward takes what its forward saved: the output ``y`` where the derivative is a function of
it (ReLU, tanh, sigmoid), the input ``x`` otherwise (LeakyReLU, whose slope may be 0 < a < 1 but
negative-side sign is needed). Shapes: any; dtype float32/float64; outputs match ``x``.
"""
import numpy as np


def relu_forward(x):
    """y = max(x, 0)."""
    return np.maximum(x, x.dtype.type(0))


def relu_backward(dy, y):
    """dx = dy · [y > 0] (the subgradient at 0 is taken as 0, as in PyTorch)."""
    return dy * (y > 0)


def leaky_relu_forward(x, slope):
    """y = x if x > 0 else slope·x (Maas et al. 2013; DCGAN's D uses slope 0.2).

    For 0 ≤ slope ≤ 1 this is max(x, slope·x) (two passes, no mask); NaN propagates either way.
    """
    a = x.dtype.type(slope)
    y = np.multiply(x, a)
    if 0 <= slope <= 1:
        return np.maximum(x, y, out=y)
    return np.where(x > 0, x, y)


def leaky_relu_backward(dy, x, slope):
    """dx = dy if x > 0 else slope·dy.

    For 0 ≤ slope ≤ 1 as dy·f with the exact factor f = max([x > 0], slope) ∈ {slope, 1}
    (cheap passes with no masked/select loop); otherwise the plain select.
    """
    a = dy.dtype.type(slope)
    if not 0 <= slope <= 1:
        return np.where(x > 0, dy, dy * a)
    f = np.greater(x, 0).astype(dy.dtype)
    np.maximum(f, a, out=f)
    return np.multiply(f, dy, out=f)


def tanh_forward(x):
    """y = tanh(x)."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """dx = dy · (1 − y²)."""
    t = np.multiply(y, y)
    np.subtract(y.dtype.type(1), t, out=t)
    return np.multiply(dy, t, out=t)


def sigmoid_forward(x):
    """y = 1 / (1 + e^{−x}), evaluated without overflow for any finite x (e^{−|x|} ≤ 1)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    """dx = dy · y · (1 − y)."""
    return dy * y * (1 - y)
