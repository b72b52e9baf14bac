"""Train the DCGAN on CelebA (or any image folder): ``python -m rawgan.train --out RUN_DIR``.

Read :func:`train` top to bottom: settings, data, model, the loop (z, D on real and fake, G
``g_steps`` times, Adam, the log/sample/checkpoint cadence). The cadence is the paper's (Zhu et
al. 2018 / carpedm20/DCGAN-tensorflow): one D update and ``--g-steps`` (2) G updates on the same z
per step, losses every 20 steps, samples every 100, checkpoints every 500. A "step" is one such
iteration; steps count from 1 and ``step`` in the logs is the number of iterations completed.
At start the run prints its estimated time for the whole schedule on this machine.
Each step is ``rawgan.models.step.TrainStep``: the uint8 batch is uploaded into a fixed buffer and
everything else (conversion, z, the updates, the metrics) stays on the device; on cupy/emulated it
runs from static memory as one captured CUDA graph per step (``--no-graph``: eagerly, with
identical results).

The rest lives next door: flags and settings (rawgan/runconfig.py), the run folder, its lock,
free space and signals (rawgan/rundir.py), which checkpoint to resume and on what data
(rawgan/resume.py), what is reported where (rawgan/runlog.py), the file format
(rawgan/checkpoint.py). Checkpoints: every --checkpoint-every steps, at the end and on a stop
signal, the newest --keep-checkpoints kept. ``--eval-every N`` (per invocation, needs the eval
extra) scores G every N steps with KID on ``--eval-n`` generated vs real images: a record
``{step, kid, kid_std, kid_n, eval_s}`` in metrics.jsonl and ``eval/kid`` in TensorBoard
(rawgan.eval.KIDMonitor).

Losses are checked for NaN/Inf at log steps (the only host syncs), and losses, weights, BN and Adam
statistics before every checkpoint; NumPy's floating-point warnings are silenced for the whole run
since non-finite values are reported this way.

Exit codes: 0 done, nothing left to do, or stopped by Ctrl-C/SIGTERM/SIGHUP with a checkpoint
saved; 1 the run diverged (no checkpoint is written from the broken state, the last good one is
named); 2 bad flags, missing or different data, unreadable or incompatible checkpoint, RUN_DIR in
use, holding another run, not writable or short of space (every write error names the file);
3 out of memory (the message names the settings to lower); 128+N a second signal N (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP): quit at once, nothing more saved.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from .cpu_threads import configure_cpu_threads

configure_cpu_threads()  # before NumPy loads OpenBLAS (see rawgan/cpu_threads.py)

import numpy as np  # noqa: E402

from . import checkpoint as ckpt_io  # noqa: E402
from . import resume  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .data import BatchLoader, DataError, ShardDataset, default_data_dir, ensure_prepared  # noqa: E402
from .rundir import Interrupted, RunFolder, Signals, check_run_space, trim_metrics  # noqa: E402
from .runconfig import UsageError, build_parser, resolve_config, resume_command  # noqa: E402

SAMPLE_GRID = 64          # images in a sample grid (8x8)
DEFAULT_PRECISION = "tf32"   # training on cupy/emulated, like PyTorch's cuDNN default (allow_tf32)


class Diverged(Exception):
    """A loss, a weight or a BN/Adam statistic became NaN/Inf (exit code 1)."""


def train(args, folder: RunFolder, signals: Signals) -> int:
    from .backend import PhiloxState, get_backend, resolve_backend
    from .models.dcgan import DCGAN, draw_z
    from .models.step import TrainStep
    from .runlog import RunLog, ScheduleEstimate, print_start

    # -- settings: the checkpoint's (on --resume), then the flags given --------------------------
    backend, _ = resolve_backend(args.backend)          # "auto" -> cupy or numpy
    if args.eval_n is not None and not args.eval_every:
        raise UsageError("--eval-n applies with --eval-every N only (KID every N steps)")
    for flag, value in (("--conv-impl", args.conv_impl), ("--precision", args.precision),
                        ("--no-graph", args.no_graph or None)):
        if value is not None and backend in ("numpy", "reference"):
            raise UsageError(f"{flag} applies to --backend cupy/emulated only"
                             + (" (--backend auto chose numpy: no GPU)" if args.backend == "auto" else ""))
    out = folder.out
    ckpt, take_over = resume.find_resume_checkpoint(args, out, folder.used_before)
    saved = ckpt["extra"] if ckpt else None
    config = resolve_config(args, saved["config"] if saved else None)
    config["data_dir"] = config["data_dir"] or str(default_data_dir().expanduser().absolute())
    if saved:
        resume.check_data_before_preparing(saved["config"], config["data"], config["data_dir"],
                                           config["prepared_dir"])

    # -- data: uint8 64x64 shards (prepared once), uint8 NHWC batches shuffled per epoch from
    #    --seed, so (epoch, batch) names a batch exactly; the step scales them to [-1, 1] ----------
    prepared = ensure_prepared(config["data"], Path(config["data_dir"]),
                               out_dir=config["prepared_dir"], workers=args.workers)
    dataset = ShardDataset(prepared)
    loader = BatchLoader(dataset, config["batch_size"], seed=config["seed"], as_uint8=True)
    bpe = loader.batches_per_epoch
    identity = resume.dataset_identity(dataset)
    if saved:
        resume.check_same_data(saved["config"], identity, config["data_dir"])
        if not 0 <= int(saved["batch"]) < bpe:
            raise UsageError(f"the checkpoint is at batch {saved['batch']} of an epoch, but the "
                             f"data has {bpe} batches per epoch ({len(dataset)} images); resume "
                             f"with the data it was trained on")
    kid = None                      # --eval-every: rawgan.eval holds the logic (KIDMonitor)
    if args.eval_every:
        from .eval import make_kid_monitor
        kid = make_kid_monitor(dataset, args.eval_n or 1000, config, UsageError)
    device = backend in ("cupy", "emulated")
    conv_impl = None if backend in ("numpy", "reference") else (args.conv_impl or "kernels")
    precision = args.precision or (DEFAULT_PRECISION if device else None)     # per invocation
    config.update(dataset=identity, backend=backend, conv_impl=conv_impl, precision=precision)
    options = {k: v for k, v in (("conv_impl", conv_impl), ("precision", precision)) if v}

    # -- model: G, D and an Adam optimizer for each, on the chosen backend ----------------------
    try:
        B = get_backend(backend, **options)
    except (ValueError, RuntimeError, ImportError) as e:
        raise UsageError(str(e)) from None
    model = DCGAN(B, z_dim=config["z_dim"], ngf=config["ngf"], ndf=config["ndf"], lr=config["lr"],
                  beta1=config["beta1"], seed=config["seed"])

    # -- position: step, (epoch, batch) of the next batch, the z stream. The fixed sample z is the
    #    stream's first draw; training z's follow it ------------------------------------------------
    if ckpt is None:
        step, epoch, batch = 0, 0, 0
        z_stream = PhiloxState(config["seed"])
        sample_z = draw_z(B, z_stream, SAMPLE_GRID, config["z_dim"], config["z_dist"])
    else:
        ckpt_io.restore(model, ckpt)
        for opt in (model.opt_G, model.opt_D):        # a changed --lr/--beta1 wins
            opt.lr, opt.beta1 = config["lr"], config["beta1"]
        step, epoch, batch = int(saved["step"]), int(saved["epoch"]), int(saved["batch"])
        z_stream = PhiloxState(0)
        z_stream.load_state_dict(saved["z_rng"])
        sample_z = B.asarray(saved["sample_z"])
    total = config["max_steps"] or config["epochs"] * bpe                  # --max-steps wins
    every = {k: config[k + "_every"] for k in ("log", "sample", "checkpoint")}
    check_run_space(out, ckpt_io.checkpoint_nbytes(model), config["keep_checkpoints"],
                    max(0, total - step) // every["checkpoint"] + 1,
                    samples_to_come=max(0, total - step) // every["sample"] + 1,
                    tensorboard=not args.no_tensorboard)
    # -- every check that can refuse the run has passed: only now touch the earlier run's files
    if take_over is not None:
        take_over()            # a folder whose run died before its first checkpoint, or --resume PATH
    if ckpt is not None:
        trim_metrics(out / "metrics.jsonl", step)
    print_start(config, dataset, prepared, bpe, B, model, ckpt)
    if step >= total:
        print(f"nothing to do: the run is at step {step} of {total}")
        return 0

    # -- the step: the uint8 batch is uploaded into a fixed buffer; z, the updates and the metrics
    #    stay on the device. On cupy/emulated it runs from static memory as one CUDA graph per
    #    step after a warm-up step (--no-graph: eagerly, with identical results) ------------------
    graph = not args.no_graph      # also with --conv-impl cudnn: its graphs are capturable
    train_step = TrainStep(model, config["batch_size"], z_stream, config["z_dist"],
                           config["g_steps"], graph=graph)

    last_ckpt = ckpt["path"] if ckpt else None       # the last good checkpoint
    log = RunLog(out, B, model, resumed_from=step if ckpt else None,
                 tensorboard=not args.no_tensorboard)

    def save_checkpoint() -> Path:
        """Check the step's losses, then write everything needed to continue exactly."""
        nonlocal last_ckpt
        check_finite(train_step.read_metrics(), step)
        t0 = time.time()
        kept = {k: v for k, v in config.items() if not k.startswith("_")}
        position = {"step": step, "epoch": epoch, "batch": batch, "z_rng": z_stream.state_dict(),
                    "config": kept, "config_json": json.dumps(kept, sort_keys=True),
                    "sample_z": B.to_numpy(sample_z)}
        try:
            last_ckpt = ckpt_io.save_checkpoint(ckpt_io.checkpoint_path(out / "checkpoints", step),
                                                model, position)
        except ckpt_io.NonFiniteState as e:          # finite losses, but the state blew up
            raise Diverged(f"non-finite values in {e.tensor} at step {step}") from None
        ckpt_io.prune_checkpoints(out / "checkpoints", config["keep_checkpoints"])
        log.tb.flush()
        log.add_overhead(time.time() - t0)
        return last_ckpt

    # -- the loop --------------------------------------------------------------------------------
    from tqdm import tqdm
    log.start(step)
    if step == 0:
        log.samples(sample_z, step, epoch)
    bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    start_step, timer, x, z = step, ScheduleEstimate(B, total - step), None, None
    signals.defer()               # from here on a first signal stops after the current step
    try:
        while step < total and not signals.requested:
            bar.set_description(f"epoch {epoch}")
            with loader.epoch_batches(epoch, batch) as batches:
                for x in batches:
                    # One iteration (DCGAN.train_step, run by TrainStep), all passes in train mode, so every forward
                    # through a BatchNorm moves its running statistics, as in the TF reference:
                    #   D update: D(x) and D(G(z)), losses vs 1 and 0, one Adam step for D;
                    #   then g_steps G updates on the same z: D(G(z)) vs 1, one Adam step for G.
                    # G's BN statistics move 1 + g_steps times per iteration (G(z) for D, then each
                    # G update), D's 2 + g_steps times (real, fake, then each G update).
                    train_step(x)                             # x: uint8 (N, 64, 64, 3)
                    x, z = train_step.x, train_step.z
                    step_epoch = epoch
                    step, batch = step + 1, batch + 1
                    if batch == bpe:                          # position of the *next* batch
                        epoch, batch = epoch + 1, 0
                    bar.update(1)
                    timer.step_done(step - start_step)
                    last = step >= total
                    if step % every["log"] == 0 or last:
                        host = train_step.read_metrics()      # the one host sync of a log step
                        log.losses(host, step, step_epoch, batch)
                        bar.set_postfix(d_loss=f"{host['d_loss']:.3f}", g_loss=f"{host['g_loss']:.3f}")
                        check_finite(host, step)
                    if step % every["sample"] == 0 or last:
                        log.samples(sample_z, step, step_epoch, x, z)
                    if kid is not None and step % args.eval_every == 0:
                        t0 = time.time()
                        kid.log(model, step, log.metrics_path, log.tb)
                        log.add_overhead(time.time() - t0)
                    if step % every["checkpoint"] == 0 or last:
                        save_checkpoint()
                    if last or signals.requested:
                        break
        if signals.requested and start_step < step < total and step % every["checkpoint"]:
            print(f"{signals.requested} at step {step}", file=sys.stderr, flush=True)
            log.samples(sample_z, step, step_epoch, x, z)
            save_checkpoint()
        log.close()                     # a TensorBoard write error is an error (exit 2) here
    except Diverged as e:
        bar.close()
        where = (f"the last good checkpoint is {last_ckpt}" if last_ckpt
                 else "no checkpoint was written before it")
        print(f"error: the run diverged: {e}. Stopping without writing a checkpoint; try a lower "
              f"--lr; {where}; metrics so far are in {log.metrics_path}.", file=sys.stderr,
              flush=True)
        return 1
    finally:
        bar.close()
        log.close(quiet=True)           # after an error: never hides it, never blocks
    if signals.requested:
        what = (f"saved checkpoint {last_ckpt}" if step > start_step else
                f"stopped before the first step; nothing new to save (checkpoint: {last_ckpt})")
        print(f"{what}\nresume with: {resume_command(args)}", flush=True)
        return 0
    note = f" (warning: the run looks collapsed: {log.collapse})" if log.collapse else ""
    print(f"done: {step} steps; final checkpoint {last_ckpt}{note}", flush=True)
    return 0


def check_finite(host: dict, step: int) -> None:
    """Raise Diverged if a loss or D output of ``host`` is NaN/Inf."""
    bad = ", ".join(f"{k}={v}" for k, v in host.items() if not math.isfinite(v))
    if bad:
        raise Diverged(f"non-finite loss at step {step} ({bad})")


def main(argv=None) -> int:
    from .eval import add_train_arguments
    parser = build_parser()
    add_train_arguments(parser)                # --eval-every, --eval-n
    args = parser.parse_args(argv)
    try:
        with Signals() as signals, RunFolder(args.out) as folder, \
                np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return train(args, folder, signals)
    except (DataError, CheckpointError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:          # NumPy's _ArrayMemoryError, CuPy's OutOfMemoryError
        what = "GPU memory" if "cupy" in type(e).__module__ else "memory"
        print(f"error: out of {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              f"); lower --batch-size or --ngf/--ndf, or use a machine with more {what}",
              file=sys.stderr)
        return 3
    except OSError as e:              # writing the run folder (disk full, permissions)
        where = f" ({e.filename})" if e.filename and str(e.filename) not in str(e) else ""
        print(f"error: {e}{where}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"interrupted by {e} (no checkpoint written)", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
