"""Compile kernels/*.cu to PTX with NVRTC, through ctypes, on a machine without a GPU.

NVRTC is a plain library: it needs no driver and no device. It comes from the pip wheel
``nvidia-cuda-nvrtc-cu12`` (``nvidia/cuda_nvrtc/lib/libnvrtc.so.12``), or whatever
``libnvrtc.so.12`` the system loader finds.

    ptx, log = compile_ptx(read_kernel_source("activations"), "activations.cu", arch="sm_90")

``log`` holds NVRTC's warnings; a failed compile raises :class:`NvrtcError` carrying the log.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

from .sources import kernel_dir

# Warnings NVRTC reports on top of its defaults (all accepted by NVRTC 12.x).
DEFAULT_OPTIONS = ("-std=c++17",)


class NvrtcError(RuntimeError):
    """NVRTC failed to compile; ``.log`` holds its diagnostics."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(f"{message}\n{log}" if log else message)
        self.log = log


class NvrtcUnavailable(ImportError):
    """No libnvrtc could be loaded (install ``nvidia-cuda-nvrtc-cu12``)."""


def _candidate_paths() -> list[str]:
    paths = []
    try:
        import nvidia.cuda_nvrtc as pkg  # namespace package from the pip wheel

        for root in pkg.__path__:
            lib = Path(root) / "lib"
            paths += [str(p) for p in sorted(lib.glob("libnvrtc.so*")) if "alt" not in p.name]
    except ImportError:
        pass
    if os.environ.get("RAWGAN_NVRTC"):
        paths.insert(0, os.environ["RAWGAN_NVRTC"])
    return paths + ["libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"]


@lru_cache(maxsize=None)
def load_nvrtc() -> ctypes.CDLL:
    """The NVRTC library (``$RAWGAN_NVRTC`` overrides the search)."""
    errors = []
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
            continue
        p = ctypes.c_void_p
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, p, p]
        lib.nvrtcCompileProgram.argtypes = [p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [p, ctypes.c_char_p]
        lib.nvrtcGetPTXSize.argtypes = [p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetPTX.argtypes = [p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(p)]
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        return lib
    raise NvrtcUnavailable("libnvrtc not found; pip install nvidia-cuda-nvrtc-cu12\n" + "\n".join(errors))


def nvrtc_version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    load_nvrtc().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def _check(lib, status: int, what: str, log: str = "") -> None:
    if status != 0:
        raise NvrtcError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}", log)


def compile_ptx(source: str, name: str = "kernel.cu", arch: str = "sm_80",
                options: tuple[str, ...] | list[str] = ()) -> tuple[str, str]:
    """Compile ``source`` for ``arch``; returns ``(ptx, log)``. ``options`` are added to
    ``DEFAULT_OPTIONS``, ``--gpu-architecture=<arch>`` and ``-I<kernels dir>``."""
    lib = load_nvrtc()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", *DEFAULT_OPTIONS, f"-I{kernel_dir()}", *options]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        _check(lib, status, f"NVRTC compile of {name} for {arch} failed", log)
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
        return buf.value.decode(), log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
