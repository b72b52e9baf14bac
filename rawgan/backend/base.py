"""The :class:`Backend` object and :func:`get_backend`."""
from __future__ import annotations

import numpy as np

from ..hostio import to_host

BACKENDS = ("numpy", "cupy", "emulated")
_DTYPES = {"float32": np.float32, "float64": np.float64}


class Generator:
    """Counter-based random numbers (Philox4x32-10) that every backend reproduces bit-exactly.

    The state is a 64-bit ``seed`` (Philox key) and a 64-bit ``offset`` counting the values drawn
    so far; element ``i`` of a draw uses counter ``(i, offset)``. Because the stream depends only on
    ``(seed, offset)``, the NumPy reference and the CUDA kernel produce the same z for one seed, and
    a checkpoint restores the stream exactly by saving two integers.
    Source: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11), Philox4x32-10.
    """

    def __init__(self, seed: int, offset: int = 0):
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = int(offset)

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
        ops: namespace of op functions (see ``rawgan.backend.reference`` for the signatures).
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
        """Backend array (or scalar) -> NumPy array on the host (synchronises on a GPU)."""
        return to_host(a)

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
        out = self.ops.philox_uniform(n, gen.seed, gen.offset, low, high, self.dtype)
        gen.offset += n
        return out.reshape(shape)

    def normal(self, gen: Generator, shape, mean=0.0, std=1.0):
        """N(mean, std²) of ``shape`` (Box–Muller on the Philox stream; advances it)."""
        n = int(np.prod(shape))
        out = self.ops.philox_normal(n, gen.seed, gen.offset, mean, std, self.dtype)
        gen.offset += n
        return out.reshape(shape)

    def __repr__(self):
        return f"Backend({self.name!r}, dtype={self.dtype.name})"


def get_backend(name: str = "numpy", dtype: str = "float32", **options) -> Backend:
    """Create a backend.

    Args:
        name: ``"numpy"`` (reference), ``"cupy"`` (GPU) or ``"emulated"`` (CUDA code on the CPU).
        dtype: ``"float32"`` or ``"float64"`` (or the NumPy dtype); the CUDA kernels are float32.
        options: ``conv_impl="kernels"|"cudnn"`` (``cupy``/``emulated``; numpy: only "kernels").
    Raises:
        ValueError: unknown backend, dtype or option, float64 for a CUDA backend, or
            ``conv_impl="cudnn"`` for numpy.
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
    if name == "numpy":
        if options.get("conv_impl", "kernels") != "kernels":
            raise ValueError("get_backend: conv_impl applies to the cupy and emulated backends "
                             f"only (got conv_impl={options['conv_impl']!r} for numpy)")
        from . import reference
        return Backend("numpy", np, reference, _DTYPES[dtype])
    if dtype != "float32":
        raise ValueError(f"get_backend: the {name} backend's kernels are float32 only "
                         f"(got {dtype})")
    from .cuda import make_backend
    return make_backend(name, **options)
