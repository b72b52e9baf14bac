"""The CUDA backend: our kernels (kernels/*.cu) launched through a runtime.

    rt = runtime.get_runtime("cupy")      # real GPU through cupy.RawModule
    rt = runtime.get_runtime("emulated")  # the same .cu files on the CPU (emulator.py)
    ops = make_ops(rt)                    # every reference op, same names and signatures
    B = make_backend("emulated")          # what rawgan.backend.get_backend("emulated") returns

The op files mirror the kernel files one to one (llm.c style) and mirror
rawgan.backend.reference:

    activations.py  <-> kernels/activations.cu   relu/leaky_relu/tanh/sigmoid forward+backward
    conv.py         <-> kernels/conv.cu, bias.cu im2col/col2im + (batched) GEMM, swap_axes01 in
                                                 wgrad only; bias add/grad
    linear.py       <-> kernels/bias.cu          GEMMs by rt.gemm + the bias kernels
    batchnorm.py    <-> kernels/batchnorm.cu     train/eval forward, fused backward; BN + ReLU /
                                                 LeakyReLU fused (batchnorm_act_*); ghost batches
    loss.py         <-> kernels/loss.cu          sigmoid cross-entropy with logits (+ one fused
                                                 forward/backward/mean-σ kernel, also per half)
    adam.py         <-> kernels/adam.cu          fused Adam over a flat buffer
    rng.py          <-> kernels/rng.cu           Philox4x32-10 uniform / normal
    tensor.py       <-> kernels/tensor.cu        fill, accumulate, uint8 -> float, metrics, concat
    cudnn_conv.py   <-> kernels/pad.cu (+ cuDNN)  conv fprop/dgrad/wgrad with conv_impl="cudnn"

Each op is written as ``op(rt, *reference_args)``; :func:`make_ops` binds ``rt`` so the namespace
has exactly the reference signatures. Only ``rt`` differs between the GPU and the emulator.
Outputs and temporaries come from ``rt.empty``/``rt.scratch`` (a step's StaticMemory when one is
active, so a steady-state step allocates nothing) and GEMMs go through ``rt.gemm`` (capturable
cuBLAS), never ``xp.matmul``.
"""
from __future__ import annotations

import functools

import numpy as np

from . import activations, adam, batchnorm, conv, linear, loss, rng, tensor

OP_MODULES = (activations, linear, conv, batchnorm, loss, adam, rng, tensor)
CONV_IMPLS = ("kernels", "cudnn")
PRECISIONS = ("fp32", "tf32")

_INSTALL_HINT = ("install CuPy for your CUDA version: pip install .[cuda12] (CUDA 12) or "
                 "pip install .[cuda13] (CUDA 13)")


class Ops:
    """Namespace of the CUDA backend's ops, bound to one runtime (see :func:`make_ops`)."""

    def __init__(self, rt, conv_impl: str, precision: str = "fp32"):
        self.rt = rt
        self.name = rt.kind
        self.conv_impl = conv_impl
        self.precision = precision

    def synchronize(self) -> None:
        """Wait for all queued device work (no-op in emulation)."""
        self.rt.synchronize()

    def __repr__(self) -> str:
        return (f"<rawgan.backend.cuda ops on {self.rt.kind}, conv_impl={self.conv_impl!r}, "
                f"precision={self.precision!r}>")


def make_ops(rt, conv_impl: str = "kernels", precision: str = "fp32") -> Ops:
    """Every op of the reference backend, implemented by our kernels on runtime ``rt``.

    ``conv_impl="cudnn"`` routes conv2d_fprop/dgrad/wgrad through cuDNN Frontend graphs
    (cudnn_conv.py), which fall back to the kernels — with one warning per reason — when the
    ``cudnn`` package or a GPU is unavailable or a graph does not build.
    ``precision`` ("fp32" or "tf32") is set on the runtime (``rt.set_precision``): the cuBLAS
    compute type of every GEMM and the cuDNN engines allowed (fp32 deselects tensor-core and
    down-converting engines). It is the runtime's setting, shared by every Ops on that runtime:
    the last ``make_ops`` wins. The emulator computes FP32 whatever the precision.
    Raises ValueError for an unknown conv_impl or precision.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl: expected one of {CONV_IMPLS}, got {conv_impl!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    rt.set_precision(precision)
    ops = Ops(rt, conv_impl, precision)
    for mod in OP_MODULES:
        for name in mod.OPS:
            impl = getattr(mod, name)
            fn = functools.partial(impl, rt)      # signature: the reference's (rt bound)
            fn.__name__, fn.__doc__ = name, impl.__doc__
            setattr(ops, name, fn)
        for name in getattr(mod, "PLAIN", ()):
            setattr(ops, name, getattr(mod, name))
    if conv_impl == "cudnn":
        from .cudnn_conv import CudnnConv

        cd = CudnnConv(rt)
        ops.conv2d_fprop, ops.conv2d_dgrad, ops.conv2d_wgrad = cd.fprop, cd.dgrad, cd.wgrad
        ops.cudnn = cd
    return ops


def _runtime(name: str):
    from ...runtime import get_runtime

    if name == "emulated":
        return get_runtime("emulated")
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"--backend cupy: CuPy is not installed ({e}); {_INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver, etc.
        raise RuntimeError(f"--backend cupy: CuPy cannot use a GPU ({type(e).__name__}: {e}); "
                           f"check the NVIDIA driver, or {_INSTALL_HINT}") from None
    if count < 1:
        raise RuntimeError(f"--backend cupy: CuPy sees no GPU; {_INSTALL_HINT}")
    return get_runtime("cupy")


def make_backend(name: str, conv_impl: str = "kernels", precision: str = "fp32"):
    """The ``cupy`` or ``emulated`` Backend (float32): xp of the runtime + :func:`make_ops`.

    ``precision``: "fp32" (default: tests, parity) or "tf32" (training's default on a GPU).
    Raises ValueError for an unknown name/conv_impl/precision, RuntimeError when ``cupy`` is requested
    without CuPy or a GPU (the message says how to install: ``pip install .[cuda12]``/``.[cuda13]``).
    """
    from ..base import Backend

    if name not in ("cupy", "emulated"):
        raise ValueError(f"make_backend: expected 'cupy' or 'emulated', got {name!r}")
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl: expected one of {CONV_IMPLS}, got {conv_impl!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    rt = _runtime(name)
    ops = make_ops(rt, conv_impl, precision)
    return Backend(name, rt.xp, ops, np.float32)


__all__ = ["make_backend", "make_ops", "Ops", "OP_MODULES", "CONV_IMPLS", "PRECISIONS"]
