"""The device-resident training step (rawgan.models.step) on the emulated CUDA backend: static
memory, device-side state, and one captured graph per step replayed by the emulator.

* K graph-replayed steps are bit-identical to K eager steps from the same state (metrics,
  weights, gradients, Adam m/v/t, BN running statistics, the z stream) — and a host value frozen
  into the graph (Adam's t as a kernel argument) makes exactly this comparison fail.
* After the warm-up step a step allocates nothing; a graph step is one graph launch.
* Each window matrix is built once per step (im2col launches: Conv2d forwards keep their cols
  for the wgrad, ConvTranspose2d backwards share im2col(dy) between dgrad and wgrad).
* Inside capture every forbidden action raises CaptureError at once.
* The new kernels (kernels/tensor.cu, the device-state kernels of adam.cu and rng.cu) match
  their NumPy references under both emulator schedules; rt.gemm handles transposed operands.
* The CuPy entry points runtime.py uses exist in the installed CuPy 14 (it imports without a GPU),
  and the cuBLAS call maps row-major operands onto column-major cuBLAS correctly (a stand-in
  cublasGemmEx that implements cuBLAS's contract on the raw pointers — in Python, and compiled C
  behind the real ctypes declarations), with the compute type of the chosen precision.
* python -m rawgan.train --backend emulated: graph == --no-graph, and resume restores the device
  state (Adam t, z offset) exactly.

The model is the DCGAN at image_size 16 with ngf = ndf = 4 so a step takes well under a second.
"""
import numpy as np
import pytest

from rawgan.backend import PhiloxState, get_backend
from rawgan.backend import reference as R
from rawgan.models.dcgan import DCGAN
from rawgan.models.step import TrainStep
from rawgan.runtime import CaptureError, StaticMemory

EM = get_backend("emulated")
NP = get_backend("numpy")
N, SIZE = 4, 16


@pytest.fixture(scope="module")
def dut():
    """The backend under test (tests/test_gpu.py reruns these tests with get_backend("cupy"))."""
    return EM


@pytest.fixture(params=["forward", "reverse"])
def schedule(request, monkeypatch):
    monkeypatch.setenv("RAWGAN_EMU_SCHEDULE", request.param)
    return request.param


def batches(k, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(k)]


def make_step(B, graph, z_dist="uniform", g_steps=2):
    model = DCGAN(B, ngf=4, ndf=4, image_size=SIZE, seed=1)
    return TrainStep(model, N, PhiloxState(5), z_dist=z_dist, g_steps=g_steps, graph=graph,
                     image_shape=(SIZE, SIZE, 3))


def state(step):
    """Everything a step changes, as host arrays."""
    B, m = step.B, step.model
    out = {"G": B.to_numpy(m.G.flat_params), "D": B.to_numpy(m.D.flat_params),
           "dG": B.to_numpy(m.G.flat_grads), "dD": B.to_numpy(m.D.flat_grads),
           "z": B.to_numpy(step.z), "x": B.to_numpy(step.x),
           "z_offset": step.z_gen.offset}
    for name, opt in (("G", m.opt_G), ("D", m.opt_D)):
        out[f"m{name}"], out[f"v{name}"], out[f"t{name}"] = B.to_numpy(opt.m), B.to_numpy(opt.v), opt.t
    for net_name, net in (("G", m.G), ("D", m.D)):
        for k, buf in net.named_buffers():
            out[f"{net_name}.{k}"] = B.to_numpy(buf)
    return out


def run(step, data):
    metrics = []
    for images in data:
        step(images)
        metrics.append(step.read_metrics())
    return metrics


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("z_dist,g_steps", [("uniform", 2), ("normal", 1)])
def test_graph_steps_are_bit_identical_to_eager_steps(z_dist, g_steps, dut):
    data = batches(3)
    eager, graph = make_step(dut, False, z_dist, g_steps), make_step(dut, True, z_dist, g_steps)
    m_eager, m_graph = run(eager, data), run(graph, data)
    assert graph.graph is not None and eager.graph is None
    assert m_eager == m_graph                      # floats compared exactly, every step
    s_eager, s_graph = state(eager), state(graph)
    assert_identical(s_eager, s_graph)
    assert s_graph["tD"] == 3 and s_graph["tG"] == 3 * g_steps
    assert s_graph["z_offset"] == 3 * N * 100
    # The steps really trained: the metrics move and the running statistics left their init.
    assert m_graph[0]["d_loss"] != m_graph[2]["d_loss"]
    assert not np.array_equal(s_graph["G.2.running_mean"], np.zeros_like(s_graph["G.2.running_mean"]))


def test_device_step_matches_the_numpy_backend(dut):
    """The same pipeline (uint8 upload, conversion, device z, Adam t on the device) on NumPy."""
    data = batches(2, seed=3)
    em, ref = make_step(dut, True), make_step(NP, True)
    m_em, m_ref = run(em, data), run(ref, data)
    assert ref.graph is None                       # no graph without a CUDA runtime
    for a, b in zip(m_em, m_ref):
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)],
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(state(em)["x"], state(ref)["x"])          # exact conversion
    np.testing.assert_array_equal(state(em)["z"], state(ref)["z"])          # exact uniform z
    assert state(em)["tD"] == state(ref)["tD"] == 2


def test_a_host_value_frozen_into_the_graph_is_caught(monkeypatch, dut):
    """Control for the bit-identity test: Adam with its step count as a host kernel argument
    (the old adam_update) gives the same eager steps but a graph that replays t = 2 forever."""
    data = batches(3)

    def host_t_adam(step):
        ops = step.B.ops
        counter = {}

        def adam_step(p, g, m, v, t, lr, beta1, beta2, eps):
            counter[id(t)] = counter.get(id(t), 0) + 1
            ops.adam_update(p, g, m, v, counter[id(t)], lr, beta1, beta2, eps)
        return adam_step

    runs = []
    for graph in (False, True):
        step = make_step(dut, graph)
        monkeypatch.setattr(step.B.ops, "adam_step", host_t_adam(step))
        runs.append((run(step, data), state(step)))
        monkeypatch.undo()
    (m_eager, s_eager), (m_graph, s_graph) = runs
    assert m_eager[:2] == m_graph[:2]              # warm-up and the captured step agree
    assert not np.array_equal(s_eager["G"], s_graph["G"])   # the replay used a frozen t


def test_steady_state_allocates_nothing_and_a_graph_step_is_one_launch(dut):
    data = batches(4)
    per_step = {}
    for graph in (False, True):
        step = make_step(dut, graph)
        rt = step.rt
        counts = []
        for images in data:
            rt.reset_counters()
            step(images)
            counts.append(rt.counters())
        per_step[graph] = counts
        assert counts[0]["allocations"] > 0        # the warm-up step allocates the buffers
        for c in counts[1:]:
            assert c["allocations"] == 0 and c["allocated_bytes"] == 0
            assert c["graph_launches"] == (1 if graph else 0)
        assert step.memory.nbytes > 0
    eager, graph = per_step[False], per_step[True]
    # The graph replays exactly the eager step's launches.
    assert [c["launches"] for c in graph] == [c["launches"] for c in eager]
    assert eager[1]["launches"] > 150            # a whole step (~200 launches at g_steps 2, ngf 4)


@pytest.mark.parametrize("g_steps", [1, 2])
def test_each_window_matrix_is_built_once_per_step(g_steps, dut):
    """im2col launches per step: one per Conv2d forward (its wgrad reuses the kept cols) and one
    per ConvTranspose2d backward (dgrad and wgrad share im2col(dy)). The DCGAN (4 + 4 layers):
    4 for D's one pass over the real and fake batch + g_steps·(4 D forwards + 4 G backwards) =
    12 / 20 — it was 16 / 24 with separate real and fake passes and 28 / 40 when every wgrad built
    its cols again. D during the G update keeps no cols."""
    from rawgan.layers import Conv2d, ConvTranspose2d

    step = make_step(dut, False, g_steps=g_steps)
    rt, m = step.rt, step.model
    convs = sum(isinstance(l, Conv2d) for l in m.D.layers)
    convts = sum(isinstance(l, ConvTranspose2d) for l in m.G.layers)
    assert (convs, convts) == (4, 4)
    data = batches(2)
    step(data[0])                                   # warm-up
    rt.reset_counters()
    step(data[1])
    assert rt.launches_by_name["im2col"] == convs + g_steps * (convs + convts)
    assert rt.launches_by_name["im2col"] == {1: 12, 2: 20}[g_steps]
    assert all(l.cols is None for l in m.D.layers if isinstance(l, Conv2d))   # none left held


def test_capture_forbidden_actions_raise():
    step = make_step(EM, True)
    data = batches(2)
    step(data[0])                                   # warm-up
    rt, B, xp = step.rt, step.B, step.rt.xp
    x = step.x
    w = step.model.D.layers[-1].params["w"]            # (1, F)
    forbidden = [
        ("host sync", rt.synchronize),
        ("host read", lambda: B.to_numpy(x)),
        ("ndarray.get()", lambda: x.get()),
        ("Python float of device data", lambda: float(step.metrics["d_loss"])),
        ("allocation", lambda: rt.empty((3,), np.float32)),
        ("allocation (backend)", lambda: B.ops.relu_forward(x)),
        ("allocation (xp)", lambda: xp.zeros(3, dtype=np.float32)),
        ("cupy.matmul", lambda: xp.matmul(w, w.T)),
        ("elementwise temporary", lambda: x * 2),
        ("synchronous copy (upload)", lambda: rt.upload(step.images, data[1])),
        ("synchronous copy (set)", lambda: step.images.set(data[1])),
        ("synchronous copy (asarray)", lambda: xp.asarray(data[1])),
        ("nested capture", lambda: rt.capture().__enter__()),
    ]
    for what, action in forbidden:
        with pytest.raises(CaptureError):
            with rt.capture():
                action()
        assert not rt.capturing, what
    # A step whose buffers were not allocated before capture fails on its first allocation.
    fresh = make_step(EM, True)
    with pytest.raises(CaptureError, match="allocation"):
        with rt.capture():
            with rt.static_memory(StaticMemory(rt)):
                fresh._body()
    assert not rt.capturing
    # ... and the warmed-up step captures fine afterwards.
    step(data[1])
    assert step.graph is not None and step.graph.num_launches > 150


def test_capture_records_instead_of_running():
    rt = EM.ops.rt
    a = rt.xp.zeros(5, dtype=np.float32)
    with rt.capture() as graph:
        EM.ops.fill(a, 2.0)
    np.testing.assert_array_equal(EM.to_numpy(a), np.zeros(5, np.float32))   # not run yet
    assert graph.num_launches == 1
    graph.launch()
    np.testing.assert_array_equal(EM.to_numpy(a), np.full(5, 2.0, np.float32))


def test_static_memory_reuses_buffers_in_request_order():
    rt = EM.ops.rt
    mem = StaticMemory(rt)
    with rt.static_memory(mem):
        a, b, s = rt.empty((2, 3)), rt.empty((4,), np.int64), rt.scratch("cols", (10,))
    with rt.static_memory(mem):
        a2, b2, s2 = rt.empty((2, 3)), rt.empty((4,), np.int64), rt.scratch("cols", (2, 5))
        c = rt.empty((7,))                          # a new request: a new buffer
    assert a2 is a and b2 is b and c is not a and s2.shape == (2, 5)
    assert np.shares_memory(s, s2)
    with rt.static_memory(mem):
        a3 = rt.empty((3, 2))                       # a different shape replaces buffer 0
    assert a3 is not a and mem.buffers[0] is a3
    with rt.static_memory(mem):                     # 0-d float32: views into one block
        s0, s1 = rt.empty(()), rt.empty((), np.float32)
    assert s0.shape == () and mem.scalar_index(s0) == 0 and mem.scalar_index(s1) == 1
    assert mem.scalar_index(a3) is None and mem.scalars.shape == (StaticMemory.SCALARS,)


def test_log_step_reads_all_metrics_with_one_copy():
    from rawgan.runtime import devarray

    step = make_step(EM, True)
    for images in batches(2):
        step(images)
    syncs = []
    devarray.HOST_SYNC_HOOKS.append(syncs.append)
    try:
        host = step.read_metrics()
    finally:
        devarray.HOST_SYNC_HOOKS.remove(syncs.append)
    assert len(syncs) == 1 and len(host) == 7
    assert host == {k: float(v.get()) for k, v in step.metrics.items()}
    assert abs(host["d_loss"] - (host["d_loss_real"] + host["d_loss_fake"])) < 1e-6


# ------------------------------------------------------------------------------- kernels
def test_tensor_kernels_match_reference(schedule, dut):
    rng = np.random.default_rng(4)
    ops = dut.ops
    for n in (1, 255, 257, 3000):
        a = rng.standard_normal(n).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        want = R.accumulate(a.copy(), b)
        dst = dut.asarray(a.copy())
        ops.accumulate(dst, dut.asarray(b))
        np.testing.assert_array_equal(dut.to_numpy(dst), want)
        ops.fill(dst, -1.5)
        np.testing.assert_array_equal(dut.to_numpy(dst), np.full(n, -1.5, np.float32))
        logits = (rng.standard_normal((n, 1)) * 30).astype(np.float32)
        np.testing.assert_allclose(float(dut.to_numpy(ops.sigmoid_mean(dut.asarray(logits)))),
                                   float(R.sigmoid_mean(logits)), rtol=2e-6)
    s = ops.scalar_add(dut.asarray(np.float32(1.25)), dut.asarray(np.float32(-3.5)))
    assert dut.to_numpy(s).shape == () and float(dut.to_numpy(s)) == -2.25
    for shape in ((1, 1, 1, 1), (3, 5, 7, 3), (2, 64, 64, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        img.flat[0], img.flat[-1] = 0, 255
        got = dut.to_numpy(ops.images_to_float(dut.asarray(img, dtype=np.uint8)))
        from rawgan.data.loader import to_float_nchw
        np.testing.assert_array_equal(got, R.images_to_float(img))
        np.testing.assert_array_equal(got, to_float_nchw(img))     # the loader's own math
    with pytest.raises(ValueError, match="uint8"):
        ops.images_to_float(dut.asarray(np.zeros((1, 2, 2, 3))))


def test_adam_step_keeps_t_on_the_device_and_matches_reference(schedule, dut):
    rng = np.random.default_rng(5)
    n = 1000
    p, m, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    ref = [p.copy(), m.copy(), v.copy(), np.zeros(1, np.int64)]
    dev = [dut.asarray(p.copy()), dut.asarray(m.copy()), dut.asarray(v.copy()),
           dut.asarray(np.zeros(1, np.int64), dtype=np.int64)]
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        R.adam_step(ref[0], g, ref[1], ref[2], ref[3], 2e-4, 0.5, 0.999, 1e-8)
        dut.ops.adam_step(dev[0], dut.asarray(g), dev[1], dev[2], dev[3], 2e-4, 0.5, 0.999, 1e-8)
    for r, d in zip(ref, dev):
        np.testing.assert_array_equal(dut.to_numpy(d), r)
    assert int(dut.to_numpy(dev[3])[0]) == 3


def test_philox_next_draws_continue_the_stream_on_the_device(schedule, dut):
    for draw, ref_next, ref_plain, exact in (
            ("uniform", R.philox_uniform_next, R.philox_uniform, True),
            ("normal", R.philox_normal_next, R.philox_normal, False)):
        seed = 0x1234_5678_9ABC
        off = dut.asarray(np.array([2**32 - 3], np.uint64), dtype=np.uint64)   # crosses 2^32
        off_ref = np.array([2**32 - 3], np.uint64)
        fn = getattr(dut.ops, f"philox_{draw}_next")
        for n in (1, 300, 7):
            got = dut.to_numpy(fn(n, seed, off, -1.0, 1.0, np.float32))
            want = ref_next(n, seed, off_ref, -1.0, 1.0, np.float32)
            plain = ref_plain(n, seed, int(off_ref[0]) - n, -1.0, 1.0, np.float32)
            np.testing.assert_array_equal(want, plain)
            if exact:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            assert int(dut.to_numpy(off)[0]) == int(off_ref[0])
    # A PhiloxState bound to the device gives the same numbers as the host stream.
    g_host, g_dev = PhiloxState(9), PhiloxState(9)
    g_dev.bind(dut)
    for _ in range(2):
        np.testing.assert_array_equal(dut.to_numpy(dut.uniform(g_dev, (3, 5))),
                                      NP.uniform(g_host, (3, 5)))
    assert g_dev.offset == g_host.offset == 30
    g_dev.offset = 5
    assert g_dev.offset == 5 and int(dut.to_numpy(g_dev.device_offset(dut))[0]) == 5


def test_gemm_takes_transposed_operands_and_checks_shapes(dut):
    rt = dut.ops.rt
    rng = np.random.default_rng(6)
    a_h = rng.standard_normal((5, 3)).astype(np.float32)
    b_h = rng.standard_normal((4, 3)).astype(np.float32)
    a, b = dut.asarray(a_h), dut.asarray(b_h)
    out = dut.empty((5, 4))
    rt.gemm(a, b.T, out)
    np.testing.assert_allclose(dut.to_numpy(out), a_h @ b_h.T, rtol=1e-5)
    out2 = dut.empty((3, 3))
    rt.gemm(a.T, a, out2)
    np.testing.assert_allclose(dut.to_numpy(out2), a_h.T @ a_h, rtol=1e-5)
    out3 = dut.empty((4, 5))
    rt.gemm(b, a.T, out3)                               # both operands transposed views
    np.testing.assert_allclose(dut.to_numpy(out3), b_h @ a_h.T, rtol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        rt.gemm(a, b, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        rt.gemm(a, b.T, dut.empty((4, 5)).T)
    rt.gemm(a, b.T, out, beta=1.0)                      # accumulate: a gradient's second pass
    np.testing.assert_allclose(dut.to_numpy(out), 2 * (a_h @ b_h.T), rtol=1e-5)
    with pytest.raises(ValueError, match="beta must be 0 or 1"):
        rt.gemm(a, b.T, out, beta=0.5)


# ------------------------------------------------------------------------------- CuPy surface
def test_cupy_entry_points_of_the_runtime_exist():
    """Every CuPy API that runtime.py calls on a GPU, resolved against the installed CuPy."""
    import inspect
    import pathlib
    import re

    cupy = pytest.importorskip("cupy")
    Stream = cupy.cuda.Stream
    for name in ("begin_capture", "end_capture", "is_capturing", "use", "synchronize"):
        assert hasattr(Stream, name), name
    assert isinstance(Stream.null.ptr, int)
    assert "non_blocking" in (Stream.__init__.__doc__ or "") + (Stream.__doc__ or "")
    assert "stream" in cupy.cuda.Graph.launch.__doc__.split("\n")[0]
    for name in ("set_allocator", "Device", "Graph", "RawModule"):
        assert hasattr(cupy.cuda, name) or hasattr(cupy, name), name
    assert hasattr(cupy.cuda.Device, "synchronize")
    assert hasattr(cupy.get_default_memory_pool(), "malloc")
    assert "stream" in cupy.ndarray.set.__doc__.split("\n")[0]
    assert "stream" in cupy.ndarray.get.__doc__.split("\n")[0]
    assert hasattr(cupy.ndarray, "data") and hasattr(cupy.cuda.MemoryPointer, "ptr")
    # cuBLAS symbols called through ctypes: CuPy's own cuBLAS extension links the same names.
    ext = next(pathlib.Path(inspect.getfile(cupy)).parent.parent.glob(
        "cupy_backends/cuda/libs/cublas.*.so"))
    data = ext.read_bytes()
    for sym in (b"cublasCreate_v2", b"cublasSetStream_v2", b"cublasGemmEx",
                b"cublasGemmStridedBatchedEx",
                b"CUBLAS_COMPUTE_32F", b"CUBLAS_COMPUTE_32F_FAST_TF32", b"CUBLAS_GEMM_DEFAULT"):
        assert sym in data, sym
    src = pathlib.Path(__file__).parents[1].joinpath("rawgan/runtime/runtime.py").read_text()
    used = set(re.findall(r"\bcublas(?:\w+_v2|GemmEx|GemmStridedBatchedEx)\b", src))
    assert used == {"cublasCreate_v2", "cublasSetStream_v2", "cublasGemmEx", "cublasSetWorkspace_v2",
                    "cublasGemmStridedBatchedEx"}
    # cublasGemmEx's parameter order, as CuPy's wrapper declares it, is what runtime._declare uses.
    doc = re.search(rb"gemmEx\(intptr_t handle, [^)]*\)", data).group(0).decode()
    params = [p.split()[-1] for p in doc[len("gemmEx("):-1].split(", ")]
    assert params == ["handle", "transa", "transb", "m", "n", "k", "alpha", "A", "Atype", "lda",
                      "B", "Btype", "ldb", "beta", "C", "Ctype", "ldc", "computeType", "algo"]
    doc = re.search(rb"gemmStridedBatchedEx\(intptr_t handle, [^)]*\)", data).group(0).decode()
    params = [p.split()[-1] for p in doc[len("gemmStridedBatchedEx("):-1].split(", ")]
    assert params == ["handle", "transa", "transb", "m", "n", "k", "alpha", "A", "Atype", "lda",
                      "strideA", "B", "Btype", "ldb", "strideB", "beta", "C", "Ctype", "ldc",
                      "strideC", "batchCount", "computeType", "algo"]


# ------------------------------------------------------------------------------- train CLI
@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """8 random 178x218 JPEGs, prepared: (raw dir, prepared dir)."""
    from PIL import Image

    from rawgan.data import ensure_prepared

    raw = tmp_path_factory.mktemp("step_tiny") / "raw"
    raw.mkdir()
    rng = np.random.default_rng(2)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            raw / f"{i + 1:06d}.jpg", quality=90)
    return raw, ensure_prepared("celeba", raw, out_dir=raw.parent / "prepared", workers=1,
                                progress=False)


def test_train_graph_equals_no_graph_and_resumes_device_state(tiny_images, tmp_path, capsys):
    """python -m rawgan.train --backend emulated: the graph run's losses equal --no-graph's, and a
    graph run resumed from its step-2 checkpoint (Adam t and the z offset written back to the
    device) continues exactly like the straight run."""
    from rawgan.train import main as train_main

    raw, prepared = tiny_images

    def train(out, *extra):
        args = ["--data", "celeba", "--data-dir", str(raw), "--prepared-dir", str(prepared),
                "--out", str(out), "--ngf", "4", "--ndf", "4", "--batch-size", "4",
                "--backend", "emulated", "--log-every", "1", "--sample-every", "100",
                "--checkpoint-every", "2", "--no-tensorboard", *extra]
        assert train_main(args) == 0, capsys.readouterr().err
        return train_rows(out)

    from rawgan import checkpoint as ckpt_io

    straight = train(tmp_path / "graph", "--max-steps", "4")          # default: --precision tf32
    assert "precision: tf32 (GEMMs and convolutions; the emulator computes FP32" in capsys.readouterr().out
    eager = train(tmp_path / "eager", "--max-steps", "2", "--no-graph", "--precision", "fp32")
    assert EM.ops.rt.precision == "fp32"
    assert eager == straight[:2]           # the emulator computes FP32 whatever the precision
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    rows = train(resumed, "--resume", str(tmp_path / "graph" / "checkpoints" / "ckpt_000002.npz"),
                 "--max-steps", "4", "--precision", "fp32")        # per invocation: may change
    assert [r["step"] for r in rows] == [3, 4]
    assert rows == straight[2:]
    config = {run: ckpt_io.load_checkpoint(tmp_path / run / "checkpoints" / ckpt)["extra"]["config"]
              for run, ckpt in (("graph", "ckpt_000004.npz"), ("eager", "ckpt_000002.npz"),
                                ("resumed", "ckpt_000004.npz"))}
    assert {run: c["precision"] for run, c in config.items()} == \
        {"graph": "tf32", "eager": "fp32", "resumed": "fp32"}


def train_rows(run):
    """The losses of each logged step of a run's metrics.jsonl."""
    import json
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in ("step", "d_loss", "g_loss", "d_real", "d_fake_g")} for r in rows]


def test_cublas_call_maps_row_major_operands_to_column_major_gemm_ex():
    """The GPU's GEMM call, checked on the CPU: runtime._Cublas.gemm_rowmajor drives a
    stand-in cublasGemmEx that implements cuBLAS's column-major contract on the raw pointers
    (op, m, n, k, lda, ldb, ldc), for every combination of plain and transposed operands, with
    FP32 operand types and the compute type of the precision (68 = CUBLAS_COMPUTE_32F for fp32,
    77 = CUBLAS_COMPUTE_32F_FAST_TF32 for tf32; cublas_api.h) and CUBLAS_GEMM_DEFAULT (-1)."""
    import ctypes

    from numpy.lib.stride_tricks import as_strided

    from rawgan.runtime.runtime import _Cublas

    def colmajor(ptr, rows, cols, ld):
        assert ld >= max(1, rows)
        n = (cols - 1) * ld + rows
        buf = np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))
        return as_strided(buf, shape=(rows, cols), strides=(4, 4 * ld))

    calls = []

    class FakeCublas:
        @staticmethod
        def cublasGemmEx(handle, ta, tb, m, n, k, alpha, A, a_type, lda, B, b_type, ldb, beta,
                         C, c_type, ldc, compute, algo):
            calls.append((ta, tb, m, n, k, lda, ldb, ldc, a_type, b_type, c_type, compute, algo))
            a = colmajor(A.value, *((m, k) if ta == 0 else (k, m)), lda)
            b = colmajor(B.value, *((k, n) if tb == 0 else (n, k)), ldb)
            c = colmajor(C.value, m, n, ldc)
            op_a, op_b = (a if ta == 0 else a.T), (b if tb == 0 else b.T)
            product = alpha._obj.value * (op_a @ op_b)
            c[...] = product if beta._obj.value == 0 else product + beta._obj.value * c  # beta 0: C unread
            return 0

    blas = _Cublas.__new__(_Cublas)
    blas._lib, blas.handle = FakeCublas, ctypes.c_void_p(1)
    blas._one, blas._zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    rng = np.random.default_rng(8)
    xp = EM.xp
    M, K, N = 5, 3, 4
    for precision, compute in (("fp32", 68), ("tf32", 77)):
        calls.clear()
        for a_t in (False, True):
            for b_t in (False, True):
                a_h = rng.standard_normal((M, K)).astype(np.float32)
                b_h = rng.standard_normal((K, N)).astype(np.float32)
                a = xp.asarray(np.ascontiguousarray(a_h.T)).T if a_t else xp.asarray(a_h)
                b = xp.asarray(np.ascontiguousarray(b_h.T)).T if b_t else xp.asarray(b_h)
                out = xp.full((M, N), np.nan, dtype=np.float32)
                blas.gemm_rowmajor(a, b, out, precision)
                np.testing.assert_allclose(out.get(), a_h @ b_h, rtol=1e-5, atol=1e-6)
                blas.gemm_rowmajor(a, b, out, precision, beta=1.0)   # beta 1: C read, added to
                np.testing.assert_allclose(out.get(), 2 * (a_h @ b_h), rtol=1e-5, atol=1e-6)
        assert {c[:2] for c in calls} == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert {c[8:] for c in calls} == {(0, 0, 0, compute, -1)}     # CUDA_R_32F = 0


def test_rt_gemm_passes_the_runtime_precision_to_cublas():
    """rt.gemm on the cupy runtime hands its precision to the cuBLAS call (a stand-in _Cublas on a
    Runtime built without a GPU), records it in the launch records, and set_precision refuses a
    bad value and a change inside capture."""
    import contextlib

    from rawgan.runtime import CaptureError, Runtime

    seen = []

    class StandInBlas:
        def gemm_rowmajor(self, a, b, out, precision="fp32", beta=0.0):
            seen.append(precision)
            out[...] = np.asarray(a) @ np.asarray(b)

    rt = Runtime.__new__(Runtime)
    rt.__dict__.update(EM.ops.rt.__dict__)
    rt.kind, rt.stream, rt._cublas = "cupy", contextlib.nullcontext(), StandInBlas()
    rt.launches_by_name = rt.launches_by_name.copy()
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    out = np.zeros((2, 4), np.float32)
    assert rt.precision == "fp32"
    with rt.record_launches() as records:
        rt.gemm(a, b, out)
        rt.set_precision("tf32")
        rt.gemm(a, b, out)
    assert seen == ["fp32", "tf32"]
    assert [(r.name, r.kind, r.precision, r.flops) for r in records] == \
        [("gemm", "gemm", "fp32", 48.0), ("gemm", "gemm", "tf32", 48.0)]
    assert records[0].nbytes == 4 * (6 + 12 + 8)
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0, np.float32))
    with pytest.raises(ValueError, match="precision must be one of"):
        rt.set_precision("fp16")
    rt.capturing = True
    with pytest.raises(CaptureError, match="precision"):
        rt.set_precision("fp32")


def test_reduction_workspaces_belong_to_the_step_memory():
    """The 2-D reductions' partial sums come from the step's StaticMemory while one is active, so
    a captured graph never points at the shared workspace cache (which grows for other sizes)."""
    from rawgan.backend.cuda import common

    rt = EM.ops.rt
    mem = StaticMemory(rt)
    with rt.static_memory(mem):
        part = common.workspace_f32(rt, "batchnorm", 100)
    assert part.shape == (100,) and part.dtype == np.float32
    assert np.shares_memory(part, mem._scratch["batchnorm"])
    outside = common.workspace_f32(rt, "batchnorm", 100)
    assert not np.shares_memory(outside, mem._scratch["batchnorm"])


STANDIN_CUBLAS_C = r"""
#include <stddef.h>
static int last_compute = -1, last_algo = 0, last_types = -1;
int cublasCreate_v2(void **h) { *h = (void *)1; return 0; }
int cublasSetStream_v2(void *h, void *s) { return 0; }
int cublasSetWorkspace_v2(void *h, void *w, size_t n) { return 0; }
/* cuBLAS's column-major contract: C = alpha op(A) op(B) + beta C (FP32 operands). */
int cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A,
                 int at, int lda, const void *B, int bt, int ldb, const void *beta, void *C,
                 int ct, int ldc, int compute, int algo)
{
    const float *a = (const float *)A, *b = (const float *)B;
    float *c = (float *)C, al = *(const float *)alpha, be = *(const float *)beta;
    last_compute = compute; last_algo = algo; last_types = at * 10000 + bt * 100 + ct;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            float s = 0.0f;
            for (int p = 0; p < k; ++p)
                s += (ta ? a[p + i * lda] : a[i + p * lda]) * (tb ? b[j + p * ldb] : b[p + j * ldb]);
            c[i + j * ldc] = al * s + (be != 0.0f ? be * c[i + j * ldc] : 0.0f);
        }
    return 0;
}
int cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha,
                               const void *A, int at, int lda, long long sa, const void *B, int bt,
                               int ldb, long long sb, const void *beta, void *C, int ct, int ldc,
                               long long sc, int batch, int compute, int algo)
{
    for (int i = 0; i < batch; ++i)
        cublasGemmEx(h, ta, tb, m, n, k, alpha, (const float *)A + i * sa, at, lda,
                     (const float *)B + i * sb, bt, ldb, beta, (float *)C + i * sc, ct, ldc,
                     compute, algo);
    return 0;
}
int standin_last_compute(void) { return last_compute; }
int standin_last_algo(void) { return last_algo; }
int standin_last_types(void) { return last_types; }
"""


def test_cublas_gemm_ex_through_ctypes_with_a_compiled_stand_in(tmp_path):
    """The real ctypes path of the GPU's GEMM: runtime._declare's argtypes and _Cublas's call
    convert every argument (19 of them, pointers by address, alpha/beta by reference) into a
    compiled C stand-in of libcublas with cuBLAS's signature, which computes the column-major
    product and remembers the compute type: a wrong arity, order or type shows up here."""
    import ctypes
    import shutil
    import subprocess

    from rawgan.runtime.runtime import _Cublas, _declare

    cxx = shutil.which("cc") or shutil.which("gcc")
    if cxx is None:
        pytest.skip("no C compiler")
    src, lib_path = tmp_path / "cublas_standin.c", tmp_path / "libcublas_standin.so"
    src.write_text(STANDIN_CUBLAS_C)
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", str(src), "-o", str(lib_path)], check=True)
    lib = _declare(ctypes.CDLL(str(lib_path)))
    blas = _Cublas.__new__(_Cublas)
    blas._lib, blas.handle = lib, ctypes.c_void_p()
    assert lib.cublasCreate_v2(ctypes.byref(blas.handle)) == 0
    blas._one, blas._zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    xp = EM.xp
    rng = np.random.default_rng(9)
    a_h = rng.standard_normal((6, 4)).astype(np.float32)
    b_h = rng.standard_normal((4, 5)).astype(np.float32)
    for precision, compute in (("fp32", 68), ("tf32", 77)):
        for a in (xp.asarray(a_h), xp.asarray(np.ascontiguousarray(a_h.T)).T):
            out = xp.full((6, 5), np.nan, dtype=np.float32)
            blas.gemm_rowmajor(a, xp.asarray(b_h), out, precision)
            np.testing.assert_allclose(out.get(), a_h @ b_h, rtol=1e-5, atol=1e-6)
            assert lib.standin_last_compute() == compute and lib.standin_last_algo() == -1
            assert lib.standin_last_types() == 0                    # CUDA_R_32F for A, B and C
    # the batched call through the same ctypes path: y[n] = W @ cols[:, n] into NCHW (strided B)
    N, K, CRS, PQ = 3, 4, 6, 5
    w = rng.standard_normal((K, CRS)).astype(np.float32)
    cols = rng.standard_normal((CRS, N * PQ)).astype(np.float32)
    y = xp.full((N, K, PQ), np.nan, dtype=np.float32)
    blas.gemm_strided_batched_rowmajor(xp.asarray(w), xp.asarray(cols).reshape(CRS, N, PQ)
                                       .transpose(1, 0, 2), y, "tf32")
    np.testing.assert_allclose(y.get(), np.stack([w @ cols[:, n * PQ:(n + 1) * PQ] for n in range(N)]),
                               rtol=1e-5, atol=1e-5)
    assert lib.standin_last_compute() == 77


def test_cublas_strided_batched_call_reads_and_writes_nchw_views():
    """The batched GEMM of conv fprop/dgrad, checked on the CPU like the plain one: a stand-in
    cublasGemmStridedBatchedEx with cuBLAS's column-major contract (op, m, n, k, ld*, stride*,
    batch, compute type) on the raw pointers, driven by _Cublas.gemm_strided_batched_rowmajor with the views
    rawgan/backend/cuda/conv.py passes: y[n] = W @ cols[:, n] (B a strided view, out NCHW) and
    dcols[:, n] = Wᵀ @ dy[n] (A transposed, out a strided view); beta 0 and 1. The emulator's
    rt.gemm on the same views is checked too."""
    import ctypes

    from numpy.lib.stride_tricks import as_strided

    from rawgan.runtime.runtime import _Cublas

    def colmajor(ptr, rows, cols, ld, batch, stride):
        assert ld >= max(1, rows)
        n = (batch - 1) * stride + (cols - 1) * ld + rows
        buf = np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))
        return as_strided(buf, shape=(batch, rows, cols), strides=(4 * stride, 4, 4 * ld))

    class FakeCublas:
        @staticmethod
        def cublasGemmStridedBatchedEx(handle, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb,
                                       sb, beta, C, ct, ldc, sc, batch, compute, algo):
            assert (at, bt, ct, algo) == (0, 0, 0, -1) and compute in (68, 77)
            a = colmajor(A.value, *((m, k) if ta == 0 else (k, m)), lda, batch, sa.value)
            b = colmajor(B.value, *((k, n) if tb == 0 else (n, k)), ldb, batch, sb.value)
            c = colmajor(C.value, m, n, ldc, batch, sc.value)
            op_a = a if ta == 0 else a.transpose(0, 2, 1)
            op_b = b if tb == 0 else b.transpose(0, 2, 1)
            product = alpha._obj.value * (op_a @ op_b)
            c[...] = product if beta._obj.value == 0 else product + beta._obj.value * c
            return 0

    blas = _Cublas.__new__(_Cublas)
    blas._lib, blas.handle = FakeCublas, ctypes.c_void_p(1)
    blas._one, blas._zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    rng = np.random.default_rng(9)
    xp, rt = EM.xp, EM.ops.rt
    N, K, CRS, PQ = 3, 4, 6, 5
    w = rng.standard_normal((K, CRS)).astype(np.float32)
    cols = rng.standard_normal((CRS, N * PQ)).astype(np.float32)
    dy = rng.standard_normal((N, K, PQ)).astype(np.float32)
    want_y = np.stack([w @ cols[:, n * PQ:(n + 1) * PQ] for n in range(N)])
    want_dcols = np.concatenate([w.T @ dy[n] for n in range(N)], axis=1)
    for gemm in (blas.gemm_strided_batched_rowmajor, rt.gemm):
        for beta in (0.0, 1.0):
            y = xp.full((N, K, PQ), 1.0, dtype=np.float32)
            gemm(xp.asarray(w), xp.asarray(cols).reshape(CRS, N, PQ).transpose(1, 0, 2), y, beta=beta)
            np.testing.assert_allclose(y.get(), want_y + beta, rtol=1e-5, atol=1e-5)
            dcols = xp.full((CRS, N * PQ), 1.0, dtype=np.float32)
            gemm(xp.asarray(w).T, xp.asarray(dy), dcols.reshape(CRS, N, PQ).transpose(1, 0, 2), beta=beta)
            np.testing.assert_allclose(dcols.get(), want_dcols + beta, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        rt.gemm(xp.asarray(w), xp.asarray(dy), xp.empty((N, K, PQ), dtype=np.float32))


def test_last_block_advances_leave_the_counters_at_zero(schedule, dut):
    """adam_step_dev and the device-offset draws advance their state in the grid's last block
    (kernels/reduce.cuh, grid_last_block): over many-block grids (the emulator's block cap) and
    repeated launches t and the offset advance exactly once per launch, the results match the
    reference, and the shared counters are back at 0 after every launch."""
    from rawgan.backend.cuda.common import grid_counter

    rt = dut.ops.rt
    n = 40_000                                   # 157 blocks of 256 -> capped: several passes
    rng = np.random.default_rng(8)
    p = rng.standard_normal(n).astype(np.float32)
    ref = [p.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(1, np.int64)]
    dev = [dut.asarray(p.copy()), dut.asarray(np.zeros(n)), dut.asarray(np.zeros(n)),
           dut.asarray(np.zeros(1, np.int64), dtype=np.int64)]
    off = dut.asarray(np.array([5], np.uint64), dtype=np.uint64)
    off_ref = np.array([5], np.uint64)
    for _ in range(4):
        g = rng.standard_normal(n).astype(np.float32)
        R.adam_step(*ref[:1], g, *ref[1:], 1e-3, 0.5, 0.999, 1e-8)
        dut.ops.adam_step(dev[0], dut.asarray(g), *dev[1:], 1e-3, 0.5, 0.999, 1e-8)
        got = dut.to_numpy(dut.ops.philox_uniform_next(n, 99, off, -1.0, 1.0, np.float32))
        np.testing.assert_array_equal(got, R.philox_uniform_next(n, 99, off_ref, -1.0, 1.0,
                                                                 np.float32))
        for key in ("adam", "rng"):
            assert int(dut.to_numpy(grid_counter(rt, key))[0]) == 0
    for r, d in zip(ref, dev):
        np.testing.assert_array_equal(dut.to_numpy(d), r)
    assert int(dut.to_numpy(dev[3])[0]) == 4
    assert int(dut.to_numpy(off)[0]) == 5 + 4 * n
