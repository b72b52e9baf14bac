"""Batch normalization on the CUDA backend: launchers of kernels/batchnorm.cu.

Signatures and semantics: rawgan.backend.reference.batchnorm (after ``rt`` is bound). x is
(N, C, H, W) or (N, C), float32; gamma, beta, running statistics (C,). M = N·H·W elements per
channel.

Two launch forms for the reductions (forward_train and both backwards), chosen per call by the
cost model ``common.reduction_chunks`` (H200 constants, also in emulation):

* one block per channel — ``batchnorm_forward_train`` / ``batchnorm_backward``: grid = C,
  block = common.reduce_block(rt, M) (a multiple of 32 giving each thread >= 8 elements, 32..256;
  32..64 in emulation), shared_mem = 0 (32 floats static). One launch; enough when C fills the GPU
  (D's 512 channels) or M is small.
* 2-D, deterministic — when C blocks would leave SMs idle (G's 64 channels of 65,536 elements):
  ``*_partial`` over grid = (C, chunks) writes per-(channel, chunk) partials into the workspace
  ``common.workspace(rt, "batchnorm", ...)``; ``*_combine`` (one thread per channel) folds them in
  index order; ``*_apply`` (grid-stride) writes y or dx. Three launches; bit-identical across runs.

forward_eval — grid-stride, grid = min(ceil(N·C·H·W / 256), block cap), block = 256.
"""
from .common import (channels_hw, check_int32, chunk_plan, contiguous, f32, i32, i64, kernel,
                     launch_1d, reduce_block, reduction_chunks, sm_count, workspace_f32)

MODULE = "batchnorm"
OPS = ("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
       "batchnorm_backward_eval")
WORKSPACE = "batchnorm"          # common.workspace key of the 2-D partials (C·chunks·2 floats)


def forward_chunks(rt, C: int, M: int) -> int:
    """Chunks per channel of the training forward (1 = one block per channel): 16 bytes/element
    (x read 3 times, y written) in both forms; the 2-D form adds 2 launches."""
    return reduction_chunks(C, M, 16.0 * C * M, extra_launches=2, sms=sm_count(rt))


def backward_chunks(rt, C: int, M: int) -> int:
    """Chunks per channel of the backward: 20 bytes/element (dy and x read twice, dx written);
    the 2-D form adds 2 launches."""
    return reduction_chunks(C, M, 20.0 * C * M, extra_launches=2, sms=sm_count(rt))


def batchnorm_forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps,
                            unbiased=False):
    """Training forward; updates running_mean/running_var in place (on the device).

    Returns ``(y, save_mean, save_invstd)`` — y like x, the saved statistics (C,).
    """
    x = contiguous(rt, x)
    N, C, HW = channels_hw(x)
    return forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased,
                         forward_chunks(rt, C, N * HW))


def forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased, chunks):
    """batchnorm_forward_train with an explicit launch form: ``chunks`` = 1 (one block per
    channel) or > 1 (2-D; capped so no chunk is empty). x must be C-contiguous."""
    N, C, HW = channels_hw(x)
    M = N * HW
    check_int32("batchnorm_forward_train", x.size)
    y = rt.empty(x.shape, x.dtype)
    save_mean = rt.empty((C,), x.dtype)
    save_invstd = rt.empty((C,), x.dtype)
    flag = i32(1 if unbiased else 0)
    if chunks <= 1:
        kernel(rt, MODULE, "batchnorm_forward_train")(
            (C,), (reduce_block(rt, M),),
            (x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd,
             i32(N), i32(C), i32(HW), f32(momentum), f32(eps), flag))
        return y, save_mean, save_invstd
    chunk, chunks = chunk_plan(M, chunks)
    check_int32("2-D reduction chunk end", M + chunk)
    part = workspace_f32(rt, WORKSPACE, C * chunks * 2)
    kernel(rt, MODULE, "batchnorm_stats_partial")(
        (C, chunks), (reduce_block(rt, chunk),), (x, part, i32(N), i32(C), i32(HW), i32(chunk)))
    launch_1d(rt, MODULE, "batchnorm_stats_combine", C,
              (part, running_mean, running_var, save_mean, save_invstd, i32(C), i32(M),
               i32(chunk), i32(chunks), f32(momentum), f32(eps), flag))
    launch_1d(rt, MODULE, "batchnorm_apply", x.size,
              (x, gamma, beta, save_mean, save_invstd, y, i32(C), i32(HW), i64(x.size)))
    return y, save_mean, save_invstd


def batchnorm_forward_eval(rt, x, gamma, beta, running_mean, running_var, eps):
    """Eval forward with the running statistics. Returns y (like x)."""
    x = contiguous(rt, x)
    _, C, HW = channels_hw(x)
    y = rt.empty(x.shape, x.dtype)
    launch_1d(rt, MODULE, "batchnorm_forward_eval", x.size,
              (x, gamma, beta, running_mean, running_var, y, i32(C), i32(HW), f32(eps), i64(x.size)))
    return y


def backward(rt, dy, x, gamma, mean, stat, eps, train, chunks=None):
    """Both backwards: ``(dx, dgamma, dbeta)``. ``train`` = 1 (mean/stat = save_mean/save_invstd)
    or 0 (running_mean/running_var); ``chunks`` None = the cost model's choice, 1 = one block per
    channel, > 1 = the 2-D form."""
    dy, x = contiguous(rt, dy), contiguous(rt, x)
    N, C, HW = channels_hw(x)
    M = N * HW
    check_int32("batchnorm_backward", x.size)
    if chunks is None:
        chunks = backward_chunks(rt, C, M)
    dx = rt.empty(x.shape, x.dtype)
    dgamma = rt.empty((C,), x.dtype)
    dbeta = rt.empty((C,), x.dtype)
    if chunks <= 1:
        kernel(rt, MODULE, "batchnorm_backward")(
            (C,), (reduce_block(rt, M),),
            (dy, x, gamma, mean, stat, f32(eps), i32(train), dx, dgamma, dbeta, i32(N), i32(C),
             i32(HW)))
        return dx, dgamma, dbeta
    chunk, chunks = chunk_plan(M, chunks)
    check_int32("2-D reduction chunk end", M + chunk)
    part = workspace_f32(rt, WORKSPACE, C * chunks * 2)
    kernel(rt, MODULE, "batchnorm_backward_partial")(
        (C, chunks), (reduce_block(rt, chunk),),
        (dy, x, mean, stat, f32(eps), i32(train), part, i32(N), i32(C), i32(HW), i32(chunk)))
    launch_1d(rt, MODULE, "batchnorm_backward_combine", C, (part, dgamma, dbeta, i32(C), i32(chunks)))
    launch_1d(rt, MODULE, "batchnorm_backward_apply", x.size,
              (dy, x, gamma, mean, stat, f32(eps), i32(train), dgamma, dbeta, dx, i32(C), i32(HW),
               i32(M), i64(x.size)))
    return dx, dgamma, dbeta


def batchnorm_backward_train(rt, dy, x, gamma, save_mean, save_invstd):
    """Training backward (batch-coupled). Returns ``(dx, dgamma, dbeta)``."""
    return backward(rt, dy, x, gamma, save_mean, save_invstd, 0.0, 1)


def batchnorm_backward_eval(rt, dy, x, gamma, running_mean, running_var, eps):
    """Eval backward (statistics are constants). Returns ``(dx, dgamma, dbeta)``."""
    return backward(rt, dy, x, gamma, running_mean, running_var, eps, 0)
