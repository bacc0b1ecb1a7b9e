"""Region-growing primitives: seeds from intensity outliers, growing by tolerance, clean-up.

The classical tumour-candidate recipe of many pre-deep-learning pipelines:

1. :func:`select_seeds`: pixels of the brain whose intensity is an outlier
   (``z = (I - mean) / std > k``, statistics of the brain), keeping the strongest connected
   group (largest summed excess ``z - k``);
2. :func:`grow_region`: the pixels connected to the seeds whose intensity lies within
   ``tolerance`` of the seeds' mean intensity. This is what iterating a binary dilation
   constrained by ``|I - seed_mean| <= tolerance`` converges to, computed in one pass as the
   connected components of the tolerance band that touch a seed;
3. :func:`clean_mask` (opening, closing, hole filling) and :func:`filter_components`
   (size filtering, largest component).

:func:`outlier_regions` chains them for several tolerances at once (seeds computed once), as
a tolerance search on training masks needs. No function loops over pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

from mribench.api.errors import ParamError
from mribench.blocks.preprocess import fill_holes as _fill_holes

__all__ = [
    "clean_mask",
    "filter_components",
    "grow_region",
    "outlier_region",
    "outlier_regions",
    "select_seeds",
]


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2):
        raise ParamError(f"connectivity must be 1 (edges) or 2 (edges and corners), "
                         f"got {connectivity!r}")
    return ndi.generate_binary_structure(2, connectivity)


def select_seeds(image: np.ndarray, brain: np.ndarray | None = None, *, k: float = 2.0,
                 min_size: int = 4, connectivity: int = 1) -> np.ndarray:
    """Seed pixels: the strongest connected group of bright intensity outliers of the brain.

    Parameters
    ----------
    image : np.ndarray
        float (H, W).
    brain : np.ndarray or None
        bool (H, W) where to look (and whose statistics define "outlier"); None: everywhere.
    k : float, default=2.0
        A pixel is an outlier when ``(I - mean) / std > k`` over the brain. Negative values
        select dark outliers instead (``z < k``), for tumours darker than the brain.
    min_size : int, default=4
        Groups with fewer pixels are ignored (isolated noise).
    connectivity : {1, 2}
        Pixel adjacency of a group.

    Returns
    -------
    np.ndarray
        bool (H, W): the chosen group, all False when no group qualifies.
    """
    image = np.asarray(image, dtype=np.float64)
    brain = np.ones(image.shape, bool) if brain is None else np.asarray(brain, dtype=bool)
    if brain.sum() < 2:
        return np.zeros(image.shape, dtype=bool)
    values = image[brain]
    std = float(values.std())
    if std < 1e-9:
        return np.zeros(image.shape, dtype=bool)
    z = (image - float(values.mean())) / std
    excess = (z - k) if k >= 0 else (k - z)
    candidates = brain & (excess > 0)
    labels, n = ndi.label(candidates, structure=_structure(connectivity))
    if n == 0:
        return np.zeros(image.shape, dtype=bool)
    index = np.arange(1, n + 1)
    sizes = ndi.sum_labels(np.ones_like(excess), labels, index)
    strength = ndi.sum_labels(np.where(candidates, excess, 0.0), labels, index)
    strength[sizes < min_size] = -np.inf
    best = int(np.argmax(strength))
    if not np.isfinite(strength[best]):
        return np.zeros(image.shape, dtype=bool)
    return labels == index[best]


def grow_region(image: np.ndarray, seeds: np.ndarray, tolerance: float, *,
                within: np.ndarray | None = None, connectivity: int = 1,
                reference: float | None = None) -> np.ndarray:
    """Grow ``seeds`` over connected pixels within ``tolerance`` of the seeds' mean intensity.

    Parameters
    ----------
    image : np.ndarray
        float (H, W).
    seeds : np.ndarray
        bool (H, W). Seed pixels always belong to the result.
    tolerance : float
        Largest allowed ``|I - reference|`` of a grown pixel, in the image's intensity units.
    within : np.ndarray or None
        bool (H, W): the region never leaves it (the brain mask).
    connectivity : {1, 2}
        Pixel adjacency used for growing.
    reference : float or None
        The intensity to compare with; None uses the mean intensity of the seeds.

    Returns
    -------
    np.ndarray
        bool (H, W); empty when there are no seeds.
    """
    if tolerance < 0:
        raise ParamError(f"grow_region: tolerance must be >= 0, got {tolerance!r}")
    image = np.asarray(image, dtype=np.float64)
    seeds = np.asarray(seeds, dtype=bool)
    if not seeds.any():
        return np.zeros(image.shape, dtype=bool)
    ref = float(image[seeds].mean()) if reference is None else float(reference)
    band = (np.abs(image - ref) <= tolerance) | seeds
    if within is not None:
        band &= np.asarray(within, dtype=bool) | seeds
    labels, _ = ndi.label(band, structure=_structure(connectivity))
    keep = np.unique(labels[seeds])
    return np.isin(labels, keep[keep > 0])


def filter_components(mask: np.ndarray, *, min_size: int = 0, largest: int | None = None,
                      connectivity: int = 1) -> np.ndarray:
    """Keep connected components with at least ``min_size`` pixels, and only the ``largest``
    n of them when given."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndi.label(mask, structure=_structure(connectivity))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = sizes >= min_size
    if largest is not None and keep.sum() > largest:
        order = np.argsort(-np.where(keep, sizes, -1), kind="stable")
        keep = np.zeros(n, bool)
        keep[order[:largest]] = True
    table = np.concatenate([[False], keep])
    return table[labels]


def clean_mask(mask: np.ndarray, *, opening: int = 1, closing: int = 1,
               fill_holes: bool = True, min_size: int = 0) -> np.ndarray:
    """Morphological clean-up: opening (radius ``opening`` disc) removes spurs and thin
    bridges, closing (radius ``closing``) smooths the border, holes are filled and components
    smaller than ``min_size`` pixels dropped. Radii of 0 skip a step."""
    out = np.asarray(mask, dtype=bool)
    if opening > 0:
        out = ndi.binary_opening(out, structure=disk(opening))
    if closing > 0:
        # Pad so closing does not glue the region to the image border.
        pad = closing + 1
        out = ndi.binary_closing(np.pad(out, pad), structure=disk(closing))[pad:-pad, pad:-pad]
    if fill_holes:
        out = _fill_holes(out)
    if min_size > 0:
        out = filter_components(out, min_size=min_size)
    return out


def outlier_regions(image: np.ndarray, brain: np.ndarray | None, tolerances: Sequence[float],
                    *, k: float = 2.0, min_seed: int = 4, opening: int = 1, closing: int = 1,
                    min_size: int = 0, connectivity: int = 1,
                    seed_image: np.ndarray | None = None) -> np.ndarray:
    """Tumour candidates of one slice for several tolerances: seeds once, then grow and clean.

    Seeds are the outliers of ``seed_image`` (default: ``image``; e.g. the denoised slice,
    when ``image`` is its histogram-equalised version, whose intensities have no outliers by
    construction); the region grows over ``image``.

    Returns
    -------
    np.ndarray
        bool (len(tolerances), H, W): the cleaned region grown with each tolerance (all False
        when the slice has no outlier group).
    """
    image = np.asarray(image, dtype=np.float64)
    out = np.zeros((len(tolerances),) + image.shape, dtype=bool)
    seeds = select_seeds(image if seed_image is None else seed_image, brain, k=k,
                         min_size=min_seed, connectivity=connectivity)
    if not seeds.any():
        return out
    for i, tol in enumerate(tolerances):
        region = grow_region(image, seeds, float(tol), within=brain, connectivity=connectivity)
        region = clean_mask(region, opening=opening, closing=closing, min_size=min_size)
        if brain is not None:
            region &= np.asarray(brain, dtype=bool)
        out[i] = region
    return out


def outlier_region(image: np.ndarray, brain: np.ndarray | None, tolerance: float, *,
                   k: float = 2.0, min_seed: int = 4, opening: int = 1, closing: int = 1,
                   min_size: int = 0, connectivity: int = 1,
                   seed_image: np.ndarray | None = None) -> np.ndarray:
    """The cleaned region grown from the strongest outlier seeds with one ``tolerance``
    (see :func:`outlier_regions`); bool (H, W)."""
    return outlier_regions(image, brain, [tolerance], k=k, min_seed=min_seed, opening=opening,
                           closing=closing, min_size=min_size, connectivity=connectivity,
                           seed_image=seed_image)[0]
