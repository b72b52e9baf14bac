// adam.cu — one fused Adam step over a network's flat parameter buffer (one launch per step).
// Python launcher: rawgan/backend/cuda/adam.py. Reference: rawgan/backend/reference/adam.py
// (Kingma & Ba 2015, Algorithm 1, eps placement of torch.optim.Adam).
//
// In place on 1-D float32 buffers p, g, m, v of length n:
//     m = beta1 * m + (1 - beta1) * g
//     v = beta2 * v + (1 - beta2) * g^2
//     p = p - step * m / (sqrt(v / bc2) + eps)
// Bias corrections are computed by the host from the step count t (Python floats, then float32):
//     step = lr / (1 - beta1^t),   bc2 = 1 - beta2^t
// exactly as the reference does, so the kernel needs no pow and stays bit-comparable.
#include "reduce.cuh"

// The update of element i (shared by both launch forms below, so they agree bit for bit).
__device__ __forceinline__ void adam_element(float* __restrict__ p, const float* __restrict__ g,
                                             float* __restrict__ m, float* __restrict__ v,
                                             long long i, float step, float beta1, float beta2,
                                             float bc2, float eps)
{
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] -= step * mi / (sqrtf(vi / bc2) + eps);
}

// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void adam_update(float* __restrict__ p, const float* __restrict__ g,
                                       float* __restrict__ m, float* __restrict__ v, long long n,
                                       float step, float beta1, float beta2, float bc2, float eps)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        adam_element(p, g, m, v, i, step, beta1, beta2, bc2, eps);
    }
}

// ---- device-side step count (a captured graph cannot take t as a host value) -----------------
// ONE launch per optimizer step: every block reads the step count t[0] and computes the bias
// corrections of t + 1 in double precision, rounded to float32 exactly as the host path above
// computes them (Python: lr / (1 - beta1**t), 1 - beta2**t):
//     step = lr / (1 - beta1^(t+1)),   bc2 = 1 - beta2^(t+1)
// then updates its grid-stride share of the elements (adam_element, as adam_update); the LAST
// block to finish (grid_last_block: a counter in `done`, reset to 0 for the next launch) writes
// t[0] = t + 1. Every block read t before it counted itself done, so no block can see the new t.
// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 (17 B static:
// corr, t0, last).
// Napkin math: the update's 16 B read + 12 B written per parameter (G: 5.1 M parameters, 144 MB:
// ~37 us at 4 TB/s, memory-bound); the per-block prologue is 2 pow() in double (~1 us, hidden).
// It replaces adam_begin_step (one thread) + adam_update_dev: one launch fewer per update.
extern "C" __global__ void adam_step_dev(float* __restrict__ p, const float* __restrict__ g,
                                         float* __restrict__ m, float* __restrict__ v, long long n,
                                         long long* __restrict__ t, unsigned int* __restrict__ done,
                                         double lr, double beta1, double beta2, float eps)
{
    __shared__ float corr[2];
    __shared__ long long t0;
    __shared__ bool last;
    if (threadIdx.x == 0) {
        t0 = t[0];
        const long long tt = t0 + 1;
        corr[0] = (float)(lr / (1.0 - pow(beta1, (double)tt)));
        corr[1] = (float)(1.0 - pow(beta2, (double)tt));
    }
    __syncthreads();
    const float step = corr[0], bc2 = corr[1];
    const float b1 = (float)beta1, b2 = (float)beta2;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        adam_element(p, g, m, v, i, step, b1, b2, bc2, eps);
    }
    if (grid_last_block(done, &last)) {
        if (threadIdx.x == 0) {
            t[0] = t0 + 1;
        }
    }
}
