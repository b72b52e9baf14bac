"""What the command-line programs share: argparse types (a bad value becomes argparse's one-line
``error: argument --x: must be >= 1, got 0``, exit 2, never a traceback) and :func:`run_cli`, the
exit-code convention (2 for a known error, 128 + N for signal N: 130 Ctrl-C, 143 SIGTERM). Imports nothing heavy (the CLIs set
thread variables before NumPy loads)."""
import argparse
import contextlib
import math
import os
import signal
import sys


def run_cli(body, errors: tuple) -> int:
    """Run ``body()``; an exception of ``errors`` prints ``error: <message>`` on stderr and gives
    exit status 2; Ctrl-C (or a SIGTERM/SIGHUP that data preparation turned into a
    KeyboardInterrupt naming it) prints ``interrupted (SIGNAME)`` and gives 128 + the signal's
    number; otherwise 0."""
    try:
        body()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (stop_signals_interrupt)
        return interrupted_exit(e)
    return 0


def interrupted_exit(e: KeyboardInterrupt, detail: str = "") -> int:
    """Print ``interrupted (SIGNAME)<detail>`` on stderr; return 128 + the signal's number. The
    signal is the one :func:`stop_signals_interrupt` named in ``e``, else SIGINT (Ctrl-C)."""
    name = e.args[0] if e.args and e.args[0] in ("SIGTERM", "SIGHUP") else "SIGINT"
    print(f"interrupted ({name}){detail}", file=sys.stderr)
    return 128 + int(getattr(signal, name))


@contextlib.contextmanager
def stop_signals_interrupt():
    """Inside the block, SIGTERM and SIGHUP whose handler is the default (which would end the
    process at once: no message, worker processes orphaned, files half written) raise
    KeyboardInterrupt naming the signal instead, so cleanup runs and :func:`interrupted_exit`
    reports it. Handlers a caller installed (rawgan.train's) are left alone; outside the main
    thread nothing changes. A forked child that inherits the handler before resetting its own
    (a decoding worker) exits quietly with 128 + N."""
    old, pid = {}, os.getpid()

    def stop(signum, frame):
        if os.getpid() != pid:
            os._exit(128 + signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)
    try:
        for s in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) == signal.SIG_DFL:
                old[s] = signal.signal(s, stop)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


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
