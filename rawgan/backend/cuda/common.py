"""Launch helpers shared by the op files of the CUDA backend (rawgan/backend/cuda/*.py).

Every op is a plain function whose first argument is a runtime ``rt`` (see runtime.py): the same
code drives real CuPy and the CPU emulator. ``rawgan.backend.cuda.make_ops`` binds ``rt`` so the
bound functions have exactly the reference signatures.

Rules the ops follow: outputs are allocated with ``rt.empty`` and temporaries that die inside
the op with ``rt.scratch`` (both served by a step's StaticMemory when one is active), GEMMs go
through ``rt.gemm``; nothing synchronises with the host (no ``.get()``, no ``float()`` of device data, no branching on device values); per-call
Python work is a few attribute lookups and one launch per kernel.
"""
from __future__ import annotations

import numpy as np

BLOCK = 256                  # threads per block of every 1-D (grid-stride) kernel
MAX_REDUCE_BLOCK = 256       # threads per block of the one-block-per-channel reductions (GPU)
EMULATED_REDUCE_BLOCK = 64   # ... in emulation (see reduce_block)
REDUCE_ITEMS = 8             # minimum elements per thread in those reductions
INT32_MAX = 2**31 - 1

# Grid cap for grid-stride kernels, in blocks. On a GPU: 8 blocks of 256 threads per SM fill it
# (H200: 132 SMs -> 1056 blocks). In emulation every CUDA thread is a fiber, so a small grid with
# more work per thread is much faster; 32 blocks still exercise the multi-block paths.
_EMULATED_BLOCK_CAP = 32
_block_caps: dict[int, int] = {}


def block_cap(rt) -> int:
    """Maximum blocks launched by a grid-stride kernel on this runtime (cached)."""
    cap = _block_caps.get(id(rt))
    if cap is None:
        if rt.kind == "cupy":
            cap = 8 * _sm_count(rt.xp)
        else:
            cap = _EMULATED_BLOCK_CAP
        _block_caps[id(rt)] = cap
    return cap


def _sm_count(cupy) -> int:
    """Streaming multiprocessors of the current device (132 on an H100/H200 if the query fails)."""
    try:
        return int(cupy.cuda.Device().attributes["MultiProcessorCount"])
    except Exception:
        try:
            dev = cupy.cuda.runtime.getDevice()
            return int(cupy.cuda.runtime.getDeviceProperties(dev)["multiProcessorCount"])
        except Exception:
            return 132


def grid_1d(rt, n: int) -> int:
    """Blocks for a grid-stride loop over n elements: min(ceil(n / BLOCK), block_cap), >= 1."""
    return max(1, min(-(-int(n) // BLOCK), block_cap(rt)))


def reduce_block(rt, m: int) -> int:
    """Threads for a one-block-per-channel reduction over m elements.

    The smallest multiple of 32 giving each thread at least REDUCE_ITEMS elements, between 32 and
    the runtime's cap (256 on a GPU; 64 in emulation, where every thread of a barrier-using block
    is a fiber that switches at each barrier and shuffle, and 2 warps still exercise the
    cross-warp step of block_reduce_sum). block_reduce_sum needs a multiple of 32.
    """
    cap = MAX_REDUCE_BLOCK if rt.kind == "cupy" else EMULATED_REDUCE_BLOCK
    want = -(-int(m) // REDUCE_ITEMS)
    return max(32, min(cap, -(-want // 32) * 32))


_kernels: dict[tuple, object] = {}


def kernel(rt, module: str, name: str):
    """The launcher of kernel ``name`` in kernels/<module>.cu on runtime ``rt`` (cached)."""
    key = (id(rt), module, name)
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = rt.module(module).get_function(name)
    return k


def launch_1d(rt, module: str, name: str, n: int, args: tuple) -> None:
    """Launch a grid-stride kernel over n elements: grid = grid_1d(rt, n), block = BLOCK."""
    kernel(rt, module, name)((grid_1d(rt, n),), (BLOCK,), args)


def contiguous(rt, a):
    """``a`` as a C-contiguous array of the runtime (no copy when it already is one)."""
    return a if a.flags.c_contiguous else rt.xp.ascontiguousarray(a)


def check_int32(what: str, *sizes: int) -> None:
    """Raise ValueError if a size does not fit the 32-bit index math of a kernel."""
    for s in sizes:
        if int(s) > INT32_MAX:
            raise ValueError(f"{what}: {s} elements exceed the kernels' 32-bit indexing")


def channels_hw(x) -> tuple[int, int, int]:
    """(N, C, HW) of an (N, C, H, W) or (N, C) array."""
    if x.ndim == 4:
        return x.shape[0], x.shape[1], x.shape[2] * x.shape[3]
    if x.ndim == 2:
        return x.shape[0], x.shape[1], 1
    raise ValueError(f"expected a 2-D (N, C) or 4-D (N, C, H, W) array, got shape {tuple(x.shape)}")


f32 = np.float32
i32 = np.int32
i64 = np.int64
u64 = np.uint64
