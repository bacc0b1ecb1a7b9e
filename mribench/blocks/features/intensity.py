"""First-order intensity statistics of a region (the brain, a tumour candidate).

For each image the statistics of the pixel values inside its mask: mean, standard deviation,
skewness and excess kurtosis (population moments, as ``scipy.stats.skew`` / ``kurtosis`` with
``bias=True``), the Shannon entropy (bits) of a ``bins``-bin histogram on [0, 1], and
percentiles (linear interpolation, as ``np.percentile``). A region with no pixel gets all zeros;
one with zero variance gets skewness and kurtosis 0.

The work is numpy on each image's masked pixels, one image at a time: it is proportional to
the pixels either way, and stacking all images (tried) only costs memory bandwidth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mribench.blocks.features.common import ImageInput, as_masks, as_stack

__all__ = ["intensity_feature_names", "intensity_features"]

DEFAULT_PERCENTILES: tuple[float, ...] = (10, 25, 50, 75, 90)


def intensity_features(images: ImageInput, masks: np.ndarray | Sequence[np.ndarray] | None = None,
                       *, bins: int = 32,
                       percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """First-order statistics: float64 (n, 5 + len(percentiles)).

    Columns: mean, std, skewness, kurtosis, entropy, then the percentiles
    (see :func:`intensity_feature_names`).

    Parameters
    ----------
    images : samples, (H, W) image or (n, H, W) stack
        float in [0, 1].
    masks : bool (n, H, W) or None
        The region of each image; None uses every pixel.
    bins : int, default=32
        Histogram bins on [0, 1] for the entropy.
    percentiles : sequence of float, default=(10, 25, 50, 75, 90)
    """
    stack = as_stack(images)
    n = stack.shape[0]
    inside = as_masks(masks, stack.shape)
    out = np.zeros((n, 5 + len(percentiles)))
    # One pass per image over its masked pixels (vectorised inside; the work is per pixel,
    # so stacking the images would only cost memory).
    for i in range(n):
        x = stack[i][inside[i]].astype(np.float64)
        if x.size:
            out[i] = _first_order(x, bins, percentiles)
    return out


def _first_order(x: np.ndarray, bins: int, percentiles: Sequence[float]) -> np.ndarray:
    mean = x.mean()
    c = x - mean
    c2 = c * c
    var = c2.mean()
    if var > 1e-18:
        skew = (c2 * c).mean() / var ** 1.5
        kurt = (c2 * c2).mean() / var ** 2 - 3.0
    else:
        skew = kurt = 0.0
    level = np.minimum((np.clip(x, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    prob = np.bincount(level, minlength=bins)
    prob = prob[prob > 0] / x.size
    entropy = float(-(prob * np.log2(prob)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    pct = np.percentile(x, percentiles) if len(percentiles) else np.zeros(0)
    return np.concatenate([[mean, np.sqrt(var), skew, kurt, entropy], pct])


def intensity_feature_names(prefix: str = "",
                            percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> list[str]:
    """Column names of :func:`intensity_features` (``prefix`` prepended, e.g. "brain_")."""
    names = ["mean", "std", "skewness", "kurtosis", "entropy"]
    names += [f"p{p:g}" for p in percentiles]
    return [prefix + name for name in names]
