"""adam.cu: the fused Adam update over a network's flat parameter buffer (one launch per step).

    python bench/kernels/adam.py [--emulated] [--check-only] [--fast]

Napkin math: per parameter reads p, g, m, v and writes p, m, v: 28 bytes, ~12 FLOPs (0.4
FLOP/byte: memory bound). G (5,135,363 parameters at ngf 64): 144 MB = 30 us at 4.8 TB/s; D
(4,316,545): 121 MB = 25 us.

Kernels: ``adam_update`` (bias corrections folded into two host scalars: the optimizer outside a
device-resident step) and ``adam_step_dev`` (the training step's: the step count t on the device,
the bias corrections computed by every block, t advanced by the grid's last block — one launch).
Versions: production only (1 = grid-stride).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import make_ops  # noqa: E402

T, LR, B1, B2, EPS = 7, 2e-4, 0.5, 0.999, 1e-8


def cases(fast):
    rng = np.random.default_rng(0)
    sizes = [("3001", 3001), ("16387", 16387)] if fast else [("G 3.58M", 3_576_704), ("D 2.76M", 2_763_520)]
    out = []
    for name, n in sizes:
        f = lambda s=1.0: (rng.standard_normal(n) * s).astype(np.float32)  # noqa: E731
        out.append(Case(name, {"p": f(0.02), "g": f(0.1), "m": f(0.01), "v": np.abs(f(0.001))},
                        nbytes=28 * n))
    return out


def ref(p, g, m, v):
    p, m, v = p.copy(), m.copy(), v.copy()
    R.adam_update(p, g, m, v, T, LR, B1, B2, EPS)
    return p, m, v


def prod(rt, p, g, m, v):
    make_ops(rt).adam_update(p, g, m, v, T, LR, B1, B2, EPS)
    return p, m, v


def step_cases(fast):
    out = []
    for c in cases(fast):
        c.inputs["t"] = np.array([T - 1], np.int64)      # the kernel advances it to T
        out.append(Case(c.name, c.inputs, nbytes=c.nbytes))
    return out


def step_ref(p, g, m, v, t):
    p, m, v, t = p.copy(), m.copy(), v.copy(), t.copy()
    R.adam_step(p, g, m, v, t, LR, B1, B2, EPS)
    return p, m, v, t


def step_prod(rt, p, g, m, v, t):
    make_ops(rt).adam_step(p, g, m, v, t, LR, B1, B2, EPS)
    return p, m, v, t


KERNELS = [Kernel("adam_update", ref, [Version(1, "grid-stride, fused", prod, production=True)],
                  cases, rtol=1e-6, atol=1e-9),
           Kernel("adam_step_dev", step_ref,
                  [Version(1, "grid-stride, t on the device, last block advances it", step_prod,
                           production=True)],
                  step_cases, exact=True)]

if __name__ == "__main__":
    sys.exit(run_family("adam", KERNELS))
