"""Finding kernel sources and reading their ``extern "C" __global__`` signatures.

Kernel files live in the repository's top-level ``kernels/`` folder, which setup.py installs as
the package ``rawgan.kernels``; :func:`kernel_dir` finds either.

Both launchers (real CuPy and the CPU emulator) call kernels with the same ``args`` tuple, and
both check that tuple against the kernel's declared parameters with :func:`pack_args` first.
That matters on the GPU too: ``cupy.RawKernel`` passes a Python ``float`` as a C ``double`` and a
Python ``int`` as a 64-bit integer whatever the kernel declares, which silently corrupts a
kernel that takes ``float``/``int``. Here a Python scalar is converted to the declared type and
a NumPy scalar or array of the wrong dtype is a ``TypeError`` naming kernel and parameter.

Parameter types a kernel may declare (``const`` and ``__restrict__`` allowed on pointers)::

    float  double  int  unsigned int  long long  unsigned long long  unsigned char
    (also the spellings unsigned, int32_t, uint32_t, int64_t, uint64_t, size_t, uint8_t)
    and a pointer to any of those, e.g. ``const float* __restrict__ x``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# C type spelling -> NumPy dtype. The keys are normalised spellings (single spaces).
C_TYPES: dict[str, np.dtype] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "int": np.dtype(np.int32),
    "int32_t": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "unsigned": np.dtype(np.uint32),
    "uint32_t": np.dtype(np.uint32),
    "long long": np.dtype(np.int64),
    "long long int": np.dtype(np.int64),
    "int64_t": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "unsigned long long int": np.dtype(np.uint64),
    "uint64_t": np.dtype(np.uint64),
    "size_t": np.dtype(np.uint64),
    "unsigned char": np.dtype(np.uint8),
    "uint8_t": np.dtype(np.uint8),
}


def kernel_dir() -> Path:
    """The folder holding the ``*.cu`` files: the installed ``rawgan.kernels`` package, or
    ``<repo>/kernels`` when running from a source checkout without installing."""
    try:
        from importlib.resources import files

        path = Path(str(files("rawgan.kernels")))
        if path.is_dir():
            return path
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "kernels"


#: The emulator's own test kernels (``selftest.cu``) live beside it, not among the model's kernels.
TOOLS_DIR = Path(__file__).resolve().parent


def kernel_path(name: str) -> Path:
    """Path of ``kernels/<name>.cu``, else of ``rawgan/runtime/<name>.cu`` (the emulator's
    ``selftest``); the former when neither exists."""
    path = kernel_dir() / f"{name}.cu"
    if not path.is_file() and (TOOLS_DIR / f"{name}.cu").is_file():
        return TOOLS_DIR / f"{name}.cu"
    return path


def read_kernel_source(name: str) -> str:
    """The text of ``kernels/<name>.cu`` (see :func:`kernel_path`); ``FileNotFoundError`` lists
    the available names."""
    path = kernel_path(name)
    if not path.is_file():
        have = sorted(p.stem for p in [*kernel_dir().glob("*.cu"), *TOOLS_DIR.glob("*.cu")])
        raise FileNotFoundError(f"no kernel file {path} (available: {', '.join(have) or 'none'})")
    return path.read_text(encoding="utf-8")


def headers_digest() -> str:
    """Hash of every ``kernels/*.cuh`` header, for compile caches (a .cu may include them)."""
    h = hashlib.sha256()
    for p in sorted(kernel_dir().glob("*.cuh")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One kernel parameter. ``dtype`` is the scalar type, or the pointee type if ``pointer``."""

    name: str
    ctype: str  # normalised C spelling of the scalar / pointee type, e.g. "float"
    dtype: np.dtype
    pointer: bool
    const: bool  # pointee is const (read-only)

    def decl(self) -> str:
        if self.pointer:
            return f"{'const ' if self.const else ''}{self.ctype}*"
        return self.ctype


@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[Param, ...]


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_KERNEL = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)"
)


def strip_comments(source: str) -> str:
    """Replace comments by spaces/newlines of the same shape (keeps line numbers)."""
    return _COMMENTS.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)


def _parse_param(kernel: str, text: str) -> Param:
    text = " ".join(text.replace("*", " * ").split())
    words = text.split(" ")
    if len(words) < 2:
        raise ValueError(f"kernel {kernel}: cannot parse parameter {text!r} (unnamed?)")
    name, words = words[-1], words[:-1]
    pointer = words.count("*")
    if pointer > 1:
        raise ValueError(f"kernel {kernel}: parameter {name}: pointers to pointers are not supported")
    const = "const" in words[: words.index("*")] if pointer else False
    base = [w for w in words if w not in ("const", "*", "__restrict__", "__restrict", "volatile")]
    ctype = " ".join(base)
    if ctype not in C_TYPES:
        raise ValueError(
            f"kernel {kernel}: parameter {name} has unsupported type {text!r}; allowed: "
            f"{', '.join(sorted(set(C_TYPES)))} or pointers to them"
        )
    return Param(name, ctype, C_TYPES[ctype], bool(pointer), const)


def parse_signatures(source: str) -> dict[str, KernelSignature]:
    """All ``extern "C" __global__ void name(...)`` kernels of a source, by name."""
    out: dict[str, KernelSignature] = {}
    for m in _KERNEL.finditer(strip_comments(source)):
        name, plist = m.group(1), m.group(2).strip()
        params = () if plist in ("", "void") else tuple(_parse_param(name, p) for p in plist.split(","))
        out[name] = KernelSignature(name, params)
    return out


# ---------------------------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------------------------

def pack_args(sig: KernelSignature, args: tuple, array_type: type) -> list:
    """Check ``args`` against ``sig``; return them with scalars converted to NumPy scalars of the
    declared type. Arrays must be ``array_type`` (cupy.ndarray, the emulator's DeviceArray, or
    numpy.ndarray for the emulator's own harness), C-contiguous and of the declared dtype.
    ``None`` passes a null pointer. Only the attributes CuPy arrays have are used here (CuPy's
    ``flags`` has no ``writeable``: the emulator checks that for host NumPy arrays itself)."""
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"kernel {sig.name}: args must be a tuple, got {type(args).__name__}")
    if len(args) != len(sig.params):
        raise TypeError(
            f"kernel {sig.name}: expected {len(sig.params)} arguments "
            f"({', '.join(p.decl() + ' ' + p.name for p in sig.params)}), got {len(args)}"
        )
    out = []
    for i, (p, a) in enumerate(zip(sig.params, args)):
        where = f"kernel {sig.name}: argument {i} ({p.decl()} {p.name})"
        if p.pointer:
            if a is None:
                out.append(None)
                continue
            if not isinstance(a, array_type):
                kind = "numpy.ndarray" if array_type is np.ndarray else "device array (cupy.ndarray)"
                raise TypeError(f"{where}: expected a {kind}, got {type(a).__module__}."
                                f"{type(a).__name__}")
            if a.dtype != p.dtype:
                raise TypeError(f"{where}: expected dtype {p.dtype}, got {a.dtype}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{where}: array must be C-contiguous")
            out.append(a)
        elif isinstance(a, np.generic):
            if a.dtype != p.dtype:
                raise TypeError(f"{where}: expected a {p.dtype} scalar, got {a.dtype}")
            out.append(a)
        elif isinstance(a, bool) or not isinstance(a, (int, float)):
            raise TypeError(f"{where}: expected a scalar, got {type(a).__name__}")
        elif isinstance(a, float) and p.dtype.kind != "f":
            raise TypeError(f"{where}: got a Python float for an integer parameter")
        else:
            if p.dtype.kind in "iu":
                info = np.iinfo(p.dtype)
                if not info.min <= a <= info.max:
                    raise TypeError(f"{where}: value {a} out of range for {p.ctype}")
            out.append(p.dtype.type(a))
    return out


@lru_cache(maxsize=None)
def _signatures_cached(source: str) -> dict[str, KernelSignature]:
    return parse_signatures(source)


def signature(source: str, name: str) -> KernelSignature:
    """The signature of kernel ``name`` in ``source``; ``AttributeError`` if there is none."""
    sigs = _signatures_cached(source)
    if name not in sigs:
        raise AttributeError(
            f'no extern "C" __global__ kernel named {name!r} (have: {", ".join(sorted(sigs)) or "none"})'
        )
    return sigs[name]
