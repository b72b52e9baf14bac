"""Every layer's forward and every gradient against PyTorch (an independent oracle), float32,
on the reference backend.

Skipped where torch is not installed (it is a test-only extra: ``pip install torch==2.13.0``).
TF "SAME" padding is expressed in torch with an explicit ``F.pad`` (conv) or by cropping the
full transposed convolution (conv-transpose), since torch's own padding is symmetric.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from rawgan.backend import get_backend  # noqa: E402
from rawgan.layers import (BatchNorm, Conv2d, ConvTranspose2d, LeakyReLU, Linear, ReLU,  # noqa: E402
                           Sigmoid, SigmoidBCEWithLogits, Tanh, Sequential, flatten_parameters)
from rawgan.optim import Adam  # noqa: E402

B = get_backend("reference", "float32")
TOL = dict(rtol=2e-4, atol=2e-5)


def T(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float32, requires_grad=grad)


def close(ours, theirs, what):
    """Element-wise rtol, plus an atol scaled to the tensor (float32 sums of ~10⁴ terms)."""
    theirs = theirs.detach().numpy()
    atol = max(TOL["atol"], 1e-5 * float(np.abs(theirs).max(initial=0)))
    np.testing.assert_allclose(ours, theirs, rtol=TOL["rtol"], atol=atol, err_msg=what)


def run(layer, x, dy):
    layer.zero_grad()
    y = layer.forward(B.asarray(x))
    dx = layer.backward(B.asarray(dy))
    return y, dx


def compare_weighted_layer(layer, x, torch_forward, rng):
    """Run ``layer`` and ``torch_forward(xt, wt, bt)`` from the same x, w, b and upstream dy;
    compare y, dx, dw and db."""
    xt, wt, bt = T(x, True), T(layer.params["w"], True), T(layer.params["b"], True)
    yt = torch_forward(xt, wt, bt)
    dy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(T(dy))
    y, dx = run(layer, x, dy)
    assert y.shape == tuple(yt.shape)
    close(y, yt, "y")
    close(dx, xt.grad, "dx")
    close(layer.grads["w"], wt.grad, "dw")
    close(layer.grads["b"], bt.grad, "db")


@pytest.mark.parametrize("shape,cout,k,stride,pad", [
    ((4, 3, 64, 64), 8, 5, 2, "same"),           # DCGAN D layer 1 geometry, TF SAME (1, 2, 1, 2)
    ((2, 5, 9, 7), 4, 3, 1, (1, 1, 1, 1)),
    ((3, 2, 11, 8), 3, 3, 2, (0, 2, 1, 0)),      # asymmetric
    ((1, 4, 7, 9), 2, (2, 3), (3, 2), (1, 0, 2, 1)),
])
def test_conv2d_matches_torch(shape, cout, k, stride, pad):
    rng = np.random.default_rng(0)
    layer = Conv2d(B, shape[1], cout, k, stride, pad, rng=rng, init_std=0.2)
    layer.params["b"][...] = rng.standard_normal(cout)
    x = rng.standard_normal(shape).astype(np.float32)
    t, b, l, r = layer.pad_for(shape[2], shape[3])
    compare_weighted_layer(
        layer, x, lambda xt, wt, bt: F.conv2d(F.pad(xt, (l, r, t, b)), wt, bt, stride=layer.stride),
        rng)


@pytest.mark.parametrize("shape,cout,k,stride,pad,out_pad", [
    ((4, 16, 4, 4), 8, 5, 2, "same", 0),         # DCGAN G: 4 -> 8
    ((2, 8, 8, 8), 3, 5, 2, "same", 0),          # 8 -> 16, to 3 channels
    ((2, 3, 5, 6), 4, 3, 2, (1, 0, 0, 2), 1),
])
def test_conv_transpose2d_matches_torch(shape, cout, k, stride, pad, out_pad):
    rng = np.random.default_rng(1)
    layer = ConvTranspose2d(B, shape[1], cout, k, stride, pad, output_padding=out_pad, rng=rng,
                            init_std=0.2)
    layer.params["b"][...] = rng.standard_normal(cout)
    x = rng.standard_normal(shape).astype(np.float32)
    y_shape, (t, b, l, r) = layer.output_shape(shape), layer.pad_for(*shape[2:])
    if pad == "same":
        assert y_shape[2:] == (shape[2] * stride, shape[3] * stride)

    def torch_forward(xt, wt, bt):
        # No padding: the full output (plus output_padding rows/cols at the end), then crop.
        full = F.conv_transpose2d(xt, wt, bt, stride=layer.stride,
                                  output_padding=layer.output_padding)
        return full[:, :, t:t + y_shape[2], l:l + y_shape[3]]
    compare_weighted_layer(layer, x, torch_forward, rng)


def test_linear_matches_torch():
    rng = np.random.default_rng(2)
    layer = Linear(B, 100, 37, rng=rng, init_std=0.1)
    layer.params["b"][...] = rng.standard_normal(37)
    x = rng.standard_normal((5, 100)).astype(np.float32)
    compare_weighted_layer(layer, x, F.linear, rng)


@pytest.mark.parametrize("shape", [(8, 5, 4, 3), (16, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch(shape, training):
    rng = np.random.default_rng(3)
    C = shape[1]
    layer = BatchNorm(B, C, unbiased_running_var=True)      # torch's running-variance convention
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, C)
    layer.params["beta"][...] = rng.standard_normal(C)
    rm, rv = rng.standard_normal(C).astype(np.float32), rng.uniform(0.5, 2, C).astype(np.float32)
    layer.buffers["running_mean"][...] = rm
    layer.buffers["running_var"][...] = rv
    layer.train(training)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    xt, gt, bt = T(x, True), T(layer.params["gamma"], True), T(layer.params["beta"], True)
    rmt, rvt = T(rm), T(rv)
    yt = F.batch_norm(xt, rmt, rvt, gt, bt, training=training, momentum=0.1, eps=1e-5)
    dy = rng.standard_normal(shape).astype(np.float32)
    yt.backward(T(dy))
    y, dx = run(layer, x, dy)
    close(y, yt, "y")
    close(dx, xt.grad, "dx")
    close(layer.grads["gamma"], gt.grad, "dgamma")
    close(layer.grads["beta"], bt.grad, "dbeta")
    close(layer.buffers["running_mean"], rmt, "running_mean")
    close(layer.buffers["running_var"], rvt, "running_var")


def test_batchnorm_default_running_var_is_biased():
    """Default (TensorFlow) convention: the running variance tracks the biased batch variance."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    layer = BatchNorm(B, 3)
    layer.forward(B.asarray(x))
    expected = 0.9 * 1.0 + 0.1 * x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(layer.buffers["running_var"], expected, rtol=1e-5)


@pytest.mark.parametrize("layer_cls,fn", [
    (ReLU, F.relu), (Tanh, torch.tanh), (Sigmoid, torch.sigmoid),
    (lambda b: LeakyReLU(b, 0.2), lambda t: F.leaky_relu(t, 0.2)),
], ids=["relu", "tanh", "sigmoid", "leaky_relu"])
def test_activations_match_torch(layer_cls, fn):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 5, 6)) * 4).astype(np.float32)
    xt = T(x, True)
    yt = fn(xt)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(T(dy))
    y, dx = run(layer_cls(B), x, dy)
    close(y, yt, "y")
    close(dx, xt.grad, "dx")


@pytest.mark.parametrize("target", [1.0, 0.0, 0.9])
def test_sigmoid_bce_with_logits_matches_torch(target):
    logits = np.array([[-1e4], [-30.0], [-2.0], [0.0], [0.5], [3.0], [40.0], [1e4]], np.float32)
    loss = SigmoidBCEWithLogits(B)
    ours = loss.forward(B.asarray(logits), target)
    dl = loss.backward()
    lt = T(logits, True)
    theirs = F.binary_cross_entropy_with_logits(lt, torch.full_like(lt, target))
    theirs.backward()
    assert np.isfinite(ours) and np.all(np.isfinite(dl))
    np.testing.assert_allclose(float(ours), float(theirs.detach()), rtol=1e-5)
    close(dl, lt.grad, "dlogits")


def test_adam_matches_torch_over_several_steps():
    rng = np.random.default_rng(6)
    net = Sequential(B, [Linear(B, 6, 4, rng=rng), Linear(B, 4, 2, rng=rng)])
    flatten_parameters(net)
    params_t = [T(p, True) for _, p, _ in net.named_params()]
    opt = Adam(net, lr=2e-4 * 50, beta1=0.5, beta2=0.999, eps=1e-8)
    opt_t = torch.optim.Adam(params_t, lr=2e-4 * 50, betas=(0.5, 0.999), eps=1e-8)
    for step in range(6):
        grads = [rng.standard_normal(p.shape).astype(np.float32) * 10 ** (step % 3 - 1)
                 for p in params_t]
        for (_, _, g), gn, pt in zip(net.named_params(), grads, params_t):
            g[...] = gn
            pt.grad = T(gn)
        opt.step()
        opt_t.step()
        for (name, p, _), pt in zip(net.named_params(), params_t):
            np.testing.assert_allclose(p, pt.detach().numpy(), rtol=1e-5, atol=1e-6,  # 1e-4·lr
                                       err_msg=f"step {step} {name}")
    assert opt.t == 6


@pytest.mark.parametrize("g_steps", [1, 2])
def test_torch_twin_train_step_is_rawgans_train_step(g_steps):
    """bench/torch_dcgan.py's TorchDCGAN (the benchmark's and the quality comparison's peer)
    runs rawgan's DCGAN.train_step: from the same weights, the same losses, and G's BN running
    means — which the shared G forward updates once with momentum 1 − 0.9² — agree. (One step:
    from the next on, Adam turns the float32 noise in the gradients of the biases before BN into
    ±lr updates that the two frameworks draw differently; see test_cuda_backend's trajectory
    test.)"""
    import sys
    from pathlib import Path

    from rawgan.models.dcgan import DCGAN

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from torch_dcgan import TorchDCGAN, to_rawgan
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    twin = TorchDCGAN(seed=3)
    model = DCGAN(get_backend("numpy", "float32"), seed=0)
    to_rawgan(twin, model)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (8, 3, 64, 64)).astype(np.float32)
    z = rng.uniform(-1, 1, (8, 100)).astype(np.float32)
    theirs = twin.train_step(torch.from_numpy(x), torch.from_numpy(z), g_steps)
    ours = model.train_step(x, z, g_steps)
    for k in ("d_loss", "g_loss"):
        np.testing.assert_allclose(float(ours[k]), float(theirs[k]), rtol=1e-4, atol=1e-5)
    t_means = [m.running_mean.numpy() for m in twin.G.modules()
               if isinstance(m, torch.nn.BatchNorm2d)]
    r_means = [np.asarray(b) for n, b in model.G.named_buffers() if n.endswith("running_mean")]
    assert len(t_means) == len(r_means) == 4
    # after a G update (g_steps 2) G's pre-BN biases differ by Adam's ±lr noise steps, and the
    # running means track them (momentum 0.1 x 2 x lr = 4e-5); a missed second update would be off
    # by ~0.09 x the batch mean (~5e-3 here)
    atol = 1e-5 if g_steps == 1 else 1e-4
    for t, r in zip(t_means, r_means):
        np.testing.assert_allclose(r, t, rtol=1e-3, atol=atol)
    assert max(np.abs(r).max() for r in r_means) > 1e-3
