"""2-D convolution on the fast CPU backend: the reference's three passes, reorganised for speed.

Signatures, shapes and values: ``rawgan.backend.reference.conv`` (the truth; read it first). x
(N, C, H, W), w (K, C, R, S), y (N, K, P, Q), float32/float64, stride (sh, sw), pad (top,
bottom, left, right). What differs is how the passes run. They compute in channels-last (NHWC)
memory, where one window row of S·C values is contiguous:

    fprop:  cols[(n,p,q), (r,s,c)] = xpad[n, p·sh+r, q·sw+s, c]   (one strided-view copy)
            y[(n,p,q), k] = cols @ W₂ᵀ,  W₂[k, (r,s,c)] = w[k, c, r, s]
    wgrad:  dW₂ = dYᵀ @ cols              dY[(n,p,q), k] = dy[n, k, p, q]
            (cols: fprop's, when it was asked to keep them — ``keep_cols`` — else rebuilt)
    dgrad:  C >= 16: sh·sw stride-1 "gather" convolutions, one per output phase (each dx element
            written once, no scatter-add; :func:`_dgrad_phases`); C < 16 (the RGB layer): GEMM,
            then col2im in channel-major memory (:func:`_dgrad_col2im_cmajor`)

The padded input is written straight into a zero-bordered buffer (no ``np.pad``); cols are built
in chunks of images into a reused scratch buffer (bounded memory, cache-friendly), each chunk's
copy split across threads (``_parallel``; NumPy releases the GIL in copies), and the GEMM of a
chunk writes its rows of y with ``matmul(out=)``. Outputs (y of fprop, dx of dgrad) are fresh
arrays of the documented NCHW *shape* whose memory is channels-last (``a.transpose(0, 2, 3, 1)``
is C-contiguous), or channel-major for the C < 16 dgrad (a crop of a (C, N, H, W) buffer): NumPy
semantics are unchanged (same shape, dtype and values); elementwise ops downstream keep that
memory order and the next convolution reads it without a transpose. Call ``np.ascontiguousarray``
if you need NCHW memory. ``tests/test_fastcpu.py`` checks every pass against the reference.
"""
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..reference.conv import output_hw
from ..reference.tensor import write_grad
from . import _parallel

_CHUNK_ELEMS = 1 << 24          # cols/dcols scratch per chunk: 16 Mi elements (64 MiB float32)
_SMALL_C = 16                   # dgrad: below this many input channels, col2im in C-major memory
_PAD_CACHE = 16                 # padded-input buffers kept (one per shape/padding/dtype)
_MIN_PAR = 1 << 15              # elements below which a copy is not worth splitting
_tls = threading.local()
_GEMM_SPLIT_MIN = 1 << 22       # m·n·k below which a GEMM is not split across threads


def _mm(a, b, out):
    """out = a @ b (2-D), split over the pool's threads by output rows or columns when OpenBLAS
    is single-threaded (``_parallel.split_gemms``); otherwise one ``np.matmul``."""
    M, Kd = a.shape
    N = b.shape[1]
    if M * N * Kd < _GEMM_SPLIT_MIN or not _parallel.split_gemms():
        return np.matmul(a, b, out=out)
    if M >= N:
        _parallel.parallel_for(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), M)
    else:
        _parallel.parallel_for(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), N)
    return out


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
        if len(bufs) >= _PAD_CACHE:                 # bounded: drop the oldest shape
            bufs.pop(next(iter(bufs)))
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


def conv2d_fprop(x, w, b, stride, pad, keep_cols=False):
    """y (N, K, P, Q) = conv(x, w) + b. ``b`` may be None. See the module docstring.

    The result has NCHW shape and channels-last memory. ``keep_cols``: return (y, cols), cols
    the channels-last window matrix (N·P·Q, R·S·C) of x in a new array (built whole, not in
    chunks: N·P·Q·R·S·C elements held by the caller) for :func:`conv2d_wgrad`'s ``cols``.
    """
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    sh, sw = stride
    P, Q = output_hw(x.shape, w.shape, stride, pad)
    xp = _padded_nhwc(x, pad)
    W2t = _w_rsc(w).T                                   # (R·S·C, K), a transposed view
    y = np.empty((N * P * Q, K), dtype=np.result_type(x.dtype, w.dtype))
    per = P * Q * R * S * C
    kept = np.empty((N, P, Q, R, S, C), dtype=x.dtype) if keep_cols else None
    for n0, n1 in ([(0, N)] if keep_cols else _chunks(N, per)):
        if keep_cols:
            cols = kept
        else:
            cols = _scratch("cols", (n1 - n0) * per, x.dtype).reshape(n1 - n0, P, Q, R, S, C)
        _im2col_nhwc(xp, n0, n1, R, S, sh, sw, P, Q, cols)
        yc = y[n0 * P * Q:n1 * P * Q]
        _mm(cols.reshape(-1, R * S * C), W2t, out=yc)
        if b is not None:
            yc += b
    y = y.reshape(N, P, Q, K).transpose(0, 3, 1, 2)
    return (y, kept.reshape(N * P * Q, R * S * C)) if keep_cols else y


def _phase(rho, s, R, t, H):
    """Rows of dx in phase rho of a stride-s conv: (J taps, i_lo, I rows, first row h0)."""
    J = -(-(R - rho) // s) if rho < R else 0
    i_lo = -((rho - t) // s)                           # ceil((t − rho)/s) ≥ 0
    i_hi = (H - 1 + t - rho) // s
    return J, i_lo, i_hi - i_lo + 1, s * i_lo + rho - t


def conv2d_dgrad(dy, w, x_shape, stride, pad, bias=None):
    """dx (x_shape) = ∂(Σ dy·y)/∂x for y = conv2d_fprop(x, w, ·, stride, pad); dy (N, K, P, Q);
    plus ``bias`` (C,) per channel when given (the reference's bias_add).

    The result has NCHW shape; its memory is channels-last, except for C < 16 channels where it is
    channel-major ((C, N, H, W), see :func:`_dgrad_col2im_cmajor`).
    """
    if x_shape[1] < _SMALL_C:
        dx = _dgrad_col2im_cmajor(dy, w, x_shape, stride, pad)
    else:
        dx = _dgrad_phases(dy, w, x_shape, stride, pad)
    if bias is not None:
        dx += bias.reshape(1, -1, 1, 1)
    return dx


def _dgrad_phases(dy, w, x_shape, stride, pad):
    """dgrad as sh·sw stride-1 "gather" convolutions, one per output phase — no scatter-add.

    Row h of x with u = h + top = sh·i + ρ receives Σ_j dy[i − j] · w[ρ + sh·j] (j over the taps
    of phase ρ, dy zero outside [0, P)); likewise along the width. For each phase (ρh, ρw) the
    windows of the padded channels-last dy form cols (N·I·I', Jh·Jw·K) — one strided-view copy,
    no accumulation — and one GEMM with the phase's (flipped) sub-kernel gives those rows of dx.
    Every element of dx is written exactly once (phases without taps are zero).
    """
    N, C, H, W = x_shape
    K, _, R, S = w.shape
    sh, sw = stride
    t, _, l, _ = pad
    P, Q = output_hw(x_shape, w.shape, stride, pad)
    dt = np.result_type(dy.dtype, w.dtype)
    ph = [_phase(r, sh, R, t, H) for r in range(sh)]
    pw = [_phase(s, sw, S, l, W) for s in range(sw)]
    JH, JW = max(p[0] for p in ph), max(p[0] for p in pw)
    top, left = max(JH - 1, 0), max(JW - 1, 0)
    bot = max(0, max(p[1] + p[2] for p in ph) - P)
    right = max(0, max(p[1] + p[2] for p in pw) - Q)
    dyp = _padded_nhwc(dy, (top, bot, left, right)).astype(dt, copy=False)
    sN, sH, sW, sK = dyp.strides
    wt = w.astype(dt, copy=False).transpose(2, 3, 0, 1)           # (R, S, K, C)
    dx = np.empty((N, H, W, C), dtype=dt)
    for rh, (Jh, ih, I, h0) in enumerate(ph):
        for rw, (Jw, iw, I2, w0) in enumerate(pw):
            if I <= 0 or I2 <= 0:
                continue
            rows = slice(h0, h0 + sh * (I - 1) + 1, sh)
            colsl = slice(w0, w0 + sw * (I2 - 1) + 1, sw)
            if Jh == 0 or Jw == 0:
                dx[:, rows, colsl, :] = 0
                continue
            sub = np.ascontiguousarray(wt[rh::sh][::-1][:, rw::sw][:, ::-1]).reshape(-1, C)
            base = dyp[:, ih - (Jh - 1) + top:, iw - (Jw - 1) + left:, :]
            per = I * I2 * Jh * Jw * K
            for n0, n1 in _chunks(N, max(per, I * I2 * C)):
                nb = n1 - n0
                win = as_strided(base[n0:n1], shape=(nb, I, I2, Jh, Jw, K),
                                 strides=(sN, sH, sW, sH, sW, sK), writeable=False)
                cols = _scratch("cols", nb * per, dt).reshape(nb, I, I2, Jh, Jw, K)
                _parallel.parallel_for(lambda lo, hi: np.copyto(cols[lo:hi], win[lo:hi]), nb,
                                       _MIN_PAR, per)
                if sh == 1 and sw == 1:
                    _mm(cols.reshape(-1, Jh * Jw * K), sub, out=dx[n0:n1].reshape(-1, C))
                    continue
                res = _scratch("res", nb * I * I2 * C, dt).reshape(nb, I, I2, C)
                _mm(cols.reshape(-1, Jh * Jw * K), sub, out=res.reshape(-1, C))
                dst = dx[n0:n1, rows, colsl, :]
                _parallel.parallel_for(lambda lo, hi: np.copyto(dst[lo:hi], res[lo:hi]), nb,
                                       _MIN_PAR, I * I2 * C)
    return dx.transpose(0, 3, 1, 2)


def _dgrad_col2im_cmajor(dy, w, x_shape, stride, pad):
    """dgrad for few input channels C: GEMM then col2im in channel-major memory.

    dcols (R, S, C, N·P·Q) = W₂ᵀ · dYᵀ, then each tap's (C, N, P, Q) slab is added into a
    (C, N, H+t+b, W+l+r) buffer — inner loops run along Q, not along C (3 for RGB images), which
    is what makes the channels-last scatter slow here. Returns a crop of that buffer as
    (N, C, H, W).
    """
    N, C, H, W = x_shape
    K, _, R, S = w.shape
    sh, sw = stride
    t, b_, l, r_ = pad
    P, Q = output_hw(x_shape, w.shape, stride, pad)
    dt = np.result_type(dy.dtype, w.dtype)
    dyt = dy.transpose(1, 0, 2, 3)                                # (K, N, P, Q)
    if dyt.flags.c_contiguous:
        dYt = dyt.reshape(K, N * P * Q)
    else:                                 # channels-last dy: its (N·P·Q, K) rows, transposed view
        dYt = _rows_nhwc(dy).T
    Wt = np.ascontiguousarray(w.astype(dt, copy=False).transpose(2, 3, 1, 0)).reshape(-1, K)
    dxp = np.zeros((C, N, H + t + b_, W + l + r_), dtype=dt)
    hs, ws = sh * (P - 1) + 1, sw * (Q - 1) + 1
    per = N * P * Q
    # chunks of taps so the dcols scratch stays bounded
    taps = [(r, s) for r in range(R) for s in range(S)]
    tb = max(1, _CHUNK_ELEMS // max(1, C * per))
    for k0 in range(0, len(taps), tb):
        tk = taps[k0:k0 + tb]
        rows = slice(k0 * C, (k0 + len(tk)) * C)
        dc = _scratch("dcols", len(tk) * C * per, dt).reshape(len(tk) * C, per)
        _mm(Wt[rows], dYt, out=dc)
        dc = dc.reshape(len(tk), C, N, P, Q)

        def work(lo, hi):
            for i, (r, s) in enumerate(tk):
                dxp[:, lo:hi, r:r + hs:sh, s:s + ws:sw] += dc[i, :, lo:hi]
        _parallel.parallel_for(work, N, _MIN_PAR, len(tk) * C * P * Q)
    return dxp[:, :, t:t + H, l:l + W].transpose(1, 0, 2, 3)


def conv2d_wgrad(dy, x, w_shape, stride, pad, out=None, accumulate=False, cols=None):
    """dw (w_shape) = Σ over n,p,q of dy · window(x); dy (N, K, P, Q), x (N, C, H, W); ``out``
    and ``accumulate`` as in the reference (the gradient buffer written or added to).
    ``cols``: the (N·P·Q, R·S·C) window matrix of x from ``conv2d_fprop(x, ...,
    keep_cols=True)`` — then dW₂ = dYᵀ @ cols is one GEMM and x is not read; raises ValueError
    for another shape."""
    N, C, H, W = x.shape
    K, _, R, S = w_shape
    sh, sw = stride
    P, Q = output_hw(x.shape, w_shape, stride, pad)
    dY = _rows_nhwc(dy)                                  # (N·P·Q, K)
    dW2 = np.zeros((K, R * S * C), dtype=np.result_type(dy.dtype, x.dtype))
    if cols is not None:
        if cols.shape != (N * P * Q, R * S * C):
            raise ValueError(f"conv2d_wgrad: cols has shape {cols.shape}, expected "
                             f"{(N * P * Q, R * S * C)}")
        _mm(dY.T, cols, out=dW2)
        return write_grad(out, np.ascontiguousarray(dW2.reshape(K, R, S, C).transpose(0, 3, 1, 2)),
                          accumulate)
    xp = _padded_nhwc(x, pad)
    tmp = None
    per = P * Q * R * S * C
    for i, (n0, n1) in enumerate(_chunks(N, per)):
        cols = _scratch("cols", (n1 - n0) * per, x.dtype).reshape(n1 - n0, P, Q, R, S, C)
        _im2col_nhwc(xp, n0, n1, R, S, sh, sw, P, Q, cols)
        dYc = dY[n0 * P * Q:n1 * P * Q].T
        if i == 0:
            _mm(dYc, cols.reshape(-1, R * S * C), out=dW2)
        else:
            if tmp is None:
                tmp = np.empty_like(dW2)
            _mm(dYc, cols.reshape(-1, R * S * C), out=tmp)
            dW2 += tmp
    return write_grad(out, np.ascontiguousarray(dW2.reshape(K, R, S, C).transpose(0, 3, 1, 2)),
                      accumulate)
