"""Convolutions through NVIDIA's cuDNN Frontend Python API (``conv_impl="cudnn"``).

CuPy 14 dropped its cuDNN bindings; NVIDIA's supported route is the cuDNN Frontend package
(``pip install nvidia-cudnn-frontend==1.32.0``, import ``cudnn``; the ``cudnn`` extra of setup.py)
with the cuDNN runtime from ``nvidia-cudnn-cu12``/``-cu13``. Its ``cudnn.Graph`` convenience
wrapper needs PyTorch, so we use the plain ``cudnn.pygraph`` and pass device pointers.

One graph per (pass, shapes, stride, padding), built once and cached:

    g = cudnn.pygraph(handle=h, io_data_type=FLOAT, intermediate_data_type=FLOAT,
                      compute_data_type=FLOAT)
    X = g.tensor(name="X", dim=[N, C, H, W], stride=[C*H*W, H*W, W, 1], data_type=FLOAT)
    W = g.tensor(name="W", dim=[K, C, R, S], stride=[...], data_type=FLOAT)
    Y = g.conv_fprop(image=X, weight=W, pre_padding=[top, left], post_padding=[bottom, right],
                     stride=[sh, sw], dilation=[1, 1], compute_data_type=FLOAT)
    Y.set_output(True).set_dim([N, K, P, Q]).set_stride([...]).set_data_type(FLOAT)
    g.validate(); g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    ws = cupy.empty(g.get_workspace_size(), cupy.uint8)
    g.execute({X: x.data.ptr, W: w.data.ptr, Y: y.data.ptr}, ws.data.ptr, handle=h)

dgrad is ``g.conv_dgrad(loss=DY, filter=W, ...)`` with DX's dims set explicitly, wgrad is
``g.conv_wgrad(image=X, loss=DY, ...)`` with DW's dims set. TensorFlow's asymmetric SAME padding
(k=5, s=2: 1 before, 2 after) is exactly ``pre_padding``/``post_padding``. The handle is bound
to CuPy's current stream (``cudnn.set_stream``), so cuDNN work is ordered with our kernels and
nothing synchronises with the host.

API checked against the nvidia-cudnn-frontend 1.32.0 wheel itself (cudnn/_pygraph.py:
``_STRUCTURED_OPS`` declares conv_fprop(image, weight) / conv_dgrad(loss, filter) /
conv_wgrad(image, loss) with attrs padding, pre_padding, post_padding, stride, dilation, plus the
``compute_data_type``/``name`` keywords; ``tensor(dim, stride, data_type, ..., name)``;
``validate``/``build_operation_graph``/``create_execution_plans``/``check_support``/``build_plans``;
``get_workspace_size()``; ``execute(tensor_dict, workspace, handle)`` whose ``_native_var_pack``
takes a bare ``int`` as a device pointer for pack values and workspace; cudnn/__init__.py:
``create_handle()``, ``set_stream(handle, stream)``) and the NVIDIA/cudnn-frontend repository
(python/pygraph/pygraph.cpp, samples/python/00_introduction.ipynb). Not run here (no GPU);
tests/test_gpu.py and bench/gpu_check.sh run it on one.

Fallback: when ``cudnn`` cannot be imported, the runtime is not a GPU (emulation), or a graph
fails to build/execute for a shape, the call goes to our im2col kernels (rawgan.backend.cuda.conv)
and ``warnings.warn`` says so once per reason.
"""
from __future__ import annotations

import warnings

from . import conv as im2col_conv
from ..reference.conv import conv_output_size

_warned: set = set()


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"conv_impl='cudnn': {reason}; using the im2col kernels instead",
                      RuntimeWarning, stacklevel=3)


def _contiguous_strides(dims):
    strides, acc = [], 1
    for d in reversed(dims):
        strides.append(acc)
        acc *= int(d)
    return list(reversed(strides))


class CudnnConv:
    """conv2d fprop/dgrad/wgrad (reference signatures) through cached cuDNN Frontend graphs.

    ``available`` is False (and every call uses the kernels) when the ``cudnn`` package or a GPU
    runtime is missing; ``failed`` holds the graph keys that did not build and stay on the kernels.
    """

    def __init__(self, rt):
        self.rt = rt
        self.cudnn = None
        self.handle = None
        self.graphs: dict = {}
        self.failed: set = set()
        self._pointer_mode = "int"   # variant pack values: "int" (arr.data.ptr; 1.32) or "array"
        if rt.kind != "cupy":
            _warn_once(f"cuDNN needs the GPU runtime, not {rt.kind!r}")
            return
        try:
            import cudnn  # noqa: F401  (nvidia-cudnn-frontend)
        except Exception as e:  # ImportError, or a missing libcudnn behind it
            _warn_once(f"cannot import cudnn ({type(e).__name__}: {e}); "
                       "pip install nvidia-cudnn-frontend==1.32.0")
            return
        try:
            self.handle = cudnn.create_handle()
            self.cudnn = cudnn
        except Exception as e:
            _warn_once(f"cudnn.create_handle() failed ({type(e).__name__}: {e})")

    @property
    def available(self) -> bool:
        return self.cudnn is not None

    # -- graph construction ---------------------------------------------------------------------
    def _build(self, kind, x_dims, w_dims, y_dims, stride, pad):
        """Build and cache the graph for one pass; returns (graph, tensors, workspace)."""
        cudnn = self.cudnn
        f32 = cudnn.data_type.FLOAT
        g = cudnn.pygraph(handle=self.handle, io_data_type=f32, intermediate_data_type=f32,
                          compute_data_type=f32)

        def decl(name, dims):
            return g.tensor(name=name, dim=list(dims), stride=_contiguous_strides(dims), data_type=f32)

        conv = dict(pre_padding=[pad[0], pad[2]], post_padding=[pad[1], pad[3]],
                    stride=list(stride), dilation=[1, 1], compute_data_type=f32)
        if kind == "fprop":
            X, W = decl("X", x_dims), decl("W", w_dims)
            out, out_dims = g.conv_fprop(image=X, weight=W, **conv), y_dims
            tensors = (X, W, out)
        elif kind == "dgrad":
            DY, W = decl("DY", y_dims), decl("W", w_dims)
            out, out_dims = g.conv_dgrad(loss=DY, filter=W, **conv), x_dims
            tensors = (DY, W, out)
        else:  # wgrad
            X, DY = decl("X", x_dims), decl("DY", y_dims)
            out, out_dims = g.conv_wgrad(image=X, loss=DY, **conv), w_dims
            tensors = (X, DY, out)
        out.set_output(True).set_dim(list(out_dims)).set_stride(_contiguous_strides(out_dims))
        out.set_data_type(f32)
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        g.check_support()
        g.build_plans()
        ws = self.rt.xp.empty((max(1, int(g.get_workspace_size())),), dtype=self.rt.xp.uint8)
        return g, tensors, ws

    def _run(self, kind, a, b, out, x_dims, w_dims, y_dims, stride, pad) -> bool:
        """Execute pass ``kind`` with inputs a, b into out; False if cuDNN cannot do it."""
        if not self.available:
            return False
        key = (kind, tuple(x_dims), tuple(w_dims), tuple(stride), tuple(pad))
        if key in self.failed:
            return False
        entry = self.graphs.get(key)
        try:
            if entry is None:
                entry = self.graphs[key] = self._build(kind, x_dims, w_dims, y_dims, stride, pad)
            g, (ta, tb, tout), ws = entry
            self.cudnn.set_stream(handle=self.handle,
                                  stream=self.rt.xp.cuda.get_current_stream().ptr)
            if self._pointer_mode == "int":
                try:
                    self.rt._launch(f"cudnn_{kind}", lambda: g.execute(
                        {ta: a.data.ptr, tb: b.data.ptr, tout: out.data.ptr}, ws.data.ptr,
                        handle=self.handle))               # counted like a kernel launch
                    return True
                except TypeError:                  # a frontend that wants __dlpack__ objects
                    self._pointer_mode = "array"
            self.rt._launch(f"cudnn_{kind}", lambda: g.execute({ta: a, tb: b, tout: out}, ws,
                                                                 handle=self.handle))
            return True
        except Exception as e:  # cudnnGraphNotSupportedError, a build error, ...
            self.failed.add(key)
            self.graphs.pop(key, None)
            _warn_once(f"{kind} graph for x{tuple(x_dims)} w{tuple(w_dims)} stride {tuple(stride)} "
                       f"pad {tuple(pad)} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            return False

    # -- the three passes, with the reference signatures ----------------------------------------
    @staticmethod
    def _y_dims(x_shape, w_shape, stride, pad):
        N, _, H, W = (int(d) for d in x_shape)
        K, _, R, S = (int(d) for d in w_shape)
        return (N, K, conv_output_size(H, R, stride[0], pad[0], pad[1]),
                conv_output_size(W, S, stride[1], pad[2], pad[3]))

    def fprop(self, x, w, b, stride, pad):
        """y = conv(x, w) + b (rawgan.backend.reference.conv.conv2d_fprop)."""
        if not self.available:
            return im2col_conv.conv2d_fprop(self.rt, x, w, b, stride, pad)
        x, w = im2col_conv.contiguous(self.rt, x), im2col_conv.contiguous(self.rt, w)
        y_dims = self._y_dims(x.shape, w.shape, stride, pad)
        y = self.rt.empty(y_dims, x.dtype)
        if not self._run("fprop", x, w, y, x.shape, w.shape, y_dims, stride, pad):
            return im2col_conv.conv2d_fprop(self.rt, x, w, b, stride, pad)
        if b is not None:
            im2col_conv.bias_add(self.rt, y, b)
        return y

    def dgrad(self, dy, w, x_shape, stride, pad, bias=None):
        """dx for y = conv(x, w), + bias per channel if given (reference conv2d_dgrad)."""
        if not self.available:
            return im2col_conv.conv2d_dgrad(self.rt, dy, w, x_shape, stride, pad, bias)
        dy, w = im2col_conv.contiguous(self.rt, dy), im2col_conv.contiguous(self.rt, w)
        x_dims = tuple(int(d) for d in x_shape)
        dx = self.rt.empty(x_dims, dy.dtype)
        if not self._run("dgrad", dy, w, dx, x_dims, w.shape, dy.shape, stride, pad):
            return im2col_conv.conv2d_dgrad(self.rt, dy, w, x_shape, stride, pad, bias)
        return dx if bias is None else im2col_conv.bias_add(self.rt, dx, bias)

    def wgrad(self, dy, x, w_shape, stride, pad):
        """dw for y = conv(x, w) (rawgan.backend.reference.conv.conv2d_wgrad)."""
        if not self.available:
            return im2col_conv.conv2d_wgrad(self.rt, dy, x, w_shape, stride, pad)
        dy, x = im2col_conv.contiguous(self.rt, dy), im2col_conv.contiguous(self.rt, x)
        w_dims = tuple(int(d) for d in w_shape)
        dw = self.rt.empty(w_dims, dy.dtype)
        if not self._run("wgrad", x, dy, dw, x.shape, w_dims, dy.shape, stride, pad):
            return im2col_conv.conv2d_wgrad(self.rt, dy, x, w_shape, stride, pad)
        return dw
