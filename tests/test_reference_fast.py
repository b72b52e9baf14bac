"""The fast NumPy reference paths equal plain formulations.

* conv2d_fprop / dgrad / wgrad (channels-last im2col, phase-decomposed dgrad, channel-major
  col2im for few channels) against a naive loop over output pixels and kernel taps, and against
  the plain NCHW im2col/col2im kept in the module — small odd shapes, strides 1–3, asymmetric
  padding, float32 and float64, inputs in NCHW and channels-last memory, chunking forced on.
* batch norm (rows path for channels-last input) against the textbook formulas in float64.
* activations (mask-free LeakyReLU, tanh backward) and Adam bit-for-bit against the plain
  expressions.
"""
import numpy as np
import pytest

from rawgan.backend.reference import activations as act
from rawgan.backend.reference import adam as adam_mod
from rawgan.backend.reference import batchnorm as bn
from rawgan.backend.reference import conv


def naive_conv(x, w, b, stride, pad):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    t, bo, l, r = pad
    xp = np.zeros((N, C, H + t + bo, W + l + r), dtype=np.float64)
    xp[:, :, t:t + H, l:l + W] = x
    P = (H + t + bo - R) // stride[0] + 1
    Q = (W + l + r - S) // stride[1] + 1
    y = np.zeros((N, K, P, Q))
    for p in range(P):
        for q in range(Q):
            win = xp[:, :, p * stride[0]:p * stride[0] + R, q * stride[1]:q * stride[1] + S]
            y[:, :, p, q] = np.einsum("ncrs,kcrs->nk", win, w)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def naive_dgrad(dy, w, x_shape, stride, pad):
    N, C, H, W = x_shape
    K, _, R, S = w.shape
    t, bo, l, r = pad
    dxp = np.zeros((N, C, H + t + bo, W + l + r))
    P, Q = dy.shape[2:]
    for p in range(P):
        for q in range(Q):
            dxp[:, :, p * stride[0]:p * stride[0] + R, q * stride[1]:q * stride[1] + S] += \
                np.einsum("nk,kcrs->ncrs", dy[:, :, p, q], w)
    return dxp[:, :, t:t + H, l:l + W]


def naive_wgrad(dy, x, w_shape, stride, pad):
    N, C, H, W = x.shape
    K, _, R, S = w_shape
    t, bo, l, r = pad
    xp = np.zeros((N, C, H + t + bo, W + l + r))
    xp[:, :, t:t + H, l:l + W] = x
    dw = np.zeros(w_shape)
    P, Q = dy.shape[2:]
    for p in range(P):
        for q in range(Q):
            win = xp[:, :, p * stride[0]:p * stride[0] + R, q * stride[1]:q * stride[1] + S]
            dw += np.einsum("nk,ncrs->kcrs", dy[:, :, p, q], win)
    return dw


def channels_last(a):
    """Same values, channels-last memory (what the fast convolutions return)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


CASES = [
    # (N, C, H, W, K, R, S, stride, pad)
    (2, 3, 7, 9, 4, 3, 2, (2, 3), (1, 2, 0, 1)),
    (3, 5, 11, 6, 2, 5, 5, (1, 1), (2, 2, 2, 2)),
    (1, 2, 8, 8, 3, 2, 3, (3, 2), (0, 0, 1, 0)),
    (2, 17, 9, 7, 5, 3, 3, (2, 2), (1, 0, 0, 2)),     # C >= 16: phase-decomposed dgrad
    (2, 20, 10, 10, 6, 5, 5, (2, 2), (1, 2, 1, 2)),   # TF SAME k5 s2
    (2, 18, 7, 8, 3, 2, 2, (3, 3), (0, 1, 2, 0)),     # taps < stride: phases without taps
    (1, 16, 5, 5, 4, 1, 1, (1, 1), (0, 0, 0, 0)),     # 1×1, no padding
    (2, 19, 6, 7, 3, 3, 4, (1, 2), (2, 1, 3, 0)),
]


@pytest.fixture(params=[False, True], ids=["default", "tiny-chunks-split-gemms"])
def chunking(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(conv, "_CHUNK_ELEMS", 64)   # many image chunks and tap chunks
        monkeypatch.setattr(conv, "_GEMM_SPLIT_MIN", 0)  # every GEMM split over the pool
        monkeypatch.setattr(conv._parallel, "_SPLIT", True)
        monkeypatch.setattr(conv._parallel, "num_threads", lambda: 2)
        monkeypatch.setattr(conv._parallel, "_POOL", None)
    return request.param


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_conv_passes_equal_naive_loops(case, dtype, layout, chunking):
    N, C, H, W, K, R, S, stride, pad = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C, R, S))
    b = rng.standard_normal(K)
    P = conv.conv_output_size(H, R, stride[0], pad[0], pad[1])
    Q = conv.conv_output_size(W, S, stride[1], pad[2], pad[3])
    dy = rng.standard_normal((N, K, P, Q))
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    lay = channels_last if layout == "nhwc" else (lambda a: a)
    xa, wa, ba, dya = lay(x.astype(dtype)), w.astype(dtype), b.astype(dtype), lay(dy.astype(dtype))

    y = conv.conv2d_fprop(xa, wa, ba, stride, pad)
    assert y.shape == (N, K, P, Q) and y.dtype == dtype
    np.testing.assert_allclose(y, naive_conv(x, w, b, stride, pad), **tol)
    dx = conv.conv2d_dgrad(dya, wa, (N, C, H, W), stride, pad)
    assert dx.shape == (N, C, H, W) and dx.dtype == dtype
    np.testing.assert_allclose(dx, naive_dgrad(dy, w, x.shape, stride, pad), **tol)
    dw = conv.conv2d_wgrad(dya, xa, w.shape, stride, pad)
    assert dw.shape == w.shape and dw.dtype == dtype and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, naive_wgrad(dy, x, w.shape, stride, pad), **tol)


@pytest.mark.parametrize("case", CASES[:4])
def test_conv_fast_equals_plain_im2col(case):
    """The fast passes against the module's plain NCHW im2col/col2im formulation (float64)."""
    N, C, H, W, K, R, S, stride, pad = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C, R, S))
    cols = conv.im2col(x, w.shape, stride, pad)
    P, Q = conv._out_hw(x.shape, w.shape, stride, pad)
    y_plain = (w.reshape(K, -1) @ cols).reshape(K, N, P, Q).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(conv.conv2d_fprop(x, w, None, stride, pad), y_plain, rtol=1e-12,
                               atol=1e-12)
    dy = rng.standard_normal((N, K, P, Q))
    dx_plain = conv.col2im(w.reshape(K, -1).T @ dy.transpose(1, 0, 2, 3).reshape(K, -1),
                           x.shape, w.shape, stride, pad)
    np.testing.assert_allclose(conv.conv2d_dgrad(dy, w, x.shape, stride, pad), dx_plain,
                               rtol=1e-12, atol=1e-12)


def test_fprop_output_is_fresh_and_channels_last():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    y1 = conv.conv2d_fprop(x, w, None, (1, 1), (1, 1, 1, 1))
    y1c = y1.copy()
    conv.conv2d_fprop(x * 2, w, None, (1, 1), (1, 1, 1, 1))    # reuses every scratch buffer
    np.testing.assert_array_equal(y1, y1c)
    assert y1.transpose(0, 2, 3, 1).flags.c_contiguous


def plain_bn_forward(x, gamma, beta, eps):
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    sh = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(sh)) ** 2).mean(axis=axes)
    inv = 1 / np.sqrt(var + eps)
    return (x - mean.reshape(sh)) * inv.reshape(sh) * gamma.reshape(sh) + beta.reshape(sh), \
        mean, var, inv


@pytest.mark.parametrize("shape", [(6, 5, 3, 7), (64, 8, 4, 4), (9, 11), (64, 16, 16, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_batchnorm_matches_textbook(shape, dtype, layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 2 + 0.5
    C = shape[1]
    g, b = rng.standard_normal(C), rng.standard_normal(C)
    dy = rng.standard_normal(shape)
    xa = x.astype(dtype)
    if layout == "nhwc" and x.ndim == 4:
        xa = channels_last(xa)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    y, mean, inv = bn.batchnorm_forward_train(xa, g.astype(dtype), b.astype(dtype), rm, rv,
                                              0.1, 1e-5)
    y_ref, mean_ref, var_ref, inv_ref = plain_bn_forward(x, g, b, 1e-5)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert y.dtype == mean.dtype == inv.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(rm, 0.1 * mean_ref, **tol)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * var_ref, **tol)
    dx, dg, db = bn.batchnorm_backward_train(dy.astype(dtype), xa, g.astype(dtype), mean, inv)
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    sh = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    M = x.size // C
    xhat = (x - mean_ref.reshape(sh)) * inv_ref.reshape(sh)
    db_ref = dy.sum(axis=axes)
    dg_ref = (dy * xhat).sum(axis=axes)
    dx_ref = (g * inv_ref / M).reshape(sh) * (M * dy - db_ref.reshape(sh)
                                                 - xhat * dg_ref.reshape(sh))
    assert dx.dtype == dg.dtype == db.dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(dg, dg_ref, **tol)
    np.testing.assert_allclose(db, db_ref, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.0, 1.5])
def test_activations_bitwise(dtype, slope):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.flat[:3] = [0.0, -0.0, np.nan]
    dy = rng.standard_normal(x.shape).astype(dtype)
    a = dtype(slope)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(act.leaky_relu_forward(x, slope),
                                      np.where(x > 0, x, x * a))
        np.testing.assert_array_equal(act.leaky_relu_backward(dy, x, slope),
                                      np.where(x > 0, dy, dy * a))
    y = np.tanh(x)
    np.testing.assert_array_equal(act.tanh_backward(dy, y), dy * (1 - y * y))
    assert act.relu_forward(x).dtype == dtype
    np.testing.assert_array_equal(act.relu_forward(x), np.maximum(x, 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [5, (1 << 18) + 3])
def test_adam_bitwise_plain_formula(dtype, n):
    rng = np.random.default_rng(9)
    p0, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    p, m, v = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    pr, mr, vr = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    dt = dtype
    for t in (1, 2, 3):
        adam_mod.adam_update(p, g, m, v, t, 2e-4, 0.5, 0.999, 1e-8)
        b1, b2 = dt(0.5), dt(0.999)
        mr *= b1
        mr += (1 - b1) * g
        vr *= b2
        vr += (1 - b2) * (g * g)
        denom = np.sqrt(vr / dt(1 - 0.999 ** t)) + dt(1e-8)
        pr -= dt(2e-4 / (1 - 0.5 ** t)) * mr / denom
    np.testing.assert_array_equal(m, mr)
    np.testing.assert_array_equal(v, vr)
    np.testing.assert_array_equal(p, pr)
