"""One kernel-launch interface over real CuPy and the CPU emulator.

    rt = get_runtime("cupy")          # or "emulated"
    rt.xp                             # cupy or numpy: allocate kernel arguments with this
    k = rt.module("activations").get_function("relu_forward")
    k(grid, block, (x, y, n), shared_mem=0)
    rt.gemm(a, b, out)                # out = a @ b (cuBLAS on the GPU, numpy.matmul emulated)
    rt.set_precision("tf32")          # GEMM compute type: "fp32" (default) or "tf32" (cuBLAS)
    rt.synchronize()

The CUDA backend is written once against this interface. Both kinds check every launch's
arguments against the kernel's declared C signature (see sources.pack_args): on the GPU this
turns CuPy's silent "Python float becomes a C double" into a converted value, and a wrong dtype
into a TypeError instead of garbage.

Static memory, counters and graphs (issue 8):

    mem = StaticMemory(rt)            # the buffers of one training step
    with rt.static_memory(mem):       # rt.empty() hands out mem's buffers in request order
        step()                        # first time: allocates; afterwards: reuses, allocates 0
    with rt.capture() as graph:       # record one step (nothing runs while capturing)
        with rt.static_memory(mem):
            step()
    graph.launch()                    # one step: a cupy.cuda.Graph launch / the recorded replay
    rt.counters()                     # {"launches", "allocations", "graph_launches", ...}
    with rt.record_launches() as recs:  # a LaunchRecord (bytes, FLOPs, shape) per launch
        step()
    with rt.skip_execution():         # emulator: count and record, run nothing (cost model)
        step()

Inside ``capture`` every capture-forbidden action raises :class:`CaptureError` at once: a host
synchronisation (``synchronize``, ``to_host``), an allocation (``empty``/``zeros`` that the static
memory cannot serve, and on CuPy any pool allocation, on the emulator any new device buffer of
``xp``), a synchronous copy (``upload``), and a GEMM outside ``rt.gemm`` (``xp.matmul`` allocates
its result; CuPy's cuBLAS wrappers refuse capture themselves). On the emulator the captured
launches are recorded (kernel, grid, block, the argument tuple as passed: buffers by reference,
scalars by value — what a CUDA graph freezes) and ``graph.launch()`` replays them, so a host
value frozen into the graph shows up on the CPU exactly as it would on the GPU.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import threading

import numpy as np

from .sources import headers_digest, kernel_dir, pack_args, read_kernel_source, signature

KINDS = ("cupy", "emulated")
PRECISIONS = ("fp32", "tf32")

# cuBLAS constants (cublas_api.h / library_types.h of CUDA 12 and 13; CuPy 14 exposes the same
# names in cupy_backends.cuda.libs.cublas, which needs libcublas to import: tests/test_gpu.py
# compares them on a GPU machine). cudaDataType CUDA_R_32F = 0 (also cupy.cuda.runtime.CUDA_R_32F).
CUDA_R_32F = 0
CUBLAS_COMPUTE_32F = 68             # FP32 compute, no down-conversion (the IEEE FP32 path)
CUBLAS_COMPUTE_32F_FAST_TF32 = 77   # FP32 in/out, inputs rounded to TF32 for the tensor cores
CUBLAS_GEMM_DEFAULT = -1
COMPUTE_TYPES = {"fp32": CUBLAS_COMPUTE_32F, "tf32": CUBLAS_COMPUTE_32F_FAST_TF32}


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def compile_options() -> tuple[str, ...]:
    """NVRTC options of every kernel file on CuPy.

    ``-I kernels/`` for the shared ``*.cuh`` headers, and a define holding a digest of those
    headers: CuPy's on-disk kernel cache keys on the source text and the options, not on
    ``#include``d files, so without it an edited header would keep serving stale binaries.
    """
    return ("-std=c++17", f"-I{kernel_dir()}", f"-DRAWGAN_KERNEL_HEADERS={headers_digest()[:16]}")


def _forwarded(name: str, inner: str) -> property:
    """A property reading and writing attribute ``name`` of ``self.<inner>``."""
    return property(lambda self: getattr(getattr(self, inner), name),
                    lambda self, value: setattr(getattr(self, inner), name, value))


class CupyKernel:
    """A ``cupy.RawKernel`` whose arguments are checked and converted like the emulator's."""

    def __init__(self, raw, sig, cupy):
        self.raw, self.signature, self.name, self._cupy = raw, sig, sig.name, cupy

    # cudaFuncAttributeMaxDynamicSharedMemorySize, read and set on the RawKernel
    max_dynamic_shared_size_bytes = _forwarded("max_dynamic_shared_size_bytes", "raw")

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


class CaptureError(RuntimeError):
    """A capture-forbidden action (host sync, allocation, synchronous copy, a GEMM outside
    ``Runtime.gemm``) happened while a step was being captured into a graph."""


class CountedKernel:
    """A kernel of a :class:`CountedModule`: every call is counted by the runtime and, while the
    runtime captures on the emulator, recorded instead of run."""

    def __init__(self, rt: "Runtime", kernel, family: str = ""):
        self.rt, self.kernel, self.name, self.family = rt, kernel, kernel.name, family
        self.signature = kernel.signature

    max_dynamic_shared_size_bytes = _forwarded("max_dynamic_shared_size_bytes", "kernel")

    def __call__(self, grid, block, args, *, shared_mem: int = 0, **kw):
        k = self.kernel
        record = None
        if self.rt.launch_records is not None:
            record = kernel_record(self.name, self.family, self.signature, grid, block, args)
        self.rt._launch(self.name, lambda: k(grid, block, args, shared_mem=shared_mem, **kw), record)

    def __repr__(self) -> str:
        return f"<counted {self.kernel!r}>"


class CountedModule:
    """A compiled kernel file whose launchers go through :meth:`Runtime._launch`."""

    def __init__(self, rt: "Runtime", module):
        self.rt, self.raw_module, self.name = rt, module, module.name
        self.source = module.source
        self._kernels: dict[str, CountedKernel] = {}

    def get_function(self, name: str) -> CountedKernel:
        if name not in self._kernels:
            self._kernels[name] = CountedKernel(self.rt, self.raw_module.get_function(name), self.name)
        return self._kernels[name]

    def __repr__(self) -> str:
        return f"<counted {self.raw_module!r}>"


class LaunchRecord(collections.namedtuple(
        "LaunchRecord", "name family kind arrays flops blocks threads precision")):
    """What one launch moves and computes, recorded by the runtime (``Runtime.record_launches``).

    name: kernel name, "gemm" or "cudnn_<pass>"; family: the kernel file ("conv", "batchnorm",
    ...), "gemm (cuBLAS)" or "cuDNN"; kind: "kernel", "gemm" or "cudnn"; arrays: tuple of
    (nbytes, written) per pointer parameter in signature order (0 bytes for a null pointer;
    ``written`` = a non-const pointer: the kernel may write it); flops: floating-point operations (2 per multiply-add; 0 for elementwise and
    reduction kernels, which are bandwidth-bound); blocks, threads: the launch's grid size and
    block size (kernels; 0 otherwise); precision: "fp32"/"tf32" for GEMMs and cuDNN, "" else.
    """

    @property
    def nbytes(self) -> int:
        """Bytes of the arguments, each read or written once (a lower bound on DRAM traffic)."""
        return sum(n for n, _ in self.arrays)


def kernel_record(name, family, sig, grid, block, args) -> LaunchRecord:
    """The :class:`LaunchRecord` of one kernel launch from its C signature and arguments."""
    arrays = tuple((int(getattr(v, "nbytes", 0) or 0), not p.const)       # None: a null pointer
                   for p, v in zip(sig.params, args) if p.pointer)
    g = (grid,) if isinstance(grid, (int, np.integer)) else tuple(grid)
    b = (block,) if isinstance(block, (int, np.integer)) else tuple(block)
    return LaunchRecord(name, family, "kernel", arrays, 0.0, int(np.prod(g)), int(np.prod(b)), "")


class StaticMemory:
    """The device buffers of one training step (one per model and batch size).

    Buffers are handed out in request order: the i-th :meth:`Runtime.empty` of a step gets the
    i-th buffer when its shape and dtype match (the steady state: nothing is allocated), else a
    new one replaces it (counted; an error while capturing). ``scratch(slot, shape)`` is a
    per-slot workspace that grows to the largest request and is reused by every op of the step
    (temporaries that die inside one op: im2col columns, GEMM results before a transpose); stream
    order makes the reuse safe. 0-d float32 requests (losses, metrics) are views into one block
    ``scalars`` of SCALARS floats, so a log step reads every metric with one device-to-host copy.
    ``nbytes`` is the total held.
    """

    SCALARS = 64

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        self.buffers: list = []
        self.cursor = 0
        self.scalars = None
        self.scalar_cursor = 0
        self._scratch: dict[str, object] = {}

    def rewind(self) -> None:
        """Start handing out the buffers from the first again (the start of a step)."""
        self.cursor = self.scalar_cursor = 0

    def scalar_index(self, a) -> int | None:
        """Index of the 0-d array ``a`` in ``scalars``, or None if it is not one of them."""
        if self.scalars is None or a.shape != () or a.dtype != np.float32:
            return None
        offset = a.data.ptr - self.scalars.data.ptr
        return offset // 4 if 0 <= offset < 4 * self.SCALARS else None

    def take(self, shape: tuple, dtype):
        shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        if shape == () and dtype == np.float32 and self.scalar_cursor < self.SCALARS:
            if self.scalars is None:
                self.scalars = self.rt._allocate((self.SCALARS,), dtype)
            i = self.scalar_cursor
            self.scalar_cursor += 1
            return self.scalars[i:i + 1].reshape(())
        i = self.cursor
        self.cursor += 1
        if i < len(self.buffers):
            b = self.buffers[i]
            if tuple(b.shape) == shape and b.dtype == dtype:
                return b
        b = self.rt._allocate(shape, dtype)
        if i < len(self.buffers):
            self.buffers[i] = b
        else:
            self.buffers.append(b)
        return b

    def scratch(self, slot: str, shape: tuple, dtype):
        shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64))
        buf = self._scratch.get(slot)
        if buf is None or buf.dtype != dtype or buf.size < n:
            buf = self._scratch[slot] = self.rt._allocate((max(n, 1),), dtype)
        return buf[:n].reshape(shape)

    @property
    def nbytes(self) -> int:
        return (sum(int(b.nbytes) for b in self.buffers) + sum(int(b.nbytes) for b in self._scratch.values())
                + (int(self.scalars.nbytes) if self.scalars is not None else 0))

    def __repr__(self) -> str:
        return f"<StaticMemory {len(self.buffers)} buffers + {len(self._scratch)} scratch, {self.nbytes / 2**20:.1f} MiB>"


class EmulatedGraph:
    """A captured step on the emulator: the recorded launches, replayed in order by ``launch``."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        self.launches: list = []      # (name, thunk)
        self.records: list = []       # LaunchRecords of the captured launches (when recording)

    @property
    def num_launches(self) -> int:
        return len(self.launches)

    def launch(self) -> None:
        self.rt._check_not_capturing("a graph launch")
        rt = self.rt
        rt.graph_launches += 1
        if rt.launch_records is not None:
            rt.launch_records.extend(self.records)
        for name, thunk in self.launches:
            rt.launches += 1
            rt.launches_by_name[name] += 1
            if not rt.dry_run:
                thunk()

    def __repr__(self) -> str:
        return f"<EmulatedGraph {self.num_launches} launches>"


class CupyGraph:
    """A captured step on CuPy: a ``cupy.cuda.Graph`` launched on the runtime's capture stream."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        self.graph = None
        self.num_launches = 0
        self.records: list = []

    def launch(self) -> None:
        self.rt._check_not_capturing("a graph launch")
        self.rt.graph_launches += 1
        if self.rt.launch_records is not None:
            self.rt.launch_records.extend(self.records)
        self.rt.launches += self.num_launches
        self.rt.launches_by_name.update(self.names)
        self.graph.launch(self.rt.stream)

    def __repr__(self) -> str:
        return f"<CupyGraph {self.num_launches} launches>"


class _Cublas:
    """cuBLAS called through ctypes on rawgan's own handle, so a GEMM can be captured.

    CuPy's wrappers (``cupy_backends.cuda.libs.cublas.sgemm`` and therefore ``cupy.matmul``) call
    ``setStream`` before every call, and ``setStream`` raises during stream capture. Here the
    handle is created once, bound to the runtime's stream (``cublasSetStream_v2``) outside capture,
    then given a preallocated workspace (``cublasSetWorkspace_v2``, after every SetStream, which
    resets it: no allocation inside capture), and ``cublasGemmEx`` is called directly with FP32
    operands (``CUDA_R_32F``) and the compute type of the runtime's precision:
    ``CUBLAS_COMPUTE_32F`` (fp32: no down-conversion; the handle keeps the default math mode) or
    ``CUBLAS_COMPUTE_32F_FAST_TF32`` (tf32: inputs rounded to TF32, tensor cores, FP32
    accumulate — what PyTorch's ``allow_tf32`` does), algorithm ``CUBLAS_GEMM_DEFAULT``.
    """

    WORKSPACE_BYTES = 32 << 20

    def __init__(self, cupy, stream):
        self._lib = _load_cublas()
        self.handle = ctypes.c_void_p()
        self._check(self._lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate_v2")
        self.workspace = cupy.empty((self.WORKSPACE_BYTES,), dtype=np.uint8)
        self.bind(stream)
        self._one, self._zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def bind(self, stream) -> None:
        """Bind the handle to ``stream``, then (again) to our workspace: cublasSetStream resets
        the workspace to cuBLAS's default pool, which would allocate inside capture."""
        self._check(self._lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream.ptr)),
                    "cublasSetStream_v2")
        self._check(self._lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                                    ctypes.c_size_t(self.WORKSPACE_BYTES)),
                    "cublasSetWorkspace_v2")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def gemm_rowmajor(self, a, b, out, precision: str = "fp32", beta: float = 0.0) -> None:
        """out (M, N) = a (M, K) @ b (K, N) + beta·out; each operand C- or F-contiguous (a
        transpose view); ``precision`` "fp32" or "tf32" picks the compute type
        (:data:`COMPUTE_TYPES`); ``beta`` 0 or 1."""
        M, K = a.shape
        N = b.shape[1]
        # Row-major out = a @ b is column-major out^T = b^T a^T: cuBLAS gets (b, a) swapped.
        opb, ldb = _op_ld(b)
        opa, lda = _op_ld(a)
        self._check(self._lib.cublasGemmEx(
            self.handle, opb, opa, N, M, K, ctypes.byref(self._one),
            ctypes.c_void_p(b.data.ptr), CUDA_R_32F, ldb, ctypes.c_void_p(a.data.ptr), CUDA_R_32F, lda,
            ctypes.byref(self._one if beta else self._zero), ctypes.c_void_p(out.data.ptr),
            CUDA_R_32F, N, COMPUTE_TYPES[precision], CUBLAS_GEMM_DEFAULT), "cublasGemmEx")

    def gemm_strided_batched_rowmajor(self, a, b, out, precision: str = "fp32",
                                      beta: float = 0.0) -> None:
        """out[i] (M, N) = a[i] (M, K) @ b[i] (K, N) + beta·out[i] for i < batch
        (``cublasGemmStridedBatchedEx``, compute type as :meth:`gemm_rowmajor`); operands 3-D
        strided views or 2-D (the same matrix for every i: batch stride 0), each matrix with
        contiguous rows or columns and a leading dimension."""
        batch, M, N = out.shape
        K = a.shape[-1]
        opb, ldb, sb = _op_ld_stride(b)
        opa, lda, sa = _op_ld_stride(a)
        opc, ldc, sc = _op_ld_stride(out)
        if opc != 0:
            raise ValueError("gemm: the matrices of a batched out must be row-major")
        ll = ctypes.c_longlong
        self._check(self._lib.cublasGemmStridedBatchedEx(
            self.handle, opb, opa, N, M, K, ctypes.byref(self._one),
            ctypes.c_void_p(b.data.ptr), CUDA_R_32F, ldb, ll(sb),
            ctypes.c_void_p(a.data.ptr), CUDA_R_32F, lda, ll(sa),
            ctypes.byref(self._one if beta else self._zero), ctypes.c_void_p(out.data.ptr),
            CUDA_R_32F, ldc, ll(sc), batch, COMPUTE_TYPES[precision], CUBLAS_GEMM_DEFAULT),
            "cublasGemmStridedBatchedEx")


def _op_ld(a) -> tuple[int, int]:
    """(cuBLAS op, leading dimension) of a row-major operand given to column-major cuBLAS."""
    if a.flags.c_contiguous:
        return 0, max(1, a.shape[1])          # CUBLAS_OP_N on the transposed view
    if a.flags.f_contiguous:
        return 1, max(1, a.shape[0])          # CUBLAS_OP_T
    raise ValueError(f"gemm: operand of shape {tuple(a.shape)} is neither C- nor F-contiguous")


def _op_ld_stride(a) -> tuple[int, int, int]:
    """(cuBLAS op, leading dimension, batch stride), in elements, of a row-major matrix operand
    (2-D, or 3-D = a batch of matrices) given to column-major cuBLAS: a matrix whose rows are
    contiguous is CUBLAS_OP_N on the transposed view with ld = its row stride; one whose columns
    are contiguous is CUBLAS_OP_T with ld = its column stride. A 2-D operand has batch stride 0."""
    item = a.dtype.itemsize
    st = [s // item for s in a.strides]
    rows, cols = a.shape[-2], a.shape[-1]
    rs, cs = st[-2], st[-1]
    batch_stride = st[0] if a.ndim == 3 else 0
    if cs == 1 or cols == 1:
        ld = rs if rows > 1 else cols
        if ld >= max(1, cols):
            return 0, max(1, ld), batch_stride
    if rs == 1 or rows == 1:
        ld = cs if cols > 1 else rows
        if ld >= max(1, rows):
            return 1, max(1, ld), batch_stride
    raise ValueError(f"gemm: operand of shape {tuple(a.shape)} and strides {tuple(a.strides)} "
                     f"has neither contiguous rows nor contiguous columns")


def _load_cublas():
    """libcublas as a ctypes library (the copy CuPy loads, found by cuda.pathfinder)."""
    errors = []
    try:
        from cuda import pathfinder

        path = pathfinder.load_nvidia_dynamic_lib("cublas").abs_path
        if path:
            return _declare(ctypes.CDLL(path))
    except Exception as e:  # noqa: BLE001 - fall back to the loader's search path
        errors.append(f"cuda.pathfinder: {e}")
    for name in ("libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        try:
            return _declare(ctypes.CDLL(name))
        except OSError as e:
            errors.append(str(e))
    raise RuntimeError("cannot load libcublas for rawgan's GEMMs: " + "; ".join(errors))


def _declare(lib):
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
    # cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta,
    #              C, Ctype, ldc, computeType, algo)
    lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
    # cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA,
    #     B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo)
    ll = ctypes.c_longlong
    lib.cublasGemmStridedBatchedEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, ll, vp, i, i, ll,
                                               vp, vp, i, i, ll, i, i, i]
    for f in (lib.cublasCreate_v2, lib.cublasSetStream_v2, lib.cublasSetWorkspace_v2, lib.cublasGemmEx,
              lib.cublasGemmStridedBatchedEx):
        f.restype = i
    return lib


class Runtime:
    """Launch kernels on one kind of device. Use :func:`get_runtime` (one instance per kind).

    Counters (plain ints, reset with :meth:`reset_counters`): ``launches`` (kernels + GEMMs run,
    eager or inside a graph launch; ``launches_by_name`` counts them per kernel name, "gemm"),
    ``allocations`` / ``allocated_bytes`` (new device buffers: on CuPy every memory-pool
    allocation, through an allocator set with ``cupy.cuda.set_allocator``; on the emulator every
    new buffer of ``xp``, reported to ``devarray.ALLOCATION_HOOKS``), ``graph_launches``.
    Host synchronisations of the emulated arrays (``devarray.HOST_SYNC_HOOKS``) and allocations
    raise :class:`CaptureError` while capturing.
    """

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"runtime kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self._modules: dict[str, object] = {}
        self._lock = threading.Lock()
        self.launches = self.allocations = self.allocated_bytes = self.graph_launches = 0
        self.launches_by_name: collections.Counter = collections.Counter()
        self.capturing = False
        self.memory: StaticMemory | None = None
        self._graph = None
        self._cublas = None
        self.precision = "fp32"                 # set_precision; the compute type of GEMMs/cuDNN
        self.launch_records: list | None = None  # LaunchRecords while record_launches() is active
        self.dry_run = False                    # emulator: count and record launches, run none
        self.before_capture: list = []          # callables run just before a capture begins
        if kind == "cupy":
            import cupy

            self.xp = cupy
            # A non-blocking stream: CUDA graph capture refuses the legacy default stream.
            # It becomes the thread's current stream, so CuPy's own work (copies, fills) stays
            # ordered with our launches and graph launches (a non-blocking stream does not
            # synchronise with the legacy default stream).
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.stream.use()
            pool = cupy.get_default_memory_pool()

            def counting_malloc(nbytes):
                self._on_allocation(int(nbytes))
                return pool.malloc(nbytes)

            cupy.cuda.set_allocator(counting_malloc)
        else:
            from . import devarray

            devarray.require()
            self.xp = devarray.xp      # CuPy's names and array surface, NumPy memory
            self.stream = None
            # What a GPU would do, reported by the emulated arrays: counted, and refused in capture.
            devarray.ALLOCATION_HOOKS.append(self._on_allocation)
            devarray.HOST_SYNC_HOOKS.append(self._on_host_sync)

    # -- kernels ------------------------------------------------------------------------------
    def module(self, name: str):
        """The compiled kernels/<name>.cu (cached): ``.get_function(kernel)`` gives a launcher."""
        with self._lock:
            if name not in self._modules:
                self._modules[name] = self.module_from_source(None, name=name)
            return self._modules[name]

    def module_from_source(self, source: str | None, name: str | None = None):
        """Compile ``source`` (or kernels/<name>.cu when source is None); not cached."""
        if self.kind == "cupy":
            return CountedModule(self, CupyModule(name, source, self.xp))
        from .devarray import DeviceArray
        from .emulator import EmulatedModule

        return CountedModule(self, EmulatedModule(name, source=source, array_type=DeviceArray))

    def _launch(self, name: str, thunk, record: LaunchRecord | None = None) -> None:
        """Run (or, capturing on the emulator, record) one launch; count it, and keep ``record``
        (what it moves and computes) while :meth:`record_launches` is active."""
        self.launches += 1
        self.launches_by_name[name] += 1
        if record is not None and self.launch_records is not None:
            if self.capturing:
                self._graph.records.append(record)      # replayed by every graph.launch()
            else:
                self.launch_records.append(record)
        if self.capturing and self.kind == "emulated":
            self._graph.launches.append((name, thunk))
            return
        if self.dry_run:
            return
        if self.kind == "cupy":
            with self.stream:
                thunk()
        else:
            thunk()

    def gemm(self, a, b, out, beta: float = 0.0) -> None:
        """out (M, N) = a (M, K) @ b (K, N) + beta·out, float32, into a preallocated C-contiguous
        ``out``; ``beta`` is 0 (write) or 1 (accumulate: a parameter gradient's second pass).
        A 3-D ``out`` makes it one batched GEMM (:meth:`_gemm_batched`: strided NCHW views).

        ``a``/``b`` may be C-contiguous or transposes of C-contiguous arrays (``w.T``). On CuPy:
        ``cublasGemmEx`` on rawgan's handle bound to the runtime's stream (capturable), compute
        type from :attr:`precision` (fp32: ``CUBLAS_COMPUTE_32F``; tf32:
        ``CUBLAS_COMPUTE_32F_FAST_TF32``); on the emulator: ``numpy.matmul(a, b, out=out)`` in
        FP32 whatever the precision (the emulator has no TF32 rounding), counted and recorded
        like a kernel launch. Raises ValueError for mismatched shapes or a non-contiguous ``out``.
        """
        if beta not in (0.0, 1.0):
            raise ValueError(f"gemm: beta must be 0 or 1, got {beta!r}")
        if out.ndim == 3:
            return self._gemm_batched(a, b, out, beta)
        if a.ndim != 2 or b.ndim != 2 or out.ndim != 2 or a.shape[1] != b.shape[0] \
                or tuple(out.shape) != (a.shape[0], b.shape[1]):
            raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not match")
        if not out.flags.c_contiguous:
            raise ValueError("gemm: out must be C-contiguous")
        precision = self.precision
        record = None
        if self.launch_records is not None:
            M, K = (int(d) for d in a.shape)
            N = int(b.shape[1])
            record = LaunchRecord("gemm", "gemm (cuBLAS)", "gemm",
                                  ((4 * M * K, False), (4 * K * N, False), (4 * M * N, True)),
                                  2.0 * M * N * K, 0, 0, precision)
        self._run_gemm(lambda blas: blas.gemm_rowmajor(a, b, out, precision, beta), a, b, out,
                       beta, record)

    def _gemm_batched(self, a, b, out, beta: float) -> None:
        """out[i] = a[i] @ b[i] (+ out[i]) for every i of out's first axis, as ONE launch.

        ``out`` (batch, M, N) and 3-D operands may be strided views whose matrices have
        contiguous rows or columns (e.g. NCHW memory seen as (N, K, H·W), or the (C·R·S, N·P·Q)
        column matrix seen as (N, C·R·S, P·Q)); a 2-D operand is the same matrix for every i.
        This is how a convolution's GEMM reads and writes NCHW directly, without swap_axes01
        kernels. On CuPy: ``cublasGemmStridedBatchedEx``; on the emulator ``numpy.matmul``."""
        batch = out.shape[0]
        a_mk = a.shape[-2:]
        b_kn = b.shape[-2:]
        if a.ndim not in (2, 3) or b.ndim not in (2, 3) or a_mk[1] != b_kn[0] \
                or tuple(out.shape[1:]) != (a_mk[0], b_kn[1]) \
                or any(t.ndim == 3 and t.shape[0] != batch for t in (a, b)):
            raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not match")
        if out.strides[-1] != out.dtype.itemsize:
            raise ValueError("gemm: the rows of a batched out must be contiguous")
        precision = self.precision
        record = None
        if self.launch_records is not None:
            M, N = (int(d) for d in out.shape[1:])
            K = int(a_mk[1])
            # a 2-D operand is shared by the batch: read once from DRAM (then from L2)
            record = LaunchRecord("gemm", "gemm (cuBLAS)", "gemm",
                                  ((4 * int(a.size), False), (4 * int(b.size), False),
                                   (4 * int(out.size), True)),
                                  2.0 * batch * M * N * K, 0, 0, precision)
        self._run_gemm(lambda blas: blas.gemm_strided_batched_rowmajor(a, b, out, precision, beta),
                       a, b, out, beta, record)

    def _run_gemm(self, cublas_call, a, b, out, beta: float, record) -> None:
        """Launch one GEMM, counted and recorded like a kernel: ``cublas_call(blas)`` on CuPy;
        on the emulator ``numpy.matmul`` into ``out`` (added to it when beta is 1)."""
        if self.kind == "cupy":
            blas = self._blas()
            self._launch("gemm", lambda: cublas_call(blas), record)
            return
        ha, hb, ho = _host_view(a), _host_view(b), _host_view(out)
        if beta:
            self._launch("gemm", lambda: np.add(ho, np.matmul(ha, hb), out=ho), record)
        else:
            self._launch("gemm", lambda: np.matmul(ha, hb, out=ho), record)

    def set_precision(self, precision: str) -> None:
        """The compute precision of GEMMs (and cuDNN convolutions) from now on: "fp32" or "tf32".

        A setting of the runtime (one per process and kind), set by ``make_backend``. Raises
        ValueError for another value and CaptureError while capturing (a graph freezes it)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._check_not_capturing("changing the precision")
        self.precision = precision

    @contextlib.contextmanager
    def record_launches(self):
        """Collect a :class:`LaunchRecord` of every launch inside (yielded list), eager or
        replayed by a graph launch."""
        previous, self.launch_records = self.launch_records, []
        try:
            yield self.launch_records
        finally:
            self.launch_records = previous

    @contextlib.contextmanager
    def skip_execution(self):
        """Emulator only: count and record every launch inside but run none (the results are
        garbage; shapes, launch configurations and counts are real). bench/gpu_model.py prices
        a full-size step this way in seconds."""
        if self.kind != "emulated":
            raise ValueError("skip_execution: only on the emulated runtime")
        previous, self.dry_run = self.dry_run, True
        try:
            yield
        finally:
            self.dry_run = previous

    def _blas(self) -> _Cublas:
        if self._cublas is None:
            self._cublas = _Cublas(self.xp, self.stream)
        return self._cublas

    # -- memory -------------------------------------------------------------------------------
    def _on_allocation(self, nbytes: int) -> None:
        self.allocations += 1
        self.allocated_bytes += int(nbytes)
        if self.capturing:
            raise CaptureError(f"allocation of {nbytes} bytes inside graph capture: every buffer "
                               f"of a captured step must be allocated before capture (StaticMemory)")

    def _on_host_sync(self, what: str) -> None:
        if self.capturing:
            raise CaptureError(f"{what} inside graph capture (a host synchronisation or "
                               f"synchronous copy)")

    def _allocate(self, shape, dtype):
        """A new device buffer; counted by the CuPy allocator / the emulated arrays' hook."""
        shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        if self.capturing:
            self._on_allocation(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        return self.xp.empty(shape, dtype=dtype)

    def empty(self, shape, dtype=np.float32):
        """A device buffer: the next one of the active :class:`StaticMemory`, else a new one."""
        if self.memory is not None:
            return self.memory.take(shape, dtype)
        return self._allocate(shape, dtype)

    def scratch(self, slot: str, shape, dtype=np.float32):
        """A workspace that lives only inside one op (reused across ops through StaticMemory)."""
        if self.memory is not None:
            return self.memory.scratch(slot, shape, dtype)
        return self._allocate(shape, dtype)

    @contextlib.contextmanager
    def static_memory(self, memory: StaticMemory):
        """Serve :meth:`empty`/:meth:`scratch` from ``memory`` (from its first buffer) inside."""
        if memory.rt is not self:
            raise ValueError("static_memory: the StaticMemory belongs to another runtime")
        previous, self.memory = self.memory, memory
        memory.rewind()
        try:
            yield memory
        finally:
            self.memory = previous

    def upload(self, dst, host: np.ndarray) -> None:
        """Copy a host array into the device buffer ``dst`` (same shape and dtype), outside capture.

        ``dst.set(host, stream)`` on the runtime's stream. Raises CaptureError while
        capturing (a synchronous copy), ValueError on a shape or dtype mismatch.
        """
        self._check_not_capturing("a synchronous host-to-device copy (upload)")
        host = np.asarray(host)
        if tuple(host.shape) != tuple(dst.shape) or host.dtype != dst.dtype:
            raise ValueError(f"upload: host array {host.shape} {host.dtype} does not match the "
                             f"device buffer {tuple(dst.shape)} {dst.dtype}")
        dst.set(np.ascontiguousarray(host), stream=self.stream)

    def to_host(self, a) -> np.ndarray:
        """Device array (or scalar) -> NumPy array (synchronises). CaptureError while capturing."""
        self._check_not_capturing("a host read of device data (to_host / .get())")
        if isinstance(a, self.xp.ndarray):
            return a.get(stream=self.stream)
        return np.asarray(a)

    # -- graphs -------------------------------------------------------------------------------
    def _check_not_capturing(self, what: str) -> None:
        if self.capturing:
            raise CaptureError(f"{what} inside graph capture")

    @contextlib.contextmanager
    def capture(self):
        """Capture the launches inside the block into a graph (yielded; filled at exit).

        CuPy: ``Stream.begin_capture``/``end_capture`` on the runtime's non-blocking stream, with
        the cuBLAS handle bound to it first. Emulator: launches are recorded, not run. Nothing
        inside may synchronise, allocate or copy synchronously (:class:`CaptureError`).
        """
        if self.capturing:
            raise CaptureError("capture: already capturing")
        for hook in list(self.before_capture):    # e.g. the cuDNN handle's stream binding
            hook()
        if self.kind == "cupy":
            graph = CupyGraph(self)
            self._blas().bind(self.stream)
            self.stream.begin_capture()
        else:
            graph = EmulatedGraph(self)
        self._graph, self.capturing = graph, True
        start, names = self.launches, self.launches_by_name.copy()
        ok = False
        try:
            yield graph
            ok = True
        finally:
            self.capturing, self._graph = False, None
            graph.num_launches_captured = self.launches - start
            graph.names = self.launches_by_name - names
            self.launches, self.launches_by_name = start, names   # they run at graph.launch()
            if self.kind == "cupy":
                g = self.stream.end_capture()     # always end, also after an error
                if ok:
                    graph.graph = g
                    graph.num_launches = graph.num_launches_captured

    def synchronize(self) -> None:
        """Wait for all launched work (no-op in emulation: launches are synchronous).

        Raises CaptureError inside capture (a host synchronisation)."""
        self._check_not_capturing("a host synchronisation (synchronize)")
        if self.kind == "cupy":
            self.xp.cuda.Device().synchronize()

    # -- counters -----------------------------------------------------------------------------
    def counters(self) -> dict:
        """{"launches", "allocations", "allocated_bytes", "graph_launches"} so far."""
        return {"launches": self.launches, "allocations": self.allocations,
                "allocated_bytes": self.allocated_bytes, "graph_launches": self.graph_launches}

    def reset_counters(self) -> None:
        self.launches = self.allocations = self.allocated_bytes = self.graph_launches = 0
        self.launches_by_name = collections.Counter()

    def __repr__(self) -> str:
        return f"<Runtime {self.kind}>"


def _host_view(a) -> np.ndarray:
    """The NumPy memory of an emulated device array (a DeviceArray is a NumPy subclass), no copy."""
    return np.ndarray.view(a, np.ndarray)


_RUNTIMES: dict[str, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def get_runtime(kind: str = "cupy") -> Runtime:
    """The shared :class:`Runtime` of ``kind`` ("cupy" or "emulated")."""
    with _RUNTIMES_LOCK:
        if kind not in _RUNTIMES:
            _RUNTIMES[kind] = Runtime(kind)
        return _RUNTIMES[kind]
