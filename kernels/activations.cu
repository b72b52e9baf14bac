// activations.cu — pointwise activations, forward and backward side by side.
// Python launcher: rawgan/backend/cuda/activations.py. Reference: rawgan/backend/reference/activations.py.
//
// Launch (every kernel here): grid = min(ceil(n / 256), the runtime's block cap), block = 256,
// shared_mem = 0. Grid-stride loops, so any grid covers any n. float32, contiguous, any shape
// (flattened to n elements). Backward kernels take what their forward saved: y for ReLU, tanh
// and sigmoid; x for LeakyReLU (or y, the same sign for slope > 0, when a bias was folded in).

// ---- ReLU -----------------------------------------------------------------------------------
// y = max(x, 0)
extern "C" __global__ void relu_forward(const float* __restrict__ x, float* __restrict__ y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = fmaxf(x[i], 0.0f);
    }
}

// dx = dy * [y > 0]   (subgradient 0 at 0)
extern "C" __global__ void relu_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                         float* __restrict__ dx, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

// ---- LeakyReLU ------------------------------------------------------------------------------
// y = v if v > 0 else slope * v,  v = x + bias[c]  (c = (i / HW) % C, the channel of NCHW
// element i) when bias is not null, else v = x: a convolution's bias folded into its activation
// (rawgan.layers.fold_bias_into_act), one read and one write instead of bias_add's extra pass.
extern "C" __global__ void leaky_relu_forward(const float* __restrict__ x,
                                              const float* __restrict__ bias, float* __restrict__ y,
                                              float slope, int C, int HW, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float v = bias ? x[i] + bias[(int)((i / HW) % C)] : x[i];
        y[i] = v > 0.0f ? v : v * slope;
    }
}

// dx = dy if x > 0 else slope * dy
extern "C" __global__ void leaky_relu_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                               float* __restrict__ dx, float slope, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
    }
}

// ---- Tanh -----------------------------------------------------------------------------------
// y = tanh(x)
extern "C" __global__ void tanh_forward(const float* __restrict__ x, float* __restrict__ y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = tanhf(x[i]);
    }
}

// dx = dy * (1 - y^2)
extern "C" __global__ void tanh_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                         float* __restrict__ dx, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float v = y[i];
        dx[i] = dy[i] * (1.0f - v * v);
    }
}

// ---- Sigmoid --------------------------------------------------------------------------------
// y = 1 / (1 + e^-x) without overflow: e = e^-|x| <= 1, y = 1/(1+e) (x >= 0) or e/(1+e) (x < 0)
extern "C" __global__ void sigmoid_forward(const float* __restrict__ x, float* __restrict__ y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        y[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

// dx = dy * y * (1 - y)
extern "C" __global__ void sigmoid_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                            float* __restrict__ dx, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float v = y[i];
        dx[i] = dy[i] * v * (1.0f - v);
    }
}
