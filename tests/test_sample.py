"""python -m rawgan.sample: grids, latent walks, BN modes, error paths."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawgan import checkpoint as ckpt_io
from rawgan.backend import PhiloxState, get_backend
from rawgan.models.dcgan import DCGAN
from rawgan.sample import draw_z, generate, interpolation_z, load_generator
from rawgan.sample import main as sample_main

ROOT = Path(__file__).resolve().parents[1]
CELL = 64 + 2                                  # image + padding in a grid


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint of a small DCGAN after 2 steps (BN running stats differ from their init)."""
    model = DCGAN(get_backend("numpy"), ngf=4, ndf=4)
    B, gen = model.B, PhiloxState(1)
    for _ in range(2):
        model.train_step(B.uniform(gen, (4, 3, 64, 64)), B.uniform(gen, (4, 100)), g_steps=1)
    path = tmp_path_factory.mktemp("ck") / "ckpt_000002.npz"
    config = {"ngf": 4, "ndf": 4, "z_dim": 100, "z_dist": "uniform"}
    return ckpt_io.save_checkpoint(path, model, {"step": 2, "config": config})


def run_cli(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rawgan.sample", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=env)


def test_grid_of_64(ckpt, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert sample_main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (8 * CELL + 2, 8 * CELL + 2)
        pixels = np.asarray(im)
    tiles = [pixels[2:66, 2 + CELL * i:66 + CELL * i] for i in range(3)]
    assert not np.array_equal(tiles[0], tiles[1])             # different z, different faces
    assert "64 faces" in capsys.readouterr().out


def test_interpolation_rows_are_linear_walks(ckpt, tmp_path):
    B = get_backend("numpy")
    z = B.to_numpy(interpolation_z(B, 7, rows=2, steps=5, z_dim=100, z_dist="uniform"))
    ends = B.to_numpy(draw_z(B, 7, 4, 100, "uniform"))
    np.testing.assert_allclose(z[0], ends[0], atol=1e-7)
    np.testing.assert_allclose(z[4], ends[1], atol=1e-7)
    np.testing.assert_allclose(z[2], (ends[0] + ends[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(z[5], ends[2], atol=1e-7)

    out = tmp_path / "walk.png"
    assert sample_main(["--checkpoint", str(ckpt), "--out", str(out), "--interpolate",
                        "--rows", "2", "--steps", "5"]) == 0
    with Image.open(out) as im:
        assert im.size == (5 * CELL + 2, 2 * CELL + 2)


def test_eval_mode_is_per_image_and_batch_stats_leave_buffers(ckpt):
    model, _ = load_generator(ckpt)
    B = model.B
    z = draw_z(B, 0, 6, 100, "uniform")
    full = generate(model, z)
    np.testing.assert_allclose(generate(model, z[:2]), full[:2], atol=1e-6)   # eval: independent
    before = [b.copy() for _, b in model.G.named_buffers()]
    stats = generate(model, z, batch_stats=True)
    assert stats.shape == (6, 3, 64, 64) and not np.allclose(stats, full)
    for b0, (_, b1) in zip(before, model.G.named_buffers()):
        np.testing.assert_array_equal(b0, b1)


def test_errors_exit_2_without_traceback(ckpt, tmp_path):
    missing = run_cli(["--checkpoint", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "a.png")])
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    bad = run_cli(["--checkpoint", str(corrupt), "--out", str(tmp_path / "b.png")])
    assert bad.returncode == 2 and "truncated or corrupt" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "b.png").exists()


def test_help():
    res = run_cli(["--help"])
    assert res.returncode == 0
    for flag in ("--checkpoint", "--interpolate", "--steps", "--batch-stats", "--seed", "--n"):
        assert flag in res.stdout


def test_bad_out_and_contradicting_flags_exit_2_with_a_clear_message(ckpt, tmp_path, capsys):
    cases = [
        (["--out", str(tmp_path / "a.jpg")], "ending in .png"),
        (["--out", str(tmp_path / "noext")], "ending in .png"),
        (["--out", str(tmp_path)], f"--out {tmp_path} is a folder"),
        (["--out", str(tmp_path / "w.png"), "--interpolate", "--n", "5"], "--n does not apply"),
        (["--out", str(tmp_path / "g.png"), "--rows", "2"], "apply to --interpolate only"),
        (["--out", str(tmp_path / "missing" / "x" / "g.png").replace("missing", "f.txt")],
         "cannot write"),
    ]
    (tmp_path / "f.txt").write_text("a file where a folder is expected")
    for flags, message in cases:
        assert sample_main(["--checkpoint", str(ckpt), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message in err and ".tmp" not in err, (flags, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]        # nothing written


def test_checkpoint_may_be_a_run_folder(ckpt, tmp_path):
    out = tmp_path / "grid.png"
    assert sample_main(["--checkpoint", str(ckpt.parent), "--out", str(out), "--n", "2"]) == 0
    assert out.exists()


def test_out_dir_writes_one_png_per_face_in_batches_and_a_manifest(ckpt, tmp_path, capsys,
                                                                      monkeypatch):
    import json

    import rawgan.sample as sample_mod
    sizes = []
    real_generate = sample_mod.generate
    monkeypatch.setattr(sample_mod, "generate",
                        lambda model, z, bs=False: sizes.append(len(z)) or real_generate(model, z, bs))
    out = tmp_path / "faces"
    assert sample_main(["--checkpoint", str(ckpt), "--out-dir", str(out), "--n", "130",
                        "--seed", "4"]) == 0
    assert sizes == [64, 64, 2]                        # generated in batches: flat memory
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"face_{i:06d}.png" for i in range(130)] + ["manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"] == str(ckpt) and manifest["step"] == 2
    assert manifest["count"] == 130 and manifest["seed"] == 4 and manifest["z_dist"] == "uniform"
    assert manifest["bn"].startswith("running statistics") and len(manifest["files"]) == 130
    printed = capsys.readouterr().out
    assert f"checkpoint: {ckpt} (step 2)" in printed and "wrote 130 faces" in printed

    # Face i is the same picture in the folder and in a grid of the same seed.
    grid = tmp_path / "grid.png"
    assert sample_main(["--checkpoint", str(ckpt), "--out", str(grid), "--n", "64",
                        "--seed", "4"]) == 0
    with Image.open(grid) as im:
        pixels = np.asarray(im)
    for i in (0, 9, 63):
        r, c = divmod(i, 8)
        tile = pixels[2 + CELL * r:66 + CELL * r, 2 + CELL * c:66 + CELL * c]
        with Image.open(out / f"face_{i:06d}.png") as face:
            assert face.size == (64, 64) and face.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(face), tile)


def test_out_dir_and_out_errors_create_nothing(ckpt, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    cases = [
        (["--out-dir", str(tmp_path / "full")], "not empty"),
        (["--out-dir", str(tmp_path / "no" / "faces")], "does not exist"),
        (["--out-dir", str(tmp_path / "w"), "--interpolate"], "use --out"),
        (["--out", str(tmp_path / "nonexistent_dir" / "x.png")], "does not exist"),
        (["--out", str(tmp_path / "g.png"), "--n", "5000"], "use --out-dir"),
    ]
    for flags, message in cases:
        assert sample_main(["--checkpoint", str(ckpt), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]        # nothing created
    with pytest.raises(SystemExit):                                      # exactly one of them
        sample_main(["--checkpoint", str(ckpt), "--out", "a.png", "--out-dir", "d"])
    assert "not allowed with" in capsys.readouterr().err


def test_negative_seed_is_refused_like_in_train(ckpt, tmp_path, capsys):
    """--seed -1 was accepted by sample but refused by train (review finding)."""
    with pytest.raises(SystemExit) as e:
        sample_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "g.png"), "--seed", "-1"])
    assert e.value.code == 2 and "argument --seed: must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_out_dir_interrupted_leaves_only_whole_pngs_and_says_so(ckpt, tmp_path, sig):
    """Review finding: Ctrl-C during --out-dir printed a PIL traceback and left a truncated PNG;
    SIGTERM died silently. Now: one line, exit 128 + N, every file under a final name whole."""
    import signal
    import time
    out = tmp_path / "faces"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rawgan.sample", "--checkpoint", str(ckpt),
                             "--out-dir", str(out), "--n", "200000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(out.glob("face_*.png"))) < 100:
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + int(getattr(signal, sig)), err
    assert f"interrupted ({sig})" in err and "Traceback" not in err
    faces = sorted(out.glob("face_*.png"))
    assert len(faces) >= 100 and not (out / "manifest.json").exists()
    assert not list(out.glob(".*.tmp"))
    for f in faces[-5:]:
        with Image.open(f) as im:
            im.load()                                 # decodes the whole file
            assert im.size == (64, 64)
