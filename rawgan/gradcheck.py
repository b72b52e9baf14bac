"""Finite-difference gradient checks for hand-written backward passes (float64).

Two checks, both on the scalar L = Σ c ⊙ f(x) for a fixed random projection c (so every output
element matters and the upstream gradient is a generic dense tensor):

* **element-wise** (small tensors): for every entry θᵢ of the input and of each parameter,
  the central difference (L(θ + h eᵢ) − L(θ − h eᵢ)) / 2h against the analytic ∂L/∂θᵢ.
* **directional** (big tensors; Chainer's ``check_backward``): one random unit direction d per
  tensor, (L(θ + h d) − L(θ − h d)) / 2h against ⟨∂L/∂θ, d⟩ — two evaluations instead of 2·numel.

Step h = 1e-5 in float64: the truncation error is O(h²·f''') ≈ 1e-10 relative and the rounding
error of the difference quotient is about noise = 4·ε_machine·(1 + |L|)/h ≈ 1e-10·(1 + |L|).
Tolerance rule: the relative error |a − n| / max(|a|, |n|, floor) must be below ``rtol`` (default
1e-6), where floor = max(1e-3·max|analytic|, noise/rtol): entries a thousand times smaller than
the tensor's largest gradient (or at the rounding-noise level) are measured against that floor
instead of against themselves, so a true zero gradient cannot divide by zero.
Inputs should be drawn away from kinks (ReLU/LeakyReLU at 0) by the caller — ``away_from_zero``.

Sources: Chainer ``gradient_check.check_backward``; CS231n notes "gradient checks".
"""
from __future__ import annotations

import numpy as np


def away_from_zero(rng, shape, margin=0.1, scale=1.0):
    """Standard-normal float64 samples with |x| >= margin (kinks of ReLU-like functions at 0)."""
    x = rng.standard_normal(shape) * scale
    return np.where(np.abs(x) < margin, np.sign(x + 1e-300) * margin + x, x)


class GradcheckError(AssertionError):
    """A gradient disagrees with its finite difference; the message names tensor and index."""


def _rel_err(a, n, floor):
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


def check_layer(layer, x, *, seed=0, h=1e-5, rtol=1e-6, directional=None, n_directions=3,
                forward=None, skip=()):
    """Check ``layer.backward`` (input and every parameter) against finite differences.

    Args:
        layer: a float64-backend layer with forward/backward and params/grads.
        x: float64 input (backend array).
        directional: True = random-direction check, False = element-wise, None = element-wise
            for tensors of at most 600 entries, directional otherwise.
        forward: optional callable x -> y used instead of ``layer.forward`` (e.g. for losses).
        skip: names ("x" or parameter names) not to check.
    Returns:
        dict name -> max relative error found.
    Raises:
        GradcheckError: naming the tensor, the index or direction, both values and the error.
        ValueError: if the backend is not float64.
    """
    B = layer.B
    if B.dtype != np.float64:
        raise ValueError("check_layer: gradient checks need a float64 backend")
    fwd = forward or layer.forward
    rng = np.random.default_rng(seed)
    y0 = fwd(x)
    c = B.asarray(rng.standard_normal(y0.shape))

    def loss(xv):
        return float(B.to_numpy((fwd(xv) * c).sum()))

    noise = 4 * np.finfo(np.float64).eps * (1 + abs(loss(x))) / h

    # Analytic gradients from one forward/backward at x.
    layer.zero_grad()
    fwd(x)
    dx = layer.backward(c)
    analytic = {"x": B.to_numpy(dx)}
    for name in layer.params:
        analytic[name] = B.to_numpy(layer.grads[name]).copy()

    tensors = {"x": (lambda: x, None)}
    for name in layer.params:
        tensors[name] = (lambda name=name: layer.params[name], name)

    errors = {}
    for name, (get, _) in tensors.items():
        if name in skip:
            continue
        target = get()
        a = analytic[name]
        floor = max(1e-3 * float(np.abs(a).max()), noise / rtol, 1e-300)
        use_dir = directional if directional is not None else target.size > 600
        worst = 0.0
        if use_dir:
            for k in range(n_directions):
                d = rng.standard_normal(target.shape)
                d /= np.linalg.norm(d)
                dd = B.asarray(d)
                target += h * dd
                lp = loss(x)
                target -= 2 * h * dd
                lm = loss(x)
                target += h * dd
                num = (lp - lm) / (2 * h)
                ana = float((a * d).sum())
                err = float(_rel_err(ana, num, floor))
                if err > rtol:
                    raise GradcheckError(f"{layer}: d/d{name} along random direction {k}: "
                                         f"analytic {ana:.12g}, numeric {num:.12g}, rel err {err:.3g}")
                worst = max(worst, err)
        else:
            flat = target.reshape(-1)
            for i in range(flat.size):
                old = float(B.to_numpy(flat[i]))
                flat[i] = old + h
                lp = loss(x)
                flat[i] = old - h
                lm = loss(x)
                flat[i] = old
                num = (lp - lm) / (2 * h)
                ana = float(a.reshape(-1)[i])
                err = float(_rel_err(ana, num, floor))
                if err > rtol:
                    idx = tuple(int(j) for j in np.unravel_index(i, target.shape))
                    raise GradcheckError(f"{layer}: d/d{name}[{idx}]: analytic {ana:.12g}, "
                                         f"numeric {num:.12g}, rel err {err:.3g}")
                worst = max(worst, err)
        errors[name] = worst
    return errors
