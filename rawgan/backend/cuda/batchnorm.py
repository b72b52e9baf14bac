"""Batch normalization on the CUDA backend: launchers of kernels/batchnorm.cu.

Signatures and semantics: rawgan.backend.reference.batchnorm (after ``rt`` is bound).
x is (N, C, H, W) or (N, C), float32; gamma, beta, running statistics (C,).

Launch shapes: forward_train and backward — grid = C (one block per channel), block =
common.reduce_block(rt, M) (a multiple of 32 giving each thread >= 8 of the M = N·H·W elements,
32..256; 32..64 in emulation), shared_mem = 0 (32 floats static);
forward_eval — grid-stride, grid = min(ceil(N·C·H·W / 256), block cap), block = 256.
"""
from .common import channels_hw, check_int32, contiguous, f32, i32, i64, kernel, launch_1d, reduce_block

MODULE = "batchnorm"
OPS = ("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
       "batchnorm_backward_eval")


def batchnorm_forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps,
                            unbiased=False):
    """Training forward; updates running_mean/running_var in place (on the device).

    Returns ``(y, save_mean, save_invstd)`` — y like x, the saved statistics (C,).
    """
    x = contiguous(rt, x)
    N, C, HW = channels_hw(x)
    check_int32("batchnorm_forward_train", x.size)
    y = rt.empty(x.shape, x.dtype)
    save_mean = rt.empty((C,), x.dtype)
    save_invstd = rt.empty((C,), x.dtype)
    kernel(rt, MODULE, "batchnorm_forward_train")(
        (C,), (reduce_block(rt, N * HW),),
        (x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd,
         i32(N), i32(C), i32(HW), f32(momentum), f32(eps), i32(1 if unbiased else 0)))
    return y, save_mean, save_invstd


def batchnorm_forward_eval(rt, x, gamma, beta, running_mean, running_var, eps):
    """Eval forward with the running statistics. Returns y (like x)."""
    x = contiguous(rt, x)
    _, C, HW = channels_hw(x)
    y = rt.empty(x.shape, x.dtype)
    launch_1d(rt, MODULE, "batchnorm_forward_eval", x.size,
              (x, gamma, beta, running_mean, running_var, y, i32(C), i32(HW), f32(eps), i64(x.size)))
    return y


def _backward(rt, dy, x, gamma, mean, stat, eps, train):
    dy, x = contiguous(rt, dy), contiguous(rt, x)
    N, C, HW = channels_hw(x)
    check_int32("batchnorm_backward", x.size)
    dx = rt.empty(x.shape, x.dtype)
    dgamma = rt.empty((C,), x.dtype)
    dbeta = rt.empty((C,), x.dtype)
    kernel(rt, MODULE, "batchnorm_backward")(
        (C,), (reduce_block(rt, N * HW),),
        (dy, x, gamma, mean, stat, f32(eps), i32(train), dx, dgamma, dbeta, i32(N), i32(C), i32(HW)))
    return dx, dgamma, dbeta


def batchnorm_backward_train(rt, dy, x, gamma, save_mean, save_invstd):
    """Training backward (batch-coupled). Returns ``(dx, dgamma, dbeta)``."""
    return _backward(rt, dy, x, gamma, save_mean, save_invstd, 0.0, 1)


def batchnorm_backward_eval(rt, dy, x, gamma, running_mean, running_var, eps):
    """Eval backward (statistics are constants). Returns ``(dx, dgamma, dbeta)``."""
    return _backward(rt, dy, x, gamma, running_mean, running_var, eps, 0)
