"""Registers, spills, local and shared memory of every kernel, from ``ptxas -v`` (no GPU needed).

The PTX comes from our NVRTC helper (:mod:`rawgan.runtime.nvrtc`, the same options as the
runtime's ``cupy.RawModule``); ``ptxas`` comes from the pip wheel ``nvidia-cuda-nvcc-cu12``
(``nvidia/cuda_nvcc/bin/ptxas``), ``$RAWGAN_PTXAS``, or ``ptxas`` on ``PATH``.

    rows = kernel_resources("batchnorm", arch="sm_90")   # [KernelResources(...), ...]

``ptxas -v`` prints, per entry function (ptxas 12.x wording)::

    ptxas info    : Compiling entry function 'batchnorm_backward' for 'sm_90'
    ptxas info    : Function properties for batchnorm_backward
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 29 registers, used 1 barriers, 128 bytes smem

(``N bytes lmem`` and ``N bytes cmem[k]`` appear on the "Used" line when non-zero). Kernels must
have no spills and no local memory (stack frame or lmem): ``tests/test_ptxas.py`` enforces it and
``bench/ptxas_report.py`` writes the table in ``kernels/README.md``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .nvrtc import compile_ptx
from .sources import read_kernel_source


class PtxasUnavailable(FileNotFoundError):
    """No ptxas executable found (install ``nvidia-cuda-nvcc-cu12``)."""


@dataclass(frozen=True)
class KernelResources:
    """One entry function's resources as ptxas reports them (bytes unless stated)."""
    file: str            # kernel file stem, e.g. "batchnorm"
    name: str            # entry function
    registers: int       # per thread
    barriers: int        # named barriers used (0 or 1 for __syncthreads)
    smem: int            # static shared memory per block (dynamic shared memory is not included)
    stack: int           # stack frame per thread (local memory)
    spill_stores: int
    spill_loads: int
    lmem: int            # local memory per thread reported on the "Used" line

    @property
    def clean(self) -> bool:
        """No spill, no stack frame, no local memory."""
        return not (self.spill_stores or self.spill_loads or self.stack or self.lmem)


def find_ptxas() -> str:
    """Path of ptxas: ``$RAWGAN_PTXAS``, the nvidia-cuda-nvcc wheel, or PATH."""
    if os.environ.get("RAWGAN_PTXAS"):
        return os.environ["RAWGAN_PTXAS"]
    try:
        import nvidia.cuda_nvcc as pkg  # namespace package of the pip wheel

        for root in pkg.__path__:
            exe = Path(root) / "bin" / "ptxas"
            if exe.is_file():
                return str(exe)
    except ImportError:
        pass
    exe = shutil.which("ptxas")
    if exe:
        return exe
    raise PtxasUnavailable("ptxas not found; pip install nvidia-cuda-nvcc-cu12 (or set $RAWGAN_PTXAS)")


def ptxas_version(ptxas: str | None = None) -> str:
    """The release line of ``ptxas --version``, e.g. 'Cuda compilation tools, release 12.9, V12.9.86'."""
    out = subprocess.run([ptxas or find_ptxas(), "--version"], capture_output=True, text=True,
                         check=True).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[-1].strip() if lines else out.strip().splitlines()[-1]


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_BAR = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")
_LMEM = re.compile(r"(\d+) bytes lmem")


def parse_ptxas_log(log: str, file: str = "") -> list[KernelResources]:
    """``ptxas -v`` output -> one :class:`KernelResources` per entry function, in log order.

    Raises ValueError if an entry has no "Used N registers" line (an unexpected ptxas format).
    """
    rows, cur = [], None

    def close():
        if cur is None:
            return
        if "registers" not in cur:
            raise ValueError(f"ptxas -v: no 'Used N registers' line for {cur['name']}:\n{log}")
        rows.append(KernelResources(file=file, **cur))

    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            close()
            cur = dict(name=m.group(1), barriers=0, smem=0, stack=0, spill_stores=0,
                       spill_loads=0, lmem=0)      # "registers" comes from the "Used" line
            continue
        if cur is None:
            continue
        m = _PROPS.search(line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(g) for g in m.groups())
        m = _USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            for rx, key in ((_BAR, "barriers"), (_SMEM, "smem"), (_LMEM, "lmem")):
                mm = rx.search(line)
                if mm:
                    cur[key] = int(mm.group(1))
    close()
    return rows


def run_ptxas(ptx: str, arch: str = "sm_90", ptxas: str | None = None) -> str:
    """``ptxas -v -arch=<arch>`` on a PTX text; returns its log. Raises RuntimeError on failure."""
    exe = ptxas or find_ptxas()
    with tempfile.TemporaryDirectory(prefix="rawgan_ptxas_") as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        proc = subprocess.run([exe, "-v", f"-arch={arch}", str(src), "-o", str(out)],
                              capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed (exit {proc.returncode}):\n{log}")
    return log


def kernel_resources(stem: str, arch: str = "sm_90", source: str | None = None,
                     ptxas: str | None = None) -> list[KernelResources]:
    """Resources of every entry function of kernels/<stem>.cu (or ``source``) for ``arch``,
    sorted by name. NVRTC compiles the PTX, ptxas assembles it."""
    source = read_kernel_source(stem) if source is None else source
    ptx, _ = compile_ptx(source, f"{stem}.cu", arch=arch)
    rows = parse_ptxas_log(run_ptxas(ptx, arch, ptxas), file=stem)
    return sorted(rows, key=lambda r: r.name)
