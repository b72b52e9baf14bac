"""Pointwise activation layers: ReLU, LeakyReLU, Tanh, Sigmoid (no parameters).

Any input shape; dtype must be the backend's. Math: rawgan.backend.reference.activations.
"""
from .base import Layer
from .conv2d import Conv2d


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
    """y = x if x > 0 else slope·x (DCGAN's discriminator: slope 0.2).

    With a convolution's bias folded in (:func:`fold_bias_into_act`, training mode) the forward
    is y = lrelu(x + b) in one op, and the backward reads the derivative off y instead of x + b
    (the same sign for slope > 0)."""

    def __init__(self, backend, slope=0.2):
        super().__init__(backend)
        self.slope = float(slope)
        self.bias_from = None          # the Conv2d whose bias is folded in (fold_bias_into_act)

    def forward(self, x):
        self._check(x)
        if self.bias_from is not None and self.training:
            y = self.B.ops.leaky_relu_forward(x, self.slope, self.bias_from.params["b"])
            self.x = y                 # sign(y) = sign(x + b): what the backward needs
            return y
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


def fold_bias_into_act(conv, act: LeakyReLU) -> None:
    """Fold ``conv``'s per-channel bias into the LeakyReLU ``act`` that directly follows it (in
    training mode): conv skips ``+ b`` and act computes lrelu(x + b) in the same op — on the CUDA
    backend one kernel instead of bias_add + leaky_relu_forward (DCGAN's D conv1, once per D
    forward). Exact: the same additions in the same order. b's gradient is unchanged (conv's
    backward sums its dy, act's dx). In eval mode conv adds its bias as usual. Raises ValueError
    unless conv is a Conv2d with a bias (the only layer that skips a folded bias; a Linear or
    ConvTranspose2d would add it twice) and act a LeakyReLU with slope > 0 (the backward reads
    the sign of y)."""
    if not isinstance(conv, Conv2d):
        raise ValueError(f"fold_bias_into_act: {conv} is not a Conv2d (the only layer that skips "
                         f"a folded bias)")
    if not isinstance(act, LeakyReLU):
        raise ValueError(f"fold_bias_into_act: {act} is not a LeakyReLU")
    if "b" not in conv.params or conv.params["b"].ndim != 1:
        raise ValueError(f"fold_bias_into_act: {conv} has no per-channel bias")
    if not act.slope > 0:
        raise ValueError(f"fold_bias_into_act: {act} needs a slope > 0 (its backward reads sign(y))")
    conv.bias_into, act.bias_from = act, conv
