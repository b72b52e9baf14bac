"""Prepare the ignored folder ``.device/`` that a GPU check carries to a device machine.

    python bench/device_prepare.py                       # CelebA subset + cuDNN Frontend wheel
    python bench/device_prepare.py --images 1024 --no-wheel

The device machine gets the working tree plus at most 64 MiB of carried ignored paths, and no
``../shared``. This writes (``.device/`` is in .gitignore):

* ``.device/celeba64/`` — the first ``--images`` (default 2,048) JPEGs of the CelebA folder,
  prepared by ``rawgan.data`` exactly as training prepares them (108x108 centre crop, 64x64,
  12 uint8 shards + index.json): 2,048 x 12,288 bytes = 25.2 MB (<= 30 MB is enforced). Training
  reads it with ``--prepared-dir .device/celeba64 --data-dir <a path that does not exist>`` (a
  prepared copy outlives its source).
* ``.device/wheels/`` — ``nvidia-cudnn-frontend==1.32.0`` for CPython 3.12 (the GPU image lacks
  it), fetched with ``pip download --no-deps --python-version 3.12 --only-binary=:all:``.

Then prints the total size and the exact ``run`` call (also in bench/RESULTS.md). Errors are one
``error:`` line, exit 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rawgan.argtypes import positive_int  # noqa: E402

DEVICE_DIR = ROOT / ".device"
DATA_MAX_BYTES = 30 * 10**6            # the cap for the carried shards
CARRY_MAX_BYTES = 64 * 2**20           # the device tool's cap for all carried paths
WHEEL = "nvidia-cudnn-frontend==1.32.0"
# $RAWGAN_DATA_DIR, else the team's shared folder beside the checkout (../shared, or ../../shared
# from a worktree under wt/)
_SHARED = [ROOT.parent / "shared" / "data" / "celeba", ROOT.parent.parent / "shared" / "data" / "celeba"]
DEFAULT_SRC = Path(os.environ.get("RAWGAN_DATA_DIR")
                   or next((p for p in _SHARED if p.exists()), _SHARED[0]))
RUN_CALL = 'run(command="bash bench/gpu_check.sh", carry=[".device"], timeout_s=480)'


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def image_files(src: Path) -> list[Path]:
    """The CelebA JPEGs of ``src`` (a folder holding img_align_celeba/ or the images), sorted."""
    folder = src / "img_align_celeba" if (src / "img_align_celeba").is_dir() else src
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise ValueError(f"--src {src}: no .jpg images in {folder}")
    return files


def prepare_subset(src: Path, out: Path, n: int, workers: int) -> Path:
    """Shards of the first ``n`` images of ``src`` in ``out`` (rebuilt from scratch)."""
    from rawgan.data import DataError, prepare

    files = image_files(src)[:n]
    with tempfile.TemporaryDirectory(prefix="rawgan_subset_") as tmp:
        link_dir = Path(tmp) / "img_align_celeba"
        link_dir.mkdir()
        for f in files:
            (link_dir / f.name).symlink_to(f.resolve())
        if out.exists():
            shutil.rmtree(out)
        try:
            prepare("celeba", tmp, out, workers=workers, progress=False)
        except DataError as e:
            raise ValueError(str(e)) from None
    size = folder_bytes(out)
    if size > DATA_MAX_BYTES:
        raise ValueError(f"{out}: {size / 1e6:.1f} MB of shards exceeds {DATA_MAX_BYTES / 1e6:.0f} MB; "
                         f"use fewer --images")
    return out


def download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("nvidia_cudnn_frontend-*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--python-version", "3.12",
           "--only-binary=:all:", WHEEL, "-d", str(dest), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("nvidia_cudnn_frontend-1.32.0-cp312-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel written"]
        raise ValueError(f"pip download {WHEEL} failed: {tail[0]}")
    return wheels[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=DEFAULT_SRC,
                   help=f"CelebA folder (default: $RAWGAN_DATA_DIR or {DEFAULT_SRC})")
    p.add_argument("--images", type=positive_int, default=2048, help="images in the subset")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding processes")
    p.add_argument("--out", type=Path, default=DEVICE_DIR, help="default: .device")
    p.add_argument("--no-wheel", action="store_true", help="skip the cuDNN Frontend wheel")
    args = p.parse_args(argv)
    try:
        if not args.src.exists():
            raise ValueError(f"--src {args.src} does not exist")
        data = prepare_subset(args.src, args.out / "celeba64", args.images, args.workers)
        print(f"{data}: {args.images} images, {folder_bytes(data) / 1e6:.1f} MB")
        if not args.no_wheel:
            wheel = download_wheel(args.out / "wheels")
            print(f"{wheel}: {wheel.stat().st_size / 1e6:.1f} MB")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = folder_bytes(args.out)
    print(f"{args.out}: {total / 2**20:.1f} MiB to carry (limit {CARRY_MAX_BYTES / 2**20:.0f} MiB)")
    if total > CARRY_MAX_BYTES:
        print(f"error: {args.out} is over the carry limit", file=sys.stderr)
        return 2
    print(f"device call: {RUN_CALL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
