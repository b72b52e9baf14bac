"""An ESTIMATE of one DCGAN train step on an H200, from the launches the step really makes.

    python bench/gpu_model.py                            # batch 64, ngf = ndf = 64, g_steps 1
    python bench/gpu_model.py --precision tf32 --g-steps 2
    python bench/gpu_model.py --reductions one-block     # as before the 2-D reductions

No GPU is involved and nothing here is a measurement. The step runs on ``--backend emulated``
with every kernel launch *recorded and skipped* (the data are garbage, the shapes and launch
configurations are exactly the backend's) and every ``xp.matmul`` recorded (the cuBLAS GEMMs).
Each launch is then priced with a small model (H200 constants of rawgan/backend/cuda/common.py):

* launch shapes: those of an H200 (grid-stride kernels 8 blocks per SM, reductions up to 256
  threads), not the emulator's small ones;
* kernel: DRAM bytes = the sizes of its array arguments (read once if const, written once
  otherwise; in-place and multi-pass kernels listed in ``EXTRA_PASSES``), time =
  ``KERNEL_MIN_S`` + bytes / bandwidth, where the bandwidth is what the launch's blocks can
  stream (``common.stream_time``: ~6 GB/s per 256-thread block in flight, at most 80 % of
  4.8 TB/s) — this is what makes one-block-per-channel reductions slow;
* GEMM: max(2mnk / (peak x ``GEMM_EFFICIENCY``), bytes / bandwidth) + ``KERNEL_MIN_S``; peak
  FP32 67 TFLOP/s, or TF32 tensor 495 TFLOP/s with ``--precision tf32``;
* host: eager launches cost ``HOST_KERNEL_S`` (our launcher + CuPy) or ``HOST_GEMM_S`` of Python
  each; the device runs a launch when it is issued and the previous one is done (a queue), so
  the eager estimate is max-like in host and device time. A CUDA graph issues everything at once
  (``GRAPH_LAUNCH_S``) and runs node after node (``GRAPH_NODE_S`` between nodes).

Not recorded: CuPy's own elementwise/reduction kernels (the gradient ``fill``, the metric means,
the ``+`` of d_loss), which the issue counted at ≈76 per step; they are listed as a separate
line priced at ``KERNEL_MIN_S`` (device) and ``HOST_KERNEL_S`` (host) each when ``--cupy-ops`` is
given a count. Output: per kernel family the launches, MB moved, GFLOP and estimated device
time; then the eager and graph step estimates, all labelled ESTIMATE.
"""
from __future__ import annotations

import argparse
import collections
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rawgan.argtypes import nonnegative_int, positive_int  # noqa: E402
from rawgan.backend.cuda import common  # noqa: E402

KERNEL_MIN_S = 2.0e-6        # a kernel's shortest device time (launch latency, tail)
HOST_KERNEL_S = 10e-6        # Python + CuPy per eager kernel launch (our launcher: pack_args + RawKernel)
HOST_GEMM_S = 15e-6          # Python + CuPy per cupy.matmul
GEMM_EFFICIENCY = 0.6        # share of the peak cuBLAS reaches on the DCGAN's GEMM shapes
FP32_FLOPS = 67e12
TF32_FLOPS = 495e12
GRAPH_LAUNCH_S = 10e-6       # one cudaGraphLaunch from Python
GRAPH_NODE_S = 1.0e-6        # gap between dependent graph nodes

# Extra read passes over an argument (index in the kernel's parameter list) beyond "once".
EXTRA_PASSES = {
    "batchnorm_forward_train": {0: 2},          # x: sum, squared deviations, normalise
    "batchnorm_backward": {0: 1, 1: 1},         # dy, x: sums, then dx
    "batchnorm_stats_partial": {0: 1},          # x: chunk mean, chunk M2
}
IN_PLACE = {"adam_update", "bias_add"}          # non-const arrays are read and written


@dataclass
class Launch:
    family: str                # kernel file, or "gemm (cuBLAS)"
    name: str
    nbytes: float
    flops: float
    blocks: float              # 256-thread block equivalents in flight (kernels)


def record_step(batch: int, nf: int, g_steps: int, one_block: bool) -> list[Launch]:
    """Run one DCGAN step (after one warm-up step) on the emulated backend, recording launches."""
    from rawgan.backend import get_backend
    from rawgan.models.dcgan import DCGAN
    from rawgan.runtime import emulator

    launches: list[Launch] = []
    recording = [False]

    def kernel_call(self, grid, block, args, *, shared_mem=0, stream=None, schedule=None):
        g = (grid,) if isinstance(grid, (int, np.integer)) else tuple(grid)
        b = (block,) if isinstance(block, (int, np.integer)) else tuple(block)
        if not recording[0]:
            return
        nbytes = 0.0
        extra = EXTRA_PASSES.get(self.name, {})
        for i, (p, v) in enumerate(zip(self.signature.params, args)):
            if not p.pointer or v is None:
                continue
            size = float(v.nbytes)
            passes = 1 + extra.get(i, 0)
            if not p.const and self.name in IN_PLACE:
                passes += 1
            nbytes += size * passes
        threads = float(np.prod(b))
        launches.append(Launch(self.module.name, self.name, nbytes, 0.0,
                               float(np.prod(g)) * threads / 256.0))

    B = get_backend("emulated")
    matmul = B.xp.matmul

    def recorded_matmul(a, b_):
        if a.ndim != 2 or b_.ndim != 2:
            return matmul(a, b_)
        m, k = a.shape
        n = b_.shape[1]
        if recording[0]:
            launches.append(Launch("gemm (cuBLAS)", f"{m}x{k} @ {k}x{n}",
                                   4.0 * (m * k + k * n + m * n), 2.0 * m * n * k, 0.0))
        return B.xp.empty((m, n), dtype=a.dtype)        # skipped like the kernels

    saved_call = emulator.EmulatedKernel.__call__
    saved_chunks = common.reduction_chunks
    saved_reduce_block = common.EMULATED_REDUCE_BLOCK
    rt = B.ops.rt

    def recorded_gemm(a, b_, out):                      # rt.gemm: the step's cuBLAS GEMMs
        m, k = a.shape
        n = b_.shape[1]
        if recording[0]:
            launches.append(Launch("gemm (cuBLAS)", f"{m}x{k} @ {k}x{n}",
                                   4.0 * (m * k + k * n + m * n), 2.0 * m * n * k, 0.0))
    rt.gemm = recorded_gemm                               # skipped like the kernels
    saved_cap = common._block_caps.get(id(rt))
    # Launch shapes of an H200, not the emulator's small ones: grid-stride kernels get 8 blocks
    # per SM (common.block_cap on cupy), reductions up to 256 threads (common.reduce_block).
    common._block_caps[id(rt)] = 8 * common.H200_SMS
    common.EMULATED_REDUCE_BLOCK = common.MAX_REDUCE_BLOCK
    emulator.EmulatedKernel.__call__ = kernel_call
    B.xp._cache["matmul"] = recorded_matmul             # the emulated xp namespace's cache
    if one_block:
        common.reduction_chunks = lambda *a, **k: 1
        import rawgan.backend.cuda.batchnorm as bn
        import rawgan.backend.cuda.conv as cv
        bn.reduction_chunks = cv.reduction_chunks = common.reduction_chunks
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            model = DCGAN(B, ngf=nf, ndf=nf, seed=0)
            x = B.asarray(np.zeros((batch, 3, 64, 64), np.float32))
            z = B.asarray(np.zeros((batch, 100), np.float32))
            model.train_step(x, z, g_steps)              # warm-up (module loading)
            recording[0] = True
            model.train_step(x, z, g_steps)
    finally:
        recording[0] = False
        rt.__dict__.pop("gemm", None)
        emulator.EmulatedKernel.__call__ = saved_call
        common.EMULATED_REDUCE_BLOCK = saved_reduce_block
        if saved_cap is None:
            common._block_caps.pop(id(rt), None)
        else:
            common._block_caps[id(rt)] = saved_cap
        B.xp._cache.pop("matmul", None)
        if one_block:
            import rawgan.backend.cuda.batchnorm as bn
            import rawgan.backend.cuda.conv as cv
            common.reduction_chunks = bn.reduction_chunks = cv.reduction_chunks = saved_chunks
    return launches


def device_time(launch: Launch, peak_flops: float) -> float:
    bw_time = common.stream_time(launch.nbytes, max(1.0, launch.blocks) if launch.flops == 0
                                 else 10**9, common.H200_SMS)
    if launch.flops:
        return KERNEL_MIN_S + max(launch.flops / (peak_flops * GEMM_EFFICIENCY), bw_time)
    return KERNEL_MIN_S + bw_time


def estimate(launches: list[Launch], peak_flops: float, cupy_ops: int) -> dict:
    """Eager and graph step estimates (seconds) and the per-family breakdown."""
    fam = collections.OrderedDict()
    host_t = dev_free = 0.0
    dev_sum = 0.0
    for ln in launches:
        d = device_time(ln, peak_flops)
        f = fam.setdefault(ln.family, [0, 0.0, 0.0, 0.0])
        f[0] += 1
        f[1] += ln.nbytes
        f[2] += ln.flops
        f[3] += d
        host_t += HOST_GEMM_S if ln.flops else HOST_KERNEL_S
        dev_free = max(dev_free, host_t) + d          # the queue: issued, then after the previous
        dev_sum += d
    if cupy_ops:
        fam["cupy elementwise (not recorded)"] = [cupy_ops, 0.0, 0.0, cupy_ops * KERNEL_MIN_S]
        host_t += cupy_ops * HOST_KERNEL_S
        dev_free = max(dev_free, host_t) + cupy_ops * KERNEL_MIN_S
        dev_sum += cupy_ops * KERNEL_MIN_S
    n = len(launches) + cupy_ops
    return {"families": fam, "eager_s": dev_free, "graph_s": GRAPH_LAUNCH_S + dev_sum + n * GRAPH_NODE_S,
            "device_s": dev_sum, "host_s": host_t, "launches": n}


def report(est: dict, title: str) -> str:
    lines = [f"ESTIMATE (a model, not a measurement) — {title}",
             f"{'family':34s} {'launches':>8s} {'MB':>9s} {'GFLOP':>8s} {'device us':>10s}"]
    for name, (count, nbytes, flops, secs) in sorted(est["families"].items(), key=lambda kv: -kv[1][3]):
        lines.append(f"{name:34s} {count:8d} {nbytes / 1e6:9.1f} {flops / 1e9:8.2f} {secs * 1e6:10.1f}")
    lines.append(f"launches {est['launches']}; device {est['device_s'] * 1e3:.2f} ms, host (eager Python) "
                 f"{est['host_s'] * 1e3:.2f} ms")
    lines.append(f"estimated_eager_ms={est['eager_s'] * 1e3:.2f}")
    lines.append(f"estimated_graph_ms={est['graph_s'] * 1e3:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--nf", type=positive_int, default=64, help="ngf = ndf")
    p.add_argument("--g-steps", type=positive_int, default=1)
    p.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                   help="GEMM peak: FP32 67 or TF32 495 TFLOP/s (the backend is FP32 today)")
    p.add_argument("--reductions", choices=("auto", "one-block"), default="auto",
                   help="auto: the backend's launch forms; one-block: every per-channel reduction "
                        "one block per channel (before the 2-D reductions)")
    p.add_argument("--cupy-ops", type=nonnegative_int, default=0,
                   help="unrecorded CuPy elementwise kernels per step to add (the issue counted ~76)")
    args = p.parse_args(argv)
    try:
        launches = record_step(args.batch_size, args.nf, args.g_steps, args.reductions == "one-block")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    peak = TF32_FLOPS if args.precision == "tf32" else FP32_FLOPS
    est = estimate(launches, peak, args.cupy_ops)
    print(report(est, f"H200, batch {args.batch_size}, ngf=ndf={args.nf}, g_steps {args.g_steps}, "
                      f"GEMMs {args.precision}, reductions {args.reductions}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
