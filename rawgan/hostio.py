"""Host-side helpers every part of rawgan shares, each defined here once: copying an array to the
host (:func:`to_host`), writing a file atomically (:func:`atomic_write`), the cache root
(:func:`cache_root`) and free-space checks (:func:`check_free_space`).

Imports nothing but NumPy, so the backends, the data pipeline and the programs can all use it.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import numpy as np


def to_host(a) -> np.ndarray:
    """A NumPy copy of ``a`` on the host: a CuPy array (or the emulator's DeviceArray, which mirrors
    it) is copied from the device (``.get()``, which synchronises), anything else goes through
    ``np.array`` (a copy, so later in-place updates of
    ``a`` cannot change it)."""
    if hasattr(a, "get") and hasattr(a, "shape"):    # cupy.ndarray (and the emulator's twin)
        return a.get()
    return np.array(a)


def cache_root() -> Path:
    """``$RAWGAN_CACHE`` if set and non-empty, else ``~/.cache/rawgan`` (not created here)."""
    env = os.environ.get("RAWGAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "rawgan"


def atomic_write(path, write, fsync: bool = True) -> Path:
    """Create or replace ``path`` atomically: ``write(fileobj)`` fills a temporary file
    ``.<name>.<random>.tmp`` in the same folder, which is flushed (and fsync'ed), given the mode a
    plain ``open`` would give (0666 minus the umask; 0644 on a default system) and renamed over
    ``path``; then the folder is fsync'ed so the rename is durable. A reader never sees a half
    file under ``path``; on any error (or KeyboardInterrupt) the temporary file is removed and the
    exception propagates. A kill -9 can leave the temporary file behind; :func:`remove_stale_tmp`
    clears such leftovers. Returns ``path`` as a Path.

    Raises OSError (disk full, permissions) with ``filename`` set to ``path``.
    """
    path = Path(path)
    # The temporary name is chosen BEFORE the file exists and the file is created inside the
    # try: an interrupt (Ctrl-C, or SIGTERM turned into one) between creating it and entering the
    # try — possible with tempfile.mkstemp, which creates and names it in one call — would
    # otherwise leave a stray .tmp behind (seen in CI).
    tmp = None
    try:
        while True:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # minus umask
                break
            except FileExistsError:
                continue
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if e.filename != str(path):     # name the file the user knows, not the temporary one
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def remove_stale_tmp(directory, name: str) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files in ``directory`` (what a killed :func:`atomic_write` of a file
    called ``name`` leaves; ``name`` may be a glob such as ``ckpt_*.npz``). Returns the removed."""
    removed = []
    for p in Path(directory).glob(f".{name}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); silently skipped where folders can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_bytes(path) -> int:
    """Bytes available to this user on the file system holding ``path`` (its nearest existing
    ancestor, so a folder not created yet works)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def human_bytes(n: float) -> str:
    """``123.4 MB`` style (powers of 1000, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(path, needed: int, what: str) -> str | None:
    """None if the file system of ``path`` has ``needed`` bytes free, else a one-line message
    naming ``what``, the path, the space needed and the space free."""
    free = free_bytes(path)
    if free >= needed:
        return None
    return (f"not enough disk space for {what} at {path}: needs {human_bytes(needed)}, "
            f"{human_bytes(free)} free")
