"""A tiny stdlib thread pool for the fast CPU backend's memory-bound passes and split GEMMs.

NumPy releases the GIL inside its copy and ufunc loops, so splitting a big strided copy (im2col,
col2im, a padding copy) or an elementwise pass across threads by a leading axis runs them on
several cores — with the standard library only (``concurrent.futures``).

Thread count: ``RAWGAN_NUM_THREADS`` if set, else the number of CPUs this process may run on
(``os.sched_getaffinity``). Recommended CPU setting: ``OPENBLAS_NUM_THREADS=1`` with
``RAWGAN_NUM_THREADS=<cores>`` — the GEMMs of the convolutions are then split across the pool
(see :func:`split_gemms`), so the process computes on exactly <cores> threads.
``bench/train_step.py`` runs the NumPy side that way with the same count as torch's threads.
The pool is re-created after a ``fork`` (a forked child has none of the parent's threads).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def num_threads() -> int:
    env = os.environ.get("RAWGAN_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def blas_threads() -> int:
    """OpenBLAS's thread count as its environment variables set it (OpenBLAS reads
    OPENBLAS_NUM_THREADS, then GOTO_NUM_THREADS, then OMP_NUM_THREADS; unset: all CPUs)."""
    for k in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(k)
        if v:
            try:
                return max(1, int(v))
            except ValueError:
                pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def split_gemms() -> bool:
    """True when the backend should split each big GEMM across its own pool threads: the pool
    has more than one thread and OpenBLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1``).

    Why: OpenBLAS's own threads synchronise by spinning/yielding; when another process competes
    for the cores, a GEMM with a small output and a long reduction (the weight gradient of the
    RGB layer, 64×75 from K = 65536) was measured at 1.6 s instead of 14 ms. One single-threaded
    GEMM per pool thread, on disjoint rows or columns of the output, has no such waits and is
    as fast on an idle machine. With OpenBLAS multi-threaded, the GEMM is left to it (no
    oversubscription).
    """
    global _SPLIT
    if _SPLIT is None:
        _SPLIT = num_threads() > 1 and blas_threads() == 1
    return _SPLIT


_SPLIT = None
_POOL = None
_POOL_PID = None
_NT = None


def _pool():
    global _POOL, _POOL_PID, _NT
    pid = os.getpid()
    if _POOL is None or _POOL_PID != pid:
        _NT = num_threads()
        _POOL = ThreadPoolExecutor(max_workers=max(1, _NT - 1), thread_name_prefix="rawgan-np")
        _POOL_PID = pid
    return _POOL, _NT


def split(n, parts):
    """``parts`` contiguous (lo, hi) ranges covering range(n), none empty."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + q + (1 if i < r else 0)
        out.append((lo, hi))
        lo = hi
    return out


def parallel_for(fn, n, min_work=0, work_per_item=1):
    """Run ``fn(lo, hi)`` over a split of range(n) on the pool (the caller runs one piece).

    Runs serially when there is one thread, one item, or ``n·work_per_item < min_work``.
    """
    pool, nt = _pool()
    if nt <= 1 or n <= 1 or n * work_per_item < min_work:
        fn(0, n)
        return
    ranges = split(n, nt)
    futs = [pool.submit(fn, lo, hi) for lo, hi in ranges[1:]]
    fn(*ranges[0])
    for f in futs:
        f.result()
