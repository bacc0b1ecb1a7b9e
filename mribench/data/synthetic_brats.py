"""Synthetic BraTS-layout cases: four NIfTI modalities and a labelled segmentation per case.

For tests and scale measurements of the ``brats`` loader and the deep rows on volumes (issue
22): :func:`write_synthetic_brats` writes ``n_cases`` case folders in the BraTS 2021 layout
(``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}.nii.gz``), which
:mod:`mribench.datasets.brats` reads like the challenge's own (see
``../shared/data/brats2021-sample/SOURCE.md``): int16 scans, uint8 seg with the labels 0
(background), 1 (necrotic core), 2 (oedema), 4 (enhancing tumour), an LPS affine
(``diag(-1, -1, 1)``, 1 mm voxels), skull-stripped (zero outside the brain, every brain voxel
non-zero).

One case, deterministic per ``(seed, case index)``:

- a brain: an ellipsoid with a wobbly outline (a smooth random field added to its radius),
  so the axial slices near its poles hold little or no brain (the loader skips those);
  white matter inside a folded boundary, grey matter around it, two ventricles (CSF);
- one tumour: a noise-warped ellipsoid, its volume drawn log-uniformly between 0.2% and 8% of
  the brain, its centre anywhere in the inner brain, clipped to the brain; its "field" (below
  1 inside) sets the sub-regions from outside in: oedema (2), an enhancing rim (4) and, in
  most cases, a necrotic core (1); some cases have no necrosis, a few no enhancing rim;
- intensities per modality as the sequences show them (FLAIR: bright oedema, dark CSF;
  T1: dark tumour; T1ce: bright enhancing rim; T2: bright CSF, oedema and necrosis), a smooth
  bias field and Gaussian noise, stored as int16 in about 50 ... 1,500.

Nothing here is anatomy: the point is the files' layout, their sizes and varied tumours with
exact labels, at any shape (``shape`` is the (x, y, z) voxel grid; BraTS itself is
240 x 240 x 155).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["MODALITIES", "case_name", "synthetic_brats_case", "write_synthetic_brats"]

MODALITIES = ("flair", "t1", "t1ce", "t2")
#: Tissue intensities per modality (before bias and noise): wm, gm, csf, oedema, enhancing,
#: necrosis.
_TISSUES = {
    "flair": (420, 520, 90, 900, 820, 600),
    "t1": (700, 520, 150, 430, 480, 250),
    "t1ce": (720, 540, 160, 450, 1350, 260),
    "t2": (380, 560, 1300, 1000, 760, 1150),
}
#: LPS+ voxel axes, 1 mm: how BraTS stores its volumes.
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Tumour volume as a fraction of the brain, drawn log-uniformly in this range.
TUMOUR_FRACTION = (0.002, 0.08)


def case_name(index: int) -> str:
    """``BraTS2021_XXXXX``: the 2021 challenge's case-folder name of ``index``."""
    return f"BraTS2021_{index:05d}"


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field (Gaussian-filtered white noise)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma,
                                    mode="wrap")
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised voxel coordinates in [-1, 1] along each axis."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    return np.meshgrid(*axes, indexing="ij")  # type: ignore[return-value]


def _brain(rng: np.random.Generator, shape: tuple[int, int, int], coords: Sequence[np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brain, white matter, csf) bool volumes."""
    x, y, z = coords
    radii = rng.uniform([0.72, 0.82, 0.85], [0.84, 0.94, 1.0])
    r = np.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2)
    wobble = _smooth(rng, shape, max(1.0, min(shape) / 8))
    brain = r + 0.04 * wobble < 1.0
    folds = _smooth(rng, shape, max(1.0, min(shape) / 16))
    white = (r + 0.12 * folds < 0.72) & brain
    ventricles = np.zeros(shape, bool)
    for side in (-1, 1):
        cx = side * rng.uniform(0.08, 0.16)
        ventricles |= ((x - cx) / 0.07) ** 2 + ((y + 0.05) / 0.3) ** 2 + (z / 0.35) ** 2 < 1
    return brain, white, ventricles & brain


def _tumour(rng: np.random.Generator, shape: tuple[int, int, int],
            coords: Sequence[np.ndarray], brain: np.ndarray) -> np.ndarray:
    """uint8 BraTS labels (0, 1, 2, 4) of one tumour inside ``brain``."""
    x, y, z = coords
    inner = np.argwhere(ndimage.binary_erosion(brain, iterations=max(1, min(shape) // 8)))
    if not len(inner):
        inner = np.argwhere(brain)
    centre = inner[rng.integers(len(inner))]
    c = [coords[a][tuple(centre)] for a in range(3)]
    fraction = np.exp(rng.uniform(*np.log(TUMOUR_FRACTION)))
    # voxel volume of the unit cube in normalised units: 8 / n_voxels
    volume = fraction * brain.sum() * 8.0 / np.prod(shape)
    axes = rng.uniform(0.6, 1.4, 3)
    axes *= (volume / (4 / 3 * np.pi * np.prod(axes))) ** (1 / 3)
    d = np.sqrt(((x - c[0]) / axes[0]) ** 2 + ((y - c[1]) / axes[1]) ** 2
                + ((z - c[2]) / axes[2]) ** 2)
    field = d + rng.uniform(0.05, 0.35) * _smooth(rng, shape, max(1.0, min(shape) / 10))
    seg = np.zeros(shape, np.uint8)
    core = rng.uniform(0.45, 0.75)  # the tumour core's share of the field (the rest: oedema)
    seg[field < 1.0] = 2
    if rng.random() > 0.1:
        seg[field < core] = 4
    if rng.random() > 0.25:
        seg[field < core * rng.uniform(0.4, 0.75)] = 1
    seg[~brain] = 0
    return seg


def synthetic_brats_case(shape: tuple[int, int, int] = (64, 64, 24), seed: int = 0,
                         index: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One case's volumes: ``({modality: int16 (x, y, z) scan}, uint8 seg)``; see the module
    docstring. Deterministic per ``(seed, index)``."""
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes >= 8, got {shape}")
    rng = np.random.default_rng([int(seed), int(index)])
    coords = _grid(shape)
    brain, white, csf = _brain(rng, shape, coords)
    seg = _tumour(rng, shape, coords, brain)
    bias = 1.0 + 0.08 * _smooth(rng, shape, max(1.0, min(shape) / 4))
    texture = _smooth(rng, shape, 1.0)
    scans = {}
    for modality in MODALITIES:
        wm, gm, fluid, oedema, enhancing, necrosis = _TISSUES[modality]
        vol = np.where(white, wm, gm).astype(np.float32)
        vol[csf] = fluid
        for label, value in ((2, oedema), (4, enhancing), (1, necrosis)):
            vol[seg == label] = value
        vol = vol * (1.0 + 0.05 * texture) * bias
        vol += rng.normal(0.0, 20.0, shape).astype(np.float32)
        scan = np.clip(np.rint(vol), 1, 32767).astype(np.int16)
        scan[~brain] = 0
        scans[modality] = scan
    return scans, seg


def write_synthetic_brats(root: Path | str, n_cases: int,
                          shape: tuple[int, int, int] = (64, 64, 24), seed: int = 0, *,
                          first: int = 0) -> list[Path]:
    """Write ``n_cases`` synthetic cases under ``root`` (created); their folders.

    Case ``i`` is ``root/BraTS2021_{first + i:05d}/`` with ``..._{flair,t1,t1ce,t2}.nii.gz``
    (int16) and ``..._seg.nii.gz`` (uint8), drawn by :func:`synthetic_brats_case` from
    ``(seed, first + i)``: the same seed gives the same files, and a case does not depend on
    how many others are written.
    """
    import nibabel as nib

    if n_cases < 1:
        raise ValueError(f"n_cases must be at least 1, got {n_cases}")
    root = Path(root)
    folders = []
    for index in range(first, first + n_cases):
        name = case_name(index)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        scans, seg = synthetic_brats_case(shape, seed, index)
        for key, volume in (*scans.items(), ("seg", seg)):
            image = nib.Nifti1Image(volume, AFFINE)
            image.header.set_xyzt_units("mm")
            nib.save(image, str(folder / f"{name}_{key}.nii.gz"))
        folders.append(folder)
    return folders
