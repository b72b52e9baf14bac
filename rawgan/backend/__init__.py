"""Backends: where arrays live and which implementation of each op runs.

A :class:`Backend` bundles an array module ``xp`` (NumPy or CuPy), a dtype and an ``ops``
namespace. Every backend's ``ops`` exposes the *same functions with the same signatures*
(llm.c style: the CPU reference and the CUDA path are interchangeable at the call site):

    reference ``rawgan.backend.reference`` — NumPy, float32 or float64, written to be read; the
              truth every other backend is tested against.
    numpy     ``rawgan.backend.fastcpu`` — the same ops made fast on a multi-core CPU (thread
              pool, channels-last convolutions); float32 or float64; the default.
    cupy      ``rawgan.backend.cuda`` — our CUDA kernels (kernels/*.cu) via CuPy RawModule,
              GEMMs through cuBLAS (``cupy.matmul``), optionally cuDNN for convolutions.
    auto      cupy when CuPy imports and sees a GPU, else numpy (``resolve_backend``; the default
              of train and sample).
    emulated  the same ``rawgan.backend.cuda`` code and the same .cu kernels, run on the CPU by
              the emulation harness, with NumPy arrays and ``numpy.matmul`` standing in for cuBLAS.

Layers (``rawgan.layers``) only ever call ``backend.ops.<name>(...)``.
"""
from .base import BACKEND_CHOICES, BACKENDS, Backend, PhiloxState, get_backend, resolve_backend

__all__ = ["Backend", "PhiloxState", "get_backend", "resolve_backend", "BACKENDS", "BACKEND_CHOICES"]
