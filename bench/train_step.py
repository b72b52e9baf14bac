"""Median time of one DCGAN train step: a rawgan backend and PyTorch, side by side.

    python bench/train_step.py --backend numpy --compare torch          # CPU, the issue's figure
    python bench/train_step.py --backend reference --compare torch      # the naive reference
    python bench/train_step.py --backend cupy --compare torch           # GPU (torch CUDA eager)
    python bench/train_step.py --backend emulated --count               # launches/allocations per step

One step (batch B=64, ``--g-steps 1``): G(z) once; D forward+backward on the real batch and on
the fake batch (separate BN statistics); one Adam step for D; then ``g_steps`` × [G forward
(not in the first: the D update's G(z) is reused, ``DCGAN.reuse_g_forward``), D forward, D
backward to its input (no D weight gradients), G backward (no dz), Adam step for G].
This is exactly ``rawgan.models.dcgan.DCGAN.train_step`` and ``bench/torch_dcgan.TorchDCGAN``.

Method. Each side runs in its own child process (so its peak resident memory,
``getrusage(RUSAGE_SELF).ru_maxrss`` in the child, is its own), builds the model, runs
``--warmup`` steps, then the parent alternates rounds — one timed step of rawgan, one of torch,
… — so both sides see the same machine state (thermal, other load); while one side runs the
other is blocked reading its pipe. Reported: the median ms/step, images/s (= B / median) and
achieved GFLOP/s (= analytic FLOPs / median). The LAST line printed is
``ratio_vs_torch=<rawgan median / torch median>`` (absent with ``--compare none``); before it,
``rss_ratio_vs_torch`` and ``cpu_ratio_vs_torch`` (median CPU time per step, all threads, from
``time.process_time`` — a cross-check that is less sensitive to other load on the machine,
though spinning BLAS/OpenMP threads count in it).

Threads. Both sides compute on ``--threads`` threads (default: the CPUs this process may run
on). The torch child calls ``torch.set_num_threads(threads)`` (and gets ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` = threads). The ``--backend numpy`` child gets ``RAWGAN_NUM_THREADS`` =
threads (the fast CPU backend's stdlib thread pool, which runs the big copies and splits every
large GEMM by output rows/columns) and ``OPENBLAS_NUM_THREADS=1`` (``--blas-threads``), so each
GEMM piece is a single-threaded OpenBLAS call: the process computes on exactly ``threads`` threads, like
torch. Why not OpenBLAS's own threads: they synchronise by spinning/yielding, and on a machine
with other load a small-output GEMM (the RGB layer's weight gradient, 64×75 from a 65,536-long
reduction) took 1.6 s instead of 14 ms (see bench/RESULTS.md). ``--blas-threads N`` (N > 1)
hands the threads to OpenBLAS instead (the backend then does not split GEMMs). The
``--backend reference`` child has no pool: OpenBLAS gets the threads.

FLOP count (analytic, multiply-add = 2 FLOPs; only the passes that are actually computed). Per
conv/convT layer with MACs = N·K·P·Q·C·R·S (the convT counted as the conv it is the adjoint of):
fprop, dgrad and wgrad each cost MACs. At B=64, ngf=ndf=64:

    D conv1 3→64 64²→32²:     0.3146 GMAC     G convT 64→3 32²→64²:     0.3146 GMAC
    D conv2 64→128 32²→16²:   3.3554 GMAC     G convT 128→64 16²→32²:   3.3554 GMAC
    D conv3 128→256 16²→8²:   3.3554 GMAC     G convT 256→128 8²→16²:   3.3554 GMAC
    D conv4 256→512 8²→4²:    3.3554 GMAC     G convT 512→256 4²→8²:    3.3554 GMAC
    D linear 8192→1:          0.0005 GMAC     G linear 100→8192:        0.0524 GMAC

    D forward = 20.7629 GFLOP, G forward = 20.8667 GFLOP.
    D update:   G fwd + 2 × (D fwd + D wgrad (all) + D dgrad (all but conv1))     = 144.19 GFLOP
    G update:   G fwd + D fwd + D dgrad (all, linear included) + G wgrad (all) + G dgrad (all
                but the linear's dz)                                               = 104.02 GFLOP
                (the first one without its G fwd, reused from the D update:          83.15 GFLOP)
    total (g_steps=1) = 227.34 GFLOP (g_steps=2: 331.36). Before the reuse: 248.21; the team's
    earlier anchor for that was 248.1 (torch's FLOP counter); the 0.1 GFLOP difference is the size
    of one pass of G's 100→8192 linear (0.105 GFLOP).

Elementwise work (BN, activations, Adam) is not counted.

``--count`` (cupy or emulated) runs the device-resident step (``rawgan.models.step.TrainStep``)
eagerly and as one captured graph — one warm-up step, then ``--count-steps`` measured steps each —
and prints, per mode, ``launches_per_step=`` (kernels + GEMMs executed, inside the graph or not),
``allocations_per_step=`` (new device buffers: ``Runtime.empty``, the CuPy pool allocator, the
emulated xp), ``graph_launches_per_step=`` and the step's static memory. The counts depend on the
layer structure and ``--g-steps``, not on the widths: ``--ngf/--ndf`` make the emulated run fast.
On cupy/emulated the timed child also runs that step (one graph per step unless ``--no-graph``). ``--g-steps 2`` (the TF cadence) adds one
G update (104.02 GFLOP). GPU: ``--backend cupy`` vs torch CUDA eager (untested without a GPU;
guarded: fails with a clear message if CuPy/CUDA is missing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rawgan.argtypes import nonnegative_int, positive_int  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------- FLOP count
def conv_layers(batch=64, z_dim=100, nf=64, channels=3, image=64):
    """[(net, kind, MACs)] for the DCGAN: kind in conv/convT/linear_first/linear."""
    s = image // 16
    out = []
    # D: spatial image -> image/2 ...; conv C->K with output P×Q
    c = [channels, nf, nf * 2, nf * 4, nf * 8]
    hw = image
    for i in range(4):
        hw //= 2
        out.append(("D", f"conv{i + 1}", batch * c[i + 1] * hw * hw * c[i] * 25, i == 0))
    out.append(("D", "linear", batch * nf * 8 * s * s * 1, False))
    g = [nf * 8, nf * 4, nf * 2, nf, channels]
    out.append(("G", "linear", batch * z_dim * g[0] * s * s, True))
    hw = s
    for i in range(4):
        hw *= 2
        # convT g[i] -> g[i+1] at hw_in = hw/2 -> hw: the conv hw -> hw/2 with C=g[i+1], K=g[i]
        out.append(("G", f"convT{i + 1}", batch * g[i] * (hw // 2) ** 2 * g[i + 1] * 25, False))
    return out


def step_flops(batch=64, g_steps=1):
    """Analytic FLOPs of one train step (see the module docstring)."""
    layers = conv_layers(batch)
    D = [(m, first) for net, _, m, first in layers if net == "D"]
    G = [(m, first) for net, _, m, first in layers if net == "G"]
    fwd_D = sum(m for m, _ in D)
    fwd_G = sum(m for m, _ in G)
    wgrad_D = fwd_D
    dgrad_D_no_first = sum(m for m, first in D if not first)
    dgrad_D_all = fwd_D
    wgrad_G = fwd_G
    dgrad_G = sum(m for m, first in G if not first)
    d_update = fwd_G + 2 * (fwd_D + wgrad_D + dgrad_D_no_first)
    g_update = fwd_G + fwd_D + dgrad_D_all + wgrad_G + dgrad_G
    reused = fwd_G if g_steps >= 1 else 0          # DCGAN.reuse_g_forward
    return 2 * (d_update + g_steps * g_update - reused), 2 * fwd_G, 2 * fwd_D


# --------------------------------------------------------------------------- precision
DEVICE_BACKENDS = ("cupy", "emulated")


def resolve_precision(args) -> str:
    """``--precision`` or its default: tf32 on cupy/emulated (training's default, PyTorch's cuDNN
    default), fp32 on the CPU backends (which compute FP32 only; tf32 there is an error)."""
    if args.precision is None:
        return "tf32" if args.backend in DEVICE_BACKENDS else "fp32"
    if args.precision == "tf32" and args.backend not in DEVICE_BACKENDS:
        raise SystemExit(f"error: --precision tf32 needs --backend cupy or emulated (the "
                         f"{args.backend} backend computes FP32)")
    return args.precision


def precision_option(args) -> dict:
    """get_backend's precision option for this run ({} on the CPU backends)."""
    return {"precision": args.precision} if args.backend in DEVICE_BACKENDS else {}


# --------------------------------------------------------------------------- children
def _peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child_main(args):
    """Runs one side; protocol on stdin/stdout: 'step' -> ms, 'rss' -> MB, 'quit'."""
    side = args.child
    import numpy as np
    rng = np.random.default_rng(1234)
    B = args.batch_size
    x_np = rng.uniform(-1, 1, (B, 3, 64, 64)).astype(np.float32)
    z_np = rng.uniform(-1, 1, (B, 100)).astype(np.float32)
    if side == "torch":
        import torch
        sys.path.insert(0, HERE)
        from torch_dcgan import TorchDCGAN, set_precision
        torch.set_num_threads(args.threads)
        flags = set_precision(args.precision)
        print("torch precision: " + ", ".join(f"{k}={v}" for k, v in flags.items()), file=sys.stderr)
        dev = "cuda" if args.backend == "cupy" else "cpu"
        if dev == "cuda" and not torch.cuda.is_available():
            raise SystemExit("torch: CUDA requested (--backend cupy) but torch.cuda is unavailable")
        model = TorchDCGAN(device=dev)
        x, z = torch.from_numpy(x_np).to(dev), torch.from_numpy(z_np).to(dev)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def step():
            model.train_step(x, z, args.g_steps)
    else:
        sys.path.insert(0, ROOT)
        from rawgan.backend import get_backend
        from rawgan.models.dcgan import DCGAN
        try:
            Bk = get_backend(args.backend, "float32", **precision_option(args))
        except (RuntimeError, ImportError) as e:
            raise SystemExit(f"rawgan backend {args.backend!r} unavailable: {e}")
        print(f"rawgan precision: {args.precision}", file=sys.stderr)
        model = DCGAN(Bk)
        x, z = Bk.asarray(x_np), Bk.asarray(z_np)
        sync = Bk.synchronize

        def step():
            model.train_step(x, z, args.g_steps)
        if args.backend != "numpy":        # the device-resident step, one graph unless --no-graph
            from rawgan.backend import PhiloxState
            from rawgan.models.step import TrainStep
            images = rng.integers(0, 256, (B, 64, 64, 3), dtype=np.uint8)
            train_step = TrainStep(model, B, PhiloxState(0), g_steps=args.g_steps,
                                   graph=not args.no_graph)

            def step():
                train_step(images)
    for _ in range(args.warmup):
        step()
    sync()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3,
                              "cpu_ms": (time.process_time() - c0) * 1e3}), flush=True)
        elif cmd == "rss":
            print(json.dumps({"rss_mb": _peak_rss_mb()}), flush=True)
        elif cmd == "quit":
            break


def profile_main(args):
    """``--profile``: time every backend op (and the conv internals) over ``--steps`` steps."""
    import collections
    import numpy as np
    sys.path.insert(0, ROOT)
    from rawgan.backend import get_backend
    from rawgan.models.dcgan import DCGAN
    Bk = get_backend(args.backend, "float32", **precision_option(args))
    acc = collections.defaultdict(lambda: [0.0, 0])
    stack = []

    def wrap(mod, name, label):
        fn = getattr(mod, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            stack.append(0.0)
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                inner = stack.pop()
                acc[label][0] += dt - inner          # exclusive time
                acc[label][1] += 1
                if stack:
                    stack[-1] += dt
        setattr(mod, name, timed)

    ops = Bk.ops
    for name in dir(ops):
        if name.endswith(("_forward", "_backward", "_fprop", "_dgrad", "_wgrad", "_update", "_train",
                          "_eval")) \
                or name in ("bias_add", "bias_grad"):
            wrap(ops, name, name)
    if args.backend == "numpy":
        from rawgan.backend.fastcpu import conv
        for name in ("_padded_nhwc", "_rows_nhwc", "_im2col_nhwc", "_w_rsc", "_mm"):
            wrap(conv, name, "conv." + name)
    model = DCGAN(Bk)
    rng = np.random.default_rng(1234)
    x = Bk.asarray(rng.uniform(-1, 1, (args.batch_size, 3, 64, 64)))
    z = Bk.asarray(rng.uniform(-1, 1, (args.batch_size, 100)))
    for _ in range(args.warmup):
        model.train_step(x, z, args.g_steps)
    acc.clear()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        model.train_step(x, z, args.g_steps)
    Bk.synchronize()
    total = (time.perf_counter() - t0) * 1e3 / args.steps
    print(f"profile: {total:.1f} ms/step over {args.steps} steps (exclusive wall ms per step)")
    for label, (t, n) in sorted(acc.items(), key=lambda kv: -kv[1][0]):
        print(f"  {label:28s} {t * 1e3 / args.steps:8.1f} ms  {n // args.steps:4d} calls  "
              f"{t * 1e5 / args.steps / total:5.1f} %")
    rest = total - sum(t for t, _ in acc.values()) * 1e3 / args.steps
    print(f"  {'(python / layers / other)':28s} {rest:8.1f} ms")


def count_steps(Bk, batch_size, g_steps, ngf, ndf, steps, mode):
    """Run a fresh DCGAN's device-resident step (TrainStep) on backend ``Bk``: one warm-up step,
    then ``steps`` counted ones, eagerly (``mode="eager"``) or as one graph per step ("graph").

    Returns {"counters": the runtime's counters per step, "warmup": the warm-up's counters,
    "nodes": graph nodes (0 eager), "static_mib", "by_name": launches per kernel name over the
    counted steps, "records": the runtime's LaunchRecords of the counted steps (what each launch
    moves and computes; bench/gpu_model.py prices them)}. Works under ``rt.skip_execution()``."""
    import numpy as np
    from rawgan.backend import PhiloxState
    from rawgan.models.dcgan import DCGAN
    from rawgan.models.step import TrainStep
    rt = Bk.ops.rt
    images = np.random.default_rng(1234).integers(0, 256, (batch_size, 64, 64, 3), dtype=np.uint8)
    model = DCGAN(Bk, ngf=ngf, ndf=ndf)
    step = TrainStep(model, batch_size, PhiloxState(0), g_steps=g_steps, graph=mode == "graph")
    rt.reset_counters()
    step(images)
    Bk.synchronize()
    warm = rt.counters()
    rt.reset_counters()
    with rt.record_launches() as records:
        for _ in range(steps):
            step(images)
        Bk.synchronize()
    return {"counters": {k: v / steps for k, v in rt.counters().items()}, "warmup": warm,
            "nodes": step.graph.num_launches if step.graph is not None else 0,
            "static_mib": step.memory.nbytes / 2**20, "by_name": dict(rt.launches_by_name),
            "records": list(records)}


def family_summary(records, steps=1) -> str:
    """'family launches MB GFLOP' per kernel family of LaunchRecords, per step."""
    fam = {}
    for r in records:
        f = fam.setdefault(r.family, [0, 0.0, 0.0])
        f[0] += 1
        f[1] += r.nbytes
        f[2] += r.flops
    return ", ".join(f"{name} {n / steps:g} launches {nb / steps / 1e6:.1f} MB {fl / steps / 1e9:.2f} GFLOP"
                     for name, (n, nb, fl) in sorted(fam.items(), key=lambda kv: -kv[1][1]))


def count_main(args):
    """``--count``: launches, allocations and graph launches per step, eager and graph, and per
    kernel family the launches, bytes and FLOPs of the runtime's launch records."""
    sys.path.insert(0, ROOT)
    from rawgan.backend import get_backend
    if args.backend == "numpy":
        raise SystemExit("error: --count needs --backend cupy or emulated (the numpy backend has "
                         "no device runtime to count)")
    try:
        Bk = get_backend(args.backend, "float32", **precision_option(args))
    except (RuntimeError, ImportError) as e:
        raise SystemExit(f"error: rawgan backend {args.backend!r} unavailable: {e}")
    print(f"count: backend {args.backend}, batch {args.batch_size}, g_steps {args.g_steps}, "
          f"ngf {args.ngf}, ndf {args.ndf}, precision {args.precision}; 1 warm-up step, then "
          f"{args.count_steps} counted steps per mode")
    for mode in ("eager", "graph"):
        r = count_steps(Bk, args.batch_size, args.g_steps, args.ngf, args.ndf, args.count_steps, mode)
        c = r["counters"]
        print(f"mode={mode} launches_per_step={c['launches']:g} "
              f"allocations_per_step={c['allocations']:g} "
              f"graph_launches_per_step={c['graph_launches']:g} graph_nodes={r['nodes']} "
              f"warmup_allocations={r['warmup']['allocations']} "
              f"static_memory_mib={r['static_mib']:.1f}")
        print(f"mode={mode} per family (launch records): "
              + family_summary(r["records"], args.count_steps))
    by_name = sorted(r["by_name"].items(), key=lambda kv: (-kv[1], kv[0]))
    print("launches per step by kernel (graph mode): " + ", ".join(
        f"{name} {n / args.count_steps:g}" for name, n in by_name))


def spawn(side, args):
    env = dict(os.environ)
    t = str(args.threads)
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, RAWGAN_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t)
    if side == "rawgan" and args.backend == "numpy":
        # The fast backend's pool (RAWGAN_NUM_THREADS) runs the copies and splits the GEMMs
        # itself, each piece a single-threaded OpenBLAS call (see rawgan.backend.fastcpu.
        # _parallel.split_gemms); --blas-threads > 1 gives OpenBLAS the threads instead.
        env.update(OPENBLAS_NUM_THREADS=str(args.blas_threads), OMP_NUM_THREADS=str(args.blas_threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", side, "--backend", args.backend,
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--g-steps",
           str(args.g_steps), "--threads", t, "--precision", args.precision] + \
        (["--no-graph"] if args.no_graph else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT)
    return p


def ask(p, cmd):
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"child exited (rc={p.wait()}) while answering {cmd!r}")
    return json.loads(line)


def wait_ready(p, name):
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"{name} child failed to start (rc={p.wait()})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="numpy", choices=("numpy", "reference", "cupy", "emulated"))
    ap.add_argument("--steps", type=positive_int, default=10, help="timed steps per side")
    ap.add_argument("--warmup", type=nonnegative_int, default=2)
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--g-steps", type=positive_int, default=1)
    ap.add_argument("--compare", default="torch", choices=("torch", "none"))
    ap.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--blas-threads", type=positive_int, default=1,
                    help="OpenBLAS threads of --backend numpy (default 1: the backend's own pool of "
                         "--threads threads splits the GEMMs; >1: OpenBLAS threads them)")
    ap.add_argument("--profile", action="store_true",
                    help="time each backend op in-process (rawgan side only) instead")
    ap.add_argument("--no-graph", action="store_true",
                    help="cupy/emulated: time eager steps instead of one CUDA graph per step")
    ap.add_argument("--count", action="store_true",
                    help="print launches/allocations/graph launches per step (cupy, emulated)")
    ap.add_argument("--count-steps", type=positive_int, default=2, help="counted steps per mode")
    ap.add_argument("--ngf", type=positive_int, default=64, help="generator width (--count)")
    ap.add_argument("--ndf", type=positive_int, default=64, help="discriminator width (--count)")
    ap.add_argument("--precision", choices=("fp32", "tf32"), default=None,
                    help="compute precision of GEMMs/convolutions on both sides: rawgan's "
                         "--precision and torch's allow_tf32 flags set to match (default: tf32 on "
                         "cupy/emulated, fp32 on the CPU backends)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.precision = resolve_precision(args)
    if args.child:
        return child_main(args)
    if args.count:
        return count_main(args)
    if args.profile:
        return profile_main(args)

    flops, g_fwd, d_fwd = step_flops(args.batch_size, args.g_steps)
    import numpy as np
    print(f"DCGAN train step: batch {args.batch_size}, g_steps {args.g_steps}, "
          f"{flops / 1e9:.2f} GFLOP/step (G fwd {g_fwd / 1e9:.2f}, D fwd {d_fwd / 1e9:.2f}); "
          f"threads {args.threads}; numpy {np.__version__}; precision {args.precision} (torch "
          f"allow_tf32 = {args.precision == 'tf32'} for matmul and cuDNN)")
    sides = [("rawgan-" + args.backend, "rawgan")]
    if args.compare == "torch":
        sides.append(("torch-" + ("cuda" if args.backend == "cupy" else "cpu"), "torch"))
    procs = {}
    for name, side in sides:
        # Start (and warm up) one side at a time so the warm-ups do not compete for the cores.
        procs[name] = spawn(side, args)
        wait_ready(procs[name], name)
    times = {name: [] for name, _ in sides}
    cpu = {name: [] for name, _ in sides}
    for _ in range(args.steps):
        for name, _ in sides:
            r = ask(procs[name], "step")
            times[name].append(r["ms"])
            cpu[name].append(r["cpu_ms"])
    rss = {name: ask(p, "rss")["rss_mb"] for name, p in procs.items()}
    for p in procs.values():
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.wait()
    med = {}
    for name, _ in sides:
        t = times[name]
        med[name] = statistics.median(t)
        print(f"{name:14s} median {med[name]:8.1f} ms/step  (min {min(t):.1f}, max {max(t):.1f}, "
              f"n={len(t)})  {args.batch_size / med[name] * 1e3:7.1f} img/s  "
              f"{flops / med[name] / 1e6:6.1f} GFLOP/s  peak RSS {rss[name]:7.1f} MB  "
              f"CPU {statistics.median(cpu[name]):8.1f} ms/step (all threads)")
    if args.compare == "torch":
        a, b = sides[0][0], sides[1][0]
        print(f"rss_ratio_vs_torch={rss[a] / rss[b]:.3f}")
        print(f"cpu_ratio_vs_torch={statistics.median(cpu[a]) / statistics.median(cpu[b]):.3f}")
        print(f"ratio_vs_torch={med[a] / med[b]:.3f}")


if __name__ == "__main__":
    main()
