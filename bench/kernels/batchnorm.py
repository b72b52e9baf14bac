"""batchnorm.cu: training forward (statistics + running update + normalise) and backward.

    python bench/kernels/batchnorm.py [--emulated] [--check-only] [--fast]

Napkin math (float32, E = N*C*H*W elements, M = N*H*W per channel): the training forward reads
x three times (sum, squared deviations, normalise) and writes y: 16*E bytes, ~5 FLOP/element;
the backward reads dy and x twice and writes dx: 20*E bytes, ~10 FLOP/element. Memory bound
(<= 0.6 FLOP/byte). G's 64-channel layer at batch 64 (E = 4.19 M): forward 67 MB = 14 us at
4.8 TB/s — if enough blocks stream at once.

Versions (both forward and backward):
  1 = one block per channel (grid = C): 64 channels keep 64 of the H200's 132 SMs busy, each
      streaming alone (~6 GB/s per block by Little's law: ~170 us for that layer);
  2 = the former 2-D form, three launches (grid = (C, chunks) of per-block partials, a combine
      kernel folding them in a fixed order, an elementwise apply; the partial and combine kernels
      kept here, source inline, so a GPU can compare them with v3);
  3 = kernels/batchnorm.cu's 2-D form, two launches: the same partials folded in the same order
      by the grid's last block (batchnorm_stats_2d / batchnorm_backward_sums_2d, "last block
      done", kernels/reduce.cuh), then the apply (the backward's on the (C, chunks) grid of the
      sums, where it can also sum a folded bias's gradient) — bit-identical to v2
      (tests/test_kernels.py).
  All SMs stream in v2/v3. The backend launches one block per channel or v3, whichever the cost
  model (rawgan/backend/cuda/common.reduction_chunks) estimates faster per shape; here v2/v3 are
  forced to at least 2 chunks so they are always exercised.

Ghost batches (``*_ghost2``: a batch of 2N normalised per half, the DCGAN's D step in one pass;
the same bytes and FLOPs as two passes over N — 16/20 B per element — in one launch per kernel
instead of two):
  1 = two calls, one per half (the two-pass D step: 2 launches per kernel, each over N);
  2 = one block per channel looping over the halves (grid = C; running update in order);
  3 = the 2-D form over (C*2, chunks) partials, the last block's fold looping the halves in
      order, an apply reading the statistics of (half, channel). v2/v3 are bit-identical to v1 with the same
      launch form (tests/test_kernels.py); the check here is against the NumPy reference.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import batchnorm as bn  # noqa: E402

V2_SOURCE = r"""
#include "batchnorm.cu"
// Version 2: the former 2-D partial and combine kernels (kernels/batchnorm.cu until the
// last-block fold) and the former grid-stride backward apply, on batchnorm.cu's helpers; the
// forward apply is unchanged (the launcher uses the production module's).
""" + """
// Pass 1 of the 2-D training forward: per (ghost batch, channel, chunk) the chunk's mean and M2
// (sum of squared deviations from the chunk mean), two passes over the chunk like the one-block
// kernel. Launch: grid = (C*G, chunks), block = 32..256 (a multiple of 32), shared_mem = 0
// (32 floats static). Writes partial[(s*chunks + b)*2] = chunk mean, [.. + 1] = chunk M2.
extern "C" __global__ void batchnorm_stats_partial(
    const float* __restrict__ x, float* __restrict__ partial, int N, int C, int HW, int chunk,
    int G)
{
    __shared__ float scratch[32];
    const int c = blockIdx.x % C, g = blockIdx.x / C;
    const int Mg = (N / G) * HW;
    const int j0 = g * Mg + blockIdx.y * chunk, j1 = min(j0 + chunk, (g + 1) * Mg);  // rows
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
}

// Pass 2 of the 2-D training forward: one thread per channel merges the chunks' (count, mean, M2)
// in index order with the pairwise update of Chan, Golub & LeVeque (1979):
//   n = na + nb, d = mean_b - mean_a, mean = mean_a + d*nb/n, M2 = M2a + M2b + d*d*na*nb/n,
// then var = M2 / M (biased) and the same outputs as batchnorm_forward_train: save_mean,
// save_invstd = 1/sqrt(var + eps), running_mean/var updated with momentum (unbiased: var*M/(M-1)).
// M is the elements per channel of one ghost batch; the thread does ghost batches g = 0..G-1 in
// order (statistics at s = g*C + c, one running update each, as G launches would).
// Launch: grid = min(ceil(C / 256), block cap), block = 256, shared_mem = 0 (grid-stride over C).
extern "C" __global__ void batchnorm_stats_combine(
    const float* __restrict__ partial, float* __restrict__ running_mean,
    float* __restrict__ running_var, float* __restrict__ save_mean, float* __restrict__ save_invstd,
    int C, int M, int chunk, int chunks, float momentum, float eps, int unbiased,
    const float* __restrict__ in_bias, int G)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        for (int g = 0; g < G; ++g) {
            const int s = g * C + c;
            const float* p = partial + (long long)s * chunks * 2;
            float n = 0.0f, mean = 0.0f, m2 = 0.0f;
            for (int b = 0; b < chunks; ++b) {
                const float nb = (float)(min((b + 1) * chunk, M) - b * chunk);
                const float n_new = n + nb;
                const float d = p[2 * b] - mean;
                mean += d * (nb / n_new);
                m2 += p[2 * b + 1] + d * d * (n * nb / n_new);
                n = n_new;
            }
            const float var = m2 / (float)M;
            bn_store_stats(c, s, mean, var, 1.0f / sqrtf(var + eps), M, momentum, unbiased,
                           in_bias, save_mean, save_invstd, running_mean, running_var);
        }
    }
}


// Pass 1 of the 2-D backward (both modes; mean/stat/eps/train as in batchnorm_backward): per
// (ghost batch, channel, chunk) partial[(s*chunks + b)*2] = sum dy, [.. + 1] = sum dy * xhat over
// the chunk, s = g*C + c (eval: G = 1).
// Launch: grid = (C*G, chunks), block = 32..256 (a multiple of 32), shared_mem = 0 (32 floats
// static).
extern "C" __global__ void batchnorm_backward_partial(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ stat, float eps, int train, const float* __restrict__ y, int act,
    float slope, float* __restrict__ partial, int N, int C, int HW, int chunk, int G)
{
    __shared__ float scratch[32];
    const int s = blockIdx.x, c = s % C, g = s / C;
    const int Mg = (N / G) * HW;
    const int j0 = g * Mg + blockIdx.y * chunk, j1 = min(j0 + chunk, (g + 1) * Mg);  // rows
    const float mu = mean[s];
    const float invstd = train ? stat[s] : 1.0f / sqrtf(stat[s] + eps);
    float db, dg;
    bn_backward_sums(dy, x, y, act, slope, c, C, HW, j0, j1, mu, invstd, scratch, &db, &dg);
    store_chunk_pair(partial, db, dg);
}

// Pass 2 of the 2-D backward: the chunks' sums in index order -> sums[2s] = this pass's
// dbeta of (ghost batch g, channel c), sums[2s + 1] = its dgamma (s = g*C + c: what the apply pass
// needs); the thread loops g = 0..G-1 in order and writes (accumulate = 0; g = 0 only) or adds
// (accumulate = 1, or g > 0) each to the gradient buffers dbeta[c]/dgamma[c].
// Launch: grid = min(ceil(C / 256), block cap), block = 256, shared_mem = 0 (grid-stride over C).
extern "C" __global__ void batchnorm_backward_combine(
    const float* __restrict__ partial, float* __restrict__ sums, float* __restrict__ dgamma,
    float* __restrict__ dbeta, int C, int chunks, int accumulate, int G)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        for (int g = 0; g < G; ++g) {
            const int s = g * C + c;
            const float* p = partial + (long long)s * chunks * 2;
            const float db = sum_partials(p, chunks, 2);
            const float dg = sum_partials(p + 1, chunks, 2);
            sums[2 * s] = db;
            sums[2 * s + 1] = dg;
            write_grad(dbeta + c, db, accumulate || g > 0);
            write_grad(dgamma + c, dg, accumulate || g > 0);
        }
    }
}

// Pass 3 of the former 2-D backward (grid-stride; the production apply now runs on pass 1's
// grid and can sum a folded bias's gradient): dx from this pass's sums (dbeta = sums[2s], dgamma = sums[2s + 1],
// s = g*C + c of the element's ghost batch, rows = N/G samples each; M = the elements per channel
// of one ghost batch), exactly the formulas of batchnorm_backward (activation derivative included).
// Launch: grid = min(ceil(N*C*HW / 256), block cap), block = 256, shared_mem = 0 (grid-stride).
extern "C" __global__ void batchnorm_backward_apply_v2(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean, const float* __restrict__ stat, float eps, int train,
    const float* __restrict__ y, int act, float slope,
    const float* __restrict__ sums, float* __restrict__ dx, int C, int HW, int M, long long total,
    int rows)
{
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        int c;
        const int s = bn_stat_index(k, C, HW, rows, &c);
        const float invstd = train ? stat[s] : 1.0f / sqrtf(stat[s] + eps);
        const float g = bn_act_grad(dy, y, k, act, slope);
        if (train) {
            const float xhat = (x[k] - mean[s]) * invstd;
            dx[k] = gamma[c] * invstd / (float)M * ((float)M * g - sums[2 * s] - xhat * sums[2 * s + 1]);
        } else {
            dx[k] = g * (gamma[c] * invstd);
        }
    }
}
"""


def _v2(rt):
    from harness import module
    return module(rt, "bench_batchnorm_v2", V2_SOURCE)


def forward_train_v2(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased,
                     chunks, act=0, slope=0.0, in_bias=None, ghost_batches=1):
    """bn.forward_train's 2-D form as it was: stats_partial + stats_combine + apply (three
    launches). Same arguments and results as bn.forward_train (chunks >= 2)."""
    from rawgan.backend.cuda.common import (channels_hw, chunk_plan, f32, grid_1d, i32, i64,
                                            launch_1d, reduce_block, workspace_f32, BLOCK)
    N, C, HW = channels_hw(x)
    G = int(ghost_batches)
    Mg = (N // G) * HW
    y = rt.empty(x.shape, x.dtype)
    stat_shape = (C,) if G == 1 else (G, C)
    save_mean, save_invstd = rt.empty(stat_shape, x.dtype), rt.empty(stat_shape, x.dtype)
    chunk, chunks = chunk_plan(Mg, chunks)
    part = workspace_f32(rt, "bench_batchnorm_v2", C * G * chunks * 2)
    mod = _v2(rt)
    mod.get_function("batchnorm_stats_partial")(
        (C * G, chunks), (reduce_block(rt, chunk),),
        (x, part, i32(N), i32(C), i32(HW), i32(chunk), i32(G)))
    mod.get_function("batchnorm_stats_combine")(
        (grid_1d(rt, C),), (BLOCK,),
        (part, running_mean, running_var, save_mean, save_invstd, i32(C), i32(Mg), i32(chunk),
         i32(chunks), f32(momentum), f32(eps), i32(1 if unbiased else 0), in_bias, i32(G)))
    launch_1d(rt, bn.MODULE, "batchnorm_apply", x.size,      # unchanged: the production kernel
        (x, gamma, beta, save_mean, save_invstd, y, i32(C), i32(HW), i64(x.size), i32(act),
         f32(slope), i32(N // G)))
    return y, save_mean, save_invstd


def backward_v2(rt, dy, x, gamma, mean, stat, eps, train, chunks, y=None, act=0, slope=0.0,
                dgamma_out=None, dbeta_out=None, accumulate=False, ghost_batches=1):
    """bn.backward's 2-D form as it was: backward_partial + backward_combine + apply (three
    launches). Same arguments and results as bn.backward (chunks >= 2)."""
    from rawgan.backend.cuda.common import (channels_hw, chunk_plan, f32, grid_1d, i32, i64,
                                            launch_1d, reduce_block, workspace_f32, BLOCK)
    N, C, HW = channels_hw(x)
    G = int(ghost_batches)
    Mg = (N // G) * HW
    dx = rt.empty(x.shape, x.dtype)
    dgamma = rt.empty((C,), x.dtype) if dgamma_out is None else dgamma_out
    dbeta = rt.empty((C,), x.dtype) if dbeta_out is None else dbeta_out
    acc = i32(1 if accumulate and dgamma_out is not None else 0)
    chunk, chunks = chunk_plan(Mg, chunks)
    n_part = C * G * chunks * 2
    work = workspace_f32(rt, "bench_batchnorm_v2", n_part + 2 * C * G)
    part, sums = work[:n_part], work[n_part:]
    mod = _v2(rt)
    mod.get_function("batchnorm_backward_partial")(
        (C * G, chunks), (reduce_block(rt, chunk),),
        (dy, x, mean, stat, f32(eps), i32(train), y, i32(act), f32(slope), part, i32(N), i32(C),
         i32(HW), i32(chunk), i32(G)))
    mod.get_function("batchnorm_backward_combine")(
        (grid_1d(rt, C),), (BLOCK,), (part, sums, dgamma, dbeta, i32(C), i32(chunks), acc, i32(G)))
    mod.get_function("batchnorm_backward_apply_v2")(
        (grid_1d(rt, x.size),), (BLOCK,),
        (dy, x, gamma, mean, stat, f32(eps), i32(train), y, i32(act), f32(slope), sums, dx,
         i32(C), i32(HW), i32(Mg), i64(x.size), i32(N // G)))
    return dx, dgamma, dbeta


def shapes(fast):
    if fast:
        return [("3x5x13x7", (3, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40))]
    return [("G bn 64x64x32x32", (64, 64, 32, 32)), ("G bn 64x128x16x16", (64, 128, 16, 16)),
            ("D bn 64x512x4x4", (64, 512, 4, 4))]


def fwd_cases(fast, G=1):
    """Forward inputs at the DCGAN's BN shapes; with G = 2 ghost batches D's 2N shapes, the
    halves shifted apart like real and fake samples."""
    rng = np.random.default_rng(0 if G == 1 else 2)
    out = []
    for name, s in (shapes if G == 1 else ghost_shapes)(fast):
        C = s[1]
        x = (rng.standard_normal(s) * 2 + 1).astype(np.float32)
        if G > 1:
            x[s[0] // 2:] -= 1.5
        out.append(Case(name, {"x": x, "gamma": rng.standard_normal(C).astype(np.float32),
                               "beta": rng.standard_normal(C).astype(np.float32),
                               "rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32)},
                        nbytes=16 * int(np.prod(s))))
    return out


def bwd_cases(fast, G=1):
    """Backward inputs: dy, the forward's x and its saved statistics (per ghost batch)."""
    rng = np.random.default_rng(1 if G == 1 else 3)
    out = []
    for c in fwd_cases(fast, G):
        x = c.inputs["x"]
        C = x.shape[1]
        _, mean, invstd = R.batchnorm_forward_train(x, np.ones(C, np.float32), np.zeros(C, np.float32),
                                                    np.zeros(C, np.float32), np.ones(C, np.float32),
                                                    0.1, 1e-5, False, G)
        out.append(Case(c.name, {"dy": rng.standard_normal(x.shape).astype(np.float32), "x": x,
                                 "gamma": rng.standard_normal(C).astype(np.float32),
                                 "mean": mean, "invstd": invstd}, nbytes=20 * x.size))
    return out


def fwd_ref(x, gamma, beta, rm, rv, G=1):
    rm, rv = rm.copy(), rv.copy()
    y, mean, invstd = R.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5, False, G)
    return y, mean, invstd, rm, rv


def chunks_2d(rt, C, M, which):
    return max(2, (bn.forward_chunks if which == "fwd" else bn.backward_chunks)(rt, C, M))


def fwd(chunks_fn, impl=None):
    def run(rt, x, gamma, beta, rm, rv):
        N, C = x.shape[:2]
        M = N * x.shape[2] * x.shape[3]
        y, mean, invstd = (impl or bn.forward_train)(rt, x, gamma, beta, rm, rv, 0.1, 1e-5, False,
                                                     chunks_fn(rt, C, M))
        return y, mean, invstd, rm, rv
    return run


def bwd(chunks_fn, impl=None):
    def run(rt, dy, x, gamma, mean, invstd):
        N, C = x.shape[:2]
        M = N * x.shape[2] * x.shape[3]
        return (impl or bn.backward)(rt, dy, x, gamma, mean, invstd, 0.0, 1, chunks_fn(rt, C, M))
    return run


def ghost_shapes(fast):
    if fast:
        return [("4x5x13x7", (4, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40))]
    return [("D bn 2x64x128x16x16", (128, 128, 16, 16)), ("D bn 2x64x256x8x8", (128, 256, 8, 8)),
            ("D bn 2x64x512x4x4", (128, 512, 4, 4))]


def ghost_fwd_cases(fast):
    return fwd_cases(fast, 2)


def ghost_bwd_cases(fast):
    return bwd_cases(fast, 2)


def ghost_fwd_ref(x, gamma, beta, rm, rv):
    return fwd_ref(x, gamma, beta, rm, rv, 2)


def _chunks_of(rt, x, which, G, form):
    """Chunks per (half, channel): 1 (one block) or the cost model's 2-D plan, at least 2."""
    if form == 1:
        return 1
    N, C = x.shape[:2]
    M = N * x.shape[2] * x.shape[3]
    fn = bn.forward_chunks if which == "fwd" else bn.backward_chunks
    return max(2, fn(rt, C, M, G))


def ghost_fwd(form):
    def run(rt, x, gamma, beta, rm, rv):
        if form == 0:                            # two calls, one per half
            h = x.shape[0] // 2
            outs = [bn.forward_train(rt, rt.xp.ascontiguousarray(xs), gamma, beta, rm, rv, 0.1,
                                     1e-5, False, _chunks_of(rt, xs, "fwd", 1, 2))
                    for xs in (x[:h], x[h:])]
            return (rt.xp.concatenate([o[0] for o in outs]), rt.xp.stack([o[1] for o in outs]),
                    rt.xp.stack([o[2] for o in outs]), rm, rv)
        y, mean, invstd = bn.forward_train(rt, x, gamma, beta, rm, rv, 0.1, 1e-5, False,
                                           _chunks_of(rt, x, "fwd", 2, form), ghost_batches=2)
        return y, mean, invstd, rm, rv
    return run


def ghost_bwd(form):
    def run(rt, dy, x, gamma, mean, invstd):
        if form == 0:
            h = x.shape[0] // 2
            dg, db = rt.xp.empty_like(gamma), rt.xp.empty_like(gamma)
            dxs = []
            for i, sl in enumerate((slice(0, h), slice(h, None))):
                xs, dys = rt.xp.ascontiguousarray(x[sl]), rt.xp.ascontiguousarray(dy[sl])
                dxs.append(bn.backward(rt, dys, xs, gamma, mean[i], invstd[i], 0.0, 1,
                                       _chunks_of(rt, xs, "bwd", 1, 2), dgamma_out=dg,
                                       dbeta_out=db, accumulate=i > 0)[0])
            return rt.xp.concatenate(dxs), dg, db
        return bn.backward(rt, dy, x, gamma, mean, invstd, 0.0, 1,
                           _chunks_of(rt, x, "bwd", 2, form), ghost_batches=2)
    return run


KERNELS = [
    Kernel("batchnorm_forward_train", fwd_ref,
           [Version(1, "one block per channel", fwd(lambda rt, C, M: 1), production=True),
            Version(2, "2-D partials + combine kernel + apply (three launches)",
                    fwd(lambda rt, C, M: chunks_2d(rt, C, M, "fwd"), forward_train_v2)),
            Version(3, "2-D, last block folds the partials + apply (two launches)",
                    fwd(lambda rt, C, M: chunks_2d(rt, C, M, "fwd")), production=True)],
           fwd_cases, rtol=1e-4, atol=1e-5),
    Kernel("batchnorm_backward_train",
           lambda dy, x, gamma, mean, invstd: R.batchnorm_backward_train(dy, x, gamma, mean, invstd),
           [Version(1, "one block per channel", bwd(lambda rt, C, M: 1), production=True),
            Version(2, "2-D partials + combine kernel + apply (three launches)",
                    bwd(lambda rt, C, M: chunks_2d(rt, C, M, "bwd"), backward_v2)),
            Version(3, "2-D, last block folds the partials + apply (two launches)",
                    bwd(lambda rt, C, M: chunks_2d(rt, C, M, "bwd")), production=True)],
           bwd_cases, rtol=1e-3, atol=1e-3),
    Kernel("batchnorm_forward_train_ghost2", ghost_fwd_ref,
           [Version(1, "two calls, one per half (2-D form)", ghost_fwd(0)),
            Version(2, "one block per channel, halves in turn", ghost_fwd(1)),
            Version(3, "2-D over (C*2, chunks), last block folds + apply", ghost_fwd(2))],
           ghost_fwd_cases, rtol=1e-4, atol=1e-5),
    Kernel("batchnorm_backward_train_ghost2",
           lambda dy, x, gamma, mean, invstd: R.batchnorm_backward_train(dy, x, gamma, mean, invstd,
                                                                         ghost_batches=2),
           [Version(1, "two calls, one per half (2-D form)", ghost_bwd(0)),
            Version(2, "one block per channel, halves in turn", ghost_bwd(1)),
            Version(3, "2-D over (C*2, chunks), last block folds + apply", ghost_bwd(2))],
           ghost_bwd_cases, rtol=1e-3, atol=1e-3),
]

if __name__ == "__main__":
    sys.exit(run_family("batchnorm", KERNELS))
