"""The :class:`Backend` object and :func:`get_backend`."""
from __future__ import annotations

import numpy as np

from ..hostio import to_host

BACKENDS = ("reference", "numpy", "cupy", "emulated")
_CPU_BACKENDS = ("reference", "numpy")
AUTO = "auto"                  # resolved by resolve_backend: cupy with a visible GPU, else AUTO_CPU
AUTO_CPU = "numpy"             # the CPU backend "auto" falls back to (the fast one)
BACKEND_CHOICES = (AUTO,) + BACKENDS   # what --backend accepts (train, sample)
_DTYPES = {"float32": np.float32, "float64": np.float64}


class PhiloxState:
    """Counter-based random numbers (Philox4x32-10) that every backend reproduces bit-exactly.

    The state is a 64-bit ``seed`` (Philox key) and a 64-bit ``offset`` counting the values drawn
    so far; element ``i`` of a draw uses counter ``(i, offset)``. Because the stream depends only on
    ``(seed, offset)``, the NumPy reference and the CUDA kernel produce the same z for one seed, and
    a checkpoint restores the stream exactly by saving two integers.
    Source: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11), Philox4x32-10.

    ``bind(B)`` moves the offset into a (1,) uint64 array of backend ``B``: from then on draws on
    ``B`` read and advance it there (``ops.philox_*_next``), so a captured CUDA graph draws fresh
    numbers at every replay. ``offset`` then reads the device (a host synchronisation).
    """

    def __init__(self, seed: int, offset: int = 0):
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self._offset = int(offset)
        self._device = None          # (backend, (1,) uint64 array) once bound

    @property
    def offset(self) -> int:
        if self._device is not None:
            B, buf = self._device
            return int(B.to_numpy(buf)[0])
        return self._offset

    @offset.setter
    def offset(self, value: int) -> None:
        if self._device is not None:
            B, buf = self._device
            buf[...] = B.asarray(np.array([int(value)], dtype=np.uint64), dtype=np.uint64)
        else:
            self._offset = int(value)

    def bind(self, B) -> None:
        """Keep the offset on backend ``B`` from now on (a no-op when already bound to B)."""
        if self._device is not None and self._device[0] is B:
            return
        offset = self.offset
        self._device = (B, B.asarray(np.array([offset], dtype=np.uint64), dtype=np.uint64))

    def device_offset(self, B):
        """The (1,) uint64 offset array on ``B`` if bound to it, else None."""
        return self._device[1] if self._device is not None and self._device[0] is B else None

    def state_dict(self) -> dict:
        return {"seed": self.seed, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.offset = int(state["offset"])


class Backend:
    """Array module + dtype + op implementations.

    Attributes:
        name: one of ``BACKENDS`` (never ``"auto"``: that is resolved first).
        device: where it runs, for people (``resolve_backend``'s description; "" if unknown).
        xp: ``numpy`` or ``cupy`` — the module arrays live in.
        dtype: ``numpy.float32`` or ``numpy.float64``; every parameter and activation has it.
        ops: namespace of op functions (``rawgan.backend.reference`` defines the names and
            signatures; every backend's ``ops`` has the same).
    """

    def __init__(self, name: str, xp, ops, dtype):
        self.name = name
        self.xp = xp
        self.ops = ops
        self.dtype = np.dtype(dtype)
        self.device = ""

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Host or device array -> contiguous array of this backend (default dtype: ``self.dtype``)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype or self.dtype))

    def to_numpy(self, a) -> np.ndarray:
        """Backend array (or scalar) -> NumPy array on the host (synchronises on a GPU; raises
        rawgan.runtime.CaptureError while a graph is being captured)."""
        rt = getattr(self.ops, "rt", None)
        return rt.to_host(a) if rt is not None else to_host(a)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def empty(self, shape, dtype=None):
        return self.xp.empty(shape, dtype=dtype or self.dtype)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""
        sync = getattr(self.ops, "synchronize", None)
        if sync is not None:
            sync()

    # -- random numbers -----------------------------------------------------------------------
    def uniform(self, gen: PhiloxState, shape, low=-1.0, high=1.0):
        """U[low, high) of ``shape`` from the counter-based stream ``gen`` (advances it)."""
        return self._draw("uniform", gen, shape, low, high)

    def normal(self, gen: PhiloxState, shape, mean=0.0, std=1.0):
        """N(mean, std²) of ``shape`` (Box–Muller on the Philox stream; advances it)."""
        return self._draw("normal", gen, shape, mean, std)

    def _draw(self, dist: str, gen: PhiloxState, shape, a, b):
        """ops.philox_<dist>(n, seed, offset, a, b, dtype) on the host offset, or, once ``gen``
        is bound to this backend, ops.philox_<dist>_next on its device offset (which the kernel
        advances, so a captured graph draws fresh numbers at each replay)."""
        n = int(np.prod(shape))
        dev = gen.device_offset(self)
        if dev is not None:
            draw = getattr(self.ops, f"philox_{dist}_next")
            return draw(n, gen.seed, dev, a, b, self.dtype).reshape(shape)
        out = getattr(self.ops, f"philox_{dist}")(n, gen.seed, gen.offset, a, b, self.dtype)
        gen.offset += n
        return out.reshape(shape)

    def __repr__(self):
        return f"Backend({self.name!r}, dtype={self.dtype.name})"


def cupy_gpu() -> tuple[str | None, str]:
    """Whether CuPy can drive a GPU here: ``(device description, "")`` or ``(None, reason)``.

    CuPy APIs used (all of cupy 14, checked against the installed package by
    tests/test_backend_auto.py): ``cupy.cuda.runtime.getDeviceCount()`` (raises
    ``CUDARuntimeError`` without a driver), ``getDevice()``, ``getDeviceProperties(id)`` (a dict;
    ``name`` is bytes, ``totalGlobalMem`` bytes, ``multiProcessorCount``, ``major``/``minor``) and
    ``runtimeGetVersion()`` (e.g. 13000 for CUDA 13.0). Never raises.
    """
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install behind it
        return None, f"CuPy is not importable ({type(e).__name__}: {e})"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError without a driver, etc.
        return None, f"CuPy sees no CUDA device ({type(e).__name__}: {e})"
    if count < 1:
        return None, "CuPy sees no CUDA device (getDeviceCount() == 0)"
    try:
        rt = cupy.cuda.runtime
        dev = int(rt.getDevice())
        props = rt.getDeviceProperties(dev)
        name = props["name"]
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        ver = int(rt.runtimeGetVersion())
        return (f"GPU {dev}: {name} (sm_{props['major']}{props['minor']}, "
                f"{props['multiProcessorCount']} SMs, {props['totalGlobalMem'] / 2**30:.1f} GiB; "
                f"CUDA runtime {ver // 1000}.{ver % 1000 // 10}, CuPy {cupy.__version__})"), ""
    except Exception as e:  # a device is visible but cannot be queried: still a GPU
        return f"GPU (properties unavailable: {type(e).__name__}: {e})", ""


def _cpu_description(name: str) -> str:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    what = {"numpy": "fast NumPy backend", "reference": "NumPy reference"}.get(
        name, "CUDA kernels in the CPU emulator")
    return f"CPU ({cores} cores, {what})"


def resolve_backend(name: str = AUTO) -> tuple[str, str]:
    """Resolve a ``--backend`` choice to ``(backend name, device description)``.

    ``"auto"`` becomes ``"cupy"`` when CuPy imports and sees at least one GPU, else ``AUTO_CPU``
    (``"numpy"``); the description then says why no GPU was used. Other names are returned as they
    are, with a description of their device (for ``"cupy"`` without a GPU: the reason, and
    :func:`get_backend` raises). Strings only, e.g.
    ``("cupy", "GPU 0: NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB; CUDA runtime 13.0, CuPy 14.2.0)")``
    or ``("numpy", "CPU (2 cores, NumPy); auto: no GPU, CuPy is not importable (...)")``.

    Raises:
        ValueError: ``name`` is not one of ``BACKEND_CHOICES``.
    """
    if name not in BACKEND_CHOICES:
        raise ValueError(f"get_backend: unknown backend {name!r}; choose one of "
                         f"{', '.join(BACKEND_CHOICES)}")
    if name in (AUTO, "cupy"):
        device, reason = cupy_gpu()
        if device is not None:
            return "cupy", device
        if name == "cupy":
            return "cupy", f"no GPU: {reason}"
        return AUTO_CPU, f"{_cpu_description(AUTO_CPU)}; auto: no GPU, {reason}"
    return name, _cpu_description(name)


def get_backend(name: str = "numpy", dtype: str = "float32", **options) -> Backend:
    """Create a backend.

    Args:
        name: ``"reference"`` (the naive NumPy truth, ``rawgan.backend.reference``), ``"numpy"``
            (the fast CPU backend, ``rawgan.backend.fastcpu``), ``"cupy"`` (GPU), ``"emulated"``
            (the CUDA code on the CPU) or ``"auto"`` (cupy when CuPy sees a GPU, else numpy; see
            :func:`resolve_backend`). The returned backend's ``name`` is the resolved one and
            ``device`` describes where it runs.
        dtype: ``"float32"`` or ``"float64"`` (or the NumPy dtype); the CUDA kernels are float32.
        options: ``conv_impl="kernels"|"cudnn"`` and ``precision="fp32"|"tf32"`` (``cupy``/
            ``emulated``; the CPU backends accept only "kernels" and "fp32"). ``precision`` is
            the GEMM/cuDNN compute precision (default fp32; the emulator computes FP32 always).
    Raises:
        ValueError: unknown backend, dtype or option, float64 for a CUDA backend, or
            ``conv_impl="cudnn"`` or ``precision="tf32"`` for a CPU backend.
        RuntimeError: ``cupy`` requested but CuPy or a GPU is not available (message says how to
            install: ``pip install .[cuda12]`` or ``.[cuda13]``).
    """
    name, device = resolve_backend(name)
    try:
        dtype = np.dtype(dtype).name          # accepts "float32", np.float32, np.dtype(...)
    except TypeError:
        dtype = repr(dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"get_backend: unsupported dtype {dtype}; choose float32 or float64")
    unknown = set(options) - {"conv_impl", "precision"}
    if unknown:
        raise ValueError(f"get_backend: unknown option(s) {', '.join(sorted(unknown))}; "
                         f"the options are conv_impl and precision")
    if name in _CPU_BACKENDS:
        if options.get("conv_impl", "kernels") != "kernels":
            raise ValueError("get_backend: conv_impl applies to the cupy and emulated backends "
                             f"only (got conv_impl={options['conv_impl']!r} for {name})")
        if options.get("precision", "fp32") != "fp32":
            raise ValueError("get_backend: precision applies to the cupy and emulated backends "
                             f"only (got precision={options['precision']!r} for {name}; the CPU "
                             f"backends compute in {dtype})")
        if name == "reference":
            from . import reference as ops
        else:
            from . import fastcpu as ops
        B = Backend(name, np, ops, _DTYPES[dtype])
        B.device = device
        return B
    if dtype != "float32":
        raise ValueError(f"get_backend: the {name} backend's kernels are float32 only "
                         f"(got {dtype})")
    from .cuda import make_backend
    B = make_backend(name, **options)
    B.device = device
    return B
