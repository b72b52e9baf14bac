// loss.cu — sigmoid cross-entropy with logits, mean-reduced, forward and backward.
// Python launcher: rawgan/backend/cuda/loss.py. Reference: rawgan/backend/reference/loss.py.
//
//   l(x, t) = max(x, 0) - x * t + log1p(e^-|x|)       (finite for every finite x)
//   loss = mean over n elements;  d loss / d x = dloss * (sigmoid(x) - t) / n
//
// Targets: an array t[n] or, when t is a null pointer, the scalar t_scalar for every element
// (sigmoid_bce_with_logits_halves: one scalar target per half of the batch).
#include "reduce.cuh"

// Forward partner of sigmoid_bce_with_logits_backward. loss[0] = mean of l over n elements.
// Launch: grid = 1 (a single block writes the 0-d result; the logits of a GAN are (N, 1)),
// block = 256, shared_mem = 0 (32 floats static).
extern "C" __global__ void sigmoid_bce_with_logits_forward(
    const float* __restrict__ x, const float* __restrict__ t, float t_scalar,
    float* __restrict__ loss, long long n)
{
    __shared__ float scratch[32];
    float s = 0.0f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        const float target = t ? t[i] : t_scalar;
        s += fmaxf(v, 0.0f) - v * target + log1pf(expf(-fabsf(v)));
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        loss[0] = s / (float)n;
    }
}

// dx[i] = scale * (sigmoid(x[i]) - t[i]), scale = dloss / n computed by the host; if dloss_dev is
// not null, scale is further multiplied by the device scalar dloss_dev[0] (no host sync).
// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void sigmoid_bce_with_logits_backward(
    const float* __restrict__ x, const float* __restrict__ t, float t_scalar,
    const float* __restrict__ dloss_dev, float scale, float* __restrict__ dx, long long n)
{
    const float k = dloss_dev ? scale * dloss_dev[0] : scale;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        const float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        dx[i] = (sig - (t ? t[i] : t_scalar)) * k;
    }
}

// One block's share of the fused loss over n logits (collective: every thread of the block):
// dx[i] = scale * (sigmoid(x[i]) - t_i) written, and *loss_sum = sum of l, *sig_sum = sum of
// sigmoid returned to every thread (block_reduce_sum; same per-thread order and tree as
// sigmoid_bce_with_logits_forward and tensor.cu's sigmoid_mean at the same block size).
__device__ __forceinline__ void bce_fused_block(
    const float* __restrict__ x, const float* __restrict__ t, float t_scalar, float scale,
    float* __restrict__ dx, long long n, float* scratch, float* loss_sum, float* sig_sum)
{
    float s = 0.0f, q = 0.0f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        const float target = t ? t[i] : t_scalar;
        s += fmaxf(v, 0.0f) - v * target + log1pf(expf(-fabsf(v)));
        const float e = expf(-fabsf(v));
        const float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        dx[i] = (sig - target) * scale;
        q += sig;
    }
    *loss_sum = block_reduce_sum(s, scratch);
    *sig_sum = block_reduce_sum(q, scratch);
}

// The forward, the backward and the metric mean(sigmoid(x)) of one loss in ONE launch (the GAN
// step calls all three on the same (N, 1) logits; fused by rawgan.layers.SigmoidBCEWithLogits.
// forward_backward): loss[0] = mean of l, dx[i] = scale * (sigmoid(x[i]) - t[i]) (scale = dloss / n
// from the host), sig_mean[0] = mean of sigmoid(x). The same per-thread order and block tree as
// sigmoid_bce_with_logits_forward and tensor.cu's sigmoid_mean (block = 256), so the three results
// are bit-identical to the three separate kernels'.
// Launch: grid = 1, block = 256, shared_mem = 0 (32 floats static).
// Napkin math: n = 64 logits: reads 256 B, writes 264 B, ~30 FLOP/element — pure launch latency
// (~2-3 us per kernel on an H200), which is what fusing three launches into one saves.
extern "C" __global__ void sigmoid_bce_with_logits_fused(
    const float* __restrict__ x, const float* __restrict__ t, float t_scalar, float scale,
    float* __restrict__ loss, float* __restrict__ dx, float* __restrict__ sig_mean, long long n)
{
    __shared__ float scratch[32];
    float s, q;
    bce_fused_block(x, t, t_scalar, scale, dx, n, scratch, &s, &q);
    if (threadIdx.x == 0) {
        loss[0] = s / (float)n;
        sig_mean[0] = q / (float)n;
    }
}

// The fused loss of a batch made of two halves with their own scalar targets (the DCGAN's D step
// in one pass: real samples then fake ones, t0 = 1, t1 = 0): for each half h of n_half logits,
// loss_h[0] = mean of l over the half, dx[i] = scale * (sigmoid(x[i]) - t_h) (scale = dloss /
// n_half from the host: each half's mean is its own loss), sig_h[0] = mean of sigmoid over the
// half, and loss_sum[0] = loss_0 + loss_1 (d_loss). Per half, exactly the per-thread order and
// block tree of sigmoid_bce_with_logits_fused on that half (block = 256), and loss_sum is the
// float sum tensor.cu's add_scalars computes, so every output is bit-identical to two fused
// launches and an add_scalars.
// Launch: grid = 1, block = 256, shared_mem = 0 (32 floats static).
// Napkin math: 2 x 64 logits: reads 512 B, writes 532 B, ~30 FLOP/element — launch latency;
// replaces three launches (two fused + add_scalars) of the two-pass D step with one.
extern "C" __global__ void sigmoid_bce_with_logits_halves(
    const float* __restrict__ x, float t0, float t1, float scale, float* __restrict__ loss0,
    float* __restrict__ loss1, float* __restrict__ loss_sum, float* __restrict__ dx,
    float* __restrict__ sig0, float* __restrict__ sig1, long long n_half)
{
    __shared__ float scratch[32];
    float total = 0.0f;
    for (int h = 0; h < 2; ++h) {
        float s, q;
        bce_fused_block(x + h * n_half, nullptr, h ? t1 : t0, scale, dx + h * n_half, n_half,
                        scratch, &s, &q);
        if (threadIdx.x == 0) {
            const float l = s / (float)n_half;
            (h ? loss1 : loss0)[0] = l;
            (h ? sig1 : sig0)[0] = q / (float)n_half;
            total += l;                            // 0 + loss_0 is exact: loss_0 + loss_1
        }
    }
    if (threadIdx.x == 0) {
        loss_sum[0] = total;
    }
}
