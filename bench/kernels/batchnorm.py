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
  2 = the 2-D deterministic form (grid = (C, chunks), per-block partials, a combine kernel in a
      fixed order, an elementwise apply): all SMs stream. The backend launches whichever the cost
      model (rawgan/backend/cuda/common.reduction_chunks) estimates faster per shape; here v2 is
      forced to at least 2 chunks so it is always exercised.

Ghost batches (``*_ghost2``: a batch of 2N normalised per half, the DCGAN's D step in one pass;
the same bytes and FLOPs as two passes over N — 16/20 B per element — in one launch per kernel
instead of two):
  1 = two calls, one per half (the two-pass D step: 2 launches per kernel, each over N);
  2 = one block per channel looping over the halves (grid = C; running update in order);
  3 = the 2-D form over (C*2, chunks) partials, a combine looping the halves in order, an apply
      reading the statistics of (half, channel). v2/v3 are bit-identical to v1 with the same
      launch form (tests/test_kernels.py); the check here is against the NumPy reference.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import batchnorm as bn  # noqa: E402


def shapes(fast):
    if fast:
        return [("3x5x13x7", (3, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40))]
    return [("G bn 64x64x32x32", (64, 64, 32, 32)), ("G bn 64x128x16x16", (64, 128, 16, 16)),
            ("D bn 64x512x4x4", (64, 512, 4, 4))]


def fwd_cases(fast):
    rng = np.random.default_rng(0)
    out = []
    for name, s in shapes(fast):
        C = s[1]
        out.append(Case(name, {"x": (rng.standard_normal(s) * 2 + 1).astype(np.float32),
                               "gamma": rng.standard_normal(C).astype(np.float32),
                               "beta": rng.standard_normal(C).astype(np.float32),
                               "rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32)},
                        nbytes=16 * int(np.prod(s))))
    return out


def bwd_cases(fast):
    rng = np.random.default_rng(1)
    out = []
    for name, s in shapes(fast):
        C = s[1]
        x = (rng.standard_normal(s) * 2 + 1).astype(np.float32)
        _, mean, invstd = R.batchnorm_forward_train(x, np.ones(C, np.float32), np.zeros(C, np.float32),
                                                    np.zeros(C, np.float32), np.ones(C, np.float32), 0.1, 1e-5)
        out.append(Case(name, {"dy": rng.standard_normal(s).astype(np.float32), "x": x,
                               "gamma": rng.standard_normal(C).astype(np.float32),
                               "mean": mean, "invstd": invstd},
                        nbytes=20 * int(np.prod(s))))
    return out


def fwd_ref(x, gamma, beta, rm, rv):
    rm, rv = rm.copy(), rv.copy()
    y, mean, invstd = R.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    return y, mean, invstd, rm, rv


def chunks_2d(rt, C, M, which):
    return max(2, (bn.forward_chunks if which == "fwd" else bn.backward_chunks)(rt, C, M))


def fwd(chunks_fn):
    def run(rt, x, gamma, beta, rm, rv):
        N, C = x.shape[:2]
        M = N * x.shape[2] * x.shape[3]
        y, mean, invstd = bn.forward_train(rt, x, gamma, beta, rm, rv, 0.1, 1e-5, False,
                                           chunks_fn(rt, C, M))
        return y, mean, invstd, rm, rv
    return run


def bwd(chunks_fn):
    def run(rt, dy, x, gamma, mean, invstd):
        N, C = x.shape[:2]
        M = N * x.shape[2] * x.shape[3]
        return bn.backward(rt, dy, x, gamma, mean, invstd, 0.0, 1, chunks_fn(rt, C, M))
    return run


def ghost_shapes(fast):
    if fast:
        return [("4x5x13x7", (4, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40))]
    return [("D bn 2x64x128x16x16", (128, 128, 16, 16)), ("D bn 2x64x256x8x8", (128, 256, 8, 8)),
            ("D bn 2x64x512x4x4", (128, 512, 4, 4))]


def ghost_fwd_cases(fast):
    rng = np.random.default_rng(2)
    out = []
    for name, s in ghost_shapes(fast):
        C = s[1]
        x = (rng.standard_normal(s) * 2 + 1).astype(np.float32)
        x[s[0] // 2:] -= 1.5                     # the halves differ, like real and fake samples
        out.append(Case(name, {"x": x, "gamma": rng.standard_normal(C).astype(np.float32),
                               "beta": rng.standard_normal(C).astype(np.float32),
                               "rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32)},
                        nbytes=16 * int(np.prod(s))))
    return out


def ghost_bwd_cases(fast):
    rng = np.random.default_rng(3)
    out = []
    for c in ghost_fwd_cases(fast):
        x = c.inputs["x"]
        C = x.shape[1]
        _, mean, invstd = R.batchnorm_forward_train(x, np.ones(C, np.float32), np.zeros(C, np.float32),
                                                    np.zeros(C, np.float32), np.ones(C, np.float32),
                                                    0.1, 1e-5, False, 2)
        out.append(Case(c.name, {"dy": rng.standard_normal(x.shape).astype(np.float32), "x": x,
                                 "gamma": rng.standard_normal(C).astype(np.float32),
                                 "mean": mean, "invstd": invstd}, nbytes=20 * x.size))
    return out


def ghost_fwd_ref(x, gamma, beta, rm, rv):
    rm, rv = rm.copy(), rv.copy()
    y, mean, invstd = R.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5, False, 2)
    return y, mean, invstd, rm, rv


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
           [Version(1, "one block per channel", fwd(lambda rt, C, M: 1)),
            Version(2, "2-D partials + combine + apply", fwd(lambda rt, C, M: chunks_2d(rt, C, M, "fwd")))],
           fwd_cases, rtol=1e-4, atol=1e-5),
    Kernel("batchnorm_backward_train",
           lambda dy, x, gamma, mean, invstd: R.batchnorm_backward_train(dy, x, gamma, mean, invstd),
           [Version(1, "one block per channel", bwd(lambda rt, C, M: 1)),
            Version(2, "2-D partials + combine + apply", bwd(lambda rt, C, M: chunks_2d(rt, C, M, "bwd")))],
           bwd_cases, rtol=1e-3, atol=1e-3),
    Kernel("batchnorm_forward_train_ghost2", ghost_fwd_ref,
           [Version(1, "two calls, one per half (2-D form)", ghost_fwd(0)),
            Version(2, "one block per channel, halves in turn", ghost_fwd(1)),
            Version(3, "2-D over (C*2, chunks) + combine + apply", ghost_fwd(2))],
           ghost_fwd_cases, rtol=1e-4, atol=1e-5),
    Kernel("batchnorm_backward_train_ghost2",
           lambda dy, x, gamma, mean, invstd: R.batchnorm_backward_train(dy, x, gamma, mean, invstd,
                                                                         ghost_batches=2),
           [Version(1, "two calls, one per half (2-D form)", ghost_bwd(0)),
            Version(2, "one block per channel, halves in turn", ghost_bwd(1)),
            Version(3, "2-D over (C*2, chunks) + combine + apply", ghost_bwd(2))],
           ghost_bwd_cases, rtol=1e-3, atol=1e-3),
]

if __name__ == "__main__":
    sys.exit(run_family("batchnorm", KERNELS))
