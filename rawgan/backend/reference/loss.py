"""Sigmoid cross-entropy with logits, mean-reduced (NumPy reference).

For logits x and targets t ∈ [0, 1] (soft targets allowed, e.g. 0.9 for label smoothing):

    ℓ(x, t) = −t·log σ(x) − (1 − t)·log(1 − σ(x)) = max(x, 0) − x·t + log(1 + e^{−|x|})

The right-hand form (TensorFlow's ``sigmoid_cross_entropy_with_logits``) is finite for every finite
x: no exp overflows and log1p's argument is in (0, 1]. The loss is the mean over all elements;
∂loss/∂x = (σ(x) − t) / numel.
"""
import numpy as np

from .activations import sigmoid_forward
from .tensor import sigmoid_mean


def sigmoid_bce_with_logits_forward(logits, targets):
    """Mean loss as a 0-d array (stays on the device for the CUDA backend)."""
    x = logits
    l = np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x)))
    return np.asarray(l.mean(dtype=x.dtype), dtype=x.dtype)


def sigmoid_bce_with_logits_backward(logits, targets, dloss=1.0):
    """d(mean loss)/d logits = dloss · (σ(x) − t) / numel; same shape and dtype as ``logits``."""
    scale = logits.dtype.type(dloss / logits.size)
    return (sigmoid_forward(logits) - targets) * scale


def sigmoid_bce_with_logits_forward_backward(logits, targets, dloss=1.0):
    """``(loss, dlogits, mean σ(logits))``: the forward, the backward (with the float ``dloss``)
    and the D(x) metric of one loss, as the GAN step uses them together (one kernel on CUDA)."""
    return (sigmoid_bce_with_logits_forward(logits, targets),
            sigmoid_bce_with_logits_backward(logits, targets, dloss), sigmoid_mean(logits))
