"""loss.cu: sigmoid cross-entropy with logits (mean), forward and backward.

    python bench/kernels/loss.py [--emulated] [--check-only] [--fast]

Napkin math: the DCGAN's logits are (64, 1): 256 bytes in, 4 bytes out — pure launch latency
(~2–3 us eager, ~1 us in a CUDA graph); the forward is one block (a 0-d result), the backward
grid-stride. A large case (1 M logits) shows the bandwidth the forward's single block reaches
(~6 GB/s by Little's law: a reason to keep it for small N only).

Versions: production only (1 = one block forward, grid-stride backward).

``sigmoid_bce_with_logits_halves`` (the D step's loss in one pass: 2 x 64 logits, targets 1 and
0 per half; per-half losses, dlogits, mean σ and the loss sum): 1 = two fused launches and an
add_scalars (the two-pass D step's three launches), 2 = one launch (production); bit-identical.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Kernel, Version, run_family  # noqa: E402

from rawgan.backend import reference as R  # noqa: E402
from rawgan.backend.cuda import make_ops  # noqa: E402


def sizes(fast):
    return [("7x1", 7), ("300x1", 300)] if fast else [("D logits 64x1", 64), ("1M x1", 1 << 20)]


def cases(fast):
    rng = np.random.default_rng(0)
    return [Case(name, {"x": (rng.standard_normal((n, 1)) * 4).astype(np.float32)}, nbytes=4 * n)
            for name, n in sizes(fast)]


def bwd_cases(fast):
    return [Case(c.name, c.inputs, nbytes=8 * c.inputs["x"].size) for c in cases(fast)]


def halves_cases(fast):
    return [Case(c.name.replace("64x1", "2x64x1"), {"x": np.concatenate([c.inputs["x"]] * 2)},
                 nbytes=8 * 2 * c.inputs["x"].size) for c in cases(fast)]


def halves_v1(rt, x):
    ops = make_ops(rt)
    h = x.shape[0] // 2
    la, da, sa = ops.sigmoid_bce_with_logits_forward_backward(x[:h], 1.0)
    lb, db, sb = ops.sigmoid_bce_with_logits_forward_backward(x[h:], 0.0)
    return la, lb, rt.xp.concatenate([da, db]), sa, sb, ops.scalar_add(la, lb)


def halves_v2(rt, x):
    (la, lb), dx, (sa, sb), total = make_ops(rt).sigmoid_bce_with_logits_forward_backward_halves(
        x, (1.0, 0.0))
    return la, lb, dx, sa, sb, total


def halves_ref(x):
    (la, lb), dx, (sa, sb), total = R.sigmoid_bce_with_logits_forward_backward_halves(x, (1.0, 0.0))
    return la, lb, dx, sa, sb, total


KERNELS = [
    Kernel("sigmoid_bce_with_logits_forward",
           lambda x: (R.sigmoid_bce_with_logits_forward(x, 1.0),),
           [Version(1, "one block", lambda rt, x: (make_ops(rt).sigmoid_bce_with_logits_forward(x, 1.0),),
                    production=True)],
           cases, rtol=1e-5, atol=1e-6),
    Kernel("sigmoid_bce_with_logits_backward",
           lambda x: (R.sigmoid_bce_with_logits_backward(x, 0.0, 2.0),),
           [Version(1, "grid-stride",
                    lambda rt, x: (make_ops(rt).sigmoid_bce_with_logits_backward(x, 0.0, 2.0),),
                    production=True)],
           bwd_cases, rtol=1e-5, atol=1e-7),
    Kernel("sigmoid_bce_with_logits_halves", halves_ref,
           [Version(1, "two fused launches + add_scalars", halves_v1),
            Version(2, "one block, both halves", halves_v2, production=True)],
           halves_cases, rtol=1e-5, atol=1e-6),
]

if __name__ == "__main__":
    sys.exit(run_family("loss", KERNELS))
