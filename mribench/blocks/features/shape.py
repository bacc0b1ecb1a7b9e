"""Shape descriptors of a candidate region (``skimage.measure.regionprops``).

The region of an image is its whole mask taken as one object (all its components together),
so a tumour split in two by the clean-up still counts as one candidate. Lengths are divided by
the image side and areas by the image area, so the features do not depend on the run's image
size. An empty mask gives a row of zeros (and ``n_components`` 0), which classifiers read as
"no candidate".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

__all__ = ["SHAPE_FEATURES", "shape_feature_names", "shape_features"]

#: Columns of :func:`shape_features`, in order.
SHAPE_FEATURES: tuple[str, ...] = (
    "area",              # pixels / image pixels
    "perimeter",         # perimeter / image side
    "eccentricity",      # of the ellipse with the same second moments, 0 (disc) to 1
    "solidity",          # area / convex hull area
    "extent",            # area / bounding-box area
    "major_axis",        # major axis length / image side
    "minor_axis",        # minor axis length / image side
    "equivalent_diameter",  # diameter of the disc of the same area / image side
    "compactness",       # 4 pi area / perimeter^2 (1 for a disc), clipped to [0, 1]
    "n_components",      # connected components (4-connectivity)
)


def shape_features(masks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Shape descriptors of each mask: float64 (n, len(SHAPE_FEATURES)).

    Parameters
    ----------
    masks : bool (n, H, W) stack, one (H, W) mask, or a sequence of masks
    """
    stack = np.asarray(masks if isinstance(masks, np.ndarray) else np.stack(list(masks)),
                       dtype=bool)
    if stack.ndim == 2:
        stack = stack[None]
    n = stack.shape[0]
    out = np.zeros((n, len(SHAPE_FEATURES)))
    if n == 0:
        return out
    side = float(max(stack.shape[1:]))
    pixels = float(stack.shape[1] * stack.shape[2])
    for i in range(n):
        mask = stack[i]
        if not mask.any():
            continue
        props = regionprops(mask.astype(np.uint8))[0]
        area = float(props.area)
        perimeter = float(props.perimeter)
        compact = min(1.0, 4 * np.pi * area / perimeter ** 2) if perimeter > 0 else 1.0
        _, n_comp = ndi.label(mask)
        out[i] = (area / pixels, perimeter / side, props.eccentricity, props.solidity,
                  props.extent, props.axis_major_length / side, props.axis_minor_length / side,
                  props.equivalent_diameter_area / side, compact, n_comp)
    return out


def shape_feature_names(prefix: str = "") -> list[str]:
    """Column names of :func:`shape_features` (``prefix`` prepended, e.g. "candidate_")."""
    return [prefix + name for name in SHAPE_FEATURES]
