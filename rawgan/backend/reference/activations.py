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


def leaky_relu_forward(x, slope, bias=None):
    """y = x if x > 0 else slope·x (Maas et al. 2013; DCGAN's D uses slope 0.2). NaN propagates.

    ``bias``: optional (C,) array added per channel (axis 1 of an (N, C, ...) x) first,
    y = lrelu(x + b) — a convolution's bias folded into its activation
    (rawgan.layers.fold_bias_into_act)."""
    if bias is not None:
        x = x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, x * x.dtype.type(slope))


def leaky_relu_backward(dy, x, slope):
    """dx = dy if x > 0 else slope·dy."""
    return np.where(x > 0, dy, dy * dy.dtype.type(slope))


def tanh_forward(x):
    """y = tanh(x)."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """dx = dy · (1 − y²)."""
    return dy * (1 - y * y)


def sigmoid_forward(x):
    """y = 1 / (1 + e^{−x}), evaluated without overflow for any finite x (e^{−|x|} ≤ 1)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    """dx = dy · y · (1 − y)."""
    return dy * y * (1 - y)
