"""Br35H: Brain Tumor Detection 2020, the real axial MRI slices with and without tumours.

Source: Ahmed Hamada, "Br35H :: Brain Tumor Detection 2020", Kaggle data set
``ahmedhamada0/brain-tumor-detection`` (2020); the GitHub repository
``AhmedHamada0/Brain-Tumor-Detection-Dataset`` adds ``Br35H-Mask-RCNN/`` with VIA region
annotations of 801 tumour slices in TRAIN/VAL/TEST parts.

Input layout (the published one; found via ``--data-dir``, ``$MRIBENCH_DATA`` or
``~/.cache/mribench/data/br35h``, see :func:`mribench.data.load.find_data_dir`)::

    yes/   1500 tumour slices (JPEG, RGB/L/RGBA/P, 150 to 1920 px)      -> label 1
    no/    1500 slices without tumour                                  -> label 0
    pred/  60 unlabelled slices                                        -> load_unlabelled()
    Br35H-Mask-RCNN/{TRAIN,VAL,TEST}/annotations_{train,val,test}.json  -> masks, official_parts()

Output: 3,000 labelled samples with ids ``yes/y12`` / ``no/no7`` (folder/stem), float32
images of ``image_size`` (stretched to a square, see :mod:`mribench.data.imageio`). The 801
annotated ``yes`` images (same names in ``yes/``) get masks rasterised from their polygons,
ellipses and circles at the original size, then resized (:mod:`mribench.data.via`); other ``yes``
images have ``mask=None`` (unknown), ``no`` images ``mask=None`` too (``mask_or_empty()``
gives an empty mask for label 0). Groups: near-duplicates by thumbnail correlation
(``threshold`` option, default 0.995; :mod:`mribench.data.duplicates`), about 1,560 groups.
Without the ``Br35H-Mask-RCNN`` folder (the Kaggle copy) the images load without masks and
without a published split.

Options: ``threshold`` (0.995), the near-duplicate correlation threshold; ``harmonise``
(false): ``br35h[harmonise=true]`` removes what tells the two sources apart but is not tumour
(:func:`mribench.data.head.harmonise`): each slice is cropped to its head's bounding box
(threshold at half Otsu's level, holes filled, largest component), padded to a square,
resized, and standardised inside the head (z-score clipped at +-3 sd mapped to [0, 1]; 0
outside the head); masks follow the same crop. The ``yes``/``no`` folders come from
different sources whose sizes, framing, padding and brightness differ (the shortcut audit of
:mod:`mribench.split.shortcuts` reads the label off them); harmonised, a method must look at the
anatomy. Ids, groups (thumbnails of the images as they were), ``original_size`` (the file's)
and therefore the split manifests stay the same, so harmonised and original runs share the
committed manifests (``split_options`` leaves ``harmonise`` out).

Differences from the published data: none in content; pixel values differ from a full JPEG
decode by about 1/255 because large JPEGs are decoded at a reduced DCT scale (draft mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mribench.api import DEFAULT_IMAGE_SIZE, FLAG, UNLABELLED, DataError, Dataset, Sample
from mribench.data.duplicates import DEFAULT_THRESHOLD, THRESHOLD_RULE, group_names
from mribench.data.head import read_harmonised
from mribench.data.imageio import images_by_stem
from mribench.data.load import files_fingerprint, find_data_dir, read_images, resolve_options
from mribench.data.via import read_via

HOW_TO_GET = ("download it from Kaggle (ahmedhamada0/brain-tumor-detection) or GitHub "
              "(AhmedHamada0/Brain-Tumor-Detection-Dataset, which adds the masks)")
MASK_FOLDER = "Br35H-Mask-RCNN"
OFFICIAL = {"TRAIN": "train", "VAL": "val", "TEST": "test"}
#: Bump when loading changes (invalidates cached copies).
LOADER_VERSION = 1


def _looks_like_br35h(path: Path) -> bool:
    # Either class folder is enough to recognise it; a missing one is named by load().
    return (path / "yes").is_dir() or (path / "no").is_dir()


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; the Br35H layout needs yes/ and no/ "
                        f"({HOW_TO_GET})")
    files = list(images_by_stem(folder).values())
    if not files:
        raise DataError(f"{folder}: no images in this class folder; re-download Br35H "
                        f"({HOW_TO_GET})")
    return files


class Br35H(Dataset):
    name: ClassVar[str] = "br35h"
    description: ClassVar[str] = (
        "Br35H 2020: 3,000 axial MRI slices (1,500 tumour, 1,500 normal), 801 with masks "
        "and a published Mask-RCNN split"
    )
    needs_files: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"threshold": DEFAULT_THRESHOLD, "harmonise": False}

    def __init__(self, data_dir: Path | str | None = None, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False,
                 **options: Any) -> None:
        root = find_data_dir("br35h", data_dir, looks_like=_looks_like_br35h,
                             how_to_get=HOW_TO_GET)
        super().__init__(root, image_size=image_size, show_progress=show_progress)
        self.root = root
        self.options = resolve_options("br35h", options, self.defaults, {
            "threshold": THRESHOLD_RULE,
            "harmonise": FLAG,
        })
        self._annotations: tuple[dict[str, list[dict]], dict[str, str]] | None = None

    # -- annotations -------------------------------------------------------------------
    def _annotation_files(self) -> dict[str, Path]:
        base = self.root / MASK_FOLDER
        return {part: base / part / f"annotations_{part.lower()}.json" for part in OFFICIAL
                if (base / part).is_dir()}

    def annotations(self) -> tuple[dict[str, list[dict]], dict[str, str]]:
        """(regions by id, official part by id) of the annotated ``yes`` images."""
        if self._annotations is None:
            regions: dict[str, list[dict]] = {}
            parts: dict[str, str] = {}
            for part, path in self._annotation_files().items():
                for filename, regs in read_via(path).items():
                    image = self.root / "yes" / filename
                    if not image.is_file():
                        raise DataError(f"{path}: annotates {filename}, which is not in "
                                        f"{self.root / 'yes'}; re-download Br35H")
                    sid = f"yes/{Path(filename).stem}"
                    regions[sid] = regions.get(sid, []) + list(regs)
                    parts[sid] = OFFICIAL[part]
            self._annotations = (regions, parts)
        return self._annotations

    @property
    def split_options(self) -> dict[str, Any]:
        """The options the ids and groups depend on (``harmonise`` changes neither)."""
        return {k: v for k, v in self.options.items() if k != "harmonise"}

    def official_parts(self) -> dict[str, str]:
        """Published Mask-RCNN part (train/val/test) of each of the 801 annotated ids."""
        return dict(self.annotations()[1])

    # -- loading -----------------------------------------------------------------------
    def fingerprint(self) -> str:
        files = _images(self.root / "yes") + _images(self.root / "no")
        files += list(self._annotation_files().values())
        # harmonise=false is left out, so caches made before the option existed stay valid
        options = {k: v for k, v in self.options.items() if k != "harmonise" or v}
        return (f"br35h:v{LOADER_VERSION}:{self.root.resolve()}:{self.image_size}:"
                f"{sorted(options.items())}:{files_fingerprint(files, self.root)}")

    def load(self) -> list[Sample]:
        regions, _ = self.annotations()
        entries = [(f"{folder}/{p.stem}", p, label)
                   for folder, label in (("yes", 1), ("no", 0))
                   for p in _images(self.root / folder)]
        paths = [p for _, p, _ in entries]
        masks = [regions.get(sid) for sid, _, _ in entries]
        if self.options["harmonise"]:
            batch = read_harmonised(paths, self.image_size, regions=masks,
                                    show_progress=self.show_progress, desc="br35h")
        else:
            batch = read_images(paths, self.image_size, masks=masks,
                                show_progress=self.show_progress, desc="br35h")
        ids = [sid for sid, _, _ in entries]
        groups = group_names(ids, batch.thumbnails, float(self.options["threshold"]))
        return [
            Sample(id=sid, group=group, label=label, image=batch.images[i], mask=batch.masks[i],
                   source=str(path), original_size=batch.original_sizes[i])
            for i, ((sid, path, label), group) in enumerate(zip(entries, groups, strict=True))
        ]

    def load_unlabelled(self) -> list[Sample]:
        """The ``pred/`` slices, label -1, each its own group (none when the folder is absent)."""
        folder = self.root / "pred"
        if not folder.is_dir():
            return []
        paths = _images(folder)
        batch = (read_harmonised(paths, self.image_size) if self.options["harmonise"]
                 else read_images(paths, self.image_size, workers=1))
        return [Sample(id=f"pred/{p.stem}", group=f"pred/{p.stem}", label=UNLABELLED,
                       image=batch.images[i], source=str(p),
                       original_size=batch.original_sizes[i])
                for i, p in enumerate(paths)]
