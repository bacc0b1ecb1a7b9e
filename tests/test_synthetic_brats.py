"""The synthetic BraTS generator (issue 22): the challenge's layout, labels and voxel grid,
deterministic per seed, varied tumours, and read by the ``brats`` loader with one group per
case, the right slices and exact masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mribench.data.load import load_dataset
from mribench.data.synthetic_brats import (
    MODALITIES,
    case_name,
    synthetic_brats_case,
    write_synthetic_brats,
)
from mribench.datasets.brats import MIN_BRAIN_FRACTION

nib = pytest.importorskip("nibabel")

SHAPE = (32, 32, 16)


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))


def _volumes(folder: Path) -> dict[str, nib.Nifti1Image]:
    return {key: nib.load(str(folder / f"{folder.name}_{key}.nii.gz"))
            for key in (*MODALITIES, "seg")}


def test_files_follow_the_brats_2021_layout(tmp_path: Path) -> None:
    folders = write_synthetic_brats(tmp_path / "cases", 2, SHAPE, seed=3, first=7)
    assert [f.name for f in folders] == ["BraTS2021_00007", "BraTS2021_00008"]
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(
        f"BraTS2021_00007_{k}.nii.gz" for k in ("flair", "t1", "t1ce", "t2", "seg"))
    images = _volumes(folders[0])
    seg = np.asarray(images["seg"].dataobj)
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2, 4} and (seg == 2).any()
    assert nib.aff2axcodes(images["seg"].affine) == ("L", "P", "S")
    brain = None
    for modality in MODALITIES:
        scan = np.asarray(images[modality].dataobj)
        assert scan.shape == SHAPE and scan.dtype == np.int16
        brain = scan != 0 if brain is None else brain
        assert np.array_equal(scan != 0, brain)  # one skull-stripped brain in all four
    assert (seg[~brain] == 0).all() and 0.1 < brain.mean() < 0.6
    flair = np.asarray(images["flair"].dataobj)
    assert flair[seg == 2].mean() > flair[brain & (seg == 0)].mean() + 200  # bright oedema


def test_deterministic_per_seed_and_case_and_varied() -> None:
    scans, seg = synthetic_brats_case(SHAPE, seed=0, index=4)
    again, seg_again = synthetic_brats_case(SHAPE, seed=0, index=4)
    assert np.array_equal(seg, seg_again)
    assert all(np.array_equal(scans[m], again[m]) for m in MODALITIES)
    other, other_seg = synthetic_brats_case(SHAPE, seed=1, index=4)
    assert not np.array_equal(seg, other_seg) and not np.array_equal(scans["t1"], other["t1"])
    tumours = [synthetic_brats_case(SHAPE, seed=0, index=i)[1] > 0 for i in range(8)]
    sizes = [int(t.sum()) for t in tumours]
    centres = [tuple(np.argwhere(t).mean(axis=0).round()) for t in tumours]
    assert min(sizes) > 0 and max(sizes) > 4 * min(sizes)  # small and large tumours
    assert len(set(centres)) == 8  # all in different places
    with pytest.raises(ValueError, match="shape"):
        synthetic_brats_case((32, 32), seed=0)


def test_brats_loader_reads_generated_cases(tmp_path: Path, no_cache) -> None:
    root = tmp_path / "synthetic-brats"
    write_synthetic_brats(root, 3, SHAPE, seed=0)
    _, samples = load_dataset(f"brats:{root}[slices=every]", image_size=SHAPE[0])
    assert {s.group for s in samples} == {case_name(i) for i in range(3)}
    for i in range(3):
        name = case_name(i)
        scans, seg = synthetic_brats_case(SHAPE, seed=0, index=i)
        # axial slice z in the radiological view: volume[:, :, z].T (LPS voxel axes)
        brain = (scans["flair"] != 0).transpose(2, 1, 0)
        tumour = (seg > 0).transpose(2, 1, 0)
        zs = np.flatnonzero(brain.sum(axis=(1, 2)) >= MIN_BRAIN_FRACTION * SHAPE[0] * SHAPE[1])
        mine = [s for s in samples if s.group == name]
        assert [s.id for s in mine] == [f"{name}/z{z:03d}" for z in zs]
        for s, z in zip(mine, zs, strict=True):
            assert np.array_equal(s.mask, tumour[z]) and s.label == int(tumour[z].any())
            assert s.image.shape == SHAPE[:2] and s.image[~brain[z]].max(initial=0) == 0
    _, balanced = load_dataset(f"brats:{root}", image_size=16)
    positives = sum(s.label for s in balanced)
    assert positives == sum(s.label for s in samples)
    assert 0 < positives and len(balanced) <= 2 * positives
