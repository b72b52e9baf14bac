"""What a training run reports, and where: metrics.jsonl, the console, sample grids, TensorBoard,
and the collapse warning.

    metrics.jsonl           one JSON object per log step: step, epoch, batch, time, elapsed_s,
                            sec_per_step, d_loss_real, d_loss_fake, d_loss, g_loss,
                            d_real (mean D(x)) and d_fake (mean D(G(z))) from the D update's
                            passes, d_fake_g (mean D(G(z)) in the last G update), collapse
                            (null, or why the run looks collapsed)
    samples/train_EE_SSSSSS.png   8x8 grid of G(fixed z) in eval mode (BN running statistics)
    tb/                     TensorBoard events (tensorboard --logdir RUN_DIR/tb): the losses, D's
                            outputs, s/step, health/collapse (0/1), the grid, histograms of
                            weights, z and D's logits

Collapse detector: a GAN whose D wins outright (d_loss ~ 0: D(x) ~ 1 and D(G(z)) ~ 0, so G gets
no gradient) or whose G emits one picture for every z does not recover by itself, yet its losses
stay finite. When d_loss < COLLAPSE_D_LOSS at COLLAPSE_LOG_STEPS log steps in a row, or a sample
grid becomes constant (per-pixel standard deviation over the 64 images < COLLAPSE_SAMPLE_STD after
an earlier grid of the run was not: a freshly initialised G is nearly constant too), the run
prints a ``warning: the run looks collapsed`` line on stderr (once per episode), marks the metrics
records (``collapse``) and TensorBoard (``health/collapse`` = 1), and goes on: it is a warning, not
a stop; a lower --lr is the usual cure.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .data import make_grid, save_grid
from .models.dcgan import frozen_buffers
from .tblog import TBLogger

COLLAPSE_D_LOSS = 1e-3
COLLAPSE_LOG_STEPS = 5
COLLAPSE_SAMPLE_STD = 1e-3


class RunLog:
    """The reporting side of one run in RUN_DIR ``out`` (see the module docstring).

    ``resumed_from``: the step a resumed run starts at (TensorBoard then drops the earlier run's
    events after that step; the checkpoint step's own events stay), else None.
    """

    def __init__(self, out: Path, B, model, resumed_from: int | None, tensorboard: bool):
        self.B, self.model = B, model
        self.metrics_path = Path(out) / "metrics.jsonl"
        self.sample_dir = Path(out) / "samples"
        self.tb = TBLogger(Path(out) / "tb", enabled=tensorboard,
                           purge_step=None if resumed_from is None else resumed_from + 1)
        self.low_d_loss = 0             # consecutive log steps with d_loss ~ 0
        self.constant_samples = False   # the latest grid is one picture, earlier ones were not
        self.samples_varied = False     # an earlier grid of this invocation showed different faces
        self.collapse = None            # why the run looks collapsed, or None
        self.overhead_s = 0.0           # time spent sampling/checkpointing since the last log
        self.last_log = (0, time.time())

    def start(self, step: int) -> None:
        self.start_time = time.time()
        self.last_log = (step, self.start_time)

    # -- log steps ------------------------------------------------------------------------------
    def losses(self, host: dict, step: int, epoch: int, batch: int) -> None:
        """One log step: a metrics.jsonl record, a console line, TensorBoard scalars. ``host``
        holds the step's metrics as Python floats."""
        from tqdm import tqdm

        now = time.time()
        sec_per_step = (now - self.last_log[1] - self.overhead_s) / max(step - self.last_log[0], 1)
        self.last_log, self.overhead_s = (step, now), 0.0
        self.low_d_loss = self.low_d_loss + 1 if host["d_loss"] < COLLAPSE_D_LOSS else 0
        self._update_collapse(step)
        record = {"step": step, "epoch": epoch, "batch": batch, "time": round(now, 3),
                  "elapsed_s": round(now - self.start_time, 3),
                  "sec_per_step": round(sec_per_step, 4)}
        record.update({k: (v if math.isfinite(v) else None) for k, v in host.items()})
        record["collapse"] = self.collapse
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:              # a failed write() names no file; this one does
            raise OSError(e.errno, e.strerror or str(e), str(self.metrics_path)) from None
        tqdm.write(f"step {step:6d} epoch {epoch} | d_loss {host['d_loss']:.4f} "
                   f"(real {host['d_loss_real']:.4f} fake {host['d_loss_fake']:.4f}) "
                   f"g_loss {host['g_loss']:.4f} | D(x) {host['d_real']:.3f} "
                   f"D(G(z)) {host['d_fake']:.3f} | {sec_per_step:.2f} s/step", file=sys.stdout)
        sys.stdout.flush()
        tb = self.tb
        tb.scalars({k: host[k] for k in ("d_loss_real", "d_loss_fake", "d_loss", "g_loss")}, step,
                   prefix="loss/")
        tb.scalars({"D_x": host["d_real"], "D_G_z": host["d_fake"],
                    "D_G_z_g_update": host["d_fake_g"]}, step, prefix="D/")
        tb.scalars({"sec_per_step": sec_per_step}, step, prefix="perf/")
        tb.scalars({"collapse": float(self.collapse is not None)}, step, prefix="health/")

    def _update_collapse(self, step: int) -> None:
        why = []
        if self.low_d_loss >= COLLAPSE_LOG_STEPS:
            why.append(f"d_loss < {COLLAPSE_D_LOSS:g} at {self.low_d_loss} log steps in a row "
                       f"(D wins outright; G gets no gradient)")
        if self.constant_samples:
            why.append("G's samples are all the same picture")
        now = "; ".join(why) or None
        if now is not None and self.collapse is None:
            print(f"warning: the run looks collapsed at step {step}: {now}. Training goes on; "
                  f"consider restarting with a lower --lr", file=sys.stderr, flush=True)
        self.collapse = now

    # -- sample grids and histograms ------------------------------------------------------------
    def samples(self, sample_z, step: int, epoch: int, x=None, z=None) -> Path:
        """8x8 grid of G(sample_z) in eval mode -> samples/train_EE_SSSSSS.png and TensorBoard;
        with the latest batch ``x`` and ``z``, histograms too. Flushes TensorBoard."""
        t0 = time.time()
        images = self.B.to_numpy(self.model.sample(sample_z, eval_mode=True))
        constant = bool(np.nan_to_num(images.std(axis=0)).mean() < COLLAPSE_SAMPLE_STD)
        self.constant_samples = constant and self.samples_varied   # *became* constant
        self.samples_varied |= not constant
        path = save_grid(images, self.sample_dir / f"train_{epoch:02d}_{step:06d}.png")
        self.tb.image("samples", make_grid(images), step)
        self.histograms(step, x, z)
        self.tb.flush()
        self.overhead_s += time.time() - t0
        return path

    def histograms(self, step: int, x, z) -> None:
        """Weights of the first and last layer of G and D; z; D's logits on the latest real batch
        and on G(z) (train mode, as in the step, with BN running statistics left untouched)."""
        if self.tb.writer is None:
            return
        G, D = self.model.G, self.model.D
        for net_name, net in (("G", G), ("D", D)):
            named = [(n, p) for n, p, _ in net.named_params() if n.endswith(".w")]
            for name, p in (named[0], named[-1]):
                self.tb.histogram(f"weights/{net_name}.{name}", p, step)
        if x is None:
            return
        with frozen_buffers(G, D):
            D.train()
            D.set_requires_grad(False)        # no backward follows: keep no im2col columns
            try:
                logits_real = D.forward(x)
                G.train()
                logits_fake = D.forward(G.forward(z))
            finally:
                D.set_requires_grad(True)
        self.tb.histogram("z", z, step)
        self.tb.histogram("logits/D_x", logits_real, step)
        self.tb.histogram("logits/D_G_z", logits_fake, step)

    def add_overhead(self, seconds: float) -> None:
        """Time spent outside training steps (checkpoints), left out of s/step."""
        self.overhead_s += seconds

    def close(self, quiet: bool = False) -> None:
        """Close TensorBoard (once): OSError naming tb/ if its last events could not be written,
        unless ``quiet`` (another error is already on its way out)."""
        self.tb.close(quiet=quiet)


def print_start(config: dict, dataset, prepared, bpe: int, B, model, ckpt) -> None:
    """The run's opening lines: data, backend, model size, settings, where it resumes."""
    print(f"rawgan.train: {len(dataset)} images in {prepared}, {bpe} batches per epoch; "
          f"backend {B}")
    print(f"backend: {B.name} on {B.device}")
    if config.get("precision"):
        print(f"precision: {config['precision']} (GEMMs and convolutions"
              + ("; the emulator computes FP32 either way)" if B.name == "emulated" else ")"))
    print(f"G: {model.G.num_params():,} parameters   D: {model.D.num_params():,} parameters")
    print("config: " + json.dumps({k: v for k, v in config.items() if not k.startswith("_")},
                                  sort_keys=True))
    if ckpt is not None:
        e = ckpt["extra"]
        print(f"resuming from {ckpt['path']} at step {e['step']} (epoch {e['epoch']}, batch "
              f"{e['batch']})" + ("; changed: " + ", ".join(config["_changed"])
                                  if config["_changed"] else ""))
    sys.stdout.flush()


class ScheduleEstimate:
    """Times ESTIMATE_STEPS steps after the first one (which pays for warm-up) and then prints,
    once, how long the ``steps_left`` steps of the schedule will take on this machine and how to
    shorten it (--max-steps; a GPU)."""

    ESTIMATE_STEPS = 3

    def __init__(self, B, steps_left: int):
        self.B, self.steps_left, self.t0 = B, steps_left, None

    def step_done(self, done: int) -> None:
        """Call after each step; ``done`` = steps this invocation has completed."""
        if done == 1:
            self.B.synchronize()
            self.t0 = time.perf_counter()
        elif done == 1 + self.ESTIMATE_STEPS and self.t0 is not None:
            self.B.synchronize()
            per_step = (time.perf_counter() - self.t0) / self.ESTIMATE_STEPS
            print(estimate_line(per_step, self.steps_left, self.B.name), flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_line(per_step: float, steps: int, backend: str) -> str:
    """``estimate: N steps at X s/step on this machine: about T`` plus, for a schedule over 30
    minutes, how to shorten it: the --max-steps that fits in 30 minutes, and a GPU on the CPU."""
    line = (f"estimate: {steps:,} steps at {per_step:.2f} s/step on this machine "
            f"(backend {backend}): about {_duration(per_step * steps)}")
    if per_step * steps > 1800:
        fit = max(1, int(1800 / max(per_step, 1e-9)))
        line += f"; to shorten it: --max-steps {fit} (about 30 min)"
        if backend != "cupy":
            line += ", or --backend cupy on an NVIDIA GPU"
    return line
