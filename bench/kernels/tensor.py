"""tensor.cu: the small kernels of a device-resident step — the uint8 batch to float NCHW, the
2N concat of D's one-pass update, the mean of sigmoid(logits), scalar sums, fill, accumulate.

    python bench/kernels/tensor.py [--emulated] [--check-only] [--fast]

Napkin math (batch 64): ``images_u8_to_float`` reads 64·64·64·3 = 786 KB of uint8 and writes
3.1 MB of float32 (4 MB: ~1 us at 4.8 TB/s; a gather from NHWC to NCHW, coalesced on the write
side); ``concat_f32`` copies 2 × 3.1 MB (6.3 MB read + 6.3 MB written: ~2.6 us);
``sigmoid_mean`` / ``add_scalars`` touch a
few hundred bytes: pure launch latency; ``fill_f32`` / ``accumulate_f32`` 4 / 12 bytes per element
(no longer part of a training step: the ops write gradients themselves).

Versions: production only (1 = grid-stride; the scalar kernels one block).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import make_ops  # noqa: E402


def image_cases(fast):
    rng = np.random.default_rng(0)
    shapes = [("3x5x7x3", (3, 5, 7, 3)), ("2x33x17x3", (2, 33, 17, 3))] if fast else \
        [("64x64x64x3", (64, 64, 64, 3))]
    return [Case(name, {"images": rng.integers(0, 256, s, dtype=np.uint8)},
                 nbytes=5 * int(np.prod(s))) for name, s in shapes]


def concat_cases(fast):
    rng = np.random.default_rng(1)
    shapes = [("2x3x5x7", (2, 3, 5, 7)), ("3x3x17x9", (3, 3, 17, 9))] if fast else \
        [("2 x 64x3x64x64", (64, 3, 64, 64))]
    return [Case(name, {"a": rng.standard_normal(s).astype(np.float32),
                        "b": rng.standard_normal(s).astype(np.float32)},
                 nbytes=16 * int(np.prod(s))) for name, s in shapes]


def logit_cases(fast):
    rng = np.random.default_rng(2)
    sizes = [("7", 7), ("1000", 1000)] if fast else [("64", 64), ("128", 128)]
    return [Case(name, {"logits": (rng.standard_normal((n, 1)) * 4).astype(np.float32)},
                 nbytes=4 * n) for name, n in sizes]


def scalar_cases(fast):
    return [Case("0-d", {"a": np.array(1.25, np.float32), "b": np.array(-3.5, np.float32)},
                 nbytes=12)]


def fill_cases(fast):
    sizes = [("257", 257), ("16387", 16387)] if fast else [("4M", 1 << 22)]
    rng = np.random.default_rng(3)
    return [Case(name, {"a": rng.standard_normal(n).astype(np.float32),
                        "b": rng.standard_normal(n).astype(np.float32)}, nbytes=12 * n)
            for name, n in sizes]


def ops(rt):
    return make_ops(rt)


def accumulate_ref(a, b):
    a = a.copy()
    R.accumulate(a, b)
    return (a,)


def accumulate_prod(rt, a, b):
    ops(rt).accumulate(a, b)
    return (a,)


def fill_ref(a, b):
    a = a.copy()
    R.fill(a, 0.5)
    return (a,)


def fill_prod(rt, a, b):
    ops(rt).fill(a, 0.5)
    return (a,)


KERNELS = [
    Kernel("images_u8_to_float", lambda images: (R.images_to_float(images),),
           [Version(1, "grid-stride, NHWC uint8 -> NCHW float", lambda rt, images:
                    (ops(rt).images_to_float(images),), production=True)],
           image_cases, exact=True),
    Kernel("concat_f32", lambda a, b: (R.concat_batch(a, b),),
           [Version(1, "grid-stride copy of both halves", lambda rt, a, b:
                    (ops(rt).concat_batch(a, b),), production=True)],
           concat_cases, exact=True),
    Kernel("sigmoid_mean", lambda logits: (R.sigmoid_mean(logits),),
           [Version(1, "one block", lambda rt, logits: (ops(rt).sigmoid_mean(logits),),
                    production=True)],
           logit_cases, rtol=1e-6, atol=1e-7),
    Kernel("add_scalars", lambda a, b: (R.scalar_add(a, b),),
           [Version(1, "one thread", lambda rt, a, b: (ops(rt).scalar_add(a, b),),
                    production=True)],
           scalar_cases, exact=True),
    Kernel("fill_f32", fill_ref, [Version(1, "grid-stride", fill_prod, production=True)],
           fill_cases, exact=True),
    Kernel("accumulate_f32", accumulate_ref,
           [Version(1, "grid-stride", accumulate_prod, production=True)], fill_cases, exact=True),
]

if __name__ == "__main__":
    sys.exit(run_family("tensor", KERNELS))
