"""Fuzzy c-means (Bezdek 1981) on pixel intensities, vectorised in numpy.

The standard alternating updates, for data ``x_k``, centres ``v_i``, fuzzifier ``m > 1``:

- centres: ``v_i = sum_k u_ik^m x_k / sum_k u_ik^m``
- memberships: ``u_ik = 1 / sum_j (d_ik / d_jk)^(2 / (m - 1))`` with ``d_ik = ||x_k - v_i||``

starting from memberships and stopping when the Frobenius norm of the change of the membership
matrix falls below ``tol`` or after ``max_iter`` steps, the order and stopping rule of
scikit-fuzzy's ``skfuzzy.cluster.cmeans`` (tests check both give the same centres and
memberships from the same start). Unlike scikit-fuzzy the default start is deterministic:
memberships of centres placed at evenly spaced quantiles of the data (``init="quantile"``),
and the clusters come back sorted by centre (first feature), darkest first for intensities.

:func:`fcm_image` clusters the pixels of one image (inside an optional mask) and returns
per-cluster membership maps, zero outside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mribench.api.errors import ParamError

__all__ = ["FCMResult", "fcm_image", "fuzzy_cmeans"]

_EPS = np.finfo(np.float64).eps


@dataclass
class FCMResult:
    """Centres ``(c, d)``, memberships ``(c, n)`` (columns sum to 1), iterations, objective."""

    centers: np.ndarray
    memberships: np.ndarray
    n_iter: int
    objective: float

    @property
    def labels(self) -> np.ndarray:
        """Hard assignment: the cluster of largest membership for each point."""
        return self.memberships.argmax(axis=0)


def _memberships(x: np.ndarray, centers: np.ndarray, m: float) -> tuple[np.ndarray, np.ndarray]:
    """Memberships (c, n) and squared distances (c, n) of points ``x`` (n, d) to ``centers``."""
    if x.shape[1] == 1:
        d2 = np.square(x[None, :, 0] - centers[:, 0, None])
    else:
        d2 = np.square(x[None, :, :] - centers[:, None, :]).sum(axis=2)
    # the same floor as scikit-fuzzy (d >= eps) keeps points on a centre finite
    d2 = np.fmax(d2, _EPS * _EPS)
    p = 1.0 / d2 if m == 2 else d2 ** (-1.0 / (m - 1.0))
    return p / p.sum(axis=0, keepdims=True), d2


def fuzzy_cmeans(x: np.ndarray, c: int = 3, m: float = 2.0, *, tol: float = 1e-5,
                 max_iter: int = 100, init: str | np.ndarray = "quantile",
                 seed: int = 0) -> FCMResult:
    """Cluster ``x`` (``(n,)`` values or ``(n, d)`` points) into ``c`` fuzzy clusters.

    Args:
        x: data; 1-D arrays are intensities.
        c: number of clusters (>= 2, at most the number of points).
        m: fuzzifier (> 1); 2 is the usual choice.
        tol: stop when ``||U_new - U_old||_F < tol``.
        max_iter: at most this many updates.
        init: ``"quantile"`` (centres at evenly spaced quantiles of the first feature),
            ``"random"`` (random memberships from ``seed``), or a ``(c, n)`` membership
            matrix to start from (columns are normalised).
        seed: seed of the ``"random"`` start.

    Returns:
        :class:`FCMResult` with clusters sorted by their centre's first coordinate.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    if not (isinstance(c, (int, np.integer)) and 2 <= c <= max(n, 2)):
        raise ParamError(f"fuzzy c-means: c must be an integer in [2, {n}], got {c!r}")
    if not m > 1:
        raise ParamError(f"fuzzy c-means: the fuzzifier m must be > 1, got {m!r}")
    if n < c:
        raise ParamError(f"fuzzy c-means: needs at least c={c} points, got {n}")
    if isinstance(init, np.ndarray):
        u = np.asarray(init, dtype=np.float64)
        if u.shape != (c, n):
            raise ParamError(f"fuzzy c-means: init has shape {u.shape}, expected {(c, n)}")
    elif init == "random":
        u = np.random.default_rng(seed).random((c, n))
    elif init == "quantile":
        qs = np.quantile(x[:, 0], (np.arange(c) + 0.5) / c)
        start = np.repeat(x.mean(axis=0, keepdims=True), c, axis=0)
        start[:, 0] = qs
        u, _ = _memberships(x, start, m)
    else:
        raise ParamError(f"fuzzy c-means: init must be 'quantile', 'random' or an array, "
                         f"got {init!r}")
    u = np.fmax(u / u.sum(axis=0, keepdims=True), _EPS)
    centers = np.zeros((c, x.shape[1]))
    objective = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        u_old = np.fmax(u / u.sum(axis=0, keepdims=True), _EPS)
        um = u_old ** m
        # (no BLAS: the matrices are tiny and BLAS threads only add overhead here)
        centers = np.einsum("cn,nd->cd", um, x) / um.sum(axis=1, keepdims=True)
        u, d2 = _memberships(x, centers, m)
        objective = float((um * d2).sum())
        if np.sqrt(np.square(u - u_old).sum()) < tol:
            break
    order = np.argsort(centers[:, 0], kind="stable")
    return FCMResult(centers=centers[order], memberships=u[order], n_iter=it,
                     objective=objective)


def fcm_image(image: np.ndarray, mask: np.ndarray | None = None, c: int = 3, m: float = 2.0,
              *, tol: float = 1e-4, max_iter: int = 100,
              max_points: int | None = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Fuzzy c-means on the intensities of ``image`` inside ``mask``.

    Centres are fitted on at most ``max_points`` pixels (an evenly strided subset, so it is
    deterministic), then the memberships of every masked pixel follow from them.

    Returns:
        ``(maps, centers)``: ``maps`` float32 ``(c, H, W)`` memberships (0 outside the mask,
        summing to 1 inside), ``centers`` ``(c,)`` ascending intensities.
    """
    image = np.asarray(image, dtype=np.float64)
    region = np.ones(image.shape, bool) if mask is None else np.asarray(mask, bool)
    values = image[region]
    maps = np.zeros((c, *image.shape), np.float32)
    if values.size < c or np.ptp(values) == 0:
        # too few or constant pixels: one cluster takes everything
        maps[c - 1][region] = 1.0
        return maps, np.full(c, values.mean() if values.size else 0.0)
    fit_on = values
    if max_points is not None and values.size > max_points:
        fit_on = values[:: int(np.ceil(values.size / max_points))]
    result = fuzzy_cmeans(fit_on, c=c, m=m, tol=tol, max_iter=max_iter)
    u, _ = _memberships(values[:, None], result.centers, m)
    maps[:, region] = u.astype(np.float32)
    return maps, result.centers[:, 0]
