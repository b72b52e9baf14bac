"""The CUDA emulator runs rawgan/runtime/selftest.cu with real CUDA semantics (and catches broken kernels)."""
import os
import time

import numpy as np
import pytest

from rawgan.runtime.emulator import CompileError, EmulatedModule, EmulatorError
from rawgan.runtime.runtime import ceil_div, get_runtime
from rawgan.runtime.sources import parse_signatures, read_kernel_source

SCHEDULES = ["forward", "reverse"]


@pytest.fixture(scope="module")
def mod():
    return EmulatedModule("selftest")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n,block", [(1, 32), (1000, 128), (4099, 96)])
def test_saxpy_grid_stride(mod, rng, schedule, n, block):
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    expect = np.float32(0.5) * x + y
    mod.get_function("saxpy")(3, block, (x, y, 0.5, n), schedule=schedule)  # 3 blocks < needed
    np.testing.assert_allclose(y, expect, rtol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n,grid", [(1, 1), (255, 1), (1000, 3), (70001, 17)])
def test_block_sum_shared_memory(mod, rng, schedule, n, grid):
    x = rng.random(n, dtype=np.float32)
    partial = np.zeros(grid, np.float32)
    mod.get_function("block_sum")(grid, 256, (x, partial, n), schedule=schedule)
    np.testing.assert_allclose(partial.sum(dtype=np.float64), x.sum(dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n,grid,block", [(1, 1, 32), (1000, 2, 64), (70001, 5, 1024)])
def test_warp_shuffle_sum(mod, rng, schedule, n, grid, block):
    x = rng.random(n, dtype=np.float32)
    partial = np.zeros(grid, np.float64)
    mod.get_function("warp_sum")(grid, block, (x, partial, n), schedule=schedule)
    np.testing.assert_allclose(partial.sum(), x.astype(np.float64).sum(), rtol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n,block", [(1, 64), (100, 64), (1001, 200)])
def test_dynamic_shared_memory(mod, rng, schedule, n, block):
    x = rng.standard_normal(n).astype(np.float32)
    y = np.full(n, np.nan, np.float32)
    mod.get_function("reverse_chunks")(ceil_div(n, block), block, (x, y, n), shared_mem=block * 4,
                                       schedule=schedule)
    expect = np.concatenate([x[s:s + block][::-1] for s in range(0, n, block)])
    np.testing.assert_array_equal(y, expect)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_atomic_add_across_blocks(mod, rng, schedule):
    n, nbins = 5003, 7
    x = rng.random(n, dtype=np.float32)
    bins = rng.integers(0, nbins, n).astype(np.int32)
    total = np.zeros(1, np.float64)
    counts = np.zeros(nbins, np.uint32)
    mod.get_function("atomic_accumulate")(ceil_div(n, 128), 128, (x, bins, total, counts, n),
                                          schedule=schedule)
    np.testing.assert_allclose(total[0], x.astype(np.float64).sum(), rtol=1e-12)
    np.testing.assert_array_equal(counts, np.bincount(bins, minlength=nbins))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("h,w,by", [(1, 1, 8), (33, 70, 8), (100, 31, 32)])
def test_2d_grid_transpose(mod, rng, schedule, h, w, by):
    a = rng.standard_normal((h, w)).astype(np.float32)
    out = np.zeros((w, h), np.float32)
    mod.get_function("transpose")((ceil_div(w, 32), ceil_div(h, 32)), (32, by), (a, out, h, w),
                                  schedule=schedule)
    np.testing.assert_array_equal(out, a.T)


@pytest.mark.parametrize("grid,block", [((3,), (5,)), ((2, 3), (4, 5)), ((2, 3, 4), (3, 2, 5))])
def test_3d_indexing(mod, grid, block):
    total = int(np.prod(grid) * np.prod(block))
    ids = np.zeros(total, np.uint32)
    mod.get_function("write_ids")(grid, block, (ids, total))
    np.testing.assert_array_equal(ids, np.arange(total, dtype=np.uint32))


def test_math_intrinsics(mod, rng):
    n = 300
    x = (rng.random(n) * 4 + 0.1).astype(np.float32)
    out = np.zeros(n, np.float32)
    mod.get_function("math_mix")(ceil_div(n, 256), 256, (x, out, n))
    v = x.astype(np.float64)
    i = np.arange(n)
    r = np.exp(-v) + np.log(v) + np.log1p(v) + np.tanh(v) + np.sqrt(v) + 1 / np.sqrt(v)
    r += np.maximum(v, 0.5) - np.minimum(v, 0.5) + v + np.exp(-v) + np.log(v) + v / 3
    r += np.cos(v) + np.sin(v) + np.rint(v) + np.maximum(i % 3, 1) + np.minimum(v, 2.0)
    r += v + 3  # __umulhi(2^31, 6) == 3
    r += np.exp(v) - np.log(v) + np.sqrt(v) + np.tanh(v)
    np.testing.assert_allclose(out, r, rtol=1e-5)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ballot_and_scan_shuffles(mod, rng, schedule):
    n = 100
    x = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.int32)
    mod.get_function("warp_ops")(ceil_div(n, 64), 64, (x, out, n), schedule=schedule)
    pad = np.zeros(ceil_div(n, 32) * 32, bool)
    pad[:n] = x > 0
    warps = pad.reshape(-1, 32)
    expect = (warps.sum(1, keepdims=True) * 1000 + np.cumsum(warps, 1)).ravel()[:n]
    np.testing.assert_array_equal(out, expect)


# ------------------------------------------------------------------------------------------------
# Broken kernels must be caught
# ------------------------------------------------------------------------------------------------

def _block_sum_results(source, n=5000, grid=4):
    x = np.random.default_rng(1).random(n, dtype=np.float32)
    broken = EmulatedModule(source=source)
    results = {}
    for schedule in SCHEDULES:
        partial = np.zeros(grid, np.float32)
        broken.get_function("block_sum")(grid, 256, (x, partial, n), schedule=schedule)
        results[schedule] = partial.sum(dtype=np.float64)
    return results, x.sum(dtype=np.float64)


@pytest.mark.parametrize("which", ["(A)", "(B)"])
def test_missing_syncthreads_is_detected(which):
    source = read_kernel_source("selftest")
    line = f"__syncthreads();  // {which}"
    assert line in source
    results, expect = _block_sum_results(source.replace(line, f"/* removed {which} */"))
    wrong = [s for s, v in results.items() if not np.isclose(v, expect, rtol=1e-4)]
    assert wrong, f"removing __syncthreads {which} went unnoticed: {results} vs {expect}"


def test_divergent_barrier_raises_not_hangs(mod):
    y = np.zeros(64, np.float32)
    with pytest.raises(EmulatorError, match="barrier divergence"):
        mod.get_function("divergent_barrier")(1, 64, (y, 10))
    mod.get_function("divergent_barrier")(1, 64, (y, 0))  # no divergence: fine
    assert (y == 1).all()


def test_divergent_shuffle_raises():
    src = """
    extern "C" __global__ void k(float* y) {
        if (threadIdx.x == 3) return;
        y[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
    }"""
    with pytest.raises(EmulatorError, match="warp collective"):
        EmulatedModule(source=src).get_function("k")(1, 32, (np.zeros(32, np.float32),))


def test_shuffle_from_missing_lane_is_poison():
    # blockDim 40: the second warp has 8 lanes; lane 0 reading lane 16 gets poison (NaN).
    src = """
    extern "C" __global__ void k(float* y) {
        y[threadIdx.x] = __shfl_down_sync(0xffffffffu, (float)threadIdx.x, 16);
    }"""
    y = np.zeros(40, np.float32)
    EmulatedModule(source=src).get_function("k")(1, 40, (y,))
    np.testing.assert_array_equal(y[:16], np.arange(16, 32))
    assert np.isnan(y[32:]).all()


def test_trap_and_assert_raise():
    src = """
    extern "C" __global__ void k(int* y, int bad) {
        assert(threadIdx.x != (unsigned)bad);
        y[threadIdx.x] = 1;
    }"""
    k = EmulatedModule(source=src).get_function("k")
    y = np.zeros(8, np.int32)
    k(1, 8, (y, -1))
    with pytest.raises(EmulatorError, match=r"thread \(5,0,0\).*assertion failed"):
        k(1, 8, (y, 5))


def test_uninitialised_shared_reads_nan():
    src = """
    extern "C" __global__ void k(float* y) {
        __shared__ float s[64];
        if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
        __syncthreads();
        y[threadIdx.x] = s[threadIdx.x];
    }"""
    y = np.zeros(64, np.float32)
    EmulatedModule(source=src).get_function("k")(1, 64, (y,))
    assert (y[:32] == 1).all() and np.isnan(y[32:]).all()


# ------------------------------------------------------------------------------------------------
# Argument and launch checking
# ------------------------------------------------------------------------------------------------

def test_signature_parsing():
    sigs = parse_signatures(read_kernel_source("selftest"))
    p = sigs["saxpy"].params
    assert [(q.name, q.ctype, q.pointer, q.const) for q in p] == [
        ("x", "float", True, True), ("y", "float", True, False), ("a", "float", False, False),
        ("n", "int", False, False)]
    assert sigs["atomic_accumulate"].params[3].dtype == np.uint32


@pytest.mark.parametrize("args,match", [
    ((np.zeros(4, np.float64), np.zeros(4, np.float32), 1.0, 4), r"argument 0 \(const float\* x\): expected dtype float32"),
    ((np.zeros(4, np.float32), np.zeros(8, np.float32)[::2], 1.0, 4), "C-contiguous"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), np.float64(1.0), 4), "expected a float32 scalar"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 4.0), "Python float for an integer"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 2**40), "out of range"),
    ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0), "expected 4 arguments"),
    ((np.zeros(4, np.float32), [0.0] * 4, 1.0, 4), "expected a numpy.ndarray"),
])
def test_argument_type_errors(mod, args, match):
    with pytest.raises(TypeError, match=match) as err:
        mod.get_function("saxpy")(1, 32, args)
    assert "kernel saxpy" in str(err.value)


def test_readonly_array_for_non_const_pointer(mod):
    y = np.zeros(4, np.float32)
    y.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        mod.get_function("saxpy")(1, 32, (np.zeros(4, np.float32), y, 1.0, 4))


@pytest.mark.parametrize("grid,block,shared,match", [
    (1, 1025, 0, r"block.x = 1025"),
    (1, (32, 32, 2), 0, "more than 1024 threads"),
    (0, 32, 0, r"grid.x = 0"),
    ((1, 70000), 32, 0, r"grid.y = 70000"),
    (1, (1, 1, 65), 0, r"block.z = 65"),
    (1, 32, 49 * 1024, "shared_mem"),
    (1, 32, -1, "shared_mem"),
    ((1, 2, 3, 4), 32, 0, "1-3 ints"),
])
def test_launch_config_errors(mod, grid, block, shared, match):
    with pytest.raises(ValueError, match=match):
        mod.get_function("saxpy")(grid, block, (np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 4),
                                  shared_mem=shared)


def test_opt_in_dynamic_shared_memory(mod):
    k = EmulatedModule("selftest").get_function("reverse_chunks")
    n = 1024
    x = np.arange(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    with pytest.raises(ValueError, match="shared_mem"):
        k(1, 1024, (x, y, n), shared_mem=100 * 1024)
    k.max_dynamic_shared_size_bytes = 100 * 1024
    k(1, 1024, (x, y, n), shared_mem=100 * 1024)
    np.testing.assert_array_equal(y, x[::-1])


def test_unknown_kernel_and_compile_error(mod):
    with pytest.raises(AttributeError, match="no_such_kernel"):
        mod.get_function("no_such_kernel")
    with pytest.raises(CompileError, match="undeclared|not declared"):
        EmulatedModule(source='extern "C" __global__ void k(float* y) { y[0] = undeclared_thing; }')


def test_runtime_emulated_module_cached():
    rt = get_runtime("emulated")
    assert rt.kind == "emulated"
    assert rt.module("selftest") is rt.module("selftest")
    x = rt.xp.ones(10, rt.xp.float32)
    y = rt.xp.zeros(10, rt.xp.float32)
    rt.module("selftest").get_function("saxpy")(1, 32, (x, y, 2, 10))
    rt.synchronize()
    assert (y.get() == 2).all()
    with pytest.raises(TypeError, match="expected a device array .cupy.ndarray., got numpy.ndarray"):
        rt.module("selftest").get_function("saxpy")(1, 32, (np.ones(10, np.float32), y, 2, 10))


def test_throughput_report(mod, capsys):
    """Not a benchmark gate: prints emulated threads/second for the record (-s to see)."""
    n = 1 << 20
    x = np.ones(n, np.float32)
    y = np.zeros(n, np.float32)
    k = mod.get_function("saxpy")
    k(ceil_div(n, 256), 256, (x, y, 1.0, n))
    t = time.perf_counter()
    k(ceil_div(n, 256), 256, (x, y, 1.0, n))
    elementwise = n / (time.perf_counter() - t)
    grid = ceil_div(n, 256)
    partial = np.zeros(grid, np.float64)
    t = time.perf_counter()
    mod.get_function("warp_sum")(grid, 256, (x, partial, n))
    reduction = n / (time.perf_counter() - t)
    assert partial.sum() == n
    with capsys.disabled():
        print(f"\n[emulator] elementwise {elementwise / 1e6:.1f} M threads/s, "
              f"warp+block reduction {reduction / 1e6:.1f} M threads/s")


def test_schedule_from_module_attribute_and_env(monkeypatch):
    m = EmulatedModule("selftest")
    assert m.schedule is None
    with pytest.raises(ValueError, match="schedule"):
        m.get_function("saxpy")(1, 32, (np.zeros(1, np.float32), np.zeros(1, np.float32), 1.0, 1),
                                schedule="sideways")
    monkeypatch.setenv("RAWGAN_EMU_SCHEDULE", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        m.get_function("saxpy")(1, 32, (np.zeros(1, np.float32), np.zeros(1, np.float32), 1.0, 1))
    m.schedule = "reverse"  # the module attribute wins over the environment
    m.get_function("saxpy")(1, 32, (np.zeros(1, np.float32), np.zeros(1, np.float32), 1.0, 1))


def test_aligned_dynamic_shared_and_file_scope_rejected():
    src = """
    extern "C" __global__ void k(double* y) {
        extern __shared__ __align__(16) double buf[];
        buf[threadIdx.x] = 2.0 * threadIdx.x;
        __syncthreads();
        y[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
    }"""
    y = np.zeros(48, np.float64)
    EmulatedModule(source=src).get_function("k")(1, 48, (y,), shared_mem=48 * 8, schedule="reverse")
    np.testing.assert_array_equal(y, 2.0 * np.arange(48)[::-1])
    with pytest.raises(CompileError, match="inside the kernel body"):
        EmulatedModule(source='extern __shared__ float s[];\nextern "C" __global__ void k(float* y) { y[0] = s[0]; }')


def test_undersized_dynamic_shared_memory_is_an_error(mod, rng):
    """A launch whose shared_mem is smaller than what the kernel indexes must not corrupt the
    Python heap: the guard zone after the buffer catches the overrun."""
    x = rng.standard_normal(256).astype(np.float32)
    y = np.zeros(256, np.float32)
    k = mod.get_function("reverse_chunks")
    with pytest.raises(EmulatorError, match=r"wrote past its dynamic shared memory \(shared_mem=64"):
        k(1, 256, (x, y, 256), shared_mem=64)
    k(1, 256, (x, y, 256), shared_mem=256 * 4)                 # the right size still works
    np.testing.assert_array_equal(y, x[::-1])


def test_launch_argument_forms():
    with pytest.raises(ValueError, match="grid must be an int or a tuple of 1-3 ints, got 1.0"):
        EmulatedModule("selftest").get_function("reverse_chunks")(
            1.0, 32, (np.zeros(1, np.float32), np.zeros(1, np.float32), 1))
    with pytest.raises(ValueError, match="give a kernel file name or source="):
        EmulatedModule()
