"""A small TensorBoard writer (tensorboardX) that never lets a bad value crash a training run.

DCGAN users report runs dying inside the histogram summary once a value turns NaN (a failure
often reported against DCGAN-tensorflow). Here every value is moved to the host and filtered first: NaN/Inf entries are
dropped from histograms with one warning per tag, and a histogram with no finite value is skipped.
If tensorboardX is not installed, the logger is a no-op that says so once.

tensorboardX writes from a background thread; when a write fails there (disk full, a file-size
limit) that thread dies and the next ``add_*`` used to block the training loop forever on the full
event queue, deaf to Ctrl-C. Here the thread's exception is caught (``threading.excepthook``) and
every call first checks that the thread is alive: a dead writer raises ``OSError`` naming the
``tb/`` folder (``python -m rawgan.train`` then exits 2 with one ``error:`` line; the disk is full,
so the next checkpoint could not be written either). The queue is made large (MAX_QUEUE) so a put
never waits on a writer that dies between the check and the put.
"""
from __future__ import annotations

import sys
import threading
import warnings

import numpy as np

from .hostio import to_host

MAX_QUEUE = 1000     # pending events (tensorboardX's default, 10, fills within one log step)


class TBLogger:
    """TensorBoard event files under ``log_dir``.

    Args:
        log_dir: folder for the event files (created).
        purge_step: on a resumed run, the step after the one it resumes from (the checkpoint's
            step + 1): TensorBoard then discards the earlier run's events at or after it, so
            curves don't overlap, while the checkpoint step's own scalars and images stay.
        enabled: False gives a logger that does nothing.
    """

    def __init__(self, log_dir, purge_step: int | None = None, enabled: bool = True):
        self.writer = None
        self.log_dir = log_dir
        self._warned: set = set()
        self._worker = None            # tensorboardX's writer thread
        self._error = None             # the exception that ended it
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            print("warning: tensorboardX is not installed; TensorBoard logging is off "
                  "(pip install tensorboardX)", file=sys.stderr)
            return
        self.writer = SummaryWriter(logdir=str(log_dir), purge_step=purge_step,
                                    max_queue=MAX_QUEUE)
        file_writer = getattr(self.writer, "file_writer", None)
        self._worker = getattr(getattr(file_writer, "event_writer", None), "_worker", None)
        _hook_thread_errors()
        _WATCHED[self._worker] = self

    def check(self) -> None:
        """Raise OSError naming ``log_dir`` if the writer thread has died (with its error)."""
        if self.writer is None or self._worker is None or self._worker.is_alive():
            return
        self.writer = None             # dead: never touch its queue again (it would block)
        self._raise_error()

    def _raise_error(self) -> None:
        e = self._error
        if isinstance(e, OSError):
            raise OSError(e.errno, f"{e.strerror or e} (TensorBoard events; --no-tensorboard "
                                   f"turns them off)", str(self.log_dir))
        raise OSError(f"the TensorBoard writer for {self.log_dir} stopped"
                      + (f" ({type(e).__name__}: {e})" if e else "")
                      + "; --no-tensorboard turns it off")

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        """One scalar per ``{tag: float}`` entry; non-finite values are skipped with a warning.
        Raises OSError (naming ``log_dir``) when the writer thread has died, as do all writes."""
        self.check()
        if self.writer is None:
            return
        for tag, v in values.items():
            v = float(v)
            if not np.isfinite(v):
                self._warn(prefix + tag, f"scalar {prefix + tag} is {v} at step {step}; not logged")
                continue
            self.writer.add_scalar(prefix + tag, v, step)

    def histogram(self, tag: str, values, step: int) -> None:
        """Histogram of any array (NumPy or CuPy, any shape); NaN/Inf entries are left out."""
        self.check()
        if self.writer is None:
            return
        v = to_host(values).astype(np.float64).ravel()
        finite = np.isfinite(v)
        if not finite.all():
            self._warn(tag, f"histogram {tag}: {int((~finite).sum())} of {v.size} values are "
                            f"NaN/Inf at step {step}; left out")
            v = v[finite]
        if v.size == 0:
            return
        self.writer.add_histogram(tag, v, step)

    def image(self, tag: str, picture_hwc_uint8: np.ndarray, step: int) -> None:
        """An RGB picture, uint8 (H, W, 3)."""
        self.check()
        if self.writer is None:
            return
        self.writer.add_image(tag, picture_hwc_uint8, step, dataformats="HWC")

    def flush(self) -> None:
        """Write pending events to disk; OSError (naming ``log_dir``) if that fails."""
        self.check()
        if self.writer is not None:
            try:
                self.writer.flush()
            except OSError as e:
                raise OSError(e.errno, e.strerror or str(e), str(self.log_dir)) from None
            self.check()

    def close(self, quiet: bool = False) -> None:
        """Flush and close (once; later calls do nothing). Raises OSError naming ``log_dir`` when
        that fails or the writer thread died, unless ``quiet`` (another error is being reported)."""
        try:
            self.check()                   # a dead writer's close() would block on its queue
            writer, self.writer = self.writer, None
            if writer is not None:
                try:
                    writer.close()
                except OSError as e:
                    raise OSError(e.errno, e.strerror or str(e), str(self.log_dir)) from None
                if self._error is not None:    # died writing the last events
                    self._raise_error()
        except OSError:
            if not quiet:
                raise
        finally:
            _WATCHED.pop(self._worker, None)

    def _warn(self, tag: str, message: str) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            warnings.warn(message, RuntimeWarning, stacklevel=3)


_WATCHED: dict = {}                   # writer thread -> its TBLogger
_previous_hook = None


def _hook_thread_errors() -> None:
    """Install (once) a threading.excepthook that records the exception ending a watched writer
    thread on its TBLogger instead of printing a traceback; other threads go to the previous
    hook."""
    global _previous_hook
    if _previous_hook is not None:
        return
    _previous_hook = threading.excepthook

    def hook(args):
        logger = _WATCHED.get(args.thread)
        if logger is None:
            return _previous_hook(args)
        logger._error = args.exc_value

    threading.excepthook = hook
