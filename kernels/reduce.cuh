// reduce.cuh — warp- and block-wide float sums shared by the reduction kernels
// (bias.cu: bias gradient, batchnorm.cu: statistics and backward sums, loss.cu: mean loss), and
// the "last block done" pattern that folds a grid's partial sums in the same launch.
//
// Both functions are collective: every thread of the warp (warp_reduce_sum) or of the block
// (block_reduce_sum) must call them, with the same control flow. Block shape: 1-D, blockDim.x a
// multiple of 32 and <= 1024. `scratch` is a __shared__ float[32] owned by the caller; it may be
// reused by consecutive block_reduce_sum calls (barrier (A) protects the reuse).
#pragma once

// Butterfly sum over the 32 lanes of a warp: every lane returns the warp's total.
__device__ __forceinline__ float warp_reduce_sum(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// Sum of v over the block: every thread returns the block's total.
// Warp sums -> scratch[warp] -> every warp re-reduces the (<= 32) warp sums, so the total is
// broadcast without a third barrier.
__device__ __forceinline__ float block_reduce_sum(float v, float* scratch)
{
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int nwarps = blockDim.x / 32;
    v = warp_reduce_sum(v);
    __syncthreads();  // (A) every thread is done reading scratch from a previous call
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();  // (B) every warp's sum is in scratch
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_reduce_sum(v);
}

// Sum of count partial values p[0], p[stride], p[2*stride], ... in index order (one thread; the
// fixed order makes the 2-D reductions deterministic). Used by the *_combine kernels.
__device__ __forceinline__ float sum_partials(const float* __restrict__ p, int count, int stride)
{
    float s = 0.0f;
    for (int b = 0; b < count; ++b) {
        s += p[(long long)b * stride];
    }
    return s;
}

// "Last block done" (CUDA C++ Programming Guide, Memory Fence Functions): lets ONE launch both
// write per-block partial results and combine them, instead of a partial kernel + a combine kernel.
// Call it in every thread of a (1-D) block, after the block's partial results are stored in global
// memory (collective: it contains __syncthreads). Each block fences its stores (__threadfence) and
// then takes a ticket with atomicAdd(counter, 1); exactly one block — the nblocks-th to arrive,
// nblocks = every block of the grid — gets true (in all its threads) and may read every block's
// partials; it reads them through volatile loads (sum_partials_volatile: not from a stale L1
// line). That block also resets *counter to 0 (all nblocks have counted by then), so the next
// launch — or the next replay of a captured CUDA graph — starts from 0 again. The counter (one
// unsigned int per concurrently running launch; launches on one stream run one after the other)
// must be 0 before the first launch: rawgan/backend/cuda/common.workspace_counter zeroes it once
// when it is created. Deterministic when the winner combines the partials in a fixed order: which
// block arrives last varies, what it computes does not.
static __device__ __forceinline__ bool grid_last_block(unsigned int* counter, unsigned int nblocks)
{
    __shared__ bool is_last;
    __threadfence();  // this thread's partial stores are visible device-wide before the ticket
    __syncthreads();  // every thread of the block has stored and fenced
    if (threadIdx.x == 0) {
        const unsigned int ticket = atomicAdd(counter, 1u);
        is_last = ticket == nblocks - 1u;
        if (is_last) {
            *counter = 0u;  // every block has its ticket: ready for the next launch
        }
    }
    __syncthreads();
    return is_last;
}

// sum_partials for the block that grid_last_block chose: the same sum in the same index order
// (bit-identical), through volatile loads issued 8 at a time (independent loads in flight
// together, then the adds in order: ~count/8 L2 round trips instead of count).
__device__ __forceinline__ float sum_partials_volatile(const volatile float* p, int count, int stride)
{
    float s = 0.0f;
    int b = 0;
    for (; b + 8 <= count; b += 8) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            v[u] = p[(long long)(b + u) * stride];
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            s += v[u];
        }
    }
    for (; b < count; ++b) {
        s += p[(long long)b * stride];
    }
    return s;
}
