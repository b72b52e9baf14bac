"""End-to-end tests of ``python -m rawgan.train`` on 20 tiny generated images and a small DCGAN
(--ngf 4 --ndf 4 --batch-size 4: 5 batches per epoch), so each run takes a few seconds."""
import json
import os
import shutil
import warnings
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawgan import checkpoint as ckpt_io
from rawgan.data import ensure_prepared
from rawgan.tblog import TBLogger
from rawgan.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"d_loss_real", "d_loss_fake", "d_loss", "g_loss", "d_real", "d_fake", "d_fake_g"}
GRID_PX = 8 * 64 + 9 * 2     # 8x8 grid of 64x64 images with 2-pixel padding = 530


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """20 random 178x218 JPEGs and their prepared shards: (raw dir, prepared dir)."""
    root = tmp_path_factory.mktemp("tiny")
    raw = root / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        # a smooth gradient plus noise, so the images are not all alike
        base = np.linspace(0, 255, 178)[None, :, None] * rng.random(3)[None, None, :]
        img = np.clip(base + rng.normal(0, 30, (218, 178, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(raw / f"{i + 1:06d}.jpg", quality=90)
    prepared = ensure_prepared("celeba", raw, out_dir=root / "prepared", workers=1, progress=False)
    return raw, prepared


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    """8 other images, prepared: (raw dir, prepared dir)."""
    raw = tmp_path_factory.mktemp("other") / "raw"
    raw.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        img = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(img).save(raw / f"{i + 1:06d}.jpg", quality=90)
    return raw, ensure_prepared("celeba", raw, out_dir=raw.parent / "prepared", workers=1,
                                progress=False)


def small_args(data, out, *extra):
    raw, prepared = data
    return ["--data", "celeba", "--data-dir", str(raw), "--prepared-dir", str(prepared),
            "--out", str(out), "--ngf", "4", "--ndf", "4", "--batch-size", "4",
            "--no-tensorboard", *extra]


def read_metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def tensorboard_tags(tb_dir) -> dict:
    """{tag: kind} of the summaries in the event files of ``tb_dir`` (TFRecord framing: u64 length,
    u32 crc, payload, u32 crc)."""
    import struct
    from tensorboardX.proto import event_pb2

    tags = {}
    for path in Path(tb_dir).glob("events.out.tfevents.*"):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                tags[v.tag] = v.WhichOneof("value")
    return tags


def run_cli(args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rawgan.train", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_smoke_run_writes_metrics_samples_checkpoints_and_events(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = small_args(tiny_data, run, "--max-steps", "6", "--log-every", "2", "--sample-every", "3",
                      "--checkpoint-every", "3", "--keep-checkpoints", "5")
    args.remove("--no-tensorboard")
    assert train_main(args) == 0

    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4, 6]
    assert [r["epoch"] for r in records] == [0, 0, 1]          # 5 batches per epoch
    for r in records:
        assert METRIC_KEYS | {"time", "elapsed_s", "sec_per_step", "batch"} <= set(r)
        assert all(np.isfinite(r[k]) for k in METRIC_KEYS)
        assert 0 <= r["d_real"] <= 1 and 0 <= r["d_fake"] <= 1
        assert abs(r["d_loss"] - r["d_loss_real"] - r["d_loss_fake"]) < 1e-5

    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["train_00_000000.png", "train_00_000003.png", "train_01_000006.png"]
    with Image.open(run / "samples" / samples[-1]) as im:
        assert im.size == (GRID_PX, GRID_PX) and im.mode == "RGB"

    assert [p.name for p in ckpt_io.list_checkpoints(run / "checkpoints")] == \
        ["ckpt_000003.npz", "ckpt_000006.npz"]
    ck = ckpt_io.load_checkpoint(run / "checkpoints" / "ckpt_000006.npz")
    extra = ck["extra"]
    assert (extra["step"], extra["epoch"], extra["batch"]) == (6, 1, 1)
    assert extra["sample_z"].shape == (64, 100) and np.abs(extra["sample_z"]).max() <= 1
    assert extra["z_rng"]["offset"] == 64 * 100 + 6 * 4 * 100     # sample z, then 6 batches of z
    assert json.loads(extra["config_json"])["ngf"] == 4 and extra["config"]["g_steps"] == 2
    assert ck["opt_D"]["t"] == 6 and ck["opt_G"]["t"] == 12         # 2 G updates per step
    assert "2.running_mean" in ck["G"]["buffer"] and "0.w" in ck["D"]["param"]
    tags = tensorboard_tags(run / "tb")
    for tag in ("loss/d_loss_real", "loss/d_loss_fake", "loss/d_loss", "loss/g_loss", "D/D_x",
                "D/D_G_z"):
        assert tags.get(tag) == "simple_value", tag
    for tag in ("z", "logits/D_x", "logits/D_G_z", "weights/G.0.w", "weights/D.0.w"):
        assert tags.get(tag) == "histo", tag
    assert sum(t.startswith("weights/") for t in tags) == 4           # first and last of G and D
    assert tags.get("samples") == "image"


def test_resume_continues_bitwise_like_a_straight_run(tiny_data, tmp_path):
    """4 steps + resume + 4 steps (across an epoch boundary) == 8 steps straight."""
    common = ("--log-every", "2", "--sample-every", "100", "--checkpoint-every", "100")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_main(small_args(tiny_data, straight, "--max-steps", "8", *common)) == 0
    assert train_main(small_args(tiny_data, split, "--max-steps", "4", *common)) == 0
    assert train_main(small_args(tiny_data, split, "--max-steps", "8", "--resume", *common)) == 0

    a = ckpt_io.load_checkpoint(straight / "checkpoints" / "ckpt_000008.npz")
    b = ckpt_io.load_checkpoint(split / "checkpoints" / "ckpt_000008.npz")
    for net in ("G", "D"):
        for kind in ("param", "buffer"):
            for name, value in a[net][kind].items():
                np.testing.assert_array_equal(value, b[net][kind][name], err_msg=f"{net}/{kind}/{name}")
    for opt in ("opt_G", "opt_D"):
        np.testing.assert_array_equal(a[opt]["m"], b[opt]["m"])
        np.testing.assert_array_equal(a[opt]["v"], b[opt]["v"])
        assert a[opt]["t"] == b[opt]["t"]
    assert a["extra"]["z_rng"] == b["extra"]["z_rng"]

    ra, rb = read_metrics(straight), read_metrics(split)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [2, 4, 6, 8]
    for x, y in zip(ra, rb):
        assert {k: x[k] for k in METRIC_KEYS | {"epoch", "batch"}} == \
               {k: y[k] for k in METRIC_KEYS | {"epoch", "batch"}}


def test_resume_rejects_a_different_model_and_allows_a_new_lr(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(small_args(tiny_data, run, "--max-steps", "1")) == 0
    again = small_args(tiny_data, run, "--max-steps", "2")        # forgot --resume
    assert train_main(again) == 2
    assert "already holds a run" in capsys.readouterr().err
    bad = small_args(tiny_data, run, "--max-steps", "2", "--resume")
    bad[bad.index("--ngf") + 1] = "8"
    assert train_main(bad) == 2
    assert "incompatible checkpoint" in capsys.readouterr().err
    assert train_main(small_args(tiny_data, run, "--max-steps", "2", "--resume", "--lr", "1e-4")) == 0
    out = capsys.readouterr().out
    assert "--lr 0.0002 -> 0.0001" in out
    ck = ckpt_io.load_checkpoint(run / "checkpoints" / "ckpt_000002.npz")
    assert ck["opt_G"]["lr"] == 1e-4 and ck["extra"]["config"]["lr"] == 1e-4


def test_nan_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, capsys):
    """A real divergence: resume a healthy run with --lr 1e30; the weights blow up to Inf/NaN.
    Every step is a checkpoint step, so the finiteness check must also run between log steps."""
    run = tmp_path / "run"
    assert train_main(small_args(tiny_data, run, "--max-steps", "2", "--log-every", "1")) == 0
    good = run / "checkpoints" / "ckpt_000002.npz"
    before = good.read_bytes()
    capsys.readouterr()
    with np.errstate(all="ignore"):
        code = train_main(small_args(tiny_data, run, "--max-steps", "50", "--log-every", "2",
                                     "--checkpoint-every", "1", "--resume", "--lr", "1e30"))
    err = capsys.readouterr().err
    assert code == 1
    assert "non-finite loss at step" in err and str(good) in err
    assert [p.name for p in ckpt_io.list_checkpoints(run / "checkpoints")] == ["ckpt_000002.npz"]
    assert good.read_bytes() == before
    # step 3 is not a log step: the check before writing its checkpoint caught it
    assert "non-finite loss at step 3" in err


def test_ctrl_c_saves_a_checkpoint_and_exits_0_and_the_folder_is_locked(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rawgan.train",
                             *small_args(tiny_data, run, "--max-steps", "100000", "--log-every", "1")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        deadline = time.time() + 60
        for line in proc.stdout:                   # wait for the first log line
            if line.startswith("step") or time.time() > deadline:
                break
        # a second training into the same folder is refused while the first one runs
        assert train_main(small_args(tiny_data, run, "--max-steps", "3", "--resume")) == 2
        assert f"another training run is using {run} (pid {proc.pid})" in capsys.readouterr().err
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"resume with: python -m rawgan.train --out {run} --resume --no-tensorboard\n" in out
    assert "Traceback" not in err
    latest = ckpt_io.latest_checkpoint(run / "checkpoints")
    assert latest is not None
    step = ckpt_io.load_checkpoint(latest)["extra"]["step"]
    assert step >= 1
    assert list((run / "samples").glob(f"train_*_{step:06d}.png"))    # the final grid too


def test_error_paths_exit_2_without_traceback(tiny_data, tmp_path):
    missing = run_cli(["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert missing.returncode == 2 and "error:" in missing.stderr
    assert "Traceback" not in missing.stderr

    no_ckpt = run_cli(small_args(tiny_data, tmp_path / "empty", "--resume"))
    assert no_ckpt.returncode == 2 and "no checkpoint" in no_ckpt.stderr
    assert "Traceback" not in no_ckpt.stderr

    corrupt = tmp_path / "ckpt_000001.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    bad = run_cli(small_args(tiny_data, tmp_path / "r2", "--resume", str(corrupt)))
    assert bad.returncode == 2 and "truncated or corrupt" in bad.stderr and str(corrupt) in bad.stderr
    assert "Traceback" not in bad.stderr

    flag = run_cli(["--out", str(tmp_path / "r3"), "--batch-size", "0"])
    assert flag.returncode == 2 and "error:" in flag.stderr and "Traceback" not in flag.stderr


def test_help():
    res = run_cli(["--help"])
    assert res.returncode == 0
    for flag in ("--data-dir", "--resume", "--g-steps", "--z-dist", "--keep-checkpoints",
                 "--conv-impl", "--precision", "RAWGAN_DATA_DIR"):
        assert flag in res.stdout


def test_tensorboard_logger_survives_nan(tmp_path):
    tb = TBLogger(tmp_path / "tb")
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        tb.histogram("h", np.array([1.0, np.nan, np.inf, 2.0]), 1)
    with pytest.warns(RuntimeWarning):
        tb.histogram("all_nan", np.array([np.nan, np.nan]), 1)   # skipped, no exception
    with pytest.warns(RuntimeWarning):
        tb.scalars({"loss": float("nan")}, 1)
    tb.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_plain_resume_takes_every_setting_from_the_checkpoint(tiny_data, tmp_path, capsys):
    """The README's `--out RUN_DIR --resume`: data, model, cadence and length all come from the
    checkpoint; --epochs alone then replaces the checkpoint's --max-steps."""
    run = tmp_path / "run"
    assert train_main(small_args(tiny_data, run, "--max-steps", "2", "--log-every", "1",
                                 "--sample-every", "2", "--checkpoint-every", "1",
                                 "--keep-checkpoints", "9", "--lr", "1e-4")) == 0
    capsys.readouterr()
    assert train_main(["--out", str(run), "--resume", "--max-steps", "3", "--no-tensorboard"]) == 0
    assert "changed: --max-steps 2 -> 3\n" in capsys.readouterr().out
    assert train_main(["--out", str(run), "--resume", "--epochs", "1", "--no-tensorboard"]) == 0
    assert "changed: --epochs 5 -> 1, --max-steps 3 -> None" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]          # --log-every 1
    assert [p.name for p in ckpt_io.list_checkpoints(run / "checkpoints")] == \
        [f"ckpt_00000{i}.npz" for i in range(1, 6)]                          # every step, all kept
    ck = ckpt_io.load_checkpoint(run / "checkpoints")
    config = ck["extra"]["config"]
    assert (config["ngf"], config["lr"], config["batch_size"]) == (4, 1e-4, 4)
    assert config["data_dir"] == str(tiny_data[0]) and config["dataset"]["images"] == 20


def _drop_dataset_identity(path):
    """Rewrite a checkpoint as older versions wrote it: no dataset identity in its config."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    extra = json.loads(str(arrays["extra.json"]))
    del extra["config"]["dataset"]
    arrays["extra.json"] = np.array(json.dumps(extra))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_resume_checks_the_data_is_the_same(tiny_data, other_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(small_args(tiny_data, run, "--max-steps", "3")) == 0        # at batch 3 of 5
    other = ["--data-dir", str(other_data[0]), "--prepared-dir", str(other_data[1])]
    capsys.readouterr()
    assert train_main(["--out", str(run), "--resume", "--max-steps", "4", *other]) == 2
    err = capsys.readouterr().err
    assert "trained on other data (20 images from" in err
    assert f"{other_data[0]} lists 8 other image files" in err

    # an old checkpoint without the identity: the saved batch position (3) doesn't exist in an
    # epoch of 8 images (2 batches); an error, not loader's ValueError
    _drop_dataset_identity(run / "checkpoints" / "ckpt_000003.npz")
    assert train_main(["--out", str(run), "--resume", "--max-steps", "4", *other]) == 2
    assert "at batch 3 of an epoch, but the data has 2 batches" in capsys.readouterr().err

    # the same images in another place are the same data
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data[0], copy)
    assert train_main(["--out", str(run), "--resume", "--max-steps", "4", "--data-dir", str(copy),
                       "--prepared-dir", str(tmp_path / "copy_prepared"), "--no-tensorboard"]) == 0


def test_runs_never_share_a_folder(tiny_data, tmp_path, capsys):
    run, new = tmp_path / "run", tmp_path / "new"
    assert train_main(small_args(tiny_data, run, "--max-steps", "1")) == 0
    assert train_main(small_args(tiny_data, run, "--max-steps", "2")) == 2
    assert "already holds a run (metrics.jsonl, samples/, checkpoints/; newest checkpoint " \
           "ckpt_000001.npz); continue it with --resume" in capsys.readouterr().err
    assert [r["step"] for r in read_metrics(run)] == [1]                  # not truncated

    first, second = tmp_path / "first", tmp_path / "second"
    assert train_main(small_args(tiny_data, first, "--max-steps", "1")) == 0
    assert train_main(small_args(tiny_data, second, "--max-steps", "1")) == 0
    # --resume PATH of another run into a folder holding a run: refused
    assert train_main(["--out", str(second), "--resume", str(first / "checkpoints"),
                       "--max-steps", "2"]) == 2
    assert "belongs to another run folder" in capsys.readouterr().err
    assert ckpt_io.latest_checkpoint(second / "checkpoints").name == "ckpt_000001.npz"
    # ... into an empty folder: continued there, with a note
    assert train_main(["--out", str(new), "--resume", str(first), "--max-steps", "2",
                       "--no-tensorboard"]) == 0
    assert f"note: continuing the run of {first / 'checkpoints' / 'ckpt_000001.npz'} in {new}" \
        in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(new)] == [2]


def test_diverged_weights_with_finite_losses_exit_1(tiny_data, tmp_path, capsys):
    """--lr 1e10: losses stay finite, BN running statistics overflow; the checkpoint step turns
    this into the same failure as a NaN loss, without NumPy's RuntimeWarnings."""
    run = tmp_path / "run"
    assert train_main(small_args(tiny_data, run, "--max-steps", "2", "--log-every", "1")) == 0
    good = run / "checkpoints" / "ckpt_000002.npz"
    before = good.read_bytes()
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = train_main(small_args(tiny_data, run, "--max-steps", "40", "--log-every", "1",
                                     "--checkpoint-every", "3", "--resume", "--lr", "1e10"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "the run diverged: non-finite values in" in err and "try a lower --lr" in err
    assert f"the last good checkpoint is {good}" in err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert [p.name for p in ckpt_io.list_checkpoints(run / "checkpoints")] == ["ckpt_000002.npz"]
    assert good.read_bytes() == before
    steps = [r["step"] for r in read_metrics(run)]
    assert steps[:3] == [1, 2, 3]              # logged steps stay, the diverged one included


def test_bad_out_conv_impl_and_checkpoint_exit_2(tiny_data, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    cases = [(small_args(tiny_data, a_file), f"--out {a_file} exists and is not a folder"),
             (small_args(tiny_data, a_file / "run"),
              f"cannot create or write the run folder {a_file / 'run'}"),
             (small_args(tiny_data, tmp_path / "r", "--conv-impl", "cudnn"),
              "--conv-impl applies to --backend cupy/emulated only"),
             (small_args(tiny_data, tmp_path / "r", "--precision", "fp32"),
              "--precision applies to --backend cupy/emulated only"),
             (small_args(tiny_data, tmp_path / "r", "--resume", str(a_file)),
              f"{a_file} is not a rawgan checkpoint (.npz written by rawgan.train)")]
    for args, message in cases:
        assert train_main(args) == 2, args
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]      # no empty run folders left


def test_cpu_backends_train_alike_and_a_run_moves_between_them(tiny_data, tmp_path, capsys):
    """--backend reference and --backend numpy (the default) log the same D losses at step 1
    (before any update) from the same seed, and the rest of the first two steps to 1e-2 (Adam's
    first steps turn float32 rounding into ±lr steps, see tests/test_cuda_backend.py); a
    reference run resumes on numpy; --conv-impl is refused for reference too."""
    common = ("--log-every", "1", "--sample-every", "100", "--checkpoint-every", "100")
    ref, fast = tmp_path / "ref", tmp_path / "fast"
    assert train_main(small_args(tiny_data, ref, "--max-steps", "2", "--backend", "reference",
                                 *common)) == 0
    assert train_main(small_args(tiny_data, fast, "--max-steps", "2", *common)) == 0
    for r, f in zip(read_metrics(ref), read_metrics(fast)):
        for k in METRIC_KEYS:
            tol = 1e-5 if r["step"] == 1 and k in ("d_loss_real", "d_loss_fake", "d_real",
                                                   "d_fake") else 1e-2
            assert abs(r[k] - f[k]) <= tol * max(1.0, abs(r[k])), (r["step"], k)
    assert train_main(small_args(tiny_data, ref, "--max-steps", "3", "--resume", *common)) == 0
    steps = read_metrics(ref)
    assert [r["step"] for r in steps] == [1, 2, 3] and np.isfinite(steps[-1]["g_loss"])
    ck = ckpt_io.load_checkpoint(ref / "checkpoints" / "ckpt_000003.npz")
    assert ck["extra"]["config"]["backend"] == "numpy" and ck["opt_D"]["t"] == 3
    capsys.readouterr()
    for flag, value in (("--conv-impl", "cudnn"), ("--conv-impl", "kernels"),
                        ("--precision", "tf32"), ("--no-graph", None)):   # review findings
        extra = [flag] if value is None else [flag, value]
        args = small_args(tiny_data, tmp_path / "r", "--backend", "reference", *extra)
        assert train_main(args) == 2
        assert f"{flag} applies to --backend cupy/emulated only" in capsys.readouterr().err
    assert ck["extra"]["config"]["precision"] is None          # CPU backends: no precision choice


def test_resume_command_keeps_the_per_invocation_flags():
    """--precision, like --backend/--conv-impl/--no-graph, is per invocation: the printed resume
    command repeats it (and leaves it out when not given)."""
    from rawgan.runconfig import build_parser, resume_command

    args = build_parser().parse_args(["--out", "run", "--backend", "emulated", "--precision", "fp32",
                                      "--conv-impl", "cudnn", "--no-graph"])
    assert resume_command(args) == ("python -m rawgan.train --out run --resume --backend emulated "
                                    "--conv-impl cudnn --precision fp32 --no-graph")
    assert "--precision" not in resume_command(build_parser().parse_args(["--out", "run"]))


def test_histograms_keep_no_im2col_columns(tmp_path):
    """The TensorBoard histograms run D forwards with no backward after them: D's convolutions
    must not hold their window matrices (hundreds of MB at batch 64) until the next step, and
    D's requires_grad is restored."""
    from rawgan.backend import PhiloxState, get_backend
    from rawgan.layers import Conv2d
    from rawgan.models.dcgan import DCGAN
    from rawgan.runlog import RunLog

    B = get_backend("numpy")
    model = DCGAN(B, ngf=8, ndf=8, seed=0)
    log = RunLog(tmp_path, B, model, None, True)
    try:
        x = B.uniform(PhiloxState(1), (4, 3, 64, 64), -1, 1)
        z = B.uniform(PhiloxState(2), (4, 100))
        log.histograms(1, x, z)
    finally:
        log.close()
    convs = [l for l in model.D.layers if isinstance(l, Conv2d)]
    assert len(convs) == 4 and all(c.cols is None for c in convs)
    assert model.D.requires_grad and all(l.requires_grad for l in model.D.layers)
    model.D.forward(x)                                  # a training forward does keep them
    assert all(c.cols is not None for c in convs)
