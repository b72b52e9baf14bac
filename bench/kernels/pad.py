"""pad.cu: explicit zero padding of NCHW tensors (pad_nchw) and its adjoint, cropping (crop_nchw).

    python bench/kernels/pad.py [--emulated] [--check-only] [--fast]

Used by --conv-impl cudnn for TF SAME padding (1 before, 2 after for k=5, s=2): one extra row and
column after the image go in explicitly, cuDNN gets symmetric padding 1. Napkin math: pad_nchw
reads N·C·H·W and writes N·C·(H+1)·(W+1) floats, crop_nchw reads and writes N·C·H·W floats:
~8 bytes per element, memory bound. Full size: D conv2's input, 64 x 64 x 32 x 32 = 4.19 M
elements: 34.1 MB for the pad = 7.1 us at 4.8 TB/s.

Versions: production only (1 = grid-stride, one output element per thread).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend.cuda.cudnn_conv import crop2d, pad2d  # noqa: E402

EXTRA = (0, 1, 0, 1)          # TF SAME k5 s2 after the symmetric part


def shapes(fast):
    return [("2x3x7x5", (2, 3, 7, 5))] if fast else [("D conv2 in 64x64x32x32", (64, 64, 32, 32))]


def pad_cases(fast):
    rng = np.random.default_rng(0)
    out = []
    for name, s in shapes(fast):
        n, padded = int(np.prod(s)), s[0] * s[1] * (s[2] + 1) * (s[3] + 1)
        out.append(Case(name, {"x": rng.standard_normal(s).astype(np.float32)}, nbytes=4 * (n + padded)))
    return out


def crop_cases(fast):
    rng = np.random.default_rng(1)
    out = []
    for name, s in shapes(fast):
        n = int(np.prod(s))
        xp = rng.standard_normal((s[0], s[1], s[2] + 1, s[3] + 1)).astype(np.float32)
        out.append(Case(name, {"x_pad": xp}, nbytes=8 * n))
    return out


def ref_pad(x):
    return (np.pad(x, ((0, 0), (0, 0), (EXTRA[0], EXTRA[1]), (EXTRA[2], EXTRA[3]))),)


def ref_crop(x_pad):
    H, W = x_pad.shape[2] - EXTRA[0] - EXTRA[1], x_pad.shape[3] - EXTRA[2] - EXTRA[3]
    return (np.ascontiguousarray(x_pad[:, :, EXTRA[0]:EXTRA[0] + H, EXTRA[2]:EXTRA[2] + W]),)


def crop_v1(rt, x_pad):
    N, C, Hp, Wp = x_pad.shape
    return (crop2d(rt, x_pad, (N, C, Hp - EXTRA[0] - EXTRA[1], Wp - EXTRA[2] - EXTRA[3]), EXTRA),)


KERNELS = [
    Kernel("pad_nchw", ref_pad, [Version(1, "grid-stride", lambda rt, x: (pad2d(rt, x, EXTRA),),
                                         production=True)], pad_cases, exact=True),
    Kernel("crop_nchw", ref_crop, [Version(1, "grid-stride", crop_v1, production=True)], crop_cases,
           exact=True),
]

if __name__ == "__main__":
    sys.exit(run_family("pad", KERNELS))
