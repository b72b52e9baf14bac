"""`python -m rawgan.data` as a user runs it: help, prepare, reuse, one-line errors with exit 2,
and a loader that a program abandons mid-epoch still lets the process exit."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, RAWGAN_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    e.pop("RAWGAN_DATA_DIR", None)
    return e


def run(env, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "rawgan.data", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def small_celeba(tmp_path):
    """DIR/img_align_celeba/ with 6 good 178x218 JPEGs and one text file named .jpg."""
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (218 // 2, 178 // 2, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((178, 218)).save(folder / f"{i + 1:06d}.jpg")
    (folder / "000007.jpg").write_text("not a jpeg")
    return tmp_path / "celeba"


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_help_lists_the_commands(env):
    r = run(env, "--help")
    assert r.returncode == 0 and "prepare" in r.stdout and "info" in r.stdout
    r = run(env, "prepare", "--help")
    assert r.returncode == 0
    for flag in ("--data", "--data-dir", "--out", "--prepared-dir", "--shards", "--workers"):
        assert flag in r.stdout
    assert "BICUBIC" in r.stdout and URL in r.stdout


def test_prepare_prints_the_folder_then_reuses_it(env, small_celeba, tmp_path):
    r = run(env, "prepare", "--data", "celeba", "--data-dir", small_celeba, "--shards", "3",
            "--workers", "2")
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.strip())
    assert out.parent == tmp_path / "cache" / "prepared" and out.name.startswith("celeba-64-")
    assert "prepared 6 images" in r.stderr and "skipped 1 file" in r.stderr
    assert "report.json" in r.stderr
    assert sorted(p.name for p in out.glob("*.npy")) == [f"shard-0{k}-of-03.npy" for k in range(3)]

    again = run(env, "prepare", "--data-dir", small_celeba, "--shards", "3", "--quiet")
    assert again.returncode == 0 and again.stdout.strip() == str(out) and again.stderr == ""
    again = run(env, "prepare", "--data-dir", small_celeba, "--shards", "3")
    assert "reusing prepared celeba data" in again.stderr and "checksums OK" in again.stderr

    info = run(env, "info", out, "--verify")
    assert info.returncode == 0 and "6 images (64, 64, 3)" in info.stdout and "skipped 1" in info.stdout


def test_out_and_default_data_dir(env, small_celeba, tmp_path):
    env["RAWGAN_DATA_DIR"] = str(small_celeba)
    r = run(env, "prepare", "--out", tmp_path / "mine", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "mine") and (tmp_path / "mine" / "index.json").exists()
    r = run(env, "prepare", "--prepared-dir", tmp_path / "theirs", "--quiet")  # alias of --out
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "theirs") and (tmp_path / "theirs" / "index.json").exists()


def test_small_images_are_upsampled_with_a_warning_and_counted_by_info(env, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (10, 10), (200, 0, 0)).save(pics / "tiny.png")
    Image.new("RGB", (80, 90), (0, 0, 200)).save(pics / "big.png")
    r = run(env, "prepare", "--data", "folder", "--data-dir", pics, "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "warning: 1 of 2 images are smaller than 64 px (e.g. tiny.png, 10x10)" in r.stderr
    info = run(env, "info", r.stdout.strip())
    assert info.returncode == 0 and "upsampled 1 (smaller than 64 px)" in info.stdout


def test_missing_folder_is_a_one_line_error(env, tmp_path):
    assert_clean_error(run(env, "prepare", "--data-dir", tmp_path / "does-not-exist"),
                       "not found", "img_align_celeba.zip", URL)


def test_empty_folder_is_a_one_line_error(env, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(run(env, "prepare", "--data-dir", tmp_path / "empty"), "no CelebA images", URL)
    assert_clean_error(run(env, "prepare", "--data", "folder", "--data-dir", tmp_path / "empty"),
                       "no image files found")


def test_folder_kind_without_data_dir_says_the_default_is_celebas(env, tmp_path):
    assert_clean_error(run(env, "prepare", "--data", "folder"), "default data folder",
                       "CelebA location", "--data folder needs --data-dir")


def test_out_holding_another_dataset_is_refused(env, small_celeba, tmp_path):
    out = tmp_path / "prep"
    assert run(env, "prepare", "--data-dir", small_celeba, "--out", out, "--quiet").returncode == 0
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (80, 80), (10, 200, 30)).save(pics / "a.png")
    assert_clean_error(run(env, "prepare", "--data", "folder", "--data-dir", pics, "--out", out),
                       "holds prepared data of", "img_align_celeba", "delete it")
    info = run(env, "info", out)
    assert info.returncode == 0 and "6 images" in info.stdout  # untouched


def test_html_saved_as_zip_is_a_one_line_error(env, tmp_path):
    (tmp_path / "img_align_celeba.zip").write_text("<html><body>Too many users have viewed or "
                                                   "downloaded this file recently.</body></html>")
    assert_clean_error(run(env, "prepare", "--data-dir", tmp_path), "HTML page", URL)


def test_nothing_decodable_is_a_one_line_error(env, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "000001.jpg").write_bytes(b"")
    (bad / "000002.jpg").write_text("<html>")
    assert_clean_error(run(env, "prepare", "--data-dir", bad, "--quiet"), "none of the 2 image files",
                       "report.json")


def test_info_on_unprepared_folder_is_a_one_line_error(env, tmp_path):
    assert_clean_error(run(env, "info", tmp_path), "not a usable prepared dataset")


def test_info_on_damaged_index_or_shard_is_a_one_line_error(env, small_celeba, tmp_path):
    out = tmp_path / "prep"
    assert run(env, "prepare", "--data-dir", small_celeba, "--out", out, "--quiet").returncode == 0
    index = (out / "index.json").read_text()
    (out / "index.json").write_text(index.replace('"image_shape"', '"renamed"'))
    assert_clean_error(run(env, "info", out), "not a usable prepared dataset", "complete index.json")
    (out / "index.json").write_text(index)
    shard = sorted(out.glob("*.npy"))[0]
    shard.write_bytes(b"garbage" + shard.read_bytes()[7:])  # same size, broken .npy header
    assert_clean_error(run(env, "info", out), "not a readable .npy array")
    assert_clean_error(run(env, "info", out, "--verify"), "missing or damaged")


def test_bad_arguments_exit_nonzero(env):
    r = run(env, "prepare", "--shards", "0")
    assert r.returncode == 2 and "must be >= 1" in r.stderr and "Traceback" not in r.stderr


def test_program_abandoning_a_loader_mid_epoch_exits_promptly(env, small_celeba, tmp_path):
    script = textwrap.dedent(f"""
        import rawgan.data as rd
        ds = rd.ShardDataset(rd.ensure_prepared("celeba", {str(small_celeba)!r}, progress=False))
        loader = rd.BatchLoader(ds, batch_size=2, seed=0, prefetch=1)
        it = loader.epoch_batches(0)   # kept alive on purpose: the producer is blocked on a full queue
        first = next(it)
        print("ok", first.shape)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok (2, 3, 64, 64)"
