"""Acquisition size as a feature: what an image's original height and width say.

They carry no information about the anatomy, so a classifier that does well on them has found
a shortcut of the data set (Br35H's two classes come from sources of different sizes). Used by
the split's shortcut audit and by the ``size-only`` no-skill row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mribench.api.types import Sample

__all__ = ["size_features"]


def size_features(samples: Sequence[Sample]) -> np.ndarray:
    """(n, 3) float: original height, width and log(height / width) of each sample."""
    hw = np.array([s.original_size for s in samples], dtype=np.float64).reshape(-1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where((hw > 0).all(axis=1), np.log(hw[:, 0] / hw[:, 1]), 0.0)
    return np.column_stack([hw, aspect])
