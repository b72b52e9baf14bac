"""Prepare raw images once into 64x64 uint8 shards (see :mod:`rawgan.data.shards` for the format).

What happens to one image (:func:`decode`):

1. Decode with Pillow and fully load it. Truncated files are *not* tolerated (Pillow's default,
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False), so a truncated JPEG is skipped here instead
   of failing hours into a training run. Empty files and files Pillow cannot identify (e.g. a
   ``.jpg`` that is really text) are skipped too; each skip is listed with its reason in
   ``report.json`` and in the index.
2. Convert to RGB (:func:`to_rgb`): images with transparency (RGBA, LA, PA, palette with a
   transparent colour) are composited onto white; high-bit-depth greyscale is first scaled to 8
   bits (:func:`to_8bit`, below); every other mode (L, P, CMYK, YCbCr, ...) goes through Pillow's
   ``convert("RGB")``. Pillow undoes the inverted CMYK that Adobe writes in JPEGs; the CMYK -> RGB
   conversion itself is Pillow's plain formula (no ICC colour management). EXIF orientation is
   ignored (pixels are used as stored).

   High bit depth (Pillow's own ``convert`` would *clip* these to 0..255, turning a 16-bit picture
   almost white), each value v becomes round(...) of:

   * ``I;16`` (16-bit PNG/TIFF, any byte order): v / 257, so 0..65535 -> 0..255 exactly;
   * ``I`` (32-bit int): v / 257 if all values lie in 0..65535 (how Pillow stores 16-bit data in
     mode I), otherwise (v - min) * 255 / (max - min), the image's actual range (a constant
     image becomes 0);
   * ``F`` (32-bit float): v * 255 if all values lie in [0, 1], otherwise v clipped to [0, 255];
     NaN becomes 0.
3. Crop (:func:`crop_box`):

   * ``celeba``: the 108x108 square whose top-left corner is at row round((H - 108) / 2), column
     round((W - 108) / 2) -- (55, 35) for the standard 178x218 aligned images -- as in
     carpedm20/DCGAN-tensorflow (``round`` is Python 3's, half to even). Images smaller than 108
     on a side are skipped with that reason.
   * ``folder``: the largest centred square, side min(H, W), corner at round((H - side) / 2),
     round((W - side) / 2). Any size is accepted: a square smaller than 64 is upsampled (it is
   kept, not skipped, because a folder of small icons is a legitimate dataset), and such images
   are listed in ``report.json`` ("upsampled", reason "smaller than 64 px: upsampled"), counted
   in a warning line and in ``python -m rawgan.data info``.
4. Resize to 64x64 with Pillow's ``Image.Resampling.BICUBIC`` filter (cubic convolution, a = -0.5,
   widened by the downscale factor so it also antialiases), giving uint8 (64, 64, 3) HWC RGB.

Decoding runs on a process pool over all cores (``ProcessPoolExecutor.map`` in chunks, results in
order) with a tqdm bar on stderr. Output goes to ``--out`` or a cache folder
(:func:`default_prepared_dir`), because the data folder may be read-only.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..hostio import cache_root, check_free_space
from . import shards as fmt
from .errors import DataError
from ..argtypes import stop_signals_interrupt
from .sources import KINDS, Reader, Source, default_data_dir, find_source

IMAGE_SIZE = 64
CELEBA_CROP = 108
RESAMPLE = Image.Resampling.BICUBIC
RESAMPLE_NAME = "PIL.Image.Resampling.BICUBIC"
DEFAULT_SHARDS = 12

# Recorded in the index; a prepared set is reused only if these match exactly.
_CROP_RULES = {
    "celeba": {"rule": "center", "size": CELEBA_CROP,
               "offset": "row round((H-108)/2), col round((W-108)/2); (55, 35) for 178x218",
               "small_images": "skipped"},
    "folder": {"rule": "center-square", "size": "min(H, W)",
               "offset": "row round((H-side)/2), col round((W-side)/2)",
               "small_images": "upsampled"},
}
_COLOR_RULE = ("RGB; transparency composited onto white; I;16 v/257, I v/257 or min-max, F [0,1]*255 "
               "or clip, then L; other modes via PIL convert('RGB')")


def settings(kind: str) -> dict:
    """The preprocessing settings recorded in (and compared against) ``index.json``."""
    return {
        "kind": kind,
        "image_shape": [IMAGE_SIZE, IMAGE_SIZE, 3],
        "dtype": "uint8",
        "layout": "NHWC",
        "color": _COLOR_RULE,
        "crop": _CROP_RULES[kind],
        "resize": {"size": [IMAGE_SIZE, IMAGE_SIZE], "filter": RESAMPLE_NAME},
    }


# ----------------------------------------------------------------------------------------------
# One image


class Skip(Exception):
    """Raised by :func:`decode` for a file that cannot be used; ``str()`` is the reason."""


def to_8bit(img: Image.Image) -> Image.Image:
    """Scale a high-bit-depth greyscale image (modes ``I;16*``, ``I``, ``F``) to an 8-bit ``L``
    image, by the rules in the module docstring; other modes are returned unchanged."""
    mode = img.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return img
    v = np.asarray(img).astype(np.float64)
    if mode == "F":
        v = np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=0.0)
        v = v * 255.0 if v.size and v.min() >= 0 and v.max() <= 1 else v
    elif mode.startswith("I;16") or not v.size or (v.min() >= 0 and v.max() <= 65535):
        v = v / 257.0
    else:  # 32-bit values beyond 16 bits: stretch the image's own range
        lo, hi = v.min(), v.max()
        v = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return Image.fromarray(np.clip(np.rint(v), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Return an RGB version of ``img`` (see the module docstring for the rules per mode)."""
    if img.mode == "RGB":
        return img
    img = to_8bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def crop_box(kind: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Pillow crop box (left, upper, right, lower) in pixels for an image of ``width`` x ``height``.

    Raises :class:`Skip` for a CelebA image smaller than 108 pixels on a side.
    """
    if kind == "celeba":
        side = CELEBA_CROP
        if width < side or height < side:
            raise Skip(f"image is {width}x{height}, smaller than the {side}x{side} CelebA crop")
    else:
        side = min(width, height)
    top = int(round((height - side) / 2))
    left = int(round((width - side) / 2))
    return left, top, left + side, top + side


def decode(data: bytes, kind: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one file's bytes into a uint8 (64, 64, 3) RGB array.

    Returns ``(image, (width, height))`` with the source size in pixels. Raises :class:`Skip`
    with a one-line reason for an empty, unidentifiable, truncated or too-small file.
    """
    if not data:
        raise Skip("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # raises on truncated data: LOAD_TRUNCATED_IMAGES stays False on purpose
            size = img.size
            rgb = to_rgb(img)
    except UnidentifiedImageError:
        raise Skip("not an image (Pillow cannot identify the file format)") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        raise Skip(f"cannot decode: {type(e).__name__}: {e}") from None
    small = rgb.crop(crop_box(kind, *size)).resize((IMAGE_SIZE, IMAGE_SIZE), RESAMPLE)
    return np.asarray(small, dtype=np.uint8), size


# ----------------------------------------------------------------------------------------------
# Many images, in parallel

_worker_state: dict = {}


def _init_worker(source_type: str, path: str, kind: str) -> None:
    """Pool initializer: one reader per process; Ctrl-C is left to the parent, which stops the pool
    (SIGTERM/SIGHUP get their default action back: the parent's handlers are inherited on fork)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _worker_state.update(reader=Reader(source_type, path), kind=kind)


def _work(task: tuple[int, str]):
    """Worker body: ``(position, name) -> (position, image or None, size or None, skip reason)``."""
    pos, name = task
    try:
        data = _worker_state["reader"].read(name)
        image, size = decode(data, _worker_state["kind"])
        return pos, image, size, None
    except Skip as s:
        return pos, None, None, str(s)
    except Exception as e:  # unreadable file, bad zip member (CRC error), ...
        return pos, None, None, f"cannot read: {type(e).__name__}: {e}"


def _decode_all(source: Source, tasks: list, workers: int, progress: bool):
    """Yield :func:`_work` results for ``tasks`` in order, on ``workers`` processes (in this
    process when ``workers`` is 1)."""
    bar = tqdm(total=len(tasks), desc=f"prepare {source.kind}", unit="img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    initargs = (source.type, str(source.path), source.kind)
    try:
        if workers <= 1:
            _worker_state.update(reader=Reader(source.type, source.path), kind=source.kind)
            try:
                for t in tasks:
                    yield _work(t)
                    bar.update()
            finally:
                _worker_state.pop("reader").close()
        else:
            # A ProcessPoolExecutor (unlike multiprocessing.Pool) raises BrokenProcessPool instead
            # of hanging when a worker dies, e.g. killed for memory.
            chunksize = max(1, min(64, len(tasks) // (workers * 8)))
            pool = ProcessPoolExecutor(workers, multiprocessing.get_context(), _init_worker, initargs)
            try:
                with stop_signals_interrupt():
                    for result in pool.map(_work, tasks, chunksize=chunksize):
                        yield result
                        bar.update()
            except BrokenProcessPool:
                raise DataError(f"a decoding process died (killed for memory?); try fewer "
                                f"--workers than {workers}") from None
            except BaseException:    # Ctrl-C, SIGTERM, SIGHUP, an error: stop the workers now
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------
# Locations


def default_cache_dir() -> Path:
    """``$RAWGAN_CACHE`` if set, else ``~/.cache/rawgan`` (:func:`rawgan.hostio.cache_root`)."""
    return cache_root()


def default_prepared_dir(kind: str, data_dir) -> Path:
    """``<cache>/prepared/<kind>-64-<12 hex of sha256(absolute data_dir)>``; one folder per source."""
    source = str(Path(data_dir).expanduser().resolve())
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    return default_cache_dir() / "prepared" / f"{kind}-{IMAGE_SIZE}-{digest}"


# ----------------------------------------------------------------------------------------------
# Preparation


@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` did. ``path`` is the prepared folder, ``count`` the number of
    images in it, ``skipped`` the ``{"file", "reason"}`` entries, ``rebuilt``/``reused`` shard
    numbers, ``seconds`` wall time, ``upsampled`` the ``{"file", "size", "reason"}`` entries of
    images smaller than 64 px (``folder`` kind) that were kept and upsampled."""

    path: Path
    count: int
    num_shards: int
    skipped: list = field(default_factory=list)
    rebuilt: list = field(default_factory=list)
    reused: list = field(default_factory=list)
    seconds: float = 0.0
    upsampled: list = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        """True when nothing had to be (re)written."""
        return not self.rebuilt


def _index_matches(index: dict | None, kind: str, source: Source | None, num_shards: int | None) -> bool:
    """Whether an existing index was made with the same settings from the same source listing
    (``source=None``: don't compare listings; ``num_shards=None``: accept any shard count)."""
    if not index or {k: index.get(k) for k in settings(kind)} != settings(kind):
        return False
    if num_shards is not None and index.get("num_shards") != num_shards:
        return False
    return source is None or index.get("listing") == _listing(source)


def _refuse_foreign(out: Path, old: dict | None, kind: str, source: Source) -> None:
    """Raise :class:`DataError` when ``out`` holds a valid index made from another source (another
    kind or source path): preparing into it would silently replace that dataset."""
    if old is None:
        return
    theirs = (old.get("kind"), old.get("source"))
    if theirs != (kind, str(source.path)):
        raise DataError(f"{out} holds prepared data of {theirs[1]} ({theirs[0]}), not of "
                        f"{source.path} ({kind}); pass another --out/--prepared-dir or delete it")


def _listing(source: Source) -> dict:
    return {"type": source.type, "files": len(source.files), "sha256": source.fingerprint()}


def _say(progress: bool):
    return (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)


def prepare_dataset(kind: str, data_dir, out_dir=None, num_shards: int = DEFAULT_SHARDS,
                    workers: int | None = None, progress: bool = True,
                    verify: bool = True) -> PrepareResult:
    """Prepare ``data_dir`` into shards; the full-report version of :func:`prepare`.

    Shards of an existing index made with the same settings, source listing and shard count are
    reused when intact (``verify=True``: sha256 checked; False: byte size only); the others are
    rebuilt. If ``data_dir`` does not exist but a valid prepared copy does, that copy is used.
    Raises :class:`DataError` (see :func:`prepare`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    t0 = time.perf_counter()
    say = _say(progress)
    out = Path(out_dir).expanduser() if out_dir is not None else default_prepared_dir(kind, data_dir)
    old = fmt.read_index(out)

    if not Path(data_dir).expanduser().exists() and _index_matches(old, kind, None, None) \
            and fmt.index_ok(out, old, verify=False):
        say(f"note: source {data_dir} not found; using the copy prepared from {old['source']} at {out}")
        return PrepareResult(out, old["count"], len(old["shards"]), _plain(old["skipped"]), [],
                             list(range(len(old["shards"]))), time.perf_counter() - t0)

    source = find_source(kind, data_dir)
    _refuse_foreign(out, old, kind, source)
    n = len(source.files)
    requested, num_shards = num_shards, min(num_shards, n)  # a shard per file at most
    bounds = [(k * n // num_shards, (k + 1) * n // num_shards) for k in range(num_shards)]
    names = [fmt.shard_name(k, num_shards) for k in range(num_shards)]

    reusable = [False] * num_shards
    if _index_matches(old, kind, source, num_shards):
        old_entries = {tuple(e["candidates"]): e for e in old["shards"]}
        # A range without an entry held only skipped files last time: nothing to rebuild.
        reusable = [tuple(b) not in old_entries or fmt.shard_ok(out, old_entries[tuple(b)], verify)
                    for b in bounds]
    if all(reusable):
        say(f"reusing prepared {kind} data at {out}: {old['count']} images in "
            f"{len(old['shards'])} shards, {'checksums' if verify else 'sizes'} OK")
        return PrepareResult(out, old["count"], len(old["shards"]), _plain(old["skipped"]), [],
                             list(range(num_shards)), time.perf_counter() - t0, _upsampled(old["shards"]))

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / fmt.INDEX_NAME).unlink(missing_ok=True)  # from here on the folder is "incomplete"
    except OSError as e:
        raise DataError(f"cannot write the prepared data to {out} ({e.strerror or e}); "
                        f"{_ELSEWHERE}") from None
    todo = [k for k in range(num_shards) if not reusable[k]]
    tasks = [(pos, source.files[pos]) for k in todo for pos in range(*bounds[k])]
    short = check_free_space(out, len(tasks) * IMAGE_SIZE * IMAGE_SIZE * 3 + (1 << 20),
                             f"the prepared data ({len(tasks)} images of 64x64x3 bytes)")
    if short:
        raise DataError(f"{short}; free some space or {_ELSEWHERE}")
    workers = max(1, min(workers or _cpu_count(), len(tasks)))
    say(f"preparing {kind} data from {source.path} ({n} files; {len(todo)} of {num_shards} shards "
        f"to build, {workers} worker{'s' * (workers > 1)}) into {out}")

    # Per shard: its index entry, the source names of its images, its skips, its source sizes.
    shard_info = {k: _old_shard_info(old, bounds[k]) for k in range(num_shards) if reusable[k]}
    results = _decode_all(source, tasks, workers, progress)
    try:
        for k in todo:
            start, stop = bounds[k]
            buf = np.empty((stop - start, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            kept, skipped, sizes, upsampled = [], [], Counter(), []
            for pos, image, size, reason in (next(results) for _ in range(start, stop)):
                if image is None:
                    skipped.append({"file": source.files[pos], "reason": reason, "candidate": pos})
                else:
                    buf[len(kept)] = image
                    kept.append(source.files[pos])
                    sizes[f"{size[0]}x{size[1]}"] += 1
                    if min(size) < IMAGE_SIZE:
                        upsampled.append({"file": source.files[pos], "size": f"{size[0]}x{size[1]}"})
            entry = None  # every file of this range was skipped: no empty shard file
            if kept:
                entry = {"file": names[k], "count": len(kept), "candidates": [start, stop],
                         "source_sizes": dict(sizes), "upsampled": upsampled}
                entry.update(fmt.write_shard(out / names[k], buf[:len(kept)]))
            shard_info[k] = (entry, kept, skipped)
    except OSError as e:  # reads are handled by _work; this is writing (disk full, ...)
        raise DataError(f"cannot write the prepared data: {e}; free some space or "
                        f"{_ELSEWHERE}") from None
    finally:
        results.close()

    entries, sources, skipped = [], [], []
    for k in range(num_shards):
        entry, kept, skips = shard_info[k]
        if entry is not None:
            entries.append(dict(entry, first=len(sources)))
        sources += kept
        skipped += skips
    count = len(sources)
    upsampled = _upsampled(entries)
    seconds = time.perf_counter() - t0
    report = {"source": str(source.path), "prepared": str(out), "date": _now(),
              "candidates": n, "count": count, "skipped_count": len(skipped),
              "rebuilt_shards": todo, "reused_shards": [k for k in range(num_shards) if reusable[k]],
              "seconds": round(seconds, 3),
              "skipped": _plain(skipped), "upsampled_count": len(upsampled),
              "upsampled": upsampled}
    _write_or_fail(out, fmt.REPORT_NAME, report)
    if count == 0:
        raise DataError(f"none of the {n} image files in {source.path} could be used (first: "
                        f"{skipped[0]['file']}: {skipped[0]['reason']}); reasons for all in "
                        f"{out / fmt.REPORT_NAME}")

    size_counts = Counter()
    for e in entries:
        size_counts.update(e["source_sizes"])
    index = {"format": "rawgan-shards", "version": fmt.FORMAT_VERSION, **settings(kind),
             "count": count, "num_shards": num_shards, "source": str(source.path),
             "source_type": source.type, "listing": _listing(source), "created": _now(),
             "pillow": PIL.__version__, "source_sizes": dict(size_counts), "shards": entries,
             "sources": sources, "skipped": skipped}
    _write_or_fail(out, fmt.INDEX_NAME, index)  # last: marks the set complete
    _remove_stale_shards(out, {e["file"] for e in entries})

    odd = {s: c for s, c in size_counts.items() if s != "178x218"}
    if kind == "celeba" and odd:
        say(f"warning: {sum(odd.values())} of {count} images are not 178x218 (e.g. {next(iter(odd))}); "
            "the aligned CelebA images are all 178x218 -- is this img_align_celeba?")
    if upsampled:
        say(f"warning: {len(upsampled)} of {count} images are smaller than {IMAGE_SIZE} px (e.g. "
            f"{upsampled[0]['file']}, {upsampled[0]['size']}) and were upsampled; listed in "
            f"{out / fmt.REPORT_NAME}")
    skip_note = (f"; skipped {len(skipped)} file{'s' * (len(skipped) != 1)}, reasons in "
                 f"{out / fmt.REPORT_NAME}" if skipped else "; nothing skipped")
    notes = []
    if num_shards < requested:
        notes.append(f"--shards {requested} capped at {num_shards}, one per file")
    if len(entries) < num_shards:
        empty = num_shards - len(entries)
        notes.append(f"{empty} shard{'s' * (empty > 1)} not written: all {'their' if empty > 1 else 'its'} "
                     "files were skipped")
    shard_note = f" ({'; '.join(notes)})" if notes else ""
    say(f"prepared {count} images ({IMAGE_SIZE}x{IMAGE_SIZE}) in {len(entries)} shards{shard_note} "
        f"at {out} (built {len(todo)}, reused {num_shards - len(todo)}) in {seconds:.1f} s{skip_note}")
    return PrepareResult(out, count, len(entries), report["skipped"], todo,
                         report["reused_shards"], seconds, upsampled)


# Where else prepared data can go, in the words of both programs that prepare it.
_ELSEWHERE = ("choose another folder (--prepared-dir of rawgan.train, --out of rawgan.data prepare) "
              "or set RAWGAN_CACHE")


def _write_or_fail(out: Path, name: str, obj: dict) -> None:
    try:
        fmt.write_json(out / name, obj)
    except OSError as e:
        raise DataError(f"cannot write the prepared data: {e}; free some space or "
                        f"{_ELSEWHERE}") from None


def _upsampled(entries: list) -> list:
    """The ``{"file", "size", "reason"}`` entries of upsampled images recorded in shard entries."""
    return [dict(u, reason=f"smaller than {IMAGE_SIZE} px: upsampled")
            for e in entries for u in e.get("upsampled", [])]


def _plain(skipped: list) -> list:
    """Skip entries as reported: ``{"file", "reason"}`` (the index also keeps the candidate number)."""
    return [{"file": s["file"], "reason": s["reason"]} for s in skipped]


def _old_shard_info(old: dict, bounds: tuple[int, int]):
    """(entry or None, source names, skip entries) of the shard made from candidates ``bounds`` in
    a previous index (no entry: all its files were skipped)."""
    skipped = [s for s in old["skipped"] if bounds[0] <= s["candidate"] < bounds[1]]
    for e in old["shards"]:
        if tuple(e["candidates"]) == tuple(bounds):
            kept = old["sources"][e["first"]:e["first"] + e["count"]]
            return {key: v for key, v in e.items() if key != "first"}, kept, skipped
    return None, [], skipped


def _remove_stale_shards(out: Path, keep: set) -> None:
    """Delete shard files of an earlier layout (another shard count) left in ``out``."""
    for p in out.glob("shard-*-of-*.npy"):
        if p.name not in keep:
            p.unlink(missing_ok=True)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def prepare(kind: str, data_dir, out_dir=None, num_shards: int = DEFAULT_SHARDS,
            workers: int | None = None, progress: bool = True) -> Path:
    """Prepare raw images into 64x64 uint8 NHWC shards and return the prepared folder.

    ``kind`` is ``"celeba"`` (108x108 centre crop, see the module docstring) or ``"folder"``
    (centre square crop, folder read recursively). ``data_dir`` is a folder or zip as described in
    :mod:`rawgan.data.sources`. ``out_dir`` defaults to :func:`default_prepared_dir`. The source
    candidates are split into ``num_shards`` contiguous ranges, at most one per file; a range
    whose files were all skipped writes no shard, so no shard is empty and there are never more
    shards than images (the summary line says when fewer than ``num_shards`` were written).
    ``workers`` decoding processes (default: all usable cores). ``progress`` shows a tqdm bar and
    status lines on stderr.

    A second call reuses intact shards (sha256 verified) when the settings and the source file
    listing are unchanged, and rebuilds missing or damaged ones. Undecodable files are skipped and
    listed with reasons in ``<out>/report.json``.

    Raises :class:`DataError` for a missing or empty source, a file that is not a zip, a zip
    without images, or when no file at all could be decoded.
    """
    return prepare_dataset(kind, data_dir, out_dir, num_shards, workers, progress).path


def ensure_prepared(kind: str, data_dir, out_dir=None, **kw) -> Path:
    """Like :func:`prepare`, but returns at once, silently, when a prepared set with the same
    settings and source listing exists and its shards are intact: recorded sizes, and sha256
    checksums read once per prepared set and then cached (:func:`shards.verify_shards`; a shard is
    re-read when its size or mtime changes). A damaged shard is rebuilt by :func:`prepare` (an
    error when the source is gone). Any shard count is accepted unless ``num_shards`` is passed.
    Otherwise calls :func:`prepare` with ``**kw``. Raises :class:`DataError` like ``prepare``.
    """
    out = Path(out_dir).expanduser() if out_dir is not None else default_prepared_dir(kind, data_dir)
    index = fmt.read_index(out)
    if index is not None and fmt.index_ok(out, index, verify=False):
        if not Path(data_dir).expanduser().exists():
            source = None  # prepared copy outlives its source: fine
        else:
            source = find_source(kind, data_dir)
        shards = kw.get("num_shards")
        if shards is not None and source is not None:
            shards = min(shards, len(source.files))  # as prepare_dataset caps it
        if _index_matches(index, kind, source, shards):
            bad = fmt.verify_shards(out, index)          # sha256 once, then a cached verdict
            if not bad:
                return out
            if source is None:
                raise DataError(f"shard {bad[0]} of the prepared data at {out} fails its sha256 "
                                f"checksum, and the source {data_dir} to rebuild it from is gone; "
                                f"restore the source or delete {out}")
            if kw.get("progress", True):
                print(f"note: {len(bad)} shard(s) at {out} fail their sha256 checksum "
                      f"({bad[0]}, ...); rebuilding them", file=sys.stderr, flush=True)
    return prepare(kind, data_dir, out, **kw)
