"""How a kernel file is launched — on CuPy or on the CPU emulator — and the tools that prove kernels.

    from rawgan.runtime import get_runtime
    rt = get_runtime("emulated")        # or "cupy"
    rt.module("activations").get_function("relu_forward")(grid, block, (x, y, n))

Modules: ``runtime`` (the launch interface), ``sources`` (kernel files, C signatures, argument
checks), ``emulator`` (+ ``cuda_emu.h``: CUDA semantics on the CPU), ``nvrtc`` (compile checks
without a GPU). The model's launchers live in ``rawgan.backend.cuda``; see README.md here.
"""
from .runtime import PRECISIONS, CaptureError, LaunchRecord, Runtime, StaticMemory, get_runtime

__all__ = ["CaptureError", "LaunchRecord", "PRECISIONS", "Runtime", "StaticMemory", "get_runtime"]
