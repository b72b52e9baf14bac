"""bias.cu: per-channel bias add (forward) and bias gradient (backward).

    python bench/kernels/bias.py [--emulated] [--check-only] [--fast]

Napkin math (float32, E = N*C*H*W): bias_add reads and writes y (8*E bytes, 1 FLOP/element); the
gradient reads dy once (4*E bytes, 1 FLOP/element). Memory bound. G's output layer at batch 64
(C = 3, E = 786 K): the gradient reads 3.1 MB = 0.7 us at 4.8 TB/s.

bias_grad versions: 1 = one block per channel (grid = C: 3 blocks on 3 SMs for G's RGB layer,
~6 GB/s each: ~170 us); 2 = the former 2-D form, two launches (grid = (C, chunks) of per-block
partial sums, folded in index order by a combine kernel; kept here, source inline, so a GPU can
compare it with v4); 4 = kernels/bias.cu bias_grad_2d, the same partials folded in the same order
by the last block to finish ("last block done", kernels/reduce.cuh grid_last_block): one launch,
results bit-identical to v2. The backend picks one block per channel or v4 per shape with the cost
model (rawgan/backend/cuda/common.reduction_chunks); v2-v4 are forced to >= 2 chunks here. 3 = v4
with float4 loads (H*W and the chunk multiples of 4, dy 16-byte aligned): 4x the bytes in flight
per thread; a candidate only — it joins kernels/bias.cu if a GPU measurement shows it faster.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import conv, make_ops  # noqa: E402


def shapes(fast):
    if fast:
        return [("3x5x13x7", (3, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40)), ("3x2x6x10", (3, 2, 6, 10))]
    return [("G out 64x3x64x64", (64, 3, 64, 64)), ("G 64x64x32x32", (64, 64, 32, 32)),
            ("D 64x512x4x4", (64, 512, 4, 4))]


def grad_cases(fast):
    rng = np.random.default_rng(0)
    return [Case(name, {"dy": rng.standard_normal(s).astype(np.float32)}, nbytes=4 * int(np.prod(s)))
                 for name, s in shapes(fast)]


def add_cases(fast):
    rng = np.random.default_rng(1)
    return [Case(name, {"y": rng.standard_normal(s).astype(np.float32),
                        "b": rng.standard_normal(s[1]).astype(np.float32)},
                 nbytes=8 * int(np.prod(s))) for name, s in shapes(fast)]


def grad(chunks_fn):
    def run(rt, dy):
        N, C, H, W = dy.shape
        return (conv.bias_grad_nchw(rt, dy, chunks_fn(rt, C, N * H * W)),)
    return run


V2_SOURCE = r"""
#include "reduce.cuh"
// Version 2: the former production pair (kernels/bias.cu until the one-launch bias_grad_2d):
// partial sums in one kernel, folded in index order by a second (combine) kernel.
extern "C" __global__ void bias_grad_partial(const float* __restrict__ dy, float* __restrict__ partial,
                                             int N, int C, int HW, int chunk)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int j0 = blockIdx.y * chunk, j1 = min(j0 + chunk, N * HW);
    float s = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const int n = j / HW, i = j - n * HW;
        s += dy[((long long)n * C + c) * HW + i];
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        partial[(long long)c * gridDim.y + blockIdx.y] = s;
    }
}

extern "C" __global__ void bias_grad_combine(const float* __restrict__ partial, float* __restrict__ db,
                                             int C, int chunks)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        db[c] = sum_partials(partial + (long long)c * chunks, chunks, 1);
    }
}
"""

V3_SOURCE = r"""
#include "reduce.cuh"
// Version 3 of bias_grad_2d: float4 loads. Requires HW % 4 == 0, chunk % 4 == 0 and dy
// 16-byte aligned (the launcher checks), so 4 consecutive j are 4 contiguous floats of one image.
// The last block folds the partials (grid_last_block), as in bias_grad_2d.
extern "C" __global__ void bias_grad_2d_vec4(const float* __restrict__ dy, float* partial,
                                             unsigned int* done, float* __restrict__ db,
                                             int N, int C, int HW, int chunk)
{
    __shared__ float scratch[32];
    __shared__ bool last;
    const int c = blockIdx.x;
    const int j0 = blockIdx.y * chunk, j1 = min(j0 + chunk, N * HW);   // this block's rows
    float s = 0.0f;
    for (int j = j0 + 4 * (int)threadIdx.x; j < j1; j += 4 * (int)blockDim.x) {
        const int n = j / HW, i = j - n * HW;
        const float4 v = *reinterpret_cast<const float4*>(dy + ((long long)n * C + c) * HW + i);
        s += (v.x + v.y) + (v.z + v.w);
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        partial[(long long)c * gridDim.y + blockIdx.y] = s;
    }
    if (!grid_last_block(done, &last)) {
        return;
    }
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        db[k] = sum_partials_volatile(partial + (long long)k * gridDim.y, (int)gridDim.y, 1);
    }
}
"""


def grad_v2(rt, dy):
    from harness import module
    from rawgan.backend.cuda.common import (chunk_plan, check_int32, i32, launch_1d, reduce_block,
                                            workspace_f32)

    N, C, H, W = dy.shape
    M = N * H * W
    chunk, chunks = chunk_plan(M, max(2, conv.bias_grad_chunks(rt, C, M)))
    check_int32("bias_grad v2", M + chunk)
    part = workspace_f32(rt, "bench_bias_v2", C * chunks)
    db = rt.xp.empty((C,), dtype=dy.dtype)
    mod = module(rt, "bench_bias_v2", V2_SOURCE)
    mod.get_function("bias_grad_partial")((C, chunks), (reduce_block(rt, chunk),),
                                          (dy, part, i32(N), i32(C), i32(H * W), i32(chunk)))
    from rawgan.backend.cuda.common import grid_1d, BLOCK
    mod.get_function("bias_grad_combine")((grid_1d(rt, C),), (BLOCK,), (part, db, i32(C), i32(chunks)))
    return (db,)


def v3_applies(dy):
    return dy.shape[2] * dy.shape[3] % 4 == 0


def grad_v3(rt, dy):
    from harness import module
    from rawgan.backend.cuda.common import (chunk_plan, check_int32, i32, reduce_block,
                                            grid_counter, workspace_f32)

    N, C, H, W = dy.shape
    M = N * H * W
    assert M % 4 == 0 and dy.data.ptr % 16 == 0, "bias_grad v3 needs H*W % 4 == 0 and 16-byte alignment"
    chunk, _ = chunk_plan(M, max(2, conv.bias_grad_chunks(rt, C, M)))
    chunk = -(-chunk // 4) * 4
    chunks = -(-M // chunk)
    check_int32("bias_grad v3", M + chunk)
    part = workspace_f32(rt, "bench_bias_v3", C * chunks)
    done = grid_counter(rt, "bench_bias_v3")
    db = rt.xp.empty((C,), dtype=dy.dtype)
    k = module(rt, "bench_bias_v3", V3_SOURCE).get_function("bias_grad_2d_vec4")
    k((C, chunks), (reduce_block(rt, chunk // 4),), (dy, part, done, db, i32(N), i32(C), i32(H * W), i32(chunk)))
    return (db,)


KERNELS = [
    Kernel("bias_grad", lambda dy: (R.bias_grad(dy),),
           [Version(1, "one block per channel", grad(lambda rt, C, M: 1), production=True),
            Version(2, "2-D partials + combine kernel (two launches)", grad_v2),
            Version(3, "2-D with float4 loads, last block folds", grad_v3, applies=v3_applies),
            Version(4, "2-D, last block folds the partials (one launch)",
                    grad(lambda rt, C, M: max(2, conv.bias_grad_chunks(rt, C, M))), production=True)],
           grad_cases, rtol=1e-5, atol=1e-3),
    Kernel("bias_add", lambda y, b: (R.bias_add(y.copy(), b),),
           [Version(1, "grid-stride", lambda rt, y, b: (make_ops(rt).bias_add(y, b),), production=True)],
           add_cases, exact=True),
]

if __name__ == "__main__":
    sys.exit(run_family("bias", KERNELS))
