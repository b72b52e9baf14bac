"""Fully connected layer on the CUDA backend: GEMMs by ``rt.gemm`` (cuBLAS / NumPy) and the
bias kernels of kernels/bias.cu (bias_add, bias_grad with H·W = 1).

Signatures and semantics: rawgan.backend.reference.linear (after ``rt`` is bound). Shapes: x
(N, in), W (out, in), b (out,), float32.

The bias gradient of a 2-D dy stays ``bias_grad_rows`` (one thread per output column, summing N
rows): the 2-D chunked reductions of conv.bias_grad / batchnorm split long channels, and a
Linear layer's "channel" is a column of N = batch-size elements (64), far below the
common.MIN_CHUNK elements a chunk needs; the cost model (common.reduction_chunks) returns 1 for it.
"""
from .conv import bias_add, bias_grad

OPS = ("linear_forward", "linear_backward")


def linear_forward(rt, x, w, b=None):
    """y (N, out) = x Wᵀ + b."""
    y = rt.empty((x.shape[0], w.shape[0]), x.dtype)
    rt.gemm(x, w.T, y)
    if b is not None:
        bias_add(rt, y, b)
    return y


def linear_backward(rt, dy, x, w, need_dx=True, need_dw=True):
    """Returns ``(dx, dw, db)``: dy W, dyᵀ x, Σₙ dy; entries not asked for are None."""
    dx = dw = None
    if need_dx:
        dx = rt.empty((dy.shape[0], w.shape[1]), dy.dtype)
        rt.gemm(dy, w, dx)
    if need_dw:
        dw = rt.empty(tuple(w.shape), dy.dtype)
        rt.gemm(dy.T, x, dw)
    db = bias_grad(rt, dy) if need_dw else None
    return dx, dw, db
