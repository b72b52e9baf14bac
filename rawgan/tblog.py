"""A small TensorBoard writer (tensorboardX) that never lets a bad value crash a training run.

DCGAN users report runs dying inside the histogram summary once a value turns NaN (a failure
often reported against DCGAN-tensorflow). Here every value is moved to the host and filtered first: NaN/Inf entries are
dropped from histograms with one warning per tag, and a histogram with no finite value is skipped.
If tensorboardX is not installed, the logger is a no-op that says so once.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from .hostio import to_host


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
        self._warned: set = set()
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            print("warning: tensorboardX is not installed; TensorBoard logging is off "
                  "(pip install tensorboardX)", file=sys.stderr)
            return
        self.writer = SummaryWriter(logdir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        """One scalar per ``{tag: float}`` entry; non-finite values are skipped with a warning."""
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
        if self.writer is None:
            return
        self.writer.add_image(tag, picture_hwc_uint8, step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _warn(self, tag: str, message: str) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
