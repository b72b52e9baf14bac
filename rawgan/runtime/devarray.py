"""Device arrays for the emulator: NumPy memory behind exactly CuPy's ``ndarray`` surface.

The emulated runtime runs the CUDA backend's own Python code on the CPU. If it handed that code
NumPy arrays, every NumPy-only habit (``a.flags.writeable``, ``a.ctypes``, a NumPy scalar from
``a.sum()``, ``numpy.foo(device_array)``, mixing host and device arrays, an ``xp`` function CuPy
lacks) would pass on the CPU and fail on the first GPU. So ``rt.xp`` of the emulated runtime is
:data:`xp`, a namespace with exactly the installed CuPy's names, and its arrays are
:class:`DeviceArray`: a ``numpy.ndarray`` subclass that

* answers only the attribute names of the installed ``cupy.ndarray`` (anything else raises
  ``AttributeError`` naming CuPy), with ``flags`` a real ``cupy._core.flags.Flags``
  (``c_contiguous``, ``f_contiguous``, ``owndata`` — no ``writeable``);
* has CuPy's ``get()`` / ``set()`` (device <-> host copies) and ``data.ptr``;
* returns 0-d device arrays, not NumPy scalars, from reductions and integer indexing;
* refuses plain NumPy arrays as operands (CuPy raises ``TypeError`` there too) and NumPy
  functions CuPy does not implement (through ``__array_function__``, as CuPy does);
* reports what a GPU would do to the runtime: every new device buffer to
  :data:`ALLOCATION_HOOKS` (``hook(nbytes)``), every host synchronisation or synchronous copy
  (``get``, ``set``, ``item``, ``float()``, ``bool()``, ``tolist``, printing) to
  :data:`HOST_SYNC_HOOKS` (``hook(what)``). Counters and CUDA-graph capture checks hook in here.

The names come from the installed CuPy (it imports without a GPU), so the surface follows the
CuPy version CI installs (14.x today); without CuPy the emulated backend cannot be created.
"""
from __future__ import annotations

import numpy as np

try:  # CuPy's own classes are the specification; importing needs no GPU.
    import cupy as _cupy
    from cupy._core.flags import Flags as CupyFlags
except ImportError as _e:  # pragma: no cover - CI installs CuPy
    _cupy = None
    _IMPORT_ERROR = f"{type(_e).__name__}: {_e}"
else:
    _IMPORT_ERROR = ""

#: Called with the byte size of every new device buffer (allocations a GPU would make).
ALLOCATION_HOOKS: list = []
#: Called with a short description of every host synchronisation or synchronous copy.
HOST_SYNC_HOOKS: list = []


def available() -> bool:
    """True when CuPy is importable (its classes define the surface)."""
    return _cupy is not None


def require() -> None:
    """Raise RuntimeError (saying how to install CuPy) when CuPy cannot be imported."""
    if _cupy is None:
        raise RuntimeError("the emulated backend mirrors CuPy's array surface and needs the CuPy "
                           f"package, which imports without a GPU ({_IMPORT_ERROR}); "
                           "pip install cupy-cuda12x (or pip install '.[test]')")


CUPY_VERSION = _cupy.__version__ if _cupy is not None else None
#: Attribute names of ``cupy.ndarray`` (the surface a DeviceArray answers).
NDARRAY_NAMES = frozenset(dir(_cupy.ndarray)) if _cupy is not None else frozenset()
#: Names of the ``cupy`` module (the surface :data:`xp` answers).
XP_NAMES = frozenset(dir(_cupy)) if _cupy is not None else frozenset()
# NumPy's subclass protocol: looked up on our instances by NumPy itself, never by backend code.
_PROTOCOL = frozenset({"__array_finalize__", "__array_ufunc__", "__array_function__",
                       "__array_priority__", "__array_wrap__", "__class__", "__dict__"})
_ALLOWED = NDARRAY_NAMES | _PROTOCOL


def _notify_alloc(nbytes: int) -> None:
    for hook in ALLOCATION_HOOKS:
        hook(int(nbytes))


def _notify_sync(what: str) -> None:
    for hook in HOST_SYNC_HOOKS:
        hook(what)


def _host(a):
    """The plain NumPy view of a DeviceArray (no copy); anything else unchanged."""
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def _host_all(obj):
    """:func:`_host` through (nested) tuples, lists and dicts."""
    if isinstance(obj, DeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, tuple):
        return tuple(_host_all(o) for o in obj)
    if isinstance(obj, list):
        return [_host_all(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _host_all(v) for k, v in obj.items()}
    return obj


def _reject_host_arrays(where: str, objs) -> None:
    """CuPy refuses NumPy arrays as operands of device operations: so do we."""
    for o in objs:
        if isinstance(o, (list, tuple)):
            _reject_host_arrays(where, o)
        elif isinstance(o, np.ndarray) and not isinstance(o, DeviceArray):
            raise TypeError(f"{where}: got a host numpy.ndarray where CuPy needs a device array "
                            "(cupy.ndarray); move it with xp.asarray first")


def _device(result, inputs=()):
    """Wrap a NumPy result as a DeviceArray; count it as an allocation when it is new memory.

    A result that is one of the (host views of the) inputs comes back as that input; a view of
    existing memory is wrapped without counting; a NumPy scalar becomes a new 0-d array, as CuPy
    returns from reductions.
    """
    if isinstance(result, tuple):
        return tuple(_device(r, inputs) for r in result)
    if isinstance(result, list):
        return [_device(r, inputs) for r in result]
    if isinstance(result, DeviceArray):
        return result
    if isinstance(result, np.generic):
        result = np.asarray(result)
        _notify_alloc(result.nbytes)
        return _owner(result)
    if not isinstance(result, np.ndarray):
        return result
    for original in inputs:
        if isinstance(original, DeviceArray) and _same_view(result, original.view(np.ndarray)):
            return original
    if result.base is None:
        _notify_alloc(result.nbytes)
        return _owner(result)
    return result.view(DeviceArray)


def _owner(fresh: np.ndarray) -> "DeviceArray":
    """A DeviceArray over newly allocated memory (``flags.owndata`` is True, as in CuPy)."""
    arr = fresh.view(DeviceArray)
    arr.__dict__["_owns"] = True
    return arr


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b are the same memory with the same layout (e.g. ascontiguousarray(b))."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


class _MemoryPointer:
    """What ``cupy.ndarray.data`` gives: an object whose ``ptr`` is the buffer's address."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = int(ptr)

    def __repr__(self):
        return f"<emulated MemoryPointer 0x{self.ptr:x}>"


def _on_host(what: str, fn):
    """A method that reads the array on the host through ``fn`` (reported as a host sync)."""
    def method(self, *args):
        _notify_sync(what)
        return fn(self.view(np.ndarray), *args)

    method.__name__ = getattr(fn, "__name__", what)
    return method


class DeviceArray(np.ndarray):
    """A NumPy array that presents exactly ``cupy.ndarray``'s surface (see the module docstring).

    Create them with :data:`xp` (``xp.asarray``, ``xp.empty``, …) like CuPy arrays; the backend
    never constructs this class directly.
    """

    def __array_finalize__(self, obj):
        # Methods such as copy()/astype() create new memory of this type directly.
        if obj is not None and np.ndarray.base.__get__(self) is None:
            _notify_alloc(np.ndarray.nbytes.__get__(self))

    def __getattribute__(self, name):
        if name in _ALLOWED or name in _OWN:
            return object.__getattribute__(self, name)
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (the emulated "
                             f"device array has exactly CuPy {CUPY_VERSION}'s surface; "
                             f"{name!r} is NumPy-only)")

    # -- CuPy's own surface ---------------------------------------------------------------------
    @property
    def flags(self):
        f = np.ndarray.flags.__get__(self)
        return CupyFlags(f.c_contiguous, f.f_contiguous, f.owndata or "_owns" in self.__dict__)

    @property
    def data(self):
        return _MemoryPointer(np.ndarray.ctypes.__get__(self).data)

    def get(self, stream=None, order="C", out=None, blocking=True):
        """Device -> host copy (synchronises): a NumPy array."""
        _notify_sync("ndarray.get() (device-to-host copy)")
        host = np.array(self.view(np.ndarray), order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        """Host -> device copy into this array (synchronous for pageable host memory)."""
        _notify_sync("ndarray.set() (host-to-device copy)")
        arr = np.asarray(arr)
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        self.view(np.ndarray)[...] = arr

    # Reading device values on the host waits for the device: each is a host synchronisation.
    item = _on_host("ndarray.item()", np.ndarray.item)
    tolist = _on_host("ndarray.tolist()", np.ndarray.tolist)
    __float__ = _on_host("float(device array)", float)
    __int__ = _on_host("int(device array)", int)
    __bool__ = _on_host("bool(device array)", bool)
    __repr__ = _on_host("repr(device array)", repr)
    __str__ = _on_host("str(device array)", str)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` "
                        "to construct a NumPy array explicitly. (emulated cupy.ndarray)")

    def __getitem__(self, key):
        result = self.view(np.ndarray)[_host_all(key)]
        if isinstance(result, np.generic):      # CuPy: a 0-d view, not a NumPy scalar
            return _owner(np.asarray(result))
        return result.view(DeviceArray) if result.base is not None else _device(result)

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray) and value.ndim:
            _notify_sync("setitem from a host array (host-to-device copy)")
        self.view(np.ndarray)[_host_all(key)] = _host_all(value)

    # -- NumPy's dispatch, answered the way CuPy answers it ---------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not hasattr(_cupy, ufunc.__name__):
            return NotImplemented
        _reject_host_arrays(f"cupy.{ufunc.__name__}", inputs)
        out = kwargs.get("out")
        if out is not None:
            _reject_host_arrays(f"cupy.{ufunc.__name__}(out=)", out)
            kwargs["out"] = tuple(_host_all(o) for o in out)
        result = getattr(ufunc, method)(*_host_all(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _device(result, inputs)

    def __array_function__(self, func, types, args, kwargs):
        path = func.__module__.split(".")[1:] if func.__module__ else []
        target = _cupy
        for part in [p for p in path if p not in ("_core", "core", "lib") and not p.startswith("_")]:
            target = getattr(target, part, None)
        if target is None or not hasattr(target, func.__name__):
            return NotImplemented               # NumPy then raises TypeError, as with CuPy
        _reject_host_arrays(f"cupy.{func.__name__}", args)
        return _device(func(*_host_all(args), **_host_all(kwargs)), args)


_OWN = frozenset(k for k, v in vars(DeviceArray).items())


# ------------------------------------------------------------------------------------------------
# xp: the cupy module's names, implemented by NumPy on DeviceArrays
# ------------------------------------------------------------------------------------------------

#: Functions that take host data by design (they are how data gets onto the device).
_HOST_INPUT_OK = frozenset({"asarray", "array", "ascontiguousarray", "asfortranarray", "asanyarray"})


class _Namespace:
    """A module-like object answering exactly the names of one CuPy module (``cupy``,
    ``cupy.linalg``, …) with NumPy's implementation of the same name on DeviceArrays."""

    def __init__(self, cupy_module, numpy_module, label: str):
        self._cupy_module, self._numpy_module, self._label = cupy_module, numpy_module, label
        self._cache: dict = {}

    def __getattr__(self, name):
        cache = self.__dict__["_cache"]
        if name in cache:
            return cache[name]
        if not hasattr(self._cupy_module, name):
            raise AttributeError(f"module {self._label!r} has no attribute {name!r} (emulated "
                                 f"CuPy {CUPY_VERSION})")
        if name == "ndarray" and self._label == "cupy":
            value = DeviceArray
        elif name in ("cuda", "cudnn", "cublas"):
            raise AttributeError(f"{self._label}.{name}: the emulated runtime has no CUDA runtime; "
                                 "code using it must run only when rt.kind == 'cupy'")
        else:
            value = getattr(self._numpy_module, name, None)
            if value is None:
                raise AttributeError(f"{self._label}.{name} exists in CuPy but has no NumPy "
                                     "counterpart for the emulator")
            if isinstance(value, type(np)):
                value = _Namespace(getattr(self._cupy_module, name), value, f"{self._label}.{name}")
            elif callable(value) and not isinstance(value, type):
                value = _device_function(value, f"{self._label}.{name}", name in _HOST_INPUT_OK)
        cache[name] = value
        return value

    def __dir__(self):
        return sorted(dir(self._cupy_module))

    def __repr__(self):
        return f"<emulated {self._label} (CuPy {CUPY_VERSION} names, NumPy memory)>"


def _device_function(fn, label: str, host_input_ok: bool):
    def call(*args, **kwargs):
        if not host_input_ok:
            _reject_host_arrays(label, args)
        result = fn(*_host_all(args), **_host_all(kwargs))
        if host_input_ok and args and isinstance(args[0], np.ndarray) \
                and not isinstance(args[0], DeviceArray) and args[0].ndim:
            _notify_sync(f"{label}(host array) (host-to-device copy)")
            if isinstance(result, np.ndarray) and np.shares_memory(result, args[0]):
                result = result.copy()          # device memory is never the host's memory
        return _device(result, args)

    call.__name__, call.__qualname__, call.__doc__ = fn.__name__, label, fn.__doc__
    return call


#: The emulated runtime's array module (``rt.xp``): CuPy's names, DeviceArray results.
xp = _Namespace(_cupy, np, "cupy") if _cupy is not None else None
