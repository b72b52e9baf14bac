"""Train the DCGAN on CelebA (or any image folder): ``python -m rawgan.train --out RUN_DIR``.

What a run writes into RUN_DIR:

    metrics.jsonl           one JSON object per log step: step, epoch, batch, time, elapsed_s,
                            sec_per_step, d_loss_real, d_loss_fake, d_loss, g_loss,
                            d_real (mean D(x)) and d_fake (mean D(G(z))) from the D update's
                            passes, d_fake_g (mean D(G(z)) in the last G update); with
                            --eval-every N also {step, kid, kid_std, kid_n, eval_s} every N
                            steps (KID, --eval-n generated vs real; rawgan.eval.KIDMonitor)
    samples/train_EE_SSSSSS.png   8x8 grid of G(fixed z) in eval mode (BN running statistics), at
                            step 0, every --sample-every steps, at the end and on Ctrl-C
    checkpoints/ckpt_SSSSSS.npz   every --checkpoint-every steps, at the end and on Ctrl-C
                            (see rawgan.checkpoint); the newest --keep-checkpoints are kept
    tb/                     TensorBoard events (tensorboard --logdir RUN_DIR/tb)

The cadence is the paper's (Zhu et al. 2018 / carpedm20/DCGAN-tensorflow): one D update and
``--g-steps`` (2) G updates on the same z per step, losses every 20 steps, samples every 100,
checkpoints every 500. A "step" is one such iteration; steps count from 1 and ``step`` in the
logs is the number of iterations completed.

Resuming: ``python -m rawgan.train --out RUN_DIR --resume`` continues from the newest checkpoint
in RUN_DIR/checkpoints; ``--resume PATH`` from checkpoint PATH (a file, or a checkpoints or run
folder standing for its newest checkpoint). It continues exactly where the checkpoint was taken:
same data order (epoch + batch position), same z stream (Philox state), Adam moments and step
counts, BN running statistics, step counter. On the NumPy backend N steps + resume + N steps give
bitwise the same weights and losses as 2N steps straight.
Every setting not given on the command line is the checkpoint's: --data, --data-dir,
--prepared-dir, --epochs/--max-steps, --lr, --beta1, --g-steps, --log-every, --sample-every,
--checkpoint-every, --keep-checkpoints and the model/data-order settings. The model and data-order
settings (--data, --ngf, --ndf, --seed, --batch-size, --z-dist) cannot change: a different value is
an error. The others may (the change is printed); --max-steps and --epochs count from the start of
the run, and --epochs alone on resume drops the checkpoint's --max-steps. --backend, --conv-impl,
--workers, --no-tensorboard and --eval-every/--eval-n are per invocation, never taken from the checkpoint: a run may move
between numpy and cupy. The checkpoint records the data's identity (image count and a digest of
the prepared index's source list); resuming on other data is an error, while the same images in
another place (--data-dir) are fine. --resume PATH from another run folder continues that run in
--out only if --out holds no run yet (metrics, samples and checkpoints so far stay where they are).

One run per folder: RUN_DIR/.lock is locked (flock) for the run's lifetime, so a second training
into the same --out exits 2 naming the pid of the first. A fresh run (no --resume) refuses an --out
that already holds a run (metrics.jsonl, samples or checkpoints).

Ctrl-C (SIGINT) finishes the current step, writes a sample grid and a checkpoint and prints the
command that resumes (``--out RUN_DIR --resume``); a second Ctrl-C quits at once without saving.
Losses are checked for NaN/Inf at log steps (the only host syncs), and losses, weights, BN and Adam
statistics before every checkpoint; NumPy's floating-point warnings are silenced in the loop since
non-finite values are reported this way. --conv-impl with --backend numpy is an error.

Exit codes: 0 done, nothing left to do, or interrupted with a checkpoint saved; 1 the run diverged
(a loss, weight or statistic became NaN/Inf: no checkpoint is written from the broken state, the
last good one is named, metrics so far stay in metrics.jsonl); 2 bad flags, missing or different
data, unreadable or incompatible checkpoint, RUN_DIR in use, holding another run, or not writable;
130 a second Ctrl-C (nothing saved).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from .cpu_threads import configure_cpu_threads

configure_cpu_threads()  # before NumPy loads OpenBLAS (see rawgan/cpu_threads.py)

import numpy as np  # noqa: E402

from . import checkpoint as ckpt_io
from .argtypes import nonnegative_int, positive_float, positive_int
from .checkpoint import CheckpointError
from .data import (BatchLoader, DataError, ShardDataset, default_data_dir, ensure_prepared,
                   make_grid, save_grid)

# The run's settings with their defaults. A resumed run takes every setting the user does not give
# on the command line from the checkpoint's config (then these defaults, for older checkpoints).
# FIXED_ON_RESUME ones define the model or the data/z order: giving a different value on resume is
# an error. --backend, --conv-impl, --workers and --no-tensorboard are per invocation, not settings.
DEFAULTS = {
    # model and data order
    "data": "celeba", "batch_size": 64, "seed": 0, "ngf": 64, "ndf": 64, "z_dim": 100,
    "z_dist": "uniform",
    # where the data is (None: $RAWGAN_DATA_DIR or ./data/celeba; the per-source cache folder)
    "data_dir": None, "prepared_dir": None,
    # length, optimiser
    "epochs": 5, "max_steps": None, "lr": 2e-4, "beta1": 0.5, "g_steps": 2,
    # cadence of logs, samples and checkpoints
    "log_every": 20, "sample_every": 100, "checkpoint_every": 500, "keep_checkpoints": 3,
}
FIXED_ON_RESUME = ("data", "batch_size", "seed", "ngf", "ndf", "z_dim", "z_dist")
SAMPLE_GRID = 64          # images in a sample grid (8x8)


class UsageError(Exception):
    """A bad combination of flags or an incompatible checkpoint (exit code 2)."""


class Diverged(Exception):
    """A loss, a weight or a BN/Adam statistic became NaN/Inf (exit code 1)."""


# ----------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rawgan.train",
        description="Train the DCGAN (Radford et al.; sizes and cadence of Zhu et al. 2018) on "
                    "64x64 CelebA faces. Hyper-parameter defaults are the paper's.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Data location: --data-dir, else $RAWGAN_DATA_DIR, else ./data/celeba. The first run "
               "prepares 64x64 shards into a cache (see python -m rawgan.data --help).\n"
               "Resume: python -m rawgan.train --out RUN_DIR --resume (newest checkpoint in "
               "RUN_DIR/checkpoints; every setting not given is the checkpoint's).\n"
               "Exit codes: 0 done (or interrupted, checkpoint saved); 1 the run diverged "
               "(NaN/Inf); 2 bad flags, data or checkpoint, run folder in use or not writable; "
               "130 a second Ctrl-C.")
    g = p.add_argument_group("data and output")
    g.add_argument("--data", choices=("celeba", "folder"),
                   help="celeba: aligned & cropped CelebA (108x108 centre crop); folder: any "
                        "images, centre square crop (default: celeba)")
    g.add_argument("--data-dir", help="raw images: folder or zip (default: $RAWGAN_DATA_DIR or "
                                      "./data/celeba)")
    g.add_argument("--prepared-dir", help="where the 64x64 shards live / are written (default: a "
                                          "per-source folder under $RAWGAN_CACHE or ~/.cache/rawgan)")
    g.add_argument("--workers", type=positive_int, help="processes for preparing the shards "
                                                          "(default: all cores)")
    g.add_argument("--out", required=True, help="run folder (metrics, samples, checkpoints, tb)")

    g = p.add_argument_group("training (defaults: the paper's)")
    g.add_argument("--epochs", type=positive_int, help="epochs (default: 5)")
    g.add_argument("--max-steps", type=positive_int,
                   help="stop after this many steps in total; overrides --epochs (default: "
                        "--epochs worth)")
    g.add_argument("--batch-size", type=positive_int, help="images per batch (default: 64)")
    g.add_argument("--lr", type=positive_float, help="Adam learning rate, both nets (default: 2e-4)")
    g.add_argument("--beta1", type=float, help="Adam beta1 (default: 0.5)")
    g.add_argument("--g-steps", type=positive_int,
                   help="G updates per D update, on the same z (default: 2, as the TF reference)")
    g.add_argument("--z-dist", choices=("uniform", "normal"),
                   help="z ~ uniform(-1, 1) (TF reference) or N(0, 1) (default: uniform)")
    g.add_argument("--seed", type=nonnegative_int,
                   help="weights, data order, z stream and the fixed sample z (default: 0)")
    g.add_argument("--ngf", type=positive_int, help="generator width (default: 64)")
    g.add_argument("--ndf", type=positive_int, help="discriminator width (default: 64)")

    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=("numpy", "emulated", "cupy"), default="numpy",
                   help="numpy: reference; cupy: GPU; emulated: the CUDA code on the CPU "
                        "(slow; for testing) (default: numpy, also on resume)")
    g.add_argument("--conv-impl", choices=("kernels", "cudnn"),
                   help="convolutions on cupy/emulated: our kernels or cuDNN (default: kernels; "
                        "an error with --backend numpy)")

    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-every", type=positive_int, help="default: 20")
    g.add_argument("--sample-every", type=positive_int, help="default: 100")
    g.add_argument("--checkpoint-every", type=positive_int, help="default: 500")
    g.add_argument("--keep-checkpoints", type=nonnegative_int,
                   help="keep the newest N checkpoints, 0 = all (default: 3)")
    g.add_argument("--resume", nargs="?", const="auto", metavar="PATH",
                   help="continue from the newest checkpoint in RUN_DIR/checkpoints (flag alone), "
                        "or from checkpoint PATH (a file, or a folder: its newest checkpoint); "
                        "settings not given are the checkpoint's")
    g.add_argument("--no-tensorboard", action="store_true", help="don't write TensorBoard events")
    g.add_argument("--eval-every", type=positive_int, metavar="N",
                   help="KID every N steps, into metrics.jsonl and TensorBoard (needs pip "
                        "install \".[eval]\"; per invocation; default: off)")
    g.add_argument("--eval-n", type=positive_int, default=1000,
                   help="generated and real images per KID (default: 1000)")
    return p


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def given_settings(args) -> dict:
    """The DEFAULTS keys the user gave on the command line (argparse defaults are None), with
    paths made absolute."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    for key in ("data_dir", "prepared_dir"):
        if key in given:
            given[key] = str(Path(given[key]).expanduser().absolute())
    return given


def resolve_config(args, saved: dict | None) -> dict:
    """The run's settings: DEFAULTS, then the checkpoint's config (on resume), then the flags given.

    On resume two settings go with another one: --epochs given without --max-steps drops a
    --max-steps of the checkpoint (it would win over --epochs), and another --data-dir without
    --prepared-dir uses that source's default prepared folder, not the checkpoint's.
    ``config["_changed"]`` lists the changes against the checkpoint for printing.
    Raises UsageError when a flag contradicts a FIXED_ON_RESUME value of the checkpoint.
    """
    config = dict(DEFAULTS)
    given = given_settings(args)
    notes = []
    if saved is not None:
        config.update({k: saved[k] for k in DEFAULTS if k in saved})
        if "epochs" in given and "max_steps" not in given:
            given["max_steps"] = None
        if "data_dir" in given and given["data_dir"] != config["data_dir"] \
                and "prepared_dir" not in given:
            given["prepared_dir"] = None
    for key, value in given.items():
        if saved is not None and value != config[key]:
            if key in FIXED_ON_RESUME:
                raise UsageError(f"incompatible checkpoint: it was trained with {_flag(key)} "
                                 f"{config[key]}, not {value} (resume with the checkpoint's value)")
            notes.append(f"{_flag(key)} {config[key]} -> {value}")
        config[key] = value
    if not 0 <= config["beta1"] < 1:
        raise UsageError(f"--beta1 must be in [0, 1), got {config['beta1']}")
    config["_changed"] = notes
    return config


# ----------------------------------------------------------------------------------------------
# Pieces of a run


def metrics_to_host(B, metrics: dict) -> dict:
    """0-d backend arrays -> Python floats (one host synchronisation)."""
    return {k: float(B.to_numpy(v)) for k, v in metrics.items()}


def _all_finite(values: dict) -> bool:
    return all(math.isfinite(v) for v in values.values())


@contextlib.contextmanager
def frozen_buffers(net):
    """Run train-mode forwards without changing ``net``'s BN running statistics."""
    saved = [(buf, buf.copy()) for _, buf in net.named_buffers()]
    try:
        yield
    finally:
        for buf, copy in saved:
            buf[...] = copy


class StopRequest:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after the current step (so the
    checkpoint holds a consistent state); a second one interrupts at once, without saving."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing the current step, then saving a checkpoint "
              "(Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def resume_command(args) -> str:
    """The command that continues this run: the settings come from the checkpoint, so only the
    run folder and the per-invocation flags (backend, conv-impl, no-tensorboard) are needed."""
    parts = ["python -m rawgan.train", "--out", shlex.quote(str(args.out)), "--resume"]
    if args.backend != "numpy":
        parts += ["--backend", args.backend]
    if args.conv_impl is not None:
        parts += ["--conv-impl", args.conv_impl]
    if args.no_tensorboard:
        parts.append("--no-tensorboard")
    return " ".join(parts)


def run_contents(out: Path) -> list:
    """What of a run ``out`` holds: "metrics.jsonl", "samples/", "checkpoints/" (non-empty)."""
    found = ["metrics.jsonl"] if (out / "metrics.jsonl").exists() else []
    for sub in ("samples", "checkpoints"):
        if (out / sub).is_dir() and any((out / sub).iterdir()):
            found.append(sub + "/")
    return found


class RunFolder:
    """RUN_DIR, created if needed and locked (``flock`` on RUN_DIR/.lock, which holds the pid) while
    the ``with`` block runs, so that two trainings never write into one folder. A folder this
    created and that still holds nothing but the lock file at the end is removed again (a run that
    failed before its first step leaves no trace).

    Raises UsageError when the folder cannot be created or another run holds the lock.
    """

    def __init__(self, out):
        self.out = Path(out)
        self.created = not self.out.exists()
        self.lock_path = self.out / ".lock"
        self._file = None

    def __enter__(self):
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._file = open(self.lock_path, "a+")
        except FileExistsError:
            raise UsageError(f"--out {self.out} exists and is not a folder") from None
        except OSError as e:
            raise UsageError(f"cannot create or write the run folder {self.out} "
                             f"({e.strerror or e})") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            pid = self._file.read().strip() or "unknown"
            self._file.close()
            raise UsageError(f"another training run is using {self.out} (pid {pid}); wait for it "
                             f"to end or choose another --out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            if self.created and [p.name for p in self.out.iterdir()] == [self.lock_path.name]:
                self.lock_path.unlink()
                self.out.rmdir()
        self._file.close()                                  # releases the lock


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop metrics.jsonl records after ``last_step`` (left by a run that went on past its last
    checkpoint), so that a resumed run's log has each step once. Atomic rewrite."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class Trainer:
    """One training run: model, data, z stream, and the log/sample/checkpoint cadence."""

    def __init__(self, args, config: dict, B, model, loader, resume_ckpt: dict | None):
        from .backend import Generator
        from .tblog import TBLogger

        self.args, self.config, self.B, self.model, self.loader = args, config, B, model, loader
        self.out = Path(args.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.sample_dir = self.out / "samples"
        self.metrics_path = self.out / "metrics.jsonl"
        bpe = loader.batches_per_epoch
        self.total_steps = config["max_steps"] or config["epochs"] * bpe   # --max-steps wins

        if resume_ckpt is None:
            self.step, self.epoch, self.batch = 0, 0, 0
            # The fixed sample z is the first draw of the z stream; training z's follow it.
            self.z_gen = Generator(config["seed"])
            self.sample_z = self.draw_z(SAMPLE_GRID)
        else:
            extra = resume_ckpt["extra"]
            self.step, self.epoch, self.batch = int(extra["step"]), int(extra["epoch"]), int(extra["batch"])
            self.z_gen = Generator(0)
            self.z_gen.load_state_dict(extra["z_rng"])
            self.sample_z = B.asarray(extra["sample_z"])
            trim_metrics(self.metrics_path, self.step)
        self.last_ckpt = resume_ckpt["path"] if resume_ckpt else None   # the last good one
        self.tb = TBLogger(self.out / "tb", purge_step=self.step if self.step else None,
                           enabled=not args.no_tensorboard)
        self.x = self.z = None          # the latest batch and z (for histograms)
        self.last_metrics = None        # the latest step's metrics (device scalars) ...
        self.last_epoch = self.epoch    # ... and the epoch that step belonged to
        self.overhead_s = 0.0           # time spent sampling/checkpointing since the last log
        self.last_log = (self.step, time.time())
        self.start_time = time.time()
        self.kid_monitor = None         # a rawgan.eval.KIDMonitor with --eval-every (see setup)

    # -- z --------------------------------------------------------------------------------------
    def draw_z(self, n: int):
        """(n, z_dim) from the Philox stream (advances it): uniform(-1, 1) or N(0, 1)."""
        shape = (n, self.config["z_dim"])
        if self.config["z_dist"] == "normal":
            return self.B.normal(self.z_gen, shape)
        return self.B.uniform(self.z_gen, shape, -1.0, 1.0)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        from tqdm import tqdm

        if self.step >= self.total_steps:
            print(f"nothing to do: the run is at step {self.step} of {self.total_steps}")
            return 0
        if self.step == 0:
            self.save_samples()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        try:
            # NaN/Inf are detected and reported (Diverged); NumPy's warnings would only add noise.
            with StopRequest() as stop, np.errstate(over="ignore", invalid="ignore",
                                                    divide="ignore"):
                self.loop(bar, stop)
                if stop.requested:
                    return self.interrupted()
        except Diverged as e:
            bar.close()
            where = (f"the last good checkpoint is {self.last_ckpt}" if self.last_ckpt
                     else "no checkpoint was written before it")
            print(f"error: the run diverged: {e}. Stopping without writing a checkpoint; try a "
                  f"lower --lr; {where}; metrics so far are in {self.metrics_path}.",
                  file=sys.stderr, flush=True)
            return 1
        finally:
            bar.close()
            self.tb.close()
        print(f"done: {self.step} steps; final checkpoint {self.last_ckpt}", flush=True)
        return 0

    def loop(self, bar, stop: StopRequest) -> None:
        model, B, g_steps = self.model, self.B, self.config["g_steps"]
        bpe = self.loader.batches_per_epoch
        while self.step < self.total_steps and not stop.requested:
            bar.set_description(f"epoch {self.epoch}")
            batches = self.loader.epoch_batches(self.epoch, self.batch)
            try:
                for x in batches:
                    self.x, self.z = B.asarray(x), self.draw_z(x.shape[0])
                    metrics = model.train_step(self.x, self.z, g_steps)
                    epoch_of_step = self.epoch
                    self.step += 1
                    self.batch += 1
                    if self.batch == bpe:                   # position of the *next* batch
                        self.epoch, self.batch = self.epoch + 1, 0
                    bar.update(1)
                    self.after_step(metrics, epoch_of_step, bar)
                    if self.step >= self.total_steps or stop.requested:
                        break
            finally:
                batches.close()

    def after_step(self, metrics: dict, epoch: int, bar) -> None:
        step, last = self.step, self.step >= self.total_steps
        host = None
        every = self.config
        if step % every["log_every"] == 0 or last:
            host = self.log(metrics, epoch, bar)
        if step % every["sample_every"] == 0 or last:
            self.save_samples(epoch)
        if self.kid_monitor is not None and step % self.args.eval_every == 0:
            t0 = time.time()                      # rawgan.eval.KIDMonitor (--eval-every)
            self.kid_monitor.log(self.model, step, self.metrics_path, self.tb)
            self.overhead_s += time.time() - t0
        if step % every["checkpoint_every"] == 0 or last:
            if host is None:                      # never checkpoint a state we haven't checked
                self.check_finite(metrics_to_host(self.B, metrics))
            self.save_checkpoint()
        self.last_metrics, self.last_epoch = metrics, epoch

    def check_finite(self, host: dict) -> None:
        if not _all_finite(host):
            bad = ", ".join(f"{k}={v}" for k, v in host.items() if not math.isfinite(v))
            raise Diverged(f"non-finite loss at step {self.step} ({bad})")

    def interrupted(self) -> int:
        print(f"interrupted at step {self.step}", file=sys.stderr, flush=True)
        if self.last_metrics is not None:
            self.check_finite(metrics_to_host(self.B, self.last_metrics))
            self.save_samples(self.last_epoch)
            path = self.save_checkpoint()
            print(f"saved checkpoint {path}\nresume with: {resume_command(self.args)}", flush=True)
        return 0

    # -- logging --------------------------------------------------------------------------------
    def log(self, metrics: dict, epoch: int, bar) -> dict:
        from tqdm import tqdm

        host = metrics_to_host(self.B, metrics)   # the one host sync of a log step
        now = time.time()
        steps = self.step - self.last_log[0]
        sec_per_step = (now - self.last_log[1] - self.overhead_s) / max(steps, 1)
        self.last_log, self.overhead_s = (self.step, now), 0.0
        record = {"step": self.step, "epoch": epoch, "batch": self.batch, "time": round(now, 3),
                  "elapsed_s": round(now - self.start_time, 3),
                  "sec_per_step": round(sec_per_step, 4)}
        record.update({k: (v if math.isfinite(v) else None) for k, v in host.items()})
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        tqdm.write(f"step {self.step:6d} epoch {epoch} | d_loss {host['d_loss']:.4f} "
                   f"(real {host['d_loss_real']:.4f} fake {host['d_loss_fake']:.4f}) "
                   f"g_loss {host['g_loss']:.4f} | D(x) {host['d_real']:.3f} "
                   f"D(G(z)) {host['d_fake']:.3f} | {sec_per_step:.2f} s/step", file=sys.stdout)
        sys.stdout.flush()
        bar.set_postfix(d_loss=f"{host['d_loss']:.3f}", g_loss=f"{host['g_loss']:.3f}")
        self.check_finite(host)
        self.tb.scalars({k: host[k] for k in ("d_loss_real", "d_loss_fake", "d_loss", "g_loss")},
                        self.step, prefix="loss/")
        self.tb.scalars({"D_x": host["d_real"], "D_G_z": host["d_fake"],
                         "D_G_z_g_update": host["d_fake_g"]}, self.step, prefix="D/")
        self.tb.scalars({"sec_per_step": sec_per_step}, self.step, prefix="perf/")
        return host

    def save_samples(self, epoch: int | None = None) -> Path:
        """8x8 grid of G(fixed z) in eval mode -> samples/train_EE_SSSSSS.png (+ TensorBoard)."""
        t0 = time.time()
        epoch = self.epoch if epoch is None else epoch
        images = self.B.to_numpy(self.model.sample(self.sample_z, eval_mode=True))
        path = save_grid(images, self.sample_dir / f"train_{epoch:02d}_{self.step:06d}.png")
        self.tb.image("samples", make_grid(images), self.step)
        self.log_histograms()
        self.tb.flush()
        self.overhead_s += time.time() - t0
        return path

    def log_histograms(self) -> None:
        """Weights of a few layers; z; D's logits on the latest real batch and on G(z) of the
        latest z (train mode, as in the step, with BN running statistics left untouched)."""
        if self.tb.writer is None:
            return
        for net_name, net in (("G", self.model.G), ("D", self.model.D)):
            named = [(n, p) for n, p, _ in net.named_params() if n.endswith(".w")]
            for name, p in (named[0], named[-1]):
                self.tb.histogram(f"weights/{net_name}.{name}", p, self.step)
        if self.x is None:
            return
        G, D = self.model.G, self.model.D
        with frozen_buffers(G), frozen_buffers(D):
            D.train()
            logits_real = D.forward(self.x)
            G.train()
            logits_fake = D.forward(G.forward(self.z))
        self.tb.histogram("z", self.z, self.step)
        self.tb.histogram("logits/D_x", logits_real, self.step)
        self.tb.histogram("logits/D_G_z", logits_fake, self.step)

    def save_checkpoint(self) -> Path:
        t0 = time.time()
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        try:
            path = ckpt_io.save_checkpoint(
                ckpt_io.checkpoint_path(self.ckpt_dir, self.step), self.model,
                {"step": self.step, "epoch": self.epoch, "batch": self.batch,
                 "z_rng": self.z_gen.state_dict(), "config": config,
                 "config_json": json.dumps(config, sort_keys=True),
                 "sample_z": np.array(self.B.to_numpy(self.sample_z))})
        except ckpt_io.NonFiniteState as e:          # finite losses, but the state blew up
            raise Diverged(f"non-finite values in {e.tensor} at step {self.step}") from None
        self.last_ckpt = path
        ckpt_io.prune_checkpoints(self.ckpt_dir, self.config["keep_checkpoints"])
        self.overhead_s += time.time() - t0
        return path


# ----------------------------------------------------------------------------------------------
# Entry point


def dataset_identity(dataset) -> dict:
    """What makes a prepared dataset this one: its image count and a digest of its index's source
    list (the image files, in the order the shards hold them)."""
    sources = "\n".join(dataset.index.get("sources", []))
    return {"images": len(dataset), "sources_sha256": hashlib.sha256(sources.encode()).hexdigest()}


def check_same_data(saved: dict, identity: dict, data_dir) -> None:
    """Raise UsageError when a resumed run's data is not the checkpoint's (checkpoints of older
    versions carry no identity; for them only the batch position is checked, in setup)."""
    then = saved.get("dataset")
    if then is None or then == identity:
        return
    if then["images"] != identity["images"]:
        now = f"{data_dir} gives {identity['images']}"
    else:
        now = f"the {identity['images']} images of {data_dir} are other files"
    raise UsageError(f"the checkpoint was trained on other data ({then['images']} images from "
                     f"{saved.get('data_dir')}; {now}); resume with the data it was trained on "
                     f"(--data-dir, --prepared-dir), or start a new run")


def find_resume_checkpoint(args, out: Path) -> dict | None:
    """The loaded checkpoint to resume from (None for a fresh run), after the run-folder checks:
    a fresh run needs an --out without a run in it; --resume PATH from another run folder may only
    continue into an --out without one."""
    ckpt_dir = out / "checkpoints"
    held = run_contents(out)
    if args.resume is None:
        if held:
            hint = ("continue it with --resume" if ckpt_io.latest_checkpoint(ckpt_dir)
                    else "it has no checkpoint to resume; delete it")
            raise UsageError(f"{out} already holds a run ({', '.join(held)}); {hint} or choose "
                             f"another --out")
        return None
    if args.resume == "auto":
        path = ckpt_io.latest_checkpoint(ckpt_dir)
        if path is None:
            raise UsageError(f"--resume: no checkpoint in {ckpt_dir}")
    else:
        path = ckpt_io.find_checkpoint(args.resume)
    ckpt = ckpt_io.load_checkpoint(path)
    for key in ("step", "epoch", "batch", "z_rng", "sample_z", "config"):
        if key not in ckpt["extra"]:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; not a training checkpoint")
    if path.resolve().parent != ckpt_dir.resolve():
        if held:
            raise UsageError(f"--resume {path} belongs to another run folder, and {out} already "
                             f"holds a run ({', '.join(held)}); continue that run with --out "
                             f"{path.parent.parent}, or into a new, empty --out")
        print(f"note: continuing the run of {path} in {out} (its earlier metrics and samples "
              f"stay in {path.parent.parent})")
    return ckpt


def setup(args, out: Path) -> Trainer:
    """Everything before the first step, in the locked run folder ``out``; raises DataError /
    CheckpointError / UsageError."""
    from .backend import get_backend
    from .models.dcgan import DCGAN

    if args.conv_impl is not None and args.backend == "numpy":
        raise UsageError("--conv-impl applies to --backend cupy/emulated only")
    resume_ckpt = find_resume_checkpoint(args, out)
    saved = resume_ckpt["extra"]["config"] if resume_ckpt else None
    config = resolve_config(args, saved)

    if config["data_dir"] is None:
        config["data_dir"] = str(default_data_dir().expanduser().absolute())
    prepared = ensure_prepared(config["data"], Path(config["data_dir"]),
                               out_dir=config["prepared_dir"], workers=args.workers)
    dataset = ShardDataset(prepared)
    identity = dataset_identity(dataset)
    loader = BatchLoader(dataset, config["batch_size"], seed=config["seed"])
    if resume_ckpt is not None:
        check_same_data(saved, identity, config["data_dir"])
        batch = int(resume_ckpt["extra"]["batch"])
        if not 0 <= batch < loader.batches_per_epoch:
            raise UsageError(f"the checkpoint is at batch {batch} of an epoch, but the data has "
                             f"{loader.batches_per_epoch} batches per epoch ({len(dataset)} "
                             f"images); resume with the data it was trained on")
    conv_impl = None if args.backend == "numpy" else (args.conv_impl or "kernels")
    config.update(dataset=identity, backend=args.backend, conv_impl=conv_impl)

    try:
        B = get_backend(args.backend, **({"conv_impl": conv_impl} if conv_impl else {}))
    except (ValueError, RuntimeError, ImportError) as e:
        raise UsageError(str(e)) from None
    model = DCGAN(B, z_dim=config["z_dim"], ngf=config["ngf"], ndf=config["ndf"], lr=config["lr"],
                  beta1=config["beta1"], seed=config["seed"])
    if resume_ckpt is not None:
        ckpt_io.restore(model, resume_ckpt)
        for opt in (model.opt_G, model.opt_D):        # a changed --lr/--beta1 wins
            opt.lr, opt.beta1 = config["lr"], config["beta1"]

    print(f"rawgan.train: {len(dataset)} images in {prepared}, {loader.batches_per_epoch} "
          f"batches per epoch; backend {B}")
    print(f"G: {model.G.num_params():,} parameters   D: {model.D.num_params():,} parameters")
    shown = {k: v for k, v in config.items() if not k.startswith("_")}
    print("config: " + json.dumps(shown, sort_keys=True))
    if resume_ckpt is not None:
        e = resume_ckpt["extra"]
        print(f"resuming from {resume_ckpt['path']} at step {e['step']} (epoch {e['epoch']}, "
              f"batch {e['batch']})" + ("; changed: " + ", ".join(config["_changed"])
                                        if config["_changed"] else ""))
    sys.stdout.flush()
    trainer = Trainer(args, config, B, model, loader, resume_ckpt)
    if args.eval_every:                   # KID at a cadence: rawgan.eval holds the logic
        from .eval import make_kid_monitor
        trainer.kid_monitor = make_kid_monitor(dataset, args.eval_n, config, UsageError)
    return trainer


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with RunFolder(args.out) as folder:
            return setup(args, folder.out).run()
    except (DataError, CheckpointError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:              # writing the run folder (disk full, permissions)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
