"""bench/kernels/*.py (llm.c dev/cuda style): every version of every kernel checks out against the
NumPy reference in the emulator at the files' fast sizes; the shared harness reports a wrong
version as a failure."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

KDIR = Path(__file__).resolve().parents[1] / "bench" / "kernels"
FAMILIES = sorted(p.stem for p in KDIR.glob("*.py") if p.stem != "harness")
sys.path.insert(0, str(KDIR))
import harness  # noqa: E402


def load(stem):
    spec = importlib.util.spec_from_file_location(f"bench_kernels_{stem}", KDIR / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_file_per_kernel_family():
    assert FAMILIES == ["activations", "adam", "batchnorm", "bias", "conv", "loss", "pad", "rng",
                        "tensor"]


@pytest.mark.parametrize("stem", FAMILIES)
def test_every_version_checks_in_emulation(stem, capsys):
    mod = load(stem)
    assert harness.run_family(stem, mod.KERNELS, ["--emulated", "--check-only"]) == 0
    out = capsys.readouterr().out
    runs = [(v, c) for k in mod.KERNELS for c in k.cases(True) for v in k.versions]
    expected = sum(v.applies is None or v.applies(**c.inputs) for v, c in runs)
    assert out.count(": ok (max abs err") == expected and "FAIL" not in out
    assert out.count("not applicable to this case") == len(runs) - expected
    assert out.strip().endswith(f"{stem}: all checks passed on the emulator")
    assert all(k.versions[0].number == 1 for k in mod.KERNELS)         # llm.c numbering


def test_harness_reports_a_wrong_version_and_times_the_right_one(capsys):
    cases = lambda fast: [harness.Case("5", {"x": np.arange(5, dtype=np.float32)}, nbytes=40)]  # noqa: E731
    good = harness.Version(1, "good", lambda rt, x: (x * 2,))
    bad = harness.Version(2, "bad", lambda rt, x: (x * 2 + 1e-3,))
    k = harness.Kernel("twice", lambda x: (x * 2,), [good, bad], cases, rtol=0, atol=1e-4)
    assert harness.run_family("toy", [k], ["--emulated", "--repeat", "2", "--warmup", "0"]) == 1
    out = capsys.readouterr().out
    assert "check twice v1 (good) [5]: ok (max abs err 0.00e+00)" in out
    assert "check twice v2 (bad) [5]: FAIL (max abs err 1.00e-03)" in out
    assert "time  twice v1 (good) [5]:" in out and "[emulated on the CPU: not a GPU figure]" in out
    assert "time  twice v2" not in out                                  # failed versions are not timed
    assert out.strip().endswith("toy: 1 check(s) FAILED on the emulator")


def test_harness_usage_errors(capsys):
    assert harness.run_family("toy", [], ["--emulated", "--kernel", "nope"]) == 2
    assert "error: --kernel 'nope': toy has" in capsys.readouterr().err
    # a version no kernel has is an error too, not a silent "all checks passed" (review finding)
    bn = load("batchnorm")
    assert harness.run_family("batchnorm", bn.KERNELS, ["--emulated", "--kernel",
                                                        "batchnorm_backward_train", "--version", "9"]) == 2
    assert "error: --version 9: batchnorm_backward_train has versions 1, 2" in capsys.readouterr().err


def test_rate_line_uses_the_h200_peaks():
    k = harness.Kernel("g", None, [], None, tensor_core=True)
    line = harness.rate_line(k, harness.Case("c", {}, nbytes=4.8e9, flops=6.7e10), 0.01, emulated=False)
    assert "480.0 GB/s ( 10.0 % of 4.8 TB/s)" in line
    assert "6.700 TFLOP/s ( 10.0 % of FP32 67,   1.4 % of TF32 495)" in line


def test_cupy_timing_api_exists_in_installed_cupy():
    """harness.time_version on a GPU: cupy.cuda.Event().record()/.synchronize() and
    cupy.cuda.get_elapsed_time(start, end) (milliseconds) — resolved against the installed CuPy."""
    cupy = pytest.importorskip("cupy")
    for name in ("record", "synchronize"):
        assert callable(getattr(cupy.cuda.Event, name))
    assert callable(cupy.cuda.get_elapsed_time)


def test_inline_benchmark_kernels_compile_for_sm90_without_spills():
    """The candidate versions that live only in bench/kernels/ get the same NVRTC + ptxas checks
    as kernels/*.cu."""
    nvrtc = pytest.importorskip("rawgan.runtime.nvrtc")
    from rawgan.runtime import ptxas
    try:
        nvrtc.load_nvrtc()
        exe = ptxas.find_ptxas()
    except (nvrtc.NvrtcUnavailable, ptxas.PtxasUnavailable) as e:
        pytest.skip(str(e))
    sources = {"activations": load("activations").V1_RELU, "bias": load("bias").V3_SOURCE}
    for stem, src in sources.items():
        _, log = nvrtc.compile_ptx(src, f"bench_{stem}.cu", arch="sm_90")
        assert not log.strip(), log
        rows = ptxas.kernel_resources(f"bench_{stem}", "sm_90", source=src, ptxas=exe)
        assert rows and all(r.clean for r in rows), rows


def test_harness_rejects_a_negative_warmup(capsys):
    """--warmup -1 was taken as 0 warm-up runs; like --repeat it is an argparse error now."""
    with pytest.raises(SystemExit) as e:
        harness.run_family("toy", [], ["--emulated", "--warmup", "-1"])
    assert e.value.code == 2
    assert "argument --warmup: must be >= 0, got -1" in capsys.readouterr().err
