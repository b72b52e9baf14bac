"""Pointwise activations on the CUDA backend: launchers of kernels/activations.cu.

Signatures match rawgan.backend.reference.activations (after ``rt`` is bound). Any shape,
float32; outputs come from ``rt.empty`` (the input's shape). Launch: grid-stride, grid =
min(ceil(n / 256), block cap), block = 256.
"""
from .common import channels_hw, contiguous, f32, i32, i64, launch_1d

MODULE = "activations"
OPS = ("relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
       "tanh_forward", "tanh_backward", "sigmoid_forward", "sigmoid_backward")


def _unary(rt, name, x):
    x = contiguous(rt, x)
    y = rt.empty(x.shape, x.dtype)
    launch_1d(rt, MODULE, name, x.size, (x, y, i64(x.size)))
    return y


def _binary(rt, name, dy, saved):
    dy, saved = contiguous(rt, dy), contiguous(rt, saved)
    dx = rt.empty(dy.shape, dy.dtype)
    launch_1d(rt, MODULE, name, dy.size, (dy, saved, dx, i64(dy.size)))
    return dx


def relu_forward(rt, x):
    """y = max(x, 0)."""
    return _unary(rt, "relu_forward", x)


def relu_backward(rt, dy, y):
    """dx = dy · [y > 0]."""
    return _binary(rt, "relu_backward", dy, y)


def leaky_relu_forward(rt, x, slope, bias=None):
    """y = x if x > 0 else slope·x; with ``bias`` (C,) y = lrelu(x + b[c]) over the channels of
    axis 1, in the same kernel (a convolution's folded bias: no bias_add launch)."""
    x = contiguous(rt, x)
    y = rt.empty(x.shape, x.dtype)
    C, HW = (1, 1) if bias is None else channels_hw(x)[1:]
    bias = None if bias is None else contiguous(rt, bias)
    launch_1d(rt, MODULE, "leaky_relu_forward", x.size,
              (x, bias, y, f32(slope), i32(C), i32(HW), i64(x.size)))
    return y


def leaky_relu_backward(rt, dy, x, slope):
    """dx = dy if x > 0 else slope·dy."""
    dy, x = contiguous(rt, dy), contiguous(rt, x)
    dx = rt.empty(dy.shape, dy.dtype)
    launch_1d(rt, MODULE, "leaky_relu_backward", dy.size, (dy, x, dx, f32(slope), i64(dy.size)))
    return dx


def tanh_forward(rt, x):
    """y = tanh(x)."""
    return _unary(rt, "tanh_forward", x)


def tanh_backward(rt, dy, y):
    """dx = dy · (1 − y²)."""
    return _binary(rt, "tanh_backward", dy, y)


def sigmoid_forward(rt, x):
    """y = 1 / (1 + e^{−x}), overflow-free."""
    return _unary(rt, "sigmoid_forward", x)


def sigmoid_backward(rt, dy, y):
    """dx = dy · y · (1 − y)."""
    return _binary(rt, "sigmoid_backward", dy, y)
