// tensor.cu — buffer kernels of a training step that keeps all its state on the device: fill,
// accumulate, the uint8 batch -> float conversion, and the scalar metrics (so a step never runs
// a CuPy elementwise kernel, never allocates, and can be captured as one CUDA graph).
// Python launcher: rawgan/backend/cuda/tensor.py. Reference: rawgan/backend/reference/tensor.py.
//
// Launch: grid-stride kernels (fill_f32, accumulate_f32, images_u8_to_float, concat_f32): grid =
// min(ceil(n / 256), block cap), block = 256, shared_mem = 0. sigmoid_mean: grid = 1, block = 256
// (32 floats of static shared memory). add_scalars: grid = 1, block = 32.
#include "reduce.cuh"

// a[i] = value (zero_grad: the flat gradient buffer in one launch).
extern "C" __global__ void fill_f32(float* __restrict__ a, float value, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        a[i] = value;
    }
}

// dst[i] += src[i] (a layer's parameter gradient accumulated over D's real and fake passes).
extern "C" __global__ void accumulate_f32(float* __restrict__ dst, const float* __restrict__ src, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        dst[i] += src[i];
    }
}

// out = a then b along the batch axis, as flat buffers: out[k] = k < na ? a[k] : b[k - na]
// (the DCGAN's D step: the real batch and G(z) as one batch of 2N for one pass of D).
// n = na + nb elements. Napkin math: 8 B per element (read + write), memory bound: the 2 x 64
// images of 3x64x64 (6.3 MB read, 6.3 MB written) are ~3 us at 4 TB/s.
extern "C" __global__ void concat_f32(const float* __restrict__ a, const float* __restrict__ b,
                                      float* __restrict__ out, long long na, long long n)
{
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        out[k] = k < na ? a[k] : b[k - na];
    }
}

// uint8 images (N, H, W, C) NHWC in 0..255 -> float32 x (N, C, H, W) NCHW in [-1, 1]:
// x = v / 127.5 - 1, IEEE float division then subtraction (no contraction possible), exactly the
// NumPy reference (rawgan.data.loader.to_float_nchw). One thread per output element, so
// neighbouring threads write neighbouring floats. n = N*C*H*W.
extern "C" __global__ void images_u8_to_float(const unsigned char* __restrict__ img, float* __restrict__ x,
                                              int N, int H, int W, int C)
{
    const long long n = (long long)N * C * H * W;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        const int w = (int)(k % W);
        const int h = (int)((k / W) % H);
        const int c = (int)((k / ((long long)W * H)) % C);
        const long long b = k / ((long long)W * H * C);
        const float v = (float)img[((b * H + h) * W + w) * C + c];
        x[k] = v / 127.5f - 1.0f;
    }
}

// out[0] = mean over n of sigmoid(x) (the metric D(x)); one block, fixed order: deterministic.
extern "C" __global__ void sigmoid_mean(const float* __restrict__ x, float* __restrict__ out, long long n)
{
    __shared__ float scratch[32];
    float s = 0.0f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        s += v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    s = block_reduce_sum(s, scratch);
    if (threadIdx.x == 0) {
        out[0] = s / (float)n;
    }
}

// out[0] = a[0] + b[0] (d_loss = d_loss_real + d_loss_fake on the device).
extern "C" __global__ void add_scalars(const float* __restrict__ a, const float* __restrict__ b,
                                       float* __restrict__ out)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = a[0] + b[0];
    }
}
