"""bench/gpu_model.py: the H200 step estimate priced from the launch records of
bench/train_step.py --count (the runtime's records; every launch skipped)."""
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_model  # noqa: E402
import train_step  # noqa: E402

from rawgan.backend import get_backend  # noqa: E402
from rawgan.backend.cuda import batchnorm, common, conv  # noqa: E402
from rawgan.runtime import emulator  # noqa: E402


def run(capsys, *argv, nf=16):
    assert gpu_model.main(["--batch-size", "64", "--nf", str(nf), *argv]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): (int(m.group(2)), float(m.group(5)), float(m.group(6)))
            for m in re.finditer(r"^(\w[\w ()]*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                                 out, re.M)}
    eager = float(re.search(r"^estimated_eager_ms_fp32=([\d.]+)$", out, re.M).group(1))
    graph = float(re.search(r"^estimated_graph_ms_fp32=([\d.]+)$", out, re.M).group(1))
    return out, rows, eager, graph


def test_estimate_lists_every_family_and_is_labelled(capsys):
    out, rows, eager, graph = run(capsys)
    assert out.startswith("ESTIMATE (a model, not a measurement)")
    assert {"gemm (cuBLAS)", "conv", "batchnorm", "activations", "bias", "adam", "loss"} <= set(rows)
    # one adam_step_dev per network (t and the bias corrections on the device, in the same launch)
    assert rows["adam"][0] == 2
    assert eager > 0 and graph > 0
    # 4 conv + 4 convT layers, a linear each, fprop/dgrad/wgrad where computed, G's forward
    # shared by the D and the G update (DCGAN.reuse_g_forward), D's update in one pass over real
    # + fake (DCGAN.d_one_pass: 14 GEMMs instead of 28): 38 GEMMs at g_steps 1
    assert rows["gemm (cuBLAS)"][0] == 38
    # fp32 vs tf32: only the GEMMs change (the tf32 records carry the TF32 peak)
    assert rows["gemm (cuBLAS)"][2] < rows["gemm (cuBLAS)"][1]
    assert all(r[1] == r[2] for name, r in rows.items() if name != "gemm (cuBLAS)")
    tf32 = float(re.search(r"^estimated_eager_ms_tf32=([\d.]+)$", out, re.M).group(1))
    graph_tf32 = float(re.search(r"^estimated_graph_ms_tf32=([\d.]+)$", out, re.M).group(1))
    assert graph_tf32 < graph and tf32 <= eager      # at nf=16 the eager step is host-bound
    assert float(re.search(r"^estimated_eager_ms=([\d.]+)$", out, re.M).group(1)) == tf32   # default
    assert re.search(r"^launch records per step: eager (\d+), graph \1$", out, re.M)


def test_the_records_are_those_of_count():
    """gpu_model prices exactly the launches --count counts: one record per launch (eager and
    graph), per kernel name as in launches_by_name, with each GEMM's bytes and FLOPs."""
    B = get_backend("emulated", precision="tf32")
    try:
        for mode in ("eager", "graph"):
            r = train_step.count_steps(B, 4, 1, 4, 4, 2, mode)
            assert len(r["records"]) == r["counters"]["launches"] * 2
            names = {}
            for rec in r["records"]:
                names[rec.name] = names.get(rec.name, 0) + 1
            assert names == r["by_name"]
            gemms = [rec for rec in r["records"] if rec.kind == "gemm"]
            assert gemms and all(rec.precision == "tf32" for rec in gemms)
            for rec in gemms:
                a, b, out = (n for n, _ in rec.arrays)
                m_k, k_n, m_n = a // 4, b // 4, out // 4
                assert rec.flops ** 2 == 4.0 * m_k * k_n * m_n         # (2mnk)^2 = 4 (mk)(kn)(mn)
            kernels = [rec for rec in r["records"] if rec.kind == "kernel"]
            assert all(rec.flops == 0 and rec.blocks >= 1 and rec.threads >= 1 for rec in kernels)
        assert "mode=graph per family (launch records): " in _count_output()
    finally:
        get_backend("emulated")


def _count_output():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        train_step.main(["--backend", "emulated", "--count", "--ngf", "4", "--ndf", "4",
                         "--batch-size", "4", "--count-steps", "1", "--precision", "fp32"])
    return buf.getvalue()


def test_one_block_reductions_cost_more_and_state_is_restored(capsys):
    """At the paper's width (ngf = ndf = 64) the 2-D reductions lower the estimate (at small widths
    the eager step is bound by Python launch overhead, and their extra launches cost more)."""
    _, auto, eager, _ = run(capsys, nf=64)
    _, one, eager_one, _ = run(capsys, "--reductions", "one-block", nf=64)
    assert one["batchnorm"][0] < auto["batchnorm"][0]            # fewer launches ...
    assert one["batchnorm"][1] > auto["batchnorm"][1]            # ... but slower
    assert eager_one > eager
    # the recorder put everything back: real launches, the cost model, the emulator's shapes
    assert common.reduction_chunks is batchnorm.reduction_chunks is conv.reduction_chunks
    assert common.reduction_chunks(3, 1 << 18, 4.0 * 3 * (1 << 18), 1) > 1
    assert common.EMULATED_REDUCE_BLOCK == 64
    B = get_backend("emulated")
    assert common.block_cap(B.ops.rt) == 32
    assert emulator.EmulatedKernel.__call__ is not None
    y = B.to_numpy(B.ops.relu_forward(B.asarray(np.array([-1.0, 2.0]))))
    assert y.tolist() == [0.0, 2.0]
    assert "matmul" not in B.xp._cache or B.xp.matmul.__name__ == "matmul"
    assert "gemm" not in vars(B.ops.rt)                          # rt.gemm is the class's again
    assert not B.ops.rt.dry_run and B.ops.rt.precision == "fp32"  # launches run again, fp32


def test_conv_choices_table_prices_every_dcgan_conv_pass(capsys):
    """--conv-choices: 8 convolutions x 3 passes, cuDNN modelled below the im2col kernels at the
    paper's width (no columns in memory), and TF32 below FP32 for both."""
    out, _, _, _ = run(capsys, "--conv-choices", nf=64)
    rows = re.findall(r"^([DG] conv\w*)\s+(fprop|dgrad|wgrad)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"(cudnn|kernels)/(cudnn|kernels)$", out, re.M)
    assert len(rows) == 24 and "ESTIMATE — conv passes" in out
    for _, _, c32, k32, c_tf, k_tf, pick32, pick_tf in rows:
        assert float(c_tf) < float(c32) and float(k_tf) < float(k32)
        assert pick32 == ("cudnn" if float(c32) <= float(k32) else "kernels")
        assert pick_tf == ("cudnn" if float(c_tf) <= float(k_tf) else "kernels")
