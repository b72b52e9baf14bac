// batchnorm.cu — batch normalization: training forward (statistics + running update), eval
// forward, and one fused backward for both modes.
// Python launcher: rawgan/backend/cuda/batchnorm.py. Reference: rawgan/backend/reference/batchnorm.py
// (Ioffe & Szegedy 2015, Algorithm 1 and §3).
//
// Layout: x is (N, C, HW) contiguous float32: NCHW with HW = H*W, or (N, F) with HW = 1.
// Channel c's M = N*HW elements are x[(n*C + c)*HW + i]; element j of the channel is
// (n, i) = (j / HW, j % HW).
//
// Reduction kernels (forward_train, backward): grid = C (one block per channel), block = 32..256
// threads (a multiple of 32; the launcher picks the smallest that covers M, capped at 256),
// shared_mem = 0 (32 floats of static shared memory for block_reduce_sum).
#include "reduce.cuh"

__device__ __forceinline__ long long bn_index(int j, int c, int C, int HW)
{
    const int n = j / HW, i = j - n * HW;
    return ((long long)n * C + c) * HW + i;
}

// Training forward. Two passes over the channel (mean, then the biased variance of x - mean, as
// the reference computes it), then y = (x - mean) * invstd * gamma + beta.
// Writes save_mean[c], save_invstd[c] = 1/sqrt(var + eps) for the backward, and updates
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * (unbiased ? var * M/(M-1) : var)
// Backward partner: batchnorm_backward with train = 1.
extern "C" __global__ void batchnorm_forward_train(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ running_mean, float* __restrict__ running_var,
    float* __restrict__ y, float* __restrict__ save_mean, float* __restrict__ save_invstd,
    int N, int C, int HW, float momentum, float eps, int unbiased)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int M = N * HW;

    float s = 0.0f;
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        s += x[bn_index(j, c, C, HW)];
    }
    const float mean = block_reduce_sum(s, scratch) / (float)M;

    float q = 0.0f;
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        const float d = x[bn_index(j, c, C, HW)] - mean;
        q += d * d;
    }
    const float var = block_reduce_sum(q, scratch) / (float)M;
    const float invstd = 1.0f / sqrtf(var + eps);

    const float g = gamma[c], b = beta[c];
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        const long long k = bn_index(j, c, C, HW);
        y[k] = (x[k] - mean) * invstd * g + b;
    }
    if (threadIdx.x == 0) {
        save_mean[c] = mean;
        save_invstd[c] = invstd;
        const float var_run = (unbiased && M > 1) ? var * ((float)M / (float)(M - 1)) : var;
        running_mean[c] = running_mean[c] * (1.0f - momentum) + momentum * mean;
        running_var[c] = running_var[c] * (1.0f - momentum) + momentum * var_run;
    }
}

// Eval forward with the running statistics: y = (x - running_mean) * (gamma / sqrt(running_var + eps)) + beta.
// Launch: grid = min(ceil(N*C*HW / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
// Backward partner: batchnorm_backward with train = 0.
extern "C" __global__ void batchnorm_forward_eval(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const float* __restrict__ running_mean, const float* __restrict__ running_var,
    float* __restrict__ y, int C, int HW, float eps, long long total)
{
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((k / HW) % C);
        const float scale = gamma[c] * (1.0f / sqrtf(running_var[c] + eps));
        y[k] = (x[k] - running_mean[c]) * scale + beta[c];
    }
}

// Fused backward, both modes, with M = N*HW and xhat = (x - mean) * invstd:
//   dbeta[c]  = sum dy,   dgamma[c] = sum dy * xhat
//   train = 1: mean = save_mean, invstd = stat (= save_invstd from the training forward),
//              dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)
//   train = 0: mean = running_mean, invstd = 1/sqrt(stat + eps) (stat = running_var),
//              dx = dy * gamma * invstd   (the statistics are constants)
// Two passes: the two sums (one block_reduce_sum each), then dx.
extern "C" __global__ void batchnorm_backward(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean, const float* __restrict__ stat, float eps, int train,
    float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
    int N, int C, int HW)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int M = N * HW;
    const float mu = mean[c];
    const float invstd = train ? stat[c] : 1.0f / sqrtf(stat[c] + eps);

    float sdy = 0.0f, sdyx = 0.0f;
    for (int j = threadIdx.x; j < M; j += blockDim.x) {
        const long long k = bn_index(j, c, C, HW);
        const float g = dy[k];
        sdy += g;
        sdyx += g * ((x[k] - mu) * invstd);
    }
    const float db = block_reduce_sum(sdy, scratch);
    const float dg = block_reduce_sum(sdyx, scratch);

    const float gam = gamma[c];
    if (train) {
        const float k0 = gam * invstd / (float)M;
        for (int j = threadIdx.x; j < M; j += blockDim.x) {
            const long long k = bn_index(j, c, C, HW);
            const float xhat = (x[k] - mu) * invstd;
            dx[k] = k0 * ((float)M * dy[k] - db - xhat * dg);
        }
    } else {
        const float k0 = gam * invstd;
        for (int j = threadIdx.x; j < M; j += blockDim.x) {
            const long long k = bn_index(j, c, C, HW);
            dx[k] = dy[k] * k0;
        }
    }
    if (threadIdx.x == 0) {
        dgamma[c] = dg;
        dbeta[c] = db;
    }
}
