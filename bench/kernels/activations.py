"""activations.cu: ReLU / LeakyReLU / tanh / sigmoid, forward and backward.

    python bench/kernels/activations.py [--emulated] [--check-only] [--fast]

Napkin math: elementwise, float32; forward reads x and writes y (8 bytes/element), backward reads
dy and the saved tensor and writes dx (12 bytes/element); 1–20 FLOPs per element, so memory
bound at every size (0.1–2 FLOP/byte vs the H200's ~14 FLOP/byte FP32 balance). Full size: G's
largest activation, batch 64 x 64 channels x 32 x 32 = 4.19 M elements: 33.6 MB forward =
7.0 us at 4.8 TB/s.

Versions of relu_forward: 1 = naive (one thread per element, grid = ceil(n / 256), no grid-stride
loop); 2 = the production kernel (grid-stride, grid capped at 8 blocks per SM). The other
activations have only their production version.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, module, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import make_ops  # noqa: E402
from rawgan.backend.cuda.common import BLOCK, i64  # noqa: E402

V1_RELU = r'''
// Version 1 of relu_forward: one thread per element, no grid-stride loop.
extern "C" __global__ void relu_forward_v1(const float* __restrict__ x, float* __restrict__ y, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = fmaxf(x[i], 0.0f);
    }
}
'''

_OPS = {}


def ops(rt):
    if id(rt) not in _OPS:
        _OPS[id(rt)] = make_ops(rt)
    return _OPS[id(rt)]


def relu_v1(rt, x):
    y = rt.xp.empty_like(x)
    k = module(rt, "bench_activations_v1", V1_RELU).get_function("relu_forward_v1")
    k((-(-x.size // BLOCK),), (BLOCK,), (x, y, i64(x.size)))
    return (y,)


def sizes(fast):
    return [("3001", 3001), ("257x3", 771)] if fast else [("G act 64x64x32x32", 64 * 64 * 32 * 32)]


def unary_cases(fast):
    rng = np.random.default_rng(0)
    return [Case(name, {"x": rng.standard_normal(n).astype(np.float32) * 3}, nbytes=8 * n)
            for name, n in sizes(fast)]


def backward_cases(saved_fn):
    def cases(fast):
        rng = np.random.default_rng(1)
        out = []
        for name, n in sizes(fast):
            x = rng.standard_normal(n).astype(np.float32) * 3
            out.append(Case(name, {"dy": rng.standard_normal(n).astype(np.float32), "s": saved_fn(x)},
                            nbytes=12 * n))
        return out
    return cases


KERNELS = [
    Kernel("relu_forward", lambda x: (R.relu_forward(x),),
           [Version(1, "naive, one thread per element", relu_v1),
            Version(2, "grid-stride", lambda rt, x: (ops(rt).relu_forward(x),), production=True)],
           unary_cases, exact=True),
    Kernel("leaky_relu_forward", lambda x: (R.leaky_relu_forward(x, 0.2),),
           [Version(1, "grid-stride", lambda rt, x: (ops(rt).leaky_relu_forward(x, 0.2),), production=True)],
           unary_cases, exact=True),
    Kernel("tanh_forward", lambda x: (R.tanh_forward(x),),
           [Version(1, "grid-stride", lambda rt, x: (ops(rt).tanh_forward(x),), production=True)],
           unary_cases, rtol=1e-6, atol=1e-6),
    Kernel("sigmoid_forward", lambda x: (R.sigmoid_forward(x),),
           [Version(1, "grid-stride", lambda rt, x: (ops(rt).sigmoid_forward(x),), production=True)],
           unary_cases, rtol=1e-6, atol=1e-6),
    Kernel("relu_backward", lambda dy, s: (R.relu_backward(dy, s),),
           [Version(1, "grid-stride", lambda rt, dy, s: (ops(rt).relu_backward(dy, s),), production=True)],
           backward_cases(lambda x: np.maximum(x, 0)), exact=True),
    Kernel("leaky_relu_backward", lambda dy, s: (R.leaky_relu_backward(dy, s, 0.2),),
           [Version(1, "grid-stride", lambda rt, dy, s: (ops(rt).leaky_relu_backward(dy, s, 0.2),),
                    production=True)],
           backward_cases(lambda x: x), rtol=1e-6, atol=1e-7),
    Kernel("tanh_backward", lambda dy, s: (R.tanh_backward(dy, s),),
           [Version(1, "grid-stride", lambda rt, dy, s: (ops(rt).tanh_backward(dy, s),), production=True)],
           backward_cases(np.tanh), rtol=1e-6, atol=1e-7),
    Kernel("sigmoid_backward", lambda dy, s: (R.sigmoid_backward(dy, s),),
           [Version(1, "grid-stride", lambda rt, dy, s: (ops(rt).sigmoid_backward(dy, s),), production=True)],
           backward_cases(lambda x: 1 / (1 + np.exp(-x))), rtol=1e-6, atol=1e-7),
]

if __name__ == "__main__":
    sys.exit(run_family("activations", KERNELS))
