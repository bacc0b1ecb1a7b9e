"""BraTS: multimodal glioma MRI volumes (BraTS 2020, 2021, 2023 layouts), cut into axial slices.

Source: the Brain Tumor Segmentation (BraTS) challenge training data: BraTS 2020 (369
cases), RSNA-ASNR-MICCAI BraTS 2021 (1,251 cases), BraTS 2023 adult glioma (BraTS-GLI,
1,251 cases), downloaded from the challenge (Synapse) or its Kaggle copies. Skull-stripped,
co-registered, resampled to 1 mm isotropic 240 x 240 x 155 volumes. Terms: for research, with
the challenge's citation requirements. Cite: B. H. Menze et al., "The Multimodal Brain Tumor
Image Segmentation Benchmark (BRATS)", IEEE TMI 34(10):1993-2024 (2015),
doi:10.1109/TMI.2014.2377694; S. Bakas et al., "Advancing The Cancer Genome Atlas glioma MRI
collections with expert segmentation labels and radiomic features", Sci. Data 4:170117 (2017),
doi:10.1038/sdata.2017.117; and for 2021 U. Baid et al., "The RSNA-ASNR-MICCAI BraTS 2021
Benchmark on Brain Tumor Segmentation and Radiogenomic Classification", arXiv:2107.02314
(2021); for 2023 the BraTS 2023 adult glioma challenge paper (Kazerooni et al.,
arXiv:2305.17033) as well.

Input layout (``--dataset brats:PATH``, or ``brats`` with ``--data-dir PATH`` /
``$MRIBENCH_DATA`` / ``~/.cache/mribench/data/brats``). PATH is one case folder, or a folder of
case folders (also one level deeper, e.g. ``MICCAI_BraTS2020_TrainingData/``). A case folder
holds one NIfTI file (``.nii`` or ``.nii.gz``) per modality and the segmentation, named
``<case>_<key>``; the key is the last ``_``/``-`` separated part of the name:

==========  =======================  ===========================
modality    2020 / 2021 key          2023 key (BraTS-GLI-xxxxx-xxx)
==========  =======================  ===========================
flair       ``flair``                ``t2f``
t1          ``t1``                   ``t1n``
t1ce        ``t1ce``                 ``t1c``
t2          ``t2``                   ``t2w``
labels      ``seg``                  ``seg``
==========  =======================  ===========================

(A file whose name ends in ``Segm``, as BraTS 2020 case 355's ``W39_1998.09.19_Segm.nii``, is
taken as the segmentation.) Labels: 2020/2021 0 background, 1 necrotic and non-enhancing
core, 2 oedema, 4 enhancing tumour; 2023: 1, 2 the same, 3 enhancing tumour.

What mribench does with a case (``bench`` never resamples or registers):

1. checks that all four modalities and the seg are there, NIfTI, 3-D, of one shape, and the
   seg's values are labels of its naming's year (else a one-line DataError naming the file);
2. reads the chosen ``modality`` and the seg (:mod:`mribench.data.volumes`; LPS+ voxel order,
   slices shown in the radiological view), brain = its non-zero voxels (the volumes are
   skull-stripped with a zero background);
3. normalises the volume inside the brain: clips to the 0.5 and 99.5 percentiles of the brain
   voxels and scales that range to [0, 1]; outside the brain stays 0;
4. keeps the axial slices with brain in at least :data:`MIN_BRAIN_FRACTION` of their pixels
   and selects among them (``slices``):
   ``balanced`` (default): every slice containing the ``region`` plus as many slices without
   it, drawn at random (seeded by ``seed`` and the case's name, so a case's slices do not
   depend on the other cases); ``every``: every ``every``-th brain slice;
5. region mask = ``wt`` whole tumour (1|2|4, or 1|2|3 in 2023), ``tc`` tumour core (1|4;
   1|3), ``et`` enhancing tumour (4; 3); ``label`` 1 when the slice holds a region voxel.
   With ``tc`` or ``et`` a slice with only oedema is a negative: "no such region".

Output: samples with id ``<case>/z<k>`` (k the axial index, 3 digits), **group = case** (a
case never straddles train and test; a single case cannot be split), the image resized
from 240 x 240 to ``image_size`` (bilinear), the mask (always present; empty on negatives),
``original_size`` the slice's size, ``source`` ``<modality file>#z=<k>``. Split manifests are
named ``brats-<PATH's folder name>``.

Options: ``modality`` (flair | t1 | t1ce | t2; default flair), ``region`` (wt | tc | et; wt),
``slices`` (balanced | every; balanced), ``every`` (k >= 1; 1, used by ``slices=every``),
``seed`` (0).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mribench.api import DEFAULT_IMAGE_SIZE, DataError, Dataset, Interval, OneOf, Sample
from mribench.data.imageio import resize_image, resize_mask
from mribench.data.load import files_fingerprint, find_data_dir, resolve_options
from mribench.data.threads import thread_map
from mribench.data.volumes import is_nifti_name, nifti_stem, read_header, read_volume

HOW_TO_GET = ("download BraTS training data (2020, 2021 or 2023) from the challenge's "
              "Synapse page or Kaggle and point to a folder of case folders")
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: File-name key of each modality, by naming (2023 uses BraTS-GLI names).
KEYS = {"2020": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"},
        "2023": {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}}
#: Label values of each naming and the labels of each region.
LABELS = {"2020": (0, 1, 2, 4), "2023": (0, 1, 2, 3)}
REGIONS = {"2020": {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)},
           "2023": {"wt": (1, 2, 3), "tc": (1, 3), "et": (3,)}}
#: A slice counts as brain when this share of its pixels is brain (non-zero).
MIN_BRAIN_FRACTION = 0.01
#: Percentiles of the brain voxels mapped to 0 and 1.
PERCENTILES = (0.5, 99.5)
LOADER_VERSION = 1
_KEY = re.compile(r"[_-]([A-Za-z0-9]+)$")


class Case:
    """One case folder: its name, naming ("2020" or "2023"), modality files and seg."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        files: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if not (p.is_file() and is_nifti_name(p)):
                continue
            stem = nifti_stem(p)
            match = _KEY.search(stem)
            key = "seg" if stem.lower().endswith("segm") else (match[1].lower() if match else "")
            if key in files:
                raise DataError(f"{p}: a second {key} file in {folder} (also {files[key].name}); "
                                "keep one")
            files[key] = p
        new = {k for k in KEYS["2023"].values() if k in files}
        old = {k for k in KEYS["2020"].values() if k in files}
        if new and old:
            raise DataError(f"{folder}: mixes BraTS 2020/2021 names ({', '.join(sorted(old))}) "
                            f"with 2023 names ({', '.join(sorted(new))}); use one naming")
        self.naming = "2023" if new else "2020"
        keys = KEYS[self.naming]
        self.scans: dict[str, Path] = {}
        for modality in MODALITIES:
            key = keys[modality]
            if key not in files:
                raise DataError(f"{folder}: no {modality} scan ({self.name}_{key}.nii.gz); a "
                                f"BraTS case needs {', '.join(keys.values())} and seg; restore "
                                "the file or remove the case folder")
            self.scans[modality] = files[key]
        if "seg" not in files:
            raise DataError(f"{folder}: no segmentation ({self.name}_seg.nii.gz); only "
                            "training cases have one; restore it or remove the case folder")
        self.seg = files["seg"]

    @property
    def files(self) -> list[Path]:
        return [*self.scans.values(), self.seg]


def _has_nifti(folder: Path) -> bool:
    return any(p.is_file() and is_nifti_name(p) for p in folder.iterdir())


def find_cases(root: Path) -> list[Path]:
    """Case folders under ``root``: itself, its subfolders, or theirs (first level that has any)."""
    if _has_nifti(root):
        return [root]
    level = [root]
    for _ in range(2):
        level = sorted(d for parent in level for d in parent.iterdir()
                       if d.is_dir() and not d.name.startswith("."))
        cases = [d for d in level if _has_nifti(d)]
        if cases:
            return cases
    return []


def _looks_like_brats(path: Path) -> bool:
    return path.is_dir() and bool(find_cases(path))


def region_mask(seg: np.ndarray, naming: str, region: str) -> np.ndarray:
    """bool mask of ``region`` (wt, tc, et) in a seg volume of ``naming`` ("2020" or "2023")."""
    return np.isin(seg, REGIONS[naming][region])


def _case_seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def load_case(case: Case, options: dict[str, Any], size: int) -> list[Sample]:
    """The selected slices of one case as samples (see the module docstring)."""
    modality = str(options["modality"])
    scan_path = case.scans[modality]
    shape = read_header(scan_path)
    for path in case.files:
        if path == scan_path:
            continue
        other = read_header(path)
        if other != shape:
            what = "segmentation" if path == case.seg else "scan"
            raise DataError(f"{path}: {what} of shape {other}, but {scan_path.name} is {shape}; "
                            "the scans and seg of a case must share one voxel grid "
                            "(re-export or replace the file)")
    # (z, row, col): axial slices in the radiological view, contiguous (see volumes.py)
    scan = np.ascontiguousarray(read_volume(scan_path).transpose(2, 1, 0))
    seg = np.ascontiguousarray(read_volume(case.seg, labels=True).transpose(2, 1, 0))
    known = LABELS[case.naming]
    if seg.min() < 0 or seg.max() > max(known) or not np.isin(
            np.flatnonzero(np.bincount(seg.ravel().astype(np.intp, copy=False))), known).all():
        present = np.unique(seg).tolist()
        unknown = sorted(set(present) - set(known))
        names = "2023" if case.naming == "2023" else "2020/2021"
        raise DataError(f"{case.seg}: label values {unknown} are not BraTS {names} labels "
                        f"{known}; fix the segmentation (or the file names, which set the "
                        "naming)")
    region = region_mask(seg, case.naming, str(options["region"]))

    brain = scan != 0
    per_slice = brain.sum(axis=(1, 2))
    brain_slices = np.flatnonzero(per_slice >= MIN_BRAIN_FRACTION * shape[0] * shape[1])
    has_region = region.any(axis=(1, 2))
    if options["slices"] == "balanced":
        positives = np.flatnonzero(has_region)
        negatives = np.setdiff1d(brain_slices, positives)
        rng = _case_seed(int(options["seed"]), case.name)
        chosen = rng.choice(negatives, size=min(len(positives), len(negatives)), replace=False)
        zs = np.union1d(positives, chosen)
    else:
        zs = brain_slices[:: int(options["every"])]

    values = scan[brain]
    if values.size:
        lo, hi = np.percentile(values, PERCENTILES)
    else:
        lo = hi = 0.0
    scale = np.float32(1.0 / (hi - lo)) if hi > lo else np.float32(0.0)
    samples = []
    for z in zs.tolist():
        plane = (scan[z].astype(np.float32) - np.float32(lo)) * scale
        image = np.clip(plane, 0.0, 1.0, out=plane)
        image[~brain[z]] = 0.0
        full = region[z]
        samples.append(Sample(
            id=f"{case.name}/z{z:03d}", group=case.name, label=int(full.any()),
            image=resize_image(image, size), mask=resize_mask(full, size),
            source=f"{scan_path}#z={z}", original_size=(int(plane.shape[0]),
                                                        int(plane.shape[1]))))
    return samples


class BraTS(Dataset):
    name: ClassVar[str] = "brats"
    description: ClassVar[str] = (
        "BraTS 2020/2021/2023 glioma volumes (NIfTI) cut into axial slices with tumour-region "
        "masks, grouped by case; brats:PATH"
    )
    needs_files: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"modality": "flair", "region": "wt",
                                          "slices": "balanced", "every": 1, "seed": 0}
    #: What a sample's group is (named in split errors).
    group_kind: ClassVar[str] = "case"

    def __init__(self, data_dir: Path | str | None = None, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False,
                 **options: Any) -> None:
        if data_dir is not None and not Path(data_dir).expanduser().is_dir():
            raise DataError(f"{data_dir}: folder not found; give a BraTS case folder or a "
                            "folder of case folders")
        root = find_data_dir("brats", data_dir, looks_like=_looks_like_brats,
                             how_to_get=HOW_TO_GET)
        super().__init__(root, image_size=image_size, show_progress=show_progress)
        self.root = root
        self.options = resolve_options("brats", options, self.defaults, {
            "modality": OneOf(MODALITIES),
            "region": OneOf(("wt", "tc", "et")),
            "slices": OneOf(("balanced", "every")),
            "every": Interval(1, None, integer=True),
            "seed": Interval(0, None, integer=True),
        })

    @property
    def split_name(self) -> str:
        """``brats-<folder name>``: manifests of different copies (2020, 2021, a subset) differ."""
        return f"brats-{self.root.resolve().name}"

    def cases(self) -> list[Case]:
        """The case folders, checked for their files (not yet read)."""
        folders = find_cases(self.root)
        if not folders:
            raise DataError(f"{self.root}: no BraTS case folders (folders of .nii/.nii.gz "
                            f"files); {HOW_TO_GET}")
        return [Case(folder) for folder in folders]

    def fingerprint(self) -> str:
        files = [p for case in self.cases() for p in case.files]
        return (f"brats:v{LOADER_VERSION}:{self.root.resolve()}:{self.image_size}:"
                f"{sorted(self.options.items())}:{files_fingerprint(files, self.root)}")

    def load(self) -> list[Sample]:
        cases = self.cases()

        def one(case: Case) -> list[Sample]:
            return load_case(case, self.options, self.image_size)

        with thread_map(one, cases, min_items=2, name="mribench-brats") as results:
            if self.show_progress:
                import sys

                from tqdm.auto import tqdm

                results = tqdm(results, total=len(cases), desc="brats", file=sys.stderr,
                               leave=False)
            samples = [s for batch in results for s in batch]
        if not samples:
            raise DataError(f"{self.root}: no slice with brain in any case; check that the "
                            "scans are skull-stripped BraTS volumes")
        return samples
