"""NumPy reference implementation of every op — the truth the CUDA kernels are checked against.

Every function here has a twin of the same name and signature in ``rawgan.backend.cuda`` (and the
kernels behind it in ``kernels/*.cu``). Arrays are NCHW (4-D) or (N, F) (2-D), dtype float32 or
float64; outputs have the dtype of the inputs. Files mirror ``kernels/``:

    activations.py  <-> kernels/activations.cu   relu/leaky_relu/tanh/sigmoid forward+backward
    linear.py       <-> (cuBLAS GEMM)            linear forward/backward
    conv.py         <-> kernels/conv.cu          conv2d fprop/dgrad/wgrad (im2col/col2im + GEMM)
    batchnorm.py    <-> kernels/batchnorm.cu     batch norm train/eval forward+backward
    loss.py         <-> kernels/loss.cu          sigmoid cross-entropy with logits
    adam.py         <-> kernels/adam.cu          Adam update over a flat buffer
    rng.py          <-> kernels/rng.cu           Philox4x32-10 uniform / normal
    tensor.py       <-> kernels/tensor.cu        fill, accumulate, uint8 -> float, metrics
    _parallel.py    (CPU only)                   stdlib thread pool for copies and split GEMMs

Speed notes (CPU). The convolutions compute in channels-last memory and return arrays of the
documented NCHW shape whose memory is channels-last (``a.transpose(0, 2, 3, 1)`` contiguous) —
values, shapes and dtypes are exactly those of the plain formulation; use
``np.ascontiguousarray`` where NCHW memory is required. Big copies and elementwise passes run on
a pool of ``RAWGAN_NUM_THREADS`` threads (default: all CPUs); with ``OPENBLAS_NUM_THREADS=1`` the
pool also splits every large GEMM, which is the fastest and most robust setting
(bench/RESULTS.md).
"""
from .activations import (relu_forward, relu_backward, leaky_relu_forward, leaky_relu_backward,
                          tanh_forward, tanh_backward, sigmoid_forward, sigmoid_backward)
from .linear import linear_forward, linear_backward
from .conv import (conv2d_fprop, conv2d_dgrad, conv2d_wgrad, bias_add, bias_grad,
                   conv_output_size)
from .batchnorm import (batchnorm_forward_train, batchnorm_forward_eval,
                        batchnorm_backward_train, batchnorm_backward_eval)
from .loss import sigmoid_bce_with_logits_forward, sigmoid_bce_with_logits_backward
from .adam import adam_update, adam_step
from .rng import (philox_uniform, philox_normal, philox4x32_10, philox_uniform_next,
                  philox_normal_next)
from .tensor import fill, accumulate, images_to_float, sigmoid_mean, scalar_add

name = "numpy"


def synchronize() -> None:
    """NumPy runs synchronously."""
