"""The fast CPU backend (``get_backend("numpy")``, the default for CPU training).

The same ops, signatures and values as ``rawgan.backend.reference`` — read that package first; it
is the truth this one is tested against, op by op and over DCGAN training steps
(tests/test_fastcpu.py). What this package adds is speed on a multi-core CPU:

    conv.py         channels-last im2col + GEMM for fprop/wgrad; dgrad by phase decomposition
                    (C >= 16) or GEMM + channel-major col2im (C < 16); chunked, cached scratch
    batchnorm.py    training-mode forward/backward in "rows form" on channels-last memory
    activations.py  ReLU / LeakyReLU / tanh backward split over threads, written with ``out=``
    adam.py         Adam in cache-sized blocks with two scratch buffers
    _parallel.py    stdlib thread pool for copies, elementwise passes and split GEMMs

Every other op (linear, loss, Philox, eval-mode BN, bias add/grad, sigmoid, tanh forward, and the
step's buffer ops fill/accumulate/images_to_float/sigmoid_mean/scalar_add/concat_batch) is the
reference's own function. Convolutions and training-mode BN return arrays of the documented NCHW
shape whose memory may be channels-last (NumPy semantics are unchanged; see conv.py). Threads:
``RAWGAN_NUM_THREADS`` (default: all CPUs this process may use), best with
``OPENBLAS_NUM_THREADS=1`` (rawgan/cpu_threads.py, bench/RESULTS.md).

Why "fastcpu" and not a package called ``numpy``: ``rawgan/backend/numpy/`` would be a package
whose own modules say ``import numpy as np`` — correct under absolute imports, but it reads as a
self-import and breaks the moment the folder lands on ``sys.path`` (running a file from it). The
backend's *name* stays "numpy", after its array module, like "cupy".
"""
from ..reference import (linear_forward, linear_backward, bias_add, bias_grad, conv_output_size,
                         tanh_forward, sigmoid_forward, sigmoid_backward,
                         batchnorm_forward_eval, batchnorm_backward_eval,
                         batchnorm_act_forward_eval, batchnorm_act_backward_eval,
                         sigmoid_bce_with_logits_forward, sigmoid_bce_with_logits_backward,
                         sigmoid_bce_with_logits_forward_backward,
                         sigmoid_bce_with_logits_forward_backward_halves,
                         philox_uniform, philox_normal, philox4x32_10, synchronize,
                         philox_uniform_next, philox_normal_next,
                         fill, accumulate, images_to_float, sigmoid_mean, scalar_add,
                         concat_batch)
from .activations import (relu_forward, relu_backward, leaky_relu_forward, leaky_relu_backward,
                          tanh_backward)
from .conv import conv2d_fprop, conv2d_dgrad, conv2d_wgrad
from .batchnorm import (batchnorm_forward_train, batchnorm_backward_train,
                        batchnorm_act_forward_train, batchnorm_act_backward_train)
from .adam import adam_update, adam_step

name = "numpy"
