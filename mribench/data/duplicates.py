"""Near-duplicate groups: the same slice stored twice, at another resolution or contrast.

Two images are near-duplicates when their 32 x 32 grayscale thumbnails (anti-aliased bilinear
reductions of the *original* image, :func:`mribench.data.imageio.thumbnail`, so groups do not
depend on the run's ``--image-size``), each z-normalised,
correlate above ``threshold``. Groups are the connected components of that graph
(:func:`scipy.sparse.csgraph.connected_components`), so a chain of near-duplicates forms one
group. On Br35H's 3,000 labelled images the default 0.995 leaves about 1,560 groups (0.999:
about 2,000); 0.995 is the default because it catches the copies at other resolutions and
contrasts while keeping distinct slices of one patient apart. The correlation matrix is one
(n x 1024) @ (1024 x n) product, in row blocks so memory stays bounded for large n.

A constant thumbnail (a blank image) has no defined correlation; it is its own group.
A group is named after its smallest member id, so names are stable and readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mribench.api.errors import DataError
from mribench.api.params import Interval
from mribench.api.types import Sample
from mribench.data.imageio import THUMB_SIZE, thumbnail

#: Default correlation above which two thumbnails are near-duplicates.
DEFAULT_THRESHOLD = 0.995

__all__ = ["DEFAULT_THRESHOLD", "THRESHOLD_RULE", "THUMB_SIZE", "assign_groups", "duplicate_pairs",
           "group_labels", "group_names", "normalise", "thumbnail"]


#: A valid grouping threshold (a correlation), for data-set option checks.
THRESHOLD_RULE = Interval(0, 1, closed="right")


def normalise(thumbs: np.ndarray) -> np.ndarray:
    """Rows z-normalised and scaled by 1/sqrt(d), so a dot product is a Pearson correlation."""
    x = np.asarray(thumbs, dtype=np.float64).reshape(len(thumbs), -1)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


def duplicate_pairs(thumbs: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                    block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, whose thumbnails correlate above ``threshold``.

    Returns (i, j, correlation) arrays.
    """
    z = normalise(thumbs)
    rows, cols, vals = [], [], []
    for start in range(0, len(z), block):
        corr = z[start:start + block] @ z.T
        i, j = np.nonzero(corr > threshold)
        i = i + start
        keep = i < j
        rows.append(i[keep])
        cols.append(j[keep])
        vals.append(corr[i[keep] - start, j[keep]])
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def group_labels(thumbs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Connected-component label (0..k-1) of every thumbnail."""
    if not THRESHOLD_RULE.check(threshold):
        raise DataError(f"duplicate threshold must be in (0, 1], got {threshold!r}; "
                        f"the default is {DEFAULT_THRESHOLD}")
    n = len(thumbs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    i, j, _ = duplicate_pairs(thumbs, threshold)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def group_names(ids: Sequence[str], thumbs: np.ndarray,
                threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """The group of each id, named after the smallest id of its group."""
    labels = group_labels(thumbs, threshold)
    first: dict[int, str] = {}
    for sid, lab in zip(ids, labels.tolist(), strict=True):
        if lab not in first or sid < first[lab]:
            first[lab] = sid
    return [first[lab] for lab in labels.tolist()]


def assign_groups(samples: Sequence[Sample], thumbs: np.ndarray | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> None:
    """Set ``sample.group`` in place from ``thumbs`` (one per sample, any shape per row).

    Without ``thumbs`` the thumbnails are taken from the samples' (already resized) images.
    """
    if thumbs is None:
        thumbs = np.stack([thumbnail(s.image) for s in samples]) if samples else np.zeros((0, 1))
    for sample, group in zip(samples, group_names([s.id for s in samples], thumbs, threshold),
                             strict=True):
        sample.group = group
