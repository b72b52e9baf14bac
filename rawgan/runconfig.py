"""The command line of ``python -m rawgan.train`` and the run's settings (:func:`resolve_config`).

Every setting has a default (DEFAULTS, the paper's); a resumed run takes each setting the user
does not give from the checkpoint's config; the model and data-order settings (FIXED_ON_RESUME)
cannot change on resume. --backend, --conv-impl, --precision, --no-graph, --workers and
--no-tensorboard are per invocation, never settings. Hyper-parameters must be finite (``--lr inf`` or
``--beta1 nan`` is a one-line error, exit 2), and --lr a normal float32 (1e-320 or 1e300 would
become 0 or inf in the float32 Adam update).
"""
from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

from .argtypes import finite_float, nonnegative_int, positive_float, positive_int
from .backend.base import BACKEND_CHOICES

# The run's settings with their defaults. A resumed run takes every setting the user does not give
# on the command line from the checkpoint's config (then these defaults, for older checkpoints).
# FIXED_ON_RESUME ones define the model or the data/z order: giving a different value on resume is
# an error. --backend, --conv-impl, --precision, --no-graph, --workers and --no-tensorboard are per
# invocation, not settings.
DEFAULTS = {
    # model and data order
    "data": "celeba", "batch_size": 64, "seed": 0, "ngf": 64, "ndf": 64, "z_dim": 100,
    "z_dist": "uniform",
    # where the data is (None: $RAWGAN_DATA_DIR or ./data/celeba; the per-source cache folder)
    "data_dir": None, "prepared_dir": None,
    # length, optimiser
    "epochs": 5, "max_steps": None, "lr": 2e-4, "beta1": 0.5, "g_steps": 2,
    # cadence of logs, samples and checkpoints
    "log_every": 20, "sample_every": 100, "checkpoint_every": 500, "keep_checkpoints": 3,
}
FIXED_ON_RESUME = ("data", "batch_size", "seed", "ngf", "ndf", "z_dim", "z_dist")
SAMPLE_GRID = 64          # images in a sample grid (8x8)


class UsageError(Exception):
    """A bad combination of flags or an incompatible checkpoint (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rawgan.train",
        description="Train the DCGAN (Radford et al.; sizes and cadence of Zhu et al. 2018) on "
                    "64x64 CelebA faces. Hyper-parameter defaults are the paper's.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Data location: --data-dir, else $RAWGAN_DATA_DIR, else ./data/celeba. The first run "
               "prepares 64x64 shards into a cache (see python -m rawgan.data --help).\n"
               "Resume: python -m rawgan.train --out RUN_DIR --resume (newest checkpoint in "
               "RUN_DIR/checkpoints; every setting not given is the checkpoint's).\n"
               "Exit codes: 0 done (or interrupted by Ctrl-C, SIGTERM or SIGHUP: checkpoint "
               "saved); 1 the run diverged (NaN/Inf); 2 bad flags, data or checkpoint, run folder "
               "in use, not writable or short of space; 3 out of memory (lower --batch-size, "
               "--ngf/--ndf); 128+N a second signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP): "
               "quit at once, nothing more saved.")
    g = p.add_argument_group("data and output")
    g.add_argument("--data", choices=("celeba", "folder"),
                   help="celeba: aligned & cropped CelebA (108x108 centre crop); folder: any "
                        "images, centre square crop (default: celeba)")
    g.add_argument("--data-dir", help="raw images: folder or zip (default: $RAWGAN_DATA_DIR or "
                                      "./data/celeba)")
    g.add_argument("--prepared-dir", help="where the 64x64 shards live / are written (default: a "
                                          "per-source folder under $RAWGAN_CACHE or ~/.cache/rawgan)")
    g.add_argument("--workers", type=positive_int, help="processes for preparing the shards "
                                                          "(default: all cores)")
    g.add_argument("--out", required=True, help="run folder (metrics, samples, checkpoints, tb)")

    g = p.add_argument_group("training (defaults: the paper's)")
    g.add_argument("--epochs", type=positive_int, help="epochs (default: 5)")
    g.add_argument("--max-steps", type=positive_int,
                   help="stop after this many steps in total; overrides --epochs (default: "
                        "--epochs worth)")
    g.add_argument("--batch-size", type=positive_int, help="images per batch (default: 64)")
    g.add_argument("--lr", type=positive_float, help="Adam learning rate, both nets (default: 2e-4)")
    g.add_argument("--beta1", type=finite_float, help="Adam beta1 (default: 0.5)")
    g.add_argument("--g-steps", type=positive_int,
                   help="G updates per D update, on the same z (default: 2, as the TF reference)")
    g.add_argument("--z-dist", choices=("uniform", "normal"),
                   help="z ~ uniform(-1, 1) (TF reference) or N(0, 1) (default: uniform)")
    g.add_argument("--seed", type=nonnegative_int,
                   help="weights, data order, z stream and the fixed sample z (default: 0)")
    g.add_argument("--ngf", type=positive_int, help="generator width (default: 64)")
    g.add_argument("--ndf", type=positive_int, help="discriminator width (default: 64)")

    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto: cupy when CuPy sees a GPU, else numpy; numpy: fast CPU; reference: "
                        "naive NumPy (slow); cupy: GPU; emulated: the CUDA code on the CPU (slow; "
                        "for testing) (default: auto, also on resume)")
    g.add_argument("--conv-impl", choices=("kernels", "cudnn"),
                   help="convolutions on cupy/emulated: our kernels or cuDNN (default: kernels; "
                        "an error with --backend numpy)")
    g.add_argument("--precision", choices=("fp32", "tf32"),
                   help="GEMM/convolution compute on cupy/emulated: tf32 (TF32 tensor cores, FP32 "
                        "accumulate; PyTorch's cuDNN default) or fp32 (exact FP32; tests, parity). "
                        "The emulator computes FP32 either way (default: tf32; an error with "
                        "--backend numpy/reference)")
    g.add_argument("--no-graph", action="store_true",
                   help="cupy/emulated: run every step eagerly instead of as one captured CUDA "
                        "graph (same results; for debugging and comparison)")

    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-every", type=positive_int, help="default: 20")
    g.add_argument("--sample-every", type=positive_int, help="default: 100")
    g.add_argument("--checkpoint-every", type=positive_int, help="default: 500")
    g.add_argument("--keep-checkpoints", type=nonnegative_int,
                   help="keep the newest N checkpoints, 0 = all (default: 3)")
    g.add_argument("--resume", nargs="?", const="auto", metavar="PATH",
                   help="continue from the newest checkpoint in RUN_DIR/checkpoints (flag alone), "
                        "or from checkpoint PATH (a file, or a folder: its newest checkpoint); "
                        "settings not given are the checkpoint's")
    g.add_argument("--no-tensorboard", action="store_true", help="don't write TensorBoard events")
    return p


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def given_settings(args) -> dict:
    """The DEFAULTS keys the user gave on the command line (argparse defaults are None), with
    paths made absolute."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    for key in ("data_dir", "prepared_dir"):
        if key in given:
            given[key] = str(Path(given[key]).expanduser().absolute())
    return given


def resolve_config(args, saved: dict | None) -> dict:
    """The run's settings: DEFAULTS, then the checkpoint's config (on resume), then the flags given.

    On resume two settings go with another one: --epochs given without --max-steps drops a
    --max-steps of the checkpoint (it would win over --epochs), and another --data-dir without
    --prepared-dir uses that source's default prepared folder, not the checkpoint's.
    ``config["_changed"]`` lists the changes against the checkpoint for printing.
    Raises UsageError when a flag contradicts a FIXED_ON_RESUME value of the checkpoint.
    """
    config = dict(DEFAULTS)
    given = given_settings(args)
    notes = []
    if saved is not None:
        config.update({k: saved[k] for k in DEFAULTS if k in saved})
        if "epochs" in given and "max_steps" not in given:
            given["max_steps"] = None
        if "data_dir" in given and given["data_dir"] != config["data_dir"] \
                and "prepared_dir" not in given:
            given["prepared_dir"] = None
    for key, value in given.items():
        if saved is not None and value != config[key]:
            if key in FIXED_ON_RESUME:
                raise UsageError(f"incompatible checkpoint: it was trained with {_flag(key)} "
                                 f"{config[key]}, not {value} (resume with the checkpoint's value)")
            notes.append(f"{_flag(key)} {config[key]} -> {value}")
        config[key] = value
    for key in ("lr", "beta1"):          # also guards values from an edited checkpoint
        if not isinstance(config[key], (int, float)) or not math.isfinite(config[key]):
            raise UsageError(f"{_flag(key)} must be a finite number, got {config[key]}")
    if not FLOAT32_TINY <= config["lr"] <= FLOAT32_MAX:   # the kernels and Adam compute in float32
        raise UsageError(f"--lr {config['lr']} is outside float32's normal range "
                         f"[{FLOAT32_TINY:.4g}, {FLOAT32_MAX:.4g}] (it would become 0 or inf)")
    if not 0 <= config["beta1"] < 1:
        raise UsageError(f"--beta1 must be in [0, 1), got {config['beta1']}")
    config["_changed"] = notes
    return config


FLOAT32_TINY, FLOAT32_MAX = 1.1754944e-38, 3.4028235e38   # smallest normal, largest finite


def resume_command(args) -> str:
    """The command that continues this run: the settings come from the checkpoint, so only the
    run folder and the per-invocation flags (backend, conv-impl, precision, no-tensorboard,
    no-graph) are needed."""
    parts = ["python -m rawgan.train", "--out", shlex.quote(str(args.out)), "--resume"]
    if args.backend != "auto":
        parts += ["--backend", args.backend]
    if args.conv_impl is not None:
        parts += ["--conv-impl", args.conv_impl]
    if getattr(args, "precision", None) is not None:
        parts += ["--precision", args.precision]
    if args.no_tensorboard:
        parts.append("--no-tensorboard")
    if args.no_graph:
        parts.append("--no-graph")
    return " ".join(parts)
