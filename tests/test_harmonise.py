"""Br35H without its shortcut: the head helpers, ``br35h[harmonise=true]``, and the shortcut
audit's image-content probe that measures what harmonising takes away."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.api.types import Sample
from mribench.data.head import CLIP_SD, harmonise, head_box, head_mask, pad_square
from mribench.data.load import load_dataset
from mribench.split.shortcuts import CONTENT_FEATURES, content_features, shortcut_audit


def _head(h: int = 60, w: int = 80, *, centre=(30, 40), radii=(20, 25), level: float = 0.6,
          background: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, true head) of an elliptic 'head' with a dark ventricle and a bright spot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    head = ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1
    image = np.full((h, w), background, np.float32)
    image[head] = level + rng.normal(0, 0.05, int(head.sum())).astype(np.float32)
    image[centre[0] - 2:centre[0] + 2, centre[1] - 3:centre[1] + 3] = 0.02  # a dark hole inside
    image[centre[0] + 8, centre[1] + 8] = 1.0
    return np.clip(image, 0, 1), head


def test_head_mask_fills_holes_and_ignores_specks():
    image, head = _head()
    image[2, 2] = 0.9  # a bright speck (text, a marker) apart from the head
    mask = head_mask(image)
    assert mask[30, 40]  # the dark hole inside is filled
    assert not mask[2, 2]  # the speck is not the largest component
    assert (mask ^ head).sum() <= 0.02 * head.sum()
    assert head_box(mask) == (10, 51, 15, 66)
    assert not head_mask(np.zeros((8, 8), np.float32)).any()
    assert head_box(np.zeros((4, 6), bool)) == (0, 4, 0, 6)


def test_pad_square_centres():
    out = pad_square(np.ones((2, 4), np.float32))
    assert out.shape == (4, 4) and out[1:3].all() and not out[0].any() and not out[3].any()


def test_harmonise_removes_framing_and_brightness():
    """The same head, framed, padded and lit differently, comes out (nearly) the same."""
    a, _ = _head()
    b, _ = _head(h=120, w=90, centre=(70, 40), level=0.3, background=0.03, seed=0)
    ha, hb = harmonise(a, 32), harmonise(b, 32)
    assert ha.image.shape == (32, 32) and ha.image.dtype == np.float32
    for h in (ha, hb):
        inside = h.image > 0
        assert 0.0 <= h.image.min() and h.image.max() <= 1.0
        assert inside.mean() > 0.5  # the head fills the square's width after cropping
        assert h.image[inside].mean() == pytest.approx(0.5, abs=0.05)
    assert np.abs(ha.image - hb.image).mean() < 0.05
    # the head's z-scores are clipped at CLIP_SD: the bright spot maps to at most 1
    assert CLIP_SD == 3.0


def test_harmonise_moves_the_mask_with_the_head():
    image, _ = _head()
    mask = np.zeros_like(image, dtype=bool)
    mask[20:30, 30:40] = True
    small = harmonise(image, 41, mask)
    # the same mask drawn at twice the image's size (a draft-decoded JPEG) lands alike
    big = harmonise(image, 41, np.kron(mask, np.ones((2, 2), bool)))
    assert small.mask is not None and big.mask is not None
    assert (small.mask ^ big.mask).sum() <= 4
    # box (10, 51, 15, 66): 41 x 51 -> padded to 51 x 51 (5 rows above), 41 px output
    rows, cols = np.nonzero(small.mask)
    scale = 41 / 51
    assert rows.min() == pytest.approx((20 - 10 + 5) * scale, abs=1.5)
    assert cols.min() == pytest.approx((30 - 15) * scale, abs=1.5)


def _two_sources(n: int, *, harmonised: bool) -> list[Sample]:
    """Label 1 from a 'scanner' with a noisy background and a small head in a big frame;
    label 0 with a black background and a head filling the frame. Same anatomy otherwise."""
    out = []
    for i in range(n):
        label = i % 2
        rng = np.random.default_rng(i)
        radii = (int(rng.integers(18, 24)), int(rng.integers(20, 26)))
        if label:
            image, _ = _head(90, 90, centre=(45, 45), radii=radii, level=0.4,
                             background=0.05, seed=i)
            image = np.clip(image + rng.normal(0, 0.02, image.shape).astype(np.float32) *
                            (image <= 0.06), 0, 1)
        else:
            image, _ = _head(50, 56, centre=(25, 28), radii=radii, level=0.7, seed=i)
        image = harmonise(image, 32).image if harmonised else (
            np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR)))
        out.append(Sample(f"s{i}", f"s{i}", label, np.clip(image, 0, 1).astype(np.float32)))
    return out


def test_content_probe_sees_sources_and_harmonising_removes_them():
    original = _two_sources(120, harmonised=False)
    audit = shortcut_audit(original[:80], original[80:])
    assert audit["content"]["accuracy"] >= 0.95 and "content" in audit["flagged"]
    assert audit["content"]["features"] == list(CONTENT_FEATURES)
    harmonised = _two_sources(120, harmonised=True)
    after = shortcut_audit(harmonised[:80], harmonised[80:])
    # measured: 1.0 before, 0.675 after (what is left: partial-volume pixels at the head's
    # edge, resized from heads of different sizes)
    assert after["content"]["accuracy"] <= 0.8
    json.dumps(after)


def test_content_features_known_values():
    image = np.zeros((64, 64), np.float32)
    image[16:48, 16:48] = 0.5  # a square 'head' on black: fills its box, a quarter of the image
    (row,) = content_features([Sample("a", "a", 1, image)])
    assert dict(zip(CONTENT_FEATURES, row, strict=True)) == pytest.approx(
        {"outside_mean": 0.0, "outside_std": 0.0, "zero_fraction": 0.75,
         "head_fraction": 0.25, "box_fill": 1.0})


# --------------------------------------------------------------------------- br35h option


def _jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "L").save(path, quality=95)


def _fake_br35h(root: Path) -> Path:
    for i in range(3):
        _jpeg(root / "yes" / f"y{i}.jpg", _head(60, 80, seed=i)[0])
        _jpeg(root / "no" / f"no{i}.jpg", _head(90, 70, centre=(45, 35), level=0.4, seed=10 + i)[0])
    data = {"y0.jpg1": {"filename": "y0.jpg", "size": 1, "regions": [{"shape_attributes": {
        "name": "rect", "x": 30, "y": 20, "width": 10, "height": 10}}]}}
    folder = root / "Br35H-Mask-RCNN" / "TRAIN"
    folder.mkdir(parents=True)
    (folder / "annotations_train.json").write_text(json.dumps(data))
    return root


def test_br35h_harmonise_keeps_ids_groups_sizes_and_split_options(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    root = _fake_br35h(tmp_path / "br35h")
    plain_ds, plain = load_dataset("br35h", data_dir=root, image_size=32)
    ds, harm = load_dataset("br35h[harmonise=true]", data_dir=root, image_size=32)
    assert ds.options["harmonise"] is True and "harmonise" not in ds.split_options
    assert ds.split_options == plain_ds.split_options
    assert [(s.id, s.group, s.label, s.original_size, s.source) for s in harm] == [
        (s.id, s.group, s.label, s.original_size, s.source) for s in plain]
    by_id = {s.id: s for s in harm}
    assert by_id["yes/y0"].original_size == (60, 80)  # the file's size, not the crop's
    assert by_id["no/no0"].original_size == (90, 70)
    assert by_id["yes/y0"].mask is not None and by_id["yes/y0"].mask.any()
    for s in harm:  # black outside the head, the head's mean near 0.5
        assert s.image[0, 0] == 0.0 and s.image[s.image > 0].mean() == pytest.approx(0.5, abs=0.1)
    assert not np.allclose(harm[0].image, plain[0].image)
    # distinct cache entries; harmonise=false keeps the old fingerprint
    assert "('harmonise'" not in plain_ds.fingerprint() and "('harmonise', True)" in ds.fingerprint()
