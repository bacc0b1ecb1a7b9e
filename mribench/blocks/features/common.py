"""Input handling shared by the feature extractors: samples, one image or a stack -> stack."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mribench.api.types import Sample
from mribench.blocks.resize import resize_stack, shrink_stack  # re-exported

#: What every feature function accepts: samples, one (H, W) image or an (n, H, W) stack.
ImageInput = Sequence[Sample] | Sequence[np.ndarray] | np.ndarray

__all__ = ["ImageInput", "as_masks", "as_stack", "resize_stack", "shrink_stack"]


def as_stack(images: ImageInput) -> np.ndarray:
    """float32 (n, H, W) from samples (their ``image``), one (H, W) image, or a stack."""
    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 2 else images
    else:
        items = [s.image if isinstance(s, Sample) else s for s in images]
        if not items:
            return np.zeros((0, 0, 0), np.float32)
        arr = np.stack([np.asarray(im) for im in items])
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (H, W) or (n, H, W), got {arr.shape}")
    return np.asarray(arr, dtype=np.float32)


def as_masks(masks: np.ndarray | Sequence[np.ndarray] | None, shape: tuple[int, ...]
             ) -> np.ndarray:
    """bool (n, H, W) masks matching an image stack of ``shape``; None means everywhere."""
    if masks is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(masks if isinstance(masks, np.ndarray) else np.stack(list(masks)), bool)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != tuple(shape):
        raise ValueError(f"masks have shape {arr.shape}, images {tuple(shape)}")
    return arr
