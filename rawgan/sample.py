"""Faces from a trained generator: ``python -m rawgan.sample --checkpoint CKPT --out grid.png``.

    --n 64              a grid of 64 new faces (8 per row), z from --seed
    --interpolate       the DCGAN paper's latent walk instead: --rows rows, each going linearly
                        from one random z to another in --steps images; the grid is
                        --rows x --steps, so --n does not apply (giving it is an error, as is
                        --rows/--steps without --interpolate)
    --batch-stats       sample with batch statistics in G's BatchNorm (the PyTorch example's way)
                        instead of the running averages (eval mode, the TF reference's way)

z is drawn from the same distribution as in training (the checkpoint's --z-dist). In eval mode
every image depends only on its own z; with --batch-stats an image also depends on the rest of
the batch. --checkpoint may name a checkpoints folder or a run folder: its newest checkpoint is
used. --out must end in .png (the picture is PNG); an existing file is replaced atomically.
Exit codes: 0 written, 2 missing/corrupt/incompatible checkpoint, bad flags or unwritable --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cpu_threads import configure_cpu_threads

configure_cpu_threads()  # before NumPy loads OpenBLAS (see rawgan/cpu_threads.py)

import numpy as np  # noqa: E402

from .argtypes import positive_int
from .checkpoint import CheckpointError, load_checkpoint, restore


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rawgan.sample",
                                description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint written by rawgan.train, or a checkpoints/run folder (its "
                        "newest checkpoint)")
    p.add_argument("--out", required=True, help="PNG file to write (name ending in .png)")
    p.add_argument("--n", type=positive_int,
                   help="faces in the grid (default: 64; not with --interpolate)")
    p.add_argument("--seed", type=int, default=0, help="z seed (default: 0)")
    p.add_argument("--interpolate", action="store_true",
                   help="write latent walks: each row interpolates between two random z's")
    p.add_argument("--rows", type=positive_int,
                   help="walks (rows) with --interpolate (default: 8)")
    p.add_argument("--steps", type=int,
                   help="images per walk, both ends included, with --interpolate (default: 8)")
    p.add_argument("--backend", choices=("numpy", "emulated", "cupy"), default="numpy",
                   help="default: numpy")
    p.add_argument("--batch-stats", action="store_true",
                   help="BatchNorm with batch statistics (PyTorch example) instead of running "
                        "averages (default: running averages, as the TF reference)")
    return p


def load_generator(path, backend: str = "numpy", with_meta: bool = False):
    """Rebuild the DCGAN of a training checkpoint and load its weights (optimizer state is skipped).

    Returns ``(model, config)``; ``config`` is the training config stored in the checkpoint.
    With ``with_meta``: ``(model, config, meta)``, meta = ``{"path": the checkpoint file read
    (a folder resolved to its newest checkpoint), "step": its step or None}``.
    Raises CheckpointError for a missing, corrupt or incompatible file, ValueError/RuntimeError
    for an unavailable backend.
    """
    from .backend import get_backend
    from .models.dcgan import DCGAN

    ckpt = load_checkpoint(path)
    config = ckpt["extra"].get("config", {})
    B = get_backend(backend)
    model = DCGAN(B, z_dim=config.get("z_dim", 100), ngf=config.get("ngf", 64),
                  ndf=config.get("ndf", 64))
    restore(model, ckpt, optimizers=False)
    if with_meta:
        return model, config, {"path": Path(ckpt["path"]), "step": ckpt["extra"].get("step")}
    return model, config


def draw_z(B, seed: int, n: int, z_dim: int, z_dist: str):
    """(n, z_dim) z's from the Philox stream of ``seed``: uniform(-1, 1) or N(0, 1)."""
    from .backend import Generator
    gen = Generator(seed)
    if z_dist == "normal":
        return B.normal(gen, (n, z_dim))
    return B.uniform(gen, (n, z_dim), -1.0, 1.0)


def interpolation_z(B, seed: int, rows: int, steps: int, z_dim: int, z_dist: str):
    """(rows*steps, z_dim): row r is z_a + t (z_b − z_a) for t = 0, 1/(steps−1), ..., 1, with z_a,
    z_b the r-th pair of random z's. Rows are contiguous, so an 8-wide grid shows one walk a row."""
    ends = B.to_numpy(draw_z(B, seed, 2 * rows, z_dim, z_dist)).reshape(rows, 2, z_dim)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float64)[None, :, None]
    walk = ends[:, :1] + t * (ends[:, 1:] - ends[:, :1])          # (rows, steps, z_dim)
    return B.asarray(walk.reshape(rows * steps, z_dim))


def generate(model, z, batch_stats: bool = False) -> np.ndarray:
    """G(z) on the host as float32 (N, 3, 64, 64) in [-1, 1]; eval mode unless ``batch_stats``."""
    B = model.B
    if not batch_stats:
        return B.to_numpy(model.sample(z, eval_mode=True))
    saved = [(buf, buf.copy()) for _, buf in model.G.named_buffers()]
    try:                                   # batch statistics; leave the running averages as they were
        return B.to_numpy(model.sample(z, eval_mode=False))
    finally:
        for buf, copy in saved:
            buf[...] = copy


def check_flags(args) -> None:
    """Raise ValueError for flags that contradict each other or an unusable --out; fill in the
    defaults of --n, --rows and --steps."""
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name ending in .png")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a file name ending in .png (the picture is PNG), "
                         f"got {out}")
    if args.interpolate:
        if args.n is not None:
            raise ValueError("--n does not apply to --interpolate: the picture is --rows walks "
                             "of --steps images")
        args.rows = 8 if args.rows is None else args.rows
        args.steps = 8 if args.steps is None else args.steps
        if args.steps < 2:
            raise ValueError(f"--steps must be >= 2 with --interpolate, got {args.steps}")
    else:
        if args.rows is not None or args.steps is not None:
            raise ValueError("--rows and --steps apply to --interpolate only (use --n for a grid)")
        args.n = 64 if args.n is None else args.n


def main(argv=None) -> int:
    from .data import save_grid

    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
        model, config = load_generator(args.checkpoint, args.backend)
        z_dim, z_dist = config.get("z_dim", 100), config.get("z_dist", "uniform")
        if args.interpolate:
            z = interpolation_z(model.B, args.seed, args.rows, args.steps, z_dim, z_dist)
            nrow = args.steps
        else:
            z = draw_z(model.B, args.seed, args.n, z_dim, z_dist)
            nrow = 8
        if args.batch_stats and z.shape[0] < 2:
            raise ValueError("--batch-stats needs at least 2 images")
        images = generate(model, z, args.batch_stats)
        try:
            path = save_grid(images, Path(args.out), nrow=nrow)
        except OSError as e:           # the message would name save_grid's temporary file
            raise ValueError(f"cannot write {args.out} ({e.strerror or e})") from None
    except (CheckpointError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = "batch statistics" if args.batch_stats else "BN running averages (eval mode)"
    what = (f"{args.rows} latent walks of {args.steps} steps" if args.interpolate
            else f"{args.n} faces")
    print(f"wrote {path}: {what}, {mode}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
