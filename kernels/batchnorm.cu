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
//
// 2-D reductions (the *_2d / *_apply kernels at the end of the file): when C blocks cannot fill
// the GPU (C = 64 channels of M = 65,536 elements use 64 of the H200's 132 SMs), each channel is
// split into `chunks` row-chunks of `chunk` consecutive elements j, one block per (channel,
// chunk): grid = (C, chunks). Each block writes its partial result to a workspace,
// partial[(c * chunks + b) * 2 + {0, 1}]; the grid's last block to finish ("last block done",
// reduce.cuh grid_last_block) folds the chunks in index order, one thread per channel, in the
// same launch; an *_apply kernel (a second launch: it needs the combined statistics grid-wide)
// writes y (grid-stride) or dx (on the same (C, chunks) grid). Two launches (a separate combine
// kernel made three until issue 9).
// Deterministic: every partial is a fixed per-thread order + the fixed block_reduce_sum tree, and
// the fold order is fixed, so repeated runs are bit-identical whatever the block schedule.
// The launcher (rawgan/backend/cuda/batchnorm.py) chooses between the two forms with the cost
// model of common.reduction_chunks.
//
// Napkin math (float32, M = N*HW per channel, C channels, E = C*M elements):
//   forward_train (one block per channel):  reads x 3 times, writes y: 16*E bytes, ~5 FLOP/elt;
//   2-D: stats_2d reads x twice, apply reads x + writes y: the same 16*E bytes, plus
//        C*chunks*8 bytes of partials and one atomic per block (negligible) and one extra
//        launch; the last block's fold is C*chunks*2 floats read by one block (~chunks/8 L2
//        round trips per channel thread, ~0.15 us each, on the critical path; what the former
//        combine kernel's loop cost, minus its ~3 us launch).
//   backward (train): reads dy, x twice, writes dx: 20*E bytes, ~10 FLOP/elt; 2-D: the same
//        (backward_sums_2d reads dy, x; backward_apply reads dy, x, writes dx), one extra launch.
// All are memory bound (<= 0.6 FLOP/byte, far below the H200's ~14 FLOP/byte FP32 balance), so
// the bound is 16*E / 4.8 TB/s when enough blocks stream at once: G's 64-channel BN at batch 64
// (E = 4.2 M) is 14 us at peak bandwidth, ~170 us when 64 single blocks stream alone.
//
// Fused activation (issue 9: fewer, fatter kernels). Every kernel that writes y applies an
// activation after the affine step, and every backward kernel multiplies dy by the activation's
// derivative before the BN backward, so BatchNorm + ReLU/LeakyReLU is one op (BatchNormAct):
//   act = 0: identity,  y = z                 g = dy
//   act = 1: ReLU,      y = max(z, 0)         g = dy * [y > 0]
//   act = 2: LeakyReLU, y = z > 0 ? z : s*z   g = y > 0 ? dy : s*dy    (slope s > 0, so y > 0
//                                                                      exactly when z > 0)
// where z = (x - mean) * invstd * gamma + beta and y is the op's saved output (so the backward
// needs no extra buffer). act = 0 with y = null is the plain BatchNorm. Costs nothing extra:
// the forward writes y once either way; the backward reads y in the place of the separate
// activation-backward kernel's dy/y read and dx write (saves 12*E bytes and a launch per layer).
//
// Gradient outputs (dgamma, dbeta) are the parameter gradients themselves (views of the flat
// gradient buffer): accumulate = 0 writes them, accumulate = 1 adds to them (D's fake pass
// after its real pass, in the two-pass D step) — no separate accumulate/fill kernels.
// dbias (nullable, the kernels that write dx): the gradient of the previous layer's bias folded
// into BN (in_bias below; rawgan/layers/batchnorm.py fold_bias_into_bn), sum of dx per channel,
// summed as dx is written (one-block: one more block_reduce_sum; 2-D: per-block partials folded
// by batchnorm_backward_apply's last block) — saves the producer's bias_grad launch (4*E bytes).
//
// Ghost batches (G >= 1, training mode; Hoffer et al. 2017; rawgan/backend/reference/batchnorm.py):
// the batch axis is split into G equal consecutive sub-batches of N/G samples (Mg = M/G elements
// per channel), each normalised with its own statistics — exactly G separate launches, in one.
// Saved statistics are indexed s = g*C + c (a (G, C) array), the running statistics are updated
// once per sub-batch in order g = 0, 1, ..., and dgamma/dbeta get sub-batch 0's sums written (or
// added, per accumulate) and the others' added. The DCGAN's D runs its real and fake halves as
// one batch of 2N with G = 2 (one pass instead of two, the same values). Without extra launches:
//   one block per channel: grid = C, the block loops over g (stats, y or dx, running update);
//   2-D: the *_2d grid is (C*G, chunks) over the sub-batches (blockIdx.x = g*C + c, chunks of
//        each sub-batch's Mg elements), the last block's fold is one thread per channel looping g
//        in order, the apply reads the statistics of (g, c), g = n / (N/G).
// With the same block size / chunk count, every value is bit-identical to G separate launches
// (the same per-thread order and reduction tree over each sub-batch, the same fold order).
// Napkin math: unchanged per element (the bytes and FLOPs of the G separate passes, minus G - 1
// launches per kernel; the one-block form's C blocks each stream G sub-batches in turn).
#include "reduce.cuh"

// The activation after BN (see above).
__device__ __forceinline__ float bn_act(float z, int act, float slope)
{
    return act == 0 ? z : (z > 0.0f ? z : (act == 1 ? 0.0f : slope * z));
}

// dy times the activation's derivative, read from the saved output y[k] (act != 0 only).
__device__ __forceinline__ float bn_act_grad(const float* __restrict__ dy,
                                             const float* __restrict__ y, long long k, int act,
                                             float slope)
{
    const float g = dy[k];
    return act == 0 ? g : (y[k] > 0.0f ? g : (act == 1 ? 0.0f : slope * g));
}

// The previous layer's bias folded in (in_bias, nullable; forward_train and stats_2d): the
// input is x + in_bias[c] per channel, but the bias is never added. Exact, because BN is
// shift-invariant: mean(x + b) = mean(x) + b and the variance, x - mean and so y and the saved
// statistics (save_mean = mean(x), for the backward on x) do not change; only the running mean,
// which tracks mean(x + b), gets + b. The bias gradient stays the producer's (sum of BN's dx).
// Saves the producer's bias_add launch (8*E bytes) in every training forward.

// dgamma/dbeta written (accumulate = 0) or added to (accumulate = 1).
__device__ __forceinline__ void write_grad(float* __restrict__ out, float v, int accumulate)
{
    *out = accumulate ? *out + v : v;
}

__device__ __forceinline__ long long bn_index(int j, int c, int C, int HW)
{
    const int n = j / HW, i = j - n * HW;
    return ((long long)n * C + c) * HW + i;
}

// The two sums of the BN backward over rows [j0, j1) of channel c, block-reduced (every thread
// gets them): db = sum g, dg = sum g * xhat with g = dy * act'(y) and xhat = (x - mu) * invstd.
// Shared by the one-block backward and the 2-D backward's partial pass.
__device__ __forceinline__ void bn_backward_sums(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ y,
    int act, float slope, int c, int C, int HW, int j0, int j1, float mu, float invstd,
    float* scratch, float* db, float* dg)
{
    float sdy = 0.0f, sdyx = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const long long k = bn_index(j, c, C, HW);
        const float g = bn_act_grad(dy, y, k, act, slope);
        sdy += g;
        sdyx += g * ((x[k] - mu) * invstd);
    }
    *db = block_reduce_sum(sdy, scratch);
    *dg = block_reduce_sum(sdyx, scratch);
}

// Channel c's batch statistics for the backward pass (save_mean, save_invstd at index s = g*C + c
// for ghost batch g) and the momentum update of the running statistics (running_var unbiased by
// M/(M-1) if asked; the running mean also takes a conv bias folded out of the forward, in_bias,
// which the batch mean cancelled). Shared by the one-block and the 2-D training forwards.
__device__ __forceinline__ void bn_store_stats(
    int c, int s, float mean, float var, float invstd, int M, float momentum, int unbiased,
    const float* __restrict__ in_bias, float* __restrict__ save_mean,
    float* __restrict__ save_invstd, float* __restrict__ running_mean,
    float* __restrict__ running_var)
{
    save_mean[s] = mean;
    save_invstd[s] = invstd;
    const float var_run = (unbiased && M > 1) ? var * ((float)M / (float)(M - 1)) : var;
    const float shift = in_bias ? in_bias[c] : 0.0f;
    running_mean[c] = running_mean[c] * (1.0f - momentum) + momentum * (mean + shift);
    running_var[c] = running_var[c] * (1.0f - momentum) + momentum * var_run;
}

// Training forward. Two passes over the channel (mean, then the biased variance of x - mean, as
// the reference computes it), then y = act((x - mean) * invstd * gamma + beta).
// Writes save_mean[c], save_invstd[c] = 1/sqrt(var + eps) for the backward, and updates
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * (unbiased ? var * M/(M-1) : var)
// With G ghost batches (G divides N) the block does all of this for each sub-batch of
// Mg = (N/G)*HW elements in turn, g = 0 first: statistics at s = g*C + c, G running updates.
// Backward partner: batchnorm_backward with train = 1.
extern "C" __global__ void batchnorm_forward_train(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ running_mean, float* __restrict__ running_var,
    float* __restrict__ y, float* __restrict__ save_mean, float* __restrict__ save_invstd,
    int N, int C, int HW, float momentum, float eps, int unbiased, int act, float slope,
    const float* __restrict__ in_bias, int G)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int Mg = (N / G) * HW;                 // elements of channel c per ghost batch
    const float gam = gamma[c], b = beta[c];

    for (int g = 0; g < G; ++g) {
        const int j0 = g * Mg, j1 = j0 + Mg;     // this sub-batch's rows of the channel
        float s = 0.0f;
        for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            s += x[bn_index(j, c, C, HW)];
        }
        const float mean = block_reduce_sum(s, scratch) / (float)Mg;

        float q = 0.0f;
        for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            const float d = x[bn_index(j, c, C, HW)] - mean;
            q += d * d;
        }
        const float var = block_reduce_sum(q, scratch) / (float)Mg;
        const float invstd = 1.0f / sqrtf(var + eps);

        for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            const long long k = bn_index(j, c, C, HW);
            y[k] = bn_act((x[k] - mean) * invstd * gam + b, act, slope);
        }
        if (threadIdx.x == 0) {                  // g in order: the running update of G launches
            bn_store_stats(c, g * C + c, mean, var, invstd, Mg, momentum, unbiased, in_bias,
                           save_mean, save_invstd, running_mean, running_var);
        }
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
// Two passes: the two sums (one block_reduce_sum each), then dx. With G ghost batches (train = 1
// only; eval passes G = 1) the block does this for each sub-batch of Mg = (N/G)*HW elements in
// turn, with its statistics mean/stat[g*C + c]; sub-batch 0 writes (or adds, per accumulate)
// dgamma/dbeta, the others add — as G launches would.
// dbias (nullable): the gradient of a bias folded into BN's input (dbias[c] = sum of dx over the
// whole channel, all G sub-batches: each thread sums the dx it writes, one block_reduce_sum at
// the end), written (dbias_accumulate = 0) or added to (1). Replaces the producer's bias_grad
// launch (rawgan/layers/batchnorm.py fold_bias_into_bn); mathematically 0, since BN subtracts
// the mean, so it is the sum of dx's rounding — as the separate launch computed it.
extern "C" __global__ void batchnorm_backward(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean, const float* __restrict__ stat, float eps, int train,
    const float* __restrict__ y, int act, float slope,
    float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
    int N, int C, int HW, int accumulate, int G, float* __restrict__ dbias, int dbias_accumulate)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    const int Mg = (N / G) * HW;                 // elements of channel c per ghost batch
    const float gam = gamma[c];
    float sdx = 0.0f;                            // this thread's sum of the dx it writes

    for (int g = 0; g < G; ++g) {
        const int j0 = g * Mg, j1 = j0 + Mg;     // this sub-batch's rows of the channel
        const int s = g * C + c;
        const float mu = mean[s];
        const float invstd = train ? stat[s] : 1.0f / sqrtf(stat[s] + eps);

        float db, dg;
        bn_backward_sums(dy, x, y, act, slope, c, C, HW, j0, j1, mu, invstd, scratch, &db, &dg);

        if (train) {
            const float k0 = gam * invstd / (float)Mg;
            for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
                const long long k = bn_index(j, c, C, HW);
                const float xhat = (x[k] - mu) * invstd;
                const float v = k0 * ((float)Mg * bn_act_grad(dy, y, k, act, slope) - db - xhat * dg);
                dx[k] = v;
                sdx += v;
            }
        } else {
            const float k0 = gam * invstd;
            for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
                const long long k = bn_index(j, c, C, HW);
                const float v = bn_act_grad(dy, y, k, act, slope) * k0;
                dx[k] = v;
                sdx += v;
            }
        }
        if (threadIdx.x == 0) {
            write_grad(dgamma + c, dg, accumulate || g > 0);
            write_grad(dbeta + c, db, accumulate || g > 0);
        }
    }
    if (dbias != nullptr) {                      // uniform: the whole block reduces or none
        const float t = block_reduce_sum(sdx, scratch);
        if (threadIdx.x == 0) {
            write_grad(dbias + c, t, dbias_accumulate);
        }
    }
}

// ---- 2-D reductions ----------------------------------------------------------------------------
// Elements of chunk b of channel c in ghost batch g (G = 1: the whole channel, Mg = M):
// j in [g*Mg + b*chunk, g*Mg + min((b+1)*chunk, Mg)); the launcher makes every chunk non-empty
// (chunks = ceil(Mg / chunk)). Block (g*C + c, b) of the grid (C*G, chunks) reduces that chunk
// (batchnorm_stats_2d, batchnorm_backward_sums_2d) or writes its dx (batchnorm_backward_apply).

// The rows [j0, j1) of the chunk of block (s, blockIdx.y) of a 2-D kernel, s = g*C + c: chunk
// blockIdx.y of ghost batch g's Mg = (N/G)*HW rows (the last chunk may be short). Returns Mg.
__device__ __forceinline__ int bn_chunk_rows(int N, int C, int HW, int G, int chunk, int* j0,
                                             int* j1)
{
    const int g = (int)blockIdx.x / C;
    const int Mg = (N / G) * HW;
    *j0 = g * Mg + (int)blockIdx.y * chunk;
    *j1 = min(*j0 + chunk, (g + 1) * Mg);
    return Mg;
}

// The *_2d kernels below: thread 0 of block (s, chunk), s = g*C + c, stores its two sums at
// partial[(s * chunks + chunk) * 2 + {0, 1}] (chunks = gridDim.y); the grid's last block reads
// them back in the same launch (so no __restrict__).
__device__ __forceinline__ void store_chunk_pair(float* partial, float a, float b)
{
    if (threadIdx.x == 0) {
        float* p = partial + ((long long)blockIdx.x * gridDim.y + blockIdx.y) * 2;
        p[0] = a;
        p[1] = b;
    }
}

// One step of the pairwise merge of Chan, Golub & LeVeque (1979): the running (n, mean, M2)
// of the chunks so far takes chunk (nb, mb, m2b):
//   n' = n + nb, d = mb - mean, mean' = mean + d*nb/n', M2' = M2 + M2b + d*d*n*nb/n'.
__device__ __forceinline__ void chan_merge(float* n, float* mean, float* m2, float nb, float mb,
                                           float m2b)
{
    const float n_new = *n + nb;
    const float d = mb - *mean;
    *mean += d * (nb / n_new);
    *m2 += m2b + d * d * (*n * nb / n_new);
    *n = n_new;
}

// The fold of channel c's chunks in ghost batch g by the 2-D forward's last block: the chunks'
// (count, mean, M2) at p[2b], p[2b + 1] merged in index order b = 0, 1, ... (chunk b has
// min((b+1)*chunk, M) - b*chunk elements). Volatile loads of 8 chunks at a time (16 loads in
// flight, then the 8 merges in order: ~chunks/8 L2 round trips).
__device__ __forceinline__ void bn_fold_chunks(const volatile float* p, int chunks, int chunk,
                                               int M, float* mean_out, float* m2_out)
{
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    int b = 0;
    for (; b + 8 <= chunks; b += 8) {
        float v[16];
#pragma unroll
        for (int u = 0; u < 16; ++u) {
            v[u] = p[2LL * b + u];
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const float nb = (float)(min((b + u + 1) * chunk, M) - (b + u) * chunk);
            chan_merge(&n, &mean, &m2, nb, v[2 * u], v[2 * u + 1]);
        }
    }
    for (; b < chunks; ++b) {
        const float nb = (float)(min((b + 1) * chunk, M) - b * chunk);
        chan_merge(&n, &mean, &m2, nb, p[2LL * b], p[2LL * b + 1]);
    }
    *mean_out = mean;
    *m2_out = m2;
}

// The 2-D training forward's statistics in ONE launch (pass 1 of 2; batchnorm_apply is pass 2).
// Block (s, b), s = g*C + c, computes chunk b of channel c in ghost batch g: its mean and M2 (sum
// of squared deviations from the chunk mean; two passes over the chunk like the one-block kernel)
// -> partial[(s*chunks + b)*2 + {0, 1}]. The last block to finish (reduce.cuh grid_last_block,
// ticket counter `done` = common.grid_counter(rt, "batchnorm"), reset to 0 by that block) then
// merges them, one thread per channel: for g = 0, 1, ..., G-1 in order, the chunks in index order
// (bn_fold_chunks), var = M2 / M (biased; M = the elements per channel of one ghost batch), and
// the outputs of batchnorm_forward_train: save_mean, save_invstd = 1/sqrt(var + eps) at s, and
// the running update (unbiased: var*M/(M-1); in_bias added to the running mean) — one per ghost
// batch in order, as G launches would. Deterministic: fixed per-block order and tree, fixed merge
// order (bit-identical to the former stats_partial + stats_combine pair, bench/kernels/batchnorm.py).
// Launch: grid = (C*G, chunks), block = 32..256 (a multiple of 32), shared_mem = 0 (32 floats + 1
// bool static). partial: C*G*chunks*2 floats of workspace; *done == 0 before the launch (and after).
extern "C" __global__ void batchnorm_stats_2d(
    const float* __restrict__ x, float* partial, unsigned int* done,
    float* __restrict__ running_mean, float* __restrict__ running_var,
    float* __restrict__ save_mean, float* __restrict__ save_invstd,
    int N, int C, int HW, int chunk, float momentum, float eps, int unbiased,
    const float* __restrict__ in_bias, int G)
{
    __shared__ float scratch[32];
    __shared__ bool last;
    const int c = blockIdx.x % C;
    int j0, j1;
    const int Mg = bn_chunk_rows(N, C, HW, G, chunk, &j0, &j1);
    const float cnt = (float)(j1 - j0);

    float s = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        s += x[bn_index(j, c, C, HW)];
    }
    const float mean = block_reduce_sum(s, scratch) / cnt;
    float q = 0.0f;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const float d = x[bn_index(j, c, C, HW)] - mean;
        q += d * d;
    }
    const float m2 = block_reduce_sum(q, scratch);
    store_chunk_pair(partial, mean, m2);
    if (!grid_last_block(done, &last)) {
        return;
    }
    const int chunks = (int)gridDim.y;
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        for (int h = 0; h < G; ++h) {
            const int t = h * C + k;
            float mu, m2t;
            bn_fold_chunks(partial + (long long)t * chunks * 2, chunks, chunk, Mg, &mu, &m2t);
            const float var = m2t / (float)Mg;
            bn_store_stats(k, t, mu, var, 1.0f / sqrtf(var + eps), Mg, momentum, unbiased,
                           in_bias, save_mean, save_invstd, running_mean, running_var);
        }
    }
}

// Element k = (n*C + c)*HW + i of x: its channel c and the index s = g*C + c of its ghost
// batch's statistics, g = n / rows (rows = N/G samples per ghost batch; G = 1: s = c).
__device__ __forceinline__ int bn_stat_index(long long k, int C, int HW, int rows, int* c)
{
    const long long q = k / HW;                  // n*C + c
    *c = (int)(q % C);
    return (int)(q / C / rows) * C + *c;
}

// Pass 2 of the 2-D training forward: y = act((x - mean[s]) * invstd[s] * gamma[c] + beta[c]),
// s = g*C + c the statistics of the element's ghost batch (rows = N/G samples each).
// Launch: grid = min(ceil(N*C*HW / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void batchnorm_apply(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const float* __restrict__ mean, const float* __restrict__ invstd, float* __restrict__ y,
    int C, int HW, long long total, int act, float slope, int rows)
{
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        int c;
        const int s = bn_stat_index(k, C, HW, rows, &c);
        y[k] = bn_act((x[k] - mean[s]) * invstd[s] * gamma[c] + beta[c], act, slope);
    }
}

// The 2-D backward's sums in ONE launch (pass 1 of 2, both modes; mean/stat/eps/train as in
// batchnorm_backward; batchnorm_backward_apply is pass 2). Block (s, b), s = g*C + c (eval: G = 1),
// sums chunk b of channel c in ghost batch g: partial[(s*chunks + b)*2] = sum dy, [.. + 1] =
// sum dy * xhat (bn_backward_sums). The last block to finish (grid_last_block, counter `done` =
// common.grid_counter(rt, "batchnorm")) folds them, one thread per channel, g = 0..G-1 in order,
// the chunks in index order (sum_partials_volatile): sums[2s] = this pass's dbeta of (g, c),
// sums[2s + 1] = its dgamma (what the apply pass needs), each written (accumulate = 0; g = 0
// only) or added (accumulate = 1, or g > 0) to the gradient buffers dbeta[c]/dgamma[c].
// Deterministic; bit-identical to the former backward_partial + backward_combine pair.
// Launch: grid = (C*G, chunks), block = 32..256 (a multiple of 32), shared_mem = 0 (32 floats + 1
// bool static). partial: C*G*chunks*2 floats; *done == 0 before the launch (and after).
extern "C" __global__ void batchnorm_backward_sums_2d(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ stat, float eps, int train, const float* __restrict__ y, int act,
    float slope, float* partial, unsigned int* done, float* __restrict__ sums,
    float* __restrict__ dgamma, float* __restrict__ dbeta, int N, int C, int HW, int chunk,
    int accumulate, int G)
{
    __shared__ float scratch[32];
    __shared__ bool last;
    const int s = blockIdx.x, c = s % C;
    int j0, j1;
    bn_chunk_rows(N, C, HW, G, chunk, &j0, &j1);
    const float mu = mean[s];
    const float invstd = train ? stat[s] : 1.0f / sqrtf(stat[s] + eps);
    float db, dg;
    bn_backward_sums(dy, x, y, act, slope, c, C, HW, j0, j1, mu, invstd, scratch, &db, &dg);
    store_chunk_pair(partial, db, dg);
    if (!grid_last_block(done, &last)) {
        return;
    }
    const int chunks = (int)gridDim.y;
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        for (int h = 0; h < G; ++h) {
            const int t = h * C + k;
            const volatile float* p = partial + (long long)t * chunks * 2;
            const float sb = sum_partials_volatile(p, chunks, 2);
            const float sg = sum_partials_volatile(p + 1, chunks, 2);
            sums[2 * t] = sb;
            sums[2 * t + 1] = sg;
            write_grad(dbeta + k, sb, accumulate || h > 0);
            write_grad(dgamma + k, sg, accumulate || h > 0);
        }
    }
}

// Pass 2 of the 2-D backward: dx from this pass's sums (dbeta = sums[2s], dgamma = sums[2s + 1]),
// exactly the formulas of batchnorm_backward (activation derivative included), over the grid of
// pass 1: block (s, b), s = g*C + c, writes chunk b of channel c in ghost batch g (Mg = the
// elements per channel of one ghost batch).
// dbias (nullable; as batchnorm_backward): each block also sums the dx it writes into
// partial[s*chunks + b] (partial: C*G*chunks floats, pass 1's workspace, free again) and the last
// block to finish (grid_last_block, counter `done`) folds them, one thread per channel:
// dbias[c] = sum over g = 0..G-1 of the sum over b in index order (sum_partials_volatile),
// written (dbias_accumulate = 0) or added to (1). Deterministic; no extra launch.
// Launch: grid = (C*G, chunks) (pass 1's), block = 32..256 (a multiple of 32), shared_mem = 0
// (32 floats + 1 bool static). Napkin math: reads dy (and y), x once, writes dx: 12*E bytes
// (16*E with y); the dbias fold reads C*G*chunks floats in one block (negligible).
extern "C" __global__ void batchnorm_backward_apply(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean, const float* __restrict__ stat, float eps, int train,
    const float* __restrict__ y, int act, float slope,
    const float* __restrict__ sums, float* __restrict__ dx, int N, int C, int HW, int chunk, int G,
    float* partial, unsigned int* done, float* __restrict__ dbias, int dbias_accumulate)
{
    __shared__ float scratch[32];
    __shared__ bool last;
    const int s = blockIdx.x, c = s % C;
    int j0, j1;
    const int Mg = bn_chunk_rows(N, C, HW, G, chunk, &j0, &j1);
    const float mu = mean[s];
    const float invstd = train ? stat[s] : 1.0f / sqrtf(stat[s] + eps);
    const float gam = gamma[c];
    const float db = sums[2 * s], dg = sums[2 * s + 1];
    float sdx = 0.0f;                            // this thread's sum of the dx it writes
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const long long k = bn_index(j, c, C, HW);
        const float gk = bn_act_grad(dy, y, k, act, slope);
        float v;
        if (train) {
            const float xhat = (x[k] - mu) * invstd;
            v = gam * invstd / (float)Mg * ((float)Mg * gk - db - xhat * dg);
        } else {
            v = gk * (gam * invstd);
        }
        dx[k] = v;
        sdx += v;
    }
    if (dbias == nullptr) {                      // uniform: no fold
        return;
    }
    const float t = block_reduce_sum(sdx, scratch);
    if (threadIdx.x == 0) {
        partial[(long long)blockIdx.x * gridDim.y + blockIdx.y] = t;
    }
    if (!grid_last_block(done, &last)) {
        return;
    }
    const int chunks = (int)gridDim.y;
    for (int k = threadIdx.x; k < C; k += blockDim.x) {
        float total = 0.0f;
        for (int h = 0; h < G; ++h) {
            total += sum_partials_volatile(partial + (long long)(h * C + k) * chunks, chunks, 1);
        }
        write_grad(dbias + k, total, dbias_accumulate);
    }
}
