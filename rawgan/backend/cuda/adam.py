"""Adam on the CUDA backend: launcher of kernels/adam.cu (one launch per optimizer step).

Signature and semantics: rawgan.backend.reference.adam.adam_update (after ``rt`` is bound).
The bias corrections are computed here on the host from the Python int step count ``t`` —
step = lr / (1 − β₁ᵗ) and bc2 = 1 − β₂ᵗ in double precision, passed as float32 scalars — exactly
as the reference computes them; nothing is read back from the device.
Launch: grid-stride, grid = min(ceil(n / 256), block cap), block = 256.

``adam_step`` keeps the step count on the device (a (1,) int64 array ``t``): ``adam_begin_step``
(one thread) advances it and writes step and bc2 (same double-precision formulas) into a (2,)
float32 buffer, which ``adam_update_dev`` reads — so a captured graph replays correct steps.
"""
import numpy as np

from .common import f32, i64, kernel, launch_1d

MODULE = "adam"
OPS = ("adam_update", "adam_step")


def adam_update(rt, p, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step at step count ``t`` (1-based) on 1-D contiguous float32 buffers, in place."""
    bc1 = 1.0 - beta1 ** t
    bc2 = 1.0 - beta2 ** t
    launch_1d(rt, MODULE, "adam_update", p.size,
              (p, g, m, v, i64(p.size), f32(lr / bc1), f32(beta1), f32(beta2), f32(bc2), f32(eps)))


def adam_step(rt, p, g, m, v, t, lr, beta1, beta2, eps):
    """t[0] += 1 on the device, then one Adam step at that count (two launches, no host value
    of t). ``t`` is a (1,) int64 device array; p, g, m, v as in :func:`adam_update`."""
    scal = rt.empty((2,), np.float32)
    kernel(rt, MODULE, "adam_begin_step")((1,), (32,), (t, scal, float(lr), float(beta1), float(beta2)))
    launch_1d(rt, MODULE, "adam_update_dev", p.size,
              (p, g, m, v, i64(p.size), scal, f32(beta1), f32(beta2), f32(eps)))
