"""Each DCGAN layer's forward and backward at its real shape (batch 64): rawgan vs PyTorch.

    python bench/layers.py                         # the fast CPU backend (numpy) vs torch CPU
    python bench/layers.py --backend reference     # the naive reference vs torch CPU
    python bench/layers.py --backend cupy          # our kernels vs torch CUDA (+ GB/s, GFLOP/s)
    python bench/layers.py --only conv             # substring filter on the layer names

For every layer: median ms of forward and of backward over ``--repeat`` runs (rawgan and torch
alternating, after ``--warmup`` runs each), and the ratio rawgan/torch. Backward means what the
train step computes for that layer: weight and bias gradients and the input gradient (for the
torch side: ``time(forward + backward) − time(forward)``, the graph being rebuilt each run; the
first D conv's input gradient is skipped on both sides, as in the train step). Conv-like rows
also print GFLOP/s (MACs·2 per pass); elementwise rows print GB/s (bytes read + written once).
On a GPU the achieved rates are also given as a fraction of the H200's peaks (67 TFLOP/s FP32
non-tensor, 4.8 TB/s HBM3e) — that path is untested without a GPU and refuses to run without one.

Threads: ``--threads`` (default: CPUs available) for the numpy backend's pool
(``RAWGAN_NUM_THREADS``, which splits the GEMMs; OpenBLAS itself single-threaded,
``--blas-threads 1``), for OpenBLAS with ``--backend reference`` (which has no pool) and for
torch (``torch.set_num_threads``, OMP/MKL) — the same convention as bench/train_step.py. Must be
set before NumPy loads, so the script re-executes itself with the environment set when needed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rawgan.argtypes import nonnegative_int, positive_int  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEAK_FLOPS = 67e12
PEAK_BW = 4.8e12


def _reexec_with_threads(threads, blas_threads):
    want = {"OPENBLAS_NUM_THREADS": str(blas_threads), "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "RAWGAN_NUM_THREADS": str(threads)}
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    env = dict(os.environ, **want)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def specs(batch=64):
    """(name, kind, x_shape, constructor args, flops_per_pass or bytes)."""
    N = batch
    out = []
    d = [(3, 64, 64), (64, 128, 32), (128, 256, 16), (256, 512, 8)]
    for i, (cin, cout, hw) in enumerate(d):
        out.append((f"D.conv{i + 1} {cin}->{cout} {hw}->{hw // 2}", "conv", (N, cin, hw, hw),
                    (cin, cout), 2 * N * cout * (hw // 2) ** 2 * cin * 25, i == 0))
    g = [(512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 3, 32)]
    for i, (cin, cout, hw) in enumerate(g):
        out.append((f"G.convT{i + 1} {cin}->{cout} {hw}->{hw * 2}", "convT", (N, cin, hw, hw),
                    (cin, cout), 2 * N * cin * hw * hw * cout * 25, False))
    out.append(("G.linear 100->8192", "linear", (N, 100), (100, 8192), 2 * N * 100 * 8192, True))
    out.append(("D.linear 8192->1", "linear", (N, 8192), (8192, 1), 2 * N * 8192, False))
    for c, hw in [(512, 4), (256, 8), (128, 16), (64, 32)]:
        out.append((f"G.bn {c}x{hw}x{hw}", "bn", (N, c, hw, hw), (c,), None, False))
    for c, hw in [(128, 16), (256, 8), (512, 4)]:
        out.append((f"D.bn {c}x{hw}x{hw}", "bn", (N, c, hw, hw), (c,), None, False))
    for c, hw in [(256, 8), (128, 16), (64, 32)]:
        out.append((f"G.relu {c}x{hw}x{hw}", "relu", (N, c, hw, hw), (), None, False))
    for c, hw in [(64, 32), (128, 16), (256, 8)]:
        out.append((f"D.lrelu {c}x{hw}x{hw}", "lrelu", (N, c, hw, hw), (), None, False))
    out.append(("G.tanh 3x64x64", "tanh", (N, 3, 64, 64), (), None, False))
    return out


def build_rawgan(B, kind, args, rng):
    from rawgan import layers as L
    if kind == "conv":
        return L.Conv2d(B, args[0], args[1], 5, 2, "same", rng=rng)
    if kind == "convT":
        return L.ConvTranspose2d(B, args[0], args[1], 5, 2, "same", rng=rng)
    if kind == "linear":
        return L.Linear(B, args[0], args[1], rng=rng)
    if kind == "bn":
        return L.BatchNorm(B, args[0])
    return {"relu": L.ReLU, "lrelu": lambda B: L.LeakyReLU(B, 0.2), "tanh": L.Tanh}[kind](B)


def build_torch(kind, args, dev):
    import torch.nn as nn
    sys.path.insert(0, HERE)
    from torch_dcgan import SameConv, SameConvT
    m = {"conv": lambda: SameConv(*args), "convT": lambda: SameConvT(*args),
         "linear": lambda: nn.Linear(*args), "bn": lambda: nn.BatchNorm2d(args[0], 0.1, 1e-5),
         "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}[kind]()
    return m.to(dev)


def median_ms(fn, sync, repeat):
    ts = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="numpy", choices=("numpy", "reference", "cupy", "emulated"))
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--repeat", type=positive_int, default=7)
    ap.add_argument("--warmup", type=nonnegative_int, default=2)
    ap.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--blas-threads", type=positive_int, default=1,
                    help="OpenBLAS threads of --backend numpy (default 1: the backend splits GEMMs "
                         "over its own pool of --threads threads, as in bench/train_step.py)")
    ap.add_argument("--only", default="", help="substring filter on layer names")
    ap.add_argument("--compare", default="torch", choices=("torch", "none"))
    args = ap.parse_args(argv)
    _reexec_with_threads(args.threads,
                         args.blas_threads if args.backend == "numpy" else args.threads)

    import numpy as np
    sys.path.insert(0, ROOT)
    from rawgan.backend import get_backend
    gpu = args.backend == "cupy"
    try:
        B = get_backend(args.backend, "float32")
    except (RuntimeError, ImportError) as e:
        raise SystemExit(f"backend {args.backend!r} unavailable: {e}")
    torch = None
    if args.compare == "torch":
        import torch
        torch.set_num_threads(args.threads)
        dev = "cuda" if gpu else "cpu"
        if gpu and not torch.cuda.is_available():
            raise SystemExit("--backend cupy: torch CUDA is not available for the comparison")
        tsync = torch.cuda.synchronize if gpu else (lambda: None)
    rng = np.random.default_rng(0)
    print(f"layers at batch {args.batch_size}, backend {args.backend}, threads {args.threads}, "
          f"median of {args.repeat} (ms); ratio = rawgan / torch")
    hdr = f"{'layer':30s} {'fwd':>8s} {'torch':>8s} {'ratio':>6s} | {'bwd':>8s} {'torch':>8s} {'ratio':>6s}"
    hdr += "  rate (fwd, bwd)" + ("  % of H200 peak" if gpu else "")
    print(hdr)
    tot = [0.0, 0.0, 0.0, 0.0]
    chosen = [spec for spec in specs(args.batch_size) if args.only in spec[0]]
    if not chosen:
        sys.exit(f"error: --only {args.only!r} matches no layer; names: "
                 + ", ".join(spec[0] for spec in specs(args.batch_size)))
    for name, kind, xs, cargs, flops, first in chosen:
        layer = build_rawgan(B, kind, cargs, rng)
        xnp = rng.uniform(-1, 1, xs).astype(np.float32)
        x = B.asarray(xnp)
        y = layer.forward(x)
        dynp = rng.standard_normal(tuple(y.shape)).astype(np.float32)
        dy = B.asarray(dynp)
        need_dx = not first
        fwd = lambda: layer.forward(x)
        bwd = lambda: layer.backward(dy, need_dx=need_dx)
        for _ in range(args.warmup):
            fwd(), bwd()
        if torch is not None:
            tm = build_torch(kind, cargs, dev)
            tx = torch.from_numpy(xnp).to(dev).requires_grad_(need_dx)
            tdy = torch.from_numpy(dynp).to(dev)
            tf = lambda: tm(tx)
            ty = tm(tx)       # one graph, kept: the backward alone is timed, like rawgan's
            has_grad = ty.requires_grad
            tb = (lambda: ty.backward(tdy, retain_graph=True)) if has_grad else None
            for _ in range(args.warmup):
                tf()
                if tb:
                    tb()
        rf = median_ms(fwd, B.synchronize, args.repeat)
        rb = median_ms(bwd, B.synchronize, args.repeat)
        if torch is not None:
            pf = median_ms(tf, tsync, args.repeat)
            pb = median_ms(tb, tsync, args.repeat) if tb else float("nan")
        else:
            pf = pb = float("nan")
        tot[0] += rf
        tot[1] += pf
        tot[2] += rb
        tot[3] += pb
        if flops is not None:
            nb = 2 if need_dx else 1
            rate = f"{flops / rf / 1e6:7.1f} {nb * flops / rb / 1e6:7.1f} GFLOP/s"
            if gpu:
                rate += f"  {flops / rf / 1e-3 / PEAK_FLOPS:6.1%} {nb * flops / rb / 1e-3 / PEAK_FLOPS:6.1%}"
        else:
            nbytes = xnp.nbytes
            fb = (2 if kind != "bn" else 3) * nbytes          # read x (+ twice for BN), write y
            bb = 3 * nbytes                                     # read dy, saved, write dx
            rate = f"{fb / rf / 1e6:7.1f} {bb / rb / 1e6:7.1f} GB/s"
            if gpu:
                rate += f"  {fb / rf / 1e-3 / PEAK_BW:6.1%} {bb / rb / 1e-3 / PEAK_BW:6.1%}"
        print(f"{name:30s} {rf:8.2f} {pf:8.2f} {rf / pf:6.2f} | {rb:8.2f} {pb:8.2f} {rb / pb:6.2f}  "
              + rate, flush=True)
    print(f"{'total':30s} {tot[0]:8.2f} {tot[1]:8.2f} {tot[0] / tot[1]:6.2f} | {tot[2]:8.2f} "
          f"{tot[3]:8.2f} {tot[2] / tot[3]:6.2f}")


if __name__ == "__main__":
    main()
