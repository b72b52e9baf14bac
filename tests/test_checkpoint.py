"""rawgan.checkpoint: round trip, atomic writes, clear errors for bad files and mismatched models."""
import os

import numpy as np
import pytest

from rawgan import checkpoint as ckpt_io
from rawgan.backend import PhiloxState, get_backend
from rawgan.checkpoint import CheckpointError
from rawgan.models.dcgan import DCGAN


def small_model(ngf=4, seed=0):
    return DCGAN(get_backend("numpy"), ngf=ngf, ndf=4, seed=seed)


def trained_model(steps=2):
    """A small DCGAN after a few steps, so params, BN buffers and Adam state are all non-trivial."""
    model = small_model()
    B, gen = model.B, PhiloxState(3)
    for _ in range(steps):
        model.train_step(B.uniform(gen, (4, 3, 64, 64)), B.uniform(gen, (4, 100)), g_steps=2)
    return model


def test_round_trip_restores_everything(tmp_path):
    model = trained_model()
    extra = {"step": 2, "epoch": 0, "batch": 2, "z_rng": {"seed": 3, "offset": 800},
             "sample_z": np.arange(6, dtype=np.float32).reshape(2, 3), "config_json": '{"ngf": 4}'}
    path = ckpt_io.save_checkpoint(tmp_path / "ckpt_000002.npz", model, extra)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_000002.npz"]   # no temp file left

    ck = ckpt_io.load_checkpoint(path)
    assert ck["extra"]["z_rng"] == {"seed": 3, "offset": 800} and ck["extra"]["step"] == 2
    np.testing.assert_array_equal(ck["extra"]["sample_z"], extra["sample_z"])
    assert ck["extra"]["sample_z"].dtype == np.float32

    fresh = small_model(seed=1)                  # different initial weights
    ckpt_io.restore(fresh, ck)
    for net_a, net_b in ((model.G, fresh.G), (model.D, fresh.D)):
        np.testing.assert_array_equal(net_a.flat_params, net_b.flat_params)
        for (name, a), (_, b) in zip(net_a.named_buffers(), net_b.named_buffers()):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for opt_a, opt_b in ((model.opt_G, fresh.opt_G), (model.opt_D, fresh.opt_D)):
        np.testing.assert_array_equal(opt_a.m, opt_b.m)
        np.testing.assert_array_equal(opt_a.v, opt_b.v)
        assert opt_a.t == opt_b.t > 0
    # the restored parameters are still views of the flat buffer the optimizer updates
    assert np.shares_memory(fresh.G.layers[0].params["w"], fresh.G.flat_params)


def test_missing_and_corrupt_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt_io.load_checkpoint(tmp_path / "nope.npz")

    good = ckpt_io.save_checkpoint(tmp_path / "good.npz", small_model(), {"step": 0})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.npz is truncated or corrupt"):
        ckpt_io.load_checkpoint(truncated)

    flipped = bytearray(data)                    # damage the middle of the stored arrays
    for i in range(len(data) // 3, len(data) // 3 + 64):
        flipped[i] ^= 0xFF
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="damaged.npz"):
        ckpt_io.load_checkpoint(damaged)

    html = tmp_path / "html.npz"
    html.write_text("<html>not found</html>")
    with pytest.raises(CheckpointError, match="html.npz"):
        ckpt_io.load_checkpoint(html)

    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a rawgan checkpoint"):
        ckpt_io.load_checkpoint(other)


def test_mismatched_model_names_file_and_tensor_and_changes_nothing(tmp_path):
    path = ckpt_io.save_checkpoint(tmp_path / "ckpt_000001.npz", small_model(ngf=8), {})
    target = small_model(ngf=4)
    before = target.G.flat_params.copy()
    with pytest.raises(CheckpointError) as info:
        ckpt_io.restore(target, ckpt_io.load_checkpoint(path))
    msg = str(info.value)
    assert "ckpt_000001.npz" in msg and "G/param/0.w" in msg and "shape" in msg
    np.testing.assert_array_equal(target.G.flat_params, before)


def test_non_finite_state_is_never_saved(tmp_path):
    model = small_model()
    model.D.flat_params[5] = np.nan
    with pytest.raises(CheckpointError, match="non-finite"):
        ckpt_io.save_checkpoint(tmp_path / "ckpt_000001.npz", model, {})
    assert list(tmp_path.iterdir()) == []


def test_latest_and_prune(tmp_path):
    assert ckpt_io.latest_checkpoint(tmp_path / "missing") is None
    for step in (5, 100, 20):
        ckpt_io.checkpoint_path(tmp_path, step).write_bytes(b"x")
    (tmp_path / ".ckpt_000999.npz.abc.tmp").write_bytes(b"partial")     # an interrupted save
    assert ckpt_io.latest_checkpoint(tmp_path).name == "ckpt_000100.npz"
    removed = ckpt_io.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["ckpt_000005.npz"]
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path)] == ["ckpt_000020.npz",
                                                                    "ckpt_000100.npz"]
    assert ckpt_io.prune_checkpoints(tmp_path, keep=0) == []


def test_save_replaces_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temp file behind."""
    path = ckpt_io.save_checkpoint(tmp_path / "ckpt_000001.npz", small_model(), {"step": 1})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt_io.save_checkpoint(path, small_model(seed=5), {"step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_000001.npz"]


def test_a_file_of_another_format_is_not_a_rawgan_checkpoint(tmp_path):
    """A text file used to give NumPy's pickle error, which suggests allow_pickle=True."""
    for name, write in (("notes.txt", lambda p: p.write_text("step 100: looks good\n")),
                        ("array.npy", lambda p: np.save(p, np.zeros(3))),
                        ("empty.npz", lambda p: p.write_bytes(b""))):
        path = tmp_path / name
        write(path)
        with pytest.raises(CheckpointError) as info:
            ckpt_io.load_checkpoint(path)
        msg = str(info.value)
        assert f"{path} is not a rawgan checkpoint (.npz written by rawgan.train)" in msg
        assert "pickle" not in msg


def test_a_folder_stands_for_its_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    for step in (3, 12):
        ckpt_io.save_checkpoint(ckpt_io.checkpoint_path(run / "checkpoints", step), small_model(),
                                {"step": step})
    for folder in (run / "checkpoints", run):                 # checkpoints folder or run folder
        ck = ckpt_io.load_checkpoint(folder)
        assert ck["path"] == run / "checkpoints" / "ckpt_000012.npz" and ck["extra"]["step"] == 12
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint .* in .*empty"):
        ckpt_io.load_checkpoint(tmp_path / "empty")


def test_non_finite_state_names_the_tensor(tmp_path):
    model = small_model()
    model.opt_D.v[3] = np.inf
    with pytest.raises(ckpt_io.NonFiniteState) as info:
        ckpt_io.save_checkpoint(tmp_path / "ckpt_000001.npz", model, {})
    assert info.value.tensor == "opt_D/v"


def test_checkpoint_of_the_old_layer_numbering_restores_exactly(tmp_path):
    """Before BatchNormAct, BatchNorm and its activation were two layers, so every layer after the
    first BN had a higher index ("G/param/5.gamma" is now "G/param/4.gamma"). Such a checkpoint
    holds the same tensors in the same order and must still resume a run exactly."""
    from rawgan.layers import BatchNormAct

    model = trained_model()
    path = ckpt_io.save_checkpoint(tmp_path / "ckpt_000002.npz", model, {"step": 2})
    ck = ckpt_io.load_checkpoint(path)
    for net_name, net in (("G", model.G), ("D", model.D)):
        fused_before = np.cumsum([0] + [isinstance(l, BatchNormAct) for l in net.layers])
        assert fused_before[-1] >= 3                  # the renaming below really shifts indices

        def old(name):
            index, _, rest = name.partition(".")
            return f"{int(index) + fused_before[int(index)]}.{rest}"
        for kind in ("param", "buffer"):
            ck[net_name][kind] = {old(n): v for n, v in ck[net_name][kind].items()}
    assert "5.gamma" in ck["G"]["param"] and "4.gamma" not in ck["G"]["param"]

    fresh = small_model(seed=1)
    ckpt_io.restore(fresh, ck)
    for net_a, net_b in ((model.G, fresh.G), (model.D, fresh.D)):
        np.testing.assert_array_equal(net_a.flat_params, net_b.flat_params)
        for (name, a), (_, b) in zip(net_a.named_buffers(), net_b.named_buffers()):
            np.testing.assert_array_equal(a, b, err_msg=name)
