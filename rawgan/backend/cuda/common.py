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


# -- 2-D reductions: when does splitting a channel over row-chunks pay? ------------------------
# A launch-shape cost model with H200 constants (REFERENCE.md §3; estimates, not measurements).
# The emulator uses the same constants, so it runs the launch shapes an H200 would.
H200_SMS = 132
HBM_BYTES_PER_S = 4.8e12             # peak HBM3e bandwidth
STREAM_EFFICIENCY = 0.8              # share of the peak a streaming kernel reaches
BLOCK_BYTES_PER_S = 6e9              # one 256-thread block streaming alone: ~4 KB in flight
                                     # (256 threads x 4 B x ~4 loads) per ~0.7 us of DRAM latency
LAUNCH_S = 3e-6                      # eager launch overhead per kernel
BLOCKS_PER_SM = 8                    # resident 256-thread blocks per SM (2048 threads)
MIN_CHUNK = 2048                     # elements per (channel, chunk) block: >= 8 per thread
TARGET_BLOCKS_PER_SM = 4             # chunks aim at C * chunks ~ 4 blocks per SM


def sm_count(rt) -> int:
    """SMs of the device the launch shapes are planned for: the real GPU on cupy, an H200 (132)
    in emulation (so the emulator runs the launch shapes an H200 would)."""
    return _sm_count(rt.xp) if rt.kind == "cupy" else H200_SMS


def stream_time(nbytes: float, blocks: int, sms: int) -> float:
    """Seconds to stream ``nbytes`` with ``blocks`` concurrent blocks (the cost model above)."""
    resident = min(int(blocks), sms * BLOCKS_PER_SM)
    bw = min(HBM_BYTES_PER_S * STREAM_EFFICIENCY, resident * BLOCK_BYTES_PER_S)
    return nbytes / bw


def reduction_chunks(C: int, M: int, nbytes: float, extra_launches: int, sms: int = H200_SMS,
                     one_block_blocks: int | None = None) -> int:
    """Row-chunks per channel for a per-channel reduction over C channels of M elements each.

    Returns 1 when one block per channel is estimated faster (or as fast), else the number of
    chunks of the 2-D (C, chunks) form: ceil(TARGET_BLOCKS_PER_SM * sms / C), at most
    M // MIN_CHUNK. ``nbytes`` is the DRAM traffic of the whole op (the same for both forms),
    ``extra_launches`` the kernels the 2-D form adds (an apply where the one-block form wrote its
    output in the same kernel; the partials' combine is the 2-D kernel's last block, no launch).
    Estimates (see the constants above): t1 = LAUNCH_S + stream_time(nbytes, C),
    t2 = (1 + extra) * LAUNCH_S + stream_time(nbytes, C * chunks); the 2-D form is chosen when t2 < t1. ``one_block_blocks``: the blocks of the
    one-block form when it is not C (batchnorm's ghost batches: C·G reductions run by C blocks
    that loop over the G sub-batches).
    """
    C, M = int(C), int(M)
    chunks = min(-(-TARGET_BLOCKS_PER_SM * sms // C), M // MIN_CHUNK)
    if chunks < 2:
        return 1
    t1 = LAUNCH_S + stream_time(nbytes, C if one_block_blocks is None else one_block_blocks, sms)
    t2 = (1 + extra_launches) * LAUNCH_S + stream_time(nbytes, C * chunks, sms)
    return chunks if t2 < t1 else 1


def chunk_plan(M: int, chunks: int) -> tuple[int, int]:
    """``(chunk, chunks)``: elements per chunk and a chunk count with no empty chunk."""
    chunk = -(-int(M) // int(chunks))
    return chunk, -(-int(M) // chunk)


_workspaces: dict[tuple, object] = {}


def workspace(rt, key: str, nbytes: int):
    """A device buffer of at least ``nbytes`` bytes (uint8, 1-D), cached per (runtime, key).

    The partial sums of the 2-D reductions live here, so a steady-state step allocates nothing;
    a larger request replaces the buffer (grow-only). The contents are undefined between uses:
    kernels on one stream use it in order (write partials, then combine). Static-memory planning
    can take this over by pre-sizing each key (``workspace(rt, key, max_bytes)`` once).
    """
    k = (id(rt), key)
    buf = _workspaces.get(k)
    if buf is None or buf.size < nbytes:
        buf = _workspaces[k] = rt.xp.empty((max(int(nbytes), 1),), dtype=np.uint8)
    return buf


def workspace_f32(rt, key: str, n: int):
    """The first ``n`` float32 values of ``workspace(rt, key, 4 * n)`` (a contiguous view).

    Inside a step's StaticMemory the workspace is that memory's scratch slot ``key`` instead, so
    it belongs to the step (a graph captured from it keeps valid pointers even if another model
    or batch size later needs a larger workspace)."""
    if getattr(rt, "memory", None) is not None:
        return rt.scratch(key, (int(n),), np.float32)
    return workspace(rt, key, 4 * int(n))[:4 * int(n)].view(np.float32)


_counters: dict[tuple, object] = {}


def grid_counter(rt, key: str):
    """A (1,) uint32 device counter, zero, cached per (runtime, key): the ``counter`` of the
    "last block done" kernels (kernels/reduce.cuh, grid_last_block), which leave it at zero
    after every launch. Zeroed once, when first asked for — outside a capture (the warm-up step
    asks first) and outside a step's StaticMemory (it is not per step: kernels of one stream
    share it in order). Never freed, so captured graphs keep a valid pointer."""
    k = (id(rt), key)
    buf = _counters.get(k)
    if buf is None:
        buf = rt.xp.empty((1,), dtype=np.uint32)
        rt.upload(buf, np.zeros((1,), np.uint32))      # on the runtime's stream, before any use
        _counters[k] = buf
    return buf


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
