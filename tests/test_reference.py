"""The reference backend (rawgan.backend.reference) is what it claims to be.

* Its convolution passes (im2col + GEMM fprop, GEMM + col2im dgrad, im2col + GEMM wgrad) equal a
  naive loop over output pixels and kernel taps — small odd shapes, strides 1–3, asymmetric
  padding, float32 and float64 — and col2im is the adjoint of im2col.
* It stays naive: its files import nothing but NumPy and each other (no threads, no
  ``as_strided``), and every op returns NCHW-contiguous arrays of the input's dtype.
(The gradchecks, tests/test_gradcheck.py, and the torch parity tests, tests/test_torch_parity.py,
run against this backend too.)
"""
import ast
import pathlib

import numpy as np
import pytest

from rawgan.backend import get_backend
from rawgan.backend import reference as R
from rawgan.backend.reference import conv


def naive_conv(x, w, b, stride, pad):
    N, C, H, W = x.shape
    K, _, R_, S = w.shape
    t, bo, l, r = pad
    xp = np.zeros((N, C, H + t + bo, W + l + r), dtype=np.float64)
    xp[:, :, t:t + H, l:l + W] = x
    P = (H + t + bo - R_) // stride[0] + 1
    Q = (W + l + r - S) // stride[1] + 1
    y = np.zeros((N, K, P, Q))
    for p in range(P):
        for q in range(Q):
            win = xp[:, :, p * stride[0]:p * stride[0] + R_, q * stride[1]:q * stride[1] + S]
            y[:, :, p, q] = np.einsum("ncrs,kcrs->nk", win, w)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def naive_dgrad(dy, w, x_shape, stride, pad):
    N, C, H, W = x_shape
    K, _, R_, S = w.shape
    t, bo, l, r = pad
    dxp = np.zeros((N, C, H + t + bo, W + l + r))
    P, Q = dy.shape[2:]
    for p in range(P):
        for q in range(Q):
            dxp[:, :, p * stride[0]:p * stride[0] + R_, q * stride[1]:q * stride[1] + S] += \
                np.einsum("nk,kcrs->ncrs", dy[:, :, p, q], w)
    return dxp[:, :, t:t + H, l:l + W]


def naive_wgrad(dy, x, w_shape, stride, pad):
    N, C, H, W = x.shape
    K, _, R_, S = w_shape
    t, bo, l, r = pad
    xp = np.zeros((N, C, H + t + bo, W + l + r))
    xp[:, :, t:t + H, l:l + W] = x
    dw = np.zeros(w_shape)
    P, Q = dy.shape[2:]
    for p in range(P):
        for q in range(Q):
            win = xp[:, :, p * stride[0]:p * stride[0] + R_, q * stride[1]:q * stride[1] + S]
            dw += np.einsum("nk,ncrs->kcrs", dy[:, :, p, q], win)
    return dw


CASES = [
    # (N, C, H, W, K, R, S, stride, pad)
    (2, 3, 7, 9, 4, 3, 2, (2, 3), (1, 2, 0, 1)),
    (3, 5, 11, 6, 2, 5, 5, (1, 1), (2, 2, 2, 2)),
    (1, 2, 8, 8, 3, 2, 3, (3, 2), (0, 0, 1, 0)),
    (2, 17, 9, 7, 5, 3, 3, (2, 2), (1, 0, 0, 2)),
    (2, 20, 10, 10, 6, 5, 5, (2, 2), (1, 2, 1, 2)),   # TF SAME k5 s2
    (2, 18, 7, 8, 3, 2, 2, (3, 3), (0, 1, 2, 0)),     # taps < stride: rows no window reads
    (1, 16, 5, 5, 4, 1, 1, (1, 1), (0, 0, 0, 0)),     # 1×1, no padding
    (2, 19, 6, 7, 3, 3, 4, (1, 2), (2, 1, 3, 0)),
]


def conv_data(case, seed=None):
    """x, w, b, dy (float64) for a case of CASES."""
    N, C, H, W, K, R_, S, stride, pad = case
    rng = np.random.default_rng(hash(case) % 2**32 if seed is None else seed)
    P = conv.conv_output_size(H, R_, stride[0], pad[0], pad[1])
    Q = conv.conv_output_size(W, S, stride[1], pad[2], pad[3])
    return (rng.standard_normal((N, C, H, W)), rng.standard_normal((K, C, R_, S)),
            rng.standard_normal(K), rng.standard_normal((N, K, P, Q)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_passes_equal_naive_loops(case, dtype):
    stride, pad = case[7], case[8]
    x, w, b, dy = conv_data(case)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    xa, wa, ba, dya = (a.astype(dtype) for a in (x, w, b, dy))

    y = conv.conv2d_fprop(xa, wa, ba, stride, pad)
    assert y.shape == dy.shape and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, naive_conv(x, w, b, stride, pad), **tol)
    dx = conv.conv2d_dgrad(dya, wa, x.shape, stride, pad)
    assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.c_contiguous
    np.testing.assert_allclose(dx, naive_dgrad(dy, w, x.shape, stride, pad), **tol)
    dw = conv.conv2d_wgrad(dya, xa, w.shape, stride, pad)
    assert dw.shape == w.shape and dw.dtype == dtype and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, naive_wgrad(dy, x, w.shape, stride, pad), **tol)


@pytest.mark.parametrize("case", CASES)
def test_kept_cols_give_the_same_y_and_dw(case):
    """fprop(keep_cols=True) returns (the same y, im2col(x)); wgrad(cols=) equals the naive loop
    (float64) and, exactly, the wgrad that builds its own cols; cols of another shape raise."""
    stride, pad = case[7], case[8]
    x, w, b, dy = conv_data(case)
    y, cols = conv.conv2d_fprop(x, w, b, stride, pad, keep_cols=True)
    np.testing.assert_array_equal(y, conv.conv2d_fprop(x, w, b, stride, pad))
    np.testing.assert_array_equal(cols, conv.im2col(x, w.shape, stride, pad))
    dw = conv.conv2d_wgrad(dy, x, w.shape, stride, pad, cols=cols)
    np.testing.assert_array_equal(dw, conv.conv2d_wgrad(dy, x, w.shape, stride, pad))
    np.testing.assert_allclose(dw, naive_wgrad(dy, x, w.shape, stride, pad), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="cols has shape"):
        conv.conv2d_wgrad(dy, x, w.shape, stride, pad, cols=cols[:, :-1])


@pytest.mark.parametrize("case", CASES[:4])
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), c> = <x, col2im(c)> for random x and c (float64)."""
    stride, pad = case[7], case[8]
    x, w, _, _ = conv_data(case, seed=7)
    cols = conv.im2col(x, w.shape, stride, pad)
    N, C, H, W, K, R_, S = case[:7]
    P, Q = conv.output_hw(x.shape, w.shape, stride, pad)
    assert cols.shape == (C * R_ * S, N * P * Q)
    c = np.random.default_rng(8).standard_normal(cols.shape)
    lhs = float((cols * c).sum())
    rhs = float((x * conv.col2im(c, x.shape, w.shape, stride, pad)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_swap_axes01_with_bias():
    a = np.arange(24.0).reshape(2, 3, 4)
    out = conv.swap_axes01(a, (2, 3, 4), bias=np.array([10.0, 20.0]))
    assert out.shape == (3, 2, 4) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a.transpose(1, 0, 2) + np.array([10.0, 20.0])[None, :, None])


def test_reference_imports_only_numpy():
    """No threads, pools, strided views or other machinery: only ``numpy`` and sibling modules."""
    folder = pathlib.Path(R.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} >= {"conv.py", "batchnorm.py", "adam.py", "activations.py"}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module]
            else:
                continue
            assert all(n == "numpy" for n in names), f"{f.name} imports {names}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_returns_nchw_memory_of_the_input_dtype(dtype):
    B = get_backend("reference", dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    g, b = np.ones(3, dtype), np.zeros(3, dtype)
    y = B.ops.conv2d_fprop(x, w, np.ones(4, dtype), (2, 1), (1, 1, 0, 2))
    outs = [y, B.ops.conv2d_dgrad(y, w, x.shape, (2, 1), (1, 1, 0, 2)),
            B.ops.conv2d_wgrad(y, x, w.shape, (2, 1), (1, 1, 0, 2)),
            B.ops.relu_forward(x), B.ops.leaky_relu_backward(x, x, 0.2), B.ops.tanh_backward(x, x)]
    yb, mean, invstd = B.ops.batchnorm_forward_train(x, g, b, np.zeros(3, dtype),
                                                     np.ones(3, dtype), 0.1, 1e-5)
    outs += [yb, mean, invstd, *B.ops.batchnorm_backward_train(x, x, g, mean, invstd)]
    for out in outs:
        assert out.dtype == dtype and out.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,G", [((6, 5, 3, 7), 3), ((4, 3), 2)])
def test_batchnorm_ghost_batches_are_separate_passes(shape, G, dtype):
    """ghost_batches = G: y, dx are the per-sub-batch formulas (written out here with NumPy, not
    with the op), statistics (G, C), running statistics updated G times in order, dγ/dβ the sum
    of the sub-batches' added to (accumulate) or written over the given buffers."""
    rng = np.random.default_rng(41)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    y, mean, invstd = R.batchnorm_forward_train(x, g, b, rm, rv, 0.1, 1e-5, True, G)
    assert mean.shape == invstd.shape == (G, C) and y.dtype == dtype
    axes = (0,) + tuple(range(2, x.ndim))
    bs = (1, -1) + (1,) * (x.ndim - 2)
    want_rm, want_rv = np.zeros(C), np.ones(C)
    dg_want, db_want = np.full(C, 2.0), np.full(C, -1.0)       # accumulate onto these
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for k, (xs, dys) in enumerate(zip(np.split(x.astype(np.float64), G), np.split(dy.astype(np.float64), G))):
        M = xs.size // C
        mu, var = xs.mean(axis=axes), xs.var(axis=axes)
        xhat = (xs - mu.reshape(bs)) / np.sqrt(var.reshape(bs) + 1e-5)
        np.testing.assert_allclose(y[k * len(xs):(k + 1) * len(xs)], g.reshape(bs) * xhat + b.reshape(bs), **tol)
        np.testing.assert_allclose(mean[k], mu, **tol)
        want_rm = 0.9 * want_rm + 0.1 * mu
        want_rv = 0.9 * want_rv + 0.1 * var * M / (M - 1)
        dbeta, dgamma = dys.sum(axis=axes), (dys * xhat).sum(axis=axes)
        dg_want, db_want = dg_want + dgamma, db_want + dbeta
    np.testing.assert_allclose(rm, want_rm, **tol)
    np.testing.assert_allclose(rv, want_rv, **tol)
    dg, db = np.full(C, 2.0, dtype), np.full(C, -1.0, dtype)
    dx, dg2, db2 = R.batchnorm_backward_train(dy, x, g, mean, invstd, dg, db, True, G)
    assert dg2 is dg and db2 is db
    np.testing.assert_allclose(dg, dg_want, **tol)
    np.testing.assert_allclose(db, db_want, **tol)
    for k in range(G):                                  # each sub-batch's own coupled gradient
        sl = slice(k * (shape[0] // G), (k + 1) * (shape[0] // G))
        want = R.batchnorm_backward_train(dy[sl], x[sl], g, mean[k], invstd[k])[0]
        np.testing.assert_array_equal(dx[sl], want)
    _, dg3, _ = R.batchnorm_backward_train(dy, x, g, mean, invstd, dg.copy(), db.copy(), False, G)
    np.testing.assert_allclose(dg3, dg_want - 2.0, **tol)   # written, not added, by sub-batch 0


@pytest.mark.parametrize("shape,G", [((6, 5, 3, 7), 1), ((6, 5, 3, 7), 3), ((4, 3), 2)])
def test_batchnorm_backward_folded_bias_grad(shape, G):
    """dbias_out: the gradient of a bias b added to BN's input, Σ dx per channel, written then
    added (accumulate) — in float64 it is 0 to rounding (BN's output does not depend on b), and
    a finite difference in b agrees; dx, dγ, dβ are those of the call without it."""
    rng = np.random.default_rng(44)
    C = shape[1]
    x, dy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    g, b = rng.standard_normal(C), rng.standard_normal(C)
    _, mean, invstd = R.batchnorm_forward_train(x, g, b, np.zeros(C), np.ones(C), 0.1, 1e-5, False, G)
    dbias = np.full(C, 5.0)
    for acc in (False, True):
        dx, dg, db = R.batchnorm_backward_train(dy, x, g, mean, invstd, None, None, acc, G,
                                                dbias_out=dbias)
        want = R.batchnorm_backward_train(dy, x, g, mean, invstd, ghost_batches=G)
        for got, w in zip((dx, dg, db), want):
            np.testing.assert_array_equal(got, w)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(dbias, 2 * dx.sum(axis=axes), rtol=0, atol=0)
    assert np.abs(dbias).max() < 1e-10 * np.abs(dx).sum()
    # d/db of sum(dy * BN(x + b)) by central differences: 0 as well
    bs = (1, -1) + (1,) * (x.ndim - 2)
    def loss(shift):
        rm, rv = np.zeros(C), np.ones(C)
        return (dy * R.batchnorm_forward_train(x + shift.reshape(bs), g, b, rm, rv, 0.1, 1e-5,
                                               False, G)[0]).sum()
    e = np.zeros(C)
    e[1] = 1e-4
    assert abs((loss(e) - loss(-e)) / 2e-4) < 1e-6


def test_batchnorm_ghost_batches_errors():
    x = np.zeros((6, 2, 1, 1), np.float32)
    args = (np.ones(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
            np.ones(2, np.float32), 0.1, 1e-5, False)
    with pytest.raises(ValueError, match="ghost_batches=4 does not divide the batch size N=6"):
        R.batchnorm_forward_train(x, *args, 4)
    with pytest.raises(ValueError, match="single value per channel"):
        R.batchnorm_forward_train(x, *args, 6)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="int >= 1"):
            R.batchnorm_forward_train(x, *args, bad)
