"""Buffer ops of a device-resident training step: launchers of kernels/tensor.cu.

Signatures and semantics: rawgan.backend.reference.tensor (after ``rt`` is bound). float32
buffers; outputs come from ``rt.empty`` (a step's StaticMemory when one is active).
"""
import numpy as np

from ..reference.tensor import check_concat_batch
from .common import contiguous, f32, i32, i64, kernel, launch_1d

MODULE = "tensor"
OPS = ("fill", "accumulate", "images_to_float", "sigmoid_mean", "scalar_add", "concat_batch")


def fill(rt, a, value):
    """a[...] = value in place (C-contiguous float32); returns a."""
    if not a.flags.c_contiguous:
        raise ValueError("fill: the array must be C-contiguous (it is written in place)")
    launch_1d(rt, MODULE, "fill_f32", a.size, (a, f32(value), i64(a.size)))
    return a


def accumulate(rt, dst, src):
    """dst += src in place (same shape, C-contiguous float32); returns dst."""
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"accumulate: shapes {tuple(dst.shape)} and {tuple(src.shape)} differ")
    if not dst.flags.c_contiguous:
        raise ValueError("accumulate: dst must be C-contiguous (it is updated in place)")
    launch_1d(rt, MODULE, "accumulate_f32", dst.size, (dst, contiguous(rt, src), i64(dst.size)))
    return dst


def images_to_float(rt, images):
    """uint8 (N, H, W, C) in 0..255 -> float32 (N, C, H, W) in [−1, 1] (x/127.5 − 1)."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images_to_float: expected uint8 (N, H, W, C), got {images.dtype} "
                         f"{tuple(images.shape)}")
    N, H, W, C = (int(d) for d in images.shape)
    x = rt.empty((N, C, H, W), np.float32)
    launch_1d(rt, MODULE, "images_u8_to_float", x.size,
              (contiguous(rt, images), x, i32(N), i32(H), i32(W), i32(C)))
    return x


def sigmoid_mean(rt, logits):
    """Mean of σ(logits) over all elements, as a 0-d float32 array (one block, deterministic)."""
    x = contiguous(rt, logits)
    out = rt.empty((), np.float32)
    kernel(rt, MODULE, "sigmoid_mean")((1,), (256,), (x, out, i64(x.size)))
    return out


def scalar_add(rt, a, b):
    """a + b of two 0-d float32 arrays, as a new 0-d array."""
    out = rt.empty((), np.float32)
    kernel(rt, MODULE, "add_scalars")((1,), (32,), (a, b, out))
    return out


def concat_batch(rt, a, b):
    """``a``'s samples then ``b``'s as one new (Na + Nb, ...) float32 array: one grid-stride
    launch (``concat_f32``). Raises ValueError for another dtype or per-sample shape, or arrays
    that are not float32 (the kernel's type)."""
    check_concat_batch(a, b)
    if a.dtype != np.float32:
        raise ValueError(f"concat_batch: the CUDA kernel stacks float32 arrays, got {a.dtype}")
    a, b = contiguous(rt, a), contiguous(rt, b)
    out = rt.empty((a.shape[0] + b.shape[0],) + tuple(a.shape[1:]), a.dtype)
    launch_1d(rt, MODULE, "concat_f32", out.size, (a, b, out, i64(a.size), i64(out.size)))
    return out
