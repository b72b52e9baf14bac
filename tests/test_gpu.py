"""The kernel and layer checks of test_kernels.py / test_cuda_backend.py on a real GPU (CuPy).

Skipped, with the reason, unless CuPy is importable and ``cupy.cuda.runtime.getDeviceCount() > 0``.
The tests are imported from the emulator test files and run with the ``dev``/``dut`` fixtures
overridden: ``get_runtime("cupy")`` and ``get_backend("cupy")`` (kernels; test_step.py's
graph-vs-eager, allocation and device-state tests on a real CUDA graph), plus the cuDNN
Frontend convolutions against our kernels when the ``cudnn`` package is installed.
Run on a GPU machine: ``pytest tests/test_gpu.py`` (bench/gpu_check.sh does it).
"""
import warnings

import numpy as np
import pytest


def _gpu_reason():
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install behind it
        return f"CuPy is not importable ({type(e).__name__}: {e})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"CuPy sees no CUDA device ({type(e).__name__}: {e})"
    return None if n > 0 else "CuPy sees no CUDA device (getDeviceCount() == 0)"


_REASON = _gpu_reason()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

from rawgan.backend import get_backend  # noqa: E402
from rawgan.backend import reference as R  # noqa: E402
from rawgan.runtime.runtime import get_runtime  # noqa: E402

from test_kernels import (Device, test_activation_kernels, test_adam_kernel,  # noqa: E402,F401
                          test_batchnorm_block_sizes, test_batchnorm_eval_kernels,
                          test_batchnorm_train_kernels, test_bias_grad_block_sizes, test_bias_kernels,
                          test_broken_reduction_is_caught, test_conv_passes, test_im2col_col2im,
                          test_linear_ops, test_loss_extreme_logits_finite, test_loss_kernels,
                          test_philox_normal, test_philox_uniform_bitwise, test_sigmoid_extreme_logits,
                          test_reductions_2d_batchnorm_match_numpy,
                          test_reductions_2d_bias_grad_match_numpy,
                          test_reductions_2d_are_bit_identical_across_runs_and_schedules,
                          test_reductions_2d_reuse_their_workspace, CONV_CASES)
from test_cuda_backend import (test_activation_layers, test_backend_uniform_normal_match_numpy,  # noqa: E402,F401
                               test_batchnorm_layer, test_conv2d_layer, test_conv_transpose2d_layer,
                               test_dcgan_gradients_match_from_same_state,
                               test_dcgan_loss_trajectory_matches_numpy, test_linear_layer,
                               test_loss_layer, test_ops_have_reference_signatures)
from test_step import (test_a_host_value_frozen_into_the_graph_is_caught,  # noqa: E402,F401
                       test_adam_step_keeps_t_on_the_device_and_matches_reference,
                       test_device_step_matches_the_numpy_backend,
                       test_gemm_takes_transposed_operands_and_checks_shapes,
                       test_graph_steps_are_bit_identical_to_eager_steps,
                       test_philox_next_draws_continue_the_stream_on_the_device,
                       test_steady_state_allocates_nothing_and_a_graph_step_is_one_launch,
                       test_tensor_kernels_match_reference)


@pytest.fixture(scope="module")
def dev():
    return Device(get_runtime("cupy"))


@pytest.fixture(scope="module")
def dut():
    return get_backend("cupy")


@pytest.fixture(autouse=True, params=["gpu"])
def schedule(request):
    """The emulator's schedule fixture has no meaning on a GPU: one run per test."""
    return request.param


def test_backend_is_cupy(dut):
    import cupy

    assert dut.name == "cupy" and dut.xp is cupy and dut.dtype == np.float32
    x = dut.asarray(np.ones((2, 3)))
    assert isinstance(dut.ops.relu_forward(x), cupy.ndarray)


# -- cuDNN Frontend convolutions ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cudnn_backend():
    pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed (pip install .[cudnn])")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        B = get_backend("cupy", conv_impl="cudnn")
    if not B.ops.cudnn.available:
        pytest.skip("cudnn imported but unusable: " + "; ".join(str(c.message) for c in caught))
    B.ops.cudnn.choose = "cudnn"          # test cuDNN itself, not the per-layer choice
    return B


@pytest.mark.parametrize("xs,ws,stride,pad", CONV_CASES + [
    ((8, 64, 32, 32), (128, 64, 5, 5), (2, 2), (1, 2, 1, 2)),   # a DCGAN discriminator layer
])
def test_cudnn_conv_matches_reference(cudnn_backend, xs, ws, stride, pad):
    B = cudnn_backend
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, (ws[0],)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a silent fallback would hide a cuDNN failure
        y = B.ops.conv2d_fprop(B.asarray(x), B.asarray(w), B.asarray(b), stride, pad)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = B.ops.conv2d_dgrad(B.asarray(dy), B.asarray(w), xs, stride, pad)
        dw = B.ops.conv2d_wgrad(B.asarray(dy), B.asarray(x), ws, stride, pad)
    scale = lambda r: 1e-4 * max(1.0, float(np.abs(r).max()))   # cuDNN may pick TF32-free fp32 algos
    for got, ref in ((y, R.conv2d_fprop(x, w, b, stride, pad)), (dx, R.conv2d_dgrad(dy, w, xs, stride, pad)),
                     (dw, R.conv2d_wgrad(dy, x, ws, stride, pad))):
        np.testing.assert_allclose(got.get(), ref, rtol=1e-4, atol=scale(ref))
    assert not B.ops.cudnn.failed


def test_cudnn_dcgan_step_matches_kernels(cudnn_backend):
    from rawgan.models.dcgan import DCGAN

    rng = np.random.default_rng(1)
    x, z = rng.uniform(-1, 1, (8, 3, 64, 64)), rng.uniform(-1, 1, (8, 100))
    losses = []
    for B in (get_backend("cupy"), cudnn_backend):
        model = DCGAN(B, ngf=16, ndf=16, seed=2)
        m = model.d_step(B.asarray(x), B.asarray(z))
        g = model.g_step(B.asarray(z))
        losses.append([float(m["d_loss"]), float(g["g_loss"])])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


# -- precision (issue 9 item 1) ---------------------------------------------------------------------
def test_cublas_constants_match_cupys():
    """The compute-type constants passed to cublasGemmEx are CuPy's own (cupy_backends' cuBLAS
    extension needs libcublas, so this runs on the GPU machine)."""
    from cupy_backends.cuda.libs import cublas

    from rawgan.runtime import runtime as rtm

    assert (rtm.CUBLAS_COMPUTE_32F, rtm.CUBLAS_COMPUTE_32F_FAST_TF32, rtm.CUBLAS_GEMM_DEFAULT) == \
        (cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_COMPUTE_32F_FAST_TF32, cublas.CUBLAS_GEMM_DEFAULT)


def test_tf32_reaches_the_gemm():
    """fp32 GEMMs match float64 to FP32 rounding; tf32 ones are close but visibly coarser (inputs
    rounded to 10 mantissa bits), so the compute type really reaches cuBLAS."""
    rt = get_runtime("cupy")
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((256, 512), (512, 128)))
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = {}
    saved = rt.precision
    try:
        for precision in ("fp32", "tf32"):
            rt.set_precision(precision)
            out = rt.xp.empty((256, 128), dtype=np.float32)
            rt.gemm(rt.xp.asarray(a), rt.xp.asarray(b), out)
            err[precision] = float(np.abs(out.get() - ref).max() / np.abs(ref).max())
    finally:
        rt.set_precision(saved)
    assert err["fp32"] < 1e-5 and 1e-5 < err["tf32"] < 1e-2, err
