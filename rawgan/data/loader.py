"""Shuffled float32 NCHW batches from a :class:`~rawgan.data.shards.ShardDataset`, prefetched on a
background thread so that reading and converting images overlaps the training step."""
from __future__ import annotations

import queue
import threading

import numpy as np

from .errors import DataError

_POLL_S = 0.05  # how often a blocked producer looks at its stop event


def to_float_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, C) in 0..255 -> new float32 (n, C, H, W) in [-1, 1], computed as x/127.5 - 1."""
    # Transposing the uint8 data first, then casting contiguously, is ~20% faster than a strided cast.
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
    np.divide(x, np.float32(127.5), out=x)
    np.subtract(x, np.float32(1.0), out=x)
    return x


class BatchLoader:
    """Batches of a dataset in a fresh, seed-determined order every epoch.

    ``dataset`` needs ``len()`` and ``images(indices) -> uint8 (n, H, W, C)`` (a ShardDataset).
    Epoch ``e`` visits the images in the order ``np.random.default_rng([seed, e]).permutation(n)``;
    batch ``b`` is positions ``b*batch_size .. (b+1)*batch_size`` of that order. So an epoch is
    reproducible from ``(seed, epoch)`` alone and can be resumed at any batch without replaying the
    earlier ones. ``drop_last=True`` drops the final short batch (every batch then has exactly
    ``batch_size`` images). ``prefetch`` batches are prepared ahead on a background thread
    (``prefetch=0``: produced synchronously in the caller's thread). ``as_uint8=True`` yields the
    stored uint8 (n, 64, 64, 3) NHWC images instead, for a GPU program that uploads 4x fewer bytes
    and scales on the device (same order, same indices).

    Raises :class:`DataError` when ``drop_last`` is set and the dataset is smaller than one batch.
    """

    def __init__(self, dataset, batch_size: int, seed: int, drop_last: bool = True, prefetch: int = 2,
                 as_uint8: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.prefetch = int(prefetch)
        self.convert = _as_is if as_uint8 else to_float_nchw
        n = len(dataset)
        self.batches_per_epoch = n // self.batch_size if drop_last else -(-n // self.batch_size)
        if self.batches_per_epoch == 0:
            raise DataError(f"the dataset has {n} images, fewer than one batch of {self.batch_size}")

    def permutation(self, epoch: int) -> np.ndarray:
        """The int64 order in which epoch ``epoch`` visits the dataset's images."""
        return np.random.default_rng([self.seed, int(epoch)]).permutation(len(self.dataset))

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Dataset indices of batch ``batch`` of epoch ``epoch``."""
        return self.permutation(epoch)[batch * self.batch_size:(batch + 1) * self.batch_size]

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> "EpochIterator":
        """Iterator over the batches ``start_batch .. batches_per_epoch - 1`` of epoch ``epoch``.

        Yields new float32 arrays of shape (batch_size, C, H, W) (NCHW; (3, 64, 64) images) with
        values in [-1, 1]. Close it (``close()``, a ``with`` block, or just dropping it) to stop the
        background thread early; an exception raised while producing is re-raised here.
        """
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch must be in 0..{self.batches_per_epoch}, got {start_batch}")
        order = self.permutation(epoch)
        starts = range(start_batch * self.batch_size, self.batches_per_epoch * self.batch_size,
                       self.batch_size)
        jobs = (order[s:s + self.batch_size] for s in starts)
        return EpochIterator(self.dataset, jobs, self.prefetch, self.convert)

    def __repr__(self) -> str:
        return (f"BatchLoader({len(self.dataset)} images, batch_size={self.batch_size}, "
                f"seed={self.seed}, batches_per_epoch={self.batches_per_epoch})")


def _as_is(images: np.ndarray) -> np.ndarray:
    return images


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def _produce(dataset, jobs, convert, out: queue.Queue, stop: threading.Event) -> None:
    """Thread body: put converted batches, then _END (or a _Failure), until ``stop`` is set.

    It must not reference the EpochIterator, so that dropping the iterator lets it be collected
    (and its ``__del__`` stop this thread)."""
    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    try:
        for idx in jobs:
            if stop.is_set() or not put(convert(dataset.images(idx))):
                return
        put(_END)
    except BaseException as e:  # handed to the consumer
        put(_Failure(e))


class EpochIterator:
    """Iterator returned by :meth:`BatchLoader.epoch_batches`; also a context manager."""

    def __init__(self, dataset, jobs, prefetch: int, convert):
        self._dataset, self._jobs, self._convert = dataset, jobs, convert
        self._thread = None
        self._done = False
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=_produce, name="rawgan-data-loader", daemon=True,
                                            args=(dataset, jobs, convert, self._queue, self._stop))
            self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        if self._thread is None:  # synchronous mode
            try:
                return self._convert(self._dataset.images(next(self._jobs)))
            except StopIteration:
                self._done = True
                raise
        item = self._queue.get()
        if item is _END or isinstance(item, _Failure):
            self.close()
            if item is _END:
                raise StopIteration
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the producer thread and drop prefetched batches. Safe to call more than once."""
        self._done = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._thread = None
            while not self._queue.empty():  # free the prefetched batches now
                self._queue.get_nowait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
