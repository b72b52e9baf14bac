"""One kernel-launch interface over real CuPy and the CPU emulator.

    rt = get_runtime("cupy")          # or "emulated"
    rt.xp                             # cupy or numpy: allocate kernel arguments with this
    k = rt.module("activations").get_function("relu_forward")
    k(grid, block, (x, y, n), shared_mem=0)
    rt.synchronize()

The CUDA backend is written once against this interface. Both kinds check every launch's
arguments against the kernel's declared C signature (see sources.pack_args): on the GPU this
turns CuPy's silent "Python float becomes a C double" into a converted value, and a wrong dtype
into a TypeError instead of garbage.
"""
from __future__ import annotations

import threading

import numpy as np

from .sources import headers_digest, kernel_dir, pack_args, read_kernel_source, signature

KINDS = ("cupy", "emulated")


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def compile_options() -> tuple[str, ...]:
    """NVRTC options of every kernel file on CuPy.

    ``-I kernels/`` for the shared ``*.cuh`` headers, and a define holding a digest of those
    headers: CuPy's on-disk kernel cache keys on the source text and the options, not on
    ``#include``d files, so without it an edited header would keep serving stale binaries.
    """
    return ("-std=c++17", f"-I{kernel_dir()}", f"-DRAWGAN_KERNEL_HEADERS={headers_digest()[:16]}")


class CupyKernel:
    """A ``cupy.RawKernel`` whose arguments are checked and converted like the emulator's."""

    def __init__(self, raw, sig, cupy):
        self.raw, self.signature, self.name, self._cupy = raw, sig, sig.name, cupy

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self.raw.max_dynamic_shared_size_bytes

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        self.raw.max_dynamic_shared_size_bytes = value

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None):
        values = pack_args(self.signature, tuple(args), self._cupy.ndarray)
        values = [0 if v is None else v for v in values]  # null pointer
        grid = (grid,) if isinstance(grid, (int, np.integer)) else tuple(grid)
        block = (block,) if isinstance(block, (int, np.integer)) else tuple(block)
        self.raw(grid, block, tuple(values), shared_mem=shared_mem, stream=stream)


class CupyModule:
    """kernels/<name>.cu compiled by NVRTC through ``cupy.RawModule``."""

    def __init__(self, name: str | None, source: str | None, cupy):
        self.name = name or "inline"
        self.source = source if source is not None else read_kernel_source(name)
        self._cupy = cupy
        self.raw = cupy.RawModule(code=self.source, options=compile_options())
        self._kernels: dict[str, CupyKernel] = {}

    def get_function(self, name: str) -> CupyKernel:
        if name not in self._kernels:
            sig = signature(self.source, name)
            self._kernels[name] = CupyKernel(self.raw.get_function(name), sig, self._cupy)
        return self._kernels[name]


class Runtime:
    """Launch kernels on one kind of device. Use :func:`get_runtime` (one instance per kind)."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"runtime kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "cupy":
            import cupy

            self.xp = cupy
        else:
            from . import devarray

            devarray.require()
            self.xp = devarray.xp      # CuPy's names and array surface, NumPy memory
        self._modules: dict[str, object] = {}
        self._lock = threading.Lock()

    def module(self, name: str):
        """The compiled kernels/<name>.cu (cached): ``.get_function(kernel)`` gives a launcher."""
        with self._lock:
            if name not in self._modules:
                self._modules[name] = self.module_from_source(None, name=name)
            return self._modules[name]

    def module_from_source(self, source: str | None, name: str | None = None):
        """Compile ``source`` (or kernels/<name>.cu when source is None); not cached."""
        if self.kind == "cupy":
            return CupyModule(name, source, self.xp)
        from .devarray import DeviceArray
        from .emulator import EmulatedModule

        return EmulatedModule(name, source=source, array_type=DeviceArray)

    def synchronize(self) -> None:
        """Wait for all launched work (no-op in emulation: launches are synchronous)."""
        if self.kind == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def __repr__(self) -> str:
        return f"<Runtime {self.kind}>"


_RUNTIMES: dict[str, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def get_runtime(kind: str = "cupy") -> Runtime:
    """The shared :class:`Runtime` of ``kind`` ("cupy" or "emulated")."""
    with _RUNTIMES_LOCK:
        if kind not in _RUNTIMES:
            _RUNTIMES[kind] = Runtime(kind)
        return _RUNTIMES[kind]
