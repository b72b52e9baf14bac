"""Command line: ``python -m rawgan.data prepare ...`` and ``python -m rawgan.data info DIR``.

Problems with the data print ``error: <one line>`` on stderr and exit with status 2; Ctrl-C exits
with status 130, SIGTERM with 143 and SIGHUP with 129 (the decoding workers are stopped first).
The prepared folder's path is printed on stdout (status lines go to stderr).
"""
from __future__ import annotations

import argparse
import sys

from ..argtypes import positive_int, run_cli
from .errors import CELEBA_URL, DataError
from .preparation import DEFAULT_SHARDS, default_cache_dir, default_data_dir, prepare_dataset
from .shards import ShardDataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rawgan.data",
        description="Prepare CelebA (or any image folder) into 64x64 uint8 shards for rawgan.",
        epilog=f"CelebA: {CELEBA_URL} (Align&Cropped images, img_align_celeba.zip).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare", help="decode, crop and resize images into shards (reuses valid shards)",
        description="Decode, crop and resize images into 64x64 uint8 NHWC shards plus index.json. "
                    "celeba: 108x108 centre crop (row 55, col 35 on 178x218 images); folder: "
                    "centre square crop, read recursively. Both resize with Pillow BICUBIC. "
                    "Undecodable files are skipped and listed in report.json. A second run reuses "
                    "intact shards.",
        epilog=f"CelebA: {CELEBA_URL} (Align&Cropped images, img_align_celeba.zip).")
    p.add_argument("--data", choices=("celeba", "folder"), default="celeba",
                   help="dataset kind (default: celeba)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding img_align_celeba/ or the images, or img_align_celeba.zip "
                        f"(default: $RAWGAN_DATA_DIR or ./data/celeba, now {default_data_dir()})")
    p.add_argument("--out", "--prepared-dir", dest="out", default=None,
                   help=f"prepared folder, the one training's --prepared-dir reads (default: "
                        f"{default_cache_dir()}/prepared/<kind>-64-<hash>; cache root from "
                        "$RAWGAN_CACHE)")
    p.add_argument("--shards", type=positive_int, default=DEFAULT_SHARDS,
                   help=f"number of shard files (default: {DEFAULT_SHARDS})")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="decoding processes (default: all usable cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status lines")

    i = sub.add_parser("info", help="summarise a prepared folder",
                       description="Print the summary of a prepared folder and check its shards.")
    i.add_argument("prepared_dir")
    i.add_argument("--verify", action="store_true", help="also check the sha256 checksums")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args), (DataError,))


def _run(args) -> None:
    if args.command == "prepare":
        data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
        result = prepare_dataset(args.data, data_dir, args.out, num_shards=args.shards,
                                 workers=args.workers, progress=not args.quiet)
        print(result.path)
    else:
        ds = ShardDataset(args.prepared_dir, verify=args.verify)
        ix = ds.index
        upsampled = sum(len(e.get("upsampled", [])) for e in ix["shards"])
        print(f"{ds.path}: {len(ds)} images {tuple(ds.image_shape)} uint8 in "
              f"{len(ix['shards'])} shards; kind {ix['kind']}, from {ix['source']}; "
              f"filter {ix['resize']['filter']}; skipped {len(ix['skipped'])}; "
              f"upsampled {upsampled} (smaller than 64 px); "
              f"shard {'checksums' if args.verify else 'sizes'} OK")


if __name__ == "__main__":
    sys.exit(main())
