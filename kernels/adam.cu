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
// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void adam_update(float* __restrict__ p, const float* __restrict__ g,
                                       float* __restrict__ m, float* __restrict__ v, long long n,
                                       float step, float beta1, float beta2, float bc2, float eps)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const float gi = g[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi / bc2) + eps);
    }
}
