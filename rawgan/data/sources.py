"""Find the raw images: a folder of images or a zip of images, listed in a fixed order.

Accepted layouts for ``--data celeba --data-dir DIR`` (first match wins):

1. ``DIR`` is a zip file (normally the official ``img_align_celeba.zip``);
2. ``DIR/img_align_celeba/`` holds the images (``DIR/img_align_celeba/img_align_celeba/`` too,
   which some unzip tools produce);
3. ``DIR`` holds the images directly;
4. ``DIR/img_align_celeba.zip`` exists.

For CelebA only the top level of the image folder is read (``*.jpg`` etc., not subfolders).
``--data folder --data-dir DIR`` reads DIR *recursively* (or a zip given as DIR), so a folder
of class subfolders works as is.

Image files are recognised by extension (:data:`IMAGE_EXTENSIONS`, case-insensitive). Hidden files
(name starting with ``.``, e.g. macOS ``._000001.jpg``) and ``__MACOSX/`` entries of zips are
ignored silently; every other candidate is decoded later, and one that fails is *skipped with a
reason*, never silently dropped. Candidates are sorted by their name (relative POSIX path in a
folder, member name in a zip), so the order is the same on every machine.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CELEBA_HINT, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CELEBA_FOLDER = "img_align_celeba"
CELEBA_ZIP = "img_align_celeba.zip"
KINDS = ("celeba", "folder")


@dataclass(frozen=True)
class Source:
    """A listed image source.

    ``path`` is the image folder or the zip file actually read, ``type`` is ``"folder"`` or
    ``"zip"``, ``files`` the candidate names in order and ``sizes`` their sizes in bytes.
    """

    kind: str
    path: Path
    type: str
    files: tuple[str, ...]
    sizes: tuple[int, ...]

    def fingerprint(self) -> str:
        """sha256 (hex) over every candidate's name and byte size: changes when files are added,
        removed, renamed or change size; does not change when the folder is copied elsewhere."""
        h = hashlib.sha256()
        for name, size in zip(self.files, self.sizes):
            h.update(f"{name}\t{size}\n".encode("utf-8"))
        return h.hexdigest()


def default_data_dir() -> Path:
    """Where the raw CelebA data is looked for by default: ``$RAWGAN_DATA_DIR`` if set, else
    ``./data/celeba`` (relative to the current directory)."""
    return Path(os.environ.get("RAWGAN_DATA_DIR") or "data/celeba")


def _expected(kind: str) -> str:
    if kind == "celeba":
        return (f"expected a folder holding {CELEBA_FOLDER}/*.jpg, a folder of the .jpg files, "
                f"or {CELEBA_ZIP}")
    return "expected a folder of images (read recursively) or a .zip of images"


def _hint(kind: str) -> str:
    return CELEBA_HINT if kind == "celeba" else "pass --data-dir pointing at your image folder"


def _fail(kind: str, problem: str) -> DataError:
    return DataError(f"{problem}; {_expected(kind)}. {_hint(kind)}")


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _size(path) -> int:
    """Byte size of ``path``, or -1 when it cannot be read (e.g. a dangling symlink): such a file
    stays a candidate and is skipped later with the read error as its reason."""
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _raise(err: OSError):
    raise err


def _list_folder(folder: Path, recursive: bool) -> tuple[list[str], list[int]]:
    """Image candidates in ``folder`` (sorted names, sizes). Raises OSError for an unreadable folder."""
    entries = []
    if recursive:
        for root, dirs, files in os.walk(folder, onerror=_raise):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(root).relative_to(folder).as_posix()
            for f in files:
                if _is_image_name(f):
                    name = f if rel == "." else f"{rel}/{f}"
                    entries.append((name, _size(os.path.join(root, f))))
    else:
        with os.scandir(folder) as it:
            for e in it:
                # a dangling symlink counts (skipped later with its reason); FIFOs etc. do not
                if (e.is_file() or e.is_symlink() and not e.is_dir()) and _is_image_name(e.name):
                    entries.append((e.name, _size(e.path)))
    entries.sort()
    return [n for n, _ in entries], [s for _, s in entries]


def _list_or_fail(kind: str, folder: Path, recursive: bool) -> tuple[list[str], list[int]]:
    try:
        return _list_folder(folder, recursive)
    except OSError as e:
        raise _fail(kind, f"cannot read the folder {e.filename or folder} ({e.strerror or e})") from None


def _describe_non_zip(path: Path) -> str:
    """Say what a file that should be a zip looks like instead (the usual culprits: an HTML page,
    or a download cut short: it starts like a zip but its end-of-central-directory record, which
    zip readers look for at the end, is missing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not head:
        return "is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return (f"is an incomplete download (truncated zip: it starts like a zip archive but its end, "
                f"the central directory, is missing; {path.stat().st_size} bytes); download it again")
    low = head.lstrip().lower()
    if low.startswith(b"<") or b"<html" in low:
        return ("is an HTML page, not a zip archive (a download that saved an error, login or "
                "quota page under the zip's name); download the file again")
    return "is not a zip archive (no zip signature)"


def _zip_source(kind: str, path: Path) -> Source:
    if not zipfile.is_zipfile(path):
        raise _fail(kind, f"{path} {_describe_non_zip(path)}")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist()
                     if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                     and _is_image_name(i.filename)]
    except (zipfile.BadZipFile, OSError) as e:
        raise _fail(kind, f"cannot read zip archive {path} ({e})") from None
    if not infos:
        raise _fail(kind, f"zip archive {path} contains no image files ({', '.join(IMAGE_EXTENSIONS)})")
    infos.sort(key=lambda i: i.filename)
    return Source(kind, path.resolve(), "zip", tuple(i.filename for i in infos),
                  tuple(i.file_size for i in infos))


def find_source(kind: str, data_dir) -> Source:
    """Locate and list the raw images for ``kind`` (``"celeba"`` or ``"folder"``) under ``data_dir``.

    Returns a :class:`Source`. Raises :class:`DataError` when the path does not exist, a file given
    as the source is not a zip (e.g. an HTML page saved as ``img_align_celeba.zip``), or no image
    files are found.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    root = Path(data_dir).expanduser()
    if not root.exists():
        if kind == "folder" and root == default_data_dir().expanduser():
            raise DataError(f"image folder not found: {root.absolute()} is the default data folder, "
                            "the CelebA location ($RAWGAN_DATA_DIR or ./data/celeba); --data "
                            "folder needs --data-dir pointing at your image folder")
        what = "CelebA data folder" if kind == "celeba" else "image folder"
        raise _fail(kind, f"{what} not found: {root.absolute()}")
    if root.is_file():
        return _zip_source(kind, root)
    if not root.is_dir():
        raise _fail(kind, f"{root} is neither a folder nor a zip file")

    if kind == "folder":
        files, sizes = _list_or_fail(kind, root, recursive=True)
        if files:
            return Source(kind, root.resolve(), "folder", tuple(files), tuple(sizes))
        raise _fail(kind, f"no image files found in {root.absolute()}")

    for folder in (root / CELEBA_FOLDER, root / CELEBA_FOLDER / CELEBA_FOLDER, root):
        if folder.is_dir():
            files, sizes = _list_or_fail(kind, folder, recursive=False)
            if files:
                return Source(kind, folder.resolve(), "folder", tuple(files), tuple(sizes))
    if (root / CELEBA_ZIP).is_file():
        return _zip_source(kind, root / CELEBA_ZIP)
    nested = _first_subfolder_with_images(root)
    hint = (f"; images in subfolders (e.g. {nested}/)? use --data folder, which searches recursively"
            if nested else "")
    raise _fail(kind, f"no CelebA images found in {root.absolute()} (the folder is empty or holds "
                      f"no {', '.join(IMAGE_EXTENSIONS)} files at the top level{hint})")


def _first_subfolder_with_images(root: Path) -> str | None:
    """The first subfolder of ``root`` (relative POSIX path, any depth, walked in sorted order)
    that directly holds an image file, or None. Stops at the first one found."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if folder != str(root) and any(_is_image_name(f) for f in files):
            return Path(folder).relative_to(root).as_posix()
    return None


class Reader:
    """Reads one candidate's bytes by name. Open one per process (a zip handle is not shareable
    across processes); use as a context manager or call :meth:`close`."""

    def __init__(self, source_type: str, path):
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path) if source_type == "zip" else None

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        with open(self.path / name, "rb") as f:
            return f.read()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
