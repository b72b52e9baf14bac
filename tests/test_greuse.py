"""G's forward shared by the D update and the first G update (DCGAN.reuse_g_forward): the same
values as the TF reference's two forwards, one G forward fewer per iteration."""
import numpy as np
import pytest

from rawgan.backend import PhiloxState, get_backend
from rawgan.backend.cuda import make_backend
from rawgan.models.dcgan import DCGAN, running_updates


def _train(B, reuse, g_steps, steps=2):
    model = DCGAN(B, ngf=8, ndf=8, seed=4, reuse_g_forward=reuse)
    gen, data = PhiloxState(9), np.random.default_rng(13)
    rows = []
    for _ in range(steps):
        x = B.asarray(data.uniform(-1, 1, (4, 3, 64, 64)))
        z = B.uniform(gen, (4, 100))
        m = model.train_step(x, z, g_steps)
        rows.append([float(m[k]) for k in sorted(m)])
    stats = [B.to_numpy(v).astype(np.float64) for _, v in model.G.named_buffers()]
    return (np.array(rows), B.to_numpy(model.G.flat_params), B.to_numpy(model.D.flat_params),
            B.to_numpy(model.D.flat_grads), stats)


@pytest.mark.parametrize("backend", ["reference", "emulated"])
@pytest.mark.parametrize("g_steps", [1, 2])
def test_reused_g_forward_gives_the_two_forward_step(backend, g_steps):
    """Metrics, G's and D's weights and D's gradients are bit-identical with and without the
    reuse (G's second forward computed exactly the same activations); G's BN running statistics
    agree to float32 rounding (one update with momentum 1 − 0.9² instead of two with 0.1)."""
    B = make_backend("emulated") if backend == "emulated" else get_backend("reference", "float32")
    a, b = _train(B, True, g_steps), _train(B, False, g_steps)
    for got, want in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(got, want)
    assert len(a[4]) == 8
    for got, want in zip(a[4], b[4]):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # not vacuous: the running statistics moved away from their initial 0 / 1
    assert max(np.abs(s).max() for s in a[4][0::2]) > 1e-3


def test_reused_g_forward_saves_one_g_forward_of_launches():
    B = make_backend("emulated")
    rt = B.ops.rt
    counts = {}
    for reuse in (True, False):
        model = DCGAN(B, ngf=8, ndf=8, seed=4, reuse_g_forward=reuse)
        x, z = B.asarray(np.zeros((4, 3, 64, 64))), B.uniform(PhiloxState(1), (4, 100))
        model.train_step(x, z, 1)                       # compile, warm up
        with rt.skip_execution():
            rt.reset_counters()
            model.train_step(x, z, 1)
            counts[reuse] = rt.counters()["launches"]
        rt.reset_counters()
        with rt.skip_execution():
            model.G.forward(z)
            g_forward = rt.counters()["launches"]
    assert counts[False] - counts[True] == g_forward >= 10


def test_running_updates_reaches_nested_batchnorms():
    """Review finding: running_updates looked one level deep only."""
    from rawgan.layers import BatchNorm, Sequential

    B = get_backend("reference", "float64")
    inner = BatchNorm(B, 3)
    net = Sequential(B, [Sequential(B, [inner])])
    with running_updates(net, 3):
        assert inner.momentum == pytest.approx(1 - 0.9 ** 3)
    assert inner.momentum == 0.1


def test_running_updates_is_k_momentum_updates():
    B = get_backend("reference", "float64")
    model = DCGAN(B, ngf=8, ndf=8, seed=0)
    z = B.uniform(PhiloxState(3), (4, 100))
    twice = DCGAN(B, ngf=8, ndf=8, seed=0)
    with running_updates(model.G, 2):
        model.G.forward(z)
    assert model.G.layers[2].momentum == 0.1          # restored
    twice.G.forward(z)
    twice.G.forward(z)
    for (_, a), (_, b) in zip(model.G.named_buffers(), twice.G.named_buffers()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        with running_updates(model.G, 0):
            pass
    for k in (1.5, "2", True):             # review finding: 1.5 ran as k = 1, "2" as k = 2
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            with running_updates(model.G, k):
                pass
    assert model.G.layers[2].momentum == 0.1
    with running_updates(model.G, np.int64(2)):
        assert model.G.layers[2].momentum == pytest.approx(1 - 0.9 ** 2)


def test_g_step_reuse_needs_a_d_step():
    B = get_backend("reference", "float32")
    model = DCGAN(B, ngf=8, ndf=8, seed=0)
    z = B.uniform(PhiloxState(3), (4, 100))
    with pytest.raises(RuntimeError, match="needs a d_step"):
        model.g_step(z, reuse_forward=True)
    model.d_step(B.uniform(PhiloxState(4), (4, 3, 64, 64), -1, 1), z, g_running_updates=2)
    model.sample(z)                                    # replaces G's cached activations
    with pytest.raises(RuntimeError, match="needs a d_step"):
        model.g_step(z, reuse_forward=True)
    # review finding: another z, or a direct G forward in between, went unnoticed
    x = B.uniform(PhiloxState(4), (4, 3, 64, 64), -1, 1)
    model.d_step(x, z, g_running_updates=2)
    with pytest.raises(RuntimeError, match="on the same z"):
        model.g_step(B.uniform(PhiloxState(5), (4, 100)), reuse_forward=True)
    assert model.D.requires_grad                       # a refused call changes nothing
    model.d_step(x, z, g_running_updates=2)
    model.G.forward(B.uniform(PhiloxState(5), (4, 100)))
    with pytest.raises(RuntimeError, match="no other G forward in between"):
        model.g_step(z, reuse_forward=True)
    model.d_step(x, z, g_running_updates=1)            # G's running stats counted it once only
    with pytest.raises(RuntimeError, match="g_running_updates=>= 2"):
        model.g_step(z, reuse_forward=True)
    model.d_step(x, z, g_running_updates=2)
    assert set(model.g_step(z, reuse_forward=True)) == {"g_loss", "d_fake_g"}


def test_one_pass_d_step_checks_the_real_batch_before_any_state_changes():
    """Second review: a real batch of the wrong image shape or dtype failed only at the concat,
    after G's forward had updated G's running statistics."""
    B = get_backend("reference", "float32")
    model = DCGAN(B, ngf=8, ndf=8, seed=0)
    z = B.uniform(PhiloxState(3), (4, 100))
    before = [b.copy() for _, b in model.G.named_buffers()]
    for x in (np.zeros((4, 3, 32, 32), np.float32), np.zeros((4, 1, 64, 64), np.float32),
              np.zeros((4, 3, 64, 64), np.float64)):
        with pytest.raises(ValueError, match=r"real batch must be float32 \(N, 3, 64, 64\)"):
            model.d_step(x, z, g_running_updates=2)
    for b, (_, a) in zip(before, model.G.named_buffers()):
        np.testing.assert_array_equal(a, b)
    assert model._fake is None
