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
// t[0] += 1, then the bias corrections of the new t in double precision, rounded to float32
// exactly as the host path above computes them (Python: lr / (1 - beta1**t), 1 - beta2**t):
//     scal[0] = step = lr / (1 - beta1^t),   scal[1] = bc2 = 1 - beta2^t
// Launch: grid = 1, block = 32, shared_mem = 0 (thread 0 works). Partner: adam_update_dev.
extern "C" __global__ void adam_begin_step(long long* __restrict__ t, float* __restrict__ scal,
                                           double lr, double beta1, double beta2)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const long long tt = t[0] + 1;
        t[0] = tt;
        scal[0] = (float)(lr / (1.0 - pow(beta1, (double)tt)));
        scal[1] = (float)(1.0 - pow(beta2, (double)tt));
    }
}

// adam_update with step and bc2 read from the device (scal[0], scal[1], written by
// adam_begin_step). Same arithmetic as adam_update, element for element.
// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void adam_update_dev(float* __restrict__ p, const float* __restrict__ g,
                                           float* __restrict__ m, float* __restrict__ v, long long n,
                                           const float* __restrict__ scal, float beta1, float beta2,
                                           float eps)
{
    const float step = scal[0], bc2 = scal[1];
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        adam_element(p, g, m, v, i, step, beta1, beta2, bc2, eps);
    }
}
