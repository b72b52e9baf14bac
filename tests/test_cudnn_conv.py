"""rawgan/backend/cuda/cudnn_conv.py without a GPU: a stand-in ``cudnn`` module with the
nvidia-cudnn-frontend 1.32.0 call surface (pygraph, tensor, conv_fprop/dgrad/wgrad, the plan
steps, deselect_numeric_notes, execute with device pointers, create_handle, set_stream) computes
each convolution with the NumPy reference on the memory behind the pointers, and — like an
engine without asymmetric-padding support — refuses pre_padding != post_padding. On the emulator
this proves: the explicit pad/crop for TF SAME gives the reference's results for every pass; the
fp32 engine filter; the step with cuDNN convolutions captured as one graph equals the eager step
bit for bit and allocates nothing (handle bound before capture, workspace from static memory,
no graph built inside capture); the per-layer choice by the cost model. The real cuDNN runs in
tests/test_gpu.py and bench/gpu_check.py (stage "cudnn") on a GPU.
"""
import ctypes
import json
import warnings

import numpy as np
import pytest

from rawgan.backend import PhiloxState, get_backend
from rawgan.backend import reference as R
from rawgan.backend.cuda import cudnn_conv
from rawgan.backend.cuda.cudnn_conv import CudnnConv, plan_engines, split_padding
from rawgan.models.dcgan import DCGAN
from rawgan.models.step import TrainStep
from rawgan.runtime import CaptureError


# ------------------------------------------------------------------------------- the stand-in
class _Enum:
    def __init__(self, *names):
        for n in names:
            setattr(self, n, n)


class FakeTensor:
    def __init__(self, name, dim):
        self.name, self.dim = name, list(dim)

    def set_output(self, flag):
        return self

    def set_dim(self, dim):
        self.dim = list(dim)
        return self

    def set_stride(self, stride):
        return self

    def set_data_type(self, dt):
        return self


def _view(ptr, dims):
    n = int(np.prod(dims))
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(dims)


class FakeGraph:
    """Records the calls; ``execute`` computes with rawgan.backend.reference on the pointers."""

    def __init__(self, module, **kw):
        self.module, self.calls, self.op = module, [], None
        module.graphs.append(self)

    def tensor(self, name, dim, stride, data_type):
        return FakeTensor(name, dim)

    def _conv(self, kind, a, b, pre_padding, post_padding, stride, dilation, compute_data_type):
        if list(pre_padding) != list(post_padding) and not self.module.asymmetric:
            raise RuntimeError("cudnnGraphNotSupportedError: pre_padding != post_padding")
        self.op = (kind, a, b, tuple(pre_padding), tuple(post_padding), tuple(stride))
        self.out = FakeTensor("out", [])
        return self.out

    def conv_fprop(self, image, weight, **kw):
        return self._conv("fprop", image, weight, **kw)

    def conv_dgrad(self, loss, filter, **kw):
        return self._conv("dgrad", loss, filter, **kw)

    def conv_wgrad(self, image, loss, **kw):
        return self._conv("wgrad", image, loss, **kw)

    def __getattr__(self, name):            # validate, build_operation_graph, plan steps
        if name in ("validate", "build_operation_graph", "create_execution_plans",
                    "deselect_numeric_notes", "check_support", "build_plans"):
            return lambda *a, **k: self.calls.append((name, a))
        raise AttributeError(name)

    def get_workspace_size(self):
        return 4096

    def execute(self, pack, workspace, handle):
        assert isinstance(workspace, int) and all(isinstance(p, int) for p in pack.values())
        self.module.executed.append((self.op[0], workspace))
        kind, a, b, pre, post, stride = self.op
        pad = (pre[0], post[0], pre[1], post[1])
        A, Bv, out = (_view(pack[t], t.dim) for t in (a, b, self.out))
        if kind == "fprop":
            out[...] = R.conv2d_fprop(A, Bv, None, stride, pad)
        elif kind == "dgrad":
            out[...] = R.conv2d_dgrad(A, Bv, tuple(self.out.dim), stride, pad)
        else:
            out[...] = R.conv2d_wgrad(Bv, A, tuple(self.out.dim), stride, pad)


class FakeCudnn:
    """The ``cudnn`` module's surface that cudnn_conv uses."""

    def __init__(self, asymmetric=False):
        self.asymmetric = asymmetric
        self.graphs, self.executed, self.streams = [], [], []
        self.data_type = _Enum("FLOAT")
        self.heur_mode = _Enum("A", "FALLBACK")
        self.numerical_note = _Enum("TENSOR_CORE", "DOWN_CONVERT_INPUTS")

    def pygraph(self, **kw):
        return FakeGraph(self, **kw)

    def create_handle(self):
        return object()

    def set_stream(self, handle, stream):
        self.streams.append(stream)


def cudnn_backend(fake, precision="fp32", choose="cudnn"):
    """An emulated backend whose convolutions go through CudnnConv on the stand-in."""
    B = get_backend("emulated", precision=precision)
    cd = CudnnConv(B.ops.rt, cudnn_module=fake, choose=choose)
    B.ops.conv2d_fprop, B.ops.conv2d_dgrad, B.ops.conv2d_wgrad = cd.fprop, cd.dgrad, cd.wgrad
    B.ops.cudnn = cd
    return B


# ------------------------------------------------------------------------------- tests
def test_fp32_deselects_tensor_core_and_down_converting_engines():
    fake = FakeCudnn()
    for precision, expected in (("fp32", [("deselect_numeric_notes", (["TENSOR_CORE", "DOWN_CONVERT_INPUTS"],))]),
                                ("tf32", [])):
        g = FakeGraph(fake)
        plan_engines(g, fake, precision)
        names = [c[0] for c in g.calls]
        assert names[0] == "create_execution_plans" and names[-2:] == ["check_support", "build_plans"]
        assert g.calls[0][1] == (["A", "FALLBACK"],)
        assert [c for c in g.calls if c[0] == "deselect_numeric_notes"] == expected
    with pytest.raises(ValueError, match="fp32 or tf32"):
        plan_engines(FakeGraph(fake), fake, "fp16")


def test_split_padding_tf_same():
    assert split_padding((1, 2, 1, 2)) == ((1, 1), (0, 1, 0, 1))
    assert split_padding((2, 2, 0, 0)) == ((2, 0), (0, 0, 0, 0))
    assert split_padding((0, 1, 2, 0)) == ((0, 0), (0, 1, 2, 0))


def test_pad_and_crop_kernels_match_numpy_and_are_adjoint():
    B = get_backend("emulated")
    rt = B.ops.rt
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    extra = (1, 2, 0, 3)
    xp = B.to_numpy(cudnn_conv.pad2d(rt, B.asarray(x), extra))
    np.testing.assert_array_equal(xp, np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 3))))
    y = rng.standard_normal(xp.shape).astype(np.float32)
    crop = B.to_numpy(cudnn_conv.crop2d(rt, B.asarray(y), x.shape, extra))
    np.testing.assert_array_equal(crop, y[:, :, 1:6, 0:4])
    assert np.isclose(np.vdot(xp, y), np.vdot(x, crop), rtol=1e-5)     # <pad x, y> = <x, crop y>


CASES = [  # (x shape, w shape, stride, pad)
    ((2, 3, 8, 8), (4, 3, 5, 5), (2, 2), (1, 2, 1, 2)),      # TF SAME k5 s2 on an even input
    ((1, 3, 7, 5), (2, 3, 3, 2), (1, 2), (0, 1, 2, 0)),      # asymmetric, rectangular
    ((2, 2, 6, 6), (3, 2, 3, 3), (1, 1), (1, 1, 1, 1)),      # symmetric: no explicit pad
]


@pytest.mark.parametrize("xs,ws,stride,pad", CASES)
def test_cudnn_passes_match_the_reference_with_explicit_padding(xs, ws, stride, pad):
    """The stand-in refuses pre != post like an engine without asymmetric support: every pass
    still equals the reference because the asymmetric part is an explicit pad/crop."""
    fake = FakeCudnn()
    B = cudnn_backend(fake)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y_ref = R.conv2d_fprop(x, w, b, stride, pad)
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no fallback to the kernels
        y = B.to_numpy(B.ops.conv2d_fprop(B.asarray(x), B.asarray(w), B.asarray(b), stride, pad))
        dx = B.to_numpy(B.ops.conv2d_dgrad(B.asarray(dy), B.asarray(w), xs, stride, pad))
        dw = B.to_numpy(B.ops.conv2d_wgrad(B.asarray(dy), B.asarray(x), ws, stride, pad))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, R.conv2d_dgrad(dy, w, xs, stride, pad), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, R.conv2d_wgrad(dy, x, ws, stride, pad), rtol=1e-4, atol=1e-4)
    assert not B.ops.cudnn.failed
    assert {k for k, _ in fake.executed} == {"fprop", "dgrad", "wgrad"}
    for g in fake.graphs:
        assert g.op[3] == g.op[4]                    # cuDNN only ever saw symmetric padding
        assert ("deselect_numeric_notes", (["TENSOR_CORE", "DOWN_CONVERT_INPUTS"],)) in g.calls


def test_native_asymmetric_padding_fails_over_to_the_kernels_once():
    """native_asymmetric=True hands pre != post to cuDNN; an engine that refuses it sends that
    shape to the kernels (one warning), with the reference's result."""
    fake = FakeCudnn(asymmetric=False)
    B = get_backend("emulated")
    cd = CudnnConv(B.ops.rt, cudnn_module=fake, native_asymmetric=True, choose="cudnn")
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 8)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((3, 2, 5, 5)).astype(np.float32)
    cudnn_conv._warned.clear()
    with pytest.warns(RuntimeWarning, match="pre_padding != post_padding"):
        y = B.to_numpy(cd.fprop(B.asarray(x), B.asarray(w), None, (2, 2), (1, 2, 1, 2)))
    np.testing.assert_allclose(y, R.conv2d_fprop(x, w, None, (2, 2), (1, 2, 1, 2)), rtol=1e-4, atol=1e-4)
    assert len(cd.failed) == 1 and set(cd.choices.values()) == {"kernels"}


def test_cudnn_step_is_captured_and_replays_like_eager():
    """A DCGAN step with every convolution through CudnnConv (stand-in): three graph steps give
    bit-identical metrics and weights to three eager steps, steady-state steps allocate nothing,
    the handle is bound to the runtime's stream before the capture, every execute uses the one
    workspace of the step's static memory, and the graph holds the cuDNN launches."""
    results = {}
    for mode in ("eager", "graph"):
        fake = FakeCudnn()
        B = cudnn_backend(fake)
        rt = B.ops.rt
        model = DCGAN(B, ngf=4, ndf=4, seed=0)
        step = TrainStep(model, 4, PhiloxState(0), g_steps=1, graph=mode == "graph")
        images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        step(images)                                   # warm-up: graphs built, buffers allocated
        binds_before = len(fake.streams)
        rt.reset_counters()
        losses = []
        for _ in range(3):
            step(images)
            losses.append(step.read_metrics())
        assert rt.counters()["allocations"] == 0
        assert {ws for _, ws in fake.executed[-10:]} == {
            step.memory._scratch[cudnn_conv.WORKSPACE_SLOT].data.ptr}
        assert rt.launches_by_name["cudnn_fprop"] > 0 and rt.launches_by_name["im2col"] == 0
        if mode == "graph":
            assert step.graph is not None and rt.counters()["graph_launches"] == 3
            assert len(fake.streams) == binds_before + 1     # bound once, just before capture
            assert step.graph.names["cudnn_wgrad"] > 0
        results[mode] = (losses, [B.to_numpy(p).copy() for net in (model.G, model.D)
                                for _, p, _ in net.named_params()])
    assert results["eager"][0] == results["graph"][0]
    for a, b in zip(results["eager"][1], results["graph"][1]):
        np.testing.assert_array_equal(a, b)


def test_a_graph_first_seen_inside_capture_is_refused():
    fake = FakeCudnn()
    B = cudnn_backend(fake)
    rt = B.ops.rt
    x = B.asarray(np.zeros((1, 1, 4, 4), np.float32))
    w = B.asarray(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(CaptureError, match="before capture|inside graph capture"):
        with rt.capture():
            B.ops.conv2d_fprop(x, w, None, (1, 1), (1, 1, 1, 1))


def test_auto_choice_uses_the_cost_model_without_a_gpu():
    """choose='auto' on the emulator picks per (pass, shape) by modelled_seconds (an ESTIMATE),
    and the choice is fixed afterwards; tf32 makes cuDNN's modelled time smaller."""
    fake = FakeCudnn()
    B = cudnn_backend(fake, choose="auto")
    cd = B.ops.cudnn
    x = B.asarray(np.zeros((64, 128, 16, 16), np.float32))
    w = B.asarray(np.zeros((256, 128, 5, 5), np.float32))
    key = ("fprop", (64, 128, 16, 16), (256, 128, 5, 5), (2, 2), (1, 2, 1, 2), "fp32")
    t = cudnn_conv.modelled_seconds("fprop", key[1], key[2], (2, 2), (1, 2, 1, 2), "fp32")
    with cd.rt.skip_execution():
        cd.fprop(x, w, None, (2, 2), (1, 2, 1, 2))
    assert cd.timings[key] == t and cd.choices[key] == ("cudnn" if t["cudnn"] <= t["kernels"] else "kernels")
    assert t["cudnn"] < t["kernels"]                  # an implicit GEMM moves no im2col columns
    t32 = cudnn_conv.modelled_seconds("fprop", key[1], key[2], (2, 2), (1, 2, 1, 2), "tf32")
    assert t32["cudnn"] < t["cudnn"]
    assert "modelled (ESTIMATE)" in cd.describe_choices()


def test_train_conv_impl_cudnn_runs_as_a_graph(tmp_path, monkeypatch, capsys):
    """python -m rawgan.train --conv-impl cudnn no longer forces eager steps: the TrainStep gets
    graph=True (the emulator has no cuDNN, so the convolutions fall back to the kernels with a
    warning), and its losses equal the --conv-impl kernels run's."""
    from PIL import Image

    import rawgan.models.step as step_mod
    from rawgan.data import ensure_prepared
    from rawgan.train import main as train_main

    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(raw / f"{i + 1:06d}.jpg")
    prepared = ensure_prepared("celeba", raw, out_dir=tmp_path / "prepared", workers=1, progress=False)
    graphs = []
    init = step_mod.TrainStep.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        graphs.append(self.use_graph)
    monkeypatch.setattr(step_mod.TrainStep, "__init__", spy)
    rows = {}
    for impl in ("cudnn", "kernels"):
        out = tmp_path / impl
        args = ["--data", "celeba", "--data-dir", str(raw), "--prepared-dir", str(prepared),
                "--out", str(out), "--ngf", "4", "--ndf", "4", "--batch-size", "4",
                "--backend", "emulated", "--conv-impl", impl, "--max-steps", "2", "--log-every", "1",
                "--sample-every", "100", "--checkpoint-every", "100", "--no-tensorboard"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert train_main(args) == 0, capsys.readouterr().err
        rows[impl] = (out / "metrics.jsonl").read_text().splitlines()
    assert graphs == [True, True]
    assert "runs eagerly" not in capsys.readouterr().out
    losses = {impl: [(json.loads(r)["d_loss"], json.loads(r)["g_loss"]) for r in rows[impl]]
              for impl in rows}
    assert len(losses["cudnn"]) == 2 and losses["cudnn"] == losses["kernels"]


def test_measurement_uses_only_installed_cupy_names():
    """The per-layer measurement on a GPU (CudnnConv._measure) uses CuPy 14's Event API."""
    cupy = pytest.importorskip("cupy")
    assert callable(cupy.cuda.Event) and callable(cupy.cuda.get_elapsed_time)
    for name in ("record", "synchronize"):
        assert callable(getattr(cupy.cuda.Event, name))
    assert "stream" in cupy.cuda.Event.record.__doc__.split("\n")[0]


@pytest.mark.parametrize("choose", ["cudnn", "kernels"])
def test_kept_cols_through_the_cudnn_dispatcher(choose):
    """fprop(keep_cols=True) returns (y, cols): cols = None where cuDNN ran the pass (it builds
    none), the kernels' im2col(x) where they did; the wgrad takes either and gives the
    reference's dw (the kernels' wgrad with the given cols launches no im2col); Conv2d trains
    through both."""
    from rawgan.backend.reference import conv as reference_conv
    from rawgan.layers import Conv2d

    xs, ws, stride, pad = CASES[0]
    fake = FakeCudnn()
    B = cudnn_backend(fake, choose=choose)
    rt = B.ops.rt
    rng = np.random.default_rng(15)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    y, cols = B.ops.conv2d_fprop(B.asarray(x), B.asarray(w), None, stride, pad, keep_cols=True)
    np.testing.assert_allclose(B.to_numpy(y), R.conv2d_fprop(x, w, None, stride, pad), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    if choose == "cudnn":
        assert cols is None
    else:
        np.testing.assert_array_equal(B.to_numpy(cols), reference_conv.im2col(x, ws, stride, pad))
    before = rt.launches_by_name["im2col"]
    dw = B.ops.conv2d_wgrad(B.asarray(dy), B.asarray(x), ws, stride, pad, cols=cols)
    assert rt.launches_by_name["im2col"] == before              # neither side rebuilds them
    np.testing.assert_allclose(B.to_numpy(dw), R.conv2d_wgrad(dy, x, ws, stride, pad), rtol=1e-4, atol=1e-4)
    conv = Conv2d(B, xs[1], ws[0], ws[2], stride[0], "same", rng=np.random.default_rng(2))
    conv.forward(B.asarray(x))
    assert (conv.cols is None) == (choose == "cudnn")
    conv.backward(B.asarray(rng.standard_normal(conv.output_shape(xs)).astype(np.float32)))
    assert conv.cols is None
