"""DCGAN model shapes, parameter counts (the paper's architecture) and one training step."""
import numpy as np
import pytest

from rawgan.backend import get_backend, PhiloxState
from rawgan.layers import BatchNormAct, Conv2d, ConvTranspose2d, LeakyReLU, Linear
from rawgan.models import DCGAN, build_discriminator, build_generator

B = get_backend("numpy", "float32")


def _count(shapes):
    return sum(int(np.prod(s)) for s in shapes)


def test_generator_architecture_and_parameter_count():
    G = build_generator(B)
    # linear 100->8192 (+b); BN 512; convT 512->256, 256->128, 128->64, 64->3 (5x5, +b); BN
    expected = _count([(100, 8192), (8192,), (512,), (512,),
                       (512, 256, 5, 5), (256,), (256,), (256,),
                       (256, 128, 5, 5), (128,), (128,), (128,),
                       (128, 64, 5, 5), (64,), (64,), (64,),
                       (64, 3, 5, 5), (3,)])
    assert G.num_params() == expected == 5_135_363
    assert G.flat_params.shape == (expected,)
    z = B.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 100)))
    y = G.forward(z)
    assert y.shape == (3, 3, 64, 64) and y.dtype == np.float32
    assert np.abs(y).max() <= 1
    kinds = [type(l).__name__ for l in G.layers]
    assert kinds.count("ConvTranspose2d") == 4 and kinds.count("BatchNormAct") == 4
    assert all(l.act == "relu" for l in G.layers if isinstance(l, BatchNormAct))
    assert kinds[-1] == "Tanh"


def test_discriminator_architecture_and_parameter_count():
    D = build_discriminator(B)
    expected = _count([(64, 3, 5, 5), (64,), (128, 64, 5, 5), (128,), (128,), (128,),
                       (256, 128, 5, 5), (256,), (256,), (256,),
                       (512, 256, 5, 5), (512,), (512,), (512,), (1, 8192), (1,)])
    assert D.num_params() == expected == 4_316_545
    # No BN after the first conv; LeakyReLU(0.2) everywhere.
    assert isinstance(D.layers[0], Conv2d) and isinstance(D.layers[1], LeakyReLU)
    assert D.layers[1].slope == 0.2
    assert sum(isinstance(l, BatchNormAct) for l in D.layers) == 3
    assert all(l.act == "leaky_relu" and l.slope == 0.2 for l in D.layers if isinstance(l, BatchNormAct))
    assert isinstance(D.layers[-1], Linear)
    assert D.forward(B.zeros((2, 3, 64, 64))).shape == (2, 1)


def test_init_statistics():
    G = build_generator(B, rng=np.random.default_rng(0))
    w = G.layers[3].params["w"]
    assert isinstance(G.layers[3], ConvTranspose2d)
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    assert float(np.abs(G.layers[3].params["b"]).max()) == 0


def test_params_are_views_of_the_flat_buffer():
    D = build_discriminator(B)
    D.flat_params[:] = 0
    assert float(np.abs(D.layers[0].params["w"]).max()) == 0


def test_small_dcgan_training_reduces_d_loss_on_fixed_batch():
    """A small DCGAN: a few D updates on one real batch must lower d_loss (real learning)."""
    B32 = get_backend("numpy", "float32")
    model = DCGAN(B32, ngf=8, ndf=8, seed=3)
    g = PhiloxState(1)
    x = B32.uniform(g, (4, 3, 64, 64), -1, 1)
    z = B32.uniform(g, (4, 100))
    first = model.d_step(x, z)
    for _ in range(3):
        last = model.d_step(x, z)
    assert all(np.isfinite(float(v)) for v in last.values())
    assert float(last["d_loss"]) < float(first["d_loss"])
    assert float(last["d_real"]) > float(first["d_real"])
    m = model.train_step(x, z, g_steps=2)
    assert model.opt_D.t == 5 and model.opt_G.t == 2
    assert set(m) == {"d_loss_real", "d_loss_fake", "d_loss", "d_real", "d_fake", "g_loss",
                      "d_fake_g"}


def test_g_step_leaves_d_weights_and_grads_alone():
    model = DCGAN(B, ngf=8, ndf=8, seed=0)
    z = B.uniform(PhiloxState(2), (4, 100))
    before = model.D.flat_params.copy()
    model.D.flat_grads.fill(0)
    model.g_step(z)
    np.testing.assert_array_equal(model.D.flat_params, before)
    assert float(np.abs(model.D.flat_grads).max()) == 0
    assert model.D.requires_grad


def test_bad_image_size():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_generator(B, image_size=60)


def d_step_one_pass_vs_two(B, n=4, seed=7):
    """One d_step with d_one_pass True and False from the same weights and batch: per run the
    metrics, D's gradients, D's updated parameters and its BN running statistics (float64)."""
    rng = np.random.default_rng(seed)
    x, z = rng.uniform(-1, 1, (n, 3, 64, 64)), rng.uniform(-1, 1, (n, 100))
    out = {}
    for one in (True, False):
        model = DCGAN(B, ngf=8, ndf=8, seed=5, d_one_pass=one)
        m = model.d_step(B.asarray(x.astype(B.dtype)), B.asarray(z.astype(B.dtype)))
        f = lambda a: B.to_numpy(a).astype(np.float64).copy()  # noqa: E731
        out[one] = ({k: float(f(v)) for k, v in m.items()}, f(model.D.flat_grads),
                    f(model.D.flat_params), [f(b) for _, b in model.D.named_buffers()])
        assert all(l.ghost_batches == 1 for l in model.D.layers if isinstance(l, BatchNormAct))
    return out[True], out[False]


def assert_d_step_one_pass_matches(one, two, rtol):
    """Metrics and gradients to ``rtol`` (of the largest gradient), running statistics likewise;
    parameters where the gradient is not roundoff noise (Adam's first step is lr·sign(g): a
    gradient that is 0 in exact arithmetic — the biases folded into BN — has a random sign)."""
    assert set(one[0]) == {"d_loss_real", "d_loss_fake", "d_loss", "d_real", "d_fake"}
    for k in one[0]:
        np.testing.assert_allclose(one[0][k], two[0][k], rtol=rtol, err_msg=k)
    scale = np.abs(two[1]).max()
    assert np.abs(one[1] - two[1]).max() <= rtol * scale
    real = np.abs(two[1]) > 1e-3 * scale
    assert real.mean() > 0.5
    np.testing.assert_allclose(one[2][real], two[2][real], rtol=0, atol=1e-7)
    for a, b in zip(one[3], two[3]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert one[3][0].shape == two[3][0].shape and not np.allclose(one[3][0], 0)


@pytest.mark.parametrize("backend,dtype,rtol", [("reference", "float64", 1e-12),
                                                ("reference", "float32", 1e-5),
                                                ("numpy", "float32", 1e-5)])
def test_d_step_in_one_pass_equals_two_passes(backend, dtype, rtol):
    """DCGAN.d_step over 2N samples with 2 ghost batches in D's BN == the real pass then the
    fake pass: metrics, D's gradients and updated weights, BN running statistics."""
    one, two = d_step_one_pass_vs_two(get_backend(backend, dtype))
    assert_d_step_one_pass_matches(one, two, rtol)


def test_d_step_in_one_pass_needs_equal_halves():
    model = DCGAN(B, ngf=4, ndf=4, seed=0)
    with pytest.raises(ValueError, match="same size in one pass"):
        model.d_step(B.zeros((4, 3, 64, 64)), B.zeros((2, 100)))
    # rejected before anything ran: G's BN running statistics (G(z) used to run first, with a
    # k = 2 momentum) and the cached G(z) are as before
    bufs = [(k, B.to_numpy(v).copy()) for k, v in model.G.named_buffers()]
    with pytest.raises(ValueError, match=r"real batch \(4\) and z \(2\)"):
        model.d_step(B.zeros((4, 3, 64, 64)), B.asarray(np.ones((2, 100))), g_running_updates=2)
    for k, v in bufs:
        np.testing.assert_array_equal(B.to_numpy(dict(model.G.named_buffers())[k]), v, err_msg=k)
    assert dict(bufs)["2.running_var"][0] == 1.0 and model._fake is None
