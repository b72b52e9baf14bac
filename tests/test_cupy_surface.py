"""The CUDA backend's Python is checked against the installed CuPy's real classes, on a CPU.

Two nets catch what the emulator's kernels cannot (they would run the same with any host code):

* the emulated runtime hands the backend :class:`rawgan.runtime.devarray.DeviceArray` arrays and
  the ``xp`` namespace, which answer exactly CuPy's names — so a NumPy-only habit fails here the
  way it would on the first GPU (the regression: ``pack_args`` read ``a.flags.writeable``, which
  ``cupy.ndarray.flags`` does not have, and every launch on CuPy raised AttributeError);
* every CuPy entry point written in the source (``cupy.…``, ``xp.…``, ``rt.xp.…``) is resolved
  against the installed CuPy, keyword arguments included, by reading the code's syntax tree.
"""
from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")  # imports without a GPU; CI installs it with the test extra

from rawgan.backend import PhiloxState, get_backend  # noqa: E402
from rawgan.runtime import devarray, get_runtime  # noqa: E402
from rawgan.runtime.sources import pack_args, parse_signatures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
xp = devarray.xp


# ------------------------------------------------------------------------------------------------
# The array surface
# ------------------------------------------------------------------------------------------------

def test_flags_are_cupys_own_class_without_writeable():
    a = xp.zeros((2, 3), dtype=xp.float32)
    assert type(a.flags) is cupy._core.flags.Flags
    assert a.flags.c_contiguous and not a.flags.f_contiguous and a.flags.owndata
    with pytest.raises(AttributeError, match="writeable"):
        a.flags.writeable          # the line that killed every launch on CuPy 14


def test_old_writeable_check_would_fail_here():
    """The pre-fix argument check, run on an emulated device array, raises like it did on CuPy."""
    a = xp.zeros(4, dtype=xp.float32)

    def old_pack_args_check(arr, const):
        if not const and not arr.flags.writeable:   # verbatim from the old sources.pack_args
            raise TypeError("read-only")

    with pytest.raises(AttributeError, match="'Flags' object has no attribute 'writeable'"):
        old_pack_args_check(a, const=False)
    # ...and today's check accepts the same array for a non-const pointer.
    sig = parse_signatures('extern "C" __global__ void k(float* y, int n) {}')["k"]
    assert pack_args(sig, (a, 4), devarray.DeviceArray)[0] is a


def test_numpy_only_attributes_raise_like_cupy():
    a = xp.ones(3, dtype=xp.float32)
    numpy_only = sorted(set(dir(np.ndarray)) - set(dir(cupy.ndarray)) - {"__array_wrap__"})
    assert "ctypes" in numpy_only and "setflags" in numpy_only
    for name in numpy_only:
        with pytest.raises(AttributeError, match="cupy.ndarray"):
            getattr(a, name)
    for name in ("get", "set", "data", "shape", "dtype", "reshape", "fill", "view", "sum"):
        getattr(a, name)            # CuPy's names are all there
    assert a.data.ptr != 0


def test_xp_has_exactly_cupys_names():
    assert set(dir(xp)) == set(dir(cupy))
    assert xp.ndarray is devarray.DeviceArray and xp.float32 is np.float32
    with pytest.raises(AttributeError, match="no attribute 'frompyfunc'"):
        xp.frompyfunc             # NumPy has it, CuPy does not
    with pytest.raises(AttributeError, match="no CUDA runtime"):
        xp.cuda                   # GPU-only code must be guarded by rt.kind == "cupy"


def test_reductions_and_indexing_give_device_arrays_not_numpy_scalars():
    a = xp.asarray(np.arange(6, dtype=np.float32))
    for value in (a.sum(), a.mean(), a[2], xp.max(a)):
        assert isinstance(value, devarray.DeviceArray) and value.shape == ()
    assert float(a.sum()) == 15.0 and float(a[2]) == 2.0


def test_host_arrays_are_refused_as_operands():
    a = xp.ones(3, dtype=xp.float32)
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        a + np.ones(3, np.float32)
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        xp.add(a, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Implicit conversion"):
        a.__array__()
    b = xp.asarray(np.ones(3, np.float32))          # the way onto the device
    assert isinstance(b, devarray.DeviceArray)
    h = b.get()
    assert type(h) is np.ndarray and (h == 1).all()


def test_device_memory_is_never_host_memory():
    host = np.zeros(4, np.float32)
    dev = xp.asarray(host)
    dev.fill(7)
    assert (host == 0).all()


def test_hooks_count_allocations_and_host_syncs():
    allocs, syncs = [], []
    devarray.ALLOCATION_HOOKS.append(allocs.append)
    devarray.HOST_SYNC_HOOKS.append(syncs.append)
    try:
        a = xp.zeros((4, 8), dtype=xp.float32)
        assert allocs == [128]
        v = a.reshape(32)[3:9]                       # views allocate nothing
        xp.ascontiguousarray(a)                      # already contiguous: no copy
        assert len(allocs) == 1 and v.shape == (6,)
        b = a + 1                                    # a new buffer
        c = a.copy()
        s = a.sum()
        assert allocs[1:] == [128, 128, 4]
        assert not syncs
        float(s), a.get(), b.item(0), c.tolist()
        assert len(syncs) == 4
    finally:
        devarray.ALLOCATION_HOOKS.remove(allocs.append)
        devarray.HOST_SYNC_HOOKS.remove(syncs.append)


def test_runtime_launch_requires_device_arrays():
    rt = get_runtime("emulated")
    assert rt.xp is xp
    k = rt.module("activations").get_function("relu_forward")
    x = xp.asarray(np.array([-1, 2, -3], np.float32))
    y = xp.empty(3, dtype=xp.float32)
    k(1, 32, (x, y, 3))
    assert y.get().tolist() == [0, 2, 0]
    with pytest.raises(TypeError, match="device array"):
        k(1, 32, (np.zeros(3, np.float32), y, 3))


def test_z_draw_the_path_that_died_on_cupy():
    """Training on CuPy died in draw_z, the first launch; the same path runs on CuPy's surface."""
    E = get_backend("emulated")
    N = get_backend("numpy")
    z = E.uniform(PhiloxState(7), (5, 100))
    assert isinstance(z, devarray.DeviceArray)
    np.testing.assert_array_equal(E.to_numpy(z), N.uniform(PhiloxState(7), (5, 100)))


# ------------------------------------------------------------------------------------------------
# Every CuPy entry point in the source resolves against the installed CuPy
# ------------------------------------------------------------------------------------------------

# Names whose attribute chains are CuPy: the module itself and the backends' array module.
CUPY_ROOTS = {"cupy": cupy, "cp": cupy, "_cupy": cupy, "xp": cupy}
try:
    import cupyx
    import cupy_backends
    CUPY_ROOTS.update(cupyx=cupyx, cupy_backends=cupy_backends)
except ImportError:  # pragma: no cover
    pass

SOURCE_DIRS = ["rawgan/runtime", "rawgan/backend/cuda", "rawgan/layers", "rawgan/models",
               "rawgan/optim", "rawgan/backend/base.py", "rawgan/train.py", "rawgan/sample.py"]
# Attribute chains that are not CuPy calls even though they start with a root name.
NOT_CUPY = {"devarray.xp"}


def _chain(node):
    """'a.b.c' for an Attribute/Name chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _source_files():
    for d in SOURCE_DIRS:
        p = ROOT / d
        yield from ([p] if p.suffix == ".py" else sorted(p.rglob("*.py")))


def cupy_uses():
    """(file:line, dotted name after the root, root module, call node or None) for every chain."""
    uses = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        seen = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in seen:
                continue
            # only the outermost attribute of a chain
            chain = _chain(node)
            inner = node.value
            while isinstance(inner, ast.Attribute):
                seen.add(id(inner))
                inner = inner.value
            if chain is None:
                continue
            parts = chain.split(".")
            roots = [i for i, p in enumerate(parts) if p in CUPY_ROOTS]
            if not roots or any(chain.startswith(n) or f".{n}" in chain for n in NOT_CUPY):
                continue
            i = roots[0]
            if len(parts) == i + 1:
                continue
            uses.append((f"{path.relative_to(ROOT)}:{node.lineno}", ".".join(parts[i + 1:]),
                         CUPY_ROOTS[parts[i]], calls.get(id(node))))
    return uses


def _resolve(module, dotted):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _parameters(obj):
    """Parameter names of a CuPy callable (Python signature, or the Cython docstring's first
    line, e.g. ``RawModule(str code=None, *, str path=None, tuple options=(), ...)``); None when
    neither is available."""
    try:
        sig = inspect.signature(obj)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return {p.name for p in sig.parameters.values()}
        return None
    except (TypeError, ValueError):
        pass
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    m = re.match(r"\w+\((.*)\)", doc[0]) if doc else None
    if not m:
        return None
    names = set()
    for param in m.group(1).split(","):
        left = param.split("=")[0].strip()
        if left.startswith("**"):
            return None
        if left and left != "*" and not left.startswith("*"):
            names.add(left.split()[-1])
    return names


def test_source_scan_finds_the_known_entry_points():
    found = {name for _, name, _, _ in cupy_uses()}
    assert {"RawModule", "cuda.Event", "cuda.get_elapsed_time", "cuda.runtime.getDeviceCount",
            "empty"} <= found


def test_every_cupy_entry_point_resolves_with_its_keywords():
    problems = []
    for where, name, module, call in cupy_uses():
        try:
            obj = _resolve(module, name)
        except AttributeError as e:
            problems.append(f"{where}: {module.__name__}.{name}: {e}")
            continue
        if call is not None and call.keywords and callable(obj):
            params = _parameters(obj)
            if params is not None:
                bad = [k.arg for k in call.keywords if k.arg is not None and k.arg not in params]
                if bad:
                    problems.append(f"{where}: {module.__name__}.{name}() has no keyword(s) {bad}")
    assert not problems, "\n".join(problems)


def test_scan_catches_a_missing_name(tmp_path, monkeypatch):
    """The checker itself: a NumPy-only function or a wrong keyword is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(rt):\n    rt.xp.frompyfunc(len, 1, 1)\n"
                   "    cupy.RawModule(code='', option=())\n")
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "_source_files", lambda: iter([bad]))
    monkeypatch.setattr(me, "ROOT", tmp_path)
    with pytest.raises(AssertionError) as e:
        test_every_cupy_entry_point_resolves_with_its_keywords()
    assert "frompyfunc" in str(e.value) and "option" in str(e.value)


def test_rawmodule_accepts_our_compile_options():
    """cupy.RawModule is built exactly as the cupy runtime builds it (compiles lazily: no GPU)."""
    from rawgan.runtime.runtime import compile_options

    opts = compile_options()
    mod = cupy.RawModule(code='extern "C" __global__ void k() {}', options=opts)
    assert isinstance(mod, cupy.RawModule)
    assert any(o.startswith("-DRAWGAN_KERNEL_HEADERS=") for o in opts)
