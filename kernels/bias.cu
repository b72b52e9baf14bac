// bias.cu — per-channel bias: add (forward) and its gradient reduction (backward).
// Python launcher: rawgan/backend/cuda/conv.py (bias_add, bias_grad); also used by linear.py.
// Reference: rawgan/backend/reference/conv.py (bias_add, bias_grad).
//
// Layout: y/dy is (N, C, HW) contiguous float32 — NCHW with HW = H*W, or (N, C) with HW = 1.
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
                                     int N, int C, int HW)
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
        db[c] = s;
    }
}

// Backward partner of bias_add for 2-D dy (N, C) (a Linear layer's bias): db[c] = sum_n dy[n, c].
// One thread per column, summing down the rows: neighbouring threads read neighbouring floats, and
// there is no cross-thread reduction (N is a batch size; C may be thousands).
// Launch: grid = min(ceil(C / 256), block cap), block = 256, shared_mem = 0 (grid-stride over C).
extern "C" __global__ void bias_grad_rows(const float* __restrict__ dy, float* __restrict__ db,
                                          int N, int C)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        float s = 0.0f;
        for (int n = 0; n < N; ++n) {
            s += dy[(long long)n * C + c];
        }
        db[c] = s;
    }
}
