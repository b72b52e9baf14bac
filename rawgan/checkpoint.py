"""Training checkpoints: one ``.npz`` file with everything needed to continue a run exactly.

Layout of the archive (all entries are NumPy arrays; names are ``/``-separated):

    G/param/<name>, D/param/<name>      parameters by ``Sequential.named_params`` name ("0.w", ...)
    G/buffer/<name>, D/buffer/<name>    BatchNorm running statistics ("3.running_mean", ...)
    opt_G/m, opt_G/v, opt_D/m, opt_D/v  Adam moments (1-D, one entry per flat parameter)
    opt_G/t, opt_D/t                    Adam step counts (0-d int64)
    opt_G/hparams, opt_D/hparams        JSON string: lr, beta1, beta2, eps
    extra/<key>                         caller's arrays (e.g. the fixed sample z)
    extra.json                          JSON string: the caller's other values (step, epoch, ...)

Files are written atomically (temporary file in the same folder, flush + fsync, ``os.replace``),
so a crash or Ctrl-C while saving leaves the previous checkpoint untouched and never a half file
under the final name. Names ``ckpt_<step:06d>.npz`` sort by step (:func:`checkpoint_path`); files get the mode ``open`` would
give (0644 under the usual umask 022); a successful save removes the ``.ckpt_*.tmp`` files that
killed saves left in its folder.

Wherever a checkpoint is read (:func:`load_checkpoint`, ``--resume``, ``--checkpoint``), a folder
may be given instead of a file: a checkpoints folder or a run folder (one holding
``checkpoints/``) stands for the newest *valid* checkpoint in it (:func:`load_latest`: by step,
then write time; a corrupt one is reported and renamed to ``*.corrupt``, never deleted).
"""
from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from .hostio import atomic_write, remove_stale_tmp, to_host

_NAME = re.compile(r"^ckpt_(\d+)\.npz$")


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, or does not fit the model; the message names the file
    (and the tensor, for a mismatch) in one printable line."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file exists but is not a readable rawgan checkpoint (truncated, corrupt, another
    format, an entry missing). Folder look-ups set such files aside (:func:`load_latest`)."""


class NonFiniteState(CheckpointError):
    """:func:`save_checkpoint` refused a model whose parameters, buffers or Adam moments hold
    NaN/Inf (a diverged run). ``tensor`` is the archive name of the first such tensor."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor


def checkpoint_path(directory, step: int) -> Path:
    """``<directory>/ckpt_<step:06d>.npz``."""
    return Path(directory) / f"ckpt_{int(step):06d}.npz"


def list_checkpoints(directory) -> list[Path]:
    """Checkpoints ``ckpt_<step>.npz`` in ``directory`` sorted by step, then write time (oldest
    first); [] if none or the folder does not exist. Temporary files of an interrupted save and
    checkpoints set aside as corrupt (``*.corrupt``) are ignored."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        if m := _NAME.match(p.name):
            try:
                found.append((int(m.group(1)), p.stat().st_mtime_ns, p))
            except OSError:          # removed meanwhile
                continue
    return [p for _, _, p in sorted(found)]


def latest_checkpoint(directory) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def set_aside(path, reason: str, warn=None) -> Path:
    """Rename a corrupt checkpoint ``path`` to ``<path>.corrupt`` (``.corrupt-2``, ... if taken),
    never deleting it, so that look-ups skip it; ``warn(message)`` reports it (default: a
    ``warning:`` line on stderr). Returns the new path."""
    path = Path(path)
    target, n = path.with_name(path.name + ".corrupt"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{n}")
    path.rename(target)
    (warn or _warn)(f"warning: {reason}; set it aside as {target}")
    return target


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_latest(directory, warn=None) -> dict | None:
    """Load the newest *valid* checkpoint in ``directory`` (by step, then write time): a corrupt
    one (:class:`CorruptCheckpoint`) is reported and set aside (:func:`set_aside`), and the next
    older one is tried. Returns the loaded checkpoint (see :func:`load_checkpoint`) or None when
    no valid one is left. Raises CheckpointError for a file that cannot be read at all
    (permissions), which is not set aside."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return load_checkpoint(path)
        except CorruptCheckpoint as e:
            try:
                set_aside(path, str(e), warn)
            except OSError as err:
                raise CheckpointError(f"{e}; cannot set it aside ({err.strerror or err})") from None
    return None


def find_checkpoint(path) -> Path:
    """``path`` itself if it is not a folder; for a folder, the newest checkpoint in it or, for a
    run folder, in its ``checkpoints/``. Raises CheckpointError for a folder without checkpoints
    (a missing ``path`` is returned as is, so that loading it names it)."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = latest_checkpoint(path) or latest_checkpoint(path / "checkpoints")
    if found is None:
        raise CheckpointError(f"no checkpoint (ckpt_SSSSSS.npz) in {path} or {path / 'checkpoints'}")
    return found


def prune_checkpoints(directory, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (keep <= 0 keeps all). Returns the deleted."""
    found = list_checkpoints(directory)
    doomed = found[:-keep] if keep > 0 else []
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


# ----------------------------------------------------------------------------------------------
# Saving


def model_arrays(model) -> dict:
    """The model's state as ``{archive name: host array}`` (see the module docstring)."""
    out = {}
    for net_name, net in (("G", model.G), ("D", model.D)):
        for name, p, _ in net.named_params():
            out[f"{net_name}/param/{name}"] = to_host(p)
        for name, buf in net.named_buffers():
            out[f"{net_name}/buffer/{name}"] = to_host(buf)
    for opt_name, opt in (("opt_G", model.opt_G), ("opt_D", model.opt_D)):
        state = opt.state_dict()
        out[f"{opt_name}/m"] = np.array(state["m"])
        out[f"{opt_name}/v"] = np.array(state["v"])
        out[f"{opt_name}/t"] = np.array(state["t"], dtype=np.int64)
        hp = {k: state[k] for k in ("lr", "beta1", "beta2", "eps")}
        out[f"{opt_name}/hparams"] = np.array(json.dumps(hp))
    return out


def save_checkpoint(path, model, extra: dict | None = None) -> Path:
    """Write ``model`` (a :class:`rawgan.models.DCGAN`) and ``extra`` to ``path`` atomically.

    ``extra`` values that are NumPy arrays are stored as arrays (``extra/<key>``, dtype and shape
    kept); everything else must be JSON-serialisable (ints, floats, strings, dicts, lists) and goes
    into ``extra.json``. The parent folder is created. Returns ``path`` as a Path.

    Raises:
        NonFiniteState: a parameter, buffer or Adam moment is NaN/Inf (a broken state is never
            saved; the file at ``path``, if any, is left as it was).
        CheckpointError: ``extra`` holds a value that is neither an array nor JSON-serialisable.
        OSError: the file cannot be written (disk full, permissions).
    """
    path = Path(path)
    arrays = model_arrays(model)
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise NonFiniteState(f"{path}: refusing to save a checkpoint, tensor {name} has "
                                 f"non-finite values", name)
    plain = {}
    for key, value in (extra or {}).items():
        if isinstance(value, np.ndarray):
            arrays[f"extra/{key}"] = value
        else:
            plain[key] = value
    try:
        arrays["extra.json"] = np.array(json.dumps(plain))
    except TypeError as e:
        raise CheckpointError(f"{path}: extra value is not JSON-serialisable: {e}") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    remove_stale_tmp(path.parent, "ckpt_*.npz")    # left by saves that were killed
    return path


def checkpoint_nbytes(model) -> int:
    """About how many bytes :func:`save_checkpoint` writes for ``model``: parameters, BN buffers
    and both Adam moments at their dtype, plus 64 kB for names and metadata."""
    total = 64 * 1024
    for net in (model.G, model.D):
        total += sum(int(p.nbytes) for _, p, _ in net.named_params())
        total += sum(int(b.nbytes) for _, b in net.named_buffers())
    for opt in (model.opt_G, model.opt_D):
        total += int(opt.m.nbytes) + int(opt.v.nbytes)
    return total


# ----------------------------------------------------------------------------------------------
# Loading


_ZIP_MAGIC = b"PK\x03\x04"   # an .npz is a zip archive


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` fully into memory.

    ``path`` is a checkpoint file, or a folder standing for its newest checkpoint
    (:func:`find_checkpoint`).

    Returns a dict::

        {"path": Path,
         "G": {"param": {name: array}, "buffer": {name: array}}, "D": {...},
         "opt_G": {"m", "v": float arrays, "t": int, "lr", "beta1", "beta2", "eps"}, "opt_D": {...},
         "extra": {key: value}}      # extra.json values and extra/<key> arrays together

    Raises:
        CheckpointError: the file is missing, is not an npz archive (another format, e.g. a text
            file), is a truncated or corrupt one, or lacks an entry this format requires.
    """
    path = Path(path)
    if path.is_dir():
        directory = path if list_checkpoints(path) else path / "checkpoints"
        ckpt = load_latest(directory)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint (ckpt_SSSSSS.npz, valid) in {path} or "
                                  f"{path / 'checkpoints'}")
        return ckpt
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.strerror or e})") from None
    if head != _ZIP_MAGIC:     # np.load would try pickle and suggest allow_pickle=True
        raise CorruptCheckpoint(f"{path} is not a rawgan checkpoint (.npz written by rawgan.train)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}   # reads (and CRC-checks) every entry
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise CorruptCheckpoint(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: "
                              f"{e}); use an earlier checkpoint") from None
    try:
        extra = json.loads(str(arrays.pop("extra.json")))
        ckpt = {"path": path, "G": {"param": {}, "buffer": {}}, "D": {"param": {}, "buffer": {}},
                "extra": extra}
        for opt_name in ("opt_G", "opt_D"):
            state = json.loads(str(arrays.pop(f"{opt_name}/hparams")))
            state.update(m=arrays.pop(f"{opt_name}/m"), v=arrays.pop(f"{opt_name}/v"),
                         t=int(arrays.pop(f"{opt_name}/t")))
            ckpt[opt_name] = state
    except KeyError as e:
        raise CorruptCheckpoint(f"checkpoint {path} lacks entry {e}; not a rawgan checkpoint "
                              f"(.npz written by rawgan.train)") from None
    except json.JSONDecodeError as e:
        raise CorruptCheckpoint(f"checkpoint {path} has unreadable metadata: {e}") from None
    for name, a in arrays.items():
        head, _, rest = name.partition("/")
        if head == "extra":
            extra[rest] = a
        elif head in ("G", "D"):
            kind, _, tensor = rest.partition("/")
            ckpt[head].setdefault(kind, {})[tensor] = a
    return ckpt


def _layer_order(name: str):
    index, _, rest = name.partition(".")
    return (int(index), rest) if index.isdigit() else (float("inf"), name)


def _renumbered(saved: dict, names: list) -> dict:
    """``saved`` with its tensors renamed to ``names`` when it holds the same tensors in the same
    layer order under other layer indices, else unchanged.

    Checkpoints written before BatchNorm and its activation became one layer (BatchNormAct)
    number the layers of G and D differently ("2.gamma" then "5.gamma" there, "2.gamma" then
    "4.gamma" now); the tensors, their order and the flat Adam buffers are the same, so such a
    run still resumes exactly.
    """
    if set(saved) == set(names):
        return saved
    old, new = sorted(saved, key=_layer_order), sorted(names, key=_layer_order)
    if len(old) != len(new) or any(o.partition(".")[2] != n.partition(".")[2]
                                   for o, n in zip(old, new)):
        return saved                     # a different model: restore() names the mismatch
    return {n: saved[o] for o, n in zip(old, new)}


def restore(model, ckpt: dict, optimizers: bool = True) -> None:
    """Copy a loaded checkpoint into ``model`` (parameters, BN buffers and, if ``optimizers``,
    both Adam states including their hyper-parameters).

    Every tensor is checked before anything is copied, so a mismatch leaves the model unchanged.
    Raises CheckpointError naming the file and the first tensor that is missing, unexpected, or
    has a different shape (e.g. a checkpoint of a model with another ``--ngf``).
    """
    path = ckpt.get("path", "<checkpoint>")
    copies = []
    for net_name, net in (("G", model.G), ("D", model.D)):
        for kind, items in (("param", [(n, p) for n, p, _ in net.named_params()]),
                            ("buffer", list(net.named_buffers()))):
            saved = _renumbered(ckpt[net_name].get(kind, {}), [n for n, _ in items])
            for name, target in items:
                full = f"{net_name}/{kind}/{name}"
                if name not in saved:
                    raise CheckpointError(f"checkpoint {path} has no tensor {full}; it was made "
                                          f"for a different model")
                if tuple(saved[name].shape) != tuple(target.shape):
                    raise CheckpointError(
                        f"checkpoint {path}: tensor {full} has shape {tuple(saved[name].shape)}, "
                        f"the model expects {tuple(target.shape)} (different --ngf/--ndf?)")
                copies.append((target, saved[name]))
            unexpected = set(saved) - {n for n, _ in items}
            if unexpected:
                raise CheckpointError(f"checkpoint {path} has tensor {net_name}/{kind}/"
                                      f"{sorted(unexpected)[0]} that the model lacks")
    if optimizers:
        for opt_name, opt in (("opt_G", model.opt_G), ("opt_D", model.opt_D)):
            m = ckpt[opt_name]["m"]
            if tuple(m.shape) != tuple(opt.m.shape):
                raise CheckpointError(f"checkpoint {path}: tensor {opt_name}/m has shape "
                                      f"{tuple(m.shape)}, the model expects {tuple(opt.m.shape)}")
    for target, value in copies:
        target[...] = model.B.asarray(value)
    if optimizers:
        model.opt_G.load_state_dict(ckpt["opt_G"])
        model.opt_D.load_state_dict(ckpt["opt_D"])
