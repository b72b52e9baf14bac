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
"""
import numpy as np


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


def conv2d_fprop(x, w, b, stride, pad):
    """y (N, K, P, Q) = conv(x, w) + b. ``b`` may be None. See the module docstring."""
    N = x.shape[0]
    K = w.shape[0]
    P, Q = _out_hw(x.shape, w.shape, stride, pad)
    cols = im2col(x, w.shape, stride, pad)
    y = (w.reshape(K, -1) @ cols).reshape(K, N, P, Q).transpose(1, 0, 2, 3)
    y = np.ascontiguousarray(y)
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    return y


def conv2d_dgrad(dy, w, x_shape, stride, pad):
    """dx (x_shape) = ∂(Σ dy·y)/∂x for y = conv2d_fprop(x, w, ·, stride, pad); dy (N, K, P, Q)."""
    K = w.shape[0]
    dY = dy.transpose(1, 0, 2, 3).reshape(K, -1)
    dcols = w.reshape(K, -1).T @ dY
    return col2im(dcols, x_shape, w.shape, stride, pad)


def conv2d_wgrad(dy, x, w_shape, stride, pad):
    """dw (w_shape) = Σ over n,p,q of dy · window(x); dy (N, K, P, Q), x (N, C, H, W)."""
    K = w_shape[0]
    cols = im2col(x, w_shape, stride, pad)
    dY = dy.transpose(1, 0, 2, 3).reshape(K, -1)
    return (dY @ cols.T).reshape(w_shape)


def bias_add(y, b):
    """y += b broadcast over (N, ·, H, W) channels, in place; returns y."""
    y += b.reshape(1, -1, *([1] * (y.ndim - 2)))
    return y


def bias_grad(dy):
    """db (K,) = Σ_{n,h,w} dy[n, k, h, w] (also correct for 2-D dy (N, K))."""
    axes = (0,) + tuple(range(2, dy.ndim))
    return dy.sum(axis=axes)
