"""The fast CPU backend (``get_backend("numpy")``, rawgan.backend.fastcpu) equals the reference.

* Every op of the reference exists in fastcpu; each one fastcpu implements itself is compared
  here with the reference's (the rest *are* the reference's functions).
* conv2d_fprop / dgrad / wgrad (channels-last im2col, phase-decomposed dgrad, channel-major
  col2im for few channels): small odd shapes, strides 1–3, asymmetric padding, float32 and
  float64, inputs in NCHW and channels-last memory, with chunking, split GEMMs and a 2-thread
  pool forced on.
* batch norm (rows form for channels-last and 2-D input) in both memory orders and dtypes.
* ReLU / LeakyReLU / tanh backward and Adam bit for bit, on arrays big enough for the pool.
* DCGAN training: gradients from one state, and the losses of the first training steps.
"""
import inspect

import numpy as np
import pytest

from rawgan.backend import PhiloxState, fastcpu, get_backend, reference
from rawgan.backend.fastcpu import _parallel
from rawgan.backend.fastcpu import conv

from test_reference import CASES, conv_data

# Ops fastcpu implements itself; each is compared with the reference below.
OWN_OPS = {"relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
           "tanh_backward", "conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad",
           "batchnorm_forward_train", "batchnorm_backward_train", "adam_update", "adam_step",
           "batchnorm_act_forward_train", "batchnorm_act_backward_train"}


def test_every_op_is_the_reference_or_tested_here():
    """fastcpu's own ops are exactly OWN_OPS, with the reference's parameter names."""
    public = {n for n in dir(reference) if inspect.isfunction(getattr(reference, n))}
    assert public - {"synchronize", "philox4x32_10"} == set(reference.OPS)
    for name in reference.OPS:
        mine, ref = getattr(fastcpu, name), getattr(reference, name)
        assert (mine is ref) != (name in OWN_OPS), name
        assert inspect.signature(mine).parameters.keys() == inspect.signature(ref).parameters.keys()
    assert get_backend("numpy").ops is fastcpu and get_backend("reference").ops is reference


def channels_last(a):
    """Same values, channels-last memory (what the fast convolutions return)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.fixture
def two_threads(monkeypatch):
    """A 2-thread pool, whatever the machine, and every GEMM split over it."""
    monkeypatch.setattr(_parallel, "num_threads", lambda: 2)
    monkeypatch.setattr(_parallel, "_POOL", None)
    monkeypatch.setattr(_parallel, "_SPLIT", True)


@pytest.fixture(params=[False, True], ids=["default", "tiny-chunks-split-gemms"])
def chunking(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(conv, "_CHUNK_ELEMS", 64)   # many image chunks and tap chunks
        monkeypatch.setattr(conv, "_GEMM_SPLIT_MIN", 0)  # every GEMM split over the pool
        monkeypatch.setattr(_parallel, "_SPLIT", True)
        monkeypatch.setattr(_parallel, "num_threads", lambda: 2)
        monkeypatch.setattr(_parallel, "_POOL", None)
    return request.param


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_conv_passes_equal_reference(case, dtype, layout, chunking):
    stride, pad = case[7], case[8]
    x, w, b, dy = (a.astype(dtype) for a in conv_data(case))
    tol = dict(rtol=5e-5, atol=5e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    lay = channels_last if layout == "nhwc" else (lambda a: a)

    y = conv.conv2d_fprop(lay(x), w, b, stride, pad)
    assert y.shape == dy.shape and y.dtype == dtype
    np.testing.assert_allclose(y, reference.conv2d_fprop(x, w, b, stride, pad), **tol)
    dx = conv.conv2d_dgrad(lay(dy), w, x.shape, stride, pad)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(dx, reference.conv2d_dgrad(dy, w, x.shape, stride, pad), **tol)
    dw = conv.conv2d_wgrad(lay(dy), lay(x), w.shape, stride, pad)
    assert dw.shape == w.shape and dw.dtype == dtype and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, reference.conv2d_wgrad(dy, x, w.shape, stride, pad), **tol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_cols_give_the_same_y_and_dw(case, dtype, chunking):
    """fprop(keep_cols=True): the same y and its (N·P·Q, R·S·C) cols in a fresh array (a later
    fprop does not overwrite them); wgrad(cols=) matches the reference and the wgrad that
    rebuilds its cols; cols of another shape raise ValueError."""
    stride, pad = case[7], case[8]
    x, w, b, dy = (a.astype(dtype) for a in conv_data(case))
    tol = dict(rtol=5e-5, atol=5e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y, cols = conv.conv2d_fprop(x, w, b, stride, pad, keep_cols=True)
    np.testing.assert_allclose(y, conv.conv2d_fprop(x, w, b, stride, pad), **tol)
    kept = cols.copy()
    conv.conv2d_fprop(x * 2, w, b, stride, pad, keep_cols=True)
    conv.conv2d_fprop(x * 3, w, b, stride, pad)
    np.testing.assert_array_equal(cols, kept)
    dw = conv.conv2d_wgrad(dy, x, w.shape, stride, pad, cols=cols)
    assert dw.shape == w.shape and dw.dtype == dtype and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, reference.conv2d_wgrad(dy, x, w.shape, stride, pad), **tol)
    np.testing.assert_allclose(dw, conv.conv2d_wgrad(dy, x, w.shape, stride, pad), **tol)
    with pytest.raises(ValueError, match="cols has shape"):
        conv.conv2d_wgrad(dy, x, w.shape, stride, pad, cols=cols[1:])


def test_fprop_output_is_fresh_and_channels_last():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    y1 = conv.conv2d_fprop(x, w, None, (1, 1), (1, 1, 1, 1))
    y1c = y1.copy()
    conv.conv2d_fprop(x * 2, w, None, (1, 1), (1, 1, 1, 1))    # reuses every scratch buffer
    np.testing.assert_array_equal(y1, y1c)
    assert y1.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("shape", [(6, 5, 3, 7), (64, 8, 4, 4), (9, 11), (64, 16, 16, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_batchnorm_train_equals_reference(shape, dtype, layout, unbiased, two_threads):
    rng = np.random.default_rng(3)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    lay = channels_last if (layout == "nhwc" and x.ndim == 4) else (lambda a: a)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    out = {}
    for name, ops, xa, dya in (("ref", reference, x, dy), ("fast", fastcpu, lay(x), lay(dy))):
        rm, rv = np.linspace(-1, 1, C).astype(dtype), np.linspace(0.5, 2, C).astype(dtype)
        y, mean, invstd = ops.batchnorm_forward_train(xa, g, b, rm, rv, 0.1, 1e-5, unbiased)
        grads = ops.batchnorm_backward_train(dya, xa, g, mean, invstd)
        out[name] = (y, mean, invstd, rm, rv, *grads)
    for got, want in zip(out["fast"], out["ref"]):
        assert got.shape == want.shape and got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, **tol)
    if layout == "nhwc" and x.ndim == 4:          # the rows form keeps channels-last memory
        assert out["fast"][0].transpose(0, 2, 3, 1).flags.c_contiguous
        assert out["fast"][5].transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_batchnorm_act_equals_reference(act, accumulate, two_threads):
    """BatchNorm + activation (composed from fastcpu's fast BN) against the reference, with the
    parameter gradients written into (or added to) given buffers."""
    rng = np.random.default_rng(13)
    shape, C = (6, 5, 7, 3), 5
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    start = rng.standard_normal((2, C)).astype(np.float32)
    out = {}
    for name, ops in (("ref", reference), ("fast", fastcpu)):
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        y, mean, invstd = ops.batchnorm_act_forward_train(x, g, b, rm, rv, 0.1, 1e-5, False, act, 0.2)
        dg, db = start[0].copy(), start[1].copy()
        dx, dg2, db2 = ops.batchnorm_act_backward_train(dy, y, x, g, mean, invstd, act, 0.2, dg, db,
                                                        accumulate=accumulate)
        assert dg2 is dg and db2 is db
        out[name] = (y, mean, invstd, rm, rv, dx, dg, db)
    for got, want in zip(out["fast"], out["ref"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    z, _, _ = reference.batchnorm_forward_train(x, g, b, np.zeros(C, np.float32),
                                                np.ones(C, np.float32), 0.1, 1e-5)
    want_y = np.maximum(z, 0) if act == "relu" else np.where(z > 0, z, 0.2 * z)
    np.testing.assert_allclose(out["ref"][0], want_y, rtol=1e-6, atol=1e-7)
    _, dg_plain, db_plain = reference.batchnorm_backward_train(
        dy * (z > 0) if act == "relu" else np.where(z > 0, dy, 0.2 * dy), x, g, out["ref"][1],
        out["ref"][2])
    np.testing.assert_allclose(out["ref"][6], dg_plain + (start[0] if accumulate else 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["ref"][7], db_plain + (start[1] if accumulate else 0), rtol=1e-5, atol=1e-6)


def test_batchnorm_rejects_3d_input_like_the_reference():
    x = np.zeros((2, 3, 4), np.float32)
    for ops in (reference, fastcpu):
        with pytest.raises(ValueError, match="expected 2-D"):
            ops.batchnorm_forward_train(x, np.ones(3, np.float32), np.zeros(3, np.float32),
                                        np.zeros(3, np.float32), np.ones(3, np.float32), 0.1, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.0, 1.5])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_activations_bitwise(dtype, slope, layout, two_threads):
    rng = np.random.default_rng(5)
    shape = (4, 33, 32, 32)                 # > the pool's threshold of 2^17 elements
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[:3] = [0.0, -0.0, np.nan]
    dy = rng.standard_normal(shape).astype(dtype)
    if layout == "nhwc":
        x, dy = channels_last(x), channels_last(dy)
    y = np.tanh(x)
    with np.errstate(invalid="ignore"):
        pairs = [(fastcpu.leaky_relu_forward(x, slope), reference.leaky_relu_forward(x, slope)),
                 (fastcpu.leaky_relu_backward(dy, x, slope),
                  reference.leaky_relu_backward(dy, x, slope)),
                 (fastcpu.relu_forward(x), reference.relu_forward(x)),
                 (fastcpu.relu_backward(dy, y), reference.relu_backward(dy, y)),
                 (fastcpu.tanh_backward(dy, y), reference.tanh_backward(dy, y))]
    for got, want in pairs:
        assert got.dtype == dtype and got.shape == shape
        np.testing.assert_array_equal(got, want)
    assert np.isnan(fastcpu.relu_forward(x).flat[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [5, (1 << 18) + 3])
def test_adam_bitwise_equals_reference(dtype, n):
    rng = np.random.default_rng(9)
    p0 = rng.standard_normal(n).astype(dtype)
    state = {name: [p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
             for name in ("ref", "fast")}
    for t in (1, 2, 3):
        g = rng.standard_normal(n).astype(dtype)
        reference.adam_update(*state["ref"][:1], g, *state["ref"][1:], t, 2e-4, 0.5, 0.999, 1e-8)
        fastcpu.adam_update(*state["fast"][:1], g, *state["fast"][1:], t, 2e-4, 0.5, 0.999, 1e-8)
    for got, want in zip(state["fast"], state["ref"]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(state["fast"][0], p0)


def test_adam_step_advances_t_and_equals_reference():
    """adam_step (the step count in a (1,) int64 array, as the device-resident step keeps it)."""
    rng = np.random.default_rng(10)
    n = 1000
    p0 = rng.standard_normal(n).astype(np.float32)
    state = {name: [p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32),
                    np.zeros(1, np.int64)] for name in ("ref", "fast")}
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        p, m, v, t = state["ref"]
        reference.adam_step(p, g, m, v, t, 2e-4, 0.5, 0.999, 1e-8)
        p, m, v, t = state["fast"]
        fastcpu.adam_step(p, g, m, v, t, 2e-4, 0.5, 0.999, 1e-8)
    for got, want in zip(state["fast"], state["ref"]):
        np.testing.assert_array_equal(got, want)
    assert int(state["fast"][3][0]) == 3


# --------------------------------------------------------------------------- DCGAN training
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dcgan_gradients_from_one_state_equal_reference(dtype):
    """One D update and one G update from identical weights: losses and every gradient."""
    from rawgan.models.dcgan import DCGAN

    rng = np.random.default_rng(12)
    x, z = rng.uniform(-1, 1, (4, 3, 64, 64)), rng.uniform(-1, 1, (4, 100))
    out = []
    for name in ("reference", "numpy"):
        B = get_backend(name, dtype)
        model = DCGAN(B, ngf=8, ndf=8, seed=5)
        d = model.d_step(B.asarray(x), B.asarray(z))
        d_grads = model.D.flat_grads.astype(np.float64)
        g = model.g_step(B.asarray(z))
        out.append((float(d["d_loss"]), float(g["g_loss"]), d_grads,
                    model.G.flat_grads.astype(np.float64)))
    (rl_d, rl_g, rd, rg), (fl_d, fl_g, fd, fg) = out
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose([fl_d, fl_g], [rl_d, rl_g], rtol=rtol)
    for got, want in ((fd, rd), (fg, rg)):
        assert np.abs(got - want).max() <= 10 * rtol * np.abs(want).max()


def test_dcgan_training_steps_equal_reference():
    """Same seed, weights, batches and z, float64: the losses of 3 training steps (1 D + 2 G
    updates each) agree to 1e-12, and so do the weights afterwards — except the conv biases that
    feed a BatchNorm, whose true gradient is exactly zero: there both backends must keep them at
    rounding-noise size (their difference reaches the running means at the 1e-10 level)."""
    from rawgan.layers import BatchNorm
    from rawgan.models.dcgan import DCGAN

    runs = []
    for name in ("reference", "numpy"):
        B = get_backend(name, "float64")
        model = DCGAN(B, ngf=8, ndf=8, seed=3)
        gen, data_rng = PhiloxState(7), np.random.default_rng(11)
        losses = []
        for _ in range(3):
            x = B.asarray(data_rng.uniform(-1, 1, (4, 3, 64, 64)))
            m = model.train_step(x, B.uniform(gen, (4, 100)), g_steps=2)
            losses.append([float(m[k]) for k in ("d_loss_real", "d_loss_fake", "g_loss")])
        runs.append((np.array(losses), model))
    (ref_losses, ref), (fast_losses, fast) = runs
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-12)
    assert fast.opt_D.t == ref.opt_D.t == 3 and fast.opt_G.t == ref.opt_G.t == 6
    for net_f, net_r in ((fast.G, ref.G), (fast.D, ref.D)):
        for i, (lf, lr) in enumerate(zip(net_f.layers, net_r.layers)):
            feeds_bn = i + 1 < len(net_r.layers) and isinstance(net_r.layers[i + 1], BatchNorm)
            for k in lr.params:
                what = f"{type(lr).__name__} {i} {k}"
                if k == "b" and feeds_bn:
                    assert max(np.abs(lf.params[k]).max(), np.abs(lr.params[k]).max()) < 1e-8, what
                else:
                    np.testing.assert_allclose(lf.params[k], lr.params[k], rtol=1e-10,
                                               atol=1e-14, err_msg=what)
            for k in lr.buffers:
                np.testing.assert_allclose(lf.buffers[k], lr.buffers[k], rtol=1e-10, atol=1e-8,
                                           err_msg=f"{type(lr).__name__} {i} {k}")


@pytest.mark.parametrize("shape", [(6, 5, 3, 7), (64, 8, 4, 4), (8, 11)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("G", [2, 3])
def test_batchnorm_ghost_batches_equal_reference(shape, layout, G, two_threads):
    """ghost_batches on the rows form (sub-batch g = a row range of the channels-last view) and
    the NCHW fallback, BN and BN + LeakyReLU with a folded bias, against the reference."""
    if shape[0] % G:
        G = 2
    rng = np.random.default_rng(43)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    x += np.linspace(-2, 2, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b, bias = (rng.standard_normal(C).astype(np.float32) for _ in range(3))
    lay = channels_last if (layout == "nhwc" and x.ndim == 4) else (lambda a: a)
    out = {}
    for name, ops, xa, dya in (("ref", reference, x, dy), ("fast", fastcpu, lay(x), lay(dy))):
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        y, mean, invstd = ops.batchnorm_forward_train(xa, g, b, rm, rv, 0.1, 1e-5, True, G)
        grads = ops.batchnorm_backward_train(dya, xa, g, mean, invstd, ghost_batches=G)
        ya, ma, ia = ops.batchnorm_act_forward_train(xa, g, b, rm, rv, 0.1, 1e-5, True,
                                                     "leaky_relu", 0.2, bias, G)
        dg, db, dbias = np.ones(C, np.float32), np.ones(C, np.float32), np.ones(C, np.float32)
        agrads = ops.batchnorm_act_backward_train(dya, ya, xa, g, ma, ia, "leaky_relu", 0.2, dg,
                                                  db, True, G, dbias_out=dbias)
        out[name] = (y, mean, invstd, *grads, ya, ma, ia, rm, rv, *agrads, dbias)
    assert out["fast"][1].shape == (G, C)
    # the folded bias's gradient: added onto the ones, Σ dx (~0: BN subtracts the mean)
    np.testing.assert_allclose(out["fast"][-1], 1.0, rtol=0, atol=1e-4)
    for got, want in zip(out["fast"], out["ref"]):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
