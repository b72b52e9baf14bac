"""Every kernels/*.cu compiles with NVRTC for sm_80 and sm_90 without errors or warnings (no GPU needed)."""
import pytest

from rawgan.runtime.sources import TOOLS_DIR, kernel_dir, parse_signatures

nvrtc = pytest.importorskip("rawgan.runtime.nvrtc")
try:
    nvrtc.load_nvrtc()
except nvrtc.NvrtcUnavailable as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"NVRTC not installed: {e}", allow_module_level=True)

KERNEL_FILES = sorted(kernel_dir().glob("*.cu")) + sorted(TOOLS_DIR.glob("*.cu"))


def test_kernel_files_found():
    assert any(p.stem == "selftest" for p in KERNEL_FILES)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("path", KERNEL_FILES, ids=[p.name for p in KERNEL_FILES])
def test_compiles_without_warnings(path, arch):
    source = path.read_text(encoding="utf-8")
    ptx, log = nvrtc.compile_ptx(source, path.name, arch=arch)
    assert "warning" not in log.lower(), f"NVRTC warnings for {path.name} ({arch}):\n{log}"
    assert not log.strip(), f"NVRTC output for {path.name} ({arch}):\n{log}"
    # every extern "C" kernel the emulator knows about is an entry point of the PTX
    for name in parse_signatures(source):
        assert f".entry {name}(" in ptx, f"{name} missing from the PTX of {path.name}"


def test_error_raises_with_log():
    src = 'extern "C" __global__ void k(float* y) { y[0] = not_declared; }'
    with pytest.raises(nvrtc.NvrtcError, match="not_declared") as err:
        nvrtc.compile_ptx(src, "broken.cu")
    assert "error" in err.value.log


def test_warning_is_reported_in_log():
    src = 'extern "C" __global__ void k(float* y) { int unused; y[0] = 1.0f; }'
    _, log = nvrtc.compile_ptx(src, "warns.cu")
    assert "warning" in log
