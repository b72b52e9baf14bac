"""Fully connected layer y = x Wᵀ + b (NumPy reference; the CUDA backend uses the same GEMMs).

Shapes: x (N, in_features), W (out_features, in_features) — PyTorch's layout — b (out_features,).
"""
import numpy as np

from .tensor import write_grad


def linear_forward(x, w, b=None):
    """y (N, out) = x Wᵀ + b."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(dy, x, w, need_dx=True, need_dw=True, dw_out=None, db_out=None,
                    accumulate=False):
    """Gradients of y = x Wᵀ + b given dy (N, out).

    Returns ``(dx, dw, db)``: dx = dy W (N, in), dW = dyᵀ x (out, in), db = Σₙ dy (out,).
    Entries not asked for are ``None``. ``dw_out``/``db_out``: buffers the gradients are written
    into (``accumulate``: added to), as :func:`~.tensor.write_grad`; then they are returned.
    """
    dx = dy @ w if need_dx else None
    dw = write_grad(dw_out, dy.T @ x, accumulate) if need_dw else None
    db = write_grad(db_out, dy.sum(axis=0), accumulate) if need_dw else None
    return dx, dw, db
