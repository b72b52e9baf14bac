"""Registers and shared memory per kernel (``ptxas -v``, sm_90) as the table in kernels/README.md.

    python bench/ptxas_report.py            # print the table
    python bench/ptxas_report.py --write    # replace the table in kernels/README.md
    python bench/ptxas_report.py --check    # exit 1 if kernels/README.md's table is out of date

The table sits between ``<!-- ptxas-table:begin -->`` and ``<!-- ptxas-table:end -->``. Static
shared memory only (a kernel's dynamic ``shared_mem`` is chosen at launch). Spills, stack frames
and local memory must all be 0 (tests/test_ptxas.py fails otherwise), so the table lists them in
one column. Needs the pip wheels nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvcc-cu12, no GPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rawgan.runtime.ptxas import find_ptxas, kernel_resources, ptxas_version  # noqa: E402
from rawgan.runtime.sources import kernel_dir  # noqa: E402

README = ROOT / "kernels" / "README.md"
BEGIN, END = "<!-- ptxas-table:begin -->", "<!-- ptxas-table:end -->"
ARCH = "sm_90"


def kernel_stems() -> list[str]:
    return sorted(p.stem for p in kernel_dir().glob("*.cu"))


def collect(arch: str = ARCH) -> list:
    """KernelResources of every entry function of every kernels/*.cu, by file then name."""
    exe = find_ptxas()
    return [r for stem in kernel_stems() for r in kernel_resources(stem, arch, ptxas=exe)]


def render(rows, release: str, arch: str = ARCH) -> str:
    """The Markdown table (with its header line naming ptxas and the arch)."""
    lines = [f"`ptxas -v -arch={arch}` ({release}) on NVRTC's PTX; written by "
             "`python bench/ptxas_report.py --write`.", "",
             "| file | kernel | registers | static smem (B) | barriers | spill / stack / lmem (B) |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        local = f"{r.spill_stores + r.spill_loads} / {r.stack} / {r.lmem}"
        lines.append(f"| {r.file}.cu | `{r.name}` | {r.registers} | {r.smem} | {r.barriers} | "
                     f"{local} |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced; ValueError if the markers are missing."""
    try:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"{README}: markers {BEGIN} ... {END} not found") from None
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="update kernels/README.md")
    g.add_argument("--check", action="store_true", help="exit 1 if kernels/README.md is stale")
    args = p.parse_args(argv)
    try:
        release = ptxas_version()
        rows = collect()
    except (FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = render(rows, release)
    bad = [r for r in rows if not r.clean]
    for r in bad:
        print(f"error: {r.file}.cu {r.name}: spill stores {r.spill_stores}, spill loads "
              f"{r.spill_loads}, stack {r.stack}, lmem {r.lmem} bytes", file=sys.stderr)
    if args.write or args.check:
        text = README.read_text(encoding="utf-8")
        try:
            new = replace_table(text, table)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.check:
            if new != text:
                print(f"{README} is out of date: run python bench/ptxas_report.py --write",
                      file=sys.stderr)
                return 1
        elif new != text:
            README.write_text(new, encoding="utf-8")
            print(f"wrote {len(rows)} kernels to {README}")
    else:
        print(table)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
