"""Rank the rows of a results folder per task, with rank groups from paired tests: data,
not text.

:func:`ranked_table` ranks the rows that finished (``status == "done"``) by one metric, in the
metric's direction (:mod:`mribench.eval.registry`), and adds rank groups
(:mod:`mribench.eval.stats`); the no-skill reference rows (``kind == "no-skill"``) are listed
after the ranked methods, never ranked, never in a group, never the leader.
:func:`transfer_data` sets each row's in-distribution score beside its scores on the external
evaluation sets, with the drop's and Kendall tau's intervals from a bootstrap of each set's
clusters. Both return data frames; the terminal, Markdown and HTML text of them is
:mod:`mribench.report.tables`'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.api.specs import NO_SKILL
from mribench.eval.metrics import percentile_ci
from mribench.eval.registry import get_metric, metric_names
from mribench.eval.stats import (
    PairedTest,
    align_cases,
    holm_levels,
    kendall_tau,
    mcnemar,
    paired_metric_test,
    rank_groups,
    seed_pooled_bootstrap,
    wilcoxon_signed_rank,
)
from mribench.results.read import RowResult, RunResults

__all__ = ["KendallTau", "Transfer", "interval_note", "ranked_table", "transfer_data"]


def _comparison(results: RunResults, task: str, rank_by: str, view: str,
                levels: Sequence[float]) -> tuple[Callable[[str, str], PairedTest], str]:
    """The paired test of the ranked metric itself (the metric's own ``test``), over the same
    images and seeds, swapping or drawing whole clusters, resolved against the Holm
    ``levels``; and its description."""
    rows = results.rows
    method = get_metric(rank_by).test

    def compare(x: str, y: str) -> PairedTest:
        return paired_metric_test(rows[x].per_seed, rows[y].per_seed, rank_by, task,
                                  view=view, method=method, alpha=tuple(levels))
    unit = "swapping" if method == "permutation" else "resampling"
    return compare, (f"paired {method} test of the {rank_by} difference over the same "
                     f"images and seeds, {unit} whole clusters")


def _secondary_test(results: RunResults, task: str, leader: str, other: str,
                    view: str) -> float:
    """McNemar (a test of accuracy) or Wilcoxon (a test of per-image Dice): an extra column."""
    a, b = results.rows[leader], results.rows[other]
    first_a, first_b = next(iter(a.per_seed.values()), []), next(iter(b.per_seed.values()), [])
    ids, (ca, cb) = align_cases([first_a, first_b], task, view)
    if not ids:
        return float("nan")
    if task == "classify":
        ra, rb = ca[0], cb[0]
        return mcnemar([r["pred"] == r["label"] for r in ra],
                       [r["pred"] == r["label"] for r in rb]).p_value
    da = [np.nan if r.get("dice") is None else float(r["dice"]) for r in ca[0]]
    db = [np.nan if r.get("dice") is None else float(r["dice"]) for r in cb[0]]
    return wilcoxon_signed_rank(da, db).p_value


#: Columns of :func:`ranked_table` before the metric columns.
HEAD_COLUMNS = ["rank", "group", "group_undecided", "p_vs_leader", "p_vs_leader_se", "method",
                "kind", "no_skill", "n", "n_clusters", "seeds", "time_capped"]


def _row_record(r: RowResult, task: str, names: Sequence[str], view: str) -> dict[str, Any]:
    """One row of the ranked table before ranking: identity, sizes, metrics, timings."""
    rec: dict[str, Any] = {"method": r.name, "kind": r.kind, "no_skill": r.kind == NO_SKILL,
                           "n": int(r.block(task, view).get("n", 0)),
                           "n_clusters": r.n_clusters(task, view),
                           "seeds": max(len(r.seeds), 1), "time_capped": bool(r.time_capped)}
    for name in names:
        m = r.metric(task, name, view)
        rec[name], rec[f"{name}_low"], rec[f"{name}_high"], rec[f"{name}_sd"] = (
            m["value"], m["ci_low"], m["ci_high"], m.get("sd", np.nan))
    rec["fit_s"] = _number(r.timings.get("fit_s"))
    rec["predict_ms"] = _number(r.timings.get("predict_ms_per_image"))
    return rec


def _undefined(rows: list[RowResult], task: str, names: Sequence[str], view: str
               ) -> dict[str, str]:
    """Metric -> why it has no value on this population (the first row that says so)."""
    out: dict[str, str] = {}
    for name in names:
        reason = next((why for r in rows if (why := r.undefined(task, name, view))), None)
        if reason:
            out[name] = reason
    return out


def interval_note(seeds: int, n_boot: int | None = None) -> str:
    """What a ranked table's 95 % intervals cover, for its notes."""
    draws = f"{n_boot} replicates, " if n_boot else ""
    if seeds <= 1:
        return (f"95% percentile bootstrap intervals ({draws}resampling the test images' "
                "clusters: patients, near-duplicate groups; an image without one is alone)")
    return (f"mean over {seeds} seeds ± sd; 95% intervals of a two-level percentile bootstrap "
            f"({draws}clusters of test images, then seeds with replacement): they cover the "
            "test sample and the seed-to-seed variation of training")


def ranked_table(results: RunResults, task: str, rank_by: str = "f1", *,
                 alpha: float = 0.05, view: str = "all") -> pd.DataFrame:
    """The finished rows of ``task`` ranked by ``rank_by``, best first, with rank groups.

    Parameters
    ----------
    results : RunResults
    task : {"classify", "segment"}
    rank_by : str, default="f1"
        A metric of the task (:func:`mribench.eval.registry.metric_names`), ranked in its
        direction (best first). Ties share the lower rank; rows whose metric is NaN come
        last.
    alpha : float, default=0.05
        Significance level of the rank groups: a paired permutation test of the ranked
        metric's difference (over the same images and seeds, swapping whole clusters) against
        the leader, Holm-adjusted, with adaptive resamples
        (:func:`mribench.eval.stats.paired_metric_test`, :func:`~mribench.eval.stats.rank_groups`).
    view : {"all", "tumour_only"}
        Segmentation only: score every slice with a known mask (healthy slices count) or
        only the annotated tumour slices (the Br35H U-Net paper's convention).

    Returns
    -------
    pandas.DataFrame
        The ranked methods, then the no-skill reference rows (``no_skill`` True; ``rank``,
        ``group`` and the p-values NaN: never ranked). Columns ``rank, group, group_undecided
        (the Holm decision lies within 3 Monte-Carlo errors of alpha at the resampling cap: in
        the group, undecided), p_vs_leader, p_vs_leader_se (its Monte-Carlo error), method,
        kind, no_skill, n, n_clusters, seeds, time_capped``, then for each metric ``m`` of the
        task ``m``, ``m_low``, ``m_high``, ``m_sd``, then ``fit_s``, ``predict_ms`` and
        ``p_secondary`` (McNemar on accuracy for classify, Wilcoxon on per-image Dice for
        segment, first seed, vs the leader, unadjusted). ``df.attrs`` holds ``task``,
        ``rank_by``, ``higher_is_better`` (of ``rank_by``), ``test``, ``alpha``, ``view``,
        ``secondary``, ``undefined`` (metric -> why it is n/a on this population),
        ``no_positive`` (the population holds no positive), ``interval`` (what the intervals
        cover) and ``note``.
    """
    names = metric_names(task)
    if rank_by not in names:
        raise MribenchError(f"cannot rank {task} by {rank_by!r}; choose one of "
                            f"{', '.join(names)}")
    rows = results.done(task, view)
    metric_cols = [c for n in names for c in (n, f"{n}_low", f"{n}_high", f"{n}_sd")]
    columns = [*HEAD_COLUMNS, *metric_cols, "fit_s", "predict_ms", "p_secondary"]
    df = pd.DataFrame.from_records([_row_record(r, task, names, view) for r in rows],
                                   columns=[c for c in columns if c not in (
                                       "rank", "group", "group_undecided", "p_vs_leader",
                                       "p_vs_leader_se", "p_secondary")])
    ascending = not get_metric(rank_by).higher_is_better
    test = _comparison(results, task, rank_by, view, ())[1]
    if not df.empty:
        df = _rank(results, df, task, rank_by, view, alpha, ascending)[columns]
    else:
        df = pd.DataFrame(columns=columns)
    undefined = _undefined(rows, task, names, view)
    no_positive = any(get_metric(n).requires == "positive" for n in undefined)
    seeds = int(df["seeds"].max()) if len(df) else 1
    population = ("" if task != "segment" else
                  "all slices with a known mask (healthy slices count); " if view == "all" else
                  "annotated tumour slices only; ")
    df.attrs.update(task=task, rank_by=rank_by, higher_is_better=not ascending, test=test,
                    alpha=alpha, view=view, secondary=(
                        "McNemar, a test of accuracy" if task == "classify" else
                        "Wilcoxon, a test of per-image Dice"),
                    undefined=undefined, no_positive=no_positive,
                    interval=interval_note(seeds, results.n_boot),
                    note=f"{population}methods sharing the leader's group differ from it by "
                         f"no significant margin ({test}, Holm); no-skill rows are listed "
                         "below, never ranked")
    return df


def _rank(results: RunResults, df: pd.DataFrame, task: str, rank_by: str, view: str,
          alpha: float, ascending: bool) -> pd.DataFrame:
    """Rank, rank groups and p-values of the methods of ``df``, then its no-skill rows."""
    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(rank_by, ascending=ascending, na_position="last",
                                 kind="stable").reset_index(drop=True)

    ranked, reference = ordered(df[~df["no_skill"]]), ordered(df[df["no_skill"]])
    nan = float("nan")
    ranked["rank"] = ranked[rank_by].rank(method="min", ascending=ascending).fillna(
        len(ranked)).astype(float)
    compare, _ = _comparison(results, task, rank_by, view,
                             holm_levels(alpha, max(len(ranked) - 1, 1)))
    found = rank_groups(list(ranked["method"]), compare, alpha=alpha)
    ranked["group"] = ranked["method"].map(found.groups).astype(float)
    ranked["group_undecided"] = ranked["method"].isin(found.undecided)
    ranked["p_vs_leader"] = ranked["method"].map(found.p_values).astype(float)
    ranked["p_vs_leader_se"] = ranked["method"].map(found.p_errors).astype(float)
    leader = ranked["method"].iloc[0] if len(ranked) else None
    ranked["p_secondary"] = [nan if m == leader else
                             _secondary_test(results, task, leader, m, view)
                             for m in ranked["method"]]
    for column in ("rank", "group", "p_vs_leader", "p_vs_leader_se", "p_secondary"):
        reference[column] = nan
    reference["group_undecided"] = False
    both = [f for f in (ranked, reference) if len(f)]
    return pd.concat(both, ignore_index=True) if len(both) > 1 else both[0]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class KendallTau(NamedTuple):
    """Agreement of the in-distribution and an external ranking: Kendall's tau-b over the
    ranked ``rows`` scored (finite) on both sets, no-skill rows excluded (``tau`` NaN with
    fewer than three), with a 95 % percentile interval from a bootstrap of both sets'
    clusters (``low``, ``high``)."""

    tau: float
    rows: int
    low: float = float("nan")
    high: float = float("nan")


@dataclass(frozen=True)
class Transfer:
    """In-distribution scores beside external ones (:func:`transfer_data`).

    ``frame`` has one row per method and evaluation set, the methods in their in-distribution
    rank order (the no-skill rows last), each first on ``"test"`` (the run's own test part)
    then on every set of ``eval_sets``: columns ``method, eval_set, scored`` (False where the
    method has no score on the set: failed or skipped there), ``no_skill``, ``value, ci_low,
    ci_high`` and, on external sets, ``drop, drop_low, drop_high`` (external minus test, with
    its 95 % interval; NaN on ``"test"`` and where the metric is undefined) and
    ``below_no_skill`` (a ranked method whose external score is not above the set's best
    no-skill row). ``taus`` holds a :class:`KendallTau` per external set, ``undefined`` the
    reason the metric has no value on a set (set -> reason), ``no_skill_best`` the best
    no-skill score per external set (NaN without one).
    """

    task: str
    metric: str
    eval_sets: tuple[str, ...]
    frame: pd.DataFrame
    taus: dict[str, KendallTau]
    undefined: dict[str, str] = field(default_factory=dict)
    no_skill_best: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The methods, in their in-distribution rank order."""
        return list(self.frame.loc[self.frame["eval_set"] == "test", "method"])


TRANSFER_COLUMNS = ["method", "eval_set", "scored", "no_skill", "value", "ci_low", "ci_high",
                    "drop", "drop_low", "drop_high", "below_no_skill"]


def _replicates(results: RunResults, methods: Sequence[str], task: str, metric: str,
                n_boot: int, seed: int | Sequence[int]) -> dict[str, np.ndarray]:
    """Each method's two-level bootstrap replicates of the seed-mean ``metric`` on this set
    (the same cluster draw for every method)."""
    return {m: seed_pooled_bootstrap(results.rows[m].per_seed, metric, task, n_boot,
                                     seed).replicates for m in methods}


def _tau(base: pd.DataFrame, ext: pd.DataFrame, metric: str, test_boot: dict[str, np.ndarray],
         ext_boot: dict[str, np.ndarray]) -> KendallTau:
    """Kendall's tau-b of the ranked rows on both sets, and its bootstrap interval."""
    common = [m for m in base.index if m in ext.index and not base.loc[m, "no_skill"]
              and np.isfinite(base.loc[m, metric]) and np.isfinite(ext.loc[m, metric])]
    if len(common) < 3:
        return KendallTau(float("nan"), len(common))
    tau = kendall_tau(np.array([base.loc[m, metric] for m in common]),
                      np.array([ext.loc[m, metric] for m in common]))
    x = np.stack([test_boot[m] for m in common], axis=-1)
    y = np.stack([ext_boot[m] for m in common], axis=-1)
    low, high = percentile_ci(kendall_tau(x, y)) if x.size else (np.nan, np.nan)
    return KendallTau(float(tau), len(common), low, high)


def _best_no_skill(ext: pd.DataFrame, metric: str) -> float:
    values = ext.loc[ext["no_skill"], metric].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan")
    return float(values.max() if get_metric(metric).higher_is_better else values.min())


def transfer_data(results: RunResults, task: str, metric: str, *, n_boot: int | None = None,
                  seed: int = 0) -> Transfer | None:
    """Each method's in-distribution score beside its score on every external set, the drop
    with its 95 % interval, and Kendall's tau between the in-distribution and each external
    ranking with its interval (None without external sets or scores).

    The two sets are independent samples, so the drop's interval comes from resampling each
    set's clusters independently (test set: ``seed``; external set ``k``, 1-based:
    ``[seed, k]``; with several training seeds also the seeds, as
    :func:`mribench.eval.stats.seed_pooled_bootstrap`), ``n_boot`` replicates (default: the
    run's ``--n-boot``), the percentile interval of ``external* - test*``; replicates where
    the metric is undefined are left out. Tau is over the ranked rows scored (finite) on both
    sets, no-skill rows excluded; with fewer than three it is NaN. Its interval recomputes
    both rankings' scores on each replicate (the same draws) and takes tau per replicate. A
    metric undefined on an external set (Dice where no slice holds tumour) has no drop and is
    in no tau. Only the external sets where some row finished ``task`` appear.
    """
    if not results.eval_sets:
        return None
    base = ranked_table(results, task, metric).set_index("method")
    if base.empty:
        return None
    n_boot = results.n_boot if n_boot is None else max(int(n_boot), 0)
    test_boot = _replicates(results, list(base.index), task, metric, n_boot, seed)
    tables: dict[str, pd.DataFrame] = {}
    taus: dict[str, KendallTau] = {}
    ext_boot: dict[str, dict[str, np.ndarray]] = {}
    undefined: dict[str, str] = {}
    for k, name in enumerate(results.eval_sets, 1):
        other = results.on(name)
        if not other.done(task):
            continue
        ext = ranked_table(other, task, metric)
        tables[name] = ext.set_index("method")
        ext_boot[name] = _replicates(other, list(ext["method"]), task, metric, n_boot,
                                     [seed, k])
        taus[name] = _tau(base, tables[name], metric, test_boot, ext_boot[name])
        if metric in ext.attrs.get("undefined", {}):
            undefined[name] = ext.attrs["undefined"][metric]
    if not tables:
        return None
    best = {name: _best_no_skill(ext, metric) for name, ext in tables.items()}
    records = []
    for method, rec in base.iterrows():
        records.append([method, "test", True, bool(rec["no_skill"]), rec[metric],
                        rec[f"{metric}_low"], rec[f"{metric}_high"], *[np.nan] * 3, False])
        for name, ext in tables.items():
            records.append(_external_record(method, rec, name, ext, metric, best[name],
                                            test_boot[method], ext_boot[name]))
    frame = pd.DataFrame.from_records(records, columns=TRANSFER_COLUMNS)
    return Transfer(task, metric, tuple(tables), frame, taus, undefined, best)


def _external_record(method: str, rec: pd.Series, name: str, ext: pd.DataFrame, metric: str,
                     best: float, test_boot: np.ndarray, ext_boot: dict[str, np.ndarray]
                     ) -> list[Any]:
    """One method's row on an external set: its score, the drop and its bootstrap interval,
    and whether it is above the set's best no-skill row."""
    nan = float("nan")
    no_skill = bool(rec["no_skill"])
    if method not in ext.index:
        return [method, name, False, no_skill, nan, nan, nan, nan, nan, nan, False]
    e = ext.loc[method]
    drop = e[metric] - rec[metric]
    low, high = nan, nan
    if np.isfinite(drop) and method in ext_boot:
        low, high = percentile_ci(ext_boot[method] - test_boot)
    value = float(e[metric])
    higher = get_metric(metric).higher_is_better
    above = value > best if higher else value < best
    below = bool(not no_skill and np.isfinite(value) and np.isfinite(best) and not above)
    return [method, name, True, no_skill, value, e[f"{metric}_low"], e[f"{metric}_high"],
            drop, low, high, below]
