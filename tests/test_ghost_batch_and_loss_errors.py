"""Review of the one-pass D step, ghost-batch BN, kept im2col columns, last-block kernels and
the folded biases: misuse that must fail loudly, and states that must survive it.

* A training-mode BN forward that rejects its input leaves the previous forward's state (x,
  saved statistics, ghost batches) for the backward: the backward still gives that forward's dx.
* The training backward ops of every backend reject saved statistics that do not fit the
  ``ghost_batches`` they are given (the CUDA kernels would read past a (C,) array or mix up
  sub-batches), naming the argument, instead of a NumPy broadcast error or silent garbage.
"""
import numpy as np
import pytest

from rawgan.backend import get_backend
from rawgan.layers import BatchNorm, BatchNormAct

BACKENDS = ("reference", "numpy", "emulated")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("act", [None, "leaky_relu"])
def test_rejected_bn_forward_keeps_the_last_forwards_ghost_batches(name, act):
    B = get_backend(name)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    bn = BatchNorm(B, 4) if act is None else BatchNormAct(B, 4, act, 0.2)
    bn.ghost_batches = 2
    bn.forward(B.asarray(x))
    want = B.to_numpy(bn.backward(B.asarray(dy)))
    bn.forward(B.asarray(x))
    bn.ghost_batches = 4                          # does not divide N = 6: rejected
    with pytest.raises(ValueError, match="ghost_batches=4 does not divide the batch size N=6"):
        bn.forward(B.asarray(x))
    assert bn.ghost == 2
    np.testing.assert_array_equal(B.to_numpy(bn.backward(B.asarray(dy))), want)
    # and the G = 2 dx is not the whole batch's (so the comparison above can tell them apart)
    whole = BatchNorm(B, 4) if act is None else BatchNormAct(B, 4, act, 0.2)
    whole.forward(B.asarray(x))
    assert np.abs(B.to_numpy(whole.backward(B.asarray(dy))) - want).max() > 1e-2


@pytest.mark.parametrize("name", BACKENDS)
def test_bn_backward_ops_reject_saved_statistics_of_another_ghost_count(name):
    B = get_backend(name)
    ops = B.ops
    rng = np.random.default_rng(4)
    x = B.asarray(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    dy = B.asarray(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    g, b = B.asarray(np.ones(4)), B.asarray(np.zeros(4))
    y, sm, si = ops.batchnorm_act_forward_train(x, g, b, B.zeros((4,)), B.asarray(np.ones(4)),
                                                0.1, 1e-5, False, "relu", 0.0, None, 2)
    assert tuple(sm.shape) == (2, 4)
    for G, want in ((1, r"\(4,\)"), (3, r"\(3, 4\)")):
        msg = rf"save_mean of shape \(2, 4\) does not fit ghost_batches={G} .*expected {want}"
        with pytest.raises(ValueError, match=msg):
            ops.batchnorm_backward_train(dy, x, g, sm, si, ghost_batches=G)
        with pytest.raises(ValueError, match=msg):
            ops.batchnorm_act_backward_train(dy, y, x, g, sm, si, "relu", ghost_batches=G)
    # (C,) statistics with G = 2, and a save_invstd that does not match its save_mean
    _, sm1, si1 = ops.batchnorm_forward_train(x, g, b, B.zeros((4,)), B.asarray(np.ones(4)),
                                              0.1, 1e-5, False, 1)
    with pytest.raises(ValueError, match=r"save_mean of shape \(4,\) does not fit ghost_batches=2"):
        ops.batchnorm_backward_train(dy, x, g, sm1, si1, ghost_batches=2)
    with pytest.raises(ValueError,
                       match=r"save_invstd of shape \(4,\) does not fit ghost_batches=2"):
        ops.batchnorm_backward_train(dy, x, g, sm, si1, ghost_batches=2)
    # the matching pair still works and equals the reference's
    dx = B.to_numpy(ops.batchnorm_backward_train(dy, x, g, sm, si, ghost_batches=2)[0])
    assert np.isfinite(dx).all() and dx.shape == (6, 4, 3, 3)


@pytest.mark.parametrize("name", BACKENDS)
def test_halves_loss_rejects_an_empty_batch(name):
    """0 logits (two empty halves) was a ZeroDivisionError; now the op's ValueError, as an odd
    batch."""
    from rawgan.layers import SigmoidBCEWithLogits

    B = get_backend(name)
    loss = SigmoidBCEWithLogits(B)
    for shape in ((0, 1), (5, 1)):
        with pytest.raises(ValueError, match=r"does not split into two halves \(even, non-empty\)"):
            loss.forward_backward_halves(B.asarray(np.zeros(shape, np.float32)), (1.0, 0.0))
    (l0, l1), _, _, total = loss.forward_backward_halves(B.asarray(np.zeros((2, 1), np.float32)),
                                                         (1.0, 0.0))
    np.testing.assert_allclose([float(B.to_numpy(l0)), float(B.to_numpy(l1)),
                                float(B.to_numpy(total))], [np.log(2), np.log(2), 2 * np.log(2)],
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["reference", "numpy", "emulated"])
def test_loss_rejects_empty_logits(name):
    """0 logits was a ZeroDivisionError in forward/forward_backward; now a ValueError."""
    from rawgan.layers import SigmoidBCEWithLogits

    B = get_backend(name)
    loss = SigmoidBCEWithLogits(B)
    empty = B.asarray(np.zeros((0, 1), np.float32))
    with pytest.raises(ValueError, match="empty logits of shape \\(0, 1\\)"):
        loss.forward(empty, 1.0)
    with pytest.raises(ValueError, match="empty logits"):
        loss.forward_backward(empty, 0.0)
    assert np.isfinite(float(B.to_numpy(loss.forward(B.asarray(np.zeros((1, 1), np.float32)), 1.0))))


@pytest.mark.parametrize("chunks_shape", [(3, 4, 5, 5), (2, 3, 40, 40)])   # one block / 2-D
@pytest.mark.parametrize("given", ["dgamma", "dbeta"])
def test_bn_backward_with_one_gradient_buffer_accumulates_like_the_reference(chunks_shape, given):
    """Second review: with only one of dgamma_out/dbeta_out given and accumulate=True, the CUDA
    kernels (one accumulate flag for both) added the other gradient into uninitialised memory
    (or, with only dbeta_out, wrote instead of adding). Now: the given one is added to, the
    other returned plain — as the reference does."""
    rng = np.random.default_rng(31)
    x, dy = rng.standard_normal(chunks_shape), rng.standard_normal(chunks_shape)
    C = chunks_shape[1]
    gamma = rng.standard_normal(C)
    start = rng.standard_normal(C)
    out = {}
    for name in ("reference", "emulated"):
        B = get_backend(name)
        xb, dyb, gb = (B.asarray(a) for a in (x, dy, gamma))
        _, mean, invstd = B.ops.batchnorm_forward_train(
            xb, gb, B.asarray(np.zeros(C)), B.asarray(np.zeros(C)), B.asarray(np.ones(C)),
            0.1, 1e-5)
        buf = B.asarray(start)
        kw = {"dgamma_out": buf} if given == "dgamma" else {"dbeta_out": buf}
        _, dgamma, dbeta = B.ops.batchnorm_backward_train(dyb, xb, gb, mean, invstd,
                                                          accumulate=True, **kw)
        out[name] = [B.to_numpy(a).astype(np.float64) for a in (dgamma, dbeta)]
    for got, want in zip(out["emulated"], out["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    plain = out["reference"][1 if given == "dgamma" else 0]
    summed = out["reference"][0 if given == "dgamma" else 1]
    assert np.abs(summed - start).max() > 1e-3 and np.abs(plain - start).max() > 1e-3
