"""The CPU thread policy of the fast CPU backend (``--backend numpy``), applied by the CLIs.

The NumPy backend splits its window copies, elementwise passes and the row/column blocks of each
large GEMM over its own stdlib thread pool (``rawgan/backend/fastcpu/_parallel.py``, one thread
per core, ``RAWGAN_NUM_THREADS`` to override) and wants OpenBLAS single-threaded, so the process
computes on exactly one thread per core. OpenBLAS's own threads spin-wait; on a busy machine one
GEMM with a small output and a long reduction was measured at 1.6 s instead of 14 ms
(bench/RESULTS.md). OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when NumPy is first imported,
so :func:`configure_cpu_threads` must run before that; ``bench/train_step.py`` gives its NumPy
side the same setting, so the benchmark measures what ``python -m rawgan.train`` runs.
"""
import os
import sys


def configure_cpu_threads() -> bool:
    """Set ``OPENBLAS_NUM_THREADS=1`` unless the user set it. Returns False (and changes nothing)
    when NumPy is already imported, since OpenBLAS would not see the change."""
    if "numpy" in sys.modules:
        return False
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return True
