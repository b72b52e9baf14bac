"""bias.cu: per-channel bias add (forward) and bias gradient (backward).

    python bench/kernels/bias.py [--emulated] [--check-only] [--fast]

Napkin math (float32, E = N*C*H*W): bias_add reads and writes y (8*E bytes, 1 FLOP/element); the
gradient reads dy once (4*E bytes, 1 FLOP/element). Memory bound. G's output layer at batch 64
(C = 3, E = 786 K): the gradient reads 3.1 MB = 0.7 us at 4.8 TB/s.

bias_grad versions: 1 = one block per channel (grid = C: 3 blocks on 3 SMs for G's RGB layer,
~6 GB/s each: ~170 us); 2 = the 2-D deterministic form (grid = (C, chunks) of per-block partial
sums, folded in index order by a combine kernel). The backend picks per shape with the cost model
(rawgan/backend/cuda/common.reduction_chunks); v2 is forced to >= 2 chunks here.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import conv, make_ops  # noqa: E402


def shapes(fast):
    if fast:
        return [("3x5x13x7", (3, 5, 13, 7)), ("2x3x40x40", (2, 3, 40, 40))]
    return [("G out 64x3x64x64", (64, 3, 64, 64)), ("G 64x64x32x32", (64, 64, 32, 32)),
            ("D 64x512x4x4", (64, 512, 4, 4))]


def grad_cases(fast):
    rng = np.random.default_rng(0)
    return [Case(name, {"dy": rng.standard_normal(s).astype(np.float32)}, nbytes=4 * int(np.prod(s)))
                 for name, s in shapes(fast)]


def add_cases(fast):
    rng = np.random.default_rng(1)
    return [Case(name, {"y": rng.standard_normal(s).astype(np.float32),
                        "b": rng.standard_normal(s[1]).astype(np.float32)},
                 nbytes=8 * int(np.prod(s))) for name, s in shapes(fast)]


def grad(chunks_fn):
    def run(rt, dy):
        N, C, H, W = dy.shape
        return (conv.bias_grad_nchw(rt, dy, chunks_fn(rt, C, N * H * W)),)
    return run


KERNELS = [
    Kernel("bias_grad", lambda dy: (R.bias_grad(dy),),
           [Version(1, "one block per channel", grad(lambda rt, C, M: 1)),
            Version(2, "2-D partials + combine",
                    grad(lambda rt, C, M: max(2, conv.bias_grad_chunks(rt, C, M))))],
           grad_cases, rtol=1e-5, atol=1e-3),
    Kernel("bias_add", lambda y, b: (R.bias_add(y.copy(), b),),
           [Version(1, "grid-stride", lambda rt, y, b: (make_ops(rt).bias_add(y, b),), production=True)],
           add_cases, exact=True),
]

if __name__ == "__main__":
    sys.exit(run_family("bias", KERNELS))
