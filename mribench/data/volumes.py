"""Read NIfTI volumes (``.nii``, ``.nii.gz``) with nibabel, as axial slices in one orientation.

Decisions:

- **Orientation.** Every volume is reoriented (axis flips and swaps only, no resampling) to
  LPS+ voxel axes: i towards the patient's left, j towards posterior, k towards superior.
  Then ``volume[:, :, k].T`` is axial slice k in the radiological view (anterior at the top,
  the patient's right on the image's left), as Br35H and LGG slices are shown.
- **Values.** Scans as stored (int16 in BraTS; float where nibabel applies
  ``scl_slope``/``scl_inter``); label volumes (segmentations) as stored when integer, else
  int16, refused when not whole numbers. Arrays are not copied to C order: nibabel hands
  out Fortran-ordered data, so ``volume.transpose(2, 1, 0)`` (axial slices first, each in the
  radiological view) is C-contiguous for free.
- **Errors.** A file nibabel cannot read as NIfTI (e.g. named ``.nii.gz`` but HTML, or
  truncated), or of another dimensionality than 3, is a one-line DataError naming the file
  and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import DataError

__all__ = ["NIFTI_SUFFIXES", "is_nifti_name", "nifti_stem", "read_header", "read_volume"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_FIX = "re-download or replace it"


def is_nifti_name(path: Path) -> bool:
    """Whether ``path``'s name ends in .nii or .nii.gz (and it is not hidden)."""
    name = path.name.lower()
    return name.endswith(NIFTI_SUFFIXES) and not name.startswith(".")


def nifti_stem(path: Path) -> str:
    """The name without .nii / .nii.gz."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load(path: Path) -> Any:
    import nibabel as nib

    if not path.is_file():
        raise DataError(f"{path}: file not found; {_FIX}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); {_FIX}")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, ValueError...
        raise DataError(f"{path}: not a NIfTI file nibabel can read ({_one_line(exc)}); "
                        f"{_FIX}") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: a {type(img).__name__}, not a NIfTI volume; {_FIX}")
    if len(img.shape) != 3:
        raise DataError(f"{path}: a {len(img.shape)}-D image of shape {img.shape}, expected "
                        f"one 3-D volume; {_FIX}")
    return img


def _to_lps(img: Any) -> np.ndarray:
    """The transform (for nibabel.orientations.apply_orientation) to LPS+ voxel axes."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return ornt_transform(io_orientation(img.affine), axcodes2ornt(("L", "P", "S")))


def read_header(path: Path | str) -> tuple[int, int, int]:
    """The volume's shape in LPS+ voxel order, reading only the header."""
    path = Path(path)
    img = _load(path)
    out = [0, 0, 0]
    for size, (axis, _) in zip(img.shape, _to_lps(img), strict=True):
        out[int(axis)] = int(size)  # input axis i becomes output axis ``axis``
    return out[0], out[1], out[2]


def read_volume(path: Path | str, *, labels: bool = False) -> np.ndarray:
    """The volume in LPS+ voxel order (a scan, or a label volume with ``labels``)."""
    from nibabel.orientations import apply_orientation

    path = Path(path)
    img = _load(path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip stream, short file
        raise DataError(f"{path}: cannot read its voxels ({_one_line(exc)}); {_FIX}") from None
    if data.dtype.kind not in "iuf" and data.dtype != bool:
        raise DataError(f"{path}: voxels of type {data.dtype}, not numbers; {_FIX}")
    if labels and data.dtype.kind == "f":
        if not np.array_equal(data, np.round(data)):
            raise DataError(f"{path}: label volume with fractional values; export the "
                            "segmentation as integer labels")
        data = data.astype(np.int16)
    return apply_orientation(data, _to_lps(img))
