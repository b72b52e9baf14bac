"""``--backend auto``: cupy when CuPy imports and sees a GPU, else numpy (rawgan.backend.base).

"No CuPy", "CuPy without a driver", "CuPy with 0 devices" and "CuPy with an H200" are simulated by
putting a stand-in module under ``sys.modules["cupy"]``; the CuPy names the stand-ins imitate are
checked against the installed CuPy (14.x imports without a GPU) by the last tests.
"""
import sys
import types

import pytest

from rawgan.backend import BACKEND_CHOICES, get_backend, resolve_backend
from rawgan.backend import base

H200 = {"name": b"NVIDIA H200", "major": 9, "minor": 0, "multiProcessorCount": 132,
        "totalGlobalMem": 150_119_088_128}


class FakeCudaRuntimeError(RuntimeError):
    pass


def fake_cupy(count=1, count_error=None, props=H200):
    """A module with exactly the names of cupy.cuda.runtime that base.cupy_gpu() calls."""
    def getDeviceCount():
        if count_error is not None:
            raise count_error
        return count

    runtime = types.SimpleNamespace(getDeviceCount=getDeviceCount, getDevice=lambda: 0,
                                    getDeviceProperties=lambda dev: dict(props),
                                    runtimeGetVersion=lambda: 13000,
                                    CUDARuntimeError=FakeCudaRuntimeError)
    mod = types.ModuleType("cupy")
    mod.__version__ = "14.2.0"
    mod.cuda = types.SimpleNamespace(runtime=runtime)
    return mod


def test_auto_without_cupy_is_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # import cupy -> ImportError
    name, device = resolve_backend("auto")
    assert name == "numpy"
    assert device.startswith("CPU (") and "NumPy" in device
    assert "auto: no GPU, CuPy is not importable (ModuleNotFoundError: import of cupy halted" in device
    B = get_backend("auto")
    assert B.name == "numpy" and B.device == device


def test_auto_with_cupy_but_no_driver_is_numpy(monkeypatch):
    err = FakeCudaRuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count_error=err))
    name, device = resolve_backend("auto")
    assert name == "numpy"
    assert ("auto: no GPU, CuPy sees no CUDA device (FakeCudaRuntimeError: "
            "cudaErrorInsufficientDriver") in device


def test_auto_with_cupy_and_zero_devices_is_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count=0))
    assert resolve_backend("auto") == (
        "numpy", base._cpu_description("numpy") + "; auto: no GPU, CuPy sees no CUDA device "
                                                  "(getDeviceCount() == 0)")


def test_auto_with_a_gpu_is_cupy_and_names_the_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count=1))
    assert resolve_backend("auto") == (
        "cupy", "GPU 0: NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB; CUDA runtime 13.0, CuPy 14.2.0)")
    # an explicit cupy describes the same device
    assert resolve_backend("cupy")[1].startswith("GPU 0: NVIDIA H200 (sm_90")


def test_a_gpu_whose_properties_fail_is_still_a_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count=2, props={}))
    name, device = resolve_backend("auto")
    assert name == "cupy" and device == "GPU (properties unavailable: KeyError: 'name')"


def test_explicit_names_are_kept(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count=0))
    assert resolve_backend("numpy") == ("numpy", base._cpu_description("numpy"))
    assert "fast NumPy backend" in resolve_backend("numpy")[1]
    assert resolve_backend("reference")[1].endswith("NumPy reference)")
    assert resolve_backend("emulated") == ("emulated", base._cpu_description("emulated"))
    assert "CUDA kernels in the CPU emulator" in resolve_backend("emulated")[1]
    assert resolve_backend("cupy") == ("cupy", "no GPU: CuPy sees no CUDA device "
                                               "(getDeviceCount() == 0)")
    with pytest.raises(RuntimeError, match="CuPy sees no GPU"):
        get_backend("cupy")


def test_unknown_name_lists_auto():
    assert BACKEND_CHOICES[0] == "auto"
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of auto, reference, numpy"):
        resolve_backend("gpu")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        get_backend("gpu")


def test_train_and_sample_default_to_auto():
    from rawgan.sample import build_parser as sample_parser
    from rawgan.train import build_parser as train_parser

    for parser in (train_parser(), sample_parser()):
        action = next(a for a in parser._actions if "--backend" in a.option_strings)
        assert action.default == "auto" and tuple(action.choices) == BACKEND_CHOICES


# -- the CuPy names used above exist in the installed CuPy ----------------------------------------
def test_cupy_names_used_exist_in_installed_cupy():
    cupy = pytest.importorskip("cupy")
    rt = cupy.cuda.runtime
    for name in ("getDeviceCount", "getDevice", "getDeviceProperties", "runtimeGetVersion",
                 "CUDARuntimeError"):
        assert callable(getattr(rt, name)), name
    assert issubclass(rt.CUDARuntimeError, RuntimeError)   # caught by cupy_gpu's except Exception
    assert isinstance(cupy.__version__, str)


def test_real_cupy_on_this_machine_resolves_consistently():
    """With the installed CuPy: auto is cupy exactly when getDeviceCount() > 0 works."""
    cupy = pytest.importorskip("cupy")
    try:
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        has_gpu = False
    name, device = resolve_backend("auto")
    if has_gpu:
        assert name == "cupy" and device.startswith("GPU ")
    else:
        assert name == "numpy" and "auto: no GPU, CuPy sees no CUDA device" in device
