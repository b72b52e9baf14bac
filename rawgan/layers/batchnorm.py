"""Batch normalization layer (train and eval modes)."""
import numpy as np

from .base import Layer
from .geometry import check_sizes


class BatchNorm(Layer):
    """Per-channel batch normalization over (N, H, W) for 4-D input, per feature for 2-D input.

    Training mode normalizes with batch statistics and updates ``running_mean``/``running_var``
    (buffers) with ``momentum`` (PyTorch convention; 0.1 = TensorFlow decay 0.9). By default the
    running variance stores the *biased* batch variance (TensorFlow's convention, as in the DCGAN
    reference); ``unbiased_running_var=True`` gives PyTorch's. Eval mode uses the running
    statistics. eps = 1e-5. Math and sources: rawgan.backend.reference.batchnorm.

    Parameters: ``gamma`` (C,) = 1, ``beta`` (C,) = 0 (or gamma ~ N(1, gamma_std²) if given).
    Raises ValueError for an input that is not 2-D/4-D, a channel or dtype mismatch, or a
    training-mode batch with a single value per channel (variance undefined).
    """

    def __init__(self, backend, num_features, momentum=0.1, eps=1e-5, unbiased_running_var=False,
                 rng=None, gamma_std=0.0):
        super().__init__(backend)
        check_sizes("BatchNorm", num_features=num_features)
        self.num_features = num_features
        self.momentum, self.eps, self.unbiased = momentum, eps, unbiased_running_var
        gamma = np.ones(num_features)
        if gamma_std:
            gamma = (rng or np.random.default_rng(0)).normal(1.0, gamma_std, num_features)
        self._add_param("gamma", gamma)
        self._add_param("beta", np.zeros(num_features))
        self.buffers["running_mean"] = backend.zeros((num_features,))
        self.buffers["running_var"] = backend.asarray(np.ones(num_features))

    def forward(self, x):
        if not hasattr(x, "dtype") or x.ndim not in (2, 4):
            raise ValueError(f"{self}: expected a 2-D (N, F) or 4-D (N, C, H, W) input, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        self._check_input(x, x.ndim, {1: ("num_features", self.num_features)})
        ops, p, buf = self.B.ops, self.params, self.buffers
        self.x = x
        self.mode_train = self.training
        if self.training:
            if x.size // x.shape[1] < 2:
                raise ValueError(f"{self}: training mode needs more than one value per channel, "
                                 f"got input of shape {tuple(x.shape)}")
            y, self.save_mean, self.save_invstd = ops.batchnorm_forward_train(
                x, p["gamma"], p["beta"], buf["running_mean"], buf["running_var"],
                self.momentum, self.eps, self.unbiased)
            return self._out(y)
        return self._out(ops.batchnorm_forward_eval(x, p["gamma"], p["beta"], buf["running_mean"],
                                                    buf["running_var"], self.eps))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        ops, p, buf = self.B.ops, self.params, self.buffers
        if self.mode_train:
            dx, dgamma, dbeta = ops.batchnorm_backward_train(dy, self.x, p["gamma"],
                                                             self.save_mean, self.save_invstd)
        else:
            dx, dgamma, dbeta = ops.batchnorm_backward_eval(dy, self.x, p["gamma"],
                                                            buf["running_mean"],
                                                            buf["running_var"], self.eps)
        if self.requires_grad:
            ops.accumulate(self.grads["gamma"], dgamma)
            ops.accumulate(self.grads["beta"], dbeta)
        return dx if need_dx else None

    def __repr__(self):
        return f"BatchNorm({self.num_features})"
