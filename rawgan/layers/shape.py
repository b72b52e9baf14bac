"""Shape-only layers: Flatten (D's last conv -> its Linear) and Reshape (G's Linear -> its first
BatchNorm). No parameters, no arithmetic: forward reshapes, backward reshapes back.
"""
from .base import Layer


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W) in NCHW order (TensorFlow's reference flattens NHWC — the
    order only permutes the next Linear layer's weights, so the function class is identical)."""

    def forward(self, x):
        self.shape = x.shape
        return self._out(x.reshape(x.shape[0], -1))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return dy.reshape(self.shape) if need_dx else None

    def __repr__(self):
        return "Flatten()"


class Reshape(Layer):
    """(N, ·) -> (N, *shape), e.g. the generator's (N, 8192) -> (N, 512, 4, 4)."""

    def __init__(self, backend, shape):
        super().__init__(backend)
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return self._out(x.reshape(x.shape[0], *self.shape))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return dy.reshape(self.in_shape) if need_dx else None

    def __repr__(self):
        return f"Reshape{self.shape}"
