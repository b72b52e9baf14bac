"""NumPy reference implementation of every op — the truth the other backends are checked against.

Written to be read: one obvious algorithm per op, NCHW memory, no threads, no caches, no layout
tricks. Every function here has a twin of the same name and signature in ``rawgan.backend.fastcpu``
(the fast CPU backend, tested against this one) and in ``rawgan.backend.cuda`` (and the kernels
behind it in ``kernels/*.cu``, which run the same algorithms). Arrays are NCHW (4-D) or (N, F)
(2-D), dtype float32 or float64; outputs have the dtype of the inputs. Files mirror ``kernels/``:

    activations.py  <-> kernels/activations.cu   relu/leaky_relu/tanh/sigmoid forward+backward
    linear.py       <-> (cuBLAS GEMM)            linear forward/backward
    conv.py         <-> kernels/conv.cu, bias.cu conv2d fprop/dgrad/wgrad (im2col/col2im + GEMM)
    batchnorm.py    <-> kernels/batchnorm.cu     batch norm train/eval forward+backward
    loss.py         <-> kernels/loss.cu          sigmoid cross-entropy with logits
    adam.py         <-> kernels/adam.cu          Adam update over a flat buffer
    rng.py          <-> kernels/rng.cu           Philox4x32-10 uniform / normal
    tensor.py       <-> kernels/tensor.cu        fill, accumulate, uint8 -> float, metrics, concat
"""
from .activations import (relu_forward, relu_backward, leaky_relu_forward, leaky_relu_backward,
                          tanh_forward, tanh_backward, sigmoid_forward, sigmoid_backward)
from .linear import linear_forward, linear_backward
from .conv import (conv2d_fprop, conv2d_dgrad, conv2d_wgrad, bias_add, bias_grad,
                   conv_output_size)
from .batchnorm import (batchnorm_forward_train, batchnorm_forward_eval,
                        batchnorm_backward_train, batchnorm_backward_eval,
                        batchnorm_act_forward_train, batchnorm_act_forward_eval,
                        batchnorm_act_backward_train, batchnorm_act_backward_eval)
from .loss import (sigmoid_bce_with_logits_forward, sigmoid_bce_with_logits_backward,
                   sigmoid_bce_with_logits_forward_backward,
                   sigmoid_bce_with_logits_forward_backward_halves)
from .adam import adam_update, adam_step
from .rng import (philox_uniform, philox_normal, philox4x32_10, philox_uniform_next,
                  philox_normal_next)
from .tensor import fill, accumulate, images_to_float, sigmoid_mean, scalar_add, concat_batch

name = "reference"

# The op names every backend's ``ops`` namespace provides (tests check the other backends).
OPS = ("relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
       "tanh_forward", "tanh_backward", "sigmoid_forward", "sigmoid_backward",
       "linear_forward", "linear_backward",
       "conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "bias_add", "bias_grad", "conv_output_size",
       "batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
       "batchnorm_backward_eval",
       # BatchNorm + ReLU/LeakyReLU as one op (rawgan.layers.BatchNormAct; fused on CUDA)
       "batchnorm_act_forward_train", "batchnorm_act_forward_eval",
       "batchnorm_act_backward_train", "batchnorm_act_backward_eval",
       "sigmoid_bce_with_logits_forward", "sigmoid_bce_with_logits_backward",
       "sigmoid_bce_with_logits_forward_backward",
       # a batch of two halves with their own targets (D's real and fake samples in one pass)
       "sigmoid_bce_with_logits_forward_backward_halves",
       "adam_update", "philox_uniform", "philox_normal",
       # a device-resident step (rawgan.models.step): state on the device, no host values
       "adam_step", "philox_uniform_next", "philox_normal_next",
       "fill", "accumulate", "images_to_float", "sigmoid_mean", "scalar_add", "concat_batch")


def synchronize() -> None:
    """NumPy runs synchronously."""
