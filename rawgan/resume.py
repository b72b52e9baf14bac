"""The resume policy of ``python -m rawgan.train``: which checkpoint a run continues from, and
whether the data it is given is the data the checkpoint was trained on.

``--resume`` continues from the newest *valid* checkpoint in RUN_DIR/checkpoints (by step, then
write time; a corrupt one is reported and renamed ``*.corrupt``, never deleted); ``--resume PATH``
from checkpoint PATH (a file, or a checkpoints or run folder standing for its newest valid one).
It continues exactly where the checkpoint was taken: same data order (epoch + batch position),
same z stream (Philox state), Adam moments and step counts, BN running statistics, step counter.
On the NumPy backend N steps + resume + N steps give bitwise the same weights and losses as 2N
steps straight. --resume PATH from another run folder continues that run in --out only if --out
holds no run yet (metrics, samples and checkpoints so far stay where they are).

A run folder without any checkpoint (its run died before the first one) holds nothing to lose:
``--resume`` on it starts a fresh run with the settings given (a note says so), as does a run
without --resume (its metrics.jsonl, samples and TensorBoard events are removed only after every
check that can refuse the run has passed: settings, data, backend, free space); ``--resume`` on a folder that does not exist or holds no run at all is an
error (a mistyped --out should not start a new run).

The checkpoint records the data's identity (image count, a digest of the prepared index's source
list and of the raw source listing); resuming on other data is an error, found before anything is
prepared when the raw listing or an existing prepared index tells, while the same images in
another place (--data-dir) are fine.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from . import checkpoint as ckpt_io
from .checkpoint import CheckpointError
from .rundir import run_contents, take_over
from .runconfig import UsageError

REQUIRED = ("step", "epoch", "batch", "z_rng", "sample_z", "config")


def _note(message: str) -> None:
    print(f"note: {message}", flush=True)


def find_resume_checkpoint(args, out: Path, used_before: bool):
    """``(ckpt, take_over)``: the loaded checkpoint to resume from (None for a fresh run), after
    the run-folder checks (see the module docstring), and None or a function that removes the
    earlier run's files from ``out`` (with a note). Nothing is removed here: the caller runs
    ``take_over()`` only once everything that can fail before the first step has been checked
    (settings, data, backend, free space), so a run refused for bad flags or missing data leaves
    the folder as it was. ``used_before``: a training ran in ``out`` before (its lock file
    existed). Raises UsageError / CheckpointError."""
    ckpt_dir = out / "checkpoints"
    held = run_contents(out)
    if args.resume is None or args.resume == "auto":
        ckpt = ckpt_io.load_latest(ckpt_dir) if held else None
        if args.resume is None and ckpt is not None:
            raise UsageError(f"{out} already holds a run ({', '.join(held)}; newest checkpoint "
                             f"{ckpt['path'].name}); continue it with --resume or choose another "
                             f"--out")
        if ckpt is None:
            if args.resume == "auto" and not held and not used_before:
                raise UsageError(f"--resume: no checkpoint in {ckpt_dir} (and no earlier run in "
                                 f"{out}); leave out --resume to start a new run")
            if ckpt_dir.is_dir() and any(ckpt_dir.glob("ckpt_*.npz.corrupt*")) \
                    and args.resume == "auto":
                raise UsageError(f"--resume: no valid checkpoint in {ckpt_dir}, only corrupt ones "
                                 f"(set aside as *.corrupt); resume from another copy with "
                                 f"--resume PATH, or start a new run in another --out")
            def fresh_start():
                cleared = take_over(out)
                if cleared or args.resume == "auto":
                    _note(f"{out} holds no checkpoint (its run stopped before the first one); "
                          f"starting a fresh run there" + (f", removing its {', '.join(cleared)}"
                                                            if cleared else ""))
            return None, fresh_start
    else:
        ckpt = ckpt_io.load_checkpoint(args.resume)
    path = ckpt["path"]
    for key in REQUIRED:
        if key not in ckpt["extra"]:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; not a training checkpoint")
    if path.resolve().parent != ckpt_dir.resolve():
        if ckpt_io.list_checkpoints(ckpt_dir):
            raise UsageError(f"--resume {path} belongs to another run folder, and {out} already "
                             f"holds a run ({', '.join(held)}); continue that run with --out "
                             f"{path.parent.parent}, or into a new, empty --out")
        def continue_here():
            take_over(out)
            _note(f"continuing the run of {path} in {out} (its earlier metrics and samples stay "
                  f"in {path.parent.parent})")
        return ckpt, continue_here
    return ckpt, None


def dataset_identity(dataset) -> dict:
    """What makes a prepared dataset this one: its image count, a digest of its index's source
    list (the image files, in the order the shards hold them) and the raw listing's digest (names
    and sizes, not the location)."""
    sources = "\n".join(dataset.index.get("sources", []))
    return {"images": len(dataset), "sources_sha256": hashlib.sha256(sources.encode()).hexdigest(),
            "listing_sha256": dataset.index.get("listing", {}).get("sha256")}


def _same(then: dict, now: dict) -> bool:
    keys = [k for k in ("images", "sources_sha256", "listing_sha256")
            if then.get(k) is not None and now.get(k) is not None]
    return all(then[k] == now[k] for k in keys)


def check_same_data(saved: dict, identity: dict, data_dir) -> None:
    """``saved``: the checkpoint's config. Raise UsageError when a resumed run's data is not the checkpoint's (checkpoints of older
    versions carry no identity; for them only the batch position is checked)."""
    then = saved.get("dataset")
    if then is None or _same(then, identity):
        return
    if identity.get("images") is None:
        now = f"{data_dir} lists {identity.get('files', 'other')} other image files"
    elif then["images"] != identity["images"]:
        now = f"{data_dir} gives {identity['images']}"
    else:
        now = f"the {identity['images']} images of {data_dir} are other files"
    raise UsageError(f"the checkpoint was trained on other data ({then['images']} images from "
                     f"{saved.get('data_dir')}; {now}); resume with the data it was trained on "
                     f"(--data-dir, --prepared-dir), or start a new run")


def check_data_before_preparing(saved: dict, kind: str, data_dir, prepared_dir) -> None:
    """The part of :func:`check_same_data` that needs no preparation: compare the checkpoint's
    identity with an existing prepared index (if the prepared folder holds one for this source)
    or with the raw source listing. Raises UsageError on a mismatch; a DataError of the source
    (missing folder) is left for the preparation to report."""
    from .data import DataError
    from .data import shards as fmt
    from .data.preparation import default_prepared_dir
    from .data.sources import find_source

    then = saved.get("dataset")
    if then is None:
        return
    try:
        source = find_source(kind, data_dir)
        listing = source.fingerprint()
    except DataError:
        listing = None                     # no source (a prepared copy may still do)
    if listing is not None and then.get("listing_sha256") is not None:
        check_same_data(saved, {"images": None, "listing_sha256": listing,
                                "files": len(source.files)}, data_dir)
        return
    prepared = Path(prepared_dir) if prepared_dir else default_prepared_dir(kind, data_dir)
    index = fmt.read_index(prepared)
    if index is None or (listing is not None and index.get("listing", {}).get("sha256") != listing):
        return                             # to be prepared: checked afterwards
    sources = "\n".join(index.get("sources", []))
    check_same_data(saved, {"images": index.get("count"),
                            "sources_sha256": hashlib.sha256(sources.encode()).hexdigest()},
                    data_dir)
