"""Faces from a trained generator: ``python -m rawgan.sample --checkpoint CKPT --out grid.png``.

    --n 64              a grid of 64 new faces (8 per row), z from --seed (at most 1024 in a
                        grid; more faces go to a folder)
    --out-dir DIR       instead of a grid: one 64x64 PNG per face, DIR/face_000000.png ...,
                        generated 64 at a time (memory does not grow with --n), and
                        DIR/manifest.json (checkpoint path and step, seed, z distribution, BN
                        mode, count, file names), written last; DIR is created (its parent must
                        exist) and must be new or empty
    --interpolate       the DCGAN paper's latent walk instead: --rows rows, each going linearly
                        from one random z to another in --steps images; the grid is
                        --rows x --steps, so --n does not apply (giving it is an error, as is
                        --rows/--steps without --interpolate)
    --batch-stats       sample with batch statistics in G's BatchNorm (the PyTorch example's way)
                        instead of the running averages (eval mode, the TF reference's way)

z is drawn from the same distribution as in training (the checkpoint's --z-dist), 64 at a time
from one Philox stream per --seed (:func:`iter_z`), so face i is the same in a grid, in a folder
and in ``rawgan.eval`` whatever --n is. In eval mode every image depends only on its own z; with
--batch-stats an image also depends on the rest of its batch of 64. --checkpoint may name a
checkpoints folder or a run folder: its newest checkpoint is used, and the checkpoint used is
always printed. --out must end in .png (the picture is PNG) and its folder must exist (it is not
created); an existing file is replaced atomically.
Exit codes: 0 written, 2 missing/corrupt/incompatible checkpoint, bad flags, unwritable --out or
--out-dir, 3 out of memory (lower --n, or use --out-dir). A folder given as --checkpoint stands for its newest *valid*
checkpoint: a corrupt one is reported and set aside as ``*.corrupt`` (rawgan.checkpoint.load_latest).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cpu_threads import configure_cpu_threads

configure_cpu_threads()  # before NumPy loads OpenBLAS (see rawgan/cpu_threads.py)

import numpy as np  # noqa: E402

from .argtypes import interrupted_exit, nonnegative_int, positive_int, stop_signals_interrupt
from .backend.base import BACKEND_CHOICES
from .checkpoint import CheckpointError, load_checkpoint, restore
from .models.dcgan import draw_z, frozen_buffers  # noqa: F401  (draw_z: part of this module's API)

Z_BLOCK = 64        # z's are drawn (and faces generated) 64 at a time, see iter_z
MAX_GRID = 1024     # faces in one grid picture (8 wide: 128 rows); more go to --out-dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rawgan.sample",
                                description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint written by rawgan.train, or a checkpoints/run folder (its "
                        "newest checkpoint)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="PNG grid to write (name ending in .png; its folder must "
                                   "exist)")
    out.add_argument("--out-dir", help="folder to write one PNG per face into, plus "
                                       "manifest.json (created; must be new or empty)")
    p.add_argument("--n", type=positive_int,
                   help=f"faces (default: 64; a grid holds at most {MAX_GRID}; not with "
                        f"--interpolate)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="z seed (default: 0)")
    p.add_argument("--interpolate", action="store_true",
                   help="write latent walks: each row interpolates between two random z's")
    p.add_argument("--rows", type=positive_int,
                   help="walks (rows) with --interpolate (default: 8)")
    p.add_argument("--steps", type=int,
                   help="images per walk, both ends included, with --interpolate (default: 8)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto (cupy when CuPy sees a GPU, else numpy), numpy, reference, emulated "
                        "or cupy (default: auto)")
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


def iter_z(B, seed: int, n: int, z_dim: int, z_dist: str, block: int = Z_BLOCK):
    """Yield the z's of faces 0..n-1 as backend arrays of at most ``block`` rows.

    One Philox stream per seed, drawn ``(block, z_dim)`` at a time (the last block is cut), so
    face i gets the same z whatever n is, and the first 64 are ``draw_z(B, seed, 64, ...)``."""
    from .backend import PhiloxState

    stream = PhiloxState(seed)
    for start in range(0, n, block):
        yield draw_z(B, stream, block, z_dim, z_dist)[:min(block, n - start)]


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
    with frozen_buffers(model.G):          # batch statistics; leave the running averages as they were
        return B.to_numpy(model.sample(z, eval_mode=False))


def check_flags(args) -> None:
    """Raise ValueError for flags that contradict each other or an unusable --out; fill in the
    defaults of --n, --rows and --steps."""
    if args.out_dir is not None:
        d = Path(args.out_dir)
        if args.interpolate:
            raise ValueError("--interpolate writes one picture: use --out, not --out-dir")
        if d.exists() and not d.is_dir():
            raise ValueError(f"--out-dir {d} exists and is not a folder")
        if d.is_dir() and any(d.iterdir()):
            raise ValueError(f"--out-dir {d} is not empty; give a new or empty folder")
        if not d.parent.is_dir():
            raise ValueError(f"cannot write --out-dir {d}: folder {d.parent} does not exist "
                             f"(it is not created)")
    else:
        out = Path(args.out)
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name ending in .png")
        if out.suffix.lower() != ".png":
            raise ValueError(f"--out must be a file name ending in .png (the picture is PNG), "
                             f"got {out}")
        if not out.parent.is_dir():
            raise ValueError(f"cannot write --out {out}: folder {out.parent} does not exist "
                             f"(it is not created)")
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
        if args.out_dir is None and args.n > MAX_GRID:
            raise ValueError(f"--n {args.n} is too many for one grid (at most {MAX_GRID}); use "
                             f"--out-dir DIR to write one PNG per face")


def generate_batches(model, config: dict, n: int, seed: int, batch_stats: bool = False):
    """Yield G's faces 0..n-1 as float32 (b, 3, 64, 64) batches of at most 64 (z: :func:`iter_z`)."""
    for z in iter_z(model.B, seed, n, config.get("z_dim", 100), config.get("z_dist", "uniform")):
        yield generate(model, z, batch_stats)


def write_faces(model, config: dict, meta: dict, out_dir, n: int, seed: int,
                batch_stats: bool = False) -> Path:
    """Write faces 0..n-1 as ``out_dir/face_NNNNNN.png`` (64x64 RGB, at least 6 digits), 64 at a
    time with a tqdm bar, then ``out_dir/manifest.json`` (atomically, last: a folder with a
    manifest is complete). ``out_dir`` is created (not its parents). Returns the manifest's path.
    Raises OSError when a file cannot be written."""
    from PIL import Image
    from tqdm import tqdm

    from .data import to_uint8_nhwc
    from .data.shards import write_json
    from .hostio import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    digits = max(6, len(str(n - 1)))
    names, i = [], 0
    with tqdm(total=n, desc="faces", unit="img", dynamic_ncols=True,
              mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
        for images in generate_batches(model, config, n, seed, batch_stats):
            for face in to_uint8_nhwc(images):
                name = f"face_{i:0{digits}d}.png"
                # atomically: an interrupted run never leaves a truncated PNG under a final name
                atomic_write(out_dir / name, lambda f, face=face: Image.fromarray(
                    face, mode="RGB").save(f, format="PNG"), fsync=False)
                names.append(name)
                i += 1
            bar.update(len(images))
    manifest = {
        "checkpoint": str(meta["path"]), "step": meta["step"], "count": n, "seed": seed,
        "z_dist": config.get("z_dist", "uniform"), "z_dim": config.get("z_dim", 100),
        "z_stream": f"Philox seed {seed}, drawn in blocks of {Z_BLOCK} (rawgan.sample.iter_z)",
        "bn": ("batch statistics (per batch of 64)" if batch_stats
               else "running statistics (eval mode)"),
        "image": "64x64 RGB PNG, round((G(z) + 1) * 127.5)", "files": names,
    }
    path = out_dir / "manifest.json"
    write_json(path, manifest)
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_signals_interrupt():
            return _run(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (stop_signals_interrupt)
        where = (f"; the faces written so far are complete PNGs in {args.out_dir} (no "
                 "manifest.json: it is written last)" if args.out_dir is not None else "")
        return interrupted_exit(e, where)


def _run(args) -> int:
    from .data import save_grid

    try:
        check_flags(args)
        model, config, meta = load_generator(args.checkpoint, args.backend, with_meta=True)
        print(f"rawgan.sample: backend {model.B.name} on {model.B.device}")
        print(f"checkpoint: {meta['path']} (step {meta['step']})", flush=True)
        mode = "batch statistics" if args.batch_stats else "BN running averages (eval mode)"
        z_dim, z_dist = config.get("z_dim", 100), config.get("z_dist", "uniform")
        if args.batch_stats and not args.interpolate and args.n < 2:
            raise ValueError("--batch-stats needs at least 2 images")
        if args.out_dir is not None:
            try:
                path = write_faces(model, config, meta, args.out_dir, args.n, args.seed,
                                   args.batch_stats)
            except OSError as e:
                raise ValueError(f"cannot write into --out-dir {args.out_dir} "
                                 f"({e.strerror or e})") from None
            print(f"wrote {args.n} faces to {args.out_dir} and {path}: {mode}, seed {args.seed}")
            return 0
        if args.interpolate:
            z = interpolation_z(model.B, args.seed, args.rows, args.steps, z_dim, z_dist)
            images, nrow = generate(model, z, args.batch_stats), args.steps
        else:
            images = np.concatenate(list(generate_batches(model, config, args.n, args.seed,
                                                          args.batch_stats)))
            nrow = 8
        try:
            path = save_grid(images, Path(args.out), nrow=nrow)
        except OSError as e:           # the message would name save_grid's temporary file
            raise ValueError(f"cannot write {args.out} ({e.strerror or e})") from None
    except (CheckpointError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:      # NumPy's _ArrayMemoryError, CuPy's OutOfMemoryError
        print(f"error: out of memory generating {args.n or args.rows * args.steps} images "
              f"({type(e).__name__}); lower --n (or --rows/--steps), or use --out-dir",
              file=sys.stderr)
        return 3
    what = (f"{args.rows} latent walks of {args.steps} steps" if args.interpolate
            else f"{args.n} faces")
    print(f"wrote {path}: {what}, {mode}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
