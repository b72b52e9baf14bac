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
]

if __name__ == "__main__":
    sys.exit(run_family("batchnorm", KERNELS))
