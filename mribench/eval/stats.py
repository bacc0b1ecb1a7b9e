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
  usual test for F1): under the null hypothesis the two methods' outputs on a *cluster* of
  images are exchangeable (a patient, a near-duplicate group: the records' ``"group"``, the
  image itself where a record has none), so each resample swaps, cluster by cluster with
  probability 1/2, everything A and B produced for every image of that cluster (in every
  seed, seeds paired by key or position), and recomputes the statistic;
  ``p = (1 + #{|d*| >= |d|}) / (1 + R)`` (two-sided, never 0, valid at any ``n``). It needs
  as many seeds for A as for B; otherwise the bootstrap is used and ``test`` says so.
  ``method="bootstrap"``: ``R`` paired resamples of the clusters (the same draw for both
  methods and all seeds, :func:`~mribench.eval.metrics.bootstrap_weights`) and the null
  distribution is the centred bootstrap distribution, ``p = (1 + #{|d* - d| >= |d|}) / (1 +
  R)``. With every cluster a single image both are the image-level tests, draw for draw. Both
  are vectorised: the resampled counts of all ``R`` resamples are one matrix product.

**Monte-Carlo error and adaptive resampling.** A p-value from ``R`` resamples carries the
Monte-Carlo standard error ``sqrt(p (1 - p) / R)`` (``PairedTest.mc_se``). The test starts at
:data:`N_RESAMPLES` and, while ``p`` lies within :data:`MC_MARGIN` (3) standard errors of a
level it will be compared with (``alpha``: one level or several, e.g. every level Holm may
use, :func:`holm_levels`), adds ``N_RESAMPLES`` more (chunk ``k`` drawn from
``numpy.random.default_rng([seed, k])``, chunk 0 from ``default_rng(seed)``, so the answer is
deterministic and the first chunk is what a fixed-size test draws) up to
:data:`MAX_RESAMPLES`. A p-value still that close to its level at the cap is *undecided*.

Several comparisons are made at once, so p-values are adjusted with Holm's step-down method,
which controls the family-wise error rate without assuming independence.

**Rank groups.** Methods are sorted by the ranking metric (best first). The best method leads
group 1; each other method is compared with it, the p-values Holm-adjusted together, and every
method whose difference from the leader is not significant (adjusted p >= alpha) joins group 1.
The best of the methods left leads group 2 and is compared with the rest of them, and so on.
A method in group 1 is therefore statistically indistinguishable from the leader; group numbers
follow the leaders' order, so a method can sit in a lower group number than a method ranked
above it when only the latter differs significantly from the leader. A method whose Holm
decision is within :data:`MC_MARGIN` Monte-Carlo standard errors of alpha (after the adaptive
resamples) is *undecided*: it joins the leader's group, marked as such (tables: ``1?``), and
is never pushed out by a lucky draw. The p-value reported for every method
(:func:`rank_groups`) is its Holm-adjusted p-value *against the overall leader* (the first
family of comparisons), with its Monte-Carlo error (the raw error times the Holm multiplier),
also for methods outside group 1 and for the leaders of later groups; only the overall leader
has none (NaN).

**Intervals over clusters and seeds** (:func:`seed_pooled_interval`,
:func:`seed_pooled_bootstrap`). With ``S`` seeds, the point value is the mean over seeds of
the set-level metric and the spread its standard deviation over seeds (``ddof=1``; NaN with
one seed: one seed measures no spread). The 95% interval is a *two-level* percentile bootstrap
of the seed-mean metric: replicate ``b`` draws the test images' clusters with replacement (the
same draw in every seed, since the seeds score the same images), computes each seed's metric on
it, then draws ``S`` seeds with replacement (from ``default_rng([seed, 0x5EED])``) and averages
their metrics. So the interval covers the sampling of patients / near-duplicate groups *and*
the seed-to-seed variation of training; with 3-5 seeds the seed level is coarse (a bootstrap of
``S`` values underestimates their spread by a factor ``(S - 1) / S`` in variance). Replicates
where the metric is undefined (no positive drawn) are left out of the percentiles. With one
seed the seed level is void and the interval is exactly that of
:func:`~mribench.eval.metrics.evaluate` for the same ``seed`` and clusters.

**Rank agreement** (:func:`kendall_tau`): Kendall's tau-b of two score vectors, vectorised over
bootstrap replicates, for the interval of the transfer table's tau.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as sps

from mribench.api.errors import MribenchError
from mribench.eval import registry
from mribench.eval.auc import weighted_auc
from mribench.eval.metrics import (
    CONFIDENCE,
    SEGMENT_VIEWS,
    bootstrap_weights,
    cluster_index,
    in_segment_view,
    percentile_ci,
)
from mribench.eval.registry import Metric

__all__ = [
    "ALPHA",
    "EXACT_BELOW",
    "MAX_RESAMPLES",
    "MC_MARGIN",
    "N_RESAMPLES",
    "TEST_LABELS",
    "PairedTest",
    "RankGroups",
    "SeedBootstrap",
    "SeedInterval",
    "align_cases",
    "case_groups",
    "holm",
    "holm_decisions",
    "holm_levels",
    "kendall_tau",
    "mc_error",
    "mcnemar",
    "paired_metric_test",
    "rank_groups",
    "seed_pooled_bootstrap",
    "seed_pooled_interval",
    "swap_matrix",
    "wilcoxon_signed_rank",
]

#: McNemar uses the exact binomial test below this many discordant pairs.
EXACT_BELOW = 25
#: Default number of resamples of :func:`paired_metric_test` (and the size of each chunk the
#: adaptive test adds).
N_RESAMPLES = 2000
#: Cap of the adaptive resampling of :func:`paired_metric_test`.
MAX_RESAMPLES = 50_000
#: A p-value within this many Monte-Carlo standard errors of its level is not yet decided.
MC_MARGIN = 3.0
#: Default significance level of the tests and rank groups.
ALPHA = 0.05
#: Second entropy word of the seed level of the two-level bootstrap (seeds drawn from
#: ``default_rng([seed, _SEED_LEVEL])``, apart from the clusters' ``default_rng(seed)``).
_SEED_LEVEL = 0x5EED
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
    """Outcome of one paired test.

    ``mc_se`` is the Monte-Carlo standard error of a resampling test's p-value
    (:func:`mc_error`; NaN for an exact or asymptotic test), ``resamples`` the number of
    resamples it took (0 for those).
    """

    test: str
    statistic: float
    p_value: float
    n: int
    detail: str = ""
    mc_se: float = float("nan")
    resamples: int = 0


def mc_error(p: float, resamples: int) -> float:
    """Monte-Carlo standard error ``sqrt(p (1 - p) / R)`` of a p-value from ``R`` resamples
    (NaN without a p-value or a resample)."""
    if resamples <= 0 or p is None or not np.isfinite(p):
        return float("nan")
    return float(np.sqrt(p * (1.0 - p) / resamples))


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


def holm_levels(alpha: float, m: int) -> tuple[float, ...]:
    """Every level Holm's method may compare a raw p-value of a family of ``m`` with:
    ``alpha / m, ..., alpha / 1`` (the levels an adaptive test resolves its p-value
    against, :func:`paired_metric_test`)."""
    return tuple(alpha / k for k in range(max(int(m), 1), 0, -1))


#: The decisions of :func:`holm_decisions`.
SIGNIFICANT, NOT_SIGNIFICANT, UNDECIDED = "significant", "not significant", "undecided"


def holm_decisions(p_values: Sequence[float], mc_se: Sequence[float] | None = None,
                   alpha: float = ALPHA, margin: float = MC_MARGIN
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Holm's adjusted p-values, their Monte-Carlo errors, and each decision at ``alpha``.

    The ``k``-th smallest p-value is rejected when it and every smaller one is below its Holm
    level, ``p_(j) (m - j + 1) < alpha``. With Monte-Carlo errors ``mc_se`` (NaN or None:
    exact), a comparison decides only when it is clear of its level by ``margin`` errors:
    ``"significant"`` when every ``(p_(j) + margin se_(j)) (m - j + 1) < alpha`` for ``j <=
    k``, ``"not significant"`` when some ``(p_(j) - margin se_(j)) (m - j + 1) >= alpha``,
    ``"undecided"`` otherwise. Without errors this is Holm's decision (adjusted p < alpha).
    A NaN p-value is ``"not significant"``.

    Returns
    -------
    adjusted : ndarray
        :func:`holm`'s adjusted p-values, in the input order.
    adjusted_se : ndarray
        The Monte-Carlo error of each adjusted p-value: that of the raw p-value that sets it,
        times its multiplier (0 where the adjusted value is capped at 1).
    decisions : list of str
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    raw_se = (np.full(p.shape, np.nan) if mc_se is None
              else np.asarray(mc_se, dtype=np.float64).ravel())
    se = np.where(np.isfinite(raw_se), raw_se, 0.0)
    adjusted, adjusted_se = holm(p), np.full(p.shape, np.nan)
    decisions = [NOT_SIGNIFICANT] * p.size
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted, adjusted_se, decisions
    order = finite[np.argsort(p[finite], kind="stable")]
    mult = (m - np.arange(m)).astype(np.float64)
    scaled = p[order] * mult
    setter = np.zeros(m, dtype=np.int64)  # index of the raw p that sets each adjusted one
    for k in range(1, m):
        setter[k] = k if scaled[k] >= scaled[setter[k - 1]] else setter[k - 1]
    errors = (raw_se[order] * mult)[setter]
    adjusted_se[order] = np.where((adjusted[order] >= 1.0) & np.isfinite(errors), 0.0, errors)
    below = (p[order] + margin * se[order]) * mult < alpha
    above = (p[order] - margin * se[order]) * mult >= alpha
    reject = np.logical_and.accumulate(below)
    keep = np.logical_or.accumulate(above)
    for k, i in enumerate(order):
        decisions[i] = SIGNIFICANT if reject[k] else NOT_SIGNIFICANT if keep[k] else UNDECIDED
    return adjusted, adjusted_se, decisions


@dataclass(frozen=True)
class RankGroups:
    """Rank groups of :func:`rank_groups`; unpacks as ``groups, p_values``.

    Attributes
    ----------
    groups : dict
        Method -> group number (1 is the leader's group).
    p_values : dict
        Method -> Holm-adjusted p-value against the *overall* leader (NaN for the leader).
    p_errors : dict
        Method -> the Monte-Carlo standard error of that adjusted p-value (NaN for an exact
        test and for the leader).
    undecided : frozenset of str
        Methods whose membership of their group is undecided: their Holm decision lies within
        :data:`MC_MARGIN` Monte-Carlo errors of alpha; they join the group (tables: ``1?``).
    """

    groups: dict[str, int]
    p_values: dict[str, float]
    p_errors: dict[str, float]
    undecided: frozenset[str]

    def __iter__(self) -> Any:
        return iter((self.groups, self.p_values))


def rank_groups(names: Sequence[str], compare: Callable[[str, str], PairedTest], *,
                alpha: float = ALPHA) -> RankGroups:
    """Rank groups of methods listed best first (see the module docstring).

    Parameters
    ----------
    names : sequence of str
        Methods sorted by the ranking metric, best first.
    compare : callable (leader, other) -> PairedTest
        The paired test between two methods; its ``mc_se`` (Monte-Carlo error, NaN for an
        exact test) decides which comparisons are undecided (:func:`holm_decisions`).
    alpha : float, default=0.05
        Family-wise significance level of each group's comparisons (Holm).

    Returns
    -------
    RankGroups
        ``groups`` (method -> group number), ``p_values`` (method -> Holm-adjusted p-value of
        its comparison with the *overall* leader, the first method, for every method, in or
        outside group 1; NaN only for the leader itself and where the test gave NaN, e.g. no
        common image), ``p_errors`` (their Monte-Carlo errors) and ``undecided``. Unpacks as
        ``groups, p_values``.
    """
    remaining = list(names)
    groups: dict[str, int] = {}
    p_out: dict[str, float] = {}
    se_out: dict[str, float] = {}
    undecided: set[str] = set()
    group = 0
    while remaining:
        group += 1
        leader, others = remaining[0], remaining[1:]
        groups[leader] = group
        tests = [compare(leader, other) for other in others]
        adjusted, adjusted_se, decisions = holm_decisions(
            [t.p_value for t in tests], [t.mc_se for t in tests], alpha)
        if group == 1:
            p_out[leader], se_out[leader] = float("nan"), float("nan")
            p_out.update((o, float(p)) for o, p in zip(others, adjusted, strict=True))
            se_out.update((o, float(e)) for o, e in zip(others, adjusted_se, strict=True))
        left = []
        for other, decision in zip(others, decisions, strict=True):
            if decision == SIGNIFICANT:
                left.append(other)
                continue
            groups[other] = group
            if decision == UNDECIDED:
                undecided.add(other)
        remaining = left
    return RankGroups(groups, p_out, se_out, frozenset(undecided))


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


def _check(task: str, metric: str, view: str = "all") -> Metric:
    """The registry's entry of ``metric`` after checking that it is one of ``task``'s."""
    if task not in registry.TASKS:
        raise MribenchError(f"task must be classify or segment; got {task!r}")
    names = registry.metric_names(task)
    if metric not in names:
        raise MribenchError(f"cannot test {task} by {metric!r}; choose one of "
                            f"{', '.join(names)}")
    if view not in SEGMENT_VIEWS:
        raise MribenchError(f"segment view must be one of {', '.join(SEGMENT_VIEWS)}; "
                            f"got {view!r}")
    return registry.get_metric(metric)


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


def _design(seeds: list[list[Mapping[str, Any]]], task: str, metric: Metric) -> np.ndarray:
    """(S, n, k) per-image contributions whose sum over images gives the set-level metric.

    ``pooled`` metrics: ``k = 4`` columns ``tp, fp, tn, fn`` (image indicators for
    ``classify``, pixels for ``segment``). ``per_image`` ones (``mean_dice``): ``k = 2``, the
    per-image value (0 where NaN) and whether it is finite. ``scores`` ones (``auc``):
    ``k = 1``, the score (NaN where None).
    """
    out = []
    for recs in seeds:
        if metric.aggregate == "scores":
            x = np.array([[_value(r, "score")] for r in recs], dtype=np.float64)
        elif metric.aggregate == "per_image":
            v = np.array([_value(r, metric.key) for r in recs], dtype=np.float64)
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


def _from_sums(sums: np.ndarray, metric: Metric) -> np.ndarray:
    """The set-level metric from summed contributions (..., k) of :func:`_design` (NaN where
    undefined: a pooled metric without what it requires, a mean over no image)."""
    if metric.aggregate == "pooled":  # NaN where the population lacks what it requires
        return metric.value(*(np.asarray(sums[..., k], dtype=np.float64) for k in range(4)))
    out = np.full(sums.shape[:-1], np.nan)
    np.divide(sums[..., 0], sums[..., 1], out=out, where=sums[..., 1] > 0)
    return out


def _score_values(metric: Metric, y: np.ndarray, scores: np.ndarray, weights: np.ndarray
                  ) -> np.ndarray:
    """A ``scores`` metric for each row of ``weights`` (b, n); NaN for every row when a score
    is missing."""
    if not np.isfinite(scores).all():
        return np.full(weights.shape[0], np.nan)
    return np.asarray(metric.from_scores(y, scores, weights), dtype=np.float64)


def _rank_scores(metric: Metric, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """A ``scores`` metric (AUC: ties one half, ``roc_auc_score``) of each row of ``scores``
    (S, n); NaN for a row with a missing score or with one class."""
    ones = np.ones((1, scores.shape[-1]))
    return np.array([_score_values(metric, y, row, ones)[0] for row in scores],
                    dtype=np.float64)


def _swap_scores(metric: Metric, y: np.ndarray, a: np.ndarray, b: np.ndarray, z: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A ``scores`` metric of A and B after each permutation resample swaps the scores of
    images ``z`` (R, n): in closed form for the AUC (:func:`_swap_auc`), otherwise by
    recomputing the metric on each resample's swapped scores."""
    if metric.from_scores is weighted_auc:
        return _swap_auc(y, a, b, z)
    ones = np.ones((1, a.size))
    u_a = np.array([_score_values(metric, y, np.where(row, b, a), ones)[0] for row in z])
    u_b = np.array([_score_values(metric, y, np.where(row, a, b), ones)[0] for row in z])
    return u_a.astype(np.float64), u_b.astype(np.float64)


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


def swap_matrix(n: int, n_resamples: int, seed: int | Sequence[int] = 0,
                groups: Sequence[Any] | None = None) -> np.ndarray:
    """Which images each permutation resample swaps between the two methods, (R, n) bool.

    Whole clusters swap together: ``numpy.random.default_rng(seed).random((n_resamples, k))
    < 0.5`` for the ``k`` clusters of ``groups``
    (:func:`~mribench.eval.metrics.cluster_index`; every image its own cluster without
    ``groups``), expanded to the images. Deterministic per ``(clusters, n_resamples, seed)``,
    so every pair of methods sees the same swaps; with singleton clusters these are the
    image-level swaps.
    """
    idx, k = cluster_index(groups, n)
    if groups is not None and idx.size != n:
        raise ValueError(f"groups has {idx.size} labels for {n} images")
    z = np.random.default_rng(seed).random((max(n_resamples, 0), max(k, 0))) < 0.5
    return z[:, idx]


def case_groups(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The cluster of each per-case record: its ``"group"``, else its ``"id"`` (records
    written before clusters were recorded: each image alone)."""
    return [r.get("group") or r.get("id") for r in records]


def _labels(seeds: list[list[Mapping[str, Any]]]) -> np.ndarray:
    return np.array([r.get("label") == 1 for r in seeds[0]], dtype=bool)


def paired_metric_test(cases_a: Cases, cases_b: Cases, metric: str, task: str = "classify", *,
                       view: str = "all", n_resamples: int = N_RESAMPLES, seed: int = 0,
                       method: str = "permutation",
                       alpha: float | Sequence[float] | None = ALPHA,
                       max_resamples: int = MAX_RESAMPLES) -> PairedTest:
    """Two-sided paired test of the difference in a set-level metric between two methods.

    See the module docstring. The statistic is ``metric(A) - metric(B)``, each the mean over
    the method's seeds of the set-level metric on the common images (:func:`align_cases`);
    resamples swap (or draw) whole clusters, the records' ``"group"`` (:func:`case_groups`).

    Parameters
    ----------
    cases_a, cases_b : per-case records
        Each method's ``per_case.json`` records: one seed (a list of dicts) or several (seed ->
        records, or a list of record lists). Seeds of A and B are paired by sorted key
        (mapping) or position (list) in the permutation test.
    metric : str
        A metric of ``task`` in the registry (:mod:`mribench.eval.registry`): a ``pooled``
        one (accuracy, f1, iou, precision, recall, specificity: pooled counts), a ``scores``
        one (auc, classify) or a ``per_image`` one (mean_dice, mean_iou, segment: per-image
        values of the records, under the policy the records were scored with).
    task : {"classify", "segment"}, default="classify"
    view : {"all", "tumour_only"}, default="all"
        The segmentation view (ignored for ``classify``).
    n_resamples : int, default=2000
        Resamples of the first chunk, and of each chunk added.
    seed : int, default=0
        Seed of the resamples (swaps or bootstrap weights), the same for every pair.
    method : {"permutation", "bootstrap"}, default="permutation"
    alpha : float or sequence of float or None, default=0.05
        The level(s) the p-value will be compared with: while it lies within
        :data:`MC_MARGIN` Monte-Carlo errors of one of them, chunks are added up to
        ``max_resamples``. None: exactly ``n_resamples``.
    max_resamples : int, default=50000

    Returns
    -------
    PairedTest
        ``test`` "paired-permutation" or "paired-bootstrap", ``statistic`` the observed
        difference A - B, ``p_value`` (NaN with no common image or an undefined metric),
        ``mc_se`` its Monte-Carlo error, ``resamples``, ``n`` the number of common images,
        ``detail`` both values, seeds, clusters and resamples.
    """
    entry = _check(task, metric, view)
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
    groups = case_groups(seeds_a[0])
    levels = () if alpha is None else tuple(np.atleast_1d(np.asarray(alpha, dtype=float)))
    cap = r if alpha is None else max(int(max_resamples), r)
    a_obs, b_obs, p, se, drawn = _adaptive_p(entry, task, seeds_a, seeds_b, method, r, seed,
                                             groups, levels, cap)
    k = cluster_index(groups, n)[1]
    detail = (f"{metric} ({where}): A {a_obs:.4f}, B {b_obs:.4f}; {n} images in {k} "
              f"clusters, {s_a}/{s_b} seeds, {drawn} resamples")
    return PairedTest(name, a_obs - b_obs, p, n, detail, se, drawn)


def _adaptive_p(metric: Metric, task: str, seeds_a: list, seeds_b: list, method: str,
                r: int, seed: int, groups: list[Any], levels: tuple[float, ...], cap: int
                ) -> tuple[float, float, float, float, int]:
    """Both observed values, the p-value, its Monte-Carlo error (over the resamples where the
    statistic is defined) and the resamples drawn: chunks of ``r`` resamples
    (chunk 0 from ``seed``, chunk ``k`` from ``[seed, k]``) while the p-value is within
    :data:`MC_MARGIN` Monte-Carlo errors of a level of ``levels``, up to ``cap``."""
    hits = valid = drawn = chunk = 0
    n = len(groups)
    while True:
        size = r if chunk == 0 else min(r, cap - drawn)
        a_obs, b_obs, a_star, b_star = _observed_and_resampled(
            metric, task, seeds_a, seeds_b, method, n, size,
            seed if chunk == 0 else [seed, chunk], groups)
        a_obs, b_obs = float(a_obs), float(b_obs)
        delta = a_obs - b_obs
        d_star = a_star - b_star
        dev = np.abs(d_star) if method == "permutation" else np.abs(d_star - delta)
        ok = np.isfinite(dev)
        drawn += size
        if not np.isfinite(delta):
            return a_obs, b_obs, float("nan"), float("nan"), drawn
        tol = 1e-12 + 1e-9 * abs(delta)  # resamples equal to the observed one up to rounding
        hits += int(np.count_nonzero(dev[ok] >= abs(delta) - tol))
        valid += int(ok.sum())
        if valid == 0:
            return a_obs, b_obs, float("nan"), float("nan"), drawn
        p = (1 + hits) / (1 + valid)
        se = mc_error(p, valid)
        near = any(abs(p - level) < MC_MARGIN * se for level in levels)
        if not near or drawn >= cap:
            return a_obs, b_obs, float(p), se, drawn
        chunk += 1


def _observed_and_resampled(metric: Metric, task: str, seeds_a: list, seeds_b: list,
                            method: str, n: int, r: int, seed: int | Sequence[int],
                            groups: list[Any] | None = None
                            ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Seed-mean metric of A and B on the common images and on each of the ``r`` resamples
    (cluster swaps for ``"permutation"``, paired cluster bootstrap weights for
    ``"bootstrap"``)."""
    s_a = len(seeds_a)
    if metric.aggregate == "scores":
        y = _labels(seeds_a)
        xa, xb = _design(seeds_a, task, metric)[..., 0], _design(seeds_b, task, metric)[..., 0]
        a_obs = _seed_mean(_rank_scores(metric, y, xa))
        b_obs = _seed_mean(_rank_scores(metric, y, xb))
        if method == "permutation":
            z = swap_matrix(n, r, seed, groups)
            swapped = [_swap_scores(metric, y, xa[k], xb[k], z) for k in range(s_a)]
            a_star = _seed_mean(np.stack([u for u, _ in swapped]))
            b_star = _seed_mean(np.stack([v for _, v in swapped]))
        else:
            w = bootstrap_weights(n, r, seed, groups)
            a_star = _seed_mean(np.stack([_score_values(metric, y, s, w) for s in xa]))
            b_star = _seed_mean(np.stack([_score_values(metric, y, s, w) for s in xb]))
        return a_obs, b_obs, a_star, b_star
    xa, xb = _design(seeds_a, task, metric), _design(seeds_b, task, metric)
    sum_a, sum_b = xa.sum(axis=1), xb.sum(axis=1)
    a_obs, b_obs = _seed_mean(_from_sums(sum_a, metric)), _seed_mean(_from_sums(sum_b, metric))
    if method == "permutation":
        z = swap_matrix(n, r, seed, groups).astype(np.float64)
        shift = np.matmul(z[None], xb - xa)                      # (S, R, k)
        a_star = _seed_mean(_from_sums(sum_a[:, None] + shift, metric))
        b_star = _seed_mean(_from_sums(sum_b[:, None] - shift, metric))
    else:
        w = bootstrap_weights(n, r, seed, groups).astype(np.float64)
        a_star = _seed_mean(_from_sums(np.matmul(w[None], xa), metric))
        b_star = _seed_mean(_from_sums(np.matmul(w[None], xb), metric))
    return a_obs, b_obs, a_star, b_star


class SeedInterval(NamedTuple):
    """A metric over seeds: ``mean`` and ``sd`` over seeds, 95% interval of the two-level
    bootstrap over clusters and seeds."""

    mean: float
    sd: float
    low: float
    high: float


class SeedBootstrap(NamedTuple):
    """The two-level bootstrap of a seed-mean metric (:func:`seed_pooled_bootstrap`).

    ``point``: each seed's metric on all common images, shape (S,); ``replicates``: the
    seed-mean metric of each bootstrap replicate, shape (n_boot,) (NaN where undefined);
    ``n`` images in ``n_clusters`` clusters.
    """

    point: np.ndarray
    replicates: np.ndarray
    n: int
    n_clusters: int


def _seed_level(values: np.ndarray, seed: int | Sequence[int]) -> np.ndarray:
    """The second level of the bootstrap: per replicate (column of ``values``, (S, B)), the
    mean of ``S`` seeds drawn with replacement (NaN seeds left out); the plain value with one
    seed."""
    s, b = values.shape
    if s == 1:
        return values[0].copy()
    entropy = [*np.atleast_1d(seed).tolist(), _SEED_LEVEL]
    draws = np.random.default_rng(entropy).integers(0, s, size=(b, s))
    flat = (draws + (np.arange(b) * s)[:, None]).ravel()
    times = np.bincount(flat, minlength=b * s).reshape(b, s).astype(np.float64)
    ok = np.isfinite(values.T)
    total = (times * np.where(ok, values.T, 0.0)).sum(axis=1)
    count = (times * ok).sum(axis=1)
    out = np.full(b, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def seed_pooled_bootstrap(per_seed_per_case: Cases, metric: str, task: str = "classify",
                          n_boot: int = 1000, seed: int | Sequence[int] = 0, *,
                          view: str = "all") -> SeedBootstrap:
    """Each seed's metric and the two-level bootstrap replicates of the seed-mean metric.

    With a single cluster (one patient or case) there is nothing to resample and every
    replicate is NaN (no interval). Replicate ``b`` draws the clusters of the common images
    with replacement
    (:func:`~mribench.eval.metrics.bootstrap_weights` with the records' groups and ``seed``:
    the same draw for every seed and, for the same ``seed`` and images, for every method),
    computes each seed's metric on it, then averages ``S`` seeds drawn with replacement (module
    docstring). Arguments as :func:`seed_pooled_interval`.
    """
    entry = _check(task, metric, view)
    ids, (seeds,) = align_cases([per_seed_per_case], task, view)
    n, b = len(ids), max(int(n_boot), 0)
    if n == 0:
        return SeedBootstrap(np.full(len(seeds), np.nan), np.full(b, np.nan), 0, 0)
    groups = case_groups(seeds[0])
    x = _design(seeds, task, entry)
    w = bootstrap_weights(n, b, seed, groups)
    if entry.aggregate == "scores":
        y = _labels(seeds)
        point = _rank_scores(entry, y, x[..., 0])
        boot = (np.stack([_score_values(entry, y, s, w) for s in x[..., 0]]) if w.size
                else np.full((len(seeds), b), np.nan))
    else:
        point = _from_sums(x.sum(axis=1), entry)
        boot = _from_sums(np.matmul(w[None].astype(np.float64), x), entry)
    n_clusters = cluster_index(groups, n)[1]
    replicates = _seed_level(boot, seed)
    if n_clusters < 2:  # one patient: resampling it says nothing about another
        replicates = np.full_like(replicates, np.nan)
    return SeedBootstrap(point, replicates, n, n_clusters)


def seed_pooled_interval(per_seed_per_case: Cases, metric: str, task: str = "classify",
                         n_boot: int = 1000, seed: int = 0, *, view: str = "all",
                         confidence: float = CONFIDENCE) -> SeedInterval:
    """Mean over seeds of a set-level metric, its sd over seeds, and a 95% percentile
    interval of the two-level bootstrap over clusters and seeds.

    See the module docstring ("Intervals over clusters and seeds").

    Parameters
    ----------
    per_seed_per_case : per-case records
        One method's records: one seed (a list of dicts) or several (seed -> records, or a list
        of record lists). The images scored in every seed are used (:func:`align_cases`); their
        ``"group"`` is the cluster the bootstrap draws (the id where absent).
    metric, task, view : as in :func:`paired_metric_test`.
    n_boot : int, default=1000
        Bootstrap replicates; 0 gives a NaN interval.
    seed : int, default=0
        Seed of :func:`~mribench.eval.metrics.bootstrap_weights` (the one ``evaluate`` used
        gives, with one seed, exactly its interval).
    confidence : float, default=0.95

    Returns
    -------
    SeedInterval
        ``(mean, sd, low, high)``; ``sd`` is NaN with fewer than two seeds with a value;
        everything is NaN with no image or an undefined metric. Replicates where the metric is
        undefined are left out of the percentiles.
    """
    boot = seed_pooled_bootstrap(per_seed_per_case, metric, task, n_boot, seed, view=view)
    nan = float("nan")
    ok = boot.point[np.isfinite(boot.point)]
    mean = float(ok.mean()) if ok.size else nan
    sd = float(ok.std(ddof=1)) if ok.size > 1 else nan
    low, high = (percentile_ci(boot.replicates, confidence) if boot.replicates.size
                 else (nan, nan))
    return SeedInterval(mean, sd, low, high)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of ``x`` and ``y`` along the last axis, vectorised over the others.

    The default of :func:`scipy.stats.kendalltau`: ``(concordant - discordant) /
    sqrt((pairs untied in x) (pairs untied in y))``. ``x`` and ``y`` are (..., m); NaN where a
    row holds a NaN or is all ties. A float for 1-d input.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(x.shape[-1], 1)
    dx, dy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    den = np.sqrt(np.count_nonzero(dx, axis=-1) * np.count_nonzero(dy, axis=-1).astype(float))
    num = np.nansum(dx * dy, axis=-1)
    bad = ~(np.isfinite(x).all(axis=-1) & np.isfinite(y).all(axis=-1)) | (den == 0)
    out = np.divide(num, np.where(bad, 1.0, den))
    out = np.where(bad, np.nan, out)
    return float(out) if out.ndim == 0 else out
