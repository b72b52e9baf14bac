"""Bad input raises ValueError naming the layer and the mismatched dimension; padding rules."""
import numpy as np
import pytest

from rawgan.backend import get_backend, PhiloxState
from rawgan.backend.reference import philox4x32_10, philox_normal, philox_uniform
from rawgan.backend.reference.rng import philox_rounds
from rawgan.layers import (BatchNorm, Conv2d, ConvTranspose2d, Flatten, Linear, ReLU,
                           SigmoidBCEWithLogits, same_padding)

B = get_backend("numpy", "float32")


def test_conv2d_wrong_channels_names_layer_and_dim():
    layer = Conv2d(B, 3, 8, 5, 2)
    with pytest.raises(ValueError, match=r"Conv2d\(3→8.*in_channels=3 \(axis 1\).*\(2, 4, 8, 8\)"):
        layer.forward(B.zeros((2, 4, 8, 8)))


def test_conv2d_wrong_rank_and_dtype():
    layer = Conv2d(B, 3, 8, 5, 2)
    with pytest.raises(ValueError, match="4-D input"):
        layer.forward(B.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="dtype float32, got float64"):
        layer.forward(np.zeros((1, 3, 8, 8)))


def test_conv2d_input_smaller_than_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Conv2d(B, 1, 1, 5, 1, 0).forward(B.zeros((1, 1, 3, 3)))


def test_linear_wrong_features():
    with pytest.raises(ValueError, match=r"Linear\(100→8192\).*in_features=100"):
        Linear(B, 100, 8192).forward(B.zeros((4, 99)))


def test_batchnorm_errors():
    bn = BatchNorm(B, 5)
    with pytest.raises(ValueError, match="num_features=5"):
        bn.forward(B.zeros((4, 6, 2, 2)))
    with pytest.raises(ValueError, match="2-D .* or 4-D"):
        bn.forward(B.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn.forward(B.zeros((1, 5)))


def test_conv_transpose_output_padding_must_be_below_stride():
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2d(B, 2, 2, 3, 2, 0, output_padding=2)


def test_bad_padding_spec():
    with pytest.raises(ValueError, match="padding"):
        Conv2d(B, 1, 1, 3, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        Conv2d(B, 1, 1, 3, padding=-1)


def test_loss_target_shape_mismatch():
    with pytest.raises(ValueError, match="targets shape"):
        SigmoidBCEWithLogits(B).forward(B.zeros((4, 1)), B.zeros((4,)))


def test_activation_dtype():
    with pytest.raises(ValueError, match="ReLU"):
        ReLU(B).forward(np.zeros(3, dtype=np.int32))


def test_unknown_backend_and_dtype():
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("tpu")
    with pytest.raises(ValueError, match="unsupported dtype float16"):
        get_backend("numpy", "float16")
    assert get_backend("numpy", np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="unknown option.*foo"):
        get_backend("numpy", foo=1)
    with pytest.raises(ValueError, match="conv_impl applies to the cupy and emulated"):
        get_backend("numpy", conv_impl="cudnn")
    with pytest.raises(ValueError, match="conv_impl=.cudnn. for reference"):
        get_backend("reference", conv_impl="cudnn")
    B64 = get_backend("reference", "float64", conv_impl="kernels")
    assert (B64.name, B64.dtype, B64.ops.name) == ("reference", np.float64, "reference")
    assert get_backend().name == "numpy" and get_backend().ops.name == "numpy"


@pytest.mark.parametrize("size,k,s,expected", [
    (64, 5, 2, (1, 2)), (8, 5, 2, (1, 2)), (7, 5, 2, (2, 2)), (5, 3, 1, (1, 1)),
    (4, 1, 1, (0, 0)), (6, 4, 3, (0, 1)),
])
def test_tf_same_padding(size, k, s, expected):
    """TensorFlow SAME: out = ceil(size/s), total = max((out−1)s + k − size, 0), odd one after."""
    assert same_padding(size, k, s) == expected


def test_dcgan_transposed_sizes_4_to_64():
    sizes = [4]
    for cin, cout in [(8, 4), (4, 2), (2, 2), (2, 3)]:
        layer = ConvTranspose2d(B, cin, cout, 5, 2, "same")
        sizes.append(layer.forward(B.zeros((1, cin, sizes[-1], sizes[-1]))).shape[2])
    assert sizes == [4, 8, 16, 32, 64]


def test_philox_known_answers():
    """Random123's known-answer vectors for philox4x32_10 (kat_vectors)."""
    assert [hex(v) for v in philox4x32_10(1, 0, 0)[:, 0]] == \
        ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]
    # The pi-digits vector: counter 243f6a88 85a308d3 13198a2e 03707344, key a4093822 299f31d0.
    c = [np.array([v], dtype=np.uint64) for v in (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)]
    out = philox_rounds(*c, 0xA4093822, 0x299F31D0)
    assert [hex(int(v[0])) for v in out] == ["0xd16cfe09", "0x94fdcceb", "0x5001e420", "0x24126ea1"]
    w = philox4x32_10(3, 0xFFFFFFFFFFFFFFFF, 0)
    assert w.dtype == np.uint32 and w.shape == (4, 3)


def test_generator_stream_is_reproducible_and_advances():
    g1, g2 = PhiloxState(5), PhiloxState(5)
    a = B.uniform(g1, (4, 100))
    b = B.uniform(g2, (4, 100))
    np.testing.assert_array_equal(a, b)
    assert g1.offset == 400
    c = B.uniform(g1, (4, 100))
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= -1 and a.max() < 1
    assert abs(float(a.mean())) < 0.1


def test_philox_distributions():
    u = philox_uniform(200_000, 7, 0, -1.0, 1.0, np.float32)
    assert -1 <= u.min() and u.max() < 1 and abs(u.mean()) < 0.01 and abs(u.var() - 1 / 3) < 0.01
    z = philox_normal(200_000, 7, 0, 0.0, 1.0, np.float32)
    assert np.isfinite(z).all() and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_padding_strings_and_bad_geometry():
    assert Conv2d(B, 1, 1, 3, padding="valid").padding == (0, 0, 0, 0)
    assert Conv2d(B, 1, 1, 3, padding="SAME").padding == "same"
    with pytest.raises(ValueError, match="padding: expected 'same', 'valid'"):
        Conv2d(B, 1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="stride"):
        ConvTranspose2d(B, 1, 1, 3, stride=0)


@pytest.mark.parametrize("make,match", [
    (lambda: Conv2d(B, 0, 4, 3), "in_channels must be a positive int"),
    (lambda: Conv2d(B, 3, 4, 2.5), "kernel_size: expected an int or a pair of ints"),
    (lambda: Conv2d(B, 3, 4, 0), "kernel_size .* must be >= 1"),
    (lambda: Conv2d(B, 3, 4, 3, stride=0), "stride"),
    (lambda: ConvTranspose2d(B, 3, -1, 3), "out_channels must be a positive int"),
    (lambda: Linear(B, -1, 4), "in_features must be a positive int"),
    (lambda: BatchNorm(B, 0), "num_features must be a positive int"),
    (lambda: Conv2d(B, 3, 4, 3, padding=1.5), "padding: expected"),
])
def test_bad_construction_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_backward_before_forward_and_wrong_dy_shape():
    conv = Conv2d(B, 3, 4, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d.*backward called before forward"):
        conv.backward(B.zeros((1, 4, 5, 5)))
    conv.forward(B.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 4, 4, 4\), expected .*\(2, 4, 5, 5\)"):
        conv.backward(B.zeros((2, 4, 4, 4)))
    lin = Linear(B, 3, 2)
    lin.forward(B.zeros((5, 3)))
    with pytest.raises(ValueError, match="Linear"):
        lin.backward(B.zeros((5, 3)))
    with pytest.raises(RuntimeError, match="before forward"):
        SigmoidBCEWithLogits(B).backward()
    flat = Flatten(B)
    flat.forward(B.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"Flatten.*expected the shape of the last output \(2, 12\)"):
        flat.backward(B.zeros((2, 11)))
    relu = ReLU(B)
    relu.forward(B.zeros((2, 3)))
    with pytest.raises(ValueError, match="ReLU"):
        relu.backward(B.zeros((3, 2)))


def test_non_array_input_is_named():
    with pytest.raises(ValueError, match=r"Conv2d.*expected a 4-D array of the numpy backend, got list"):
        Conv2d(B, 1, 1, 1).forward([[1.0]])


def test_batchnorm_ghost_batches_errors_and_context():
    from rawgan.layers import BatchNormAct, Sequential, ghost_batches

    bn = BatchNorm(B, 3, ghost_batches=4)
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): ghost_batches=4 does not divide the batch size N=6"):
        bn.forward(B.zeros((6, 3, 2, 2)))
    bn.ghost_batches = 0
    with pytest.raises(ValueError, match="int >= 1"):
        bn.forward(B.zeros((6, 3, 2, 2)))
    bn.ghost_batches = 6
    with pytest.raises(ValueError, match="single value per channel in each sub-batch"):
        bn.forward(B.zeros((6, 3)))
    bn.eval()
    assert bn.forward(B.zeros((6, 3))).shape == (6, 3)       # eval: running statistics, no split
    inner = Sequential(B, [BatchNormAct(B, 3, "relu")])
    net = Sequential(B, [BatchNorm(B, 3), ReLU(B), inner])
    with ghost_batches(net, 2):
        assert [net.layers[0].ghost_batches, inner.layers[0].ghost_batches] == [2, 2]
        y = net.forward(B.asarray(np.random.default_rng(0).standard_normal((4, 3, 2, 2))))
    assert [net.layers[0].ghost_batches, inner.layers[0].ghost_batches] == [1, 1]
    assert net.layers[0].save_mean.shape == (2, 3)
    dx = net.backward(B.asarray(np.random.default_rng(1).standard_normal(y.shape)))
    assert dx.shape == y.shape and np.isfinite(dx).all()      # with the G its forward ran with
    with pytest.raises(RuntimeError, match="boom"), ghost_batches(net, 2):
        raise RuntimeError("boom")
    assert net.layers[0].ghost_batches == 1
