"""Your own slices: ``--dataset folder:PATH``.

Source: the user's files; no paper.

Input layouts under PATH (either or both):

- **class folders** ``yes/`` (tumour, label 1) and ``no/`` (label 0), or two other names given
  as options: ``folder:PATH[positive=tumour,negative=healthy]``. Images only, no masks
  (``mask=None``). Both folders must exist and hold at least one image.
- **pairs** ``images/`` + ``masks/``: every image has a mask file with the same stem (the mask's
  stem may also end in ``_mask`` or ``-mask``; any image suffix), at the image's size. A 0/1
  mask is tumour where > 0, a 0/255 mask where >= 128 (one fixed rule,
  :func:`mribench.data.imageio.binarise_mask`; other values are read with a warning); the label
  is 1 when the mask has a tumour pixel at the original size, else 0.

Files whose suffix is not an image suffix (:data:`mribench.data.imageio.IMAGE_SUFFIXES`) and hidden
files are ignored. A mask without its image, an image without its mask, a mask of another
size, an empty class folder, a missing folder, or an unreadable image is a DataError naming
the file or folder.

Output: labelled samples with ids ``<folder>/<stem>`` (``yes/a12``, ``images/case3``), images
resized to ``image_size`` (:mod:`mribench.data.imageio`), near-duplicate groups from thumbnails
(option ``threshold``, default 0.995; :mod:`mribench.data.duplicates`). Split manifests are named
``folder-<PATH's folder name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mribench.api import DEFAULT_IMAGE_SIZE, Check, DataError, Dataset, Sample
from mribench.data.duplicates import DEFAULT_THRESHOLD, THRESHOLD_RULE, group_names
from mribench.data.imageio import images_by_stem
from mribench.data.load import files_fingerprint, read_images, resolve_options

LOADER_VERSION = 1
_MASK_ENDINGS = ("_mask", "-mask")


#: A class folder's name (a class named images/ or masks/ would clash with pairs).
FOLDER_NAME = Check(lambda v: isinstance(v, str) and bool(v.strip()) and "/" not in v
                    and "\\" not in v and v not in (".", "..", "images", "masks"),
                    "a folder name inside PATH (not ., .., images/ or masks/)")


class Folder(Dataset):
    name: ClassVar[str] = "folder"
    description: ClassVar[str] = (
        "your own slices: folder:PATH with yes/ and no/ class folders and/or images/ + masks/"
    )
    needs_files: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"positive": "yes", "negative": "no",
                                          "threshold": DEFAULT_THRESHOLD}

    def __init__(self, data_dir: Path | str | None = None, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False,
                 **options: Any) -> None:
        if data_dir is None:
            raise DataError("the folder data set needs a path: --dataset folder:PATH")
        super().__init__(Path(data_dir).expanduser(), image_size=image_size,
                         show_progress=show_progress)
        self.root: Path = Path(data_dir).expanduser()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: folder not found; check the path in folder:PATH")
        self.options = resolve_options("folder", options, self.defaults, {
            "positive": FOLDER_NAME,
            "negative": FOLDER_NAME,
            "threshold": THRESHOLD_RULE,
        })
        if self.options["positive"] == self.options["negative"]:
            raise DataError(f"folder: options positive and negative must differ, both are "
                            f"{self.options['positive']!r}")

    @property
    def split_name(self) -> str:
        return f"folder-{self.root.resolve().name}"

    def _entries(self) -> list[tuple[str, Path, int | None, Path | None]]:
        """(id, image, label or None when the mask decides, mask path) of every image."""
        pos, neg = str(self.options["positive"]), str(self.options["negative"])
        class_dirs = [self.root / pos, self.root / neg]
        pair_dirs = [self.root / "images", self.root / "masks"]
        has_classes = any(d.is_dir() for d in class_dirs)
        has_pairs = any(d.is_dir() for d in pair_dirs)
        if not has_classes and not has_pairs:
            raise DataError(f"{self.root}: found neither class folders {pos}/ and {neg}/ nor "
                            "images/ + masks/; arrange the files in one of these layouts")
        entries: list[tuple[str, Path, int | None, Path | None]] = []
        if has_classes:
            for folder, label in ((self.root / pos, 1), (self.root / neg, 0)):
                if not folder.is_dir():
                    raise DataError(f"{folder}: class folder not found; both {pos}/ and {neg}/ "
                                    "are needed (or name them with positive=, negative=)")
                images = images_by_stem(folder, "image")
                if not images:
                    raise DataError(f"{folder}: no images in this class folder; add images or "
                                    "remove the folder")
                entries += [(f"{folder.name}/{stem}", p, label, None)
                            for stem, p in images.items()]
        if has_pairs:
            for folder in pair_dirs:
                if not folder.is_dir():
                    raise DataError(f"{folder}: folder not found; images/ and masks/ go together")
            images = images_by_stem(self.root / "images", "image")
            masks = images_by_stem(self.root / "masks", "mask", _MASK_ENDINGS)
            if not images:
                raise DataError(f"{self.root / 'images'}: no images in this folder")
            for stem in sorted(set(masks) - set(images)):
                raise DataError(f"{masks[stem]}: mask without an image of the same name in "
                                f"{self.root / 'images'}; add the image or remove the mask")
            for stem in sorted(set(images) - set(masks)):
                raise DataError(f"{images[stem]}: image without a mask of the same name in "
                                f"{self.root / 'masks'}; add the mask or remove the image")
            entries += [(f"images/{stem}", p, None, masks[stem]) for stem, p in images.items()]
        return entries

    def fingerprint(self) -> str:
        entries = self._entries()
        files = [p for _, p, _, _ in entries] + [m for _, _, _, m in entries if m is not None]
        return (f"folder:v{LOADER_VERSION}:{self.root.resolve()}:{self.image_size}:"
                f"{sorted(self.options.items())}:{files_fingerprint(files, self.root)}")

    def load(self) -> list[Sample]:
        entries = self._entries()
        batch = read_images([p for _, p, _, _ in entries], self.image_size,
                            masks=[m for _, _, _, m in entries],
                            show_progress=self.show_progress, desc="folder")
        ids = [sid for sid, _, _, _ in entries]
        groups = group_names(ids, batch.thumbnails, float(self.options["threshold"]))
        samples = []
        for i, (sid, path, label, _) in enumerate(entries):
            if label is None:
                label = int(batch.mask_pixels[i] > 0)
            samples.append(Sample(id=sid, group=groups[i], label=label, image=batch.images[i],
                                  mask=batch.masks[i], source=str(path),
                                  original_size=batch.original_sizes[i]))
        return samples
