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
// (~3 MB at ~6 GB/s per block: ~170 us instead of ~1 us). bias_grad_partial + bias_grad_combine
// split each channel over row-chunks (grid = (C, chunks)), deterministically: per-block partial
// sums in a fixed order, folded in index order by the combine kernel. The launcher
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

// Pass 1 of the 2-D bias gradient (4-D dy): partial[c*chunks + b] = sum of dy over elements
// j in [b*chunk, min((b+1)*chunk, M)) of channel c (M = N*HW; every chunk non-empty).
// Launch: grid = (C, chunks), block = 32..256 (a multiple of 32), shared_mem = 0 (32 floats static).
extern "C" __global__ void bias_grad_partial(const float* __restrict__ dy, float* __restrict__ partial,
                                             int N, int C, int HW, int chunk)
{
    __shared__ float scratch[32];
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
}

// Pass 2 of the 2-D bias gradient: db[c] = sum of partial[c*chunks + b] for b = 0, 1, ... in order.
// Launch: grid = min(ceil(C / 256), block cap), block = 256, shared_mem = 0 (grid-stride over C).
extern "C" __global__ void bias_grad_combine(const float* __restrict__ partial, float* __restrict__ db,
                                             int C, int chunks, int accumulate)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        const float s = sum_partials(partial + (long long)c * chunks, chunks, 1);
        db[c] = accumulate ? db[c] + s : s;
    }
}
