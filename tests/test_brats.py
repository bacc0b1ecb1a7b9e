"""The ``brats`` data set: 2020/2021/2023 namings, tumour regions, slice selection, case groups,
and one-line errors for every broken case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mribench.api import DataError
from mribench.data.load import load_dataset
from mribench.datasets.brats import BraTS, region_mask

nib = pytest.importorskip("nibabel")

BRATS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brats2021-sample"
SHAPE = (20, 20, 12)
MODS_2020 = ("flair", "t1", "t1ce", "t2")
MODS_2023 = ("t2f", "t1n", "t1c", "t2w")


def _volume(seed: int) -> np.ndarray:
    """A 'skull-stripped' scan: zero outside a box of brain, noise-free ramps inside."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(SHAPE, np.int16)
    vol[3:17, 3:17, 1:11] = rng.integers(100, 1000, (14, 14, 10)).astype(np.int16)
    return vol


def _seg(year: str) -> np.ndarray:
    """Oedema (2) around a core: necrosis (1) and enhancing (4, or 3 in 2023) in slices 4-7."""
    seg = np.zeros(SHAPE, np.uint8)
    seg[6:14, 6:14, 4:8] = 2
    seg[8:12, 8:12, 5:7] = 1
    seg[8:12, 12:13, 5:7] = 3 if year == "2023" else 4
    return seg


def _write_case(root: Path, name: str, year: str = "2021", suffix: str = ".nii.gz",
                sep: str = "_") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS, as BraTS stores them
    for k, mod in enumerate(MODS_2023 if year == "2023" else MODS_2020):
        nib.save(nib.Nifti1Image(_volume(k), affine), str(folder / f"{name}{sep}{mod}{suffix}"))
    nib.save(nib.Nifti1Image(_seg(year), affine), str(folder / f"{name}{sep}seg{suffix}"))
    return folder


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))


def test_2020_naming_uncompressed_and_regions(tmp_path, no_cache):
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    for i in (1, 2, 3):
        _write_case(root, f"BraTS20_Training_00{i}", "2020", suffix=".nii")
    ds, samples = load_dataset(f"brats:{root}[slices=every]", image_size=16)
    assert ds.split_name == "brats-MICCAI_BraTS2020_TrainingData"
    # brain in slices 1-10 (14 x 14 of 20 x 20 pixels), every one kept
    assert [s.id for s in samples[:10]] == [f"BraTS20_Training_001/z{z:03d}" for z in range(1, 11)]
    assert {s.group for s in samples} == {f"BraTS20_Training_00{i}" for i in (1, 2, 3)}
    assert [s.label for s in samples[:10]] == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    one = samples[4]
    assert one.original_size == (20, 20) and one.image.shape == (16, 16)
    assert one.mask is not None and one.mask.any() and one.image.max() <= 1.0
    assert one.source.endswith("BraTS20_Training_001_flair.nii#z=5")
    assert not samples[0].mask.any()  # known empty, scored in segmentation too
    # enhancing tumour (label 4) only in slices 5 and 6
    _, et = load_dataset(f"brats:{root}[slices=every,region=et]", image_size=16)
    assert [s.id.split("/")[1] for s in et[:10] if s.label] == ["z005", "z006"]
    _, every3 = load_dataset(f"brats:{root}[slices=every,every=3]", image_size=16)
    assert [s.id.split("/")[1] for s in every3[:4]] == ["z001", "z004", "z007", "z010"]


def test_2023_naming_maps_modalities_and_label_3(tmp_path, no_cache):
    root = tmp_path / "gli"
    _write_case(root, "BraTS-GLI-00000-000", "2023", sep="-")
    _write_case(root, "BraTS-GLI-00002-000", "2023", sep="-")
    ds, samples = load_dataset(f"brats:{root}[region=et,modality=t1ce]", image_size=20)
    # balanced: the 2 enhancing slices plus 2 drawn from the 8 other brain slices
    case = [s for s in samples if s.group == "BraTS-GLI-00000-000"]
    assert sum(s.label for s in case) == 2 and len(case) == 4
    assert case[0].source.split("#")[0].endswith("BraTS-GLI-00000-000-t1c.nii.gz")
    # the mask of region et is label 3 here, in place (radiological view: image = volume.T)
    positive = next(s for s in case if s.label)
    assert positive.mask.sum() == 4 and positive.mask[12, 8:12].all()
    # the negatives drawn are seeded by the case's name and the seed option
    again = load_dataset(f"brats:{root}[region=et,modality=t1ce]", image_size=20,
                         use_cache=False)[1]
    assert [s.id for s in again] == [s.id for s in samples]


def test_region_masks_of_both_namings():
    old, new = _seg("2021"), _seg("2023")
    counts = {"wt": 8 * 8 * 4, "tc": 4 * 4 * 2 + 4 * 1 * 2, "et": 4 * 1 * 2}
    for region, n in counts.items():
        assert region_mask(old, "2020", region).sum() == n
        assert region_mask(new, "2023", region).sum() == n


def test_cases_keep_together_in_splits(tmp_path, no_cache):
    from mribench.split.choose import check_groups
    from mribench.split.manifest import audit, make_split

    root = tmp_path / "many"
    for i in range(8):
        _write_case(root, f"BraTS2021_{i:05d}")
    ds, samples = load_dataset(f"brats:{root}", image_size=8)
    manifest = make_split(ds.split_name, samples, seed=0)
    report = audit(manifest, samples)
    assert report["n_groups"] == 8 and report["n_groups_straddling"] == 0
    check_groups(ds, samples)  # several cases: no error


def test_single_case_cannot_be_split(tmp_path, no_cache):
    from mribench.split.choose import choose_split

    folder = _write_case(tmp_path, "BraTS2021_00001")
    ds, samples = load_dataset(f"brats:{folder}", image_size=8)  # a case folder itself
    assert {s.group for s in samples} == {"BraTS2021_00001"}
    with pytest.raises(DataError, match="a single case cannot be split by patient") as info:
        choose_split(ds, samples, None)
    assert "\n" not in str(info.value)


def _drop_t2(folder: Path) -> Path:
    (folder / f"{folder.name}_t2.nii.gz").unlink()
    return folder


def _drop_seg(folder: Path) -> Path:
    (folder / f"{folder.name}_seg.nii.gz").unlink()
    return folder


def _small_seg(folder: Path) -> Path:
    path = folder / f"{folder.name}_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10), np.uint8), np.eye(4)), str(path))
    return path


def _label_3_in_2021(folder: Path) -> Path:
    path = folder / f"{folder.name}_seg.nii.gz"
    seg = _seg("2021")
    seg[10, 10, 9] = 3
    nib.save(nib.Nifti1Image(seg, np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))
    return path


def _html_flair(folder: Path) -> Path:
    path = folder / f"{folder.name}_flair.nii.gz"
    path.write_text("<html>rate limited</html>")
    return path


def _html_t1(folder: Path) -> Path:
    path = folder / f"{folder.name}_t1.nii.gz"
    path.write_text("<html>rate limited</html>")
    return path


@pytest.mark.parametrize("breakage, words", [
    (_drop_t2, r"no t2 scan .*_t2.nii.gz.*needs flair, t1, t1ce, t2 and seg"),
    (_drop_seg, r"no segmentation .*_seg.nii.gz"),
    (_small_seg, r"segmentation of shape \(20, 20, 10\), but .*_flair.nii.gz is \(20, 20, 12\)"),
    (_label_3_in_2021, r"label values \[3\] are not BraTS 2020/2021 labels"),
    (_html_flair, r"not a NIfTI file nibabel can read"),
    (_html_t1, r"not a NIfTI file nibabel can read"),  # not the modality in use: still checked
])
def test_bad_cases_are_one_line_naming_the_file(tmp_path, no_cache, breakage, words):
    root = tmp_path / "data"
    _write_case(root, "BraTS2021_00001")
    named = breakage(_write_case(root, "BraTS2021_00002"))
    with pytest.raises(DataError, match=words) as info:
        load_dataset(f"brats:{root}", image_size=8)
    assert str(named) in str(info.value) and "\n" not in str(info.value)


def test_label_4_in_2023_and_empty_folders(tmp_path, no_cache):
    folder = _write_case(tmp_path / "gli", "BraTS-GLI-00001-000", "2023", sep="-")
    nib.save(nib.Nifti1Image(_seg("2021"), np.eye(4)), str(folder / f"{folder.name}-seg.nii.gz"))
    with pytest.raises(DataError, match=r"label values \[4\] are not BraTS 2023 labels"):
        load_dataset(f"brats:{folder}", image_size=8)
    (tmp_path / "empty" / "case").mkdir(parents=True)
    with pytest.raises(DataError, match="no brats data there"):
        BraTS(tmp_path / "empty")
    with pytest.raises(DataError, match="folder not found"):
        BraTS(tmp_path / "missing")


def test_no_labelled_slice_is_an_error(tmp_path, no_cache):
    folder = _write_case(tmp_path, "BraTS2021_00001")
    for mod in MODS_2020:  # every scan blank: no brain, no slice
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)),
                 str(folder / f"{folder.name}_{mod}.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)),
             str(folder / f"{folder.name}_seg.nii.gz"))
    with pytest.raises(DataError, match="no slice with brain in any case"):
        load_dataset(f"brats:{folder}", image_size=8)


def test_options_are_checked(tmp_path):
    folder = _write_case(tmp_path, "BraTS2021_00001")
    with pytest.raises(DataError, match="option 'region' must be one of 'wt', 'tc', 'et'"):
        BraTS(folder, region="ncr")
    with pytest.raises(DataError, match="option 'every' must be an integer"):
        BraTS(folder, every=0)


# --------------------------------------------------------------------------- the real case


@pytest.fixture(scope="module")
def real_case() -> Path:
    case = BRATS_DIR / "BraTS2021_00006"
    if not case.is_dir():
        pytest.skip(f"the BraTS 2021 sample is not at {BRATS_DIR}")
    return case


def test_real_case_regions(real_case):
    """SOURCE.md: whole tumour 137,911 voxels = 25,506 (1) + 85,957 (2) + 26,448 (4)."""
    from mribench.data.volumes import read_volume

    seg = read_volume(real_case / "BraTS2021_00006_seg.nii.gz", labels=True)
    assert seg.shape == (240, 240, 155)
    values, counts = np.unique(seg, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {
        0: 8_790_089, 1: 25_506, 2: 85_957, 4: 26_448}
    assert region_mask(seg, "2020", "wt").sum() == 137_911
    assert region_mask(seg, "2020", "tc").sum() == 25_506 + 26_448
    assert region_mask(seg, "2020", "et").sum() == 26_448
    # tumour in 68 axial slices, z = 44 to 111
    slices = np.flatnonzero(region_mask(seg, "2020", "wt").any(axis=(0, 1)))
    assert len(slices) == 68 and (slices[0], slices[-1]) == (44, 111)


def test_real_case_slices(real_case, no_cache):
    ds, samples = load_dataset(f"brats:{real_case.parent}", image_size=64)
    assert {s.group for s in samples} == {"BraTS2021_00006"}
    positives = [s for s in samples if s.label]
    assert len(positives) == 68
    assert positives[0].id == "BraTS2021_00006/z044" and positives[-1].id.endswith("z111")
    # balanced: as many tumour-free brain slices as there are (65 of them here)
    assert len(samples) - len(positives) == 65
    assert all(s.original_size == (240, 240) for s in samples)
    images = np.stack([s.image for s in samples])
    assert images.min() == 0.0 and images.max() == 1.0
