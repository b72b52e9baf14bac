"""2-D convolution (cross-correlation, as in every DL framework) by im2col + GEMM (NumPy reference).

Layouts: x (N, C, H, W); w (K, C, R, S); y (N, K, P, Q), with stride (sh, sw) and explicit padding
``pad = (top, bottom, left, right)`` so that TensorFlow "SAME" (k=5, s=2 on an even input: 1 before,
2 after) and symmetric padding are both exact:

    P = (H + top + bottom − R) // sh + 1,   Q = (W + left + right − S) // sw + 1
    y[n,k,p,q] = b[k] + Σ_{c,r,s} w[k,c,r,s] · xpad[n, c, p·sh + r, q·sw + s]

The three passes are the cuDNN names: **fprop** (y from x), **dgrad** (dx from dy — which is also
the forward of the transposed convolution) and **wgrad** (dw from dy and x). With the window
matrix ``cols[(c,r,s), (n,p,q)] = xpad[n, c, p·sh+r, q·sw+s]`` (:func:`im2col`), W₂ = w as
(K, C·R·S) and dY = dy with axes 0 and 1 swapped, as (K, N·P·Q):

    fprop:  Y  = W₂ · cols          then y = swap_axes01(Y) + b
    wgrad:  dW₂ = dY · colsᵀ
    dgrad:  dcols = W₂ᵀ · dY,  then dx = col2im(dcols)

fprop and wgrad of the same x need the same cols: ``conv2d_fprop(..., keep_cols=True)`` returns
them with y and ``conv2d_wgrad(..., cols=cols)`` uses them instead of building them again (a
Conv2d layer holds them from its forward to its backward; ConvTranspose2d's backward builds
im2col(dy) once for its dgrad and its wgrad).

This is the algorithm of the CUDA backend (rawgan/backend/cuda/conv.py, kernels/conv.cu), op for
op and name for name: im2col, col2im and swap_axes01 are kernels there and the three GEMMs are
cuBLAS calls. All arrays are NCHW-contiguous; dtype float32 or float64 (outputs follow NumPy's
type promotion of the inputs).

Source: Chellapilla et al., "High Performance Convolutional Neural Networks for Document
Processing" (2006) for im2col; the pass names follow cuDNN's API.
"""
import numpy as np

from .tensor import write_grad


def conv_output_size(size, k, stride, pad_before, pad_after):
    """Output length of a convolution along one axis (floor mode)."""
    return (size + pad_before + pad_after - k) // stride + 1


def output_hw(x_shape, w_shape, stride, pad):
    """(P, Q) of a convolution of an x of ``x_shape`` (N, C, H, W) with weights ``w_shape``."""
    _, _, H, W = x_shape
    _, _, R, S = w_shape
    return (conv_output_size(H, R, stride[0], pad[0], pad[1]),
            conv_output_size(W, S, stride[1], pad[2], pad[3]))


def im2col(x, w_shape, stride, pad):
    """Window matrix of x (N, C, H, W): cols (C·R·S, N·P·Q), taps in the zero padding read 0.

    ``cols[(c·R + r)·S + s, (n·P + p)·Q + q] = xpad[n, c, p·sh + r, q·sw + s]`` — one strided
    slice of the padded image per kernel tap (r, s).
    """
    N, C, H, W = x.shape
    _, _, R, S = w_shape
    sh, sw = stride
    top, bottom, left, right = pad
    P, Q = output_hw(x.shape, w_shape, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    cols = np.empty((C, R, S, N, P, Q), dtype=x.dtype)
    for r in range(R):
        for s in range(S):
            window = xpad[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw]  # (N,C,P,Q)
            cols[:, r, s] = window.transpose(1, 0, 2, 3)
    return cols.reshape(C * R * S, N * P * Q)


def col2im(dcols, x_shape, w_shape, stride, pad):
    """Adjoint of :func:`im2col`: dcols (C·R·S, N·P·Q) -> dx (N, C, H, W).

    Every entry of dcols is added to the padded-image element its window tap read, then the
    padding is cropped. (The CUDA kernel gathers the same sum per dx element instead of
    scattering per tap, so it needs no atomics; the sums agree up to rounding order.)
    """
    N, C, H, W = x_shape
    _, _, R, S = w_shape
    sh, sw = stride
    top, bottom, left, right = pad
    P, Q = output_hw(x_shape, w_shape, stride, pad)
    dcols = dcols.reshape(C, R, S, N, P, Q)
    dxpad = np.zeros((N, C, H + top + bottom, W + left + right), dtype=dcols.dtype)
    for r in range(R):
        for s in range(S):
            dxpad[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw] += \
                dcols[:, r, s].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(dxpad[:, :, top:top + H, left:left + W])


def swap_axes01(a, shape3, bias=None):
    """(A, B, L) -> (B, A, L) contiguous, plus ``bias[a]`` if given; ``a`` holds A·B·L elements.

    fprop: Y (K, N, P·Q) -> y (N, K, P·Q) + b[k];  dgrad/wgrad: dy (N, K, P·Q) -> dY (K, N, P·Q).
    """
    A, B, L = shape3
    out = np.ascontiguousarray(a.reshape(A, B, L).transpose(1, 0, 2))
    if bias is not None:
        out += bias.reshape(1, A, 1)
    return out


def conv2d_fprop(x, w, b, stride, pad, keep_cols=False):
    """y (N, K, P, Q) = conv(x, w) + b, for x (N, C, H, W), w (K, C, R, S), b (K,) or None.

    ``keep_cols``: return ``(y, cols)`` instead of y, cols = :func:`im2col` (x) (C·R·S, N·P·Q),
    the window matrix this pass built, for :func:`conv2d_wgrad`'s ``cols`` (the wgrad of the same
    x then builds no second copy). Each backend lays its cols out its own way; pass them only to
    the same backend's wgrad. Holding them costs C·R·S·N·P·Q elements (R·S times x)."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = output_hw(x.shape, w.shape, stride, pad)
    cols = im2col(x, w.shape, stride, pad)                       # (C·R·S, N·P·Q)
    Y = w.reshape(K, C * R * S) @ cols                           # (K, N·P·Q)
    y = swap_axes01(Y, (K, N, P * Q), bias=b).reshape(N, K, P, Q)
    return (y, cols) if keep_cols else y


def conv2d_dgrad(dy, w, x_shape, stride, pad, bias=None):
    """dx (x_shape) = ∂(Σ dy·y)/∂x for y = conv2d_fprop(x, w, ·, stride, pad); dy (N, K, P, Q).

    ``bias`` (C,), when given, is added per channel (:func:`bias_add`): the transposed
    convolution's forward, whose output this is (the CUDA backend adds it inside col2im)."""
    N, C, H, W = x_shape
    K, _, R, S = w.shape
    P, Q = output_hw(x_shape, w.shape, stride, pad)
    dY = swap_axes01(dy, (N, K, P * Q)).reshape(K, N * P * Q)
    dcols = w.reshape(K, C * R * S).T @ dY                       # (C·R·S, N·P·Q)
    dx = col2im(dcols, x_shape, w.shape, stride, pad)
    return dx if bias is None else bias_add(dx, bias)


def conv2d_wgrad(dy, x, w_shape, stride, pad, out=None, accumulate=False, cols=None):
    """dw (w_shape) = Σ over n, p, q of dy · window(x); dy (N, K, P, Q), x (N, C, H, W).

    ``out``: the gradient buffer dw is written into (``accumulate``: added to), as
    :func:`~.tensor.write_grad`; it is then the return value.
    ``cols``: im2col(x) as ``conv2d_fprop(x, ..., keep_cols=True)`` returned it (else built
    here). Raises ValueError when its shape is not (C·R·S, N·P·Q)."""
    N, C, H, W = x.shape
    K, _, R, S = w_shape
    P, Q = output_hw(x.shape, w_shape, stride, pad)
    if cols is None:
        cols = im2col(x, w_shape, stride, pad)                   # (C·R·S, N·P·Q)
    elif cols.shape != (C * R * S, N * P * Q):
        raise ValueError(f"conv2d_wgrad: cols has shape {cols.shape}, expected "
                         f"{(C * R * S, N * P * Q)}")
    dY = swap_axes01(dy, (N, K, P * Q)).reshape(K, N * P * Q)
    return write_grad(out, (dY @ cols.T).reshape(w_shape), accumulate)


def bias_add(y, b):
    """y += b over the channels (axis 1) of an (N, C, H, W) or (N, C) array, in place; returns y."""
    y += b.reshape(1, -1, *([1] * (y.ndim - 2)))
    return y


def bias_grad(dy, out=None, accumulate=False):
    """db (C,) = Σ over n, h, w of dy[n, c, h, w] (or over n of a 2-D dy (N, C)).

    ``out``: the gradient buffer db is written into (``accumulate``: added to)."""
    axes = (0,) + tuple(range(2, dy.ndim))
    return write_grad(out, dy.sum(axis=axes), accumulate)
