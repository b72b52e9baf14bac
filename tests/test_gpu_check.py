"""bench/gpu_check.py and bench/device_prepare.py: the parts a CPU can prove without running the
whole check (its dry run, ``--backend emulated``, takes about a minute: see bench/RESULTS.md)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import device_prepare  # noqa: E402
import gpu_check  # noqa: E402


def test_keep_small_returns_metrics_and_the_last_grid_only(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    for name in ("train_00_000000.png", "train_00_000100.png"):
        (run / "samples" / name).write_bytes(b"png")
    (run / "checkpoints" / "ckpt_000200.npz").write_bytes(b"x" * 1000)
    gpu_check.keep_small(run, tmp_path / "back")
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["metrics.jsonl",
                                                                     "train_00_000100.png"]


def test_stage_runs_records_and_skips_when_the_budget_is_short(tmp_path):
    env = dict(gpu_check.os.environ)
    check = gpu_check.Check(tmp_path, budget=100, env=env)
    assert check.stage("hello", [sys.executable, "-c", "print('hi there')"], 30) == 0
    assert check.stage("bad", [sys.executable, "-c", "import sys; sys.exit(3)"], 30) == 3
    assert check.failed
    assert check.stage("five", [sys.executable, "-c", "import sys; sys.exit(5)"], 30, ok_codes=(0, 5)) == 5
    assert check.stage("long", [sys.executable, "-c", "pass"], 1000) is None
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    assert lines[0].startswith("hello: ok in ") and lines[0].endswith("-- hi there")
    assert lines[1].startswith("bad: FAILED (exit 3) in ")
    assert lines[2].startswith("five: ok (exit 5) in ")
    assert lines[3].startswith("long: SKIPPED (") and "needs 1000 s" in lines[3]
    assert (tmp_path / "hello.log").read_text().splitlines()[-1] == "hi there"


def test_train_command_reads_the_carried_shards_and_writes_no_checkpoint():
    args = gpu_check.argparse.Namespace(backend="cupy", data=Path(".device/celeba64"), steps=200,
                                        batch_size=64, nf=64)
    eager = gpu_check.train_cmd(args, Path("/tmp/r"), False)
    graph = gpu_check.train_cmd(args, Path("/tmp/r"), None)
    assert eager[-1] == "--no-graph" and "--no-graph" not in graph
    i = graph.index("--prepared-dir")
    assert graph[i + 1] == ".device/celeba64"
    assert graph[graph.index("--checkpoint-every") + 1] == str(10**9)
    assert "--no-tensorboard" in graph                   # tensorboardX is not on the GPU image
    assert not (ROOT / ".device" / "no-raw-images").exists()   # the source is absent on purpose


def test_device_prepare_builds_a_small_subset_and_enforces_the_cap(tmp_path, monkeypatch):
    src = tmp_path / "celeba" / "img_align_celeba"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(src / f"{i + 1:06d}.jpg")
    out = device_prepare.prepare_subset(tmp_path / "celeba", tmp_path / "dev" / "celeba64", 4, 1)
    shards = sorted(out.glob("shard-*.npy"))
    assert sum(np.load(p, mmap_mode="r").shape[0] for p in shards) == 4
    assert np.load(shards[0], mmap_mode="r").shape[1:] == (64, 64, 3)
    monkeypatch.setattr(device_prepare, "DATA_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="exceeds 0 MB; use fewer --images"):
        device_prepare.prepare_subset(tmp_path / "celeba", tmp_path / "dev" / "celeba64", 4, 1)
    assert device_prepare.main(["--src", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 2


def test_env_script_uses_only_installed_cupy_names():
    cupy = pytest.importorskip("cupy")
    for name in ("getDeviceProperties", "getDevice", "runtimeGetVersion", "driverGetVersion"):
        assert f"rt.{name}(" in gpu_check.ENV_SCRIPT and callable(getattr(cupy.cuda.runtime, name))


def test_cudnn_stage_says_not_available_without_the_frontend(capsys):
    """Stage "cudnn" (its child, --cudnn-stage) runs the kernels step, then reports cuDNN as not
    available on the emulator (exit 0) instead of failing the check."""
    assert gpu_check.main(["--cudnn-stage", "--backend", "emulated", "--batch-size", "2", "--nf", "2"]) == 0
    out = capsys.readouterr().out
    assert "kernels: " in out and "ms per graph step" in out
    assert "cudnn: not available: cuDNN needs the GPU runtime, not 'emulated'" in out


def test_bench_stages_run_both_precisions(tmp_path, monkeypatch):
    """The bench stage runs at tf32 and again at fp32 (bench_fp32), like with like against torch."""
    calls = []
    monkeypatch.setattr(gpu_check.Check, "stage", lambda self, name, cmd, *a, **k: calls.append((name, cmd)) or 0)
    monkeypatch.setattr(gpu_check, "install_wheels", lambda check: None)
    monkeypatch.setattr(gpu_check, "cli_has_flag", lambda *a: True)
    gpu_check.main(["--backend", "emulated", "--out", str(tmp_path), "--data", str(tmp_path / "none")])
    by_name = dict(calls)
    for name, precision in (("bench", "tf32"), ("bench_fp32", "fp32")):
        cmd = by_name[name]
        assert cmd[cmd.index("--precision") + 1] == precision and "--compare" in cmd
    assert "--cudnn-stage" in by_name["cudnn"]
    assert [n for n, _ in calls].index("cudnn") > [n for n, _ in calls].index("bench_fp32")


def test_cudnn_stage_runs_end_to_end_with_a_stand_in_cudnn(monkeypatch, capsys):
    """The whole cudnn stage on the emulator with the stand-in cudnn of tests/test_cudnn_conv.py
    (reference convolutions behind the frontend's API, refusing pre != post padding): the forced
    and the per-layer ("auto") cuDNN steps match the kernels' eager and graph steps, and the
    native-asymmetric probe reports the refusal."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cudnn_conv import FakeCudnn

    from rawgan.backend.cuda import cudnn_conv

    real = cudnn_conv.CudnnConv
    monkeypatch.setattr(cudnn_conv, "CudnnConv",
                        lambda rt, **kw: real(rt, cudnn_module=FakeCudnn(), **kw))
    assert gpu_check.main(["--cudnn-stage", "--backend", "emulated", "--batch-size", "2", "--nf", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("cudnn", "cudnn_auto"):
        for mode in ("eager", "graph"):
            assert f"{name} vs kernels, {mode} step losses: match" in out
    assert "modelled (ESTIMATE)" in out and "fprop x(2, 3, 64, 64)" in out
    for kind in ("fprop", "dgrad", "wgrad"):
        assert f"native asymmetric padding (1, 2), {kind}: refused by cuDNN" in out
