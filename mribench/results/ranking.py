"""How far a ranking holds: bootstrap rank distributions per data set, and a consensus over
data sets with its agreement and its critical-difference cliques.

**Blocks.** A *block* is one evaluation population: a data set's own test part, or its pooled
out-of-fold predictions with ``--folds`` (:func:`blocks_of`; every data set of every run
given). Only ranked methods enter; the no-skill rows are never ranked.

**Rank stability per block** (:func:`rank_stability`), after challengeR (Wiesenfarth et al.,
Sci Rep 2021). The block's samples are aligned over its ranked methods (the images every seed
of every method scored), their clusters (patients, near-duplicate groups) drawn with
replacement ``n_boot`` times (the run's ``--n-boot``), and the methods re-ranked by the ranked
metric on each draw. Every method sees the *same* draw: one call of
:func:`~mribench.eval.stats.seed_pooled_bootstrap` per method on the aligned records, whose
cluster weights depend only on the clusters, ``n_boot`` and ``seed`` (with several training
seeds also the seeds are drawn, the same seed draw for methods with as many seeds). Ranks are
``1 + #(methods strictly better)`` (ties share the better rank; a method whose metric is
undefined on a draw ranks last); draws where the metric is undefined for every method are
left out. Each method gets its median rank, its 95 % rank interval (the 2.5 % and 97.5 %
quantiles of its bootstrap ranks, ``numpy.quantile(..., method="inverted_cdf")``: ranks that
occurred) and the share of draws in which it takes rank ``j`` (the blob plot).

**Consensus over blocks** (:func:`consensus`): *rank-then-aggregate*. Methods are ranked
within each block by their point value (ties averaged, the Friedman convention), and ordered by
their mean rank over the blocks; only methods ranked on every block take part (the others are
listed in ``dropped``). The agreement of the blocks' rankings is Kendall's W with the ties
correction (:func:`kendall_w`). Friedman's test and the Nemenyi critical difference
(Demšar, JMLR 2006) are run only with at least :data:`MIN_BLOCKS` blocks; with fewer the
critical difference is still computed (:func:`nemenyi_cd`) to say how large a mean-rank gap
they would need (10 methods over 4 data sets: 6.8 ranks).

**Critical-difference cliques** (:func:`cliques`) come from the project's own paired tests:
within a block, every pair of ranked methods is compared by the paired test of the ranked
metric (:func:`~mribench.eval.stats.paired_metric_test`, swapping whole clusters), Holm-adjusted
over all pairs of the block (:func:`pairwise_tests`). Over blocks, two methods differ when they
differ significantly *on every block, in the same direction* (an intersection-union test: each
block's Holm family at level alpha gives a level-alpha statement without a further
correction); otherwise they are linked. A clique is a maximal run of methods, consecutive in
rank order, every two of which are linked (Demšar's bars); a method linked to no neighbour is
in none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from mribench.api.errors import MribenchError
from mribench.api.specs import NO_SKILL
from mribench.eval.registry import get_metric, metric_names
from mribench.eval.stats import (
    ALPHA,
    SIGNIFICANT,
    align_cases,
    holm_decisions,
    holm_levels,
    paired_metric_test,
    seed_pooled_bootstrap,
)
from mribench.results.read import RunResults
from mribench.results.robustness import OnTheLine, accuracy_on_the_line
from mribench.results.transfer import TransferMatrix, transfer_matrix

__all__ = ["MIN_BLOCKS", "RANK_CONFIDENCE", "Block", "Consensus", "HoldUp", "PairwiseTests",
           "RankStability", "blocks_of", "check_same_params", "cliques", "consensus",
           "hold_up", "kendall_w", "nemenyi_cd", "pairwise_tests", "rank_scores",
           "rank_stability"]

#: Fewest blocks (data sets) for Friedman's test and the Nemenyi critical difference.
MIN_BLOCKS = 5
#: Coverage of the bootstrap rank interval.
RANK_CONFIDENCE = 0.95


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """One evaluation population: the rows trained on a data set, scored on its own test part
    (or pooled out of fold)."""

    name: str
    results: RunResults


def blocks_of(runs: Sequence[RunResults]) -> list[Block]:
    """Every data set of every run as a block, named by its data set (``run-id/name`` where
    two runs share a name)."""
    views = [view for run in runs for view in ([run.of(d) for d in run.datasets] or [run])]
    names = [v.dataset_name for v in views]
    twice = {n for n in names if names.count(n) > 1}
    return [Block(f"{v.run_id}/{n}" if n in twice else n, v)
            for v, n in zip(views, names, strict=True)]


def _row_params(run: RunResults) -> dict[str, Any]:
    rows = run.run.get("rows") or (run.run.get("identity") or {}).get("methods") or {}
    return {name: (rec.get("params") if isinstance(rec, dict) else None)
            for name, rec in rows.items()} if isinstance(rows, dict) else {}


def check_same_params(runs: Sequence[RunResults]) -> None:
    """Refuse runs that cannot be ranked together: a folder given twice, or a row name run with
    other params in another run (run.json's ``rows``)."""
    paths = [run.path.resolve() for run in runs]
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise MribenchError(f"{twice} is given twice; give each run once")
    seen: dict[str, tuple[Any, Any]] = {}
    for run in runs:
        for name, params in _row_params(run).items():
            if name in seen and seen[name][1] != params:
                first, other = seen[name][1] or {}, params or {}
                keys = sorted(k for k in {*first, *other} if first.get(k) != other.get(k))
                raise MribenchError(
                    f"{name} ran with other params in {run.path} than in {seen[name][0]} "
                    f"({', '.join(keys) or 'params'} differ); rank runs made with the same "
                    "method settings")
            seen.setdefault(name, (run.path, params))


# --------------------------------------------------------------------------- ranks


def rank_scores(values: Any, higher_is_better: bool = True) -> np.ndarray:
    """Ranks along the last axis, 1 the best: ``1 + #(values strictly better)`` (ties share
    the better rank, "min"); a NaN ranks after every finite value (NaNs tie)."""
    v = np.asarray(values, dtype=np.float64)
    key = np.where(np.isfinite(v), v if higher_is_better else -v, -np.inf)
    better = key[..., None, :] > key[..., :, None]
    return 1 + better.sum(axis=-1)


def _average_ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks of a 1-d array, 1 the best, ties averaged, NaN last."""
    v = np.asarray(values, dtype=np.float64)
    key = np.where(np.isfinite(v), v if higher_is_better else -v, -np.inf)
    return sps.rankdata(-key, method="average")


@dataclass
class RankStability:
    """The bootstrap rank distribution of a block's ranked methods (:func:`rank_stability`).

    ``methods`` in their observed rank order (best first), ``values`` their point value (mean
    over seeds of the set-level metric), ``observed`` their ranks on the whole population,
    ``ranks`` the (draws, methods) ranks on each bootstrap draw kept; ``n`` images in
    ``n_clusters`` clusters; ``n_boot`` draws made.
    """

    block: str
    task: str
    metric: str
    methods: list[str]
    values: np.ndarray
    observed: np.ndarray
    ranks: np.ndarray
    n_boot: int = 0
    n: int = 0
    n_clusters: int = 0

    def _quantile(self, q: float) -> np.ndarray:
        if not self.ranks.size:
            return np.full(len(self.methods), np.nan)
        return np.quantile(self.ranks, q, axis=0, method="inverted_cdf").astype(float)

    @property
    def median(self) -> np.ndarray:
        """Each method's median bootstrap rank."""
        return (np.median(self.ranks, axis=0) if self.ranks.size
                else np.full(len(self.methods), np.nan))

    def interval(self, confidence: float = RANK_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
        """Each method's rank interval: the ``(1 - confidence) / 2`` and ``(1 + confidence)
        / 2`` quantiles of its bootstrap ranks."""
        return self._quantile((1 - confidence) / 2), self._quantile((1 + confidence) / 2)

    def frequency(self) -> np.ndarray:
        """(methods, ranks): the share of draws in which method ``i`` takes rank ``j + 1``."""
        m = len(self.methods)
        if not self.ranks.size:
            return np.zeros((m, m))
        hits = self.ranks[:, :, None] == np.arange(1, m + 1)[None, None, :]
        return hits.mean(axis=0)

    def value_of(self, method: str) -> float:
        return float(self.values[self.methods.index(method)])

    def frame(self) -> pd.DataFrame:
        """One row per method: ``method, value, rank, median_rank, rank_low, rank_high,
        first`` (share of draws it ranks first)."""
        low, high = self.interval()
        first = self.frequency()[:, 0] if self.methods else np.array([])
        return pd.DataFrame({"method": self.methods, "value": self.values,
                             "rank": self.observed.astype(float), "median_rank": self.median,
                             "rank_low": low, "rank_high": high, "first": first})


def _check_metric(task: str, metric: str) -> None:
    names = metric_names(task)
    if metric not in names:
        raise MribenchError(f"cannot rank {task} by {metric!r}; choose one of "
                            f"{', '.join(names)}")


def _ranked_rows(results: RunResults, task: str, view: str) -> list[Any]:
    return [r for r in results.done(task, view) if r.kind != NO_SKILL]


def rank_stability(results: RunResults, task: str, metric: str, *, n_boot: int | None = None,
                   seed: int = 0, view: str = "all", block: str | None = None
                   ) -> RankStability:
    """Each ranked method's rank distribution over cluster-bootstrap draws of ``results``'
    population (module docstring).

    Parameters
    ----------
    results : RunResults
        The rows of one evaluation population (a data set's own test part / pooled out of
        fold, or an external set: ``results.on(name)``).
    task, metric : the task and its ranked metric.
    n_boot : int, optional
        Bootstrap draws; default the run's ``--n-boot`` (1000).
    seed : int, default=0
        Seed of the draws (the same for every method).
    view : {"all", "tumour_only"}, default="all"
    block : str, optional
        Name of the population (default: the data set's name).
    """
    _check_metric(task, metric)
    rows = _ranked_rows(results, task, view)
    n_boot = results.n_boot if n_boot is None else max(int(n_boot), 0)
    name = block or results.dataset_name
    higher = get_metric(metric).higher_is_better
    if not rows:
        empty = np.zeros(0)
        return RankStability(name, task, metric, [], empty, empty, np.zeros((0, 0), int),
                             n_boot)
    _, aligned = align_cases([r.per_seed for r in rows], task, view)
    boots = [seed_pooled_bootstrap(seeds, metric, task, n_boot, seed, view=view)
             for seeds in aligned]
    values = np.array([np.nanmean(b.point) if np.isfinite(b.point).any() else np.nan
                       for b in boots])
    reps = np.stack([b.replicates for b in boots], axis=-1).reshape(-1, len(rows))
    reps = reps[np.isfinite(reps).any(axis=1)]
    observed = rank_scores(values, higher)
    order = np.lexsort((np.arange(len(rows)), observed))
    return RankStability(name, task, metric, [rows[i].name for i in order], values[order],
                         observed[order], rank_scores(reps, higher)[:, order], n_boot,
                         boots[0].n, boots[0].n_clusters)


# --------------------------------------------------------------------------- pairwise tests


@dataclass
class PairwiseTests:
    """Every pair of a block's methods compared by the paired test of the ranked metric,
    Holm-adjusted over all pairs (:func:`pairwise_tests`).

    ``difference[i, j]`` is ``metric(i) - metric(j)``; ``p_holm`` the adjusted p-values
    (symmetric, NaN on the diagonal); ``significant[i, j]`` the Holm decision at ``alpha``
    (a decision within the Monte-Carlo margin of alpha counts as not significant).
    """

    methods: list[str]
    difference: np.ndarray
    p_holm: np.ndarray
    significant: np.ndarray
    alpha: float
    test: str = ""

    def linked(self) -> np.ndarray:
        """(m, m) bool: not significantly different (the diagonal included)."""
        return ~self.significant


def pairwise_tests(results: RunResults, task: str, metric: str, methods: Sequence[str], *,
                   alpha: float = ALPHA, view: str = "all") -> PairwiseTests:
    """Paired tests of the ``metric`` difference between every two of ``methods`` (over the
    images and seeds both scored, swapping whole clusters: the metric's own test), with
    Holm's correction over the ``m (m - 1) / 2`` pairs."""
    methods = list(methods)
    m = len(methods)
    pairs = list(combinations(range(m), 2))
    kind = get_metric(metric).test
    levels = holm_levels(alpha, len(pairs))
    tests = [paired_metric_test(results.rows[methods[a]].per_seed,
                                results.rows[methods[b]].per_seed, metric, task, view=view,
                                method=kind, alpha=levels) for a, b in pairs]
    adjusted, _, decisions = holm_decisions([t.p_value for t in tests],
                                            [t.mc_se for t in tests], alpha)
    difference, p_holm = np.zeros((m, m)), np.full((m, m), np.nan)
    significant = np.zeros((m, m), dtype=bool)
    for (a, b), t, p, d in zip(pairs, tests, adjusted, decisions, strict=True):
        difference[a, b], difference[b, a] = t.statistic, -t.statistic
        p_holm[a, b] = p_holm[b, a] = p
        significant[a, b] = significant[b, a] = d == SIGNIFICANT
    return PairwiseTests(methods, difference, p_holm, significant, alpha,
                         tests[0].test if tests else "")


def cliques(order: Sequence[str], linked: np.ndarray) -> list[list[str]]:
    """The maximal runs of methods, consecutive in ``order`` (best first), every two of which
    are ``linked`` ((m, m) bool, indexed as ``order``): the bars of a critical-difference
    diagram. A method linked to neither neighbour is in no clique."""
    linked = np.asarray(linked, dtype=bool)
    m = len(order)
    runs: list[tuple[int, int]] = []
    for i in range(m):
        j = i
        while j + 1 < m and linked[i:j + 1, j + 1].all():
            j += 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return [list(order[i:j + 1]) for i, j in runs]


# --------------------------------------------------------------------------- consensus


def kendall_w(ranks: Any) -> float:
    """Kendall's W of agreement, with the ties correction, of a (objects, raters) matrix.

    Each column (a rater: a data set) is ranked (ties averaged; values that already are ranks
    keep them), ``R_i`` is object ``i``'s rank sum and
    ``W = 12 S / (m^2 (n^3 - n) - m sum_j T_j)``, with ``S = sum_i (R_i - mean R)^2``, ``n``
    objects, ``m`` raters and ``T_j = sum (t^3 - t)`` over the groups of ``t`` tied objects of
    rater ``j``. 1: the raters agree; 0: no agreement. NaN with fewer than two objects or
    raters, or when every rater ties every object.
    """
    x = np.asarray(ranks, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        return float("nan")
    n, m = x.shape
    r = np.column_stack([sps.rankdata(x[:, j], method="average") for j in range(m)])
    total = r.sum(axis=1)
    s = float(((total - total.mean()) ** 2).sum())
    ties = sum(float((c ** 3 - c).sum()) for j in range(m)
               for c in [np.unique(r[:, j], return_counts=True)[1].astype(float)])
    den = m ** 2 * (n ** 3 - n) - m * ties
    return float(12 * s / den) if den > 0 else float("nan")


def nemenyi_cd(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """The Nemenyi critical difference of mean ranks for ``k`` methods over ``n_blocks``
    blocks: ``q_alpha sqrt(k (k + 1) / (6 N))``, ``q_alpha`` the studentized range quantile
    over ``sqrt(2)`` (Demšar 2006: 3.164 for 10 methods at alpha 0.05); NaN for ``k < 2``."""
    if k < 2 or n_blocks < 1:
        return float("nan")
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6 * n_blocks)))


@dataclass
class Consensus:
    """The ranking over blocks and how far it holds (:func:`consensus`).

    ``methods`` (ranked on every block) in consensus order, best first; ``values`` and
    ``rank_matrix`` (methods x blocks: the metric and the rank within each block, ties
    averaged); ``dropped`` (method -> blocks where it has no ranked score); ``kendall_w``;
    ``nemenyi_cd`` (at alpha, for these methods and blocks, whether or not the test is run);
    ``friedman`` ``(statistic, p)`` and ``nemenyi_pairs`` (pairs whose mean ranks differ by
    more than the critical difference) with at least :data:`MIN_BLOCKS` blocks, else None
    and []; ``linked`` ((m, m) bool, consensus order: not shown different on every block in
    one direction) and ``cliques``; per block its :class:`RankStability`, its
    :class:`PairwiseTests` and its cliques.
    """

    task: str
    metric: str
    blocks: list[str]
    methods: list[str]
    values: pd.DataFrame
    rank_matrix: pd.DataFrame
    dropped: dict[str, list[str]]
    kendall_w: float
    nemenyi_cd: float
    friedman: tuple[float, float] | None
    nemenyi_pairs: list[tuple[str, str]]
    linked: np.ndarray
    cliques: list[list[str]]
    stability: dict[str, RankStability] = field(default_factory=dict)
    tests: dict[str, PairwiseTests] = field(default_factory=dict)
    block_cliques: dict[str, list[list[str]]] = field(default_factory=dict)
    alpha: float = ALPHA

    @property
    def mean_rank(self) -> pd.Series:
        """Each method's mean rank over the blocks, consensus order."""
        return self.rank_matrix.mean(axis=1)

    @property
    def max_gap(self) -> int:
        """The largest mean-rank gap ``k`` methods can show: ``k - 1``."""
        return max(len(self.methods) - 1, 0)


def _cross_block_links(methods: list[str], tests: dict[str, PairwiseTests]) -> np.ndarray:
    """Linked unless significantly different on every block, in the same direction."""
    m = len(methods)
    if not tests:
        return np.ones((m, m), dtype=bool)
    sig, signs = [], []
    for t in tests.values():
        sub = np.ix_(*[[t.methods.index(x) for x in methods]] * 2)
        sig.append(t.significant[sub])
        signs.append(np.sign(t.difference[sub]))
    sign = np.stack(signs)
    differ = np.stack(sig).all(axis=0) & (sign == sign[0]).all(axis=0) & (sign[0] != 0)
    return ~differ


def _friedman(ranks: pd.DataFrame, cd: float) -> tuple[tuple[float, float] | None,
                                                       list[tuple[str, str]]]:
    if ranks.shape[1] < MIN_BLOCKS or ranks.shape[0] < 3:
        return None, []
    res = sps.friedmanchisquare(*ranks.to_numpy())
    mean = ranks.mean(axis=1)
    pairs = [(a, b) for a, b in combinations(ranks.index, 2) if abs(mean[a] - mean[b]) > cd]
    return (float(res.statistic), float(res.pvalue)), pairs


def consensus(blocks: Sequence[Block], task: str, metric: str, *, n_boot: int | None = None,
              seed: int = 0, alpha: float = ALPHA) -> Consensus:
    """Rank stability per block, the mean-rank consensus over blocks, Kendall's W, the
    critical-difference cliques and, with at least :data:`MIN_BLOCKS` blocks, Friedman/Nemenyi
    (module docstring). Blocks without a ranked ``task`` row are left out."""
    _check_metric(task, metric)
    by_name = {b.name: b for b in blocks}
    stability = {b.name: rank_stability(b.results, task, metric, n_boot=n_boot, seed=seed,
                                        block=b.name) for b in blocks}
    stability = {k: s for k, s in stability.items() if s.methods}
    names = list(stability)
    present = list(dict.fromkeys(m for s in stability.values() for m in s.methods))
    common = [m for m in present if all(m in s.methods for s in stability.values())]
    dropped = {m: [b for b in names if m not in stability[b].methods] for m in present
               if m not in common}
    higher = get_metric(metric).higher_is_better
    values = pd.DataFrame({b: [stability[b].value_of(m) for m in common] for b in names},
                          index=pd.Index(common, name="method"), dtype=float)
    ranks = values.apply(lambda col: pd.Series(_average_ranks(col.to_numpy(), higher),
                                               index=col.index))
    order = list(ranks.mean(axis=1).sort_values(kind="stable").index) if common else []
    values, ranks = values.loc[order], ranks.loc[order]
    tests = {b: pairwise_tests(by_name[b].results, task, metric, stability[b].methods,
                               alpha=alpha) for b in names}
    linked = _cross_block_links(order, tests)
    cd = nemenyi_cd(len(order), len(names), alpha)
    friedman, pairs = _friedman(ranks, cd)
    return Consensus(
        task, metric, names, order, values, ranks, dropped, kendall_w(ranks.to_numpy()), cd,
        friedman, pairs, linked, cliques(order, linked), stability, tests,
        {b: cliques(t.methods, t.linked()) for b, t in tests.items()}, alpha)


# --------------------------------------------------------------------------- everything


@dataclass
class HoldUp:
    """What "Which pipeline holds up?" shows for one task: the consensus over the blocks,
    each run's transfer matrix, and accuracy on the line for each (train, external) pair."""

    task: str
    metric: str
    consensus: Consensus
    #: Run id -> its transfer matrix (runs with cells of ``task`` only).
    matrices: dict[str, TransferMatrix]
    #: One per (train set, external set) of every run; with several runs the sets are named
    #: ``run-id/name``.
    lines: list[OnTheLine]


def hold_up(runs: Sequence[RunResults], task: str, metric: str, *, n_boot: int | None = None,
            seed: int = 0, alpha: float = ALPHA) -> HoldUp | None:
    """Items of :class:`HoldUp` for ``task`` ranked by ``metric`` over ``runs`` (each run's
    data sets are blocks; runs whose rows ran with other params are refused); None when no
    block has a ranked ``task`` row."""
    check_same_params(runs)
    found = consensus(blocks_of(runs), task, metric, n_boot=n_boot, seed=seed, alpha=alpha)
    if not found.blocks:
        return None
    matrices = {run.run_id: transfer_matrix(run, task, metric) for run in runs}
    matrices = {k: m for k, m in matrices.items() if not m.cells.empty}
    lines = []
    for run_id, matrix in matrices.items():
        for line in accuracy_on_the_line(matrix):
            if len(runs) > 1:
                line = replace(line, train=f"{run_id}/{line.train}",
                               external=f"{run_id}/{line.external}")
            lines.append(line)
    return HoldUp(task, metric, found, matrices, lines)
