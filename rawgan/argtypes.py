"""argparse types shared by the command-line programs: a bad value becomes argparse's one-line
``error: argument --x: must be >= 1, got 0`` (exit 2), never a traceback. Imports nothing heavy
(the CLIs set thread variables before NumPy loads)."""
import argparse
import math


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def nonnegative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    """A finite float > 0 (rejects 0, negatives, nan and inf)."""
    v = finite_float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def finite_float(text: str) -> float:
    """Any finite float (rejects nan and inf)."""
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v
