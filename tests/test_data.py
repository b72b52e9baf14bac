"""rawgan.data: preparation (crop, resize, colour modes, bad files, shards, zip), ShardDataset,
BatchLoader and the grid writer. Images are small and generated with Pillow into tmp_path."""
import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rawgan.data as rd
from rawgan.data import shards as fmt

# Real CelebA for the last test: $RAWGAN_DATA_DIR (any layout rawgan accepts) or the shared copy.
CELEBA_DIR = Path(os.environ.get("RAWGAN_DATA_DIR") or "/work/shared/data/celeba")
W, H = 178, 218  # CelebA aligned image size


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Keep every prepared set of these tests inside tmp_path."""
    monkeypatch.setenv("RAWGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def face_like(seed, size=(W, H)):
    """A smooth RGB test picture (gradients + a few blobs) that JPEG keeps recognisable."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(a * x / 17 + p) + 50 * np.cos(b * y / 23)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def celeba_crop(path):
    """The expected result, computed directly with Pillow: crop 108x108 at (row 55, col 35)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").crop((35, 55, 143, 163))
                          .resize((64, 64), Image.Resampling.BICUBIC))


GOOD = ["a_good.jpg", "b_good.jpg", "c_good.jpg", "d_gray.jpg", "e_cmyk.jpg", "f_rgba.png",
        "g_palette.png"]
BAD = {"h_truncated.jpg": "truncated", "i_empty.jpg": "0 bytes", "j_text.jpg": "not an image",
       "k_small.jpg": "smaller than the 108x108"}


def write_mixed(folder: Path) -> Path:
    """GOOD images in every colour mode of interest plus the BAD files; also files to ignore."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(GOOD[:3]):
        face_like(i).save(folder / name, quality=92)
    face_like(3).convert("L").save(folder / "d_gray.jpg", quality=92)
    red = Image.new("RGB", (W, H), (230, 20, 20))
    red.convert("CMYK").save(folder / "e_cmyk.jpg", quality=95)
    rgba = face_like(5).convert("RGBA")
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, : W // 2] = 0  # left half fully transparent -> white
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(folder / "f_rgba.png")
    face_like(6).quantize(64).save(folder / "g_palette.png")
    data = jpeg_bytes(face_like(7))
    (folder / "h_truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "i_empty.jpg").write_bytes(b"")
    (folder / "j_text.jpg").write_text("this is a text file, not a JPEG\n")
    face_like(8, size=(100, 100)).save(folder / "k_small.jpg")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    face_like(9).save(folder / ".hidden.jpg")  # ignored: hidden
    return folder


@pytest.fixture
def mixed(tmp_path):
    return write_mixed(tmp_path / "raw")


@pytest.fixture
def good_dir(tmp_path):
    """12 good CelebA-sized JPEGs in DIR/img_align_celeba/."""
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(12):
        face_like(100 + i).save(folder / f"{i + 1:06d}.jpg", quality=92)
    return tmp_path / "celeba"


def shard_mtimes(prepared: Path):
    return {p.name: p.stat().st_mtime_ns for p in prepared.glob("*.npy")}


# ---------------------------------------------------------------------------------------------
# Preparation


def test_prepare_mixed_folder_keeps_good_images_and_reports_bad(mixed, tmp_path):
    out = rd.prepare("celeba", mixed, tmp_path / "prep", num_shards=3, workers=1, progress=False)
    ds = rd.ShardDataset(out)
    assert len(ds) == len(GOOD) == ds.index["count"]
    assert ds.image_shape == (64, 64, 3)
    batch = ds.images(range(len(ds)))
    assert batch.dtype == np.uint8 and batch.shape == (len(GOOD), 64, 64, 3)
    assert ds.index["sources"] == GOOD  # sorted, good ones only, hidden/.txt ignored
    report = json.loads((out / "report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(BAD)
    for name, expected in BAD.items():
        assert expected in reasons[name], (name, reasons[name])
    assert report["candidates"] == len(GOOD) + len(BAD)
    assert {s["file"] for s in ds.index["skipped"]} == set(BAD)


def test_truncated_jpeg_really_is_truncated(mixed):
    """Guard for the fixture: Pillow must refuse the cut file (LOAD_TRUNCATED_IMAGES untouched)."""
    with pytest.raises(OSError, match="truncated"):
        with Image.open(mixed / "h_truncated.jpg") as img:
            img.load()


def test_crop_and_resize_match_direct_pillow_computation(mixed, tmp_path):
    ds = rd.ShardDataset(rd.prepare("celeba", mixed, tmp_path / "p", workers=1, progress=False))
    for name in ["a_good.jpg", "c_good.jpg", "d_gray.jpg"]:
        i = ds.index["sources"].index(name)
        np.testing.assert_array_equal(ds[i], celeba_crop(mixed / name))
    assert rd.preparation.crop_box("celeba", W, H) == (35, 55, 143, 163)
    assert ds.index["resize"]["filter"] == "PIL.Image.Resampling.BICUBIC"


def test_color_modes_become_rgb(mixed, tmp_path):
    ds = rd.ShardDataset(rd.prepare("celeba", mixed, tmp_path / "p", workers=1, progress=False))
    img = {name: ds[ds.index["sources"].index(name)].astype(int) for name in GOOD}
    gray = img["d_gray.jpg"]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    r, g, b = img["e_cmyk.jpg"].reshape(-1, 3).mean(0)  # CMYK JPEG of (230, 20, 20)
    assert abs(r - 230) < 8 and g < 30 and b < 30, (r, g, b)
    rgba = img["f_rgba.png"]  # crop columns 35..142, transparent for x < 89 -> left ~half white
    assert (rgba[:, :24] == 255).all()
    assert rgba[:, 34:].mean() < 250
    palette = np.asarray(Image.open(mixed / "g_palette.png").convert("RGB")
                         .crop((35, 55, 143, 163)).resize((64, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(img["g_palette.png"], palette)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit greyscale PNG (Pillow mode I;16) must become v/257, not Pillow's clip to 255."""
    row = np.linspace(0, 65535, 64).round().astype(np.uint16)
    grad = np.tile(row, (64, 1))  # horizontal 0..65535 gradient, 64x64: resize keeps it as is
    folder = tmp_path / "hdr"
    folder.mkdir()
    Image.fromarray(grad).save(folder / "grad16.png")
    with Image.open(folder / "grad16.png") as img:
        assert img.mode == "I;16"  # guard: the fixture really is 16-bit
    ds = rd.ShardDataset(rd.prepare("folder", folder, tmp_path / "p", workers=1, progress=False))
    got = ds[0].astype(int)
    expected = np.rint(grad / 257.0)
    assert np.abs(got - expected[..., None]).max() <= 1
    assert abs(got.mean() - 127.5) < 2  # was ~254 when Pillow clipped


def test_int32_and_float_modes_are_scaled_to_8_bits():
    to_rgb = rd.preparation.to_rgb
    v16 = np.array([[0, 257, 32896, 65535]], np.int32)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(v16, "I")))[..., 0], [[0, 1, 128, 255]])
    wide = np.array([[-1000, 0, 1000, 100000]], np.int32)  # beyond 16 bits: min..max -> 0..255
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(wide, "I")))[..., 0],
                                  np.rint((wide + 1000) * 255 / 101000))
    unit = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)  # [0, 1] floats -> *255, NaN -> 0
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(unit, "F")))[..., 0], [[0, 128, 255, 0]])
    big = np.array([[-5.0, 12.4, 300.0, 255.0]], np.float32)  # otherwise clipped to 0..255
    out = np.asarray(to_rgb(Image.fromarray(big, "F")))
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 12, 255, 255]])


def test_index_records_settings_shards_and_checksums(good_dir, tmp_path):
    out = rd.prepare("celeba", good_dir, tmp_path / "p", num_shards=5, workers=1, progress=False)
    index = json.loads((out / "index.json").read_text())
    assert index["version"] == fmt.FORMAT_VERSION and index["count"] == 12
    assert index["image_shape"] == [64, 64, 3] and index["dtype"] == "uint8"
    assert index["crop"]["size"] == 108 and "(55, 35)" in index["crop"]["offset"]
    assert index["source_sizes"] == {"178x218": 12}
    assert index["sources"] == [f"{i:06d}.jpg" for i in range(1, 13)]
    assert [e["count"] for e in index["shards"]] == [2, 2, 3, 2, 3]  # k*n//S bounds
    assert [e["first"] for e in index["shards"]] == [0, 2, 4, 7, 9]
    for e in index["shards"]:
        assert e["sha256"] == fmt.file_sha256(out / e["file"])
        assert np.load(out / e["file"]).shape == (e["count"], 64, 64, 3)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [e["file"] for e in index["shards"]] + ["index.json", "report.json"])  # no temp files


def test_second_run_reuses_shards_without_rewriting(good_dir, tmp_path):
    out = tmp_path / "p"
    first = rd.prepare_dataset("celeba", good_dir, out, workers=1, progress=False)
    assert first.rebuilt == list(range(12)) and not first.up_to_date
    before = shard_mtimes(out)
    index_before = (out / "index.json").stat().st_mtime_ns
    time.sleep(0.01)
    again = rd.prepare_dataset("celeba", good_dir, out, workers=1, progress=False)
    assert again.up_to_date and again.count == 12 and again.reused == list(range(12))
    assert shard_mtimes(out) == before
    assert (out / "index.json").stat().st_mtime_ns == index_before
    assert rd.ensure_prepared("celeba", good_dir, out) == out
    assert shard_mtimes(out) == before


def test_corrupted_or_missing_shard_is_rebuilt(good_dir, tmp_path):
    out = tmp_path / "p"
    rd.prepare("celeba", good_dir, out, num_shards=4, workers=1, progress=False)
    pixels = rd.ShardDataset(out).images(range(12))
    shard = out / "shard-02-of-04.npy"
    raw = bytearray(shard.read_bytes())
    raw[-10:] = bytes(10)  # same size, different content: only the checksum notices
    shard.write_bytes(bytes(raw))
    before = shard_mtimes(out)
    result = rd.prepare_dataset("celeba", good_dir, out, num_shards=4, workers=1, progress=False)
    assert result.rebuilt == [2] and result.reused == [0, 1, 3]
    after = shard_mtimes(out)
    assert after["shard-02-of-04.npy"] != before["shard-02-of-04.npy"]
    assert all(after[k] == before[k] for k in before if k != "shard-02-of-04.npy")
    np.testing.assert_array_equal(rd.ShardDataset(out, verify=True).images(range(12)), pixels)

    (out / "shard-00-of-04.npy").unlink()  # ensure_prepared (size check) notices a missing shard
    assert rd.ensure_prepared("celeba", good_dir, out, progress=False) == out
    np.testing.assert_array_equal(rd.ShardDataset(out, verify=True).images(range(12)), pixels)


def test_changed_source_or_shard_count_rebuilds(good_dir, tmp_path):
    out = tmp_path / "p"
    rd.prepare("celeba", good_dir, out, num_shards=4, workers=1, progress=False)
    face_like(999).save(good_dir / "img_align_celeba" / "000013.jpg")
    assert rd.prepare_dataset("celeba", good_dir, out, num_shards=4, workers=1,
                              progress=False).count == 13
    result = rd.prepare_dataset("celeba", good_dir, out, num_shards=3, workers=1, progress=False)
    assert result.rebuilt == [0, 1, 2]
    assert sorted(p.name for p in out.glob("*.npy")) == [f"shard-0{k}-of-03.npy" for k in range(3)]
    assert len(rd.ShardDataset(out)) == 13


def test_more_shards_than_images_writes_no_empty_shard(tmp_path, capsys):
    folder = tmp_path / "raw" / "img_align_celeba"
    folder.mkdir(parents=True)
    data = jpeg_bytes(face_like(0))
    for i in range(25):  # 21 good files, 4 undecodable ones
        (folder / f"{i:06d}.jpg").write_bytes(b"not a jpeg" if i % 6 == 1 else data)
    out = tmp_path / "p"
    result = rd.prepare_dataset("celeba", folder.parent, out, num_shards=50, workers=1)
    assert result.count == 21 and result.num_shards == 21 and len(result.skipped) == 4
    assert ("in 21 shards (--shards 50 capped at 25, one per file; 4 shards not written: all their "
            "files were skipped)") in capsys.readouterr().err
    index = json.loads((out / "index.json").read_text())
    assert index["num_shards"] == 25 and len(index["shards"]) == 21
    assert all(e["count"] > 0 for e in index["shards"])
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(e["file"] for e in index["shards"])
    assert len(rd.ShardDataset(out, verify=True)) == 21

    again = rd.prepare_dataset("celeba", folder.parent, out, num_shards=50, workers=1, progress=False)
    assert again.up_to_date and again.num_shards == 21 and len(again.skipped) == 4
    assert rd.ensure_prepared("celeba", folder.parent, out, num_shards=50) == out
    (out / index["shards"][3]["file"]).unlink()
    rebuilt = rd.prepare_dataset("celeba", folder.parent, out, num_shards=50, workers=1, progress=False)
    assert len(rebuilt.rebuilt) == 1 and rebuilt.count == 21 and len(rebuilt.skipped) == 4
    assert json.loads((out / "index.json").read_text())["shards"] == index["shards"]


def test_interrupted_preparation_leaves_no_index_and_recovers(good_dir, tmp_path, monkeypatch):
    out = tmp_path / "p"
    real_write = fmt.write_shard
    calls = []

    def failing_write(path, images):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C hit while writing the second shard
        return real_write(path, images)

    monkeypatch.setattr(fmt, "write_shard", failing_write)
    with pytest.raises(KeyboardInterrupt):
        rd.prepare("celeba", good_dir, out, num_shards=4, workers=1, progress=False)
    assert not (out / "index.json").exists()
    assert not list(out.glob(".*tmp*"))
    with pytest.raises(rd.DataError, match="not a usable prepared dataset"):
        rd.ShardDataset(out)
    monkeypatch.setattr(fmt, "write_shard", real_write)
    assert len(rd.ShardDataset(rd.prepare("celeba", good_dir, out, num_shards=4, workers=1,
                                          progress=False))) == 12


def test_parallel_workers_give_identical_shards(good_dir, tmp_path):
    serial = rd.prepare("celeba", good_dir, tmp_path / "s", num_shards=3, workers=1, progress=False)
    parallel = rd.prepare("celeba", good_dir, tmp_path / "m", num_shards=3, workers=2, progress=False)
    for k in range(3):
        name = f"shard-0{k}-of-03.npy"
        assert (serial / name).read_bytes() == (parallel / name).read_bytes()


def test_celeba_layouts_and_zip_give_the_same_images(good_dir, tmp_path):
    folder = good_dir / "img_align_celeba"
    via_parent = rd.ShardDataset(rd.prepare("celeba", good_dir, tmp_path / "a", workers=1, progress=False))
    via_folder = rd.ShardDataset(rd.prepare("celeba", folder, tmp_path / "b", workers=1, progress=False))
    zdir = tmp_path / "zipped"
    zdir.mkdir()
    with zipfile.ZipFile(zdir / "img_align_celeba.zip", "w") as zf:  # the official layout
        for p in sorted(folder.iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
        zf.writestr("__MACOSX/img_align_celeba/._000001.jpg", b"junk")
    via_zip = rd.ShardDataset(rd.prepare("celeba", zdir / "img_align_celeba.zip", tmp_path / "c",
                                         workers=2, progress=False))
    via_zip_dir = rd.ShardDataset(rd.prepare("celeba", zdir, tmp_path / "d", workers=1, progress=False))
    expected = via_parent.images(range(12))
    assert len(via_zip) == 12 and via_zip.index["source_type"] == "zip"
    assert via_zip.index["sources"][0] == "img_align_celeba/000001.jpg"
    for ds in (via_folder, via_zip, via_zip_dir):
        np.testing.assert_array_equal(ds.images(range(12)), expected)


def test_fake_zip_html_page_is_a_clear_error(tmp_path):
    fake = tmp_path / "img_align_celeba.zip"
    fake.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>")
    for where in (fake, tmp_path):
        with pytest.raises(rd.DataError, match="HTML page") as e:
            rd.prepare("celeba", where, tmp_path / "p", progress=False)
        assert rd.CELEBA_URL in str(e.value) and "\n" not in str(e.value)


def test_truncated_zip_is_called_an_incomplete_download(good_dir, tmp_path):
    z = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((good_dir / "img_align_celeba").iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
    z.write_bytes(z.read_bytes()[: z.stat().st_size * 2 // 3])  # download cut short
    for where in (z, tmp_path):
        with pytest.raises(rd.DataError, match="incomplete download \\(truncated zip") as e:
            rd.prepare("celeba", where, tmp_path / "p", progress=False)
        assert "no zip signature" not in str(e.value) and rd.CELEBA_URL in str(e.value)


def test_zip_without_images_is_an_error(tmp_path):
    z = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    with pytest.raises(rd.DataError, match="contains no image files"):
        rd.prepare("celeba", z, tmp_path / "p", progress=False)


def test_missing_empty_and_undecodable_sources_are_errors(tmp_path):
    with pytest.raises(rd.DataError, match="not found") as e:
        rd.prepare("celeba", tmp_path / "nope", progress=False)
    assert "img_align_celeba.zip" in str(e.value) and rd.CELEBA_URL in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(rd.DataError, match="no CelebA images found") as e:
        rd.prepare("celeba", tmp_path / "empty", progress=False)
    assert "subfolders" not in str(e.value)
    with pytest.raises(rd.DataError, match="no image files found"):
        rd.prepare("folder", tmp_path / "empty", progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1.jpg").write_bytes(b"")
    (bad / "2.jpg").write_text("text")
    with pytest.raises(rd.DataError, match="none of the 2 image files") as e:
        rd.prepare("celeba", bad, tmp_path / "p", workers=1, progress=False)
    assert (tmp_path / "p" / "report.json").exists() and not (tmp_path / "p" / "index.json").exists()


def test_celeba_kind_on_nested_folder_suggests_folder_kind(tmp_path):
    deep = tmp_path / "data" / "img_align_celeba" / "part1" / "faces"
    deep.mkdir(parents=True)
    face_like(0).save(deep / "000001.jpg")
    with pytest.raises(rd.DataError, match="no CelebA images found") as e:
        rd.prepare("celeba", tmp_path / "data", tmp_path / "p", progress=False)
    assert ("images in subfolders (e.g. img_align_celeba/part1/faces/)? use --data folder, "
            "which searches recursively") in str(e.value)
    assert len(rd.ShardDataset(rd.prepare("folder", tmp_path / "data", tmp_path / "q", workers=1,
                                          progress=False))) == 1


def test_dangling_symlink_is_skipped_with_a_reason_not_a_traceback(good_dir, tmp_path):
    folder = good_dir / "img_align_celeba"
    (folder / "000013.jpg").symlink_to(tmp_path / "gone.jpg")
    for kind, src in (("celeba", good_dir), ("folder", folder)):
        result = rd.prepare_dataset(kind, src, tmp_path / kind, workers=1, progress=False)
        assert result.count == 12 and [s["file"] for s in result.skipped] == ["000013.jpg"]
        assert "cannot read: FileNotFoundError" in result.skipped[0]["reason"]


def _die(task):
    os._exit(3)  # as if the kernel killed the worker for memory


def test_dead_worker_is_a_data_error(good_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(rd.preparation, "_work", _die)
    with pytest.raises(rd.DataError, match="a decoding process died .* fewer --workers"):
        rd.prepare("celeba", good_dir, tmp_path / "p", workers=2, progress=False)


def test_folder_kind_is_recursive_with_centre_square_crop(tmp_path, capsys):
    root = tmp_path / "pics"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "small").mkdir(parents=True)
    face_like(1, size=(100, 60)).save(root / "cats" / "wide.png")
    face_like(2, size=(50, 90)).save(root / "dogs" / "small" / "tall.png")
    face_like(3, size=(40, 40)).save(root / "top.png")
    result = rd.prepare_dataset("folder", root, tmp_path / "p", workers=1)
    ds = rd.ShardDataset(result.path)
    reason = "smaller than 64 px: upsampled"  # the centre square is min(W, H) on a side
    up = [{"file": "cats/wide.png", "size": "100x60", "reason": reason},
          {"file": "dogs/small/tall.png", "size": "50x90", "reason": reason},
          {"file": "top.png", "size": "40x40", "reason": reason}]
    assert result.upsampled == up
    report = json.loads((result.path / "report.json").read_text())
    assert report["upsampled_count"] == 3 and report["upsampled"] == up
    assert "warning: 3 of 3 images are smaller than 64 px (e.g. cats/wide.png, 100x60) and " \
        "were upsampled" in capsys.readouterr().err
    assert rd.prepare_dataset("folder", root, result.path, progress=False).upsampled == up  # reused
    assert ds.index["sources"] == ["cats/wide.png", "dogs/small/tall.png", "top.png"]
    expected = {"cats/wide.png": (20, 0, 80, 60), "dogs/small/tall.png": (0, 20, 50, 70),
                "top.png": (0, 0, 40, 40)}  # top.png is upsampled 40 -> 64
    for i, (name, box) in enumerate(expected.items()):
        direct = Image.open(root / name).convert("RGB").crop(box).resize((64, 64), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(ds[i], np.asarray(direct))


def test_prepared_folder_of_another_source_is_not_overwritten(good_dir, tmp_path):
    out = rd.prepare("celeba", good_dir, tmp_path / "p", workers=1, progress=False)
    before = shard_mtimes(out)
    other = tmp_path / "other"
    other.mkdir()
    face_like(1, size=(80, 80)).save(other / "x.png")
    for kind, src in (("folder", other), ("folder", good_dir), ("celeba", other)):
        with pytest.raises(rd.DataError, match="holds prepared data of .*img_align_celeba.*celeba.*"
                                               "pass another --out") as e:
            rd.prepare(kind, src, out, workers=1, progress=False)
        assert "\n" not in str(e.value)
        with pytest.raises(rd.DataError, match="holds prepared data of"):
            rd.ensure_prepared(kind, src, out, workers=1, progress=False)
    assert shard_mtimes(out) == before and len(rd.ShardDataset(out)) == 12


def test_default_locations(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("RAWGAN_DATA_DIR", str(tmp_path / "x"))
    assert rd.default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("RAWGAN_DATA_DIR")
    assert rd.default_data_dir() == Path("data/celeba")
    a = rd.default_prepared_dir("celeba", tmp_path / "x")
    assert a.parent == cache / "prepared" and a.name.startswith("celeba-64-") and len(a.name) == 22
    assert rd.default_prepared_dir("celeba", tmp_path / "y") != a


def test_default_cache_location_and_prepared_copy_outlives_source(good_dir, cache):
    out = rd.prepare("celeba", good_dir, workers=1, progress=False)
    assert out.parent == cache / "prepared"
    moved = good_dir.rename(good_dir.parent / "moved")
    assert rd.ensure_prepared("celeba", good_dir) == out  # the source is gone: reuse the copy
    assert rd.prepare("celeba", good_dir, progress=False) == out
    assert len(rd.ShardDataset(out)) == 12 and moved.exists()


def test_shard_dataset_gathers_across_shards_and_checks_indices(good_dir, tmp_path):
    out = rd.prepare("celeba", good_dir, tmp_path / "p", num_shards=5, workers=1, progress=False)
    ds = rd.ShardDataset(out)
    full = np.concatenate([np.load(out / e["file"]) for e in ds.index["shards"]])
    idx = [11, 0, 5, 5, 3]
    np.testing.assert_array_equal(ds.images(idx), full[idx])
    assert ds.images([]).shape == (0, 64, 64, 3)
    with pytest.raises(IndexError):
        ds.images([12])
    with pytest.raises(IndexError):
        ds.images([-1])
    with pytest.raises(rd.DataError, match="not a usable prepared dataset"):
        rd.ShardDataset(tmp_path / "nothing-here")


# ---------------------------------------------------------------------------------------------
# Loader


class ArrayDataset:
    """In-memory stand-in for ShardDataset: image i is filled with the value i % 256."""

    def __init__(self, n):
        self.data = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None] * np.ones(
            (1, 64, 64, 3), np.uint8)
        self.calls = 0

    def __len__(self):
        return len(self.data)

    def images(self, indices):
        self.calls += 1
        return self.data[np.asarray(indices)]


def ids(batch):
    """Recover ArrayDataset indices from a float batch."""
    return np.rint((batch[:, 0, 0, 0] + 1) * 127.5).astype(int)


def test_loader_yields_float32_nchw_in_range(good_dir, tmp_path):
    ds = rd.ShardDataset(rd.prepare("celeba", good_dir, tmp_path / "p", workers=1, progress=False))
    loader = rd.BatchLoader(ds, batch_size=5, seed=3)
    assert loader.batches_per_epoch == 2
    batches = list(loader.epoch_batches(0))
    assert len(batches) == 2
    for b, x in enumerate(batches):
        assert x.dtype == np.float32 and x.shape == (5, 3, 64, 64) and x.flags.c_contiguous
        assert x.min() >= -1.0 and x.max() <= 1.0
        raw = ds.images(loader.batch_indices(0, b))
        np.testing.assert_array_equal(x, raw.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    assert len(list(rd.BatchLoader(ds, 5, 3, drop_last=False).epoch_batches(0))[-1]) == 2
    raw = list(rd.BatchLoader(ds, 5, 3, as_uint8=True).epoch_batches(0))
    assert raw[0].dtype == np.uint8 and raw[0].shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(rd.to_float_nchw(raw[1]), batches[1])


def test_loader_order_is_deterministic_reshuffled_and_covers_the_epoch():
    ds = ArrayDataset(200)
    loader = rd.BatchLoader(ds, batch_size=10, seed=7)
    e0 = np.concatenate([ids(x) for x in loader.epoch_batches(0)])
    again = np.concatenate([ids(x) for x in rd.BatchLoader(ds, 10, seed=7).epoch_batches(0)])
    e1 = np.concatenate([ids(x) for x in loader.epoch_batches(1)])
    other_seed = np.concatenate([ids(x) for x in rd.BatchLoader(ds, 10, seed=8).epoch_batches(0)])
    np.testing.assert_array_equal(e0, again)
    np.testing.assert_array_equal(np.sort(e0), np.arange(200))
    np.testing.assert_array_equal(np.sort(e1), np.arange(200))
    assert (e0 != e1).mean() > 0.9 and (e0 != other_seed).mean() > 0.9
    np.testing.assert_array_equal(e0, np.random.default_rng([7, 0]).permutation(200))


def test_loader_resumes_at_start_batch_without_replaying():
    ds = ArrayDataset(100)
    loader = rd.BatchLoader(ds, batch_size=8, seed=1)
    full = [ids(x) for x in loader.epoch_batches(4)]
    ds.calls = 0
    resumed = [ids(x) for x in loader.epoch_batches(4, start_batch=9)]
    assert ds.calls == len(resumed) == loader.batches_per_epoch - 9 == 3
    for a, b in zip(resumed, full[9:]):
        np.testing.assert_array_equal(a, b)
    assert list(loader.epoch_batches(4, start_batch=12)) == []
    with pytest.raises(ValueError):
        loader.epoch_batches(4, start_batch=13)


def test_synchronous_loader_matches_threaded():
    ds = ArrayDataset(50)
    threaded = [ids(x) for x in rd.BatchLoader(ds, 7, seed=2, prefetch=3).epoch_batches(2)]
    sync = [ids(x) for x in rd.BatchLoader(ds, 7, seed=2, prefetch=0).epoch_batches(2)]
    assert len(sync) == 7
    for a, b in zip(threaded, sync):
        np.testing.assert_array_equal(a, b)


def loader_threads():
    return [t for t in threading.enumerate() if t.name == "rawgan-data-loader" and t.is_alive()]


def wait_for(condition, seconds=3.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_early_break_stops_the_producer_thread():
    loader = rd.BatchLoader(ArrayDataset(1000), batch_size=10, seed=0, prefetch=2)
    for i, _ in enumerate(loader.epoch_batches(0)):  # the iterator is dropped after the loop
        if i == 1:
            break
    assert wait_for(lambda: not loader_threads())
    with loader.epoch_batches(1) as it:
        next(it)
        assert loader_threads()
    assert not loader_threads()


def test_producer_errors_are_raised_in_the_consumer():
    class Broken(ArrayDataset):
        def images(self, indices):
            if self.calls == 2:
                raise RuntimeError("disk on fire")
            return super().images(indices)

    it = rd.BatchLoader(Broken(100), batch_size=10, seed=0).epoch_batches(0)
    next(it), next(it)
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(it)
    assert wait_for(lambda: not loader_threads())
    with pytest.raises(StopIteration):
        next(it)


def test_dataset_smaller_than_a_batch_is_a_data_error():
    with pytest.raises(rd.DataError, match="fewer than one batch"):
        rd.BatchLoader(ArrayDataset(63), batch_size=64, seed=0)


# ---------------------------------------------------------------------------------------------
# Back to pictures


def test_to_uint8_nhwc_inverts_the_loader_scaling():
    u = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    x = rd.to_float_nchw(u)
    assert x.shape == (4, 3, 5, 6)
    np.testing.assert_array_equal(rd.to_uint8_nhwc(x), u)
    odd = np.array([np.nan, -3.0, 3.0, 0.0], np.float32).reshape(1, 1, 2, 2).repeat(3, axis=1)
    np.testing.assert_array_equal(rd.to_uint8_nhwc(odd)[0, :, :, 0], [[128, 0], [255, 128]])


def test_save_grid_writes_an_8x8_png_atomically(tmp_path):
    x = np.full((64, 3, 64, 64), -1.0, np.float32)
    x[9] = 1.0  # image 9 = row 1, column 1 is white
    path = rd.save_grid(x, tmp_path / "samples" / "step_100.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (8 * 66 + 2, 8 * 66 + 2)
        grid = np.asarray(png.convert("RGB"))
    assert (grid[68:132, 68:132] == 255).all() and (grid[2:66, 2:66] == 0).all()
    assert os.listdir(tmp_path / "samples") == ["step_100.png"]
    small = rd.make_grid(x[:3], nrow=8, padding=0)
    assert small.shape == (64, 192, 3)


# ---------------------------------------------------------------------------------------------
# Real CelebA


def test_real_celeba_faces_prepare_to_64x64(tmp_path):
    try:  # a folder or the zip, wherever CELEBA_DIR points; the first 50 images are copied out
        source = rd.sources.find_source("celeba", CELEBA_DIR)
    except rd.DataError as e:
        pytest.skip(f"real CelebA images not found at {CELEBA_DIR}: {e}")
    if len(source.files) < 50:
        pytest.skip(f"fewer than 50 real CelebA images at {CELEBA_DIR}")
    copy = tmp_path / "real" / "img_align_celeba"
    copy.mkdir(parents=True)
    files = [copy / name.rsplit("/", 1)[-1] for name in source.files[:50]]
    with rd.sources.Reader(source.type, source.path) as reader:
        for name, f in zip(source.files, files):
            f.write_bytes(reader.read(name))
    ds = rd.ShardDataset(rd.prepare("celeba", copy.parent, tmp_path / "p", progress=False), verify=True)
    assert len(ds) == 50 and ds.index["source_sizes"] == {"178x218": 50} and not ds.index["skipped"]
    assert ds.index["sources"] == [f.name for f in files]
    np.testing.assert_array_equal(ds[0], celeba_crop(files[0]))
    faces = ds.images(range(50)).astype(np.float32)
    assert 40 < faces.mean() < 215 and faces.std() > 30  # real pictures, not blank
    x = next(iter(rd.BatchLoader(ds, 16, seed=0).epoch_batches(0)))
    assert x.shape == (16, 3, 64, 64) and -1 <= x.min() < -0.5 and 0.5 < x.max() <= 1
