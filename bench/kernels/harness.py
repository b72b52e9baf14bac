"""Shared glue of the kernel benchmarks in bench/kernels/ (llm.c ``dev/cuda`` style).

A family file (``activations.py``, ``batchnorm.py``, …) declares its kernels and calls
:func:`main`; everything else — choosing the runtime, uploading inputs, checking every version
against the NumPy reference, timing, and printing bandwidth/throughput as a share of the H200's
peaks — lives here once:

    python bench/kernels/batchnorm.py                  # GPU: check every version, then time them
    python bench/kernels/batchnorm.py --emulated       # CPU: the same checks in the emulator
    python bench/kernels/batchnorm.py --check-only --fast --emulated   # what tests/ runs

Declaring a kernel::

    Kernel(name="relu_forward", reference=lambda x: (np.maximum(x, 0),),
           versions=[Version(1, "naive, one thread per element", run_v1),
                     Version(2, "grid-stride (production)", run_v2)],
           cases=lambda fast: [Case("4M", {"x": ...}, nbytes=8 * n)])

``Version.run(rt, **inputs)`` receives the case's inputs with every NumPy array uploaded to the
runtime (a fresh copy per version, so in-place kernels do not see each other's results; scalars as
they are) and returns a tuple of device arrays compared element-wise with ``reference(**inputs)``
(host arrays). Versions are numbered llm.c style: 1 = the naive one, higher = faster variants,
kept only when a GPU measurement (bench/RESULTS.md) shows they are faster; ``production`` marks
the version the backend launches.

Timing: on a GPU with CUDA events around ``--repeat`` back-to-back runs after ``--warmup`` runs;
in emulation with the wall clock, labelled as emulated (a CPU figure, never a GPU estimate).
Peaks (REFERENCE.md §3): HBM 4.8 TB/s, FP32 67 TFLOP/s, TF32 tensor 495 TFLOP/s (dense).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rawgan.argtypes import nonnegative_int, positive_int  # noqa: E402

H200_BYTES_PER_S = 4.8e12
H200_FP32_FLOPS = 67e12
H200_TF32_FLOPS = 495e12


@dataclass
class Case:
    """One input size: ``inputs`` (host arrays and scalars), DRAM bytes and FLOPs of one run."""
    name: str
    inputs: dict
    nbytes: float
    flops: float = 0.0


@dataclass
class Version:
    number: int
    name: str
    run: Callable                  # run(rt, **device_inputs) -> tuple of device arrays
    production: bool = False
    applies: Callable | None = None  # applies(**host_inputs) -> bool; None: every case


@dataclass
class Kernel:
    name: str
    reference: Callable            # reference(**host_inputs) -> tuple of host arrays
    versions: list
    cases: Callable                # cases(fast: bool) -> list[Case]
    rtol: float = 1e-5
    atol: float = 1e-6
    exact: bool = False            # bitwise equality instead of a tolerance
    tensor_core: bool = False      # report the TF32 peak as well (GEMM-based kernels)
    notes: list = field(default_factory=list)


def get_rt(emulated: bool):
    """The runtime: ``emulated`` or ``cupy`` (RuntimeError with the reason when no GPU)."""
    from rawgan.runtime.runtime import get_runtime

    if emulated:
        return get_runtime("emulated")
    from rawgan.backend.base import cupy_gpu

    device, reason = cupy_gpu()
    if device is None:
        raise RuntimeError(f"no GPU ({reason}); use --emulated to run the checks on the CPU")
    return get_runtime("cupy")


def upload(rt, inputs: dict) -> dict:
    return {k: (rt.xp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}


def host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def compare(kernel: Kernel, got, want) -> tuple[bool, float]:
    """(passed, max abs error over all outputs)."""
    if len(got) != len(want):
        return False, float("inf")
    ok, worst = True, 0.0
    for g, w in zip(got, want):
        g, w = host(g), np.asarray(w)
        if g.shape != w.shape:
            return False, float("inf")
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if g.size else 0.0
        worst = max(worst, err)
        if kernel.exact:
            ok &= bool(np.array_equal(g, w))
        else:
            ok &= bool(np.allclose(g, w, rtol=kernel.rtol, atol=kernel.atol))
    return ok, worst


def time_version(rt, version: Version, inputs: dict, warmup: int, repeat: int) -> float:
    """Seconds per run: CUDA events on a GPU, the wall clock in emulation."""
    dev = upload(rt, inputs)
    for _ in range(warmup):
        version.run(rt, **dev)
    if rt.kind == "cupy":
        cupy = rt.xp
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(repeat):
            version.run(rt, **dev)
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3 / repeat
    t0 = time.perf_counter()
    for _ in range(repeat):
        version.run(rt, **dev)
    return (time.perf_counter() - t0) / repeat


def rate_line(kernel: Kernel, case: Case, seconds: float, emulated: bool) -> str:
    parts = [f"{seconds * 1e3:9.4f} ms"]
    if case.nbytes:
        bw = case.nbytes / seconds
        parts.append(f"{bw / 1e9:8.1f} GB/s ({100 * bw / H200_BYTES_PER_S:5.1f} % of 4.8 TB/s)")
    if case.flops:
        fl = case.flops / seconds
        parts.append(f"{fl / 1e12:7.3f} TFLOP/s ({100 * fl / H200_FP32_FLOPS:5.1f} % of FP32 67"
                     + (f", {100 * fl / H200_TF32_FLOPS:5.1f} % of TF32 495" if kernel.tensor_core else "")
                     + ")")
    line = "  ".join(parts)
    return line + ("   [emulated on the CPU: not a GPU figure]" if emulated else "")


def run_family(family: str, kernels: list, argv=None) -> int:
    """The command line of a family file; returns the exit code (0 ok, 1 a check failed, 2 usage)."""
    p = argparse.ArgumentParser(prog=f"bench/kernels/{family}.py",
                                description=f"{family} kernels: check every version against the "
                                            "NumPy reference, then time them")
    p.add_argument("--emulated", action="store_true", help="run in the CPU emulator (implies --fast)")
    p.add_argument("--fast", action="store_true", help="small sizes (default in emulation)")
    p.add_argument("--check-only", action="store_true", help="no timing")
    p.add_argument("--kernel", help="only this kernel (name)")
    p.add_argument("--version", type=positive_int, help="only this version number")
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--repeat", type=positive_int, default=20)
    args = p.parse_args(argv)
    if args.kernel and args.kernel not in {k.name for k in kernels}:
        print(f"error: --kernel {args.kernel!r}: {family} has {', '.join(k.name for k in kernels)}",
              file=sys.stderr)
        return 2
    chosen = [k for k in kernels if not args.kernel or k.name == args.kernel]
    if args.version is not None and not any(v.number == args.version
                                            for k in chosen for v in k.versions):
        have = sorted({v.number for k in chosen for v in k.versions})
        print(f"error: --version {args.version}: {args.kernel or family} has versions "
              f"{', '.join(map(str, have))}", file=sys.stderr)
        return 2
    try:
        rt = get_rt(args.emulated)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fast = args.fast or args.emulated
    failed = 0
    for kernel in kernels:
        if args.kernel and kernel.name != args.kernel:
            continue
        versions = [v for v in kernel.versions if args.version in (None, v.number)]
        for case in kernel.cases(fast):
            want = kernel.reference(**case.inputs)
            for v in versions:
                if v.applies is not None and not v.applies(**case.inputs):
                    print(f"skip  {kernel.name} v{v.number} ({v.name}) [{case.name}]: "
                          "not applicable to this case", flush=True)
                    continue
                got = v.run(rt, **upload(rt, case.inputs))
                ok, err = compare(kernel, got, want)
                failed += not ok
                tag = f"{kernel.name} v{v.number} ({v.name}{', production' if v.production else ''})"
                print(f"check {tag} [{case.name}]: {'ok' if ok else 'FAIL'} (max abs err {err:.2e})",
                      flush=True)
                if ok and not args.check_only:
                    s = time_version(rt, v, case.inputs, args.warmup, args.repeat)
                    print(f"time  {tag} [{case.name}]: {rate_line(kernel, case, s, rt.kind != 'cupy')}",
                          flush=True)
    print(f"{family}: {'all checks passed' if not failed else f'{failed} check(s) FAILED'} "
          f"on {'the emulator' if rt.kind != 'cupy' else 'the GPU'}")
    return 1 if failed else 0


def module(rt, name: str, source: str):
    """An inline kernel source of a benchmark version, compiled once per runtime."""
    key = (id(rt), name)
    mod = _MODULES.get(key)
    if mod is None:
        mod = _MODULES[key] = rt.module_from_source(source, name=name)
    return mod


_MODULES: dict = {}
