"""Read image and mask files into the arrays a :class:`~mribench.api.types.Sample` holds.

Decisions (documented here, tested in tests/test_imageio.py):

- **Grayscale.** 8-bit modes go through PIL to ``L``: RGB (and CMYK, YCbCr, ...) by PIL's
  ITU-R 601-2 luma; ``P`` through its palette; modes with alpha (RGBA, LA, PA, or ``P`` with a
  transparent colour) are composited onto black first, since a transparent pixel is background;
  ``1`` maps to 0/255. Values are then divided by 255. High bit-depth modes (``I;16*``, ``I``,
  ``F``) have no fixed white level, so they are min-max scaled per image to [0, 1] (a constant
  image gives zeros).
- **Resizing.** Images are stretched to a square ``size x size`` (the aspect ratio is not kept,
  as in most of the literature's pipelines) with PIL's bilinear filter, which is anti-aliased
  when shrinking (its support widens with the reduction factor, like torchvision's
  ``antialias=True``). 8-bit images are resized in ``L`` mode, so the result is exactly k/255
  (the filters live in :mod:`mribench.blocks.resize`; ``resize_image`` and ``resize_mask`` are
  re-exported here).
- **JPEG draft mode.** With ``draft=True`` a JPEG is decoded by libjpeg's DCT scaling at the
  largest power-of-two reduction that still has at least ``max(size, 256)`` pixels on each
  side (libjpeg also converts to grayscale), then resized as above; this is about twice as
  fast on Br35H's large slices and changes pixel values by about 1/255 on average. The fixed
  256 floor keeps near-duplicate thumbnails the same whatever the run's size.
- **Masks.** A mask is resized by area averaging (PIL's box filter on a float image) and
  thresholded at 0.5, so a pixel is tumour when at least half of its area was. A mask *file*
  is binarised by one fixed rule (:func:`binarise_mask`) that never depends on the file's own
  maximum, so noise cannot flip a label: a file whose values are all <= 1 (a 0/1 mask) is
  tumour where the value is > 0; any other file (0/255, and JPEG-compressed 0/255 masks) is
  tumour where the value is >= 128. An all-zero file is an empty mask. A file that is neither
  0/1 nor 0/255-like (a 0..255 gradient, fractional values, or non-zero values that all stay
  below 128, such as label values 2 or 3) is still read by the rule, with a warning on the
  ``mribench`` logger naming the file.
- **Errors** are :class:`~mribench.api.errors.DataError` one-liners naming the file and the fix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from mribench.api.errors import DataError
from mribench.blocks.resize import as_float, resize_image, resize_mask

#: File name endings read as images by the folder data sets.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm",
                  ".webp")
_HIGH_DEPTH = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32B", "I;32L")
#: Side of the thumbnails used for near-duplicate detection (see mribench.data.duplicates).
THUMB_SIZE = 32
#: JPEG draft decodes keep at least this many pixels per side (thumbnails come from it).
DRAFT_SIZE = 256
#: An 8-bit (or deeper) mask file is tumour where its value reaches this (see binarise_mask).
MASK_LEVEL = 128

_log = logging.getLogger("mribench")

__all__ = ["DRAFT_SIZE", "IMAGE_SUFFIXES", "LoadedImage", "MASK_LEVEL", "THUMB_SIZE", "binarise_mask",
           "is_image_file", "load_image",
           "read_gray", "read_image", "read_mask", "resize_image", "resize_mask", "thumbnail"]


@dataclass
class ImageBatch:
    """Images read by :func:`mribench.data.load.read_images` (or the harmonised reader), in
    input order."""

    images: np.ndarray                  # float32 (n, size, size) in [0, 1]
    original_sizes: list[tuple[int, int]]
    thumbnails: np.ndarray              # float32 (n, 32, 32)
    masks: list[np.ndarray | None]      # bool (size, size) where a mask was asked for
    mask_pixels: list[int]              # tumour pixels of each mask at the original size


class LoadedImage(NamedTuple):
    """An image as loaded for a data set: resized pixels, original size and thumbnail."""

    image: np.ndarray            # float32 (size, size) in [0, 1]
    original_size: tuple[int, int]  # (height, width)
    thumbnail: np.ndarray        # float32 (THUMB_SIZE, THUMB_SIZE), from the decoded original
    mask: np.ndarray | None = None  # bool (size, size) when a mask or regions were given
    mask_pixels: int = 0         # tumour pixels of the mask at the original size


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image suffix and is not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def images_by_stem(folder: Path, what: str = "image", strip: tuple[str, ...] = ()
                   ) -> dict[str, Path]:
    """The image files of ``folder`` by name stem (minus any ending in ``strip``), sorted by
    file name; two files with one stem are a :class:`DataError` (ids are built from stems)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if not (p.is_file() and is_image_file(p)):
            continue
        stem = p.stem
        for ending in strip:
            if stem.endswith(ending):
                stem = stem[: -len(ending)]
        if stem in out:
            raise DataError(f"{p}: same stem as {out[stem].name}; give each {what} a unique "
                            "name (ids are built from file stems)")
        out[stem] = p
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _open(path: Path) -> Image.Image:
    path = Path(path)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or re-download the data") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({_one_line(exc)}); check its permissions") from exc
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-download it or delete it")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: not an image file PIL can read; replace it or remove it from the folder"
        ) from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot be opened ({_one_line(exc)}); replace the file") from exc


def _to_gray(img: Image.Image) -> Image.Image:
    """An ``L`` image (8-bit sources) or an ``F`` image scaled to [0, 1] (high bit depth)."""
    mode = img.mode
    if mode in _HIGH_DEPTH:
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.float32), mode="F")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if mode == "L":
        return img
    return img.convert("L")


def _decode(path: Path, draft_size: int | None) -> tuple[Image.Image, tuple[int, int]]:
    img = _open(path)
    width, height = img.size  # before any draft reduction
    try:
        if draft_size is not None and img.format == "JPEG":
            img.draft("L", (draft_size, draft_size))
        img.load()
        return _to_gray(img), (height, width)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{path}: corrupt or truncated image ({_one_line(exc)}); re-download or replace it"
        ) from exc


def read_gray(path: Path | str, *, draft_size: int | None = None) -> Image.Image:
    """Decode ``path`` to a grayscale PIL image (``L`` or ``F``), fully loaded.

    ``draft_size``: let a JPEG decode at a reduced scale that keeps at least this many pixels
    per side.
    """
    return _decode(Path(path), draft_size)[0]


def thumbnail(image: np.ndarray | Image.Image, size: int = THUMB_SIZE) -> np.ndarray:
    """``size x size`` float32 thumbnail for near-duplicate detection.

    PIL's anti-aliased bilinear reduction (a triangle filter as wide as the reduction), which
    smooths JPEG noise more than a box average: on Br35H at r > 0.995 it gives the ~1,560
    groups of SOURCE.md, where a box average splits off ~140 more.
    """
    if isinstance(image, Image.Image):
        image = as_float(image)
    return resize_image(image, size, clip=False)


def read_image(path: Path | str, size: int | None = None) -> np.ndarray:
    """Read ``path`` as float32 grayscale in [0, 1], resized to ``size`` when given."""
    gray = read_gray(path)
    return resize_image(gray, size) if size is not None else as_float(gray)


def binarise_mask(values: np.ndarray, source: str = "mask") -> np.ndarray:
    """Tumour pixels of a mask file's values, by one rule that does not depend on the file.

    - every value <= 1 (a 0/1 mask): tumour where the value is > 0;
    - otherwise (an 8-bit 0/255 mask, JPEG-compressed or not, or a 16-bit one): tumour where
      the value is >= :data:`MASK_LEVEL` (128).

    An all-zero file is an empty mask. Values that are neither 0/1 nor 0/255-like are read by
    the same rule, with a warning on the ``mribench`` logger naming ``source``: fractional
    values in (0, 1); non-zero values that all stay below 128 (the mask reads as empty, e.g.
    label values 2 or 3); or more than a quarter of the non-zero pixels in the grey band
    (32, 224) (a gradient or a soft map, not a mask).
    """
    arr = np.asarray(values, dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 0:
        return np.zeros(arr.shape[:2], dtype=bool)
    if top <= 1:
        if not np.isin(arr, (0.0, 1.0)).all():
            _log.warning("%s: mask values lie between 0 and 1, not 0/1; every pixel above 0 is "
                         "read as tumour; export a 0/1 or 0/255 mask", source)
        return arr > 0
    mask = arr >= MASK_LEVEL
    nonzero = arr[arr > 0]
    if not mask.any():
        _log.warning("%s: mask values go up to %g only, neither 0/1 nor 0/255; read as empty "
                     "(tumour is >= %d in masks with values above 1); export a 0/1 or 0/255 "
                     "mask", source, top, MASK_LEVEL)
    elif np.count_nonzero((nonzero > 32) & (nonzero < 224)) > 0.25 * nonzero.size:
        _log.warning("%s: mask has many grey values (not a 0/1 or 0/255 mask); read as tumour "
                     "where >= %d; export a binary mask", source, MASK_LEVEL)
    return mask


def read_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file at its own size as bool, by the rule of :func:`binarise_mask`.

    0/1 masks: tumour where > 0; masks with values above 1 (0/255): tumour where >= 128.
    ``shape``: the (height, width) of the image it belongs to; another size is a DataError.
    """
    path = Path(path)
    img = _open(path)
    try:
        img.load()
        if img.mode in ("RGBA", "LA", "PA", "P"):
            img = img.convert("RGBA").convert("RGB")
        arr = np.asarray(img if img.mode in _HIGH_DEPTH or img.mode == "L" else img.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: corrupt or truncated mask ({_one_line(exc)}); re-export or replace it"
        ) from exc
    arr = np.asarray(arr, dtype=np.float64)
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise DataError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} px but its image is "
            f"{shape[1]}x{shape[0]} px; export the mask at the image's size"
        )
    return binarise_mask(arr, str(path))


def load_image(path: Path | str, size: int, *, draft: bool = True,
               mask_path: Path | str | None = None,
               regions: list[dict] | None = None) -> LoadedImage:
    """Read one image for a data set: resized pixels, original size, thumbnail, and its mask.

    The mask comes from ``mask_path`` (a mask file that must have the image's size) or from
    ``regions`` (VIA region dicts, rasterised at the image's original size); it is then resized
    with :func:`resize_mask`. With ``draft``, a JPEG is decoded at the DCT scale for
    ``max(size, DRAFT_SIZE)`` pixels; the thumbnail always comes from the decode for
    ``DRAFT_SIZE`` (a second decode only when ``size`` is larger), so near-duplicate groups do
    not depend on ``size``.
    """
    path = Path(path)
    gray, (height, width) = _decode(path, max(size, DRAFT_SIZE) if draft else None)
    image = resize_image(gray, size)
    if draft and size > DRAFT_SIZE and gray.size != (width, height):
        thumb = thumbnail(_decode(path, DRAFT_SIZE)[0])
    else:
        thumb = thumbnail(gray)
    full = None
    if mask_path is not None:
        full = read_mask(mask_path, shape=(height, width))
    elif regions is not None:
        from mribench.data.via import rasterise

        full = rasterise(regions, height, width, source=str(path))
    if full is None:
        return LoadedImage(image, (height, width), thumb)
    return LoadedImage(image, (height, width), thumb, resize_mask(full, size), int(full.sum()))
