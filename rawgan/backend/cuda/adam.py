"""Adam on the CUDA backend: launcher of kernels/adam.cu (one launch per optimizer step).

Signature and semantics: rawgan.backend.reference.adam.adam_update (after ``rt`` is bound).
The bias corrections are computed here on the host from the Python int step count ``t`` —
step = lr / (1 − β₁ᵗ) and bc2 = 1 − β₂ᵗ in double precision, passed as float32 scalars — exactly
as the reference computes them; nothing is read back from the device.
Launch: grid-stride, grid = min(ceil(n / 256), block cap), block = 256.

``adam_step`` keeps the step count on the device (a (1,) int64 array ``t``) and is ONE launch,
``adam_step_dev``: each block computes step and bc2 of t + 1 from the device's t (same
double-precision formulas), updates its elements, and the last block to finish advances t
(kernels/reduce.cuh, grid_last_block, with the counter common.grid_counter(rt, "adam")) — so a
captured graph replays correct steps.
"""
from .common import f32, grid_counter, i64, launch_1d

MODULE = "adam"
OPS = ("adam_update", "adam_step")


def adam_update(rt, p, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step at step count ``t`` (1-based) on 1-D contiguous float32 buffers, in place."""
    bc1 = 1.0 - beta1 ** t
    bc2 = 1.0 - beta2 ** t
    launch_1d(rt, MODULE, "adam_update", p.size,
              (p, g, m, v, i64(p.size), f32(lr / bc1), f32(beta1), f32(beta2), f32(bc2), f32(eps)))


def adam_step(rt, p, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step at step count t[0] + 1, then t[0] += 1 — on the device, in one launch (no
    host value of t). ``t`` is a (1,) int64 device array; p, g, m, v as in :func:`adam_update`."""
    launch_1d(rt, MODULE, "adam_step_dev", p.size,
              (p, g, m, v, i64(p.size), t, grid_counter(rt, MODULE), float(lr), float(beta1),
               float(beta2), f32(eps)))
