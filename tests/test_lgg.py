"""The ``lgg`` data set (Buda et al.'s kaggle_3m layout): patient groups, channels, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.api import DataError
from mribench.data.load import load_dataset
from mribench.datasets.lgg import LGG, patient_of
from mribench.split.manifest import apply, audit, make_split

LGG_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lgg-kaggle3m-dev"


def _slice(path: Path, n: int, *, tumour: bool, size: int = 16) -> None:
    """An RGB slice whose channels are 40 (pre), 120 (FLAIR), 200 (post), and its mask."""
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[2:-2, 2:-2] = (40 + n, 120 + n, 200 + n)
    Image.fromarray(rgb, "RGB").save(path / f"{path.name}_{n}.tif")
    mask = np.zeros((size, size), np.uint8)
    if tumour:
        mask[4:8, 4:8] = 255
    Image.fromarray(mask, "L").save(path / f"{path.name}_{n}_mask.tif")


def _fake_lgg(root: Path, patients: int = 3, slices: int = 4) -> Path:
    """``root/kaggle_3m`` with ``patients`` patients of ``slices`` slices (the middle ones with
    tumour), plus the README.md and data.csv of the real layout."""
    base = root / "kaggle_3m"
    base.mkdir(parents=True)
    (base / "README.md").write_text("readme")
    (base / "data.csv").write_text("Patient\n")
    for p in range(patients):
        folder = base / f"TCGA_CS_{5390 + p}_1998100{p}"
        folder.mkdir()
        for n in range(1, slices + 1):
            _slice(folder, n, tumour=1 < n < slices)
    return root


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))


def test_layout_ids_groups_labels_and_channels(tmp_path, no_cache):
    root = _fake_lgg(tmp_path / "lgg-mri-segmentation", slices=11)
    ds, samples = load_dataset(f"lgg:{root}", image_size=8)
    assert ds.root == root / "kaggle_3m" and ds.split_name == "lgg-lgg-mri-segmentation"
    assert len(samples) == 33
    # slices in numerical order (1, 2, ..., 10, 11, not 1, 10, 11, 2, ...)
    assert [s.id for s in samples[:11]] == [f"TCGA_CS_5390_19981000/{n}" for n in range(1, 12)]
    assert {s.group for s in samples} == {"TCGA_CS_5390", "TCGA_CS_5391", "TCGA_CS_5392"}
    assert [s.label for s in samples[:11]] == [0] + [1] * 9 + [0]
    first = samples[1]
    assert first.mask is not None and first.mask.shape == (8, 8) and first.mask.any()
    assert samples[0].mask is not None and not samples[0].mask.any()  # known empty
    assert first.original_size == (16, 16) and first.source.endswith("_2.tif")
    assert first.image.dtype == np.float32 and first.image.shape == (8, 8)
    # FLAIR is the default channel; pre and post pick the others
    assert first.image.max() == pytest.approx(122 / 255)
    for channel, value in (("pre", 42), ("post", 202)):
        _, other = load_dataset(f"lgg:{root}[channel={channel}]", image_size=8)
        assert other[1].image.max() == pytest.approx(value / 255)


def test_data_dir_and_parent_folders(tmp_path, no_cache, monkeypatch):
    root = _fake_lgg(tmp_path / "copy", patients=1, slices=2)
    assert LGG(root / "kaggle_3m").root == root / "kaggle_3m"
    assert LGG(root).root == root / "kaggle_3m"
    monkeypatch.setenv("MRIBENCH_DATA", str(root))
    assert LGG().root == root / "kaggle_3m"
    with pytest.raises(DataError, match="no lgg data there; download it from Kaggle"):
        LGG(tmp_path)


def test_patient_of_folder_names():
    assert patient_of("TCGA_CS_5395_19981004") == "TCGA_CS_5395"
    assert patient_of("TCGA_FG_A60K_20040224") == "TCGA_FG_A60K"
    assert patient_of("odd") == "odd"


def test_split_keeps_each_patient_in_one_part(tmp_path, no_cache):
    from mribench.split.choose import check_groups

    ds, samples = load_dataset(f"lgg:{_fake_lgg(tmp_path / 'd', patients=12)}", image_size=8)
    manifest = make_split(ds.split_name, samples, seed=0)
    report = audit(manifest, samples)
    assert report["n_groups"] == 12 and report["n_groups_straddling"] == 0
    train, val, test = apply(manifest, samples)
    assert {s.group for s in train}.isdisjoint({s.group for s in test})
    check_groups(ds, samples)  # several patients: no error


def test_single_patient_cannot_be_split(tmp_path, no_cache):
    from mribench.split.choose import choose_split

    ds, samples = load_dataset(f"lgg:{_fake_lgg(tmp_path / 'd', patients=1)}", image_size=8)
    with pytest.raises(DataError, match="a single patient cannot be split by patient"):
        choose_split(ds, samples, None)


def _remove_mask(root: Path) -> Path:
    path = next((root / "kaggle_3m").glob("TCGA_*/*_2_mask.tif"))
    path.unlink()
    return path.with_name(path.name.replace("_mask", ""))


def _remove_slice(root: Path) -> Path:
    path = next((root / "kaggle_3m").glob("TCGA_*/*_2.tif"))
    path.unlink()
    return path.with_name(path.stem + "_mask.tif")


def _grey_slice(root: Path) -> Path:
    path = next((root / "kaggle_3m").glob("TCGA_*/*_3.tif"))
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(path)
    return path


def _small_mask(root: Path) -> Path:
    path = next((root / "kaggle_3m").glob("TCGA_*/*_3_mask.tif"))
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(path)
    return path


def _not_a_tif(root: Path) -> Path:
    path = next((root / "kaggle_3m").glob("TCGA_*/*_4.tif"))
    path.write_text("<html>not found</html>")
    return path


def _no_slices(root: Path) -> Path:
    for p in (root / "kaggle_3m").glob("TCGA_*/*.tif"):
        p.unlink()
    return root / "kaggle_3m"


@pytest.mark.parametrize("breakage, words", [
    (_remove_mask, "slice without its mask"),
    (_remove_slice, "mask without its slice"),
    (_grey_slice, "expected an RGB slice"),
    (_small_mask, "mask is 8x8 px but its image is 16x16"),
    (_not_a_tif, "not an image file"),
    (_no_slices, "no slices"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, no_cache, breakage, words):
    root = _fake_lgg(tmp_path / "d", patients=2)
    named = breakage(root)
    with pytest.raises(DataError, match=words) as info:
        load_dataset(f"lgg:{root}", image_size=8)
    assert str(named) in str(info.value) and "\n" not in str(info.value)


def test_unknown_channel_is_refused(tmp_path):
    root = _fake_lgg(tmp_path / "d", patients=1)
    with pytest.raises(DataError, match="option 'channel' must be one of 'pre', 'flair', 'post'"):
        LGG(root, channel="t2")


# --------------------------------------------------------------------------- the real copy


@pytest.fixture(scope="module")
def real_lgg(tmp_path_factory):
    if not (LGG_DIR / "kaggle_3m").is_dir():
        pytest.skip(f"the LGG dev copy is not at {LGG_DIR}")
    mp = pytest.MonkeyPatch()
    mp.setenv("MRIBENCH_CACHE", str(tmp_path_factory.mktemp("lgg-cache")))
    try:
        yield load_dataset(f"lgg:{LGG_DIR}", image_size=64)
    finally:
        mp.undo()


def test_real_copy_counts_and_patient_groups(real_lgg):
    """SOURCE.md: 290 slices of 8 patients (20 to 73 each), 96 with a non-empty mask."""
    ds, samples = real_lgg
    assert len(samples) == 290 and sum(s.label for s in samples) == 96
    sizes = {}
    for s in samples:
        assert s.group == patient_of(s.id.split("/")[0])
        sizes[s.group] = sizes.get(s.group, 0) + 1
    assert len(sizes) == 8 and min(sizes.values()) == 20 and max(sizes.values()) == 73
    assert all(s.original_size == (256, 256) and s.mask is not None for s in samples)
    # labels agree with the masks; the median tumour covers about 1.7 % of a slice
    assert all(bool(s.mask.any()) == bool(s.label) for s in samples if s.mask.sum() > 2)
    share = np.median([s.mask.mean() for s in samples if s.label])
    assert 0.01 < share < 0.03
    manifest = make_split(ds.split_name, samples, seed=0)
    assert audit(manifest, samples)["n_groups_straddling"] == 0
