"""The run folder and the run's lifetime: the lock, what a folder holds, the free-space check,
and the signals that stop a run.

One run per folder: RUN_DIR/.lock is locked (flock) for the run's lifetime, so a second training
into the same --out exits 2 naming the pid of the first. A run folder "holds a run" when it has a
checkpoint: a fresh run refuses it (continue it with --resume). A folder whose run died before its
first checkpoint (killed, disk full) holds nothing that can be resumed: a fresh run, or --resume,
takes it over (its metrics.jsonl, sample grids and TensorBoard events are removed, with a note).

Signals (:class:`Signals`): SIGINT (Ctrl-C), SIGTERM (what a scheduler sends before preemption)
and SIGHUP behave alike. Before the first step a signal stops at once (nothing to save yet; data
preparation stops its worker processes as the exception unwinds). During training the first
signal finishes the current step, then the run saves a sample grid and a checkpoint and exits 0;
a second signal quits at once with exit code 128 + its number (130, 143, 129), losing nothing
already on disk (checkpoints are written atomically).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
from pathlib import Path

from .checkpoint import list_checkpoints
from .hostio import atomic_write, check_free_space, remove_stale_tmp
from .runconfig import UsageError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the program at once; exit code ``128 + signum``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Signals:
    """SIGINT/SIGTERM/SIGHUP handlers for the ``with`` block (main thread only; elsewhere the
    handlers are left alone). Until :meth:`defer` a signal raises :class:`Interrupted`; after it,
    the first signal sets ``requested`` (the loop stops after the current step and saves) and a
    second raises :class:`Interrupted`. A file-size limit (SIGXFSZ) is turned into a write error
    (EFBIG, naming the file) instead of killing the process."""

    def __init__(self):
        self.requested = None          # the name of the signal that asked to stop, or None
        self.deferring = False
        self._old = {}
        self._pid = os.getpid()

    def __enter__(self):
        try:
            for s in STOP_SIGNALS + (signal.SIGXFSZ,):
                self._old[s] = signal.signal(s, signal.SIG_IGN if s == signal.SIGXFSZ
                                             else self._handle)
        except ValueError:             # not the main thread
            pass
        return self

    def defer(self) -> None:
        """From now on the first signal only asks the loop to stop after the current step."""
        self.deferring = True

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:   # a forked child (a decoding worker) not yet past its
            os._exit(128 + signum)     # own signal setup: die quietly, as the default would
        if not self.deferring or self.requested:
            raise Interrupted(signum)
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: finishing the current step, then saving a checkpoint "
              f"(again to quit without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def run_contents(out: Path) -> list:
    """What of a run ``out`` holds: "metrics.jsonl", "samples/", "checkpoints/", "tb/" (non-empty
    folders only)."""
    found = ["metrics.jsonl"] if (out / "metrics.jsonl").exists() else []
    for sub in ("samples", "checkpoints", "tb"):
        if (out / sub).is_dir() and any((out / sub).iterdir()):
            found.append(sub + "/")
    return found


def take_over(out: Path) -> list:
    """Start afresh in a run folder without checkpoints: remove the files of the earlier run that
    never wrote one (metrics.jsonl, samples/train_*.png, tb/events.*, stale temporary files).
    Returns what was removed, as :func:`run_contents` names it."""
    held = [h for h in run_contents(out) if h != "checkpoints/"]
    (out / "metrics.jsonl").unlink(missing_ok=True)
    for pattern in ("samples/train_*.png", "tb/events.out.tfevents.*"):
        for p in out.glob(pattern):
            p.unlink(missing_ok=True)
    remove_stale_tmp(out / "checkpoints", "ckpt_*.npz")
    return held


GRID_BYTES = (8 * 64 + 9 * 2) ** 2 * 3   # one raw 8x8 sample grid (64x64 images, 2-pixel padding)
SPACE_MARGIN_SAMPLES = 10                  # sample grids counted in the free-space check


def check_run_space(out: Path, ckpt_bytes: int, keep: int, checkpoints_to_come: int,
                    samples_to_come: int = 0, tensorboard: bool = False) -> None:
    """Raise UsageError unless RUN_DIR's file system has room for the checkpoints the run holds at
    once: ``ckpt_bytes`` x (keep + 1), since a new one is written before the oldest is pruned
    (keep 0 = all: x every checkpoint still to come), less the slots checkpoints already there
    take, plus a margin for the logs: the next min(``samples_to_come``, SPACE_MARGIN_SAMPLES)
    sample grids, each GRID_BYTES for its PNG (an upper bound: PNG compresses) and as much again
    for its TensorBoard image when ``tensorboard``. Later grids are not counted (a long run's logs
    outgrow any fixed estimate; a disk that fills later is a one-line error naming the file).
    Called before the first step, so a full disk fails in seconds, not hours later."""
    slots = keep + 1 if keep > 0 else checkpoints_to_come + 1
    needed = ckpt_bytes * max(1, slots - len(list_checkpoints(out / "checkpoints")))
    grids = min(samples_to_come, SPACE_MARGIN_SAMPLES)
    margin = grids * GRID_BYTES * (2 if tensorboard else 1)
    what = (f"checkpoints ({ckpt_bytes / 1e6:.1f} MB each, --keep-checkpoints {keep} + 1 being "
            f"written)")
    if margin:
        what += (f" and the next {grids} sample grids{' and TensorBoard events' if tensorboard else ''}"
                 f" ({margin / 1e6:.1f} MB)")
    message = check_free_space(out, needed + margin, what)
    if message:
        raise UsageError(message + "; free some space, choose another --out or lower "
                                   "--keep-checkpoints")


class RunFolder:
    """RUN_DIR, created if needed and locked (``flock`` on RUN_DIR/.lock, which holds the pid) while
    the ``with`` block runs, so that two trainings never write into one folder. A folder this
    created and that still holds nothing but the lock file at the end is removed again (a run that
    failed before its first step leaves no trace).

    Raises UsageError when ``out`` is empty, the folder cannot be created or another run holds
    the lock.
    """

    def __init__(self, out):
        if not str(out).strip():
            raise UsageError("--out is empty; name the run folder (an empty --out would train "
                             "into the current directory)")
        self.out = Path(out)
        self.created = not self.out.exists()
        self.lock_path = self.out / ".lock"
        self.used_before = self.lock_path.exists()    # a training has run here before
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
    data = "".join(line + "\n" for line in kept).encode()
    atomic_write(path, lambda f: f.write(data))
