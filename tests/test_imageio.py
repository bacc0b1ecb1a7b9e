"""Reading images and masks: every PIL mode, anti-aliased resizing, masks, one-line errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mribench.api.errors import DataError
from mribench.data.imageio import (
    images_by_stem,
    load_image,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
    thumbnail,
)


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda: Image.new("L", (4, 3), 128), 128 / 255),
    # PIL luma: 299/1000 * 255 = 76.2 -> 76
    (lambda: Image.new("RGB", (4, 3), (255, 0, 0)), 76 / 255),
    # Opaque RGBA keeps its value; transparent goes to black (background).
    (lambda: Image.new("RGBA", (4, 3), (200, 200, 200, 255)), 200 / 255),
    (lambda: Image.new("RGBA", (4, 3), (200, 200, 200, 0)), 0.0),
    (lambda: Image.new("LA", (4, 3), (90, 255)), 90 / 255),
    (lambda: Image.new("1", (4, 3), 1), 1.0),
])
def test_modes_to_gray(tmp_path, make, expected):
    path = _save(make(), tmp_path / "x.png")
    out = read_image(path)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)  # index 1 is pure green: luma 150
    np.testing.assert_allclose(read_image(_save(img, tmp_path / "p.png")), 150 / 255, atol=1e-6)
    img.info["transparency"] = 1
    np.testing.assert_allclose(read_image(_save(img, tmp_path / "pt.png", transparency=1)), 0.0)


def test_sixteen_bit_is_min_max_scaled(tmp_path):
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "x.png")
    assert Image.open(path).mode == "I;16"
    np.testing.assert_allclose(read_image(path), arr / 4000.0, atol=1e-6)
    flat = _save(Image.fromarray(np.full((3, 3), 7, np.uint16)), tmp_path / "f.png")
    assert not read_image(flat).any()


def test_float_tiff(tmp_path):
    arr = np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    path = _save(Image.fromarray(arr), tmp_path / "x.tif")
    np.testing.assert_allclose(read_image(path), (arr + 1) / 4, atol=1e-6)


def test_resize_is_anti_aliased_and_stretches():
    checker = (np.indices((256, 128)).sum(axis=0) % 2).astype(np.float32)
    out = resize_image(checker, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    # Nearest-neighbour would give pure 0 or 1; an anti-aliased filter averages to 0.5.
    assert np.abs(out - 0.5).max() < 0.05
    const = resize_image(np.full((37, 53), 0.3, np.float32), 16)
    np.testing.assert_allclose(const, 0.3, atol=1e-6)


def test_resize_mask_area_threshold():
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:2] = True      # a full 2x2 cell -> kept
    mask[2, 2] = True          # a quarter of a cell -> dropped
    mask[4:6, 4] = True        # half of a cell -> kept (>= 0.5)
    out = resize_mask(mask, 4)
    expected = np.zeros((4, 4), bool)
    expected[0, 0] = expected[2, 2] = True
    assert np.array_equal(out, expected)
    assert resize_mask(np.ones((5, 7), bool), 16).all()


def test_thumbnail_shape():
    img = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    th = thumbnail(img)
    assert th.shape == (32, 32) and th.dtype == np.float32
    assert abs(float(th.mean()) - float(img.mean())) < 0.02


def test_read_mask_conventions_and_size_check(tmp_path):
    m = np.zeros((6, 5), np.uint8)
    m[1:3, 1:4] = 1
    one = _save(Image.fromarray(m), tmp_path / "one.png")
    full = _save(Image.fromarray(m * 255), tmp_path / "full.png")
    empty = _save(Image.fromarray(m * 0), tmp_path / "empty.png")
    assert np.array_equal(read_mask(one), m.astype(bool))
    assert np.array_equal(read_mask(full), m.astype(bool))
    assert not read_mask(empty).any()
    with pytest.raises(DataError, match="full.png.*5x6 px but its image is 7x6") as info:
        read_mask(full, shape=(6, 7))
    assert "\n" not in str(info.value)


def test_load_image_with_mask_and_regions(tmp_path):
    img = _save(Image.new("L", (40, 20), 100), tmp_path / "img.png")
    m = np.zeros((20, 40), np.uint8)
    m[:, :20] = 255
    mask = _save(Image.fromarray(m), tmp_path / "mask.png")
    loaded = load_image(img, 10, mask_path=mask)
    assert loaded.original_size == (20, 40)
    assert loaded.image.shape == (10, 10) and loaded.mask is not None
    assert loaded.mask[:, :5].all() and not loaded.mask[:, 5:].any()
    assert loaded.mask_pixels == 400
    regions = [{"shape_attributes": {"name": "rect", "x": 0, "y": 0, "width": 20, "height": 20}}]
    assert np.array_equal(load_image(img, 10, regions=regions).mask, loaded.mask)
    small = _save(Image.fromarray(m[:10]), tmp_path / "small.png")
    with pytest.raises(DataError, match="small.png"):
        load_image(img, 10, mask_path=small)


def test_jpeg_draft_is_close_to_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:800, :600]
    arr = (127 + 100 * np.sin(xx / 40.0) * np.cos(yy / 55.0) + rng.normal(0, 5, xx.shape))
    path = _save(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB"),
                 tmp_path / "big.jpg", quality=90)
    fast = load_image(path, 128, draft=True)
    slow = load_image(path, 128, draft=False)
    assert fast.original_size == slow.original_size == (800, 600)
    assert float(np.abs(fast.image - slow.image).mean()) < 2 / 255


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("content, words", [
    (lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "corrupt or truncated"),
    (lambda: b"", "empty file"),
    (lambda: b"this is not an image at all", "not an image"),
])
def test_bad_files_are_one_line_data_errors(tmp_path, content, words):
    path = tmp_path / "scan_042.jpg"
    path.write_bytes(content())
    with pytest.raises(DataError, match=words) as info:
        load_image(path, 32)
    message = str(info.value)
    assert "scan_042.jpg" in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothere.png: file not found"):
        read_image(tmp_path / "nothere.png")


def test_images_by_stem_sorts_strips_and_refuses_two_files_with_one_stem(tmp_path) -> None:
    for name in ("b.png", "a.jpg", "c_mask.png", ".hidden.png"):
        Image.new("L", (4, 4)).save(tmp_path / name, format="PNG" if "png" in name else "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    found = images_by_stem(tmp_path, "mask", strip=("_mask",))
    assert list(found) == ["a", "b", "c"] and found["c"].name == "c_mask.png"
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"a\.png: same stem as a\.jpg"):
        images_by_stem(tmp_path)
