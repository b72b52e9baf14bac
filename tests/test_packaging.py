"""An installed, non-editable copy of rawgan finds the CUDA sources of kernels/ (package data)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip()[-300:]}")
    return next(out.glob("rawgan-*.whl"))


def test_wheel_ships_every_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh")]
    assert len(sources) >= 8
    missing = [s for s in sources if f"rawgan/kernels/{s}" not in names]
    assert not missing
    assert "rawgan/runtime/cuda_emu.h" in names and "rawgan/runtime/selftest.cu" in names


def test_installed_copy_reads_its_own_kernels(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    code = ("import rawgan.runtime.sources as s; d = s.kernel_dir(); print(d); "
            "print(len(s.read_kernel_source('conv')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True)
    kdir, n = r.stdout.split()
    assert Path(kdir).resolve().is_relative_to(site.resolve())
    assert int(n) == len((ROOT / "kernels" / "conv.cu").read_text())
