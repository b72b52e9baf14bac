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


def write_grad(out, value, accumulate=False):
    """A parameter gradient written straight into its buffer: ``out[...] = value`` (the first
    write after ``zero_grad(lazy=True)``) or ``out += value`` (``accumulate``, e.g. D's fake
    pass after its real pass). ``out`` None returns ``value`` itself. Returns the result.
    Raises ValueError when the shapes differ."""
    if out is None:
        return value
    if tuple(out.shape) != tuple(value.shape):
        raise ValueError(f"write_grad: gradient of shape {tuple(value.shape)} does not fit the "
                         f"buffer of shape {tuple(out.shape)}")
    if accumulate:
        out += value
    else:
        out[...] = value
    return out


def check_concat_batch(a, b):
    """Raise ValueError unless ``a`` and ``b`` have the same dtype and the same shape after the
    batch axis (the checks of :func:`concat_batch` on every backend)."""
    if a.dtype != b.dtype or a.ndim < 1 or tuple(a.shape[1:]) != tuple(b.shape[1:]):
        raise ValueError(f"concat_batch: cannot stack {a.dtype} {tuple(a.shape)} and {b.dtype} "
                         f"{tuple(b.shape)} along the batch axis")


def concat_batch(a, b):
    """``a``'s samples then ``b``'s, as one new C-contiguous (Na + Nb, ...) array (the DCGAN's D
    step: the real batch and G(z) as one batch of 2N). Raises ValueError for another dtype or
    per-sample shape."""
    check_concat_batch(a, b)
    return np.concatenate((a, b))


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
