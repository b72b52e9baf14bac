"""2-D convolution and per-channel bias on the CUDA backend: launchers of kernels/conv.cu and
kernels/bias.cu, with the GEMMs done by ``rt.gemm`` (cuBLAS on the GPU, NumPy in emulation) into preallocated
buffers; the column matrices and GEMM results that die inside one op live in ``rt.scratch``
slots ("cols", "gemm", "swap"). Column matrices that outlive their op — ``conv2d_fprop(...,
keep_cols=True)``, handed to ``conv2d_wgrad(..., cols=)`` so the wgrad launches no second im2col
of the same x — are ``rt.empty`` buffers instead (a later layer's im2col must not overwrite them).

Signatures and semantics: rawgan.backend.reference.conv (after ``rt`` is bound). Layouts: x
(N, C, H, W), w (K, C, R, S), y (N, K, P, Q), float32; stride (sh, sw); pad (top, bottom, left,
right). With cols = im2col(x) of shape (C·R·S, N·P·Q):

    fprop:  y  = swap01(W₂ @ cols) + b       W₂ = w as (K, C·R·S)
    wgrad:  dW = dY @ colsᵀ                  dY = swap01(dy) as (K, N·P·Q)
    dgrad:  dx = col2im(W₂ᵀ @ dY)

fprop and dgrad do the swap inside the GEMM: one strided-batched GEMM over n (rt.gemm with 3-D
views: y[n] = W₂ @ cols[:, n], dcols[:, n] = W₂ᵀ @ dy[n]), so only wgrad — a sum over n that
no batched GEMM does — still runs swap_axes01 on dy.

The transposed convolution (rawgan.layers.ConvTranspose2d) calls these three exactly as it calls
the reference. Launch shapes: im2col (C·N·P·Q items) / col2im / swap_axes01 / bias_add are grid-stride (grid =
min(ceil(total / 256), block cap), block = 256); bias_grad of a 4-D dy is one block per channel
(block = common.reduce_block(rt, N·H·W)) or, where the cost model common.reduction_chunks says it
pays (more blocks stream faster: G's 3-channel output layer, ...), the deterministic 2-D form
bias_grad_2d (grid = (C, chunks); its last block folds the partials in index order, one launch);
bias_grad_rows (2-D dy) is one thread per column.
"""
from ..reference.conv import conv_output_size
from .common import (channels_hw, check_int32, chunk_plan, contiguous, grid_counter, i32, i64, kernel,
                     launch_1d, reduce_block, reduction_chunks, sm_count, workspace_f32)

MODULE = "conv"
OPS = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "bias_add", "bias_grad")
PLAIN = ("conv_output_size",)   # pure shape arithmetic, shared with the reference


def _geometry(x_shape, w_shape, stride, pad):
    """Kernel arguments (N, C, H, W, R, S, P, Q, sh, sw, pt, pl) as int32 and the sizes."""
    N, C, H, W = (int(d) for d in x_shape)
    K, _, R, S = (int(d) for d in w_shape)
    sh, sw = int(stride[0]), int(stride[1])
    pt, pb, pl, pr = (int(p) for p in pad)
    P = conv_output_size(H, R, sh, pt, pb)
    Q = conv_output_size(W, S, sw, pl, pr)
    check_int32("conv2d", C * R * S * N * P * Q, N * C * H * W, N * K * P * Q)
    args = tuple(i32(v) for v in (N, C, H, W, R, S, P, Q, sh, sw, pt, pl))
    return args, (N, C, H, W, K, R, S, P, Q)


def im2col(rt, x, w_shape, stride, pad, keep=False):
    """Window matrix of x: (C·R·S, N·P·Q) float32 (kernel ``im2col``), in scratch slot "cols"
    (overwritten by the next op that uses the slot) or, with ``keep``, in a buffer of its own
    (``rt.empty``: a step's static memory inside a TrainStep) that later ops leave alone."""
    x = contiguous(rt, x)
    args, (N, C, H, W, K, R, S, P, Q) = _geometry(x.shape, w_shape, stride, pad)
    shape = (C * R * S, N * P * Q)
    cols = rt.empty(shape, x.dtype) if keep else rt.scratch("cols", shape, x.dtype)
    launch_1d(rt, MODULE, "im2col", cols.size, (x, cols, *args))
    return cols


def col2im(rt, dcols, x_shape, w_shape, stride, pad, bias=None):
    """Adjoint of im2col: (C·R·S, N·P·Q) -> (N, C, H, W) by a deterministic gather (``col2im``),
    plus ``bias[c]`` per channel when given (in the same kernel)."""
    args, _ = _geometry(x_shape, w_shape, stride, pad)
    dx = rt.empty(tuple(int(d) for d in x_shape), dcols.dtype)
    bias = None if bias is None else contiguous(rt, bias)
    launch_1d(rt, MODULE, "col2im", dx.size, (contiguous(rt, dcols), bias, dx, *args))
    return dx


def swap_axes01(rt, a, shape3, bias=None, slot=None):
    """(A, B, L) -> (B, A, L) (+ bias[a] broadcast), from a contiguous array of A·B·L elements.

    The result is a new buffer (``rt.empty``), or scratch slot ``slot`` when given."""
    A, B, L = shape3
    out = rt.empty((B, A, L), a.dtype) if slot is None else rt.scratch(slot, (B, A, L), a.dtype)
    launch_1d(rt, MODULE, "swap_axes01", out.size, (contiguous(rt, a), bias, out, i32(A), i32(B), i32(L)))
    return out


def conv2d_fprop(rt, x, w, b, stride, pad, keep_cols=False):
    """y (N, K, P, Q) = conv(x, w) + b; ``b`` may be None. ``keep_cols``: return (y, cols),
    cols = im2col(x) (C·R·S, N·P·Q) float32 in a buffer of its own (``rt.empty``, not the shared
    "cols" slot) for :func:`conv2d_wgrad`'s ``cols`` — 4·C·R·S·N·P·Q bytes held by the caller.

    The reference's Y = W₂ @ cols followed by swap01 is ONE batched GEMM here,
    y[n] (K, P·Q) = W₂ @ cols[:, n·P·Q:(n+1)·P·Q], that reads the column matrix as
    (N, C·R·S, P·Q) and writes NCHW directly (rt.gemm with strided views): no swap kernel."""
    _, (N, C, H, W, K, R, S, P, Q) = _geometry(x.shape, w.shape, stride, pad)
    CRS, PQ = C * R * S, P * Q
    cols = im2col(rt, x, w.shape, stride, pad, keep=keep_cols)
    y = rt.empty((N, K, P, Q), x.dtype)
    rt.gemm(contiguous(rt, w).reshape(K, CRS), cols.reshape(CRS, N, PQ).transpose(1, 0, 2),
            y.reshape(N, K, PQ))
    if b is not None:
        bias_add(rt, y, b)
    return (y, cols) if keep_cols else y


def conv2d_dgrad(rt, dy, w, x_shape, stride, pad, bias=None):
    """dx (x_shape) for y = conv2d_fprop(x, w, ·, stride, pad), given dy (N, K, P, Q); plus
    ``bias`` (C,) per channel when given (ConvTranspose2d's bias, added inside col2im).

    dcols = W₂ᵀ @ swap01(dy) as ONE batched GEMM, dcols[:, n·P·Q:(n+1)·P·Q] = W₂ᵀ @ dy[n]:
    dy is read as NCHW (no swap kernel) and written into the column matrix by strides."""
    _, (N, C, H, W, K, R, S, P, Q) = _geometry(x_shape, w.shape, stride, pad)
    CRS, PQ = C * R * S, P * Q
    dcols = rt.scratch("cols", (CRS, N * PQ), dy.dtype)
    rt.gemm(contiguous(rt, w).reshape(K, CRS).T, contiguous(rt, dy).reshape(N, K, PQ),
            dcols.reshape(CRS, N, PQ).transpose(1, 0, 2))
    return col2im(rt, dcols, x_shape, w.shape, stride, pad, bias)


def conv2d_wgrad(rt, dy, x, w_shape, stride, pad, out=None, accumulate=False, cols=None):
    """dw (w_shape) = Σ_{n,p,q} dy · window(x), given dy (N, K, P, Q) and x (N, C, H, W).

    ``out``: the gradient buffer (C-contiguous, w_shape) the GEMM writes (beta = 0) or, with
    ``accumulate``, adds to (beta = 1) — no separate accumulate kernel.
    ``cols``: im2col(x) from ``conv2d_fprop(x, ..., keep_cols=True)`` (no im2col launch here);
    else built in the "cols" slot. Raises ValueError for cols not of shape (C·R·S, N·P·Q)."""
    _, (N, C, H, W, K, R, S, P, Q) = _geometry(x.shape, w_shape, stride, pad)
    if cols is None:
        cols = im2col(rt, x, w_shape, stride, pad)
    elif tuple(cols.shape) != (C * R * S, N * P * Q) or not cols.flags.c_contiguous:
        raise ValueError(f"conv2d_wgrad: cols must be a C-contiguous {(C * R * S, N * P * Q)} "
                         f"array, got {tuple(cols.shape)}")
    dY = swap_axes01(rt, dy, (N, K, P * Q), slot="swap").reshape(K, N * P * Q)
    w_shape = tuple(int(d) for d in w_shape)
    if out is None:
        dw, beta = rt.empty(w_shape, x.dtype), 0.0
    else:
        if tuple(out.shape) != w_shape:
            raise ValueError(f"conv2d_wgrad: out has shape {tuple(out.shape)}, expected {w_shape}")
        dw, beta = out, (1.0 if accumulate else 0.0)
    rt.gemm(dY, cols.T, dw.reshape(K, C * R * S), beta=beta)
    return dw


def bias_add(rt, y, b):
    """y += b over channels (axis 1) of an (N, C, H, W) or (N, C) array, in place; returns y."""
    _, C, HW = channels_hw(y)
    if not y.flags.c_contiguous:
        raise ValueError("bias_add: y must be C-contiguous (it is updated in place)")
    launch_1d(rt, "bias", "bias_add", y.size, (y, contiguous(rt, b), i32(C), i32(HW), i64(y.size)))
    return y


WORKSPACE = "bias_grad"     # common.workspace key of the 2-D partials (C·chunks floats) + counter


def bias_grad_chunks(rt, C: int, M: int) -> int:
    """Chunks per channel of a 4-D bias gradient (1 = one block per channel): dy is read once
    (4 bytes/element) in both forms, and both are one launch (the 2-D form folds its partials
    in its last block), so the 2-D form is chosen wherever more blocks stream faster."""
    return reduction_chunks(C, M, 4.0 * C * M, extra_launches=0, sms=sm_count(rt))


def bias_grad(rt, dy, out=None, accumulate=False):
    """db (C,) = Σ over N, H, W of dy (N, C, H, W) or over N of dy (N, C).

    ``out``: the gradient buffer ((C,), C-contiguous) the kernels write, or add to with
    ``accumulate`` (an int flag of the kernels; no separate accumulate kernel).

    4-D: ``bias_grad`` (one block per channel) or the 2-D ``bias_grad_2d`` (partials folded by
    its last block), as :func:`bias_grad_chunks` decides; 2-D dy: ``bias_grad_rows``, one
    thread per column (a Linear layer: N is a batch of 64 rows, too short to split).
    """
    dy = contiguous(rt, dy)
    N, C, HW = channels_hw(dy)
    check_int32("bias_grad", dy.size)
    if dy.ndim == 2:
        db, acc = _grad_out(rt, out, accumulate, C, dy.dtype)
        launch_1d(rt, "bias", "bias_grad_rows", C, (dy, db, i32(N), i32(C), acc))
        return db
    return bias_grad_nchw(rt, dy, bias_grad_chunks(rt, C, N * HW), out, accumulate)


def _grad_out(rt, out, accumulate, C, dtype):
    """(buffer, accumulate flag) of a (C,) gradient output: ``out`` or a new buffer (flag 0)."""
    if out is None:
        return rt.empty((C,), dtype), i32(0)
    if tuple(out.shape) != (C,) or not out.flags.c_contiguous:
        raise ValueError(f"bias_grad: out must be a C-contiguous ({C},) buffer, got {tuple(out.shape)}")
    return out, i32(1 if accumulate else 0)


def bias_grad_nchw(rt, dy, chunks: int, out=None, accumulate=False):
    """bias_grad of a C-contiguous 4-D dy with an explicit launch form: ``chunks`` = 1 (one block
    per channel) or > 1 (2-D; capped so that no chunk is empty)."""
    N, C, HW = channels_hw(dy)
    db, acc = _grad_out(rt, out, accumulate, C, dy.dtype)
    if chunks <= 1:
        kernel(rt, "bias", "bias_grad")((C,), (reduce_block(rt, N * HW),), (dy, db, i32(N), i32(C), i32(HW), acc))
        return db
    chunk, chunks = chunk_plan(N * HW, chunks)
    check_int32("2-D reduction chunk end", N * HW + chunk)
    part = workspace_f32(rt, WORKSPACE, C * chunks)
    done = grid_counter(rt, WORKSPACE)
    kernel(rt, "bias", "bias_grad_2d")(
        (C, chunks), (reduce_block(rt, chunk),),
        (dy, part, done, db, i32(N), i32(C), i32(HW), i32(chunk), acc))
    return db
