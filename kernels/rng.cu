// rng.cu — Philox4x32-10 counter-based random numbers for the latent z: uniform and normal.
// Python launcher: rawgan/backend/cuda/rng.py. Reference: rawgan/backend/reference/rng.py.
// Source: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11); constants of
// Random123 / cuRAND Philox4_32_10.
//
// Element i of a draw with state (seed, offset) is Philox4x32-10 of the counter
// (lo(i), hi(i), lo(offset), hi(offset)) under the key (lo(seed), hi(seed)).
#include "reduce.cuh"
// The integer words are exact. The uniform is (word0 >> 8) * 2^-24 (exact in float32), then
// low + (high - low) * u with explicitly rounded __fadd_rn/__fmul_rn, so FMA contraction cannot
// change it: bit-exact with the NumPy reference. The normal (Box-Muller) agrees to float32
// rounding of logf/cosf/sqrtf.
//
// Launch (both kernels): grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0
// (dynamic; 1 B static: grid_last_block's flag)
// (grid-stride over the n outputs).

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

struct Philox4 { unsigned int w0, w1, w2, w3; };

__device__ __forceinline__ Philox4 philox4x32_10(unsigned long long i, unsigned long long seed,
                                                 unsigned long long offset)
{
    unsigned int c0 = (unsigned int)i, c1 = (unsigned int)(i >> 32);
    unsigned int c2 = (unsigned int)offset, c3 = (unsigned int)(offset >> 32);
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        const unsigned int hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        const unsigned int hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        const unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return Philox4{c0, c1, c2, c3};
}

// 24 high bits of a word -> float in [0, 1) (plus_one: (0, 1]); exact.
__device__ __forceinline__ float philox_unit(unsigned int word, int plus_one)
{
    return (float)((word >> 8) + (plus_one ? 1u : 0u)) * 5.9604644775390625e-08f;  // 2^-24
}

// Element i of a draw (shared by the host-offset and device-offset kernels below).
// uniform: low + (high - low) * u,  u = unit(word0) in [0, 1)
__device__ __forceinline__ float uniform_at(long long i, unsigned long long seed,
                                            unsigned long long offset, float low, float high)
{
    const Philox4 r = philox4x32_10((unsigned long long)i, seed, offset);
    return __fadd_rn(low, __fmul_rn(__fadd_rn(high, -low), philox_unit(r.w0, 0)));
}

// normal (Box-Muller): mean + std * sqrt(-2 ln u1) * cos(2 pi u2),  u1 = unit(word0) + 2^-24 in
// (0, 1], u2 = unit(word1) in [0, 1)
__device__ __forceinline__ float normal_at(long long i, unsigned long long seed,
                                           unsigned long long offset, float mean, float std)
{
    const float two_pi = 6.28318530717958647692f;
    const Philox4 r = philox4x32_10((unsigned long long)i, seed, offset);
    const float u1 = philox_unit(r.w0, 1), u2 = philox_unit(r.w1, 0);
    const float z = sqrtf(-2.0f * logf(u1)) * cosf(__fmul_rn(two_pi, u2));
    return __fadd_rn(mean, __fmul_rn(std, z));
}

// The stream position is the host value `offset`, or, when `offset_dev` is not null, the device
// value offset_dev[0] (a captured graph cannot take it from the host: TrainStep keeps it there),
// which the draw then advances by n itself: the last block to finish (grid_last_block, counter
// `done`, may be null without offset_dev) writes offset + n — one launch per draw, not two.
// Launch: grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0 dynamic (grid-stride).
// Napkin: 4 B written per value, ~10 rounds of 32-bit multiplies: write-bound.

// out[i] = low + (high - low) * u_i,  u_i = unit(word0)
extern "C" __global__ void philox_uniform(float* __restrict__ out, long long n,
                                          unsigned long long seed, unsigned long long offset,
                                          unsigned long long* __restrict__ offset_dev,
                                          unsigned int* __restrict__ done, float low, float high)
{
    const unsigned long long off = offset_dev ? offset_dev[0] : offset;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        out[i] = uniform_at(i, seed, off, low, high);
    }
    if (offset_dev) {                                 // uniform over the grid: every block takes it
        __shared__ bool last;
        if (grid_last_block(done, &last) && threadIdx.x == 0) {
            offset_dev[0] = off + (unsigned long long)n;   // the next draw starts after this one
        }
    }
}

// out[i] = mean + std * sqrt(-2 ln u1) * cos(2 pi u2),  u1 = unit(word0) + 2^-24 in (0, 1],
// u2 = unit(word1) in [0, 1)
extern "C" __global__ void philox_normal(float* __restrict__ out, long long n,
                                         unsigned long long seed, unsigned long long offset,
                                         unsigned long long* __restrict__ offset_dev,
                                         unsigned int* __restrict__ done, float mean, float std)
{
    const unsigned long long off = offset_dev ? offset_dev[0] : offset;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        out[i] = normal_at(i, seed, off, mean, std);
    }
    if (offset_dev) {                                 // uniform over the grid: every block takes it
        __shared__ bool last;
        if (grid_last_block(done, &last) && threadIdx.x == 0) {
            offset_dev[0] = off + (unsigned long long)n;   // the next draw starts after this one
        }
    }
}
