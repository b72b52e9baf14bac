"""Linear (fully connected) layer: y = x Wᵀ + b."""
import numpy as np

from .base import Layer
from .geometry import check_sizes


class Linear(Layer):
    """y (N, out_features) = x (N, in_features) · Wᵀ + b.

    Parameters: ``w`` (out_features, in_features) ~ N(0, init_std²) (DCGAN: 0.02), ``b``
    (out_features,) = 0. dtype: the backend's. Raises ValueError for a non-2-D input, a wrong
    feature count or dtype.
    """

    def __init__(self, backend, in_features, out_features, bias=True, rng=None, init_std=0.02):
        super().__init__(backend)
        check_sizes("Linear", in_features=in_features, out_features=out_features)
        rng = rng or np.random.default_rng(0)
        self.in_features, self.out_features = in_features, out_features
        self._add_param("w", rng.normal(0, init_std, (out_features, in_features)))
        if bias:
            self._add_param("b", np.zeros(out_features))

    def forward(self, x):
        self._check_input(x, 2, {1: ("in_features", self.in_features)})
        self.x = x
        return self._out(self.B.ops.linear_forward(x, self.params["w"], self.params.get("b")))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        dx, dw, db = self.B.ops.linear_backward(dy, self.x, self.params["w"], need_dx=need_dx,
                                                need_dw=self.requires_grad)
        if self.requires_grad:
            self.B.ops.accumulate(self.grads["w"], dw)
            if "b" in self.grads:
                self.B.ops.accumulate(self.grads["b"], db)
        return dx

    def __repr__(self):
        return f"Linear({self.in_features}→{self.out_features})"
