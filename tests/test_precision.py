"""--precision fp32|tf32 (issue 9 item 1): the flag plumbing of bench/train_step.py and
bench/torch_dcgan.py (like with like), and the backend option. The cuBLAS compute type itself is
checked with a stand-in cuBLAS in tests/test_step.py (test_cublas_call_maps_row_major_operands_
to_column_major_gemm_ex, test_rt_gemm_passes_the_runtime_precision_to_cublas); the cuDNN
engine filter in tests/test_cudnn_conv.py; rawgan.train's flag in tests/test_train.py and
tests/test_step.py."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import train_step  # noqa: E402

from rawgan.backend import get_backend  # noqa: E402


def test_bench_precision_defaults_and_refusal():
    def resolve(backend, precision=None):
        return train_step.resolve_precision(SimpleNamespace(backend=backend, precision=precision))

    assert resolve("cupy") == resolve("emulated") == "tf32"         # like training's default
    assert resolve("numpy") == resolve("reference") == "fp32"
    assert resolve("cupy", "fp32") == "fp32" and resolve("numpy", "fp32") == "fp32"
    with pytest.raises(SystemExit, match="--precision tf32 needs --backend cupy or emulated"):
        resolve("numpy", "tf32")
    assert train_step.precision_option(SimpleNamespace(backend="cupy", precision="tf32")) == \
        {"precision": "tf32"}
    assert train_step.precision_option(SimpleNamespace(backend="numpy", precision="fp32")) == {}


def test_torch_flags_follow_the_precision():
    torch = pytest.importorskip("torch")
    import torch_dcgan

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for precision, allow in (("fp32", False), ("tf32", True), ("fp32", False)):
            flags = torch_dcgan.set_precision(precision)
            assert flags == {"torch.backends.cuda.matmul.allow_tf32": allow,
                             "torch.backends.cudnn.allow_tf32": allow}
            assert torch.backends.cuda.matmul.allow_tf32 is allow
            assert torch.backends.cudnn.allow_tf32 is allow
        with pytest.raises(ValueError, match="precision must be one of"):
            torch_dcgan.set_precision("bf16")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_backend_precision_option_reaches_the_runtime():
    B = get_backend("emulated", precision="tf32")
    try:
        assert B.ops.precision == "tf32"
        assert B.ops.rt.precision == "tf32"
    finally:
        B = get_backend("emulated")                    # the default: fp32 (tests, parity)
    assert B.ops.rt.precision == "fp32" and B.ops.precision == "fp32"
    with pytest.raises(ValueError, match="precision: expected one of"):
        get_backend("emulated", precision="fp16")
    with pytest.raises(ValueError, match="precision applies to the cupy and emulated backends only"):
        get_backend("numpy", precision="tf32")
    assert get_backend("numpy", precision="fp32").name == "numpy"
