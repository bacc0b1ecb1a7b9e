"""Hardening (issue 14): masks, VIA annotations, odd file names and damaged caches."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.api.errors import DataError
from mribench.data.imageio import read_mask
from mribench.data.via import rasterise, read_via, region_mask

LGG_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg-kaggle3m-dev"


def _save(arr: np.ndarray, path: Path) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mribench" and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- the mask rule


def test_mask_rule_0_1_and_0_255_without_warning(tmp_path, caplog):
    m = np.zeros((6, 7), np.uint8)
    m[1:4, 2:5] = 1
    with caplog.at_level(logging.WARNING, logger="mribench"):
        assert np.array_equal(read_mask(_save(m, tmp_path / "one.png")), m > 0)
        assert np.array_equal(read_mask(_save(m * 255, tmp_path / "full.png")), m > 0)
        assert not read_mask(_save(m * 0, tmp_path / "empty.png")).any()
    assert _warnings(caplog) == []


def test_mask_rule_threshold_is_fixed_not_half_the_maximum(tmp_path):
    """A 0/255 mask with JPEG-like noise: a 140 pixel is tumour, a 120 one is not, whatever
    the file's maximum (the old rule, half the maximum, moved with it)."""
    m = np.zeros((4, 4), np.uint8)
    m[0, 0], m[0, 1], m[0, 2], m[0, 3] = 255, 140, 120, 6
    m[1:, :] = 250
    out = read_mask(_save(m, tmp_path / "noisy.png"))
    assert out[0, 0] and out[0, 1] and not out[0, 2] and not out[0, 3] and out[1:].all()
    m[0, 0] = 200  # a lower maximum does not change any other pixel's label
    m[1:, :] = 199
    again = read_mask(_save(m, tmp_path / "noisy2.png"))
    assert again[0, 1] and not again[0, 2]


def test_mask_jpeg_compressed_0_255_reads_like_the_png(tmp_path, caplog):
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 20:44] = 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=75)
    with caplog.at_level(logging.WARNING, logger="mribench"):
        out = read_mask(tmp_path / "m.jpg")
    assert _warnings(caplog) == []
    assert (out != (m > 0)).sum() <= 4


def test_mask_gradient_warns_naming_the_file(tmp_path, caplog):
    grad = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    path = _save(grad, tmp_path / "gradient.png")
    with caplog.at_level(logging.WARNING, logger="mribench"):
        out = read_mask(path)
    assert np.array_equal(out, grad >= 128)
    warned = _warnings(caplog)
    assert len(warned) == 1 and str(path) in warned[0]


def test_mask_single_small_value_warns_and_reads_empty(tmp_path, caplog):
    m = np.zeros((5, 5), np.uint8)
    m[2, 2] = 3
    path = _save(m, tmp_path / "three.png")
    with caplog.at_level(logging.WARNING, logger="mribench"):
        out = read_mask(path)
    assert not out.any()
    warned = _warnings(caplog)
    assert len(warned) == 1 and str(path) in warned[0] and "neither 0/1 nor 0/255" in warned[0]


def test_mask_fractional_values_warn(tmp_path, caplog):
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = 0.3
    path = tmp_path / "soft.tif"
    Image.fromarray(m, mode="F").save(path)
    with caplog.at_level(logging.WARNING, logger="mribench"):
        out = read_mask(path)
    assert out[1, 1] and out.sum() == 1
    assert any(str(path) in w for w in _warnings(caplog))


def test_lgg_masks_load_as_before(caplog):
    """The LGG dev masks are 0/255: the new rule gives exactly the old half-maximum masks."""
    files = sorted((LGG_DIR / "kaggle_3m").glob("*/*_mask.tif"))
    if not files:
        pytest.skip(f"LGG dev data not found at {LGG_DIR}")
    with caplog.at_level(logging.WARNING, logger="mribench"):
        for path in files[::5]:
            arr = np.asarray(Image.open(path), dtype=np.float64)
            old = arr >= arr.max() / 2 if arr.max() > 0 else np.zeros(arr.shape, bool)
            assert np.array_equal(read_mask(path), old), path
    assert _warnings(caplog) == []


# --------------------------------------------------------------------------- VIA


def test_via_polygon_with_strings_is_a_data_error():
    attrs = {"name": "polygon", "all_points_x": ["a", "b", "c"], "all_points_y": [1, 2, 3]}
    with pytest.raises(DataError, match="all_points_x must hold numbers"):
        region_mask(attrs, 10, 10, source="img.jpg")


@pytest.mark.parametrize("value", [-5, 1e12, -1e12, 10**400, 1e300])
def test_via_far_coordinates_are_clipped_with_a_warning(caplog, value):
    attrs = {"name": "polygon", "all_points_x": [2, value, 2], "all_points_y": [2, 2, 8]}
    with caplog.at_level(logging.WARNING, logger="mribench"):
        mask = rasterise([{"shape_attributes": attrs}], 10, 12, source="yes/y1.jpg")
    assert mask.shape == (10, 12)
    warned = _warnings(caplog)
    assert len(warned) == 1 and "yes/y1.jpg" in warned[0] and "region 0" in warned[0]
    assert "clipped" in warned[0]


def test_via_clipping_keeps_shapes_partly_outside_exact(caplog):
    inside = region_mask({"name": "polygon", "all_points_x": [-3, 6, 6, -3],
                          "all_points_y": [2, 2, 5, 5]}, 8, 8)
    expected = np.zeros((8, 8), bool)
    expected[2:6, 0:7] = True
    assert np.array_equal(inside, expected)
    huge = region_mask({"name": "circle", "cx": 4, "cy": 4, "r": 1e12}, 8, 8)
    assert huge.all()
    rect = region_mask({"name": "rect", "x": -2, "y": 6, "width": 1e12, "height": 5}, 8, 8)
    assert rect[6:].all() and not rect[:6].any()


@pytest.mark.parametrize("attrs", [
    {"name": "polygon", "all_points_x": [1, float("nan"), 3], "all_points_y": [1, 2, 3]},
    {"name": "circle", "cx": float("inf"), "cy": 2, "r": 3},
    {"name": "ellipse", "cx": 2, "cy": 2, "rx": 3, "ry": 2, "theta": float("nan")},
    {"name": "rect", "x": 1, "y": 1, "width": float("-inf"), "height": 2},
])
def test_via_nan_or_inf_skips_the_region_with_a_warning(caplog, attrs):
    good = {"name": "rect", "x": 0, "y": 0, "width": 2, "height": 2}
    with caplog.at_level(logging.WARNING, logger="mribench"):
        mask = rasterise([{"shape_attributes": good}, {"shape_attributes": attrs}], 6, 6,
                         source="yes/y2.jpg")
    assert mask.sum() == 4  # the good region only
    warned = _warnings(caplog)
    assert len(warned) == 1 and "yes/y2.jpg" in warned[0] and "region 1" in warned[0]
    assert "skipped" in warned[0]


@pytest.mark.parametrize("filename", ["../etc/passwd.jpg", "/etc/passwd.jpg", "a/../../b.jpg",
                                      "..\\b.jpg", "C:\\x.jpg"])
def test_via_filename_outside_the_folder_is_refused(tmp_path, filename):
    path = tmp_path / "annotations_train.json"
    path.write_text(json.dumps({"k": {"filename": filename, "regions": []}}))
    with pytest.raises(DataError) as info:
        read_via(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_via_plain_filename_is_kept(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"k": {"filename": "y1.jpg", "regions": []}}))
    assert read_via(path) == {"y1.jpg": []}


def test_via_regions_not_a_list_is_a_data_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"k": {"filename": "y1.jpg", "regions": 5}}))
    with pytest.raises(DataError, match="regions"):
        read_via(path)


# --------------------------------------------------------------------------- odd file names


@pytest.mark.skipif(os.name != "posix", reason="needs byte file names")
def test_folder_with_non_utf8_file_name_loads(tmp_path, monkeypatch):
    from mribench.data.load import files_fingerprint, load_dataset

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for cls in ("yes", "no"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            name = os.fsdecode(b"scan\xff%d.png" % i) if i == 0 else f"scan{i}.png"
            _save((rng.random((12, 12)) * 255).astype(np.uint8), root / cls / name)
    odd = root / "yes" / os.fsdecode(b"scan\xff0.png")
    assert files_fingerprint([odd], root)  # no UnicodeEncodeError
    _, samples = load_dataset(f"folder:{root}", image_size=8)
    assert len(samples) == 4
    _, again = load_dataset(f"folder:{root}", image_size=8)  # from the cache
    assert [s.id for s in again] == [s.id for s in samples]


def test_fingerprint_of_plain_names_is_unchanged(tmp_path):
    """os.fsencode gives the bytes the old f-string encode gave, so caches stay valid."""
    import hashlib

    from mribench.data.load import files_fingerprint

    path = tmp_path / "a é.png"
    path.write_bytes(b"x")
    st = path.stat()
    old = hashlib.sha256(f"a é.png\0{st.st_size}\0{st.st_mtime_ns}\n".encode()).hexdigest()
    assert files_fingerprint([path], tmp_path) == old


# --------------------------------------------------------------------------- damaged caches


def test_truncated_feature_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    from mribench.api.feature_cache import FeatureCache
    from mribench.api.types import Sample

    samples = [Sample(id=f"s{i}", group="", label=i % 2,
                      image=np.full((8, 8), i / 4, np.float32)) for i in range(3)]

    def compute(batch):
        return np.array([[float(s.image.mean()), 1.0] for s in batch])

    first = FeatureCache(tmp_path).features("f", {"a": 1}, samples, compute)
    (cache_file,) = tmp_path.glob("*/*.npy")  # the table's one segment
    cache_file.write_bytes(cache_file.read_bytes()[:140])  # truncated by a crash
    for _ in range(2):  # and every later --resume works too
        cache = FeatureCache(tmp_path)
        with caplog.at_level(logging.WARNING, logger="mribench"):
            again = cache.features("f", {"a": 1}, samples, compute)
        assert np.array_equal(first, again)
    warned = _warnings(caplog)
    assert len(warned) == 1 and str(cache_file) in warned[0]
    assert FeatureCache(tmp_path).features("f", {"a": 1}, samples, compute).shape == (3, 2)


def test_truncated_data_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    from mribench.data.load import load_dataset

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path))
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for cls in ("yes", "no"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            _save((rng.random((12, 12)) * 255).astype(np.uint8), root / cls / f"s{i}.png")
    _, first = load_dataset(f"folder:{root}", image_size=8)
    (entry,) = (tmp_path / "datasets").iterdir()
    images = entry / "images.bin"
    images.write_bytes(images.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged cache"):
        _, again = load_dataset(f"folder:{root}", image_size=8)
    assert [s.id for s in again] == [s.id for s in first]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    _, third = load_dataset(f"folder:{root}", image_size=8)  # rewritten: no warning now
    assert len(third) == 4
