"""rng.cu: Philox4x32-10 uniform and normal (Box–Muller) random numbers.

    python bench/kernels/rng.py [--emulated] [--check-only] [--fast]

Napkin math: writes 4 bytes per value; Philox4x32-10 costs 10 rounds of 2 32x32->64-bit
multiplies + xors per 4 words (the kernels use 1–2 words per value), ~40–80 integer ops per
value, still memory bound on an H200 at large n. The DCGAN draws z = 64 x 100 = 6,400 values per
step: 25.6 KB, pure launch latency.

Versions: production only (1 = grid-stride, counter (i, offset)). The uniform is bitwise equal to
the NumPy reference; the normal agrees to float32 rounding of log/cos/sqrt.
``philox_uniform_next`` (the launch with a device offset) is the training step's form: the
position is read from a device counter, which the grid's last block advances by n (checked: the
values and the new offset).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import make_ops  # noqa: E402

SEED, OFFSET = 2**40 + 7, 2**33 + 3


def cases(fast):
    sizes = [("1000", 1000), ("16387", 16387)] if fast else [("z 64x100", 6400), ("4M", 1 << 22)]
    return [Case(name, {"n": n}, nbytes=4 * n) for name, n in sizes]


def dev_cases(fast):
    return [Case(c.name, {"n": c.inputs["n"], "offset": np.array([OFFSET], np.uint64)},
                 nbytes=c.nbytes) for c in cases(fast)]


def dev_ref(n, offset):
    offset = offset.copy()
    return R.philox_uniform_next(n, SEED, offset, -1.0, 1.0, np.float32), offset


def dev_prod(rt, n, offset):
    return make_ops(rt).philox_uniform_next(n, SEED, offset, -1.0, 1.0, np.float32), offset


KERNELS = [
    Kernel("philox_uniform", lambda n: (R.philox_uniform(n, SEED, OFFSET, -1.0, 1.0, np.float32),),
           [Version(1, "grid-stride", lambda rt, n: (make_ops(rt).philox_uniform(n, SEED, OFFSET, -1.0, 1.0,
                                                                                  np.float32),),
                    production=True)],
           cases, exact=True),
    Kernel("philox_normal", lambda n: (R.philox_normal(n, SEED, OFFSET, 0.0, 1.0, np.float32),),
           [Version(1, "grid-stride, Box-Muller", lambda rt, n: (make_ops(rt).philox_normal(
               n, SEED, OFFSET, 0.0, 1.0, np.float32),), production=True)],
           cases, rtol=1e-5, atol=1e-5),
    Kernel("philox_uniform_next", dev_ref,
           [Version(1, "grid-stride, last block advances the offset", dev_prod, production=True)],
           dev_cases, exact=True),
]

if __name__ == "__main__":
    sys.exit(run_family("rng", KERNELS))
