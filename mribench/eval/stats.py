"""Paired significance tests between methods, Holm's correction, and rank groups.

Every method of a run is scored on the same test images, so comparisons are *paired*:

- **classify**: McNemar's test on the per-image correctness of two methods. Only the
  discordant images count (``b``: A right and B wrong, ``c``: A wrong and B right). When
  ``b + c < 25`` the exact two-sided binomial test ``binomtest(b, b + c, 0.5)`` is used (the
  chi-square approximation is poor for few discordant pairs); otherwise the chi-square
  statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom.
  With no discordant image at all the p-value is 1.
- **segment**: the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided,
  ``zero_method="wilcox"``) on per-image Dice (or IoU), over the images where both methods
  have a finite score. With every difference zero (or fewer than one non-zero pair) the
  p-value is 1.

These two test *accuracy* and *per-image Dice*, which are not what the tables rank (F1 from
pooled image labels, pooled pixel Dice/IoU): McNemar can call two classifiers equal whose F1
differ clearly, and the other way round. They stay available as labelled extra columns
(:data:`TEST_LABELS`); the rank groups use :func:`paired_metric_test`, a test of the ranked
metric itself:

- **Set-level paired test** (:func:`paired_metric_test`). The statistic is the difference
  ``metric(A) - metric(B)`` of the *set-level* metric, computed as the tables compute it: F1,
  accuracy, precision, ... from confusion counts pooled over images (image labels for
  ``classify``, pixels for ``segment``), AUC from the scores, ``mean_dice``/``mean_iou`` as
  the mean of the per-image values. With several training seeds per method (seed -> per-case
  records) each method's value is the mean over its seeds of the set-level metric.
  ``method="permutation"`` (default; "approximate randomization", Noreen 1989, Yeh 2000, the
  usual test for F1): under the null hypothesis the two methods' outputs on an image are
  exchangeable, so each resample swaps, image by image with probability 1/2, everything A and
  B produced for that image (in every seed, seeds paired by key or position), and recomputes
  the statistic; ``p = (1 + #{|d*| >= |d|}) / (1 + R)`` (two-sided, never 0, valid at any
  ``n``). It needs as many seeds for A as for B; otherwise the bootstrap is used and
  ``test`` says so. ``method="bootstrap"``: ``R`` paired resamples of the images (the same
  image indices for both methods and all seeds, :func:`~mribench.eval.metrics.bootstrap_weights`)
  and the null distribution is the centred bootstrap distribution,
  ``p = (1 + #{|d* - d| >= |d|}) / (1 + R)``. Both are deterministic per ``seed`` and
  vectorised: the resampled counts of all ``R`` resamples are one matrix product.

Several comparisons are made at once, so p-values are adjusted with Holm's step-down method,
which controls the family-wise error rate without assuming independence.

**Rank groups.** Methods are sorted by the ranking metric (best first). The best method leads
group 1; each other method is compared with it, the p-values Holm-adjusted together, and every
method whose difference from the leader is not significant (adjusted p >= alpha) joins group 1.
The best of the methods left leads group 2 and is compared with the rest of them, and so on.
A method in group 1 is therefore statistically indistinguishable from the leader; group numbers
follow the leaders' order, so a method can sit in a lower group number than a method ranked
above it when only the latter differs significantly from the leader. The p-value reported for
every method (:func:`rank_groups`) is its Holm-adjusted p-value *against the overall leader*
(the first family of comparisons), also for methods outside group 1 and for the leaders of
later groups; only the overall leader has none (NaN).

**Intervals over images and seeds** (:func:`seed_pooled_interval`). With ``S`` seeds, the
point value is the mean over seeds of the set-level metric and the spread its standard
deviation over seeds (``ddof=1``; NaN with one seed: one seed measures no spread). The 95%
interval is a bootstrap over *images*, pooled over seeds: replicate ``b`` draws one resample
of the images (the same indices in every seed, since the seeds score the same images),
computes each seed's metric on it and averages over seeds; the interval is the percentile
interval of these averages. It is the image-sampling uncertainty of the seed-averaged metric,
given the seeds run; seed-to-seed variation shows in ``sd`` and is not folded in (with the
3-5 seeds of a benchmark a bootstrap over seeds would be unreliable). With one seed it is
exactly the interval of :func:`~mribench.eval.metrics.evaluate` for the same ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as sps

from mribench.api.errors import MribenchError
from mribench.eval.metrics import (
    CLASSIFY_METRICS,
    CONFIDENCE,
    METRICS,
    SEGMENT_METRICS,
    SEGMENT_VIEWS,
    bootstrap_weights,
    in_segment_view,
    metrics_from_counts,
    percentile_ci,
    weighted_auc,
)

__all__ = [
    "EXACT_BELOW",
    "N_RESAMPLES",
    "TESTED_METRICS",
    "TEST_LABELS",
    "PairedTest",
    "SeedInterval",
    "align_cases",
    "holm",
    "mcnemar",
    "paired_metric_test",
    "rank_groups",
    "seed_pooled_interval",
    "swap_matrix",
    "wilcoxon_signed_rank",
]

#: McNemar uses the exact binomial test below this many discordant pairs.
EXACT_BELOW = 25
#: Default number of resamples of :func:`paired_metric_test`.
N_RESAMPLES = 2000
#: The set-level metrics :func:`paired_metric_test` and :func:`seed_pooled_interval` handle.
TESTED_METRICS: dict[str, tuple[str, ...]] = {
    "classify": CLASSIFY_METRICS,
    "segment": (*SEGMENT_METRICS, "mean_dice", "mean_iou"),
}
#: What each test's ``PairedTest.test`` name tests, for column headers and captions.
TEST_LABELS: dict[str, str] = {
    "paired-permutation": "paired permutation test of the ranked metric",
    "paired-bootstrap": "paired bootstrap test of the ranked metric",
    "mcnemar-exact": "McNemar, a test of accuracy (exact binomial)",
    "mcnemar-chi2": "McNemar, a test of accuracy (chi-square)",
    "wilcoxon": "Wilcoxon signed-rank, a test of per-image Dice/IoU",
}


@dataclass(frozen=True)
class PairedTest:
    """Outcome of one paired test."""

    test: str
    statistic: float
    p_value: float
    n: int
    detail: str = ""


def mcnemar(correct_a: Any, correct_b: Any, *, exact_below: int = EXACT_BELOW) -> PairedTest:
    """McNemar's test on the paired per-image correctness of two classifiers.

    Parameters
    ----------
    correct_a, correct_b : bool arrays of shape (n,)
        Whether each method labelled each image correctly (same images, same order).
    exact_below : int, default=25
        Use the exact binomial test when the discordant count ``b + c`` is below this.

    Returns
    -------
    PairedTest
        ``statistic`` is ``b`` for the exact test and the chi-square value otherwise; ``n`` is
        the number of discordant images.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    bb = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != bb.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} and {bb.size}")
    b = int(np.count_nonzero(a & ~bb))
    c = int(np.count_nonzero(~a & bb))
    n = b + c
    if n == 0:
        return PairedTest("mcnemar-exact", 0.0, 1.0, 0, "b=0 c=0")
    if n < exact_below:
        p = sps.binomtest(b, n, 0.5, alternative="two-sided").pvalue
        return PairedTest("mcnemar-exact", float(b), float(min(p, 1.0)), n, f"b={b} c={c}")
    chi2 = (abs(b - c) - 1.0) ** 2 / n
    return PairedTest("mcnemar-chi2", float(chi2), float(sps.chi2.sf(chi2, 1)), n,
                      f"b={b} c={c}")


def wilcoxon_signed_rank(scores_a: Any, scores_b: Any) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on paired per-image scores (Dice, IoU).

    Pairs where either score is NaN (an image excluded by the empty-mask policy) are dropped.
    ``n`` is the number of pairs kept.
    """
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    if np.count_nonzero(d) == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, int(a.size), "all differences zero")
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedTest("wilcoxon", float(res.statistic), float(res.pvalue), int(a.size))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN).

    The k-th smallest of m p-values is multiplied by ``m - k + 1``, a running maximum keeps
    the adjusted values in order, and they are capped at 1.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def rank_groups(names: Sequence[str], compare: Callable[[str, str], PairedTest], *,
                alpha: float = 0.05) -> tuple[dict[str, int], dict[str, float]]:
    """Rank groups of methods listed best first (see the module docstring).

    Parameters
    ----------
    names : sequence of str
        Methods sorted by the ranking metric, best first.
    compare : callable (leader, other) -> PairedTest
        The paired test between two methods.
    alpha : float, default=0.05
        Family-wise significance level of each group's comparisons (Holm).

    Returns
    -------
    groups : dict
        Method -> group number (1 is the leader's group).
    p_values : dict
        Method -> Holm-adjusted p-value of its comparison with the *overall* leader (the
        first method), for every method, in or outside group 1; NaN only for the leader
        itself (and where the test gave NaN, e.g. no common image).
    """
    remaining = list(names)
    groups: dict[str, int] = {}
    p_out: dict[str, float] = {}
    group = 0
    while remaining:
        group += 1
        leader, others = remaining[0], remaining[1:]
        groups[leader] = group
        adjusted = holm([compare(leader, other).p_value for other in others])
        if group == 1:
            p_out[leader] = float("nan")
            p_out.update((o, float(p)) for o, p in zip(others, adjusted, strict=True))
        left = []
        for other, p in zip(others, adjusted, strict=True):
            if np.isnan(p) or p >= alpha:
                groups[other] = group
            else:
                left.append(other)
        remaining = left
    return groups, p_out


# --------------------------------------------------------------------------- set-level metrics

#: Per-case records of one method: one seed (a list of records) or several (seed -> records,
#: or a list of such lists).
Cases = Sequence[Mapping[str, Any]] | Mapping[Any, Sequence[Mapping[str, Any]]] | Sequence[
    Sequence[Mapping[str, Any]]]


def _seeds(cases: Cases) -> list[tuple[Any, list[Mapping[str, Any]]]]:
    """``(key, records)`` per seed, keys sorted for a mapping, positions for a list."""
    if isinstance(cases, Mapping):
        keys = list(cases)
        try:
            keys = sorted(keys)
        except TypeError:
            keys = sorted(keys, key=str)
        return [(k, list(cases[k])) for k in keys]
    items = list(cases)
    if not items or isinstance(items[0], Mapping):
        return [(0, items)]
    return [(i, list(c)) for i, c in enumerate(items)]


def _check(task: str, metric: str, view: str = "all") -> None:
    if task not in TESTED_METRICS:
        raise MribenchError(f"task must be classify or segment; got {task!r}")
    if metric not in TESTED_METRICS[task]:
        raise MribenchError(f"cannot test {task} by {metric!r}; choose one of "
                            f"{', '.join(TESTED_METRICS[task])}")
    if view not in SEGMENT_VIEWS:
        raise MribenchError(f"segment view must be one of {', '.join(SEGMENT_VIEWS)}; "
                            f"got {view!r}")


def _member(record: Mapping[str, Any], task: str, view: str) -> bool:
    if task == "classify":
        return record.get("label") in (0, 1) and record.get("pred") is not None
    return in_segment_view(dict(record), view)


def align_cases(methods: Sequence[Cases], task: str, view: str = "all"
                ) -> tuple[list[str], list[list[list[Mapping[str, Any]]]]]:
    """The images every seed of every method scored in ``task`` (and ``view``), aligned.

    Parameters
    ----------
    methods : sequence of per-case records
        For each method, one seed's records (a list of dicts, as ``per_case.json``) or several
        (seed -> records, or a list of record lists).
    task : {"classify", "segment"}
        ``classify``: records of label 0 or 1; ``segment``: records in the ``view``
        (:func:`~mribench.eval.metrics.in_segment_view`).
    view : {"all", "tumour_only"}, default="all"

    Returns
    -------
    ids : list of str
        The common ids, in the order of the first method's first seed. An image missing from
        any seed of any method is dropped, so every comparison is on the same images.
    aligned : list
        ``aligned[m][s][i]`` is method ``m``'s record of ``ids[i]`` in its ``s``-th seed.
    """
    maps = [[{r["id"]: r for r in recs if _member(r, task, view)} for _, recs in _seeds(c)]
            for c in methods]
    every = [m for per_method in maps for m in per_method]
    ids = [i for i in every[0] if all(i in m for m in every[1:])] if every else []
    return ids, [[[m[i] for i in ids] for m in per_method] for per_method in maps]


def _value(record: Mapping[str, Any], key: str) -> float:
    v = record.get(key)
    return np.nan if v is None else float(v)


def _design(seeds: list[list[Mapping[str, Any]]], task: str, metric: str) -> np.ndarray:
    """(S, n, k) per-image contributions whose sum over images gives the set-level metric.

    Counts metrics: ``k = 4`` columns ``tp, fp, tn, fn`` (image indicators for ``classify``,
    pixels for ``segment``). ``mean_dice``/``mean_iou``: ``k = 2``, the per-image value (0
    where NaN) and whether it is finite. ``auc``: ``k = 1``, the score (NaN where None).
    """
    out = []
    for recs in seeds:
        if metric == "auc":
            x = np.array([[_value(r, "score")] for r in recs], dtype=np.float64)
        elif metric in ("mean_dice", "mean_iou"):
            v = np.array([_value(r, metric[5:]) for r in recs], dtype=np.float64)
            ok = np.isfinite(v)
            x = np.stack([np.where(ok, v, 0.0), ok.astype(np.float64)], axis=1)
        elif task == "classify":
            t = np.array([r["label"] == 1 for r in recs], dtype=bool)
            p = np.array([r["pred"] == 1 for r in recs], dtype=bool)
            x = np.stack([t & p, ~t & p, ~t & ~p, t & ~p], axis=1).astype(np.float64)
        else:
            x = np.array([[r["tp"], r["fp"], r["tn"], r["fn"]] for r in recs], dtype=np.float64)
        out.append(x.reshape(len(recs), -1))
    return np.stack(out)


def _from_sums(sums: np.ndarray, metric: str) -> np.ndarray:
    """The set-level metric from summed contributions (..., k) of :func:`_design`."""
    if metric in METRICS:
        m = metrics_from_counts(sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3])
        return np.asarray(m[metric], dtype=np.float64)
    out = np.full(sums.shape[:-1], np.nan)
    np.divide(sums[..., 0], sums[..., 1], out=out, where=sums[..., 1] > 0)
    return out


def _rank_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` (S, n) (ties one half; ``roc_auc_score``); NaN for
    a row with a missing score or with one class."""
    ones = np.ones((1, scores.shape[-1]))
    return np.array([_finite_auc(y, row, ones)[0] for row in scores], dtype=np.float64)


def _swap_auc(y: np.ndarray, a: np.ndarray, b: np.ndarray, z: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """AUC of A and B after each permutation resample swaps the scores of images ``z``.

    With ``H_XY[i, j]`` = 1, 1/2 or 0 as positive ``i`` scored by X is above, tied with or
    below negative ``j`` scored by Y, the Mann-Whitney count of the mixed scores is bilinear
    in the swap indicators, so all resamples take four matrix products
    ``z_pos @ H_XY`` (no sorting). NaN for every resample when a score is missing.
    """
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        nan = np.full(z.shape[0], np.nan)
        return nan, nan.copy()

    def step(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        d = x[y][:, None] - w[~y][None, :]
        return (d > 0) + 0.5 * (d == 0)

    h = {"aa": step(a, a), "ab": step(a, b), "ba": step(b, a), "bb": step(b, b)}
    zp, zn = z[:, y].astype(np.float64), z[:, ~y].astype(np.float64)
    keep_n = 1.0 - zn
    m = {k: zp @ v for k, v in h.items()}   # (R, n_neg) each
    c = {k: v.sum(axis=0) for k, v in h.items()}
    u_a = ((c["aa"] - m["aa"]) * keep_n + (c["ab"] - m["ab"]) * zn
           + m["ba"] * keep_n + m["bb"] * zn).sum(axis=1)
    u_b = ((c["bb"] - m["bb"]) * keep_n + (c["ba"] - m["ba"]) * zn
           + m["ab"] * keep_n + m["aa"] * zn).sum(axis=1)
    return u_a / (n_pos * n_neg), u_b / (n_pos * n_neg)


def _seed_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the seeds (axis 0), ignoring NaN seeds; NaN where every seed is NaN."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    count = ok.sum(axis=0)
    out = np.full(values.shape[1:], np.nan)
    np.divide(np.where(ok, values, 0.0).sum(axis=0), count, out=out, where=count > 0)
    return out


def swap_matrix(n: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Which images each permutation resample swaps between the two methods, (R, n) bool.

    ``numpy.random.default_rng(seed).random((n_resamples, n)) < 0.5``: deterministic per
    ``(n, n_resamples, seed)``, so every pair of methods sees the same swaps.
    """
    return np.random.default_rng(seed).random((max(n_resamples, 0), max(n, 0))) < 0.5


def _labels(seeds: list[list[Mapping[str, Any]]]) -> np.ndarray:
    return np.array([r.get("label") == 1 for r in seeds[0]], dtype=bool)


def paired_metric_test(cases_a: Cases, cases_b: Cases, metric: str, task: str = "classify", *,
                       view: str = "all", n_resamples: int = N_RESAMPLES, seed: int = 0,
                       method: str = "permutation") -> PairedTest:
    """Two-sided paired test of the difference in a set-level metric between two methods.

    See the module docstring. The statistic is ``metric(A) - metric(B)``, each the mean over
    the method's seeds of the set-level metric on the common images (:func:`align_cases`).

    Parameters
    ----------
    cases_a, cases_b : per-case records
        Each method's ``per_case.json`` records: one seed (a list of dicts) or several (seed ->
        records, or a list of record lists). Seeds of A and B are paired by sorted key
        (mapping) or position (list) in the permutation test.
    metric : str
        A metric of ``task`` (:data:`TESTED_METRICS`): accuracy, f1, iou, precision, recall,
        specificity (pooled counts), auc (classify), mean_dice, mean_iou (segment; per-image
        values of the records, under the policy the records were scored with).
    task : {"classify", "segment"}, default="classify"
    view : {"all", "tumour_only"}, default="all"
        The segmentation view (ignored for ``classify``).
    n_resamples : int, default=2000
    seed : int, default=0
        Seed of the resamples (swaps or bootstrap weights), the same for every pair.
    method : {"permutation", "bootstrap"}, default="permutation"

    Returns
    -------
    PairedTest
        ``test`` "paired-permutation" or "paired-bootstrap", ``statistic`` the observed
        difference A - B, ``p_value`` (NaN with no common image or an undefined metric), ``n``
        the number of common images, ``detail`` both values, seeds and resamples.
    """
    _check(task, metric, view)
    if method not in ("permutation", "bootstrap"):
        raise MribenchError(f"method must be permutation or bootstrap; got {method!r}")
    ids, (seeds_a, seeds_b) = align_cases([cases_a, cases_b], task, view)
    n, s_a, s_b, r = len(ids), len(seeds_a), len(seeds_b), int(n_resamples)
    if method == "permutation" and s_a != s_b:
        method = "bootstrap"  # swaps need paired seeds
    name = f"paired-{method}"
    where = task if task == "classify" else f"segment/{view}"
    if n == 0 or r <= 0:
        return PairedTest(name, float("nan"), float("nan"), n,
                          f"{metric} ({where}): no common image" if n == 0 else "no resample")
    resample = _auc_resamples if metric == "auc" else _pooled_resamples
    a_obs, b_obs, a_star, b_star = resample(seeds_a, seeds_b, task, metric, method, n, r, seed)
    a_obs, b_obs = float(a_obs), float(b_obs)
    delta = a_obs - b_obs
    p = _p_value(delta, a_star - b_star, method)
    detail = (f"{metric} ({where}): A {a_obs:.4f}, B {b_obs:.4f}; {n} images, "
              f"{s_a}/{s_b} seeds, {r} resamples")
    return PairedTest(name, float(delta), p, n, detail)


#: The observed values of A and B, and their values under each resample (R,).
_Resamples = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _auc_resamples(seeds_a: list[list[Mapping[str, Any]]], seeds_b: list[list[Mapping[str, Any]]],
                   task: str, metric: str, method: str, n: int, r: int, seed: int) -> _Resamples:
    """AUC of A and B (seed means), observed and under ``r`` swaps or bootstrap weights."""
    y = _labels(seeds_a)
    xa, xb = _design(seeds_a, task, metric)[..., 0], _design(seeds_b, task, metric)[..., 0]
    a_obs, b_obs = _seed_mean(_rank_auc(y, xa)), _seed_mean(_rank_auc(y, xb))
    if method == "permutation":
        z = swap_matrix(n, r, seed)
        swapped = [_swap_auc(y, xa[k], xb[k], z) for k in range(len(seeds_a))]
        a_star = _seed_mean(np.stack([u for u, _ in swapped]))
        b_star = _seed_mean(np.stack([v for _, v in swapped]))
    else:
        w = bootstrap_weights(n, r, seed)
        a_star = _seed_mean(np.stack([_finite_auc(y, s, w) for s in xa]))
        b_star = _seed_mean(np.stack([_finite_auc(y, s, w) for s in xb]))
    return a_obs, b_obs, a_star, b_star


def _pooled_resamples(seeds_a: list[list[Mapping[str, Any]]],
                      seeds_b: list[list[Mapping[str, Any]]], task: str, metric: str,
                      method: str, n: int, r: int, seed: int) -> _Resamples:
    """A metric of pooled per-image terms (counts or values) for A and B (seed means),
    observed and under ``r`` swaps or bootstrap weights, from the summed terms."""
    xa, xb = _design(seeds_a, task, metric), _design(seeds_b, task, metric)
    sum_a, sum_b = xa.sum(axis=1), xb.sum(axis=1)
    a_obs, b_obs = _seed_mean(_from_sums(sum_a, metric)), _seed_mean(_from_sums(sum_b, metric))
    if method == "permutation":
        z = swap_matrix(n, r, seed).astype(np.float64)
        shift = np.matmul(z[None], xb - xa)                      # (S, R, k)
        a_star = _seed_mean(_from_sums(sum_a[:, None] + shift, metric))
        b_star = _seed_mean(_from_sums(sum_b[:, None] - shift, metric))
    else:
        w = bootstrap_weights(n, r, seed).astype(np.float64)
        a_star = _seed_mean(_from_sums(np.matmul(w[None], xa), metric))
        b_star = _seed_mean(_from_sums(np.matmul(w[None], xb), metric))
    return a_obs, b_obs, a_star, b_star


def _p_value(delta: float, d_star: np.ndarray, method: str) -> float:
    """Two-sided p of the observed difference ``delta`` among the resampled ones ``d_star``
    (permutation: around 0; bootstrap: around ``delta``), NaN when either is undefined."""
    dev = np.abs(d_star) if method == "permutation" else np.abs(d_star - delta)
    ok = np.isfinite(dev)
    if not np.isfinite(delta) or not ok.any():
        return float("nan")
    tol = 1e-12 + 1e-9 * abs(delta)  # resamples equal to the observed one up to rounding
    return float((1 + np.count_nonzero(dev[ok] >= abs(delta) - tol)) / (1 + ok.sum()))


def _finite_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if not np.isfinite(scores).all():
        return np.full(weights.shape[0], np.nan)
    return weighted_auc(y, scores, weights)


class SeedInterval(NamedTuple):
    """A metric over seeds: ``mean`` and ``sd`` over seeds, 95% interval over images."""

    mean: float
    sd: float
    low: float
    high: float


def seed_pooled_interval(per_seed_per_case: Cases, metric: str, task: str = "classify",
                         n_boot: int = 1000, seed: int = 0, *, view: str = "all",
                         confidence: float = CONFIDENCE) -> SeedInterval:
    """Mean over seeds of a set-level metric, its sd over seeds, and a bootstrap interval.

    See the module docstring ("Intervals over images and seeds").

    Parameters
    ----------
    per_seed_per_case : per-case records
        One method's records: one seed (a list of dicts) or several (seed -> records, or a list
        of record lists). The images scored in every seed are used (:func:`align_cases`).
    metric, task, view : as in :func:`paired_metric_test`.
    n_boot : int, default=1000
        Bootstrap replicates over images; 0 gives a NaN interval.
    seed : int, default=0
        Seed of :func:`~mribench.eval.metrics.bootstrap_weights` (the one ``evaluate`` used
        gives, with one seed, exactly its interval).
    confidence : float, default=0.95

    Returns
    -------
    SeedInterval
        ``(mean, sd, low, high)``; ``sd`` is NaN with fewer than two seeds with a value;
        everything is NaN with no image.
    """
    _check(task, metric, view)
    ids, (seeds,) = align_cases([per_seed_per_case], task, view)
    n, nan = len(ids), float("nan")
    if n == 0:
        return SeedInterval(nan, nan, nan, nan)
    x = _design(seeds, task, metric)
    w = bootstrap_weights(n, max(int(n_boot), 0), seed)
    if metric == "auc":
        y = _labels(seeds)
        point = _rank_auc(y, x[..., 0])
        boot = np.stack([_finite_auc(y, s, w) for s in x[..., 0]]) if w.size else None
    else:
        point = _from_sums(x.sum(axis=1), metric)
        boot = _from_sums(np.matmul(w[None].astype(np.float64), x), metric) if w.size else None
    ok = point[np.isfinite(point)]
    mean = float(ok.mean()) if ok.size else nan
    sd = float(ok.std(ddof=1)) if ok.size > 1 else nan
    low, high = percentile_ci(_seed_mean(boot), confidence) if boot is not None else (nan, nan)
    return SeedInterval(mean, sd, low, high)
