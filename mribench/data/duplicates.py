"""Near-duplicate groups: the same slice stored twice, at another resolution or contrast.

Two images are near-duplicates when their 32 x 32 grayscale thumbnails (anti-aliased bilinear
reductions of the *original* image, :func:`mribench.data.imageio.thumbnail`, so groups do not
depend on the run's ``--image-size``), each z-normalised,
correlate above ``threshold``. Groups are the connected components of that graph
(:func:`scipy.sparse.csgraph.connected_components`), so a chain of near-duplicates forms one
group. On Br35H's 3,000 labelled images the default 0.995 leaves about 1,560 groups (0.999:
about 2,000); 0.995 is the default because it catches the copies at other resolutions and
contrasts while keeping distinct slices of one patient apart.

Finding the pairs without comparing all of them (:func:`duplicate_pairs`), exactly:

- *Candidates.* With rows z-normalised to unit length (:func:`normalise`), ``r = z_i . z_j``
  and ``|z_i - z_j|^2 = 2 - 2 r``, so ``r > t`` implies ``|z_i - z_j| < eps = sqrt(2 (1 - t))``
  (0.1 for t = 0.995). Every thumbnail is mapped to ``e(z) = (V^T z, |z - V V^T z|)``, its
  coordinates on k orthonormal directions V (the leading principal axes of a fixed sample of
  the thumbnails, though any orthonormal V works) plus the length of what they leave out.
  That map never lengthens a difference: ``|e(z_i) - e(z_j)|^2 = |V^T (z_i - z_j)|^2 +
  (|b_i| - |b_j|)^2 <= |V^T (z_i - z_j)|^2 + |b_i - b_j|^2 = |z_i - z_j|^2`` (b the residuals,
  reverse triangle inequality, Pythagoras). So every pair with ``r > t`` lies within ``eps`` in
  the (k + 1)-dimensional embedding, and a k-d tree's ``query_pairs`` with radius ``eps`` plus
  a margin of 1e-5 (far above the float64 rounding of the embedding, below 1e-6) returns all
  of them; it misses none. Images (with their low-dimensional structure) spread out in the
  leading axes, so the candidates are a small fraction of all pairs. Vectors without such
  structure (i.i.d. noise) do not spread in any few directions; when a sampled estimate
  says the candidates would be more than 1/16 of all pairs, the pairs are instead compared
  all against all, in bounded row blocks.
- *Verification* in float32 (half the time and memory of float64): a float32 dot product of
  two unit vectors of d = 1024 values is within ``d * 2^-24 + 2^-23 < 1e-4`` of the float64
  one, so a pair is accepted when its float32 correlation exceeds ``t + 1e-4``, rejected when
  it is at most ``t - 1e-4``, and otherwise decided by its float64 correlation, as before.
  Hence the pairs, and the groups, are those of the float64 all-pairs product (up to the last
  bit of a correlation within ~1e-13 of the threshold, where summation order could matter);
  the tests check that on Br35H's 3,000 thumbnails (1,563 groups, the same partition).

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


#: Correlations computed in float32 are within this of float64 ones (see the module docstring).
_F32_MARGIN = 1e-4
#: Added to the embedding search radius, above the float64 rounding of the embedding.
_RADIUS_MARGIN = 1e-5
#: Below this many thumbnails, all pairs are compared (the tree does not pay off).
_DENSE_BELOW = 2048
#: Principal directions of the embedding (k above; a k-d tree works best with a few).
_EMBED_DIMS = 10
#: All pairs are compared when the candidates would exceed this fraction of them.
_DENSE_FRACTION = 1 / 16
#: Rows normalised at once in float64 (the float64 rows are never all held).
_ROWS = 1 << 15


def _pairs(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated (i, j, value) sorted by i, then j."""
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    i, j = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    v = np.concatenate(vals).astype(np.float64)
    order = np.lexsort((j, i))
    return i[order], j[order], v[order]


def _correlations(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """float64 correlations of the pairs (i, j) of rows of ``x`` (the thumbnails): rows are
    normalised one by one, so the values are those of :func:`normalise` on all of them."""
    return np.einsum("ij,ij->i", normalise(x[i]), normalise(x[j]))


def _decide(x: np.ndarray, z32: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs (i, j) that correlate above ``threshold``, with their float64
    correlations: float32 decides unless within :data:`_F32_MARGIN`, then float64 does."""
    keep_i, keep_j, vals = [], [], []
    step = 16384
    for s in range(0, len(i), step):
        a, b = i[s:s + step], j[s:s + step]
        c32 = np.einsum("ij,ij->i", z32[a], z32[b])
        near = np.abs(c32.astype(np.float64) - threshold) <= _F32_MARGIN
        ok = c32 > threshold + _F32_MARGIN
        if near.any():
            ok[near] = _correlations(x, a[near], b[near]) > threshold
        a, b = a[ok], b[ok]
        keep_i.append(a)
        keep_j.append(b)
        vals.append(_correlations(x, a, b))
    return _pairs(keep_i, keep_j, vals)


def _dense_pairs(x: np.ndarray, z32: np.ndarray, threshold: float, block: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs compared, in float32 row blocks of the upper triangle (bounded memory)."""
    n = len(z32)
    block = max(1, min(block, (1 << 26) // max(1, n)))  # at most 256 MB of float32 per block
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        corr = z32[start:start + block] @ z32[start:].T
        i, j = np.nonzero(corr > threshold - _F32_MARGIN)
        del corr
        keep = i < j
        i, j = i[keep] + start, j[keep] + start
        if len(i):
            a, b, v = _decide(x, z32, i, j, threshold)
            rows.append(a)
            cols.append(b)
            vals.append(v)
    return _pairs(rows, cols, vals)


def _basis(sample: np.ndarray, dims: int) -> np.ndarray:
    """Orthonormal directions (d, k) close to the leading principal axes of ``sample``: a few
    rounds of subspace iteration (cheaper than a full eigendecomposition; the exact axes are
    not needed, only orthonormal directions that spread the images)."""
    centred = sample.astype(np.float64) - sample.mean(axis=0, dtype=np.float64)
    basis = np.random.default_rng(0).standard_normal((sample.shape[1], min(dims, sample.shape[1])))
    for _ in range(4):
        basis, _r = np.linalg.qr(centred.T @ (centred @ basis))
    return basis


def _embed(x: np.ndarray, rows: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``(V^T z, |z - V V^T z|)`` of the thumbnails ``rows`` (float64, normalised
    :data:`_ROWS` at a time; see the module docstring)."""
    out = np.empty((len(rows), basis.shape[1] + 1))
    for start in range(0, len(rows), _ROWS):
        z = normalise(x[rows[start:start + _ROWS]])
        coords = z @ basis
        rest = np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", coords, coords)
        out[start:start + len(z), :-1] = coords
        out[start:start + len(z), -1] = np.sqrt(np.maximum(rest, 0.0))
    return out


def duplicate_pairs(thumbs: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                    block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, whose thumbnails correlate above ``threshold``.

    Returns (i, j, correlation) arrays, sorted by i then j; the correlations are float64.
    Candidates come from a k-d tree on a distance-preserving embedding (none is missed) and
    are checked in float32, with float64 deciding the close calls; see the module docstring.
    ``block`` bounds the rows compared at once when all pairs are compared.
    """
    x = np.asarray(thumbs).reshape(len(thumbs), -1)
    z32 = np.empty(x.shape, np.float32)
    live_rows = np.zeros(len(x), bool)
    for start in range(0, len(x), _ROWS):
        z = normalise(x[start:start + _ROWS])
        z32[start:start + len(z)] = z
        live_rows[start:start + len(z)] = np.einsum("ij,ij->i", z, z) > 0.5  # blank: zero
    live = np.flatnonzero(live_rows)
    if len(x) < _DENSE_BELOW or len(live) < 2 or not 0 < threshold <= 1:
        return _dense_pairs(x, z32, threshold, block)
    from scipy.spatial import cKDTree

    radius = float(np.sqrt(2.0 * (1.0 - threshold))) + _RADIUS_MARGIN
    sample = np.sort(np.random.default_rng(0).choice(live, min(len(live), 2048), replace=False))
    basis = _basis(z32[sample], _EMBED_DIMS)
    # Estimated fraction of the pairs that would be candidates (from the sample's pairs).
    embedded = _embed(x, sample, basis)
    within = cKDTree(embedded).count_neighbors(cKDTree(embedded), radius) - len(sample)
    if within > _DENSE_FRACTION * len(sample) * (len(sample) - 1):
        return _dense_pairs(x, z32, threshold, block)
    embedded = _embed(x, live, basis)
    found = cKDTree(embedded).query_pairs(radius, output_type="ndarray")
    del embedded
    i, j = live[found[:, 0]], live[found[:, 1]]
    return _decide(x, z32, np.minimum(i, j), np.maximum(i, j), threshold)


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
