"""The prepared-data format: uint8 NHWC ``.npy`` shards plus ``index.json``, and a reader.

A prepared folder holds::

    index.json                   written last; its presence means "complete"
    shard-00-of-12.npy ...       uint8 arrays of shape (n_k, 64, 64, 3), NHWC, RGB
    report.json                  what the last preparation did (skipped files with reasons)

Every file is written atomically (:func:`rawgan.hostio.atomic_write`), and
``index.json`` is replaced only after all shards are in place, so an interrupted preparation never
leaves a set that looks valid. ``index.json`` records for each shard its file name, image count,
byte size and sha256, and the range of source candidates it was made from (a range whose files
were all skipped gets no shard and no entry, so the numbers in the file names can have gaps); see
:func:`rawgan.data.preparation.prepare` for the other fields.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..hostio import atomic_write
from .errors import DataError

INDEX_NAME = "index.json"
REPORT_NAME = "report.json"
FORMAT_VERSION = 1


def shard_name(k: int, num_shards: int) -> str:
    return f"shard-{k:02d}-of-{num_shards:02d}.npy"


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=1) + "\n").encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


class _HashingWriter:
    """File-like wrapper that sha256-hashes everything written through it (np.save only needs
    ``write``), so a shard's checksum costs no second read."""

    def __init__(self, f):
        self.f, self.sha, self.nbytes = f, hashlib.sha256(), 0

    def write(self, b) -> int:
        self.sha.update(b)
        self.nbytes += len(b)
        return self.f.write(b)


def write_shard(path, images: np.ndarray) -> dict:
    """Save a uint8 (n, H, W, 3) array as an ``.npy`` file atomically.

    Returns ``{"bytes": size, "sha256": hex digest of the file}``.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    result = {}

    def write(f):
        w = _HashingWriter(f)
        np.save(w, images, allow_pickle=False)
        result.update(bytes=w.nbytes, sha256=w.sha.hexdigest())

    atomic_write(path, write)
    return result


def file_sha256(path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_INDEX_KEYS = {"kind": str, "source": str, "count": int, "num_shards": int, "image_shape": list,
               "shards": list, "sources": list, "skipped": list}
_ENTRY_KEYS = {"file": str, "count": int, "bytes": int, "sha256": str, "candidates": list, "first": int}


def read_index(prepared_dir) -> dict | None:
    """The parsed ``index.json`` of ``prepared_dir``, or None if it is missing, unreadable, of
    another format version, or lacks a field (or has one of the wrong type) that the readers use."""
    try:
        with open(Path(prepared_dir) / INDEX_NAME, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("version") != FORMAT_VERSION:
        return None
    if not _has_fields(index, _INDEX_KEYS) or len(index["image_shape"]) != 3:
        return None
    if not all(isinstance(e, dict) and _has_fields(e, _ENTRY_KEYS) for e in index["shards"]):
        return None
    return index


def _has_fields(obj: dict, types: dict) -> bool:
    return all(isinstance(obj.get(k), t) for k, t in types.items())


def shard_ok(prepared_dir, entry: dict, verify: bool) -> bool:
    """Whether the shard described by the index ``entry`` is present and intact: the file exists
    with the recorded byte size, and (``verify=True``) its sha256 matches."""
    path = Path(prepared_dir) / entry["file"]
    try:
        return path.stat().st_size == entry["bytes"] and (
            not verify or file_sha256(path) == entry["sha256"])
    except OSError:  # missing or unreadable
        return False


def index_ok(prepared_dir, index: dict | None, verify: bool) -> bool:
    """Whether every shard listed in ``index`` is intact (see :func:`shard_ok`)."""
    return bool(index) and all(shard_ok(prepared_dir, e, verify) for e in index["shards"])


VERIFIED_NAME = ".verified.json"


def verify_shards(prepared_dir, index: dict) -> list:
    """The file names of shards in ``index`` whose sha256 does not match (or that are missing).

    Each shard's bytes are read once per prepared dataset: a shard that passes is recorded in
    ``<prepared_dir>/.verified.json`` with its size, mtime and checksum, and is re-read only when
    one of them changes (the file was rewritten or touched, or the index names another
    checksum). Writing the record is best effort (a read-only folder just verifies every time).
    """
    path = Path(prepared_dir)
    try:
        cached = json.loads((path / VERIFIED_NAME).read_text())
        cached = cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        cached = {}
    verdicts, bad = {}, []
    for entry in index["shards"]:
        name = entry["file"]
        try:
            st = (path / name).stat()
        except OSError:
            bad.append(name)
            continue
        key = [st.st_size, st.st_mtime_ns, entry["sha256"]]
        if cached.get(name) == key or (st.st_size == entry["bytes"]
                                       and file_sha256(path / name) == entry["sha256"]):
            verdicts[name] = key
        else:
            bad.append(name)
    if verdicts != cached:
        try:
            write_json(path / VERIFIED_NAME, verdicts)
        except OSError:
            pass
    return bad


def _not_prepared(prepared_dir, why: str) -> DataError:
    return DataError(f"{prepared_dir} is not a usable prepared dataset ({why}); run "
                     "`python -m rawgan.data prepare --data celeba --data-dir DIR` first")


class ShardDataset:
    """Read-only view of a prepared folder; the shards are memory-mapped, not loaded.

    ``len(ds)`` is the number of images; ``ds.images(indices)`` returns them as a new uint8 array
    of shape (n, 64, 64, 3) (NHWC, RGB, 0..255); ``ds[i]`` returns one (64, 64, 3) image.
    ``ds.index`` is the parsed ``index.json`` and ``ds.image_shape`` is ``(64, 64, 3)``.

    Raises :class:`DataError` when the folder has no valid index or a shard is missing or has the
    wrong size. With ``verify=True`` the shards' sha256 checksums are checked too (reads every byte).
    """

    def __init__(self, prepared_dir, verify: bool = False):
        self.path = Path(prepared_dir)
        index = read_index(self.path)
        if index is None:
            raise _not_prepared(self.path, f"no readable, complete {INDEX_NAME} of format version "
                                           f"{FORMAT_VERSION}")
        self.index = index
        self.image_shape = tuple(index["image_shape"])
        self._shards = []
        for entry in index["shards"]:
            if not shard_ok(self.path, entry, verify):
                raise _not_prepared(self.path, f"shard {entry['file']} is missing or damaged")
            try:
                arr = np.load(self.path / entry["file"], mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:  # right size, but not a readable .npy array
                raise _not_prepared(self.path, f"shard {entry['file']} is not a readable .npy "
                                               f"array ({type(e).__name__})") from None
            if arr.dtype != np.uint8 or arr.shape != (entry["count"],) + self.image_shape:
                raise _not_prepared(self.path, f"shard {entry['file']} has shape {arr.shape} "
                                               f"and dtype {arr.dtype}, not as the index says")
            self._shards.append(arr)
        counts = [len(a) for a in self._shards]
        # _starts[k] = global index of shard k's first image; the last element is len(self).
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._starts[-1] != index["count"]:
            raise _not_prepared(self.path, "shard counts do not add up to the index count")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images([i])[0]

    def images(self, indices) -> np.ndarray:
        """Gather images by global index (0 <= i < len(self), any order, repeats allowed).

        Returns a new uint8 array of shape (len(indices), 64, 64, 3). Raises IndexError for an
        index out of range.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"image index out of range 0..{n - 1}")
        out = np.empty((idx.size,) + self.image_shape, dtype=np.uint8)
        # Sort once; then each shard's requests are one contiguous run of the sorted indices.
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        cuts = np.searchsorted(sorted_idx, self._starts)
        for k, shard in enumerate(self._shards):
            a, b = cuts[k], cuts[k + 1]
            if a < b:
                out[order[a:b]] = shard[sorted_idx[a:b] - self._starts[k]]
        return out

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.path)!r}, {len(self)} images of {self.image_shape})"
