"""Adam over a flat parameter buffer (NumPy reference), updating in place.

Source: Kingma & Ba, "Adam" (ICLR 2015), Algorithm 1, with PyTorch's placement of eps
(``torch.optim.Adam``): eps is added to the bias-corrected √v̂,

    m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p − lr · (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + eps)

TensorFlow's ``AdamOptimizer`` (used by DCGAN-tensorflow) instead folds the bias corrections into
the step size, lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ), and adds eps to the uncorrected √v. That is the formula
above with eps replaced by eps/√(1−β₂ᵗ) (a larger eps in early steps). With eps = 1e-8 the two are
indistinguishable in practice; we follow PyTorch so the update is testable against it.
"""
import numpy as np


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step at step count ``t`` (1-based, already incremented), in place.

    p, g, m, v: 1-D arrays of one dtype (float32/float64) and length; m and v are the first and
    second moments (zeros before step 1). The scalars are rounded to that dtype, then the formula
    of the module docstring is evaluated as written.
    """
    dt = p.dtype.type
    b1, b2 = dt(beta1), dt(beta2)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = np.sqrt(v / dt(1 - beta2 ** t)) + dt(eps)
    p -= dt(lr / (1 - beta1 ** t)) * m / denom


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps):
    """Advance the step count ``t`` (a (1,) int64 array, the device-side state of the CUDA
    backend) by one, then :func:`adam_update` at the new count. In place."""
    t[0] += 1
    adam_update(p, g, m, v, int(t[0]), lr, beta1, beta2, eps)
