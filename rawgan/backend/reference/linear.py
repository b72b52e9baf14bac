"""Fully connected layer y = x Wᵀ + b (NumPy reference; the CUDA backend uses the same GEMMs).

Shapes: x (N, in_features), W (out_features, in_features) — PyTorch's layout — b (out_features,).
"""
import numpy as np


def linear_forward(x, w, b=None):
    """y (N, out) = x Wᵀ + b."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(dy, x, w, need_dx=True, need_dw=True):
    """Gradients of y = x Wᵀ + b given dy (N, out).

    Returns ``(dx, dw, db)``: dx = dy W (N, in), dW = dyᵀ x (out, in), db = Σₙ dy (out,).
    Entries not asked for are ``None``.
    """
    dx = dy @ w if need_dx else None
    dw = dy.T @ x if need_dw else None
    db = dy.sum(axis=0) if need_dw else None
    return dx, dw, db
