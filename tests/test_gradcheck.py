"""Float64 finite-difference checks of every hand-written backward (input and all parameters),
on the reference backend (the fast one is checked against it in tests/test_fastcpu.py).

Every layer and the loss, several shapes, strides and paddings (asymmetric and TF SAME
included), both BatchNorm modes. Inputs of kinked functions are drawn away from the kink.
"""
import numpy as np
import pytest

from rawgan.backend import get_backend
from rawgan.gradcheck import GradcheckError, away_from_zero, check_layer
from rawgan.layers import (BatchNorm, BatchNormAct, Conv2d, ConvTranspose2d, LeakyReLU, Linear, ReLU, Sigmoid,
                           SigmoidBCEWithLogits, Tanh)

B = get_backend("reference", "float64")
RTOL = 1e-6


def _check(layer, x, **kw):
    errs = check_layer(layer, B.asarray(x), rtol=RTOL, **kw)
    assert set(errs) >= {"x", *layer.params}
    assert max(errs.values()) < RTOL
    return errs


@pytest.mark.parametrize("shape,k,stride,pad", [
    ((2, 3, 7, 6), 3, 1, "same"),
    ((2, 3, 8, 8), 5, 2, "same"),            # TF SAME on even input: (1, 2, 1, 2)
    ((1, 2, 9, 7), 3, 2, (0, 1, 2, 0)),      # asymmetric
    ((2, 4, 6, 5), (3, 2), (2, 3), 1),       # rectangular kernel and stride
    ((3, 1, 5, 5), 1, 1, 0),                 # 1x1
    ((1, 3, 6, 6), 4, 3, (2, 2)),            # stride 3, (ph, pw)
])
def test_conv2d_gradcheck(shape, k, stride, pad):
    rng = np.random.default_rng(1)
    layer = Conv2d(B, shape[1], 4, k, stride, pad, rng=rng, init_std=0.5)
    _check(layer, rng.standard_normal(shape))


def test_conv2d_no_bias_gradcheck():
    rng = np.random.default_rng(2)
    layer = Conv2d(B, 3, 2, 3, 2, "same", bias=False, rng=rng, init_std=0.5)
    assert "b" not in layer.params
    _check(layer, rng.standard_normal((2, 3, 5, 6)))


@pytest.mark.parametrize("shape,k,stride,pad,out_pad", [
    ((2, 4, 4, 4), 5, 2, "same", 0),         # 4 -> 8, the DCGAN generator's rule
    ((1, 3, 3, 5), 3, 1, "same", 0),
    ((2, 2, 3, 4), 3, 2, (1, 0, 0, 2), 1),    # asymmetric + output_padding
    ((1, 2, 2, 3), (2, 3), (3, 2), 0, 0),
])
def test_conv_transpose2d_gradcheck(shape, k, stride, pad, out_pad):
    rng = np.random.default_rng(3)
    layer = ConvTranspose2d(B, shape[1], 3, k, stride, pad, output_padding=out_pad, rng=rng,
                            init_std=0.5)
    _check(layer, rng.standard_normal(shape))


@pytest.mark.parametrize("shape", [(4, 5), (3, 17)])
def test_linear_gradcheck(shape):
    rng = np.random.default_rng(4)
    layer = Linear(B, shape[1], 3, rng=rng, init_std=0.5)
    _check(layer, rng.standard_normal(shape))


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (2, 5, 1, 3), (6, 4), (2, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(shape, training):
    rng = np.random.default_rng(5)
    layer = BatchNorm(B, shape[1], rng=rng, gamma_std=0.3)
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_mean"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, shape[1])
    layer.train(training)
    _check(layer, rng.standard_normal(shape) * 2 + 0.5)


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_batchnorm_act_gradcheck(shape, training, act):
    """BatchNormAct (BN then ReLU/LeakyReLU, the fused layer) on the reference, with every BN
    output away from the activation's kink (checked) so finite differences stay on one side."""
    rng = np.random.default_rng(15)
    layer = BatchNormAct(B, shape[1], act, 0.2, rng=rng, gamma_std=0.3)
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_mean"][...] = rng.standard_normal(shape[1])
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, shape[1])
    layer.train(training)
    x = rng.standard_normal(shape) * 2 + 0.5
    probe = BatchNorm(B, shape[1])
    probe.params["gamma"][...], probe.params["beta"][...] = layer.params["gamma"], layer.params["beta"]
    probe.buffers["running_mean"][...] = layer.buffers["running_mean"]
    probe.buffers["running_var"][...] = layer.buffers["running_var"]
    probe.train(training)
    assert np.abs(probe.forward(B.asarray(x))).min() > 1e-3      # away from the kink
    _check(layer, x)


@pytest.mark.parametrize("cls", ["BatchNorm", "BatchNormAct"])
@pytest.mark.parametrize("shape,G", [((4, 3, 3, 2), 2), ((6, 2, 2, 3), 3), ((6, 4), 2)])
def test_batchnorm_ghost_batches_gradcheck(cls, shape, G):
    """Ghost batches (D's one-pass update): each sub-batch normalised with its own statistics,
    gradients of x, gamma and beta by finite differences (training mode)."""
    rng = np.random.default_rng(16)
    layer = (BatchNorm(B, shape[1], rng=rng, gamma_std=0.3) if cls == "BatchNorm"
             else BatchNormAct(B, shape[1], "leaky_relu", 0.2, rng=rng, gamma_std=0.3))
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    layer.ghost_batches = G
    x = rng.standard_normal(shape) * 2 + 0.5
    x[: shape[0] // G] += 1.5                    # the sub-batches' statistics differ
    errs = _check(layer, x)
    assert layer.save_mean.shape == (G, shape[1])
    assert errs["x"] < RTOL


@pytest.mark.parametrize("make", [lambda: ReLU(B), lambda: LeakyReLU(B, 0.2), lambda: Tanh(B),
                                  lambda: Sigmoid(B)], ids=["relu", "leaky", "tanh", "sigmoid"])
@pytest.mark.parametrize("shape", [(3, 4, 5), (7,), (2, 3, 5, 5)])
def test_activation_gradcheck(make, shape):
    _check(make(), away_from_zero(np.random.default_rng(6), shape, margin=0.05))


def test_large_tensor_uses_directional_check():
    rng = np.random.default_rng(7)
    layer = Conv2d(B, 8, 16, 5, 2, "same", rng=rng, init_std=0.1)
    errs = check_layer(layer, B.asarray(rng.standard_normal((2, 8, 12, 12))), directional=True,
                       n_directions=4)
    assert max(errs.values()) < RTOL


@pytest.mark.parametrize("targets", [1.0, 0.0, 0.9, "array"])
def test_sigmoid_bce_gradcheck(targets):
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((6, 1)) * 3
    t = B.asarray(rng.uniform(0, 1, (6, 1))) if targets == "array" else targets
    loss = SigmoidBCEWithLogits(B)
    errs = check_layer(loss, B.asarray(logits), forward=lambda x: loss.forward(x, t), rtol=RTOL)
    assert errs["x"] < RTOL


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must fail on a wrong gradient (a tanh whose backward forgets y²)."""
    class BadTanh(Tanh):
        def backward(self, dy, need_dx=True):
            return dy * (1 - self.y)
    with pytest.raises(GradcheckError, match="d/dx"):
        check_layer(BadTanh(B), B.asarray(np.random.default_rng(9).standard_normal((3, 4))))


def test_gradcheck_catches_a_wrong_parameter_gradient():
    class BadLinear(Linear):
        def backward(self, dy, need_dx=True):
            dx = super().backward(dy, need_dx)
            self.grads["b"] *= 1.001
            return dx
    with pytest.raises(GradcheckError, match="d/db"):
        check_layer(BadLinear(B, 3, 2, init_std=0.5), B.asarray(np.ones((2, 3))))
