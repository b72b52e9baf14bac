"""2-D transposed convolution layer (NCHW): the exact adjoint of Conv2d."""
import numpy as np

from .base import Layer
from .geometry import _pair, check_sizes, conv_geometry, same_padding


class ConvTranspose2d(Layer):
    """y (N, out_channels, Ho, Wo) = conv2d_dgrad(x (N, in_channels, Hi, Wi), w) + b.

    The forward pass is Conv2d's dgrad for a convolution that maps out_channels → in_channels
    (so the weight layout is (in_channels, out_channels, kh, kw), PyTorch's), its dgrad is that
    convolution's fprop, its wgrad that convolution's wgrad with image and gradient swapped.

    Output size: with ``padding="same"`` Ho = Hi·stride, and the padding is the SAME padding of
    the convolution Ho → Hi, so 4→8→16→32→64 for 5×5 stride 2 exactly as TensorFlow's
    ``conv2d_transpose(..., padding="SAME")``. With explicit padding (top, bottom, left, right):
    Ho = (Hi−1)·sh − top − bottom + kh + output_padding_h (PyTorch's rule).
    Init: w ~ N(0, init_std²), b = 0. Raises ValueError for a wrong input rank, channel count or
    dtype, or ``output_padding >= stride``.

    Backward: the dgrad (``conv2d_fprop(dy, w)``) and the wgrad (``conv2d_wgrad(x, dy)``) both
    need im2col(dy); the dgrad keeps its cols (``keep_cols``) and the wgrad uses them, so they
    are built once per backward — out_channels·kh·kw·N·Hi·Wi elements (kh·kw/stride² times dy),
    alive only inside the backward (on the CUDA backend a buffer of its own, ``rt.empty``: in a
    TrainStep static memory, ~190 MiB per G backward of the DCGAN at batch 64). Nothing is kept
    between forward and backward, and a backward without ``requires_grad`` keeps nothing.
    """

    def __init__(self, backend, in_channels, out_channels, kernel_size, stride=1, padding="same",
                 output_padding=0, bias=True, rng=None, init_std=0.02):
        super().__init__(backend)
        check_sizes("ConvTranspose2d", in_channels=in_channels, out_channels=out_channels)
        rng = rng or np.random.default_rng(0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = conv_geometry(kernel_size, stride, padding)
        self.output_padding = _pair(output_padding, "output_padding")
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be "
                             f"smaller than stride {self.stride}")
        kh, kw = self.kernel_size
        self._add_param("w", rng.normal(0, init_std, (in_channels, out_channels, kh, kw)))
        if bias:
            self._add_param("b", np.zeros(out_channels))

    def pad_for(self, Hi, Wi):
        """Padding per side (top, bottom, left, right) of the adjoint convolution for an
        Hi x Wi input: "same" pads like the stride-s convolution from the Hi*s x Wi*s output."""
        if self.padding == "same":
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            return (*same_padding(Hi * sh, kh, sh), *same_padding(Wi * sw, kw, sw))
        return self.padding

    def output_shape(self, x_shape):
        """(N, out_channels, Ho, Wo) for an input of ``x_shape``: Ho = Hi*s for "same", else
        (Hi − 1)·s − pad_top − pad_bottom + k + output_padding (PyTorch's formula)."""
        N, _, Hi, Wi = x_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding == "same":
            return (N, self.out_channels, Hi * sh, Wi * sw)
        pad = self.padding
        Ho = (Hi - 1) * sh - pad[0] - pad[1] + kh + self.output_padding[0]
        Wo = (Wi - 1) * sw - pad[2] - pad[3] + kw + self.output_padding[1]
        return (N, self.out_channels, Ho, Wo)

    def forward(self, x):
        self._check_input(x, 4, {1: ("in_channels", self.in_channels)})
        y_shape, self.pad = self.output_shape(x.shape), self.pad_for(x.shape[2], x.shape[3])
        if min(y_shape[2:]) < 1:
            raise ValueError(f"{self}: input {tuple(x.shape)} gives an empty output {y_shape}")
        self.x = x
        ops = self.B.ops
        y = ops.conv2d_dgrad(x, self.params["w"], y_shape, self.stride, self.pad,
                             bias=self.params.get("b"))   # + b per channel (in col2im on CUDA)
        return self._out(y)

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        ops, w = self.B.ops, self.params["w"]
        dx = cols = None
        if need_dx and self.requires_grad:      # im2col(dy) once, for the dgrad and the wgrad
            dx, cols = ops.conv2d_fprop(dy, w, None, self.stride, self.pad, keep_cols=True)
        elif need_dx:
            dx = ops.conv2d_fprop(dy, w, None, self.stride, self.pad)
        if self.requires_grad:
            # The convolution y -> x has input dy-shaped images and output x-shaped gradients.
            acc = self._accumulate_grads()
            ops.conv2d_wgrad(self.x, dy, w.shape, self.stride, self.pad, out=self.grads["w"],
                             accumulate=acc, cols=cols)
            if "b" in self.grads:
                ops.bias_grad(dy, out=self.grads["b"], accumulate=acc)
        return dx

    def __repr__(self):
        return (f"ConvTranspose2d({self.in_channels}→{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, pad={self.padding})")
