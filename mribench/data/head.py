"""The head in a slice: its mask and bounding box, and the harmonisation built on them.

Used by the Br35H ``harmonise`` option (:func:`harmonise`) and by the shortcut audit's
image-content probe (:mod:`mribench.split.shortcuts`), so both mean the same thing by "head".

- **Head mask** (:func:`head_mask`): pixels above a threshold, holes filled, then the
  largest connected component (8-connected). The threshold is :data:`HEAD_LEVEL` times Otsu's
  threshold of the image (Otsu alone splits dim tissue off the scalp on many slices; half of it
  keeps grey matter and CSF-dark sulci inside, and stays above JPEG noise and the faint
  gradients of the background), and never below :data:`MIN_LEVEL` of the image's maximum.
  A blank image gives an empty mask. Known limit: on the few Br35H slices with a grey (not
  black) background or a bright frame, the "head" is the whole image, so they are only
  standardised, not cropped.
- **Bounding box** (:func:`head_box`): rows and columns of the mask, end exclusive; the whole
  image when the mask is empty.
- **Harmonisation** (:func:`harmonise`): crop to the head's box, pad to a square with zeros
  (centred), resize to the run's size, then standardise inside the head: z-score of the head's
  pixels, clipped at +-:data:`CLIP_SD` standard deviations and mapped linearly to [0, 1]
  (the head's mean lands on 0.5); pixels outside the head become exactly 0. What is left to
  tell two sources apart is the head's shape and the anatomy inside it, not the scanner's
  framing, padding, field of view or brightness.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from mribench.data.imageio import LoadedImage

if TYPE_CHECKING:
    from mribench.data.imageio import ImageBatch

__all__ = ["CLIP_SD", "HEAD_LEVEL", "MIN_LEVEL", "Harmonised", "harmonise", "head_box",
           "head_mask", "load_harmonised", "pad_square", "read_harmonised"]

#: The head threshold as a fraction of Otsu's threshold.
HEAD_LEVEL = 0.5
#: ... and at least this fraction of the image's maximum.
MIN_LEVEL = 0.04
#: Intensities inside the head are clipped at this many standard deviations from their mean.
CLIP_SD = 3.0

_EIGHT = np.ones((3, 3), dtype=bool)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values``, from a 256-bin histogram over [0, max]."""
    top = float(values.max())
    if top <= 0:
        return top
    bins = np.minimum((values * np.float32(255.0 / top)).astype(np.intp), 255)
    hist = np.bincount(bins.ravel(), minlength=256).astype(np.float64)
    centres = (np.arange(256) + 0.5) * (top / 256.0)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not touch the border filled
    (scipy's binary_fill_holes, by one labelling instead of repeated dilations)."""
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.zeros(n + 1, dtype=bool)
    outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[labels]


def head_mask(image: np.ndarray) -> np.ndarray:
    """bool mask of the head in a grayscale ``image`` (bright pixels, filled, largest part)."""
    image = np.asarray(image, dtype=np.float32)
    top = float(image.max()) if image.size else 0.0
    if top <= 0:
        return np.zeros(image.shape, dtype=bool)
    level = max(HEAD_LEVEL * _otsu(image), MIN_LEVEL * top)
    # Holes are filled before the largest component is taken, so a closed scalp ring and
    # the brain it encloses count as one head even where a dark gap (bone, CSF) parts them.
    fore = _fill_holes(image > level)
    labels, n = ndimage.label(fore, structure=_EIGHT)
    if n == 0:
        return fore
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def head_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the mask's pixels, end exclusive; the whole image if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, mask.shape[0], 0, mask.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def pad_square(array: np.ndarray) -> np.ndarray:
    """``array`` (H, W) centred in a zero square of side max(H, W)."""
    h, w = array.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=array.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = array
    return out


class Harmonised:
    """A harmonised slice: ``image`` (float32 in [0, 1]) and ``mask`` (bool or None) at ``size``,
    with the head's box in the input's pixels."""

    __slots__ = ("box", "image", "mask")

    def __init__(self, image: np.ndarray, mask: np.ndarray | None,
                 box: tuple[int, int, int, int]) -> None:
        self.image, self.mask, self.box = image, mask, box


def harmonise(image: np.ndarray, size: int, mask: np.ndarray | None = None) -> Harmonised:
    """Crop ``image`` to its head, pad to a square, resize to ``size``, standardise the head.

    ``mask`` (bool, optional; the image's shape or a multiple of it, e.g. drawn at the
    original size of a JPEG decoded at a reduced scale) goes through the same crop (the box
    scaled to its size), padding and resize (area average, then >= 0.5). See the module docstring for the steps.
    """
    from mribench.data.imageio import resize_image, resize_mask

    image = np.asarray(image, dtype=np.float32)
    head = head_mask(image)
    top, bottom, left, right = box = head_box(head)
    crop = pad_square(np.where(head, image, 0.0)[top:bottom, left:right])
    head_crop = pad_square(head[top:bottom, left:right])
    # The head's outline at the output size (area average >= 0.5, as for tumour masks).
    inside = resize_mask(head_crop, size)
    resized = resize_image(crop, size)
    out = np.zeros((size, size), dtype=np.float32)
    values = resized[inside]
    if values.size:
        mean, sd = float(values.mean()), float(values.std())
        z = (values - mean) / sd if sd > 0 else np.zeros_like(values)
        out[inside] = (np.clip(z, -CLIP_SD, CLIP_SD) + CLIP_SD) / (2 * CLIP_SD)
    out_mask = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        # A mask may have another size than the image (drawn on the original of a JPEG
        # decoded at a reduced scale): the box scales with it.
        (h, w), (mh, mw) = image.shape, mask.shape
        mtop, mbottom = int(np.floor(top * mh / h)), int(np.ceil(bottom * mh / h))
        mleft, mright = int(np.floor(left * mw / w)), int(np.ceil(right * mw / w))
        out_mask = resize_mask(pad_square(mask[mtop:mbottom, mleft:mright]), size)
    return Harmonised(out, out_mask, box)


def load_harmonised(path: Path | str, size: int, *, regions: list[dict] | None = None
                    ) -> LoadedImage:
    """:func:`mribench.data.imageio.load_image`, harmonised: the same decode (JPEG draft mode
    for ``max(size, DRAFT_SIZE)`` px), original size and near-duplicate thumbnail (from the
    image as it was, so groups and split manifests do not change), then :func:`harmonise`
    of the decoded image and of the mask rasterised from ``regions`` at the original size."""
    from mribench.blocks.resize import as_float
    from mribench.data.imageio import DRAFT_SIZE, _decode, thumbnail

    path = Path(path)
    gray, (height, width) = _decode(path, max(size, DRAFT_SIZE))
    if size > DRAFT_SIZE and gray.size != (width, height):
        thumb = thumbnail(_decode(path, DRAFT_SIZE)[0])
    else:
        thumb = thumbnail(gray)
    full = None
    if regions is not None:
        from mribench.data.via import rasterise

        full = rasterise(regions, height, width, source=str(path))
    out = harmonise(as_float(gray), size, full)
    if full is None:
        return LoadedImage(out.image, (height, width), thumb)
    return LoadedImage(out.image, (height, width), thumb, out.mask, int(full.sum()))


def read_harmonised(paths: Sequence[Path | str], size: int, *,
                    regions: Sequence[list[dict] | None] | None = None,
                    show_progress: bool = False, desc: str = "harmonising") -> ImageBatch:
    """:func:`mribench.data.load.read_images` with :func:`load_harmonised` for each image."""
    from mribench.data.imageio import ImageBatch as Batch
    from mribench.data.threads import thread_map

    regions = list(regions) if regions is not None else [None] * len(paths)

    def one(task: tuple[Path | str, list[dict] | None]) -> LoadedImage:
        return load_harmonised(task[0], size, regions=task[1])

    tasks = list(zip(paths, regions, strict=True))
    with thread_map(one, tasks, min_items=64, name="mribench-harmonise") as results:
        if show_progress:
            import sys

            from tqdm.auto import tqdm

            results = tqdm(results, total=len(tasks), desc=desc, file=sys.stderr, leave=False)
        loaded = list(results)
    images = np.stack([item.image for item in loaded]) if loaded else np.zeros((0, size, size),
                                                                               np.float32)
    thumbs = (np.stack([item.thumbnail for item in loaded]) if loaded
              else np.zeros((0, 32, 32), np.float32))
    return Batch(images.astype(np.float32, copy=False), [item.original_size for item in loaded],
                 thumbs, [item.mask for item in loaded], [item.mask_pixels for item in loaded])
