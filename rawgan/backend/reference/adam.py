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
    """One Adam step at step count ``t`` (1-based, already incremented) on 1-D arrays, in place.

    Same arithmetic as the formula in the module docstring, evaluated with two scratch buffers
    (``out=``) instead of a temporary per operator, in blocks of 256 Ki elements so the scratch
    stays in cache.
    """
    dt = p.dtype.type
    b1, b2 = dt(beta1), dt(beta2)
    c1, c2 = 1 - b1, 1 - b2
    bc1 = 1 - beta1 ** t
    bc2 = 1 - beta2 ** t
    bc2_, e, step = dt(bc2), dt(eps), dt(lr / bc1)
    n = p.shape[0]
    blk = 1 << 18
    tmp = np.empty(min(n, blk), dtype=p.dtype)
    tmp2 = np.empty(min(n, blk), dtype=p.dtype)
    for o in range(0, n, blk):
        sl = slice(o, min(n, o + blk))
        pb, gb, mb, vb = p[sl], g[sl], m[sl], v[sl]
        tb, ub = tmp[:pb.shape[0]], tmp2[:pb.shape[0]]
        mb *= b1
        np.multiply(gb, c1, out=tb)
        mb += tb
        vb *= b2
        np.multiply(gb, gb, out=tb)
        tb *= c2
        vb += tb
        np.divide(vb, bc2_, out=tb)
        np.sqrt(tb, out=tb)
        tb += e
        np.multiply(mb, step, out=ub)
        ub /= tb
        pb -= ub


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps):
    """Advance the step count ``t`` (a (1,) int64 array, the device-side state of the CUDA
    backend) by one, then :func:`adam_update` at the new count. In place."""
    t[0] += 1
    adam_update(p, g, m, v, int(t[0]), lr, beta1, beta2, eps)
