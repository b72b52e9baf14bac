"""Philox4x32-10 random numbers on the CUDA backend: launchers of kernels/rng.cu.

Signatures and semantics: rawgan.backend.reference.rng (after ``rt`` is bound). The uniform is
bit-exact with the reference; the normal agrees to float32 rounding of log/cos/sqrt.
Launch: grid-stride, grid = min(ceil(n / 256), block cap), block = 256; one launch per draw,
also with a device-side position (``*_next``: the last block advances it). Outputs are 1-D float32
(the kernels are float32 only; ``dtype`` must be float32).
"""
import numpy as np

from .common import f32, grid_counter, i64, launch_1d, u64

MODULE = "rng"
OPS = ("philox_uniform", "philox_normal", "philox_uniform_next", "philox_normal_next")


def _out(rt, n, dtype):
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"philox: the CUDA kernels produce float32, got dtype {np.dtype(dtype)}")
    return rt.empty((int(n),), np.float32)


def philox_uniform(rt, n, seed, offset, low, high, dtype):
    """n values of U[low, high) from counter (i, offset) under key seed."""
    return _draw(rt, "philox_uniform", n, seed, offset, None, low, high, dtype)


def philox_normal(rt, n, seed, offset, mean, std, dtype):
    """n values of N(mean, std²) by Box–Muller on words 0 and 1."""
    return _draw(rt, "philox_normal", n, seed, offset, None, mean, std, dtype)


def philox_uniform_next(rt, n, seed, offset, low, high, dtype):
    """philox_uniform at the device-side position ``offset`` ((1,) uint64), advanced by n."""
    return _draw(rt, "philox_uniform", n, seed, 0, offset, low, high, dtype)


def philox_normal_next(rt, n, seed, offset, mean, std, dtype):
    """philox_normal at the device-side position ``offset`` ((1,) uint64), advanced by n."""
    return _draw(rt, "philox_normal", n, seed, 0, offset, mean, std, dtype)


def _draw(rt, name, n, seed, offset, offset_dev, a, b, dtype):
    """One draw of n values — one launch; with a device position ``offset_dev`` the kernel's last
    block also advances it by n (counter common.grid_counter(rt, "rng"))."""
    out = _out(rt, n, dtype)
    done = None if offset_dev is None else grid_counter(rt, MODULE)
    launch_1d(rt, MODULE, name, n, (out, i64(n), u64(seed & 0xFFFFFFFFFFFFFFFF),
                                    u64(offset & 0xFFFFFFFFFFFFFFFF), offset_dev, done, f32(a),
                                    f32(b)))
    return out
