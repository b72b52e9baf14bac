"""Pointwise activation layers: ReLU, LeakyReLU, Tanh, Sigmoid (no parameters).

Any input shape; dtype must be the backend's. Math: rawgan.backend.reference.activations.
"""
from .base import Layer


class _Activation(Layer):
    def _check(self, x):
        self._y_shape = tuple(getattr(x, "shape", ()))
        if getattr(x, "dtype", None) != self.B.dtype:
            raise ValueError(f"{self}: expected dtype {self.B.dtype.name}, got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """y = max(x, 0)."""

    def forward(self, x):
        self._check(x)
        self.y = self.B.ops.relu_forward(x)
        return self.y

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return self.B.ops.relu_backward(dy, self.y) if need_dx else None


class LeakyReLU(_Activation):
    """y = x if x > 0 else slope·x (DCGAN's discriminator: slope 0.2)."""

    def __init__(self, backend, slope=0.2):
        super().__init__(backend)
        self.slope = float(slope)

    def forward(self, x):
        self._check(x)
        self.x = x
        return self.B.ops.leaky_relu_forward(x, self.slope)

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return self.B.ops.leaky_relu_backward(dy, self.x, self.slope) if need_dx else None

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class Tanh(_Activation):
    """y = tanh(x) (the generator's output layer, images in [−1, 1])."""

    def forward(self, x):
        self._check(x)
        self.y = self.B.ops.tanh_forward(x)
        return self.y

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return self.B.ops.tanh_backward(dy, self.y) if need_dx else None


class Sigmoid(_Activation):
    """y = 1/(1 + e^{−x}), overflow-free."""

    def forward(self, x):
        self._check(x)
        self.y = self.B.ops.sigmoid_forward(x)
        return self.y

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        return self.B.ops.sigmoid_backward(dy, self.y) if need_dx else None
