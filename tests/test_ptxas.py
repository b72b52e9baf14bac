"""``ptxas -v`` for sm_90 on every kernel: no register spill, no stack frame, no local memory; and
the registers/shared-memory table in kernels/README.md matches (bench/ptxas_report.py writes it).

Needs NVRTC (nvidia-cuda-nvrtc-cu12) and ptxas (nvidia-cuda-nvcc-cu12), both pip wheels of the
``test`` extra; no GPU. Skips with the reason when either is missing.
"""
import re
import sys
from pathlib import Path

import pytest

from rawgan.runtime.sources import kernel_dir

nvrtc = pytest.importorskip("rawgan.runtime.nvrtc")
from rawgan.runtime import ptxas  # noqa: E402

try:
    nvrtc.load_nvrtc()
    PTXAS = ptxas.find_ptxas()
except (nvrtc.NvrtcUnavailable, ptxas.PtxasUnavailable) as e:  # pragma: no cover - machine
    pytest.skip(f"NVRTC or ptxas not installed: {e}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import ptxas_report  # noqa: E402

STEMS = sorted(p.stem for p in kernel_dir().glob("*.cu"))


@pytest.fixture(scope="module")
def resources():
    return {stem: ptxas.kernel_resources(stem, "sm_90", ptxas=PTXAS) for stem in STEMS}


@pytest.mark.parametrize("stem", STEMS)
def test_no_spill_or_local_memory(resources, stem):
    rows = resources[stem]
    signatures = set(re.findall(r'extern "C" __global__ void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)',
                                (kernel_dir() / f"{stem}.cu").read_text()))
    assert {r.name for r in rows} == signatures           # every entry point was assembled
    for r in rows:
        assert r.clean, (f"{stem}.cu {r.name}: spill stores {r.spill_stores} B, spill loads "
                         f"{r.spill_loads} B, stack frame {r.stack} B, lmem {r.lmem} B")
        assert 0 < r.registers <= 255


def test_local_memory_is_caught():
    """A dynamically indexed per-thread array lives in local memory: the check must see it."""
    src = r'''
extern "C" __global__ void uses_local(const int* __restrict__ idx, float* __restrict__ y, int n)
{
    float a[64];
    for (int k = 0; k < 64; ++k) { a[k] = 0.0f; }
    for (int k = 0; k < n; ++k) { a[idx[k] & 63] += 1.0f; }     // data-dependent scatter
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { y[i] = a[idx[i] & 63]; }
}
'''
    (row,) = ptxas.kernel_resources("uses_local", "sm_90", source=src, ptxas=PTXAS)
    assert row.name == "uses_local" and row.stack >= 256 and not row.clean


def test_parse_ptxas_log_reads_spills_smem_and_lmem():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k1' for 'sm_90'
ptxas info    : Function properties for k1
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 24 bytes lmem, 4096 bytes smem, 384 bytes cmem[0]
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers
"""
    k1, k2 = ptxas.parse_ptxas_log(log, file="f")
    assert (k1.name, k1.registers, k1.barriers, k1.smem, k1.stack, k1.spill_stores,
            k1.spill_loads, k1.lmem) == ("k1", 255, 1, 4096, 16, 8, 12, 24)
    assert not k1.clean
    assert (k2.name, k2.registers, k2.smem, k2.clean, k2.file) == ("k2", 12, 0, True, "f")
    with pytest.raises(ValueError, match="no 'Used N registers' line for k3"):
        ptxas.parse_ptxas_log("ptxas info : Compiling entry function 'k3' for 'sm_90'\n")


def test_readme_table_is_current(resources):
    text = (ROOT / "kernels" / "README.md").read_text(encoding="utf-8")
    table = text.split(ptxas_report.BEGIN, 1)[1].split(ptxas_report.END, 1)[0]
    for rows in resources.values():
        for r in rows:
            assert f"| {r.file}.cu | `{r.name}` |" in table, f"{r.name} missing: run bench/ptxas_report.py --write"
    release = ptxas.ptxas_version(PTXAS)
    if release not in table:
        pytest.skip(f"kernels/README.md was written by another ptxas ({release} installed)")
    rows = [r for stem in STEMS for r in resources[stem]]
    assert table.strip() == ptxas_report.render(rows, release).strip(), \
        "kernels/README.md is stale: run python bench/ptxas_report.py --write"
