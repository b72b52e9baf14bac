"""2-D convolution (cross-correlation, as in every DL framework) by im2col + GEMM (NumPy reference).

Layouts: x (N, C, H, W); w (K, C, R, S); y (N, K, P, Q), with stride (sh, sw) and explicit padding
``pad = (top, bottom, left, right)`` so that TensorFlow "SAME" (k=5, s=2 on an even input: 1 before,
2 after) and symmetric padding are both exact:

    P = (H + top + bottom − R) // sh + 1,   Q = (W + left + right − S) // sw + 1
    y[n,k,p,q] = b[k] + Σ_{c,r,s} w[k,c,r,s] · xpad[n, c, p·sh + r, q·sw + s]

The three passes are the cuDNN names: **fprop** (y from x), **dgrad** (dx from dy — which is also
the forward of the transposed convolution) and **wgrad** (dw from dy and x). With the window
matrix ``cols[(c,r,s), (n,p,q)] = xpad[n, c, p·sh+r, q·sw+s]`` (im2col):

    fprop:  Y = W₂ · cols          W₂ = w.reshape(K, C·R·S)
    wgrad:  dW₂ = dY · colsᵀ       dY = dy as (K, N·P·Q)
    dgrad:  dcols = W₂ᵀ · dY, then col2im scatters-and-adds dcols back into dxpad and crops.

Source: Chellapilla et al., "High Performance Convolutional Neural Networks for Document
Processing" (2006) for im2col; the pass names follow cuDNN's API.
Fast path (what the three passes actually run). The public functions keep the NCHW signatures
above, but compute in channels-last (NHWC) memory, where one window row of S·C values is
contiguous:

    fprop:  cols[(n,p,q), (r,s,c)] = xpad[n, p·sh+r, q·sw+s, c]   (one strided-view copy)
            y[(n,p,q), k] = cols @ W₂ᵀ,  W₂[k, (r,s,c)] = w[k, c, r, s]
    wgrad:  dW₂ = dYᵀ @ cols              dY[(n,p,q), k] = dy[n, k, p, q]
    dgrad:  dcols = dY @ W₂, then col2im adds each tap's (N, P, Q, C) slab into dxpad

The padded input is written straight into a zero-bordered buffer (no ``np.pad``); cols are built
in chunks of images into a reused scratch buffer (bounded memory, cache-friendly), each chunk's
copy split across threads (``_parallel``; NumPy releases the GIL in copies), and the GEMM of a
chunk writes its rows of y with ``matmul(out=)``. Outputs (y of fprop, dx of dgrad) are fresh
arrays of the documented NCHW *shape* whose memory is channels-last (``a.transpose(0, 2, 3, 1)``
is C-contiguous, or a crop of a padded channels-last array for dgrad): NumPy semantics are
unchanged (same shape, dtype and values); elementwise ops downstream keep that memory order and
the next convolution reads it without a transpose. Call ``np.ascontiguousarray`` if you need
NCHW memory. :func:`im2col`/:func:`col2im` are the plain NCHW formulation, kept as the readable
reference (tests compare the fast path with them and with a naive loop).
"""
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _parallel


def conv_output_size(size, k, stride, pad_before, pad_after):
    """Output length of a convolution along one axis (floor mode)."""
    return (size + pad_before + pad_after - k) // stride + 1


def _out_hw(x_shape, w_shape, stride, pad):
    _, _, H, W = x_shape
    _, _, R, S = w_shape
    return (conv_output_size(H, R, stride[0], pad[0], pad[1]),
            conv_output_size(W, S, stride[1], pad[2], pad[3]))


def _pad(x, pad):
    t, b, l, r = pad
    if not (t or b or l or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def im2col(x, w_shape, stride, pad):
    """Window matrix of x: (C·R·S, N·P·Q), one strided slice copy per kernel tap (r, s)."""
    N, C, H, W = x.shape
    _, _, R, S = w_shape
    sh, sw = stride
    P, Q = _out_hw(x.shape, w_shape, stride, pad)
    xp = _pad(x, pad)
    cols = np.empty((C, R, S, N, P, Q), dtype=x.dtype)
    for r in range(R):
        for s in range(S):
            win = xp[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw]  # (N, C, P, Q)
            cols[:, r, s] = win.transpose(1, 0, 2, 3)
    return cols.reshape(C * R * S, N * P * Q)


def col2im(dcols, x_shape, w_shape, stride, pad):
    """Adjoint of :func:`im2col`: scatter-add (C·R·S, N·P·Q) windows into a (N, C, H, W) array."""
    N, C, H, W = x_shape
    _, _, R, S = w_shape
    sh, sw = stride
    t, b, l, r_ = pad
    P, Q = _out_hw(x_shape, w_shape, stride, pad)
    dcols = dcols.reshape(C, R, S, N, P, Q)
    dxp = np.zeros((N, C, H + t + b, W + l + r_), dtype=dcols.dtype)
    for r in range(R):
        for s in range(S):
            dxp[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw] += \
                dcols[:, r, s].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(dxp[:, :, t:t + H, l:l + W])


# --------------------------------------------------------------------------- fast path
_CHUNK_ELEMS = 1 << 22          # cols/dcols scratch per chunk: 4 Mi elements (16 MiB float32)
_MIN_PAR = 1 << 15              # elements below which a copy is not worth splitting
_tls = threading.local()


def _scratch(tag, n, dtype):
    """A reused 1-D scratch buffer of >= n elements (per thread, per tag and dtype)."""
    bufs = _tls.__dict__.setdefault("bufs", {})
    key = (tag, np.dtype(dtype).str)
    b = bufs.get(key)
    if b is None or b.size < n:
        b = np.empty(n, dtype=dtype)
        bufs[key] = b
    return b[:n]


def _padded_nhwc(x, pad):
    """x (N, C, H, W), any memory order -> channels-last xpad (N, H+t+b, W+l+r, C).

    Without padding a channels-last x is returned as a view. Otherwise the interior is copied into
    a cached buffer whose zero border is written only when the buffer is created (the cache key
    includes the padding, so the border is never overwritten).
    """
    N, C, H, W = x.shape
    t, b, l, r = pad
    xt = x.transpose(0, 2, 3, 1)
    if not (t or b or l or r):
        if xt.flags.c_contiguous:
            return xt
        out = np.empty((N, H, W, C), dtype=x.dtype)
        _parallel.parallel_for(lambda lo, hi: np.copyto(out[lo:hi], xt[lo:hi]), N,
                               _MIN_PAR, H * W * C)
        return out
    bufs = _tls.__dict__.setdefault("pads", {})
    key = (x.shape, tuple(pad), np.dtype(x.dtype).str)
    xp = bufs.get(key)
    if xp is None:
        xp = np.zeros((N, H + t + b, W + l + r, C), dtype=x.dtype)
        bufs[key] = xp
    inner = xp[:, t:t + H, l:l + W, :]
    _parallel.parallel_for(lambda lo, hi: np.copyto(inner[lo:hi], xt[lo:hi]), N, _MIN_PAR,
                           H * W * C)
    return xp


def _windows(xp, n0, n1, R, S, sh, sw, P, Q):
    """Strided view (n1−n0, P, Q, R, S, C) of the windows of images n0..n1 of xpad (NHWC)."""
    sN, sH, sW, sC = xp.strides
    return as_strided(xp[n0:n1], shape=(n1 - n0, P, Q, R, S, xp.shape[3]),
                      strides=(sN, sh * sH, sw * sW, sH, sW, sC), writeable=False)


def _im2col_nhwc(xp, n0, n1, R, S, sh, sw, P, Q, out):
    """Copy the windows of images n0..n1 into out (n1−n0, P, Q, R, S, C), split over threads."""
    nb = n1 - n0
    per = P * Q * R * S * xp.shape[3]
    if nb >= 2:
        def work(lo, hi):
            np.copyto(out[lo:hi], _windows(xp, n0 + lo, n0 + hi, R, S, sh, sw, P, Q))
        _parallel.parallel_for(work, nb, _MIN_PAR, per)
    else:
        win = _windows(xp, n0, n1, R, S, sh, sw, P, Q)

        def work(lo, hi):
            np.copyto(out[:, lo:hi], win[:, lo:hi])
        _parallel.parallel_for(work, P, _MIN_PAR, per // P)


def _chunks(N, per_image):
    nb = max(1, min(N, _CHUNK_ELEMS // max(1, per_image)))
    return [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]


def _rows_nhwc(a):
    """(N, K, P, Q) -> C-contiguous (N·P·Q, K) matrix of its channels-last memory (copy if needed)."""
    N, K, P, Q = a.shape
    at = a.transpose(0, 2, 3, 1)
    if not at.flags.c_contiguous:
        out = np.empty((N, P, Q, K), dtype=a.dtype)
        _parallel.parallel_for(lambda lo, hi: np.copyto(out[lo:hi], at[lo:hi]), N, _MIN_PAR,
                               P * Q * K)
        at = out
    return at.reshape(N * P * Q, K)


def _w_rsc(w):
    """w (K, C, R, S) -> contiguous W₂ (K, R·S·C), the channels-last flattening of each filter."""
    K = w.shape[0]
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(K, -1)


def conv2d_fprop(x, w, b, stride, pad):
    """y (N, K, P, Q) = conv(x, w) + b. ``b`` may be None. See the module docstring.

    The result has NCHW shape and channels-last memory (see "Fast path").
    """
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    sh, sw = stride
    P, Q = _out_hw(x.shape, w.shape, stride, pad)
    xp = _padded_nhwc(x, pad)
    W2t = _w_rsc(w).T                                   # (R·S·C, K), a transposed view
    y = np.empty((N * P * Q, K), dtype=np.result_type(x.dtype, w.dtype))
    per = P * Q * R * S * C
    for n0, n1 in _chunks(N, per):
        cols = _scratch("cols", (n1 - n0) * per, x.dtype).reshape(n1 - n0, P, Q, R, S, C)
        _im2col_nhwc(xp, n0, n1, R, S, sh, sw, P, Q, cols)
        yc = y[n0 * P * Q:n1 * P * Q]
        np.matmul(cols.reshape(-1, R * S * C), W2t, out=yc)
        if b is not None:
            yc += b
    return y.reshape(N, P, Q, K).transpose(0, 3, 1, 2)


def conv2d_dgrad(dy, w, x_shape, stride, pad):
    """dx (x_shape) = ∂(Σ dy·y)/∂x for y = conv2d_fprop(x, w, ·, stride, pad); dy (N, K, P, Q).

    The result has NCHW shape and channels-last memory (a crop of the padded gradient).
    """
    N, C, H, W = x_shape
    K, _, R, S = w.shape
    sh, sw = stride
    t, b_, l, r_ = pad
    P, Q = _out_hw(x_shape, w.shape, stride, pad)
    dY = _rows_nhwc(dy)                                  # (N·P·Q, K)
    W2 = _w_rsc(w)                                       # (K, R·S·C)
    dxp = np.zeros((N, H + t + b_, W + l + r_, C), dtype=np.result_type(dy.dtype, w.dtype))
    per = P * Q * R * S * C
    hs, ws = sh * (P - 1) + 1, sw * (Q - 1) + 1
    for n0, n1 in _chunks(N, per):
        nb = n1 - n0
        dcols = _scratch("dcols", nb * per, dxp.dtype)
        np.matmul(dY[n0 * P * Q:n1 * P * Q], W2, out=dcols.reshape(nb * P * Q, R * S * C))
        dc = dcols.reshape(nb, P, Q, R, S, C)

        def work(lo, hi, dc=dc, n0=n0):
            dst = dxp[n0 + lo:n0 + hi]
            src = dc[lo:hi]
            for r in range(R):
                for s in range(S):
                    dst[:, r:r + hs:sh, s:s + ws:sw, :] += src[:, :, :, r, s, :]
        _parallel.parallel_for(work, nb, _MIN_PAR, per)
    return dxp[:, t:t + H, l:l + W, :].transpose(0, 3, 1, 2)


def conv2d_wgrad(dy, x, w_shape, stride, pad):
    """dw (w_shape) = Σ over n,p,q of dy · window(x); dy (N, K, P, Q), x (N, C, H, W)."""
    N, C, H, W = x.shape
    K, _, R, S = w_shape
    sh, sw = stride
    P, Q = _out_hw(x.shape, w_shape, stride, pad)
    xp = _padded_nhwc(x, pad)
    dY = _rows_nhwc(dy)                                  # (N·P·Q, K)
    dW2 = np.zeros((K, R * S * C), dtype=np.result_type(dy.dtype, x.dtype))
    tmp = None
    per = P * Q * R * S * C
    for i, (n0, n1) in enumerate(_chunks(N, per)):
        cols = _scratch("cols", (n1 - n0) * per, x.dtype).reshape(n1 - n0, P, Q, R, S, C)
        _im2col_nhwc(xp, n0, n1, R, S, sh, sw, P, Q, cols)
        dYc = dY[n0 * P * Q:n1 * P * Q].T
        if i == 0:
            np.matmul(dYc, cols.reshape(-1, R * S * C), out=dW2)
        else:
            if tmp is None:
                tmp = np.empty_like(dW2)
            np.matmul(dYc, cols.reshape(-1, R * S * C), out=tmp)
            dW2 += tmp
    return np.ascontiguousarray(dW2.reshape(K, R, S, C).transpose(0, 3, 1, 2))

def bias_add(y, b):
    """y += b broadcast over (N, ·, H, W) channels, in place; returns y."""
    y += b.reshape(1, -1, *([1] * (y.ndim - 2)))
    return y


def bias_grad(dy):
    """db (K,) = Σ_{n,h,w} dy[n, k, h, w] (also correct for 2-D dy (N, K))."""
    axes = (0,) + tuple(range(2, dy.ndim))
    return dy.sum(axis=axes)
