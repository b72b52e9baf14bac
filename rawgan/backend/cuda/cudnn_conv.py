"""Convolutions through NVIDIA's cuDNN Frontend Python API (``conv_impl="cudnn"``), capturable
into the step's CUDA graph, with TF SAME padding by an explicit pad, and chosen per layer.

CuPy 14 dropped its cuDNN bindings; NVIDIA's supported route is the cuDNN Frontend package
(``pip install nvidia-cudnn-frontend==1.32.0``, import ``cudnn``; the ``cudnn`` extra of setup.py)
with the cuDNN runtime from ``nvidia-cudnn-cu12``/``-cu13``. Its ``cudnn.Graph`` convenience
wrapper needs PyTorch, so we use the plain ``cudnn.pygraph`` and pass device pointers.

One graph per (pass, shapes, stride, padding, precision), built once (eagerly: the warm-up step)
and cached:

    g = cudnn.pygraph(handle=h, io_data_type=FLOAT, intermediate_data_type=FLOAT,
                      compute_data_type=FLOAT)
    X = g.tensor(name="X", dim=[N, C, H, W], stride=[C*H*W, H*W, W, 1], data_type=FLOAT)
    W = g.tensor(name="W", dim=[K, C, R, S], stride=[...], data_type=FLOAT)
    Y = g.conv_fprop(image=X, weight=W, pre_padding=[ph, pw], post_padding=[ph, pw],
                     stride=[sh, sw], dilation=[1, 1], compute_data_type=FLOAT)
    Y.set_output(True).set_dim([N, K, P, Q]).set_stride([...]).set_data_type(FLOAT)
    g.validate(); g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.deselect_numeric_notes([TENSOR_CORE, DOWN_CONVERT_INPUTS])     # fp32 only
    g.check_support(); g.build_plans()
    g.execute({X: x.data.ptr, W: w.data.ptr, Y: y.data.ptr}, workspace.data.ptr, handle=h)

dgrad is ``g.conv_dgrad(loss=DY, filter=W, ...)`` with DX's dims set explicitly, wgrad is
``g.conv_wgrad(image=X, loss=DY, ...)`` with DW's dims set.

**Precision.** The runtime's precision (``rt.precision``; ``--precision``) is part of the graph
key. fp32: ``deselect_numeric_notes([numerical_note.TENSOR_CORE,
numerical_note.DOWN_CONVERT_INPUTS])`` between creating the plans and checking support (the
frontend replays filters set before the backend has plans, _pygraph._filter_notes), so no TF32
engine is picked silently — PyTorch filters the same notes when ``allow_tf32`` is False. tf32:
every engine is allowed (PyTorch's default ``torch.backends.cudnn.allow_tf32 = True``).
Compute data type FLOAT in both (TF32 is an engine property, not a data type).

**Capture** (one CUDA graph per step, rawgan/models/step.py). The handle is bound to the
runtime's non-blocking stream (``cudnn.set_stream(handle, rt.stream.ptr)``) when created and
again just before every capture (``rt.before_capture``), never inside it. The workspace is the
step's scratch slot "cudnn_workspace" (``rt.scratch``: from the step's StaticMemory, grown to the
largest graph's ``get_workspace_size()`` during the eager warm-up step, then reused; nothing is
allocated inside capture). Graphs are built only outside capture: a graph key first seen inside a
capture raises CaptureError. ``execute`` itself is a stream operation on the bound stream.

**TF SAME padding.** The frontend's ``pre_padding``/``post_padding`` may differ, but whether the
engines accept pre != post for strided dgrad/wgrad is not documented in 1.32.0 (the frontend's
sources only compute output shapes with them). So asymmetric padding is done explicitly by
default: symmetric padding ``min(pre, post)`` goes to cuDNN and the extra rows/columns are a
``pad_nchw`` of the input (fprop, wgrad) or a ``crop_nchw`` of the input gradient (dgrad: the
adjoint of the pad) — kernels/pad.cu, in the scratch slot "cudnn_pad". ``native_asymmetric=True``
gives pre/post to cuDNN unchanged instead (for a GPU experiment).

**Choice per layer.** For each (pass, shapes) the first eager call decides between cuDNN and
our im2col kernels (``choices``): on a GPU by timing both (``MEASURE_REPEATS`` runs each, CUDA
events on the runtime's stream, outside the step's static memory so the step's buffer order is
unchanged), elsewhere (a stand-in ``cudnn`` on the emulator) by the cost model
:func:`modelled_seconds`. The decision is fixed afterwards, so every step — and the captured
graph — runs the same code.

API checked against the nvidia-cudnn-frontend 1.32.0 wheel itself (cudnn/_pygraph.py:
``_STRUCTURED_OPS`` declares conv_fprop(image, weight) / conv_dgrad(loss, filter) /
conv_wgrad(image, loss) with attrs padding, pre_padding, post_padding, stride, dilation;
``tensor(dim, stride, data_type, ..., name)``; ``validate``/``build_operation_graph``/
``create_execution_plans``/``deselect_numeric_notes``/``check_support``/``build_plans``;
``get_workspace_size()``; ``execute(tensor_dict, workspace, handle)``; cudnn/__init__.py:
``create_handle()``, ``set_stream(handle, stream)``, ``numerical_note`` with TENSOR_CORE and
DOWN_CONVERT_INPUTS in the compiled module). Not run here (no GPU): tests/test_cudnn_conv.py
drives this module with a stand-in ``cudnn`` on the emulator; tests/test_gpu.py and
bench/gpu_check.py run the real one on a GPU.

Fallback: when ``cudnn`` cannot be imported, the runtime is not a GPU (emulation, without a
stand-in), or a graph fails to build/execute for a shape, the call goes to our im2col kernels
(rawgan.backend.cuda.conv) and ``warnings.warn`` says so once per reason.
"""
from __future__ import annotations

import warnings
import weakref

import numpy as np

from . import conv as im2col_conv
from .common import H200_SMS, check_int32, i32, launch_1d, stream_time
from ..reference.conv import conv_output_size

PAD_MODULE = "pad"
WORKSPACE_SLOT = "cudnn_workspace"
PAD_SLOT = "cudnn_pad"
MEASURE_REPEATS = 3

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


def plan_engines(g, cudnn, precision: str) -> None:
    """Create, filter and build the execution plans of graph ``g`` for ``precision``.

    fp32 deselects the engines whose numerical notes say TENSOR_CORE or DOWN_CONVERT_INPUTS
    (TF32 tensor cores, inputs rounded), between ``create_execution_plans`` and
    ``check_support``; tf32 keeps every engine. Raises whatever the frontend raises (no plan
    left: cudnnGraphNotSupportedError)."""
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    if precision == "fp32":
        g.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE,
                                  cudnn.numerical_note.DOWN_CONVERT_INPUTS])
    elif precision != "tf32":
        raise ValueError(f"precision must be fp32 or tf32, got {precision!r}")
    g.check_support()
    g.build_plans()


def split_padding(pad):
    """(symmetric (ph, pw) for cuDNN, explicit extra (top, bottom, left, right)) of an NCHW
    padding (top, bottom, left, right): TF SAME (1, 2, 1, 2) -> ((1, 1), (0, 1, 0, 1))."""
    pt, pb, pl, pr = (int(p) for p in pad)
    ph, pw = min(pt, pb), min(pl, pr)
    return (ph, pw), (pt - ph, pb - ph, pl - pw, pr - pw)


def pad2d(rt, x, extra, slot: str = PAD_SLOT):
    """x (N, C, H, W) zero-padded by ``extra`` = (top, bottom, left, right) into scratch ``slot``
    (kernel ``pad_nchw``): (N, C, H + top + bottom, W + left + right) float32."""
    N, C, H, W = (int(d) for d in x.shape)
    t, b, l, r = extra
    Hp, Wp = H + t + b, W + l + r
    check_int32("pad2d", N * C * Hp * Wp)
    x_pad = rt.scratch(slot, (N, C, Hp, Wp), x.dtype)
    launch_1d(rt, PAD_MODULE, "pad_nchw", x_pad.size,
              (im2col_conv.contiguous(rt, x), x_pad, i32(N * C), i32(H), i32(W), i32(Hp), i32(Wp), i32(t), i32(l)))
    return x_pad


def crop2d(rt, x_pad, x_shape, extra):
    """The adjoint of :func:`pad2d`: x_pad[:, :, top:top + H, left:left + W] into a new ``rt.empty``
    buffer of ``x_shape`` (kernel ``crop_nchw``)."""
    N, C, H, W = (int(d) for d in x_shape)
    Hp, Wp = int(x_pad.shape[2]), int(x_pad.shape[3])
    x = rt.empty((N, C, H, W), x_pad.dtype)
    launch_1d(rt, PAD_MODULE, "crop_nchw", x.size,
              (x_pad, x, i32(N * C), i32(H), i32(W), i32(Hp), i32(Wp), i32(extra[0]), i32(extra[2])))
    return x


# -- the cost model used without a GPU (bench/gpu_model.py's constants) -----------------------------
KERNEL_MIN_S = 2.0e-6
PEAK_FLOPS = {"fp32": 67e12, "tf32": 495e12}
GEMM_EFFICIENCY = 0.6         # cuBLAS on the im2col GEMM shapes (bench/gpu_model.py)
CUDNN_EFFICIENCY = 0.6        # assumed equal: the same GEMM, without the columns in memory


def modelled_seconds(kind: str, x_shape, w_shape, stride, pad, precision: str) -> dict:
    """ESTIMATE of one conv pass on an H200: {"cudnn": s, "kernels": s}.

    kernels: im2col/col2im and swap_axes01 move their bytes at the H200's stream rate
    (common.stream_time with a full grid), plus the GEMM at ``GEMM_EFFICIENCY`` of the peak;
    cudnn: one implicit-GEMM launch at ``CUDNN_EFFICIENCY`` of the peak reading x, w and y once,
    plus the explicit pad (fprop/wgrad) or crop (dgrad) when the padding is asymmetric. A model,
    not a measurement; used only where no GPU can measure."""
    N, C, H, W = (int(d) for d in x_shape)
    K, _, R, S = (int(d) for d in w_shape)
    P = conv_output_size(H, R, stride[0], pad[0], pad[1])
    Q = conv_output_size(W, S, stride[1], pad[2], pad[3])
    flops = 2.0 * N * K * P * Q * C * R * S
    peak = PEAK_FLOPS[precision]
    x_b, w_b, y_b = 4.0 * N * C * H * W, 4.0 * K * C * R * S, 4.0 * N * K * P * Q
    cols_b = 4.0 * C * R * S * N * P * Q

    def stream(nbytes):
        return KERNEL_MIN_S + stream_time(nbytes, 10**9, H200_SMS)

    gemm = KERNEL_MIN_S + max(flops / (peak * GEMM_EFFICIENCY), stream_time(cols_b + y_b + w_b, 10**9, H200_SMS))
    if kind == "fprop":
        kern = stream(x_b + cols_b) + gemm + stream(2 * y_b)            # im2col, GEMM, swap(+bias)
    elif kind == "dgrad":
        kern = stream(2 * y_b) + gemm + stream(cols_b + x_b)            # swap, GEMM, col2im
    else:
        kern = stream(x_b + cols_b) + stream(2 * y_b) + gemm            # im2col, swap, GEMM
    _, extra = split_padding(pad)
    pad_s = stream(2 * x_b) if any(extra) else 0.0
    cud = KERNEL_MIN_S + max(flops / (peak * CUDNN_EFFICIENCY),
                             stream_time(x_b + w_b + y_b, 10**9, H200_SMS)) + pad_s
    return {"cudnn": cud, "kernels": kern}


class CudnnConv:
    """conv2d fprop/dgrad/wgrad (reference signatures) through cached cuDNN Frontend graphs.

    Args: ``rt`` (the runtime), ``cudnn_module`` (the ``cudnn`` package; None: import it — only
    on the cupy runtime), ``native_asymmetric`` (see the module docstring), ``choose``
    ("auto": measure on a GPU, else the cost model; "cudnn"/"kernels": force one side).
    ``available`` is False (and every call uses the kernels, ``reason`` says why) when the
    ``cudnn`` package or a GPU runtime is missing; ``failed`` holds the graph keys that did not build and stay on the
    kernels; ``choices`` maps (pass, x shape, w shape, stride, pad, precision) to "cudnn" or
    "kernels" and ``timings`` to the seconds (measured or modelled) that decided it.
    """

    def __init__(self, rt, cudnn_module=None, native_asymmetric: bool = False, choose: str = "auto"):
        if choose not in ("auto", "cudnn", "kernels"):
            raise ValueError(f"choose: expected auto, cudnn or kernels, got {choose!r}")
        self.rt = rt
        self.cudnn = None
        self.handle = None
        self.graphs: dict = {}
        self.failed: set = set()
        self.choices: dict = {}
        self.timings: dict = {}
        self.native_asymmetric = bool(native_asymmetric)
        self.choose = choose
        self.reason = ""                    # why cuDNN is not available ("" when it is)
        if cudnn_module is None:
            if rt.kind != "cupy":
                self._unavailable(f"cuDNN needs the GPU runtime, not {rt.kind!r}")
                return
            try:
                import cudnn as cudnn_module  # noqa: F811  (nvidia-cudnn-frontend)
            except Exception as e:  # ImportError, or a missing libcudnn behind it
                self._unavailable(f"cannot import cudnn ({type(e).__name__}: {e}); "
                                  "pip install nvidia-cudnn-frontend==1.32.0")
                return
        try:
            self.handle = cudnn_module.create_handle()
            self.cudnn = cudnn_module
        except Exception as e:
            self._unavailable(f"cudnn.create_handle() failed ({type(e).__name__}: {e})")
            return
        self.bind()
        ref = weakref.ref(self)

        def rebind():                       # the runtime keeps no discarded CudnnConv alive
            me = ref()
            if me is not None:
                me.bind()
        rt.before_capture.append(rebind)

    @property
    def available(self) -> bool:
        return self.cudnn is not None

    def _unavailable(self, reason: str) -> None:
        self.reason = reason
        _warn_once(reason)

    def bind(self) -> None:
        """Bind the handle to the runtime's stream (outside capture: before it begins)."""
        stream = getattr(self.rt, "stream", None)
        self.cudnn.set_stream(handle=self.handle, stream=int(getattr(stream, "ptr", 0) or 0))

    # -- graph construction ---------------------------------------------------------------------
    def _build(self, kind, x_dims, w_dims, y_dims, stride, pre, post, precision):
        """Build one pass's graph; returns (graph, (in_a, in_b, out) tensors, workspace bytes)."""
        cudnn = self.cudnn
        f32 = cudnn.data_type.FLOAT
        g = cudnn.pygraph(handle=self.handle, io_data_type=f32, intermediate_data_type=f32,
                          compute_data_type=f32)

        def decl(name, dims):
            return g.tensor(name=name, dim=list(dims), stride=_contiguous_strides(dims), data_type=f32)

        conv = dict(pre_padding=list(pre), post_padding=list(post), stride=list(stride),
                    dilation=[1, 1], compute_data_type=f32)
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
        plan_engines(g, cudnn, precision)
        return g, tensors, max(1, int(g.get_workspace_size()))

    def _execute(self, kind, a, b, out, x_dims, w_dims, y_dims, stride, pre, post) -> None:
        """Run one pass (building its graph outside capture); raises on any cuDNN failure."""
        precision = self.rt.precision
        key = (kind, tuple(x_dims), tuple(w_dims), tuple(stride), tuple(pre), tuple(post), precision)
        entry = self.graphs.get(key)
        if entry is None:
            if self.rt.capturing:
                from ...runtime import CaptureError
                raise CaptureError(f"cuDNN {kind} graph for x{tuple(x_dims)} w{tuple(w_dims)} first "
                                   f"seen inside graph capture: build it in an eager step first")
            entry = self.graphs[key] = self._build(kind, x_dims, w_dims, y_dims, stride, pre, post,
                                                   precision)
        g, (ta, tb, tout), ws_bytes = entry
        ws = self.rt.scratch(WORKSPACE_SLOT, (ws_bytes,), np.uint8)
        handle = self.handle
        N, C, H, W = (int(d) for d in x_dims)
        K, _, R, S = (int(d) for d in w_dims)
        flops = 2.0 * N * K * int(y_dims[2]) * int(y_dims[3]) * C * R * S
        record = None
        if self.rt.launch_records is not None:
            from ...runtime import LaunchRecord
            record = LaunchRecord(f"cudnn_{kind}", "cuDNN", "cudnn",
                                  ((int(a.nbytes), False), (int(b.nbytes), False), (int(out.nbytes), True)),
                                  flops, 0, 0, precision)
        self.rt._launch(f"cudnn_{kind}", lambda: g.execute(
            {ta: a.data.ptr, tb: b.data.ptr, tout: out.data.ptr}, ws.data.ptr, handle=handle), record)

    # -- the three passes ------------------------------------------------------------------------
    @staticmethod
    def _y_dims(x_shape, w_shape, stride, pad):
        N, _, H, W = (int(d) for d in x_shape)
        K, _, R, S = (int(d) for d in w_shape)
        return (N, K, conv_output_size(H, R, stride[0], pad[0], pad[1]),
                conv_output_size(W, S, stride[1], pad[2], pad[3]))

    def _geometry(self, pad):
        """(pre, post, explicit extra) of ``pad`` (top, bottom, left, right)."""
        if self.native_asymmetric:
            return (pad[0], pad[2]), (pad[1], pad[3]), (0, 0, 0, 0)
        sym, extra = split_padding(pad)
        return sym, sym, extra

    def _cudnn_fprop(self, x, w, b, stride, pad):
        pre, post, extra = self._geometry(pad)
        y_dims = self._y_dims(x.shape, w.shape, stride, pad)
        xin = pad2d(self.rt, x, extra) if any(extra) else x
        y = self.rt.empty(y_dims, x.dtype)
        self._execute("fprop", xin, w, y, xin.shape, w.shape, y_dims, stride, pre, post)
        if b is not None:
            im2col_conv.bias_add(self.rt, y, b)
        return y

    def _cudnn_dgrad(self, dy, w, x_shape, stride, pad):
        pre, post, extra = self._geometry(pad)
        x_dims = tuple(int(d) for d in x_shape)
        if not any(extra):
            dx = self.rt.empty(x_dims, dy.dtype)
            self._execute("dgrad", dy, w, dx, x_dims, w.shape, dy.shape, stride, pre, post)
            return dx
        N, C, H, W = x_dims
        t, bo, l, r = extra
        dxp = self.rt.scratch(PAD_SLOT, (N, C, H + t + bo, W + l + r), dy.dtype)
        self._execute("dgrad", dy, w, dxp, dxp.shape, w.shape, dy.shape, stride, pre, post)
        return crop2d(self.rt, dxp, x_dims, extra)

    def _cudnn_wgrad(self, dy, x, w_shape, stride, pad):
        pre, post, extra = self._geometry(pad)
        w_dims = tuple(int(d) for d in w_shape)
        xin = pad2d(self.rt, x, extra) if any(extra) else x
        dw = self.rt.empty(w_dims, dy.dtype)
        self._execute("wgrad", xin, dy, dw, xin.shape, w_dims, dy.shape, stride, pre, post)
        return dw

    def _dispatch(self, kind, key, run_cudnn, run_kernels):
        """Run the side chosen for ``key`` (choosing it at the first eager call)."""
        if not self.available or key in self.failed:
            return run_kernels()
        choice = self.choices.get(key)
        if choice is None:
            if self.rt.capturing:
                from ...runtime import CaptureError
                raise CaptureError(f"cuDNN {kind}: no implementation chosen for {key[1:]} before "
                                   f"capture (run an eager step first)")
            choice = self._decide(kind, key, run_cudnn, run_kernels)
        if choice == "kernels":
            return run_kernels()
        try:
            return run_cudnn()
        except Exception as e:  # cudnnGraphNotSupportedError, a build error, ...
            from ...runtime import CaptureError
            if isinstance(e, CaptureError):
                raise
            self.failed.add(key)
            self.choices[key] = "kernels"
            _warn_once(f"{kind} graph for {key[1:]} failed ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})")
            return run_kernels()

    def _decide(self, kind, key, run_cudnn, run_kernels) -> str:
        """Choose a side for ``key`` (first eager call). A cuDNN failure is found here, in a trial
        run outside the step's static memory, so that the warm-up step takes exactly the buffers
        of every later step (a fallback inside the step would shift them: CaptureError)."""
        if self.choose != "auto":
            choice = self.choose
        else:
            if self.rt.kind == "cupy":
                times = self._measure(run_cudnn, run_kernels)
            else:
                _, x_shape, w_shape, stride, pad, precision = key
                times = modelled_seconds(kind, x_shape, w_shape, stride, pad, precision)
            self.timings[key] = times
            choice = "cudnn" if times["cudnn"] <= times["kernels"] else "kernels"
        if choice == "cudnn" and not (self.rt.kind == "cupy" and self.choose == "auto"):
            saved, self.rt.memory = self.rt.memory, None       # trial run: builds the graph
            try:
                run_cudnn()
            except Exception as e:  # noqa: BLE001 - stays on the kernels
                self.failed.add(key)
                choice = "kernels"
                _warn_once(f"{kind} graph for {key[1:]} failed ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})")
            finally:
                self.rt.memory = saved
        self.choices[key] = choice
        return choice

    def _measure(self, run_cudnn, run_kernels) -> dict:
        """Seconds per call of each side on the GPU: CUDA events on the runtime's stream, the
        median of MEASURE_REPEATS runs after one untimed run, outside the step's static memory
        (the measured calls' buffers are temporary: the step's buffer order does not change)."""
        rt, cupy = self.rt, self.rt.xp
        saved, rt.memory = rt.memory, None
        out = {}
        try:
            for name, fn in (("cudnn", run_cudnn), ("kernels", run_kernels)):
                try:
                    fn()
                    times = []
                    for _ in range(MEASURE_REPEATS):
                        start, end = cupy.cuda.Event(), cupy.cuda.Event()
                        start.record(rt.stream)
                        fn()
                        end.record(rt.stream)
                        end.synchronize()
                        times.append(cupy.cuda.get_elapsed_time(start, end) * 1e-3)
                    out[name] = sorted(times)[len(times) // 2]
                except Exception as e:  # noqa: BLE001 - cuDNN cannot run this shape
                    if name == "kernels":
                        raise
                    _warn_once(f"measuring cuDNN failed ({type(e).__name__}: {e})")
                    out[name] = float("inf")
        finally:
            rt.memory = saved
        return out

    def fprop(self, x, w, b, stride, pad, keep_cols=False):
        """y = conv(x, w) + b (rawgan.backend.reference.conv.conv2d_fprop). ``keep_cols``:
        (y, cols) — the kernels' column matrix (conv.conv2d_fprop), or None where cuDNN ran
        the pass (it builds no cols; the wgrad then runs without them)."""
        if not keep_cols:
            return self._pass("fprop", im2col_conv.conv2d_fprop, self._cudnn_fprop, (x, w),
                              (b, stride, pad), lambda x, w, *_: (x.shape, w.shape))

        def kernels(rt, *args):
            return im2col_conv.conv2d_fprop(rt, *args, keep_cols=True)

        def cudnn(*args):
            return self._cudnn_fprop(*args), None
        return self._pass("fprop", kernels, cudnn, (x, w), (b, stride, pad),
                          lambda x, w, *_: (x.shape, w.shape))

    def dgrad(self, dy, w, x_shape, stride, pad, bias=None):
        """dx for y = conv(x, w), + ``bias`` per channel if given (reference conv2d_dgrad; here
        a separate bias_add, the kernels' col2im folds it only on the conv_impl="kernels" path)."""
        dx = self._pass("dgrad", im2col_conv.conv2d_dgrad, self._cudnn_dgrad, (dy, w),
                        (x_shape, stride, pad), lambda dy, w, x_shape, *_: (x_shape, w.shape))
        return dx if bias is None else im2col_conv.bias_add(self.rt, dx, bias)

    def wgrad(self, dy, x, w_shape, stride, pad, out=None, accumulate=False, cols=None):
        """dw for y = conv(x, w) (rawgan.backend.reference.conv.conv2d_wgrad); ``out`` the
        gradient buffer written (or, ``accumulate``, added to) — here with tensor.cu's fill +
        accumulate kernels after the pass (the conv_impl="kernels" path does it in the GEMM).
        ``cols`` (from fprop's ``keep_cols``) is used where the kernels run this pass; cuDNN
        needs none."""
        def kernels(rt, *args):
            return im2col_conv.conv2d_wgrad(rt, *args, cols=cols)
        dw = self._pass("wgrad", kernels, self._cudnn_wgrad, (dy, x),
                        (w_shape, stride, pad), lambda dy, x, w_shape, *_: (x.shape, w_shape))
        if out is None:
            return dw
        from . import tensor

        if not accumulate:
            tensor.fill(self.rt, out, 0.0)
        return tensor.accumulate(self.rt, out, dw)

    def _pass(self, kind, run_kernels, run_cudnn, arrays, rest, shapes):
        """One convolution pass by cuDNN or by our kernels, whichever was chosen for its key
        (kind, image shape, filter shape, stride, pad, precision); always the kernels when cuDNN
        is unavailable. ``arrays`` are the pass's two device operands, ``rest`` its other
        reference arguments ending with stride and pad."""
        rt = self.rt
        if not self.available:
            return run_kernels(rt, *arrays, *rest)
        arrays = tuple(im2col_conv.contiguous(rt, a) for a in arrays)
        image, filt = shapes(*arrays, *rest)
        key = (kind, tuple(int(d) for d in image), tuple(int(d) for d in filt), tuple(rest[-2]),
               tuple(rest[-1]), rt.precision)
        return self._dispatch(kind, key, lambda: run_cudnn(*arrays, *rest),
                              lambda: run_kernels(rt, *arrays, *rest))

    def describe_choices(self) -> str:
        """One line per decided (pass, shapes): the side chosen and the seconds behind it."""
        lines = []
        for key, choice in self.choices.items():
            t = self.timings.get(key, {})
            how = "measured" if self.rt.kind == "cupy" else "modelled (ESTIMATE)"
            times = ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in t.items())
            lines.append(f"{key[0]} x{key[1]} w{key[2]} pad{key[4]} {key[5]}: {choice}"
                         + (f" ({how}: {times})" if times else "")
                         + (" [cuDNN failed]" if key in self.failed else ""))
        return "\n".join(lines)
