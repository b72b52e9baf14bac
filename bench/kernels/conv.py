"""conv.cu: im2col / col2im (and swap_axes01), and the whole im2col + GEMM convolution.

    python bench/kernels/conv.py [--emulated] [--check-only] [--fast]

Napkin math, D's conv2 at batch 64 (x 64x64x32x32, w 128x64x5x5, stride 2, TF SAME -> 16x16):
cols = C*R*S x N*P*Q = 1600 x 16384 floats = 105 MB. im2col reads x (16.8 MB; each element is
reused by ~6 windows from cache) and writes cols: ~122 MB = 25 us at 4.8 TB/s; col2im the
reverse. The GEMM is 2*K*(C*R*S)*(N*P*Q) = 6.7 GFLOP: 100 us at FP32 67 TFLOP/s, 14 us at TF32
495 TFLOP/s — so materialising cols costs as much as a TF32 GEMM (issue 9 item 4: implicit
GEMM or cuDNN). conv2d_fprop counts FLOPs only (bytes: its im2col's).

Versions: each kernel has its production version only (1 = gather per output element, grid-stride);
faster variants (shared-memory tiles, implicit GEMM) join here when they are measured faster.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.reference import conv as RC  # noqa: E402
from rawgan.backend.cuda import conv, make_ops  # noqa: E402
from rawgan.backend.reference.conv import conv_output_size  # noqa: E402


def geometries(fast):
    """(name, x shape, w shape, stride, pad)."""
    if fast:
        return [("2x3x9x7 k5s2 same", (2, 3, 9, 7), (4, 3, 5, 5), (2, 2), (1, 2, 1, 2)),
                ("1x4x6x5 k3s1", (1, 4, 6, 5), (2, 4, 3, 3), (1, 1), (1, 1, 1, 1))]
    return [("D conv2 64x64x32x32 k5s2", (64, 64, 32, 32), (128, 64, 5, 5), (2, 2), (1, 2, 1, 2)),
            ("D conv1 64x3x64x64 k5s2", (64, 3, 64, 64), (64, 3, 5, 5), (2, 2), (1, 2, 1, 2))]


def cols_shape(xs, ws, stride, pad):
    P = conv_output_size(xs[2], ws[2], stride[0], pad[0], pad[1])
    Q = conv_output_size(xs[3], ws[3], stride[1], pad[2], pad[3])
    return (xs[1] * ws[2] * ws[3], xs[0] * P * Q), P, Q


def _cases(fast, seed, make):
    """One Case per geometry: ``make(rng, xs, ws, st, pd, cols_shape) -> (inputs, nbytes, flops)``."""
    rng = np.random.default_rng(seed)
    out = []
    for name, xs, ws, st, pd in geometries(fast):
        cs, _, _ = cols_shape(xs, ws, st, pd)
        inputs, nbytes, flops = make(rng, xs, ws, st, pd, cs)
        out.append(Case(name, inputs, nbytes=nbytes, flops=flops))
    return out


def _moved(xs, cs):
    return 4 * (int(np.prod(xs)) + int(np.prod(cs)))      # one image read/written, cols once


def im2col_cases(fast):
    return _cases(fast, 0, lambda rng, xs, ws, st, pd, cs: (
        {"x": rng.standard_normal(xs).astype(np.float32), "ws": ws, "st": st, "pd": pd},
        _moved(xs, cs), 0.0))


def col2im_cases(fast):
    return _cases(fast, 1, lambda rng, xs, ws, st, pd, cs: (
        {"dcols": rng.standard_normal(cs).astype(np.float32), "xs": xs, "ws": ws, "st": st,
         "pd": pd}, _moved(xs, cs), 0.0))


def fprop_cases(fast):
    return _cases(fast, 2, lambda rng, xs, ws, st, pd, cs: (
        {"x": rng.standard_normal(xs).astype(np.float32),
         "w": (rng.standard_normal(ws) * 0.1).astype(np.float32),
         "b": rng.standard_normal(ws[0]).astype(np.float32), "st": st, "pd": pd},
        0, 2.0 * ws[0] * cs[0] * cs[1]))


KERNELS = [
    Kernel("im2col", lambda x, ws, st, pd: (RC.im2col(x, ws, st, pd),),
           [Version(1, "gather, grid-stride", lambda rt, x, ws, st, pd: (conv.im2col(rt, x, ws, st, pd),),
                    production=True)],
           im2col_cases, exact=True),
    Kernel("col2im", lambda dcols, xs, ws, st, pd: (RC.col2im(dcols, xs, ws, st, pd),),
           [Version(1, "deterministic gather, grid-stride",
                    lambda rt, dcols, xs, ws, st, pd: (conv.col2im(rt, dcols, xs, ws, st, pd),),
                    production=True)],
           col2im_cases, rtol=1e-5, atol=1e-5),
    Kernel("conv2d_fprop", lambda x, w, b, st, pd: (R.conv2d_fprop(x, w, b, st, pd),),
           [Version(1, "im2col + GEMM (rt.gemm: cuBLAS) + swap_axes01 with bias",
                    lambda rt, x, w, b, st, pd: (make_ops(rt).conv2d_fprop(x, w, b, st, pd),),
                    production=True)],
           fprop_cases, rtol=1e-4, atol=1e-4, tensor_core=True),
]

if __name__ == "__main__":
    sys.exit(run_family("conv", KERNELS))
