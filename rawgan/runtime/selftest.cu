// selftest.cu — small kernels that exercise the CUDA features the emulator supports.
// Used only by tests/test_emulator.py and tests/test_nvrtc.py, never by the framework.

// Launch: grid = ceil(n / blockDim.x) (any grid works: grid-stride loop), block = any 1-D.
// y[i] = a * x[i] + y[i]
extern "C" __global__ void saxpy(const float* __restrict__ x, float* __restrict__ y, float a, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = a * x[i] + y[i];
    }
}

// Launch: grid = number of partial sums wanted, block = 256 (fixed: static shared array).
// partial[blockIdx.x] = sum of the elements this block visits in a grid-stride loop.
// Tree reduction in shared memory; the __syncthreads() marked (A) and (B) are both required.
extern "C" __global__ void block_sum(const float* __restrict__ x, float* __restrict__ partial, int n)
{
    __shared__ float buf[256];
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        acc += x[i];
    }
    buf[threadIdx.x] = acc;
    __syncthreads();  // (A)
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            buf[threadIdx.x] += buf[threadIdx.x + s];
        }
        __syncthreads();  // (B)
    }
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = buf[0];
    }
}

// Launch: grid = any, block = a multiple of 32 (<= 1024), shared_mem = 0.
// out[blockIdx.x] = sum over this block's grid-stride elements, in double precision.
// Warp-shuffle reduction, then one value per warp through a small shared array.
extern "C" __global__ void warp_sum(const float* __restrict__ x, double* __restrict__ partial, int n)
{
    __shared__ double warp_totals[32];
    double acc = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        acc += (double)x[i];
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }
    const int lane = threadIdx.x % warpSize;
    const int warp = threadIdx.x / warpSize;
    if (lane == 0) {
        warp_totals[warp] = acc;
    }
    __syncthreads();
    if (warp == 0) {
        const int nwarps = blockDim.x / warpSize;
        double v = lane < nwarps ? warp_totals[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) {
            v += __shfl_xor_sync(0xffffffffu, v, offset);
        }
        if (lane == 0) {
            partial[blockIdx.x] = v;
        }
    }
}

// Launch: grid = any, block = any 1-D, shared_mem = blockDim.x * sizeof(float).
// y[i] = x[block_start + (blockDim.x - 1 - threadIdx.x)]: reverses each block-sized chunk
// (the last, partial chunk is reversed within its valid length) through dynamic shared memory.
extern "C" __global__ void reverse_chunks(const float* __restrict__ x, float* __restrict__ y, int n)
{
    extern __shared__ float chunk[];
    const int start = blockIdx.x * blockDim.x;
    const int len = min((int)blockDim.x, n - start);
    const int t = threadIdx.x;
    if (t < len) {
        chunk[t] = x[start + t];
    }
    __syncthreads();
    if (t < len) {
        y[start + t] = chunk[len - 1 - t];
    }
}

// Launch: grid = any, block = any 1-D. *total += sum(x) (double), counts[x_bin[i]] += 1.
extern "C" __global__ void atomic_accumulate(const float* __restrict__ x, const int* __restrict__ bins,
                                             double* total, unsigned int* counts, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        atomicAdd(total, (double)x[i]);
        atomicAdd(&counts[bins[i]], 1u);
    }
}

// Launch: grid = (ceil(w / bx), ceil(h / by)), block = (bx, by). out[r, c] = in[c, r] for an
// h x w input (out is w x h); a 2-D grid with a 32x33 shared tile (the +1 avoids bank conflicts).
extern "C" __global__ void transpose(const float* __restrict__ in, float* __restrict__ out, int h, int w)
{
    __shared__ float tile[32][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int r0 = blockIdx.y * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        if (r0 + r < h && c < w) {
            tile[r][threadIdx.x] = in[(long long)(r0 + r) * w + c];
        }
    }
    __syncthreads();
    const int oc = blockIdx.y * 32 + threadIdx.x;  // column of out = row of in
    const int or0 = blockIdx.x * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        if (or0 + r < w && oc < h) {
            out[(long long)(or0 + r) * h + oc] = tile[threadIdx.x][r];
        }
    }
}

// Launch: grid = (gx, gy, gz), block = (bx, by, bz). Each thread writes its global linear id
// into ids[linear] where linear follows x fastest; used to check 3-D index built-ins.
extern "C" __global__ void write_ids(unsigned int* ids, unsigned long long total)
{
    const unsigned int tx = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int ty = blockIdx.y * blockDim.y + threadIdx.y;
    const unsigned int tz = blockIdx.z * blockDim.z + threadIdx.z;
    const unsigned int nx = gridDim.x * blockDim.x, ny = gridDim.y * blockDim.y;
    const unsigned long long linear = ((unsigned long long)tz * ny + ty) * nx + tx;
    if (linear < total) {
        ids[linear] = (unsigned int)linear;
    }
}

// Launch: grid = ceil(n / 256), block = 256. out[i] = exercises math intrinsics on x[i] > 0.
extern "C" __global__ void math_mix(const float* __restrict__ x, float* __restrict__ out, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const float v = __ldg(&x[i]);
    float r = expf(-v) + logf(v) + log1pf(v) + tanhf(v) + sqrtf(v) + rsqrtf(v);
    r += fmaxf(v, 0.5f) - fminf(v, 0.5f) + fabsf(-v) + __expf(-v) + __logf(v) + __fdividef(v, 3.0f);
    r += cosf(v) + sinf(v) + (float)__float2int_rn(v) + (float)max(i % 3, 1) + min(v, 2.0f);
    r += __uint_as_float(__float_as_uint(v)) + (float)(__umulhi(0x80000000u, 6u));
    r += (float)(exp((double)v) - log((double)v) + sqrt((double)v) + tanh((double)v));
    out[i] = isinf(r) ? __int_as_float(0x7fffffff) : r;  // NaN (NVRTC has no NAN macro)
}

// Launch: block = 32k threads, grid = any. Counts set bits of a per-lane predicate with a
// ballot and checks __shfl_sync / __shfl_up_sync: out[i] = popc(ballot(x>0)) * 1000 +
// shfl(x, lane 0) * 0 + up-shuffled inclusive prefix count of (x > 0) within the warp.
extern "C" __global__ void warp_ops(const float* __restrict__ x, int* __restrict__ out, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    const int p = (i < n && x[i] > 0.0f) ? 1 : 0;
    const unsigned int ballot = __ballot_sync(0xffffffffu, p);
    int prefix = p;
    for (int d = 1; d < 32; d <<= 1) {
        const int other = __shfl_up_sync(0xffffffffu, prefix, d);
        if (lane >= d) {
            prefix += other;
        }
    }
    const int first = __shfl_sync(0xffffffffu, i, 0);
    if (i < n) {
        out[i] = __popc(ballot) * 1000 + prefix + (first == i - lane ? 0 : 100000);
    }
}

// Launch: any. Threads with threadIdx.x < k return early and the rest wait at a barrier:
// barrier divergence (undefined behaviour in CUDA); the emulator must report it, not hang.
extern "C" __global__ void divergent_barrier(float* y, int k)
{
    if ((int)threadIdx.x < k) {
        return;
    }
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}
