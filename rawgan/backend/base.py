"""The :class:`Backend` object and :func:`get_backend`."""
from __future__ import annotations

import numpy as np

BACKENDS = ("reference", "numpy", "cupy", "emulated")
_CPU_BACKENDS = ("reference", "numpy")
_DTYPES = {"float32": np.float32, "float64": np.float64}


class Generator:
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
        name: one of ``BACKENDS``.
        xp: ``numpy`` or ``cupy`` — the module arrays live in.
        dtype: ``numpy.float32`` or ``numpy.float64``; every parameter and activation has it.
        ops: namespace of op functions (``rawgan.backend.reference`` defines the names and
            signatures; every backend's ``ops`` has the same).
    """

    def __init__(self, name: str, xp, ops, dtype, **options):
        self.name = name
        self.xp = xp
        self.ops = ops
        self.dtype = np.dtype(dtype)
        self.options = options

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Host or device array -> contiguous array of this backend (default dtype: ``self.dtype``)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype or self.dtype))

    def to_numpy(self, a) -> np.ndarray:
        """Backend array (or scalar) -> NumPy array on the host (synchronises on a GPU; raises
        rawgan.runtime.CaptureError while a graph is being captured)."""
        rt = getattr(self.ops, "rt", None)
        if rt is not None:
            return rt.to_host(a)
        if hasattr(a, "get"):
            return a.get()
        return np.asarray(a)

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
    def uniform(self, gen: Generator, shape, low=-1.0, high=1.0):
        """U[low, high) of ``shape`` from the counter-based stream ``gen`` (advances it)."""
        n = int(np.prod(shape))
        dev = gen.device_offset(self)
        if dev is not None:
            return self.ops.philox_uniform_next(n, gen.seed, dev, low, high, self.dtype).reshape(shape)
        out = self.ops.philox_uniform(n, gen.seed, gen.offset, low, high, self.dtype)
        gen.offset += n
        return out.reshape(shape)

    def normal(self, gen: Generator, shape, mean=0.0, std=1.0):
        """N(mean, std²) of ``shape`` (Box–Muller on the Philox stream; advances it)."""
        n = int(np.prod(shape))
        dev = gen.device_offset(self)
        if dev is not None:
            return self.ops.philox_normal_next(n, gen.seed, dev, mean, std, self.dtype).reshape(shape)
        out = self.ops.philox_normal(n, gen.seed, gen.offset, mean, std, self.dtype)
        gen.offset += n
        return out.reshape(shape)

    def __repr__(self):
        return f"Backend({self.name!r}, dtype={self.dtype.name})"


def get_backend(name: str = "numpy", dtype: str = "float32", **options) -> Backend:
    """Create a backend.

    Args:
        name: ``"reference"`` (the naive NumPy truth, ``rawgan.backend.reference``), ``"numpy"``
            (the fast CPU backend, ``rawgan.backend.fastcpu``; the default), ``"cupy"`` (GPU) or
            ``"emulated"`` (the CUDA code on the CPU).
        dtype: ``"float32"`` or ``"float64"`` (or the NumPy dtype); the CUDA kernels are float32.
        options: ``conv_impl="kernels"|"cudnn"`` (``cupy``/``emulated``; the CPU backends accept
            only "kernels").
    Raises:
        ValueError: unknown backend, dtype or option, float64 for a CUDA backend, or
            ``conv_impl="cudnn"`` for a CPU backend.
        RuntimeError: ``cupy`` requested but CuPy or a GPU is not available (message says how to
            install: ``pip install .[cuda12]`` or ``.[cuda13]``).
    """
    if name not in BACKENDS:
        raise ValueError(f"get_backend: unknown backend {name!r}; choose one of "
                         f"{', '.join(BACKENDS)}")
    try:
        dtype = np.dtype(dtype).name          # accepts "float32", np.float32, np.dtype(...)
    except TypeError:
        dtype = repr(dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"get_backend: unsupported dtype {dtype}; choose float32 or float64")
    unknown = set(options) - {"conv_impl"}
    if unknown:
        raise ValueError(f"get_backend: unknown option(s) {', '.join(sorted(unknown))}; "
                         f"the only option is conv_impl")
    if name in _CPU_BACKENDS:
        if options.get("conv_impl", "kernels") != "kernels":
            raise ValueError("get_backend: conv_impl applies to the cupy and emulated backends "
                             f"only (got conv_impl={options['conv_impl']!r} for {name})")
        if name == "reference":
            from . import reference as ops
        else:
            from . import fastcpu as ops
        return Backend(name, np, ops, _DTYPES[dtype])
    if dtype != "float32":
        raise ValueError(f"get_backend: the {name} backend's kernels are float32 only "
                         f"(got {dtype})")
    from .cuda import make_backend
    return make_backend(name, **options)
