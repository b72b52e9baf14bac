"""2-D convolution layer (NCHW), forward and backward side by side."""
import numpy as np

from .base import Layer
from .geometry import check_sizes, conv_geometry, same_padding


class Conv2d(Layer):
    """y (N, out_channels, P, Q) = conv(x (N, in_channels, H, W), w) + b.

    Args:
        kernel_size, stride: int or (h, w).
        padding: ``"same"`` (TensorFlow SAME, computed from the input size: k=5, s=2 on an even
            input pads 1 before and 2 after), an int, (ph, pw), or (top, bottom, left, right).
        bias: add a per-channel bias.
        rng, init_std: weights ~ N(0, init_std²) (DCGAN: 0.02; Radford et al. 2015 §4), bias 0.
    Parameters: ``w`` (out_channels, in_channels, kh, kw), ``b`` (out_channels,).
    Backward: dgrad (dx), wgrad (dw) and the bias gradient (see rawgan.backend.reference.conv).
    The wgrad's window matrix im2col(x) is the one the forward built: a forward that will be
    followed by a weight gradient (``training`` and ``requires_grad``) asks ``conv2d_fprop`` to
    keep its cols (``keep_cols``) and holds them in ``self.cols`` until the backward hands them
    to ``conv2d_wgrad`` and drops them — in_channels·kh·kw·N·P·Q elements (kh·kw/stride² times
    the input; D's four layers hold ~200 MB at batch 64, float32; in a CUDA TrainStep each pass
    has its own static buffers: D's real and fake passes ~390 MiB) instead of a second im2col.
    Eval forwards and forwards with ``requires_grad`` False (D during G's update) keep nothing;
    a backward without kept cols builds them again.
    Raises ValueError for a non-4-D input, a channel or dtype mismatch, or an input smaller than
    the (padded) kernel.
    """

    def __init__(self, backend, in_channels, out_channels, kernel_size, stride=1, padding="same",
                 bias=True, rng=None, init_std=0.02):
        super().__init__(backend)
        check_sizes("Conv2d", in_channels=in_channels, out_channels=out_channels)
        rng = rng or np.random.default_rng(0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = conv_geometry(kernel_size, stride, padding)
        kh, kw = self.kernel_size
        self._add_param("w", rng.normal(0, init_std, (out_channels, in_channels, kh, kw)))
        if bias:
            self._add_param("b", np.zeros(out_channels))
        self.bias_grad_by = None      # the layer computing b's gradient in the last forward's pass

    def pad_for(self, H, W):
        """(top, bottom, left, right) padding used for an H×W input."""
        if self.padding == "same":
            return (*same_padding(H, self.kernel_size[0], self.stride[0]),
                    *same_padding(W, self.kernel_size[1], self.stride[1]))
        return self.padding

    def output_shape(self, x_shape):
        N, _, H, W = x_shape
        t, b, l, r = self.pad_for(H, W)
        size = self.B.ops.conv_output_size
        return (N, self.out_channels, size(H, self.kernel_size[0], self.stride[0], t, b),
                size(W, self.kernel_size[1], self.stride[1], l, r))

    def forward(self, x):
        self._check_input(x, 4, {1: ("in_channels", self.in_channels)})
        self.pad = self.pad_for(x.shape[2], x.shape[3])
        if min(self.output_shape(x.shape)[2:]) < 1:
            raise ValueError(f"{self}: input {tuple(x.shape)} is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.pad}")
        self.x = x
        # b is None while the bias is folded into the next layer in training mode
        # (fold_bias_into_bn, fold_bias_into_act)
        b = None if self.bias_into is not None and self.bias_into.training else self.params.get("b")
        # ... and the layer it is folded into may also compute its gradient (BatchNormAct)
        folded = b is None and "b" in self.params
        self.bias_grad_by = (self.bias_into if folded and getattr(
            self.bias_into, "computes_folded_bias_grad", False) else None)
        self.cols = None
        if self.training and self.requires_grad:      # the backward's wgrad will reuse the cols
            y, self.cols = self.B.ops.conv2d_fprop(x, self.params["w"], b, self.stride, self.pad,
                                                   keep_cols=True)
            return self._out(y)
        return self._out(self.B.ops.conv2d_fprop(x, self.params["w"], b,
                                                 self.stride, self.pad))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        ops, w = self.B.ops, self.params["w"]
        if self.requires_grad:
            acc = self._accumulate_grads()
            ops.conv2d_wgrad(dy, self.x, w.shape, self.stride, self.pad, out=self.grads["w"],
                             accumulate=acc, cols=self.cols)
            self.cols = None                              # used once: free them
            if "b" in self.grads and self.bias_grad_by is None:   # else written by bias_grad_by
                ops.bias_grad(dy, out=self.grads["b"], accumulate=acc)
        if not need_dx:
            return None
        return ops.conv2d_dgrad(dy, w, self.x.shape, self.stride, self.pad)

    def __repr__(self):
        return (f"Conv2d({self.in_channels}→{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, pad={self.padding})")
