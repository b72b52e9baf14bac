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
  ``batchnorm_stats_2d`` / ``batchnorm_backward_sums_2d`` over grid = (C, chunks) write
  per-(channel, chunk) partials into the workspace ``common.workspace(rt, "batchnorm", ...)``,
  and the grid's last block folds them in index order (one thread per channel; "last block
  done", ticket counter ``common.grid_counter(rt, "batchnorm")``); then ``batchnorm_apply``
  (grid-stride) writes y, or ``batchnorm_backward_apply`` (on the same (C·G, chunks) grid) dx.
  Two launches; bit-identical across runs.

forward_eval — grid-stride, grid = min(ceil(N·C·H·W / 256), block cap), block = 256.

Fused BatchNorm + activation (``batchnorm_act_*``, the ops of rawgan.layers.BatchNormAct): the
same kernels with ``act`` = 1 (ReLU) or 2 (LeakyReLU, slope > 0) — the forward kernels apply the
activation as they write y, the backward kernels multiply dy by its derivative (read from the
saved output y) as they read dy; no separate activation kernels. The eval forward (sampling,
not a training step) stays BN-eval + the activation kernel.

Parameter gradients: ``dgamma_out``/``dbeta_out`` (views of the flat gradient buffer) are
written by the reduction kernels themselves, or added to with ``accumulate=True``; no
accumulate/fill kernels. ``dbias_out`` (training backwards): the gradient of a conv bias folded
into BN (rawgan.layers.fold_bias_into_bn), Σ dx per channel, summed by the kernel that writes dx
(one-block: a block reduction at its end; 2-D: per-block partials folded by the apply's last
block) — the conv's bias_grad launch is saved.

Ghost batches (``ghost_batches`` = G, training ops; semantics: the reference module): the same
launches as G = 1, with G passed to the kernels — the one-block form's blocks loop over the G
sub-batches, the 2-D form's partial grid is (C·G, chunks) over chunks of each sub-batch's
M/G elements (see kernels/batchnorm.cu). The saved statistics are (G, C) for G > 1. Launch form
and block size are planned for C·G reductions of M/G elements (``forward_chunks``/
``backward_chunks`` with ``ghost_batches``); with the same ones as G separate calls, every value
is bit-identical to theirs.
"""
from . import activations, tensor
from ..reference.batchnorm import check_saved_stats, ghost_split
from .common import (channels_hw, check_int32, chunk_plan, contiguous, f32, grid_counter, i32, i64,
                     kernel, launch_1d, reduce_block, reduction_chunks, sm_count, workspace_f32)

MODULE = "batchnorm"
OPS = ("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
       "batchnorm_backward_eval", "batchnorm_act_forward_train", "batchnorm_act_forward_eval",
       "batchnorm_act_backward_train", "batchnorm_act_backward_eval")
ACT_CODES = {"relu": 1, "leaky_relu": 2}     # kernels/batchnorm.cu: act argument (0 = identity)


def act_code(act, slope) -> int:
    """The kernels' ``act`` code of an activation name; raises ValueError for another name or a
    LeakyReLU slope <= 0 (the backward reads the derivative off the output's sign)."""
    if act not in ACT_CODES:
        raise ValueError(f"batchnorm_act: act must be one of {tuple(ACT_CODES)}, got {act!r}")
    if act == "leaky_relu" and not float(slope) > 0:
        raise ValueError(f"batchnorm_act: the LeakyReLU slope must be > 0, got {slope!r}")
    return ACT_CODES[act]
WORKSPACE = "batchnorm"          # common.workspace key of the 2-D partials (C·chunks·2 floats)
                                 # and common.grid_counter key of their last-block fold
EXTRA_LAUNCHES_2D = 1            # the 2-D form's launches beyond the one-block form's one: apply


def _chunks(rt, C: int, M: int, bytes_per_element: float, ghost_batches: int) -> int:
    """reduction_chunks for C·G reductions of M/G elements each (G = ghost_batches): the 2-D
    form runs C·G·chunks blocks, the one-block form C blocks (each looping over the G
    sub-batches)."""
    G = int(ghost_batches)
    return reduction_chunks(C * G, M // G, bytes_per_element * C * M,
                            extra_launches=EXTRA_LAUNCHES_2D,
                            sms=sm_count(rt), one_block_blocks=C)


def forward_chunks(rt, C: int, M: int, ghost_batches: int = 1) -> int:
    """Chunks per sub-batch and channel of the training forward (1 = one block per channel) over
    M elements per channel in ``ghost_batches`` sub-batches: 16 bytes/element (x read 3 times,
    y written) in both forms; the 2-D form adds 1 launch (the apply)."""
    return _chunks(rt, C, M, 16.0, ghost_batches)


def backward_chunks(rt, C: int, M: int, ghost_batches: int = 1) -> int:
    """Chunks per sub-batch and channel of the backward: 20 bytes/element (dy and x read twice,
    dx written); the 2-D form adds 1 launch (the apply)."""
    return _chunks(rt, C, M, 20.0, ghost_batches)


def batchnorm_forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps,
                            unbiased=False, ghost_batches=1):
    """Training forward; updates running_mean/running_var in place (on the device).

    Returns ``(y, save_mean, save_invstd)`` — y like x, the saved statistics (C,), or (G, C)
    with ``ghost_batches`` G > 1 (one sub-batch per row, as the reference). Raises ValueError
    for a G that does not divide N.
    """
    x = contiguous(rt, x)
    G = ghost_split(x, ghost_batches)
    N, C, HW = channels_hw(x)
    return forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased,
                         forward_chunks(rt, C, N * HW, G), ghost_batches=G)


def batchnorm_act_forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps,
                                unbiased, act, slope=0.0, in_bias=None, ghost_batches=1):
    """Training forward of BN followed by ``act`` ("relu" or "leaky_relu" with ``slope``), in
    the BN kernels. Returns ``(y, save_mean, save_invstd)``; updates the running statistics.
    ``in_bias`` (C,): the input is x + in_bias (the previous layer's bias, never added: only the
    running mean gets + in_bias; see kernels/batchnorm.cu); save_mean is then mean(x).
    ``ghost_batches``: as :func:`batchnorm_forward_train`."""
    code = act_code(act, slope)
    x = contiguous(rt, x)
    G = ghost_split(x, ghost_batches)
    N, C, HW = channels_hw(x)
    return forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased,
                         forward_chunks(rt, C, N * HW, G), code, slope, in_bias, G)


def forward_train(rt, x, gamma, beta, running_mean, running_var, momentum, eps, unbiased, chunks,
                  act=0, slope=0.0, in_bias=None, ghost_batches=1):
    """batchnorm_forward_train with an explicit launch form: ``chunks`` = 1 (one block per
    channel) or > 1 (2-D, chunks per sub-batch; capped so no chunk is empty), activation code
    ``act`` (0 = none) and ``ghost_batches`` G (must divide N). x must be C-contiguous."""
    N, C, HW = channels_hw(x)
    G = int(ghost_batches)
    Mg = (N // G) * HW                              # elements per channel of one sub-batch
    check_int32("batchnorm_forward_train", x.size)
    y = rt.empty(x.shape, x.dtype)
    stat_shape = (C,) if G == 1 else (G, C)
    save_mean = rt.empty(stat_shape, x.dtype)
    save_invstd = rt.empty(stat_shape, x.dtype)
    flag = i32(1 if unbiased else 0)
    if chunks <= 1:
        kernel(rt, MODULE, "batchnorm_forward_train")(
            (C,), (reduce_block(rt, Mg),),
            (x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd,
             i32(N), i32(C), i32(HW), f32(momentum), f32(eps), flag, i32(act), f32(slope), in_bias,
             i32(G)))
        return y, save_mean, save_invstd
    chunk, chunks = chunk_plan(Mg, chunks)
    check_int32("2-D reduction chunk end", N * HW + chunk)
    part = workspace_f32(rt, WORKSPACE, C * G * chunks * 2)
    kernel(rt, MODULE, "batchnorm_stats_2d")(
        (C * G, chunks), (reduce_block(rt, chunk),),
        (x, part, grid_counter(rt, WORKSPACE), running_mean, running_var, save_mean, save_invstd,
         i32(N), i32(C), i32(HW), i32(chunk), f32(momentum), f32(eps), flag, in_bias, i32(G)))
    launch_1d(rt, MODULE, "batchnorm_apply", x.size,
              (x, gamma, beta, save_mean, save_invstd, y, i32(C), i32(HW), i64(x.size), i32(act),
               f32(slope), i32(N // G)))
    return y, save_mean, save_invstd


def batchnorm_forward_eval(rt, x, gamma, beta, running_mean, running_var, eps):
    """Eval forward with the running statistics. Returns y (like x)."""
    x = contiguous(rt, x)
    _, C, HW = channels_hw(x)
    y = rt.empty(x.shape, x.dtype)
    launch_1d(rt, MODULE, "batchnorm_forward_eval", x.size,
              (x, gamma, beta, running_mean, running_var, y, i32(C), i32(HW), f32(eps), i64(x.size)))
    return y


def _grad_buffer(rt, out, C, dtype):
    """A gradient output: the caller's buffer (C-contiguous, (C,)) or a new one."""
    if out is None:
        return rt.empty((C,), dtype)
    if tuple(out.shape) != (C,) or not out.flags.c_contiguous:
        raise ValueError(f"batchnorm backward: gradient buffer of shape {tuple(out.shape)} must be "
                         f"C-contiguous ({C},)")
    return out


def backward(rt, dy, x, gamma, mean, stat, eps, train, chunks=None, y=None, act=0, slope=0.0,
             dgamma_out=None, dbeta_out=None, accumulate=False, ghost_batches=1, dbias_out=None):
    """Both backwards: ``(dx, dgamma, dbeta)``. ``train`` = 1 (mean/stat = save_mean/save_invstd)
    or 0 (running_mean/running_var); ``chunks`` None = the cost model's choice, 1 = one block per
    channel, > 1 = the 2-D form (chunks per sub-batch); ``act`` (0 = none, 1 ReLU, 2
    LeakyReLU(slope)) with ``y`` the forward's output: dy is the gradient of the activation's
    output. ``dgamma_out``/``dbeta_out``: the gradient buffers written (``accumulate``: added to)
    by the kernels. ``ghost_batches`` G (train = 1 only; must divide N): mean/stat are the
    forward's (G, C) statistics. ``dbias_out`` (C,): the gradient of a bias folded into x
    (sum of dx per channel), written (``accumulate``: added to) by the dx kernel itself."""
    dy, x = contiguous(rt, dy), contiguous(rt, x)
    y = None if y is None else contiguous(rt, y)
    N, C, HW = channels_hw(x)
    G = int(ghost_batches)
    if G != 1 and not train:
        raise ValueError("batchnorm backward: ghost_batches applies to training mode only")
    Mg = (N // G) * HW                              # elements per channel of one sub-batch
    check_int32("batchnorm_backward", x.size)
    if chunks is None:
        chunks = backward_chunks(rt, C, N * HW, G)
    dx = rt.empty(x.shape, x.dtype)
    dgamma = _grad_buffer(rt, dgamma_out, C, x.dtype)
    dbeta = _grad_buffer(rt, dbeta_out, C, x.dtype)
    adds = accumulate and (dgamma_out is not None or dbeta_out is not None)
    acc = i32(1 if adds else 0)
    if adds and (dgamma_out is None or dbeta_out is None):
        # one flag for both: the kernels add into the new one too, so it starts at 0 (no layer
        # asks for this mix; the reference returns that gradient plain)
        tensor.fill(rt, dbeta if dbeta_out is None else dgamma, 0.0)
    dbias = None if dbias_out is None else _grad_buffer(rt, dbias_out, C, x.dtype)
    acc_bias = i32(1 if accumulate else 0)
    if chunks <= 1:
        kernel(rt, MODULE, "batchnorm_backward")(
            (C,), (reduce_block(rt, Mg),),
            (dy, x, gamma, mean, stat, f32(eps), i32(train), y, i32(act), f32(slope), dx, dgamma,
             dbeta, i32(N), i32(C), i32(HW), acc, i32(G), dbias, acc_bias))
        return dx, dgamma, dbeta
    chunk, chunks = chunk_plan(Mg, chunks)
    check_int32("2-D reduction chunk end", N * HW + chunk)
    n_part = C * G * chunks * 2
    work = workspace_f32(rt, WORKSPACE, n_part + 2 * C * G)
    part, sums = work[:n_part], work[n_part:]
    kernel(rt, MODULE, "batchnorm_backward_sums_2d")(
        (C * G, chunks), (reduce_block(rt, chunk),),
        (dy, x, mean, stat, f32(eps), i32(train), y, i32(act), f32(slope), part,
         grid_counter(rt, WORKSPACE), sums, dgamma, dbeta, i32(N), i32(C), i32(HW), i32(chunk),
         acc, i32(G)))
    kernel(rt, MODULE, "batchnorm_backward_apply")(     # pass 1's grid; part is free again
        (C * G, chunks), (reduce_block(rt, chunk),),
        (dy, x, gamma, mean, stat, f32(eps), i32(train), y, i32(act), f32(slope), sums, dx,
         i32(N), i32(C), i32(HW), i32(chunk), i32(G), part, grid_counter(rt, WORKSPACE), dbias,
         acc_bias))
    return dx, dgamma, dbeta


def batchnorm_backward_train(rt, dy, x, gamma, save_mean, save_invstd, dgamma_out=None,
                             dbeta_out=None, accumulate=False, ghost_batches=1, dbias_out=None):
    """Training backward (batch-coupled). Returns ``(dx, dgamma, dbeta)``; gradient buffers as
    the reference (written, or added to with ``accumulate``); ``ghost_batches`` G with the
    forward's (G, C) statistics (sub-batch 0 writes or adds, the others add); ``dbias_out``: a
    folded bias's gradient, sum of dx per channel, computed by the dx kernel (no launch).
    Raises ValueError as the reference (bad G; saved statistics not of the forward's shape for
    that G, which the kernels would read past or mix up)."""
    G = ghost_split(x, ghost_batches)
    check_saved_stats(x, save_mean, save_invstd, G)
    return backward(rt, dy, x, gamma, save_mean, save_invstd, 0.0, 1, dgamma_out=dgamma_out,
                    dbeta_out=dbeta_out, accumulate=accumulate, ghost_batches=G,
                    dbias_out=dbias_out)


def batchnorm_backward_eval(rt, dy, x, gamma, running_mean, running_var, eps, dgamma_out=None,
                            dbeta_out=None, accumulate=False):
    """Eval backward (statistics are constants). Returns ``(dx, dgamma, dbeta)``."""
    return backward(rt, dy, x, gamma, running_mean, running_var, eps, 0, dgamma_out=dgamma_out,
                    dbeta_out=dbeta_out, accumulate=accumulate)


def batchnorm_act_forward_eval(rt, x, gamma, beta, running_mean, running_var, eps, act, slope=0.0):
    """Eval forward of BN + ``act``: the BN eval kernel, then the activation kernel (sampling
    only; not part of a training step)."""
    act_code(act, slope)
    y = batchnorm_forward_eval(rt, x, gamma, beta, running_mean, running_var, eps)
    if act == "relu":
        return activations.relu_forward(rt, y)
    return activations.leaky_relu_forward(rt, y, slope)


def batchnorm_act_backward_train(rt, dy, y, x, gamma, save_mean, save_invstd, act, slope=0.0,
                                 dgamma_out=None, dbeta_out=None, accumulate=False,
                                 ghost_batches=1, dbias_out=None):
    """Training backward of BN + ``act`` given dy (of the activation's output y) and the BN input
    x: the activation's derivative is applied inside the BN backward kernels. Returns
    ``(dx, dgamma, dbeta)``; ``ghost_batches`` and ``dbias_out`` as
    :func:`batchnorm_backward_train`."""
    G = ghost_split(x, ghost_batches)
    check_saved_stats(x, save_mean, save_invstd, G)
    return backward(rt, dy, x, gamma, save_mean, save_invstd, 0.0, 1, y=y,
                    act=act_code(act, slope), slope=slope, dgamma_out=dgamma_out,
                    dbeta_out=dbeta_out, accumulate=accumulate, ghost_batches=G,
                    dbias_out=dbias_out)


def batchnorm_act_backward_eval(rt, dy, y, x, gamma, running_mean, running_var, eps, act,
                                slope=0.0, dgamma_out=None, dbeta_out=None, accumulate=False):
    """Eval backward of BN + ``act`` (statistics constant), fused like the training backward."""
    return backward(rt, dy, x, gamma, running_mean, running_var, eps, 0, y=y,
                    act=act_code(act, slope), slope=slope, dgamma_out=dgamma_out,
                    dbeta_out=dbeta_out, accumulate=accumulate)
