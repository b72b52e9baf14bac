"""Sigmoid cross-entropy with logits (the GAN loss), mean-reduced."""
from .base import Layer


class SigmoidBCEWithLogits(Layer):
    """loss = mean(max(x,0) − x·t + log(1 + e^{−|x|})) over all elements of the logits x.

    ``forward(logits, targets)`` returns a 0-d backend array (no host sync); ``targets`` is an
    array of the logits' shape or a float (e.g. 1.0, 0.0, or a soft 0.9). Finite for logits up to
    ±1e4 and beyond. ``backward(dloss=1.0)`` returns d loss/d logits = dloss·(σ(x) − t)/numel.
    Source: TensorFlow ``sigmoid_cross_entropy_with_logits`` (the stable form); GAN losses as in
    Goodfellow et al. 2014 with the non-saturating generator loss.
    """

    def forward(self, logits, targets):
        self._check(logits, targets)
        return self.B.ops.sigmoid_bce_with_logits_forward(logits, targets)

    def _check(self, logits, targets):
        """Raise ValueError for logits of another dtype, empty logits or targets of another
        shape; record both for backward."""
        if getattr(logits, "dtype", None) != self.B.dtype:
            raise ValueError(f"{self}: expected logits of dtype {self.B.dtype.name}, got "
                             f"{getattr(logits, 'dtype', type(logits).__name__)}")
        if getattr(logits, "size", 1) == 0:
            raise ValueError(f"{self}: empty logits of shape {tuple(logits.shape)}: the mean loss "
                             f"of no samples is undefined")
        if hasattr(targets, "shape") and tuple(targets.shape) != tuple(logits.shape):
            raise ValueError(f"{self}: targets shape {tuple(targets.shape)} does not match logits "
                             f"shape {tuple(logits.shape)}")
        self.logits, self.targets = logits, targets

    def forward_backward(self, logits, targets, dloss=1.0):
        """``(loss, dlogits, mean σ(logits))`` at once — forward, backward and the D(x) metric
        the GAN step needs from every loss (one kernel on the CUDA backend instead of three).
        Same values as ``forward``, ``backward(dloss)`` and ``ops.sigmoid_mean``; ``dloss`` a
        number."""
        self._check(logits, targets)
        return self.B.ops.sigmoid_bce_with_logits_forward_backward(logits, targets, dloss)

    def forward_backward_halves(self, logits, targets, dloss=1.0):
        """The loss of a batch of two halves with one scalar target each — ``targets`` a pair of
        numbers (first half, second half) — each half its own mean loss: the DCGAN's D step over
        real and fake samples in one batch, ``targets`` = (1.0, 0.0). Returns ``((loss_0,
        loss_1), dlogits, (mean σ half 0, mean σ half 1), loss_0 + loss_1)``, the values of
        ``forward_backward`` on each half (one kernel on the CUDA backend instead of three).
        Raises ValueError for logits of another dtype or an odd batch, ValueError/TypeError for
        targets that are not a pair of numbers. ``backward`` afterwards is not defined."""
        if getattr(logits, "dtype", None) != self.B.dtype:
            raise ValueError(f"{self}: expected logits of dtype {self.B.dtype.name}, got "
                             f"{getattr(logits, 'dtype', type(logits).__name__)}")
        if hasattr(self, "logits"):
            del self.logits                      # a later backward() has no single target
        return self.B.ops.sigmoid_bce_with_logits_forward_backward_halves(logits, targets, dloss)

    def backward(self, dloss=1.0, need_dx=True):
        if not hasattr(self, "logits"):
            raise RuntimeError(f"{self}: backward called before forward")
        return self.B.ops.sigmoid_bce_with_logits_backward(self.logits, self.targets, dloss)

    def __repr__(self):
        return "SigmoidBCEWithLogits()"
