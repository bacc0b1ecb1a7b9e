"""Resizing of grayscale images and binary masks held as numpy arrays (PIL underneath): the
one place that knows the filters, so that data loading, the synthetic phantom, the feature
extractors and the plugins resize alike.

- **Images**: PIL's bilinear filter on a float (``F``) image, or on the ``L`` image as decoded;
  anti-aliased when shrinking (PIL widens the filter's support with the reduction factor, like
  torchvision's ``antialias=True``). :func:`resize_image` returns float32, clipped to [0, 1]
  unless ``clip=False`` (the near-duplicate thumbnails keep PIL's values as they come).
- **Masks**: the covered fraction of each output pixel (:func:`mask_cover`), thresholded at 0.5
  (:func:`resize_mask`). Two filters, because two behaviours are in use and both are kept:
  ``"box"`` (area average; a pixel is tumour when at least half of its area was: how data set
  masks are brought to the working size) and ``"bilinear"`` (bilinear interpolation of the
  0/1 mask: how region growing takes a working-size mask back to a slice's own size).
- **Stacks**: :func:`resize_stack` / :func:`shrink_stack` apply :func:`resize_image` to each
  image of an (n, H, W) stack.

Sizes are a side ``S`` (square ``S x S``) or a ``(height, width)`` pair. An image or mask that
already has the size comes back unresized. The torch counterparts for batched tensors (the
deep methods' working resolution) are :func:`mribench.blocks.nn.data.resize_tensor` and
:func:`mribench.blocks.nn.data.resize_masks`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

__all__ = ["MASK_FILTERS", "as_float", "mask_cover", "resize_image", "resize_mask",
           "resize_stack", "shrink_stack"]

Size = int | tuple[int, int]
MaskFilter = Literal["box", "bilinear"]
#: The filters a mask can be resized with (see the module docstring).
MASK_FILTERS: dict[str, Image.Resampling] = {"box": Image.Resampling.BOX,
                                             "bilinear": Image.Resampling.BILINEAR}


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def as_float(image: Image.Image, *, clip: bool = True) -> np.ndarray:
    """A grayscale PIL image as float32: ``L`` divided by 255, ``F`` as it is; clipped to
    [0, 1] unless ``clip=False``."""
    arr = np.asarray(image, dtype=np.float32)
    if image.mode == "L":
        arr = arr / np.float32(255.0)
    if not clip:
        return arr
    return np.clip(arr, 0.0, 1.0).astype(np.float32, copy=False)


def resize_image(image: np.ndarray | Image.Image, size: Size, *, clip: bool = True
                 ) -> np.ndarray:
    """Stretch a grayscale image (float array, or ``L``/``F`` PIL image) to ``size``.

    Bilinear, anti-aliased when shrinking; an ``L`` image is resized in ``L`` mode (so the
    result is exactly k/255). Returns float32, clipped to [0, 1] unless ``clip=False``.
    """
    h, w = _hw(size)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BILINEAR)
    return as_float(image, clip=clip)


def mask_cover(mask: np.ndarray, size: Size, *, filter: MaskFilter = "box") -> np.ndarray:
    """float32 share of each pixel at ``size`` that the bool ``mask`` covers (``filter``:
    ``"box"`` area average, ``"bilinear"`` interpolation of the 0/1 values)."""
    h, w = _hw(size)
    pil = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.float32), mode="F")
    return np.asarray(pil.resize((w, h), MASK_FILTERS[filter]), dtype=np.float32)


def resize_mask(mask: np.ndarray, size: Size, *, filter: MaskFilter = "box") -> np.ndarray:
    """Resize a bool mask to ``size``: :func:`mask_cover` ``>= 0.5``. A mask that already has
    the size comes back as a copy."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == _hw(size):
        return mask.copy()
    return mask_cover(mask, size, filter=filter) >= 0.5


def resize_stack(stack: np.ndarray, size: int | None) -> np.ndarray:
    """Resize an (n, H, W) float stack to (n, size, size) with :func:`resize_image`; None or
    the same size returns it unchanged."""
    if size is None or stack.shape[1:] == (size, size) or stack.shape[0] == 0:
        return stack
    return np.stack([resize_image(im, size) for im in stack])


def shrink_stack(stack: np.ndarray, size: int | None) -> np.ndarray:
    """:func:`resize_stack` to ``size`` only when the images are larger (never enlarges)."""
    if size is None or max(stack.shape[1:], default=0) <= size:
        return stack
    return resize_stack(stack, size)
