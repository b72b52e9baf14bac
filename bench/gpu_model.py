"""An ESTIMATE of one DCGAN train step on an H200, priced from the launch records of ``--count``.

    python bench/gpu_model.py                            # batch 64, ngf = ndf = 64, g_steps 1
    python bench/gpu_model.py --g-steps 2
    python bench/gpu_model.py --reductions one-block     # as before the 2-D reductions

No GPU is involved and nothing here is a measurement. The step is ``bench/train_step.py
--count``'s: ``count_steps`` runs the device-resident step (rawgan.models.step.TrainStep) on
``--backend emulated`` — one warm-up step, then one counted step, eagerly and as one captured
graph — under ``rt.skip_execution()`` (every launch is counted and recorded but not run: the data
are garbage, the shapes and launch configurations are exactly the backend's), and the runtime's
launch records (``rt.record_launches()``: kernel name, family, the bytes of every pointer
argument and whether it is written, FLOPs of GEMMs and cuDNN passes, grid and block size, the
compute precision) are priced with a small model (H200 constants of
rawgan/backend/cuda/common.py). The step is recorded once per precision (fp32, tf32): the
runtime's precision is what the records carry.

* launch shapes: those of an H200 (grid-stride kernels 8 blocks per SM, reductions up to 256
  threads), not the emulator's small ones;
* kernel: DRAM bytes = the sizes of its array arguments (read once, written once; in-place and
  multi-pass kernels listed in ``EXTRA_PASSES``/``IN_PLACE``), time = ``KERNEL_MIN_S`` + bytes /
  bandwidth, where the bandwidth is what the launch's blocks can stream (``common.stream_time``:
  ~6 GB/s per 256-thread block in flight, at most 80 % of 4.8 TB/s) — this is what makes
  one-block-per-channel reductions slow;
* GEMM / cuDNN: max(FLOPs / (peak x ``GEMM_EFFICIENCY``), bytes / bandwidth) + ``KERNEL_MIN_S``;
  peak FP32 67 TFLOP/s for fp32 records, TF32 tensor 495 TFLOP/s for tf32 records;
* host: eager launches cost ``HOST_KERNEL_S`` (our launcher + CuPy) or ``HOST_GEMM_S`` of Python
  each; the device runs a launch when it is issued and the previous one is done (a queue), so
  the eager estimate is max-like in host and device time. A CUDA graph issues everything at once
  (``GRAPH_LAUNCH_S``) and runs node after node (``GRAPH_NODE_S`` between nodes).

Output: per kernel family the launches, MB moved, GFLOP and estimated device time at fp32 and
tf32; then ``estimated_{eager,graph}_ms_{fp32,tf32}=`` and, for ``--precision`` (default tf32,
training's default), ``estimated_eager_ms=``/``estimated_graph_ms=`` — all labelled ESTIMATE.
"""
from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402

from rawgan.argtypes import positive_int  # noqa: E402
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
    "batchnorm_stats_2d": {0: 1},               # x: chunk mean, chunk M2
}
IN_PLACE = {"adam_update", "bias_add"}          # non-const arrays are read and written


PRECISIONS = ("fp32", "tf32")
PEAK_FLOPS = {"fp32": FP32_FLOPS, "tf32": TF32_FLOPS}


def record_step(batch: int, nf: int, g_steps: int, one_block: bool, precision: str = "fp32",
                mode: str = "eager") -> list:
    """The LaunchRecords of one counted TrainStep (``bench/train_step.py``'s ``count_steps``) on
    the emulated backend at ``precision``, every launch skipped, with an H200's launch shapes."""
    import train_step
    from rawgan.backend import get_backend

    B = get_backend("emulated", precision=precision)
    rt = B.ops.rt
    saved_chunks = common.reduction_chunks
    saved_reduce_block = common.EMULATED_REDUCE_BLOCK
    saved_cap = common._block_caps.get(id(rt))
    # Launch shapes of an H200, not the emulator's small ones: grid-stride kernels get 8 blocks
    # per SM (common.block_cap on cupy), reductions up to 256 threads (common.reduce_block).
    common._block_caps[id(rt)] = 8 * common.H200_SMS
    common.EMULATED_REDUCE_BLOCK = common.MAX_REDUCE_BLOCK
    if one_block:
        import rawgan.backend.cuda.batchnorm as bn
        import rawgan.backend.cuda.conv as cv
        common.reduction_chunks = bn.reduction_chunks = cv.reduction_chunks = lambda *a, **k: 1
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), rt.skip_execution():
            warnings.simplefilter("ignore")
            result = train_step.count_steps(B, batch, g_steps, nf, nf, 1, mode)
    finally:
        common.EMULATED_REDUCE_BLOCK = saved_reduce_block
        if saved_cap is None:
            common._block_caps.pop(id(rt), None)
        else:
            common._block_caps[id(rt)] = saved_cap
        if one_block:
            import rawgan.backend.cuda.batchnorm as bn
            import rawgan.backend.cuda.conv as cv
            common.reduction_chunks = bn.reduction_chunks = cv.reduction_chunks = saved_chunks
        B = get_backend("emulated")                   # the runtime back at fp32 (tests, parity)
    return result["records"]


def record_bytes(rec) -> float:
    """DRAM bytes of one launch record (EXTRA_PASSES / IN_PLACE applied to kernels)."""
    if rec.kind != "kernel":
        return float(rec.nbytes)
    extra = EXTRA_PASSES.get(rec.name, {})
    total = 0.0
    for i, (size, written) in enumerate(rec.arrays):
        passes = 1 + extra.get(i, 0) + (1 if written and rec.name in IN_PLACE else 0)
        total += float(size) * passes
    return total


def device_time(rec, precision: str | None = None) -> float:
    """Estimated device seconds of one launch record (at ``precision``, default its own)."""
    nbytes = record_bytes(rec)
    if rec.flops:
        peak = PEAK_FLOPS[precision or rec.precision or "fp32"]
        bw = common.stream_time(nbytes, 10**9, common.H200_SMS)
        return KERNEL_MIN_S + max(rec.flops / (peak * GEMM_EFFICIENCY), bw)
    blocks = max(1.0, rec.blocks * rec.threads / 256.0)
    return KERNEL_MIN_S + common.stream_time(nbytes, blocks, common.H200_SMS)


def estimate(records: list) -> dict:
    """Eager and graph step estimates (seconds) and the per-family breakdown of ``records``."""
    fam = collections.OrderedDict()
    host_t = dev_free = dev_sum = 0.0
    for rec in records:
        d = device_time(rec)
        f = fam.setdefault(rec.family, [0, 0.0, 0.0, 0.0])
        f[0] += 1
        f[1] += record_bytes(rec)
        f[2] += rec.flops
        f[3] += d
        host_t += HOST_GEMM_S if rec.kind != "kernel" else HOST_KERNEL_S
        dev_free = max(dev_free, host_t) + d          # the queue: issued, then after the previous
        dev_sum += d
    n = len(records)
    return {"families": fam, "eager_s": dev_free, "graph_s": GRAPH_LAUNCH_S + dev_sum + n * GRAPH_NODE_S,
            "device_s": dev_sum, "host_s": host_t, "launches": n}


def report(est: dict, title: str, graph: dict | None = None) -> str:
    """The table: per family launches, MB, GFLOP and device us at each precision of ``est``
    ({precision: estimate() of the eager step's records}), then the eager estimates and the
    graph estimates (of ``graph``: {precision: estimate() of the graph step's records}; default:
    the eager records priced as a graph), labelled ESTIMATE."""
    graph = graph or est
    precisions = list(est)
    first = est[precisions[0]]
    lines = [f"ESTIMATE (a model, not a measurement) — {title}",
             f"{'family':34s} {'launches':>8s} {'MB':>9s} {'GFLOP':>8s} "
             + " ".join(f"{p + ' dev us':>12s}" for p in precisions)]
    for name, (count, nbytes, flops, _) in sorted(first["families"].items(), key=lambda kv: -kv[1][3]):
        lines.append(f"{name:34s} {count:8d} {nbytes / 1e6:9.1f} {flops / 1e9:8.2f} "
                     + " ".join(f"{est[p]['families'][name][3] * 1e6:12.1f}" for p in precisions))
    lines.append(f"launches {first['launches']}; host (eager Python) {first['host_s'] * 1e3:.2f} ms; "
                 + "; ".join(f"device {p} {est[p]['device_s'] * 1e3:.2f} ms" for p in precisions))
    for p in precisions:
        lines.append(f"estimated_eager_ms_{p}={est[p]['eager_s'] * 1e3:.2f}")
        lines.append(f"estimated_graph_ms_{p}={graph[p]['graph_s'] * 1e3:.2f}")
    return "\n".join(lines)


def conv_choices(batch: int, nf: int) -> str:
    """Per DCGAN convolution and pass: the modelled seconds of cuDNN (implicit GEMM + explicit
    pad) and of the im2col kernels at fp32 and tf32 (rawgan.backend.cuda.cudnn_conv.
    modelled_seconds — what ``--conv-impl cudnn`` decides by without a GPU), an ESTIMATE."""
    from rawgan.backend.cuda.cudnn_conv import modelled_seconds

    layers = []
    c = [3, nf, 2 * nf, 4 * nf, 8 * nf]
    for i in range(4):                      # D conv i: x (B, c[i], hw, hw) -> (B, c[i+1], hw/2, hw/2)
        hw = 64 >> i
        layers.append((f"D conv{i + 1}", (batch, c[i], hw, hw), (c[i + 1], c[i], 5, 5)))
    for i in range(4):                      # G convT i = the conv of its output, passes swapped
        hw = 8 << i
        layers.append((f"G convT{i + 1}", (batch, c[3 - i], hw, hw), (c[4 - i], c[3 - i], 5, 5)))
    lines = ["ESTIMATE — conv passes, cuDNN vs im2col kernels (us per call; the choice without a GPU)",
             f"{'layer':12s} {'pass':6s} {'fp32 cudnn':>11s} {'fp32 kern':>10s} {'tf32 cudnn':>11s} "
             f"{'tf32 kern':>10s}  choice fp32/tf32"]
    for name, xs, ws in layers:
        for kind in ("fprop", "dgrad", "wgrad"):
            t = {p: modelled_seconds(kind, xs, ws, (2, 2), (1, 2, 1, 2), p) for p in PRECISIONS}
            pick = "/".join("cudnn" if t[p]["cudnn"] <= t[p]["kernels"] else "kernels" for p in PRECISIONS)
            lines.append(f"{name:12s} {kind:6s} {t['fp32']['cudnn'] * 1e6:11.1f} "
                         f"{t['fp32']['kernels'] * 1e6:10.1f} {t['tf32']['cudnn'] * 1e6:11.1f} "
                         f"{t['tf32']['kernels'] * 1e6:10.1f}  {pick}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--nf", type=positive_int, default=64, help="ngf = ndf")
    p.add_argument("--g-steps", type=positive_int, default=1)
    p.add_argument("--precision", choices=PRECISIONS, default="tf32",
                   help="the precision of the estimated_eager_ms=/estimated_graph_ms= lines "
                        "(both are always in the table; default tf32, training's default)")
    p.add_argument("--reductions", choices=("auto", "one-block"), default="auto",
                   help="auto: the backend's launch forms; one-block: every per-channel reduction "
                        "one block per channel (before the 2-D reductions)")
    p.add_argument("--conv-choices", action="store_true",
                   help="also print, per DCGAN convolution and pass, the modelled cuDNN vs im2col "
                        "kernel times (the per-layer choice of --conv-impl cudnn without a GPU)")
    args = p.parse_args(argv)
    one_block = args.reductions == "one-block"
    try:
        est, graph = ({prec: estimate(record_step(args.batch_size, args.nf, args.g_steps, one_block,
                                                  prec, mode))
                       for prec in PRECISIONS} for mode in ("eager", "graph"))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(est, f"H200, batch {args.batch_size}, ngf=ndf={args.nf}, g_steps {args.g_steps}, "
                      f"reductions {args.reductions}; launch records of bench/train_step.py --count",
                 graph))
    print(f"launch records per step: eager {est[args.precision]['launches']}, graph "
          f"{graph[args.precision]['launches']}")
    if args.conv_choices:
        print(conv_choices(args.batch_size, args.nf))
    print(f"estimated_eager_ms={est[args.precision]['eager_s'] * 1e3:.2f}")
    print(f"estimated_graph_ms={graph[args.precision]['graph_s'] * 1e3:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
