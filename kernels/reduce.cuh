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
// fixed order makes the 2-D reductions deterministic). Used by the former *_combine kernels kept in
// bench/kernels (bias.py, batchnorm.py v2); the last-block folds use sum_partials_volatile below.
__device__ __forceinline__ float sum_partials(const float* __restrict__ p, int count, int stride)
{
    float s = 0.0f;
    for (int b = 0; b < count; ++b) {
        s += p[(long long)b * stride];
    }
    return s;
}

// "Last block done" (CUDA Programming Guide, memory fence functions; the threadFenceReduction
// sample): collective over the block, true in every thread of the one block that finishes last
// in a grid of gridDim.x * gridDim.y * gridDim.z blocks. That block may then read what every other
// block wrote before calling this (their writes are fenced before they count themselves done)
// and combine it in a fixed order — so a partial-sum reduction and its combine, or an update and
// a state advance that must follow it, are ONE launch. `counter` is a device unsigned int that is
// 0 before the launch; the last block resets it to 0, so the next launch (or graph replay) finds
// it ready. All kernels sharing one counter must run in stream order (never concurrently).
// `last` is a __shared__ bool of the calling kernel (a __shared__ variable inside a header's
// inline function would be one per translation unit on the emulator, not one per kernel).
__device__ __forceinline__ bool grid_last_block(unsigned int* counter, bool* last_flag)
{
    bool& last = *last_flag;
    __syncthreads();                       // the block's own writes are done
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
        __threadfence();                   // ... and visible to every other block
        const unsigned int total = gridDim.x * gridDim.y * gridDim.z;
        last = atomicAdd(counter, 1u) == total - 1u;
        if (last) {
            counter[0] = 0u;               // ready for the next launch
        }
    }
    __syncthreads();
    if (last) {
        __threadfence();                   // see the other blocks' writes
    }
    return last;
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
