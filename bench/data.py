"""Data pipeline throughput: preparation (images/s per worker count) and the batch loader
(batches/s at batch 64), next to what one training step consumes.

    python bench/data.py                                  # the real folder, if present
    python bench/data.py --data-dir DIR --workers 1,2     # any CelebA-layout folder or zip
    python bench/data.py --synthetic 2000                 # generated 178x218 JPEGs

Preparation writes into a temporary folder (removed afterwards); the source is never modified.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import PIL  # noqa: E402
from PIL import Image  # noqa: E402

import rawgan.data as rd  # noqa: E402
from rawgan.data.sources import Reader, find_source  # noqa: E402

REAL = Path(os.environ.get("RAWGAN_DATA_DIR") or "/work/shared/data/celeba")
FULL_CELEBA = 202_599  # images in the full aligned CelebA
STEP_IMAGES = 64  # one DCGAN step consumes one batch of 64 real images
STEP_SECONDS = {"NumPy CPU step (~1 s)": 1.0, "GPU step (~5 ms)": 0.005}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def synthetic_folder(root: Path, n: int) -> Path:
    """n smooth random 178x218 RGB JPEGs in root/img_align_celeba/."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (28, 23, 3), dtype=np.uint8)
        Image.fromarray(small).resize((178, 218), Image.Resampling.BILINEAR).save(
            folder / f"{i + 1:06d}.jpg", quality=90)
    return root


def limited_folder(root: Path, source: Path, n: int) -> Path:
    """root/img_align_celeba/ with symlinks to the first n images of a CelebA folder."""
    images = source / "img_align_celeba" if (source / "img_align_celeba").is_dir() else source
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for f in sorted(images.glob("*.jpg"))[:n]:
        (folder / f.name).symlink_to(f.resolve())
    return root


def bench_prepare(data_dir, workers: int, tmp: Path):
    out = tmp / f"prepared-w{workers}"
    t0 = time.perf_counter()
    result = rd.prepare_dataset("celeba", data_dir, out, workers=workers, progress=False)
    return result, time.perf_counter() - t0


def bench_loader(ds, batch_size: int, batches: int, prefetch: int, as_uint8: bool = False) -> float:
    loader = rd.BatchLoader(ds, batch_size, seed=0, prefetch=prefetch, as_uint8=as_uint8)
    done, epoch = 0, 0
    t0 = time.perf_counter()
    while done < batches:
        with loader.epoch_batches(epoch) as it:
            for _ in it:
                done += 1
                if done == batches:
                    break
        epoch += 1
    return done / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help=f"CelebA folder or zip (default: $RAWGAN_DATA_DIR, else {REAL} if present)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (symlinks)")
    p.add_argument("--synthetic", type=int, default=None, help="generate N images instead")
    p.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma-separated worker counts")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=300, help="loader batches to time")
    args = p.parse_args(argv)

    print(f"# rawgan data bench, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
          f"NumPy {np.__version__}, Pillow {PIL.__version__}; load average {os.getloadavg()[0]:.1f} "
          "(other work on the machine slows every number below)")

    with tempfile.TemporaryDirectory(prefix="rawgan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.synthetic:
            data_dir, what = synthetic_folder(tmp / "src", args.synthetic), f"{args.synthetic} synthetic JPEGs"
        else:
            data_dir = Path(args.data_dir) if args.data_dir else (REAL if REAL.exists() else rd.default_data_dir())
            what = str(data_dir)
            if args.limit:
                data_dir = limited_folder(tmp / "src", data_dir, args.limit)
                what += f" (first {args.limit})"
        print(f"# source: {what}")
        source = find_source("celeba", data_dir)
        with Reader(source.type, source.path) as reader:  # warm the page cache: time decoding, not disk
            nbytes = sum(len(reader.read(name)) for name in source.files)
        print(f"# {len(source.files)} files, {nbytes / 2**20:.1f} MiB, read once before timing")

        print("\npreparation (decode + crop 108 + BICUBIC resize to 64 + write shards)")
        ds_dir = None
        for w in [int(s) for s in args.workers.split(",")]:
            result, seconds = bench_prepare(data_dir, w, tmp)
            rate = result.count / seconds
            print(f"  workers={w}: {result.count} images in {seconds:.2f} s = {rate:,.0f} images/s "
                  f"-> full CelebA ({FULL_CELEBA:,}) in ~{FULL_CELEBA / rate / 60:.1f} min")
            ds_dir = result.path
        t0 = time.perf_counter()
        rd.prepare("celeba", data_dir, ds_dir, progress=False)
        t_verify = time.perf_counter() - t0
        t0 = time.perf_counter()
        rd.ensure_prepared("celeba", data_dir, ds_dir)
        t_quick = time.perf_counter() - t0
        print(f"  reuse check: prepare (sha256 of every shard) {t_verify * 1e3:.0f} ms, "
              f"ensure_prepared (sizes only) {t_quick * 1e3:.0f} ms")

        ds = rd.ShardDataset(ds_dir)
        print(f"\nloader (batch {args.batch_size}, {args.batches} batches, shuffled gather from "
              f"memory-mapped shards + uint8 NHWC -> float32 NCHW [-1, 1])")
        rates = {}
        for prefetch in (0, 2):
            rates[prefetch] = bench_loader(ds, args.batch_size, args.batches, prefetch)
            label = "synchronous (prefetch=0)" if prefetch == 0 else f"background thread (prefetch={prefetch})"
            print(f"  {label}: {rates[prefetch]:,.0f} batches/s = "
                  f"{rates[prefetch] * args.batch_size:,.0f} images/s, "
                  f"{1e3 / rates[prefetch]:.2f} ms per batch")
        raw = bench_loader(ds, args.batch_size, args.batches, 2, as_uint8=True)
        print(f"  uint8 NHWC batches (as_uint8=True, for scaling on a GPU), prefetch=2: {raw:,.0f} batches/s, "
              f"{1e3 / raw:.2f} ms per batch")

        print(f"\nwhat training consumes ({STEP_IMAGES} images per step)")
        for name, s in STEP_SECONDS.items():
            need = 1 / s
            print(f"  {name}: needs {need:,.0f} batches/s; the loader gives {rates[2] / need:,.1f}x that; "
                  f"one batch takes {100 / (rates[2] * s):.1f}% of a step's time (overlapped by the "
                  f"background thread while the step runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
