"""Buffer ops of a training step (NumPy reference of kernels/tensor.cu): fill, accumulate, the
uint8 batch -> float conversion, and the scalar metrics."""
import numpy as np

from .activations import sigmoid_forward


def fill(a, value):
    """a[...] = value in place; returns a."""
    a.fill(value)
    return a


def accumulate(dst, src):
    """dst += src in place; returns dst."""
    dst += src
    return dst


def images_to_float(images):
    """uint8 (N, H, W, C) in 0..255 -> float32 (N, C, H, W) in [−1, 1], computed as x/127.5 − 1."""
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
    return x / np.float32(127.5) - np.float32(1.0)


def sigmoid_mean(logits):
    """Mean of σ(logits) over all elements (a float32 scalar)."""
    return sigmoid_forward(logits).mean()


def scalar_add(a, b):
    """a + b."""
    return a + b
