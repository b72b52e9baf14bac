"""Adam over a flat parameter buffer on the fast CPU backend, updating in place.

Formula, source and signature: ``rawgan.backend.reference.adam`` — this evaluates the same
expression in the same order (bit-for-bit equal results, tests/test_fastcpu.py), in blocks with
two scratch buffers instead of a temporary per operator.
"""
import numpy as np


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step at step count ``t`` (1-based, already incremented) on 1-D arrays, in place.

    Blocks of 256 Ki elements, so the two scratch buffers (``out=``) stay in cache.
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
    """Advance the step count ``t`` ((1,) int64 array) by one, then :func:`adam_update` at the
    new count (rawgan.backend.reference.adam.adam_step). In place."""
    t[0] += 1
    adam_update(p, g, m, v, int(t[0]), lr, beta1, beta2, eps)
