"""LGG: lower-grade glioma FLAIR slices with masks (Buda et al.'s ``kaggle_3m``), grouped by patient.

Source: Mateusz Buda, "Brain MRI segmentation", Kaggle data set
``mateuszbuda/lgg-mri-segmentation`` (the ``kaggle_3m`` folder): 110 patients of The Cancer
Genome Atlas lower-grade glioma collection (TCGA-LGG, from The Cancer Imaging Archive), 3,929
axial slices, 1,373 with a non-empty mask. Licence of the Kaggle upload: CC BY-NC-SA 4.0.
Cite: M. Buda, A. Saha, M. A. Mazurowski, "Association of genomic subtypes of lower-grade
gliomas with shape features automatically extracted by a deep learning algorithm",
Computers in Biology and Medicine 109:218-225 (2019), doi:10.1016/j.compbiomed.2019.05.002;
and M. A. Mazurowski et al., J. Neuro-Oncol. 133:27-35 (2017), doi:10.1007/s11060-017-2420-1.

Input layout (``--dataset lgg:PATH``, or ``lgg`` with ``--data-dir PATH`` / ``$MRIBENCH_DATA``
/ ``~/.cache/mribench/data/lgg``; PATH may be ``kaggle_3m`` itself or a folder holding it, as
the Kaggle archive nests it in ``lgg-mri-segmentation/``)::

    kaggle_3m/TCGA_<inst>_<patient>_<date>/TCGA_<inst>_<patient>_<date>_<n>.tif       slice n
    kaggle_3m/TCGA_<inst>_<patient>_<date>/TCGA_<inst>_<patient>_<date>_<n>_mask.tif  its mask

Each slice is a 256 x 256 RGB TIF whose channels are pre-contrast T1, FLAIR and
post-contrast T1 (in that order; where the archive lacked a sequence it was filled with
FLAIR); each mask a one-channel 0/255 TIF drawn on FLAIR (the FLAIR abnormality).
``README.md``, ``data.csv`` and other files are ignored.

Output: one sample per slice, id ``<patient folder>/<n>`` (slices in numerical order),
``label`` 1 when the mask has a tumour pixel at the original size, ``mask`` always present
(empty on tumour-free slices, so they are scored in segmentation too), image = the chosen
channel / 255 resized to ``image_size`` (:func:`mribench.data.imageio.resize_image`; masks by
area average >= 0.5), ``original_size`` (256, 256), ``source`` the slice's file. **group =
patient** (``TCGA_<inst>_<patient>``, the folder name without its date), so the split maker
keeps every slice of a patient in one part: neighbouring slices of a volume are near-identical.
Split manifests are named ``lgg-<folder holding kaggle_3m>``.

Options: ``channel`` = ``flair`` (default; the masks are drawn on it), ``pre`` or ``post``.

Bad input is a one-line DataError naming the file: a slice without its mask (or a mask
without its slice), a slice that is not an RGB image, a mask of another size, no patient
folders, no slices.

Differences from Buda et al.: they skull-strip, scale and use the three channels together;
here one channel is a grayscale slice like every other mribench data set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mribench.api import DEFAULT_IMAGE_SIZE, DataError, Dataset, OneOf, Sample
from mribench.data.channels import read_channel
from mribench.data.imageio import read_mask, resize_image, resize_mask
from mribench.data.load import files_fingerprint, find_data_dir, resolve_options
from mribench.data.threads import thread_map

HOW_TO_GET = ("download it from Kaggle (mateuszbuda/lgg-mri-segmentation) and point to its "
              "kaggle_3m folder")
#: RGB channel of each sequence in the kaggle_3m TIFs.
CHANNELS = {"pre": 0, "flair": 1, "post": 2}
LOADER_VERSION = 1
_SLICE = re.compile(r"^(?P<folder>.+)_(?P<n>\d+)(?P<mask>_mask)?$")


def _patient_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("TCGA_"))


def _locate(path: Path) -> Path | None:
    """``path`` itself, ``path/kaggle_3m`` or ``path/lgg-mri-segmentation/kaggle_3m``, whichever
    holds patient folders."""
    for candidate in (path, path / "kaggle_3m", path / "lgg-mri-segmentation" / "kaggle_3m"):
        if candidate.is_dir() and _patient_folders(candidate):
            return candidate
    return None


def patient_of(folder_name: str) -> str:
    """``TCGA_CS_5395_19981004`` -> ``TCGA_CS_5395`` (the patient, without the study date)."""
    parts = folder_name.split("_")
    return "_".join(parts[:3]) if len(parts) >= 4 else folder_name


def _read_slice(task: tuple[Path, Path, int, int]) -> tuple[np.ndarray, np.ndarray, int,
                                                            tuple[int, int]]:
    path, mask_path, channel, size = task
    plane = read_channel(path, channel, what="an RGB slice (pre-contrast, FLAIR, post-contrast) "
                                             "as in kaggle_3m")
    height, width = plane.shape
    full = read_mask(mask_path, shape=(height, width))
    return (resize_image(plane, size), resize_mask(full, size), int(full.any()),
            (height, width))


class LGG(Dataset):
    name: ClassVar[str] = "lgg"
    description: ClassVar[str] = (
        "LGG kaggle_3m (Buda et al. 2019): TCGA lower-grade glioma slices with FLAIR masks, "
        "110 patients, grouped by patient; lgg:PATH"
    )
    needs_files: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"channel": "flair"}
    #: What a sample's group is (named in split errors).
    group_kind: ClassVar[str] = "patient"

    def __init__(self, data_dir: Path | str | None = None, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False,
                 **options: Any) -> None:
        found = find_data_dir("lgg", data_dir, looks_like=lambda p: _locate(p) is not None,
                              how_to_get=HOW_TO_GET)
        root = _locate(found) or found  # find_data_dir only returns folders _locate accepts
        super().__init__(root, image_size=image_size, show_progress=show_progress)
        self.root = root
        self.options = resolve_options("lgg", options, self.defaults, {
            "channel": OneOf(tuple(CHANNELS)),
        })

    @property
    def split_name(self) -> str:
        """``lgg-<folder>``, the folder holding ``kaggle_3m`` (or PATH's own name when it is not
        called kaggle_3m), so a manifest made on a subset is never taken for the full set."""
        root = self.root.resolve()
        return f"lgg-{root.parent.name if root.name == 'kaggle_3m' else root.name}"

    def _entries(self) -> list[tuple[str, str, Path, Path]]:
        """(id, patient, slice, mask) of every slice, patients and slices in order."""
        entries = []
        for folder in _patient_folders(self.root):
            slices: dict[int, Path] = {}
            masks: dict[int, Path] = {}
            for p in folder.iterdir():
                if p.suffix.lower() not in (".tif", ".tiff") or p.name.startswith("."):
                    continue
                match = _SLICE.match(p.stem)
                if match is None:
                    continue
                (masks if match["mask"] else slices)[int(match["n"])] = p
            for n in sorted(set(slices) - set(masks)):
                raise DataError(f"{slices[n]}: slice without its mask "
                                f"({slices[n].stem}_mask.tif); restore the mask or remove the "
                                "slice")
            for n in sorted(set(masks) - set(slices)):
                raise DataError(f"{masks[n]}: mask without its slice; restore the slice or "
                                "remove the mask")
            patient = patient_of(folder.name)
            entries += [(f"{folder.name}/{n}", patient, slices[n], masks[n])
                        for n in sorted(slices)]
        if not entries:
            raise DataError(f"{self.root}: no slices (TCGA_*/..._<n>.tif with ..._<n>_mask.tif) "
                            f"in the patient folders; {HOW_TO_GET}")
        return entries

    def fingerprint(self) -> str:
        entries = self._entries()
        files = [p for *_, p, _ in entries] + [m for *_, m in entries]
        return (f"lgg:v{LOADER_VERSION}:{self.root.resolve()}:{self.image_size}:"
                f"{sorted(self.options.items())}:{files_fingerprint(files, self.root)}")

    def load(self) -> list[Sample]:
        entries = self._entries()
        channel = CHANNELS[str(self.options["channel"])]
        tasks = [(path, mask, channel, self.image_size) for _, _, path, mask in entries]
        with thread_map(_read_slice, tasks, min_items=32, name="mribench-lgg") as results:
            if self.show_progress:
                import sys

                from tqdm.auto import tqdm

                results = tqdm(results, total=len(tasks), desc="lgg", file=sys.stderr,
                               leave=False)
            loaded = list(results)
        return [Sample(id=sid, group=patient, label=label, image=image, mask=mask,
                       source=str(path), original_size=size)
                for (sid, patient, path, _), (image, mask, label, size)
                in zip(entries, loaded, strict=True)]
