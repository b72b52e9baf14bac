// bias.cu — per-channel bias: add (forward) and its gradient reduction (backward).
// Python launcher: rawgan/backend/cuda/conv.py (bias_add, bias_grad); also used by linear.py.
// Reference: rawgan/backend/reference/conv.py (bias_add, bias_grad).
//
// Layout: y/dy is (N, C, HW) contiguous float32 — NCHW with HW = H*W, or (N, C) with HW = 1.
//
// Napkin math (float32, E = N*C*HW elements): bias_add reads and writes y (8*E bytes, 1 FLOP/elt);
// the gradient reads dy once (4*E bytes, 1 FLOP/elt). Both memory bound: the bound is bytes /
// 4.8 TB/s on an H200 — if enough blocks stream. One block per channel does not: G's last layer
// has C = 3 channels of M = 262,144 elements (batch 64, 64x64), i.e. 3 blocks on 3 of 132 SMs
// (~3 MB at ~6 GB/s per block: ~170 us instead of ~1 us). bias_grad_2d splits each channel over
// row-chunks (grid = (C, chunks): G's RGB layer 3 x 128 = 384 blocks, ~3 per SM — the 4 per SM
// target would be 176 chunks, capped at M / 2048 = 128 by common.MIN_CHUNK), deterministically:
// per-block partial sums in a fixed order, folded in index order by the last block to finish
// (the "last block done" pattern, reduce.cuh) — one launch, where a partial kernel + a combine
// kernel took two (~3 us of launch each, eager). The fold is C*chunks floats (1.5 KB) read by one
// block, one thread per channel, 8 loads in flight: ~chunks/8 L2 round trips (16 for C = 3,
// ~2.4 us on the critical path at ~0.15 us each — what the combine kernel's own loop also cost);
// the extra traffic (partials + one atomic per block) is < 0.1% of dy. The launcher
// (rawgan/backend/cuda/conv.py, bias_grad) picks the form with common.reduction_chunks.
//
// The gradient outputs db are the parameter gradients themselves (views of the flat gradient
// buffer): accumulate = 0 writes db, accumulate = 1 adds to it (D's fake pass after its real
// pass), so no separate accumulate/fill kernels run.
#include "reduce.cuh"

// Forward partner of bias_grad. y[n, c, i] += b[c], in place.
// Launch: grid = min(ceil(N*C*HW / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void bias_add(float* __restrict__ y, const float* __restrict__ b,
                                    int C, int HW, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((i / HW) % C);
        y[i] += b[c];
    }
}

// Backward partner of bias_add for NCHW (HW > 1). db[c] = sum over n, i of dy[n, c, i].
// Launch: grid = C (one block per channel), block = 32..256 (a multiple of 32), shared_mem = 0
// (32 floats of static shared memory). Deterministic: fixed per-thread order + fixed tree.
extern "C" __global__ void bias_grad(const float* __restrict__ dy, float* __restrict__ db,
                                     int N, int C, int HW, int accumulate)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int M = N * HW;
    float s = 0.0f;
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        const int n = j / HW, i = j - n * HW;
        s += dy[((long long)n * C + c) * HW + i];
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        db[c] = accumulate ? db[c] + s : s;
    }
}

// Backward partner of bias_add for 2-D dy (N, C) (a Linear layer's bias): db[c] = sum_n dy[n, c].
// One thread per column, summing down the rows: neighbouring threads read neighbouring floats, and
// there is no cross-thread reduction (N is a batch size; C may be thousands).
// Launch: grid = min(ceil(C / 256), block cap), block = 256, shared_mem = 0 (grid-stride over C).
extern "C" __global__ void bias_grad_rows(const float* __restrict__ dy, float* __restrict__ db,
                                          int N, int C, int accumulate)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        float s = 0.0f;
        for (int n = 0; n < N; ++n) {
            s += dy[(long long)n * C + c];
        }
        db[c] = accumulate ? db[c] + s : s;
    }
}

// The 2-D bias gradient (4-D dy) in ONE launch: block (c, b) sums dy over the elements j in
// [b*chunk, min((b+1)*chunk, M)) of channel c (M = N*HW; every chunk non-empty) into
// partial[c*chunks + b]; the last block to finish (reduce.cuh grid_last_block, ticket counter
// `done` = common.grid_counter(rt, "bias_grad"), reset to 0 by that block) folds them: db[c] = sum of partial[c*chunks + b] for b = 0, 1,
// ... in index order (one thread per channel). Deterministic: fixed per-block tree, fixed fold order.
// Launch: grid = (C, chunks), block = 32..256 (a multiple of 32), shared_mem = 0 (32 floats + 1
// bool static). partial: C*chunks floats of workspace; *done == 0 before the launch (and after it).
extern "C" __global__ void bias_grad_2d(const float* __restrict__ dy, float* partial,
                                        unsigned int* done, float* __restrict__ db,
                                        int N, int C, int HW, int chunk, int accumulate)
{
    __shared__ float scratch[32];
    __shared__ bool last;
    const int c = blockIdx.x;
    const int j0 = blockIdx.y * chunk, j1 = min(j0 + chunk, N * HW);   // this block's rows
    float s = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const int n = j / HW, i = j - n * HW;
        s += dy[((long long)n * C + c) * HW + i];
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        partial[(long long)c * gridDim.y + blockIdx.y] = s;
    }
    if (!grid_last_block(done, &last)) {
        return;
    }
    const int chunks = (int)gridDim.y;
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        const float t = sum_partials_volatile(partial + (long long)k * chunks, chunks, 1);
        db[k] = accumulate ? db[k] + t : t;
    }
}
