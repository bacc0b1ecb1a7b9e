"""Data-set plugins (synthetic, br35h, folder) and load_dataset: content, options, errors, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mribench.api.errors import DataError, MribenchError
from mribench.api.registry import datasets
from mribench.data.load import find_data_dir, load_dataset, read_images
from mribench.data.phantom import AREA_RANGE, generate
from mribench.datasets.br35h import Br35H
from mribench.datasets.folder import Folder
from mribench.datasets.synthetic import Synthetic


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MRIBENCH_DATA", raising=False)


def test_plugins_are_registered():
    assert {"br35h", "folder", "synthetic"} <= set(datasets())


# --------------------------------------------------------------------------- synthetic


def test_synthetic_content(tiny_samples):
    samples = tiny_samples(n=40, size=64, seed=3)
    assert len(samples) == 40 and sum(s.label for s in samples) == 20
    assert len({s.id for s in samples}) == 40
    for s in samples:
        assert s.image.dtype == np.float32 and s.image.shape == (64, 64)
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        assert s.mask is not None and s.mask.dtype == bool and s.mask.shape == (64, 64)
        assert s.mask.any() == bool(s.label)
    # A tumour is brighter or darker than the brain around it, not invisible.
    diffs = [abs(float(s.image[s.mask].mean() - s.image[~s.mask & (s.image > 0.2)].mean()))
             for s in samples if s.label]
    assert np.median(diffs) > 0.03


def test_synthetic_is_deterministic_and_seeded(tiny_samples):
    a, b, c = tiny_samples(12, 48, 1), tiny_samples(12, 48, 1), tiny_samples(12, 48, 2)
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
               for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_phantom_variety_and_difficulty():
    slices = generate(120, 64, seed=0)
    tumours = [s for s in slices if s.label]
    contrasts = {s.meta["contrast"] for s in tumours}
    assert contrasts == {"hyper", "weak", "ring"}
    areas = np.array([s.mask.mean() for s in tumours])
    assert areas.min() < 0.01 and areas.max() > 0.08         # small and large tumours
    assert areas.max() <= AREA_RANGE[1] * 1.5
    copies = [s for s in slices if s.meta["copy"]]
    assert 3 <= len(copies) <= 30
    by_index = {s.index: s for s in slices}
    for c in copies:   # a copy re-images its original: same group, label and mask
        original = by_index[c.group]
        assert c.label == original.label and np.array_equal(c.mask, original.mask)
        assert not np.array_equal(c.image, original.image)


def test_synthetic_options_and_errors():
    ds = Synthetic(image_size=32, n=10, seed=4)
    assert ds.options == {"n": 10, "seed": 4, "duplicates": 0.2}
    assert Synthetic(image_size=32, n=10, duplicates=0).load()[0].group == "synthetic/00000"
    with pytest.raises(DataError, match=r"synthetic: option 'n' must be an integer in \[4, inf\]"):
        Synthetic(n="many")
    with pytest.raises(DataError, match="unknown option.*size.*known: duplicates, n, seed"):
        Synthetic(size=3)


def test_load_dataset_spec_options_and_cache(monkeypatch):
    ds, samples = load_dataset("synthetic[n=12,image_size=32]")
    assert isinstance(ds, Synthetic) and len(samples) == 12
    assert samples[0].image.shape == (32, 32)

    def boom(self):
        raise AssertionError("second load must come from the cache")

    monkeypatch.setattr(Synthetic, "load", boom)
    _, again = load_dataset("synthetic[n=12]", image_size=32)
    for x, y in zip(samples, again, strict=True):
        assert (x.id, x.group, x.label, x.source, x.original_size) == (
            y.id, y.group, y.label, y.source, y.original_size)
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
    with pytest.raises(MribenchError, match="image_size must be an integer from 8 to 1024"):
        load_dataset("synthetic[image_size=3]")


# --------------------------------------------------------------------------- folder


def _png(path, value=100, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _mask(path, box=None, size=(20, 16)):
    arr = np.zeros(size[::-1], np.uint8)
    if box is not None:
        r0, r1, c0, c1 = box
        arr[r0:r1, c0:c1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_folder_class_folders_and_pairs(tmp_path):
    root = tmp_path / "mine"
    for i in range(3):
        _png(root / "yes" / f"a{i}.png", 50 + 60 * i)
        _png(root / "no" / f"b{i}.jpg", 40 + 70 * i)
    (root / "no" / "notes.txt").write_text("ignored")
    _png(root / "images" / "case1.png")
    _mask(root / "masks" / "case1_mask.png", (0, 8, 0, 20))
    _png(root / "images" / "case2.png", 30)
    _mask(root / "masks" / "case2.png")
    ds, samples = load_dataset(f"folder:{root}", image_size=8)
    assert ds.split_name == "folder-mine"
    by_id = {s.id: s for s in samples}
    assert sorted(by_id) == ["images/case1", "images/case2", "no/b0", "no/b1", "no/b2",
                             "yes/a0", "yes/a1", "yes/a2"]
    assert [by_id[f"yes/a{i}"].label for i in range(3)] == [1, 1, 1]
    assert by_id["no/b0"].label == 0 and by_id["no/b0"].mask is None
    case1 = by_id["images/case1"]
    assert case1.label == 1 and case1.mask[:4].all() and not case1.mask[4:].any()
    assert case1.original_size == (16, 20)
    assert by_id["images/case2"].label == 0 and not by_id["images/case2"].mask.any()
    np.testing.assert_allclose(by_id["yes/a1"].image, 110 / 255, atol=1e-6)


def test_folder_named_classes(tmp_path):
    for name, n in (("tumour", 2), ("healthy", 2)):
        for i in range(n):
            _png(tmp_path / name / f"{name}{i}.png", 20 + 40 * i)
    _, samples = load_dataset(f"folder:{tmp_path}[positive=tumour,negative=healthy]",
                              image_size=8)
    assert {s.id: s.label for s in samples} == {"tumour/tumour0": 1, "tumour/tumour1": 1,
                                               "healthy/healthy0": 0, "healthy/healthy1": 0}
    with pytest.raises(DataError, match="yes.*class folder not found"):
        load_dataset(f"folder:{tmp_path}[negative=healthy]", image_size=8)


@pytest.mark.parametrize("build, words", [
    (lambda r: (_png(r / "yes" / "a.png"), (r / "no").mkdir()), r"no: no images"),
    (lambda r: _png(r / "yes" / "a.png"), r"no: class folder not found"),
    (lambda r: (_png(r / "images" / "x.png"), _mask(r / "masks" / "y.png")), r"y.png: mask without"),
    (lambda r: (_png(r / "images" / "x.png"), _png(r / "images" / "z.png"),
                _mask(r / "masks" / "x.png")), r"z.png: image without a mask"),
    (lambda r: (_png(r / "images" / "x.png"), _mask(r / "masks" / "x.png", size=(10, 10))),
     r"x.png: mask is 10x10 px but its image is 20x16"),
    (lambda r: (r / "other").mkdir(), r"neither class folders"),
    (lambda r: (_png(r / "yes" / "a.png"), _png(r / "no" / "b.png"),
                (r / "no" / "broken.jpg").write_bytes(b"")), r"broken.jpg: empty file"),
])
def test_folder_errors_name_the_file(tmp_path, build, words):
    root = tmp_path / "data"
    root.mkdir()
    build(root)
    with pytest.raises(DataError, match=words) as info:
        load_dataset(f"folder:{root}", image_size=8)
    assert "\n" not in str(info.value)


def test_folder_missing_path(tmp_path):
    with pytest.raises(DataError, match="nowhere: folder not found"):
        Folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="needs a path"):
        Folder(None)


def test_read_images_in_threads_reports_the_bad_file(tmp_path):
    paths = [_png(tmp_path / f"i{i:03d}.png", i) for i in range(70)]
    batch = read_images(paths, 8, workers=2)
    assert batch.images.shape == (70, 8, 8) and batch.thumbnails.shape == (70, 32, 32)
    np.testing.assert_allclose(batch.images[:, 0, 0], np.arange(70) / 255, atol=1e-6)
    (tmp_path / "i013.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="i013.png"):
        read_images(paths, 8, workers=2)


# --------------------------------------------------------------------------- br35h layout


def _pattern(path, flip: bool):
    ramp = np.add.outer(np.arange(30), np.arange(40) if not flip else -np.arange(40))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((100 + 2 * ramp - ramp.min()).astype(np.uint8)).save(path)


def _fake_br35h(root):
    for i in range(3):  # identical copies: one near-duplicate group per class
        _pattern(root / "yes" / f"y{i}.jpg", flip=False)
        _pattern(root / "no" / f"no{i}.jpg", flip=True)
    _png(root / "pred" / "pred0.jpg", 90)
    for part, names in (("TRAIN", ["y0.jpg"]), ("TEST", ["y1.jpg"])):
        data = {f"{n}123": {"filename": n, "size": 123, "regions": [{"shape_attributes": {
            "name": "rect", "x": 0, "y": 0, "width": 20, "height": 30}}]} for n in names}
        folder = root / "Br35H-Mask-RCNN" / part
        folder.mkdir(parents=True)
        (folder / f"annotations_{part.lower()}.json").write_text(json.dumps(data))
    return root


def test_br35h_layout_masks_and_official_parts(tmp_path):
    root = _fake_br35h(tmp_path / "br35h")
    ds, samples = load_dataset("br35h", data_dir=root, image_size=10)
    assert ds.official_parts() == {"yes/y0": "train", "yes/y1": "test"}
    by_id = {s.id: s for s in samples}
    assert sorted(by_id) == ["no/no0", "no/no1", "no/no2", "yes/y0", "yes/y1", "yes/y2"]
    assert by_id["yes/y0"].mask[:, :5].all() and not by_id["yes/y0"].mask[:, 5:].any()
    assert by_id["yes/y2"].mask is None and by_id["no/no0"].mask is None
    assert by_id["no/no0"].mask_or_empty().shape == (10, 10)
    assert by_id["yes/y0"].original_size == (30, 40)
    # Identical copies are near-duplicates: one group per class here.
    assert {s.group for s in samples} == {"yes/y0", "no/no0"}
    pred = ds.load_unlabelled()
    assert [(s.id, s.label) for s in pred] == [("pred/pred0", -1)]


def test_br35h_data_dir_resolution(tmp_path, monkeypatch):
    root = _fake_br35h(tmp_path / "parent" / "br35h")
    kw = {"looks_like": lambda p: (p / "yes").is_dir(), "how_to_get": "get it"}
    assert find_data_dir("br35h", root, **kw) == root
    assert find_data_dir("br35h", root.parent, **kw) == root          # a parent works too
    monkeypatch.setenv("MRIBENCH_DATA", str(root.parent))
    assert Br35H().root == root
    monkeypatch.setenv("MRIBENCH_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match=r"br35h data not found \(looked in .*elsewhere.*Kaggle"):
        Br35H()
    with pytest.raises(DataError, match="--data-dir .*nothing: no br35h data there"):
        Br35H(tmp_path / "nothing")


@pytest.mark.parametrize("breakage, words", [
    (lambda r: [p.unlink() for p in (r / "no").iterdir()], r"br35h/no: no images"),
    (lambda r: [p.unlink() for p in (r / "no").iterdir()] and (r / "no").rmdir(),
     r"br35h/no: folder not found"),
    (lambda r: (r / "yes" / "y2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated"), r"y2.jpg"),
    (lambda r: (r / "yes" / "y0.jpg").unlink(), r"annotates y0.jpg, which is not in"),
])
def test_br35h_errors(tmp_path, breakage, words):
    root = _fake_br35h(tmp_path / "br35h")
    breakage(root)
    with pytest.raises(DataError, match=words) as info:
        load_dataset("br35h", data_dir=root, image_size=10)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- real Br35H


@pytest.mark.br35h
@pytest.mark.slow
def test_real_br35h(br35h_samples):
    ds, samples = br35h_samples
    assert len(samples) == 3000
    assert sum(s.label for s in samples) == 1500
    masks = [s for s in samples if s.mask is not None]
    assert len(masks) == 801 and all(s.label == 1 and s.id.startswith("yes/") for s in masks)
    assert set(ds.official_parts()) == {s.id for s in masks}
    areas = np.array([s.mask.mean() for s in masks])
    assert areas.min() > 0 and 0.035 < float(np.median(areas)) < 0.065
    assert all(s.image.shape == (64, 64) and s.image.dtype == np.float32 for s in samples)
    assert min(min(s.original_size) for s in samples) >= 100
    assert len(ds.load_unlabelled()) == 60
