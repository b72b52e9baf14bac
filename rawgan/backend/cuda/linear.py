"""Fully connected layer on the CUDA backend: GEMMs by ``xp.matmul`` (cuBLAS / NumPy) and the
bias kernels of kernels/bias.cu (bias_add, bias_grad with H·W = 1).

Signatures and semantics: rawgan.backend.reference.linear (after ``rt`` is bound). Shapes: x
(N, in), W (out, in), b (out,), float32.
"""
from .conv import bias_add, bias_grad

OPS = ("linear_forward", "linear_backward")


def linear_forward(rt, x, w, b=None):
    """y (N, out) = x Wᵀ + b."""
    y = rt.xp.matmul(x, w.T)
    if b is not None:
        bias_add(rt, y, b)
    return y


def linear_backward(rt, dy, x, w, need_dx=True, need_dw=True):
    """Returns ``(dx, dw, db)``: dy W, dyᵀ x, Σₙ dy; entries not asked for are None."""
    xp = rt.xp
    dx = xp.matmul(dy, w) if need_dx else None
    dw = xp.matmul(dy.T, x) if need_dw else None
    db = bias_grad(rt, dy) if need_dw else None
    return dx, dw, db
