"""Test-session setup: OpenBLAS single-threaded, as ``python -m rawgan.train`` runs it.

``rawgan.cpu_threads.configure_cpu_threads`` sets ``OPENBLAS_NUM_THREADS=1`` (unless the caller set
it) before NumPy is imported. The tests' GEMMs are small; OpenBLAS's own spinning threads made
them several times slower on a shared 2-core machine (tests/test_cuda_backend.py's DCGAN
trajectory: 11 s instead of 1.9 s), while the fast CPU backend's thread pool is exercised
explicitly (tests/test_fastcpu.py forces two threads and split GEMMs).
"""
from rawgan.cpu_threads import configure_cpu_threads

configure_cpu_threads()
