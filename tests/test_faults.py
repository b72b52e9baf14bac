"""Training survives what clusters and disks do to it (issue 12): stop signals sent to a real
child process, runs that died before their first checkpoint, corrupt checkpoints, leftover
temporary files, full disks (a file-size rlimit; a tiny tmpfs where mounting is permitted),
collapse, out of memory, TensorBoard on resume and kill, file modes, shard checksums, the data
check before preparing, and the schedule's time estimate. Tiny models (--ngf 4 --ndf 4 on 20
images), so each case takes seconds."""
import json
import os
import resource
import shutil
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
from rawgan.data import shards as fmt
from rawgan.train import main as train_main
from test_train import read_metrics, small_args, tensorboard_tags, tiny_data  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")


def start(module, args, preexec_fn=None):
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
                            preexec_fn=preexec_fn)


def run(module, args, preexec_fn=None, timeout=120):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=timeout, preexec_fn=preexec_fn)


def wait_for_line(proc, prefix, timeout=60):
    deadline = time.time() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
        assert time.time() < deadline, f"no line starting with {prefix!r}"
    raise AssertionError(f"process ended without a line starting with {prefix!r}")


def same_state(a_path, b_path):
    a, b = ckpt_io.load_checkpoint(a_path), ckpt_io.load_checkpoint(b_path)
    for net in ("G", "D"):
        for kind in ("param", "buffer"):
            for name, value in a[net][kind].items():
                np.testing.assert_array_equal(value, b[net][kind][name], err_msg=f"{net}/{name}")
    for opt in ("opt_G", "opt_D"):
        np.testing.assert_array_equal(a[opt]["m"], b[opt]["m"])
        np.testing.assert_array_equal(a[opt]["v"], b[opt]["v"])
        assert a[opt]["t"] == b[opt]["t"]
    assert a["extra"]["z_rng"] == b["extra"]["z_rng"]


# -- 1. SIGTERM / SIGHUP ---------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_a_checkpoint_and_resume_continues_bitexactly(
        tiny_data, tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = start("rawgan.train", small_args(tiny_data, run_dir, "--max-steps", "100000",
                                            "--log-every", "1"))
    try:
        estimate = wait_for_line(proc, "estimate:")        # after 4 steps: the schedule's time
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert estimate.startswith("estimate: 100,000 steps at ") and " s/step on this machine" in estimate
    assert "to shorten it: --max-steps" in estimate
    assert f"{signal.Signals(signum).name}: finishing the current step" in err
    assert f"resume with: python -m rawgan.train --out {run_dir} --resume --no-tensorboard" in out
    assert "Traceback" not in err
    saved = ckpt_io.latest_checkpoint(run_dir / "checkpoints")
    step = ckpt_io.load_checkpoint(saved)["extra"]["step"]
    assert step >= 4
    if signum != signal.SIGTERM:
        return
    # --resume continues bit-exactly: == the same number of steps straight
    common = ("--log-every", "1", "--sample-every", "100", "--checkpoint-every", "100")
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", str(step + 2), "--resume",
                                 *common)) == 0
    straight = tmp_path / "straight"
    assert train_main(small_args(tiny_data, straight, "--max-steps", str(step + 2), *common)) == 0
    name = f"ckpt_{step + 2:06d}.npz"
    same_state(run_dir / "checkpoints" / name, straight / "checkpoints" / name)


def test_a_second_signal_quits_at_once():
    """Signals: after defer() the first SIGTERM only sets ``requested``; the second raises."""
    code = ("import sys, time\n"
            "from rawgan.rundir import Interrupted, Signals\n"
            "try:\n"
            "    with Signals() as s:\n"
            "        s.defer(); print('ready', flush=True)\n"
            "        while not s.requested: time.sleep(0.01)\n"
            "        print('requested', s.requested, flush=True)\n"
            "        while True: time.sleep(0.01)\n"
            "except Interrupted as e:\n"
            "    print('interrupted', e.signum, flush=True); sys.exit(128 + e.signum)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    try:
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        wait_for_line(proc, "requested SIGTERM")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "interrupted 15" in out


def test_a_forked_worker_signalled_before_its_own_setup_dies_quietly():
    """A decoding worker is forked with the parent's stop handlers; a signal that reaches it
    before its initializer resets them must end it quietly (CI once saw a worker print the
    parent's Interrupted traceback), in both the train handlers and the CLIs' (data preparation, sample)."""
    code = ("import os, signal, sys, time\n"
            "from rawgan.rundir import Signals\n"
            "from rawgan.argtypes import stop_signals_interrupt\n"
            "for ctx in (Signals, stop_signals_interrupt):\n"
            "    with ctx():\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); os._exit(0)\n"
            "        _, status = os.waitpid(pid, 0)\n"
            "        print(ctx.__name__, os.waitstatus_to_exitcode(status), flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=ENV, timeout=60)
    assert r.stdout.split() == ["Signals", "143", "stop_signals_interrupt", "143"], r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("module", ["rawgan.train", "rawgan.data"])
def test_sigterm_during_data_preparation_stops_the_workers(tmp_path, module):
    raw = tmp_path / "raw"
    raw.mkdir()
    y, x = np.mgrid[0:1200, 0:1200]
    img = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(img).save(raw / "a.jpg", quality=80)
    data = (raw / "a.jpg").read_bytes()
    for i in range(300):                         # ~20 ms each to decode: seconds of work
        (raw / f"{i:04d}.jpg").write_bytes(data)
    if module == "rawgan.train":
        args = ["--data", "folder", "--data-dir", str(raw), "--prepared-dir",
                str(tmp_path / "prep"), "--out", str(tmp_path / "run"), "--workers", "2",
                "--no-tensorboard"]
        said = "interrupted by SIGTERM"
    else:
        args = ["prepare", "--data", "folder", "--data-dir", str(raw), "--out",
                str(tmp_path / "prep"), "--workers", "2"]
        said = "interrupted (SIGTERM)"
    proc = start(module, args)
    try:
        deadline, workers = time.time() + 30, []
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.01)
        assert len(workers) == 2, "the decoding workers did not start"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert said in err and "Traceback" not in err
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "decoding workers left running"
    assert not (tmp_path / "prep" / fmt.INDEX_NAME).exists()


# -- 2. a run folder that died before its first checkpoint ------------------------------------

def test_a_run_that_died_before_its_first_checkpoint_resumes_as_a_fresh_start(tiny_data, tmp_path,
                                                                               capsys):
    run_dir = tmp_path / "run"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / ".lock").write_text("12345\n")                        # what a kill leaves
    (run_dir / "metrics.jsonl").write_text('{"step": 20}\n')
    Image.new("RGB", (8, 8)).save(run_dir / "samples" / "train_00_000000.png")
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "2", "--resume",
                                 "--log-every", "1")) == 0
    out = capsys.readouterr().out
    assert f"note: {run_dir} holds no checkpoint (its run stopped before the first one); " \
           f"starting a fresh run there, removing its metrics.jsonl, samples/" in out
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    # the same without --resume (a newcomer simply starts again)
    again = tmp_path / "again"
    again.mkdir()
    (again / "metrics.jsonl").write_text('{"step": 20}\n')
    assert train_main(small_args(tiny_data, again, "--max-steps", "1")) == 0
    assert [r["step"] for r in read_metrics(again)] == [1]


def test_resume_refused_for_missing_data_leaves_a_dead_runs_files_alone(tiny_data, tmp_path,
                                                                          capsys):
    """--resume on a folder without a checkpoint takes it over only after the data was found: a
    run refused before its first step removes nothing."""
    run_dir = tmp_path / "run"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / ".lock").write_text("12345\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 20}\n')
    Image.new("RGB", (8, 8)).save(run_dir / "samples" / "train_00_000000.png")
    missing = tmp_path / "no-such-data"
    assert train_main(["--out", str(run_dir), "--resume", "--data-dir", str(missing),
                       "--ngf", "4", "--ndf", "4", "--no-tensorboard"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and str(missing) in captured.err
    assert "note:" not in captured.out
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 20}\n'
    assert (run_dir / "samples" / "train_00_000000.png").exists()


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--out", "", "--ngf", "4", "--ndf", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out is empty") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []                   # no .lock in the current directory


# -- 3. a corrupt newest checkpoint -----------------------------------------------------------------

def test_resume_and_sample_skip_a_corrupt_newest_checkpoint(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "4",
                                 "--checkpoint-every", "2")) == 0
    newest = run_dir / "checkpoints" / "ckpt_000004.npz"
    newest.write_bytes(newest.read_bytes()[:5000])                 # truncated: corrupt
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)

    res = run("rawgan.sample", ["--checkpoint", str(run_dir), "--out", str(tmp_path / "g.png")])
    assert res.returncode == 0, res.stderr
    assert f"warning: checkpoint {newest} is truncated or corrupt" in res.stderr
    assert f"set it aside as {newest}.corrupt" in res.stderr
    assert (tmp_path / "g.png").exists() and (run_dir / "checkpoints" / "ckpt_000004.npz.corrupt").exists()

    capsys.readouterr()
    assert train_main(small_args(tiny_data, copy, "--max-steps", "5", "--resume")) == 0
    captured = capsys.readouterr()
    assert "set it aside as" in captured.err
    assert f"resuming from {copy / 'checkpoints' / 'ckpt_000002.npz'} at step 2" in captured.out
    names = sorted(p.name for p in (copy / "checkpoints").iterdir())
    assert names == ["ckpt_000002.npz", "ckpt_000004.npz", "ckpt_000004.npz.corrupt",
                     "ckpt_000005.npz"]                          # set aside, never deleted


# -- 4. temporary files of killed saves ----------------------------------------------------------

def test_a_successful_save_removes_stale_temporary_files(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "1")) == 0
    ckpts = run_dir / "checkpoints"
    stale = [ckpts / ".ckpt_000002.npz.k2j4_x.tmp", ckpts / ".ckpt_000500.npz.abcdefgh.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)                    # what kill -9 during a save leaves
    other = ckpts / "notes.tmp"
    other.write_text("mine")
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "2", "--resume")) == 0
    assert not [p for p in stale if p.exists()] and other.exists()


# -- 5. full disks -------------------------------------------------------------------------------------

def _limit_file_size(nbytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # as a scheduler's quota would: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_a_write_error_names_the_file(tiny_data, tmp_path):
    """A file-size limit (RLIMIT_FSIZE) in the child: the checkpoint cannot be written."""
    run_dir = tmp_path / "run"
    res = run("rawgan.train", small_args(tiny_data, run_dir, "--max-steps", "1"),
              preexec_fn=_limit_file_size(200_000))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: [Errno 27] File too large") and \
        str(run_dir / "checkpoints" / "ckpt_000001.npz") in last
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_a_dead_tensorboard_writer_exits_2_naming_tb_instead_of_hanging(tiny_data, tmp_path):
    """tensorboardX writes from a thread: a write error there (here a 400 kB file-size limit,
    which the growing event file passes after a few grids) used to kill only that thread and
    leave the loop blocked forever on its full queue. The subprocess timeout bounds the old hang."""
    run_dir = tmp_path / "run"
    args = [a for a in small_args(tiny_data, run_dir, "--max-steps", "40", "--log-every", "1",
                                  "--sample-every", "2", "--checkpoint-every", "1000")
            if a != "--no-tensorboard"]
    try:
        res = run("rawgan.train", args, preexec_fn=_limit_file_size(400_000), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the run hung after its TensorBoard writer died")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: [Errno 27] File too large (TensorBoard events; "
                           "--no-tensorboard turns them off)") and str(run_dir / "tb") in last
    steps = [r["step"] for r in read_metrics(run_dir)]
    assert 1 <= len(steps) < 40 and steps == list(range(1, len(steps) + 1))   # stopped early


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (skips where mounting is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_too_little_space_fails_before_the_first_step(tiny_data, tmp_path, tiny_disk):
    run_dir = tiny_disk / "run"
    t0 = time.time()
    res = run("rawgan.train", small_args(tiny_data, run_dir, "--max-steps", "100000",
                                         "--ngf", "16", "--ndf", "16"))
    assert res.returncode == 2, res.stderr
    assert time.time() - t0 < 60
    err = res.stderr.strip()
    assert err.startswith(f"error: not enough disk space for checkpoints ") and \
        f"--keep-checkpoints 3 + 1 being written) and the next 10 sample grids (8.4 MB) at " \
        f"{run_dir}: needs " in err and " free;" in err
    assert "step" not in res.stdout.split("config:")[-1]            # no step was spent
    # the prepared-data folder: checked before decoding, and the message names --prepared-dir
    big = tmp_path / "big"
    big.mkdir()
    data = next(Path(tiny_data[0]).iterdir()).read_bytes()
    for i in range(100):                                           # 100 x 12 kB > 1 MB
        (big / f"{i:06d}.jpg").write_bytes(data)
    res = run("rawgan.train", ["--data-dir", str(big), "--prepared-dir", str(tiny_disk / "p2"),
                               "--out", str(tmp_path / "r2"), "--ngf", "4", "--ndf", "4"])
    assert res.returncode == 2
    assert f"not enough disk space for the prepared data (100 images of 64x64x3 bytes) at " \
           f"{tiny_disk / 'p2'}: needs 2.3 MB" in res.stderr
    assert "--prepared-dir of rawgan.train" in res.stderr and "Traceback" not in res.stderr


def test_the_free_space_check_counts_a_margin_for_sample_grids_and_tensorboard(tmp_path,
                                                                              monkeypatch):
    from rawgan import hostio
    from rawgan.rundir import GRID_BYTES, check_run_space
    from rawgan.runconfig import UsageError

    assert GRID_BYTES == 530 * 530 * 3                       # 8x8 grid of 64x64, 2 px padding
    monkeypatch.setattr(hostio, "free_bytes", lambda path: 5_000_000)
    check_run_space(tmp_path, 1_000_000, 3, 10)              # 4 checkpoints: 4 MB
    check_run_space(tmp_path, 1_000_000, 3, 10, samples_to_come=1)        # + 0.84 MB
    with pytest.raises(UsageError) as e:                      # + 2 x 0.84 MB with TensorBoard
        check_run_space(tmp_path, 1_000_000, 3, 10, samples_to_come=1, tensorboard=True)
    assert "and the next 1 sample grids and TensorBoard events (1.7 MB) at " in str(e.value)
    with pytest.raises(UsageError) as e:                      # at most 10 grids are counted
        check_run_space(tmp_path, 0, 3, 10, samples_to_come=10_000)
    assert "the next 10 sample grids (8.4 MB)" in str(e.value)


# -- 6. collapse and non-finite hyper-parameters ------------------------------------------------------

def test_a_collapsed_run_is_warned_about_and_bad_hyperparameters_are_refused(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    res = run("rawgan.train", small_args(tiny_data, run_dir, "--max-steps", "30", "--lr", "10",
                                         "--log-every", "2"))
    assert res.returncode == 0, res.stderr
    assert "warning: the run looks collapsed at step" in res.stderr
    assert "d_loss < 0.001 at 5 log steps in a row" in res.stderr
    assert "(warning: the run looks collapsed:" in res.stdout.splitlines()[-1]
    records = read_metrics(run_dir)
    assert records[0]["collapse"] is None and records[-1]["collapse"].startswith("d_loss < 0.001")
    assert "Warning" not in res.stderr                       # no NumPy RuntimeWarnings (case 9)
    # a healthy run is not flagged
    assert all(r["collapse"] is None for r in read_metrics(_healthy(tiny_data, tmp_path)))
    for flag, value in (("--lr", "inf"), ("--lr", "nan"), ("--beta1", "inf"), ("--lr", "-1")):
        res = run("rawgan.train", small_args(tiny_data, tmp_path / "bad", flag, value))
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"argument {flag}: must be" in res.stderr
    for value in ("1e-320", "1e300"):         # finite in float64, 0 or inf in float32 (review)
        res = run("rawgan.train", small_args(tiny_data, tmp_path / "bad", "--lr", value))
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert "outside float32's normal range" in res.stderr


def _healthy(tiny_data, tmp_path):
    run_dir = tmp_path / "healthy"
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "12", "--log-every", "1")) == 0
    return run_dir


# -- 7. out of memory ----------------------------------------------------------------------------------

def _limit_memory(nbytes):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def test_out_of_memory_exits_3_naming_the_setting_to_lower(tiny_data, tmp_path):
    res = run("rawgan.train", small_args(tiny_data, tmp_path / "run", "--ngf", "4096"),
              preexec_fn=_limit_memory(1536 << 20))
    assert res.returncode == 3, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: out of memory (")
    assert "lower --batch-size or --ngf/--ndf" in res.stderr and "Traceback" not in res.stderr

    run_dir = tmp_path / "small"
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "1")) == 0
    # sample generates in batches of 64 and caps a grid at 1024 faces (issue 11), so a huge --n
    # is refused as a flag, before any memory is used, pointing to --out-dir (constant memory).
    res = run("rawgan.sample", ["--checkpoint", str(run_dir), "--out", str(tmp_path / "g.png"),
                                "--n", "1000000"], preexec_fn=_limit_memory(1536 << 20))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "--n 1000000 is too many for one grid" in res.stderr
    assert "--out-dir" in res.stderr and "Traceback" not in res.stderr


# -- 8. TensorBoard on resume and on a kill -------------------------------------------------------

def _events(tb_dir):
    """[(file, [(step, kind, tag)])] of TensorBoard event files, oldest first."""
    import struct
    from tensorboardX.proto import event_pb2

    files = []
    for path in sorted(Path(tb_dir).glob("events.out.tfevents.*"), key=lambda p: p.name):
        data, pos, events = path.read_bytes(), 0, []
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 12 + length > len(data):
                break
            e = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            if e.file_version:
                events.append((e.step, "file_version", e.file_version))
            for v in e.summary.value:
                events.append((e.step, "summary", v.tag))
        files.append((path, events))
    return files


def test_tensorboard_purges_after_the_resumed_step_and_is_flushed_at_checkpoints(tiny_data,
                                                                                  tmp_path):
    run_dir = tmp_path / "run"
    args = small_args(tiny_data, run_dir, "--max-steps", "4", "--log-every", "2",
                      "--checkpoint-every", "2")
    args.remove("--no-tensorboard")
    assert train_main(args) == 0
    time.sleep(1.1)                              # a new event file name (it holds the time)
    args[args.index("--max-steps") + 1] = "6"
    assert train_main(args + ["--resume"]) == 0
    (first, old), (second, new) = _events(run_dir / "tb")
    assert (4, "summary", "loss/d_loss") in old                   # the checkpoint step's scalars
    purge = [step for step, kind, _ in new if kind == "file_version" and step]
    assert purge == [5]                                           # purged from step 5, not 4

    # a kill -9 after a checkpoint keeps that checkpoint step's events
    killed = tmp_path / "killed"
    args = small_args(tiny_data, killed, "--max-steps", "100000", "--log-every", "1",
                      "--checkpoint-every", "3", "--sample-every", "1000")
    args.remove("--no-tensorboard")
    proc = start("rawgan.train", args)
    try:
        deadline = time.time() + 60
        while not (killed / "checkpoints" / "ckpt_000003.npz").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        proc.kill()
        proc.communicate()
    steps = {step for _, events in _events(killed / "tb") for step, _, tag in events
             if tag == "loss/d_loss"}
    assert {1, 2, 3} <= steps


# -- 9. file modes, shard checksums, the data check before preparing --------------------------------

def test_checkpoints_honour_the_umask(tiny_data, tmp_path):
    from rawgan.hostio import atomic_write

    old = os.umask(0o022)
    try:
        assert train_main(small_args(tiny_data, tmp_path / "run", "--max-steps", "1")) == 0
        atomic_write(tmp_path / "x.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt_000001.npz"
    assert oct(ckpt.stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "x.bin").stat().st_mode & 0o777) == "0o644"


def test_shard_checksums_are_verified_once_and_a_damaged_shard_is_rebuilt(tiny_data, tmp_path,
                                                                           monkeypatch, capsys):
    raw = tiny_data[0]
    prepared = tmp_path / "prep"
    shutil.copytree(tiny_data[1], prepared)
    (prepared / fmt.VERIFIED_NAME).unlink(missing_ok=True)
    reads = []
    real = fmt.file_sha256
    monkeypatch.setattr(fmt, "file_sha256", lambda p, *a: reads.append(Path(p).name) or real(p, *a))
    index = fmt.read_index(prepared)
    assert ensure_prepared("celeba", raw, out_dir=prepared, progress=False) == prepared
    assert len(reads) == len(index["shards"])                  # every shard read once ...
    reads.clear()
    assert ensure_prepared("celeba", raw, out_dir=prepared, progress=False) == prepared
    assert reads == []                                           # ... then the cached verdict
    # one flipped byte, same size: found, and rebuilt from the source
    shard = prepared / index["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert ensure_prepared("celeba", raw, out_dir=prepared, workers=1) == prepared
    assert f"fail their sha256 checksum ({shard.name}, ...); rebuilding them" in capsys.readouterr().err
    assert fmt.file_sha256(shard) == index["shards"][0]["sha256"]


def test_resume_on_other_data_is_refused_before_preparing_it(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(small_args(tiny_data, run_dir, "--max-steps", "1")) == 0
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted(Path(tiny_data[0]).iterdir())[:8]:
        shutil.copy(p, other / p.name)
    capsys.readouterr()
    prepared = tmp_path / "other_prepared"
    assert train_main(["--out", str(run_dir), "--resume", "--max-steps", "2", "--data-dir",
                       str(other), "--prepared-dir", str(prepared)]) == 2
    assert f"{other} lists 8 other image files" in capsys.readouterr().err
    assert not prepared.exists()                                 # nothing was prepared


def test_atomic_write_leaves_no_tmp_when_interrupted_right_after_creating_it(tmp_path, monkeypatch):
    """CI finding: Ctrl-C during `sample --out-dir` left a `.face_….png.….tmp` behind — the
    interrupt landed after tempfile.mkstemp had created the file but before atomic_write's try
    could remove it. The temporary file is now named before it exists and created inside the
    try. Simulated: the interrupt arrives as the creating os.open returns."""
    import os as _os

    from rawgan.hostio import atomic_write

    real_open = _os.open

    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith(".tmp"):
            _os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(_os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "face.png", lambda f: f.write(b"png"))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    atomic_write(tmp_path / "face.png", lambda f: f.write(b"png"))      # and it still works
    assert (tmp_path / "face.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]
