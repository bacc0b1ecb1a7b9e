"""Rank the rows of a results folder per task, with rank groups from paired tests: data,
not text.

:func:`ranked_table` ranks the rows that finished (``status == "done"``) by one metric, in the
metric's direction (:mod:`mribench.eval.registry`), and adds rank groups
(:mod:`mribench.eval.stats`); :func:`transfer_data` sets each row's in-distribution score
beside its scores on the external evaluation sets. Both return data frames; the terminal,
Markdown and HTML text of them is :mod:`mribench.report.tables`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.eval.registry import get_metric, metric_names
from mribench.eval.stats import (
    PairedTest,
    align_cases,
    mcnemar,
    paired_metric_test,
    rank_groups,
    wilcoxon_signed_rank,
)
from mribench.results.read import RunResults

__all__ = ["KendallTau", "Transfer", "ranked_table", "transfer_data"]


def _comparison(results: RunResults, task: str, rank_by: str, view: str
                ) -> tuple[Callable[[str, str], PairedTest], str]:
    """The paired test of the ranked metric itself (the metric's own ``test``), over the same
    images and seeds, and its description."""
    rows = results.rows
    method = get_metric(rank_by).test

    def compare(x: str, y: str) -> PairedTest:
        return paired_metric_test(rows[x].per_seed, rows[y].per_seed, rank_by, task,
                                  view=view, method=method)
    return compare, (f"paired {method} test of the {rank_by} difference over the same "
                     "images and seeds")


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
        metric's difference (over the same images and seeds) against the leader,
        Holm-adjusted (:func:`mribench.eval.stats.paired_metric_test`).
    view : {"all", "tumour_only"}
        Segmentation only: score every slice with a known mask (healthy slices count) or
        only the annotated tumour slices (the Br35H U-Net paper's convention).

    Returns
    -------
    pandas.DataFrame
        Columns ``rank, group, p_vs_leader, method, kind, n, seeds, time_capped``, then for
        each metric ``m`` of the task ``m``, ``m_low``, ``m_high``, ``m_sd``, then
        ``fit_s``, ``predict_ms`` and ``p_secondary`` (McNemar on accuracy for classify,
        Wilcoxon on per-image Dice for segment, first seed, vs the leader, unadjusted).
        ``df.attrs`` holds ``task``, ``rank_by``, ``higher_is_better`` (of ``rank_by``),
        ``test``, ``alpha``, ``view``, ``secondary`` and ``note``.
    """
    names = metric_names(task)
    if rank_by not in names:
        raise MribenchError(f"cannot rank {task} by {rank_by!r}; choose one of "
                            f"{', '.join(names)}")
    records = []
    for r in results.done(task, view):
        rec: dict[str, Any] = {"method": r.name, "kind": r.kind,
                               "n": int(r.block(task, view).get("n", 0)),
                               "seeds": max(len(r.seeds), 1),
                               "time_capped": bool(r.time_capped)}
        for name in names:
            m = r.metric(task, name, view)
            rec[name], rec[f"{name}_low"], rec[f"{name}_high"], rec[f"{name}_sd"] = (
                m["value"], m["ci_low"], m["ci_high"], m.get("sd", np.nan))
        rec["fit_s"] = _number(r.timings.get("fit_s"))
        rec["predict_ms"] = _number(r.timings.get("predict_ms_per_image"))
        records.append(rec)
    metric_cols = [c for n in names for c in (n, f"{n}_low", f"{n}_high", f"{n}_sd")]
    columns = ["rank", "group", "p_vs_leader", "method", "kind", "n", "seeds", "time_capped",
               *metric_cols, "fit_s", "predict_ms"]
    compare, test = _comparison(results, task, rank_by, view)
    df = pd.DataFrame.from_records(records, columns=[c for c in columns
                                                     if c not in ("rank", "group",
                                                                  "p_vs_leader")])
    ascending = not get_metric(rank_by).higher_is_better
    if not df.empty:
        df = df.sort_values(rank_by, ascending=ascending, na_position="last", kind="stable")
        df = df.reset_index(drop=True)
        ranks = df[rank_by].rank(method="min", ascending=ascending)
        df.insert(0, "rank", ranks.fillna(len(df)).astype(int))
        groups, p_values = rank_groups(list(df["method"]), compare, alpha=alpha)
        df.insert(1, "group", df["method"].map(groups).astype(int))
        df.insert(2, "p_vs_leader", df["method"].map(p_values).astype(float))
        leader = df["method"].iloc[0]
        df["p_secondary"] = [float("nan") if m == leader else
                             _secondary_test(results, task, leader, m, view)
                             for m in df["method"]]
    else:
        df = pd.DataFrame(columns=[*columns, "p_secondary"])
    secondary = ("McNemar, a test of accuracy" if task == "classify" else
                 "Wilcoxon, a test of per-image Dice")
    population = ("" if task != "segment" else
                  "all slices with a known mask (healthy slices count); " if view == "all" else
                  "annotated tumour slices only; ")
    df.attrs.update(task=task, rank_by=rank_by, higher_is_better=not ascending, test=test,
                    alpha=alpha, view=view, secondary=secondary,
                    note=f"{population}methods sharing the leader's group differ from it by "
                         f"no significant margin ({test}, Holm)")
    return df


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class KendallTau(NamedTuple):
    """Agreement of the in-distribution and an external ranking: Kendall's tau over the
    ``rows`` scored on both (``tau`` NaN with fewer than three)."""

    tau: float
    rows: int


@dataclass(frozen=True)
class Transfer:
    """In-distribution scores beside external ones (:func:`transfer_data`).

    ``frame`` has one row per method and evaluation set, the methods in their in-distribution
    rank order, each first on ``"test"`` (the run's own test part) then on every set of
    ``eval_sets``: columns ``method, eval_set, scored`` (False where the method has no score
    on the set: failed or skipped there), ``value, ci_low, ci_high`` and, on external sets,
    ``drop, drop_low, drop_high`` (external minus test, with its 95 % interval; NaN on
    ``"test"``). ``taus`` holds a :class:`KendallTau` per external set.
    """

    task: str
    metric: str
    eval_sets: tuple[str, ...]
    frame: pd.DataFrame
    taus: dict[str, KendallTau]

    @property
    def methods(self) -> list[str]:
        """The methods, in their in-distribution rank order."""
        return list(self.frame.loc[self.frame["eval_set"] == "test", "method"])


TRANSFER_COLUMNS = ["method", "eval_set", "scored", "value", "ci_low", "ci_high", "drop",
                    "drop_low", "drop_high"]


def transfer_data(results: RunResults, task: str, metric: str) -> Transfer | None:
    """Each method's in-distribution score beside its score on every external set, the drop
    with its 95 % interval, and Kendall's tau between the in-distribution and each external
    ranking (None without external sets or scores).

    The drop's interval treats the two test sets as independent samples: its half-width is
    the root sum of squares of the two scores' interval half-widths (normal approximation of
    each bootstrap interval). Tau is over the rows scored (finite) on both sets; with fewer
    than three it is NaN. Only the external sets where some row finished ``task`` appear.
    """
    from scipy.stats import kendalltau

    if not results.eval_sets:
        return None
    base = ranked_table(results, task, metric).set_index("method")
    if base.empty:
        return None
    tables: dict[str, pd.DataFrame] = {}
    taus: dict[str, KendallTau] = {}
    for name in results.eval_sets:
        other = results.on(name)
        if not other.done(task):
            continue
        ext = ranked_table(other, task, metric).set_index("method")
        tables[name] = ext
        common = [m for m in base.index if m in ext.index
                  and np.isfinite(base.loc[m, metric]) and np.isfinite(ext.loc[m, metric])]
        tau = float("nan")
        if len(common) >= 3:
            tau = kendalltau([base.loc[m, metric] for m in common],
                             [ext.loc[m, metric] for m in common]).statistic
        taus[name] = KendallTau(tau, len(common))
    if not tables:
        return None
    nan = float("nan")
    records = []
    for method, rec in base.iterrows():
        value, low, high = rec[metric], rec[f"{metric}_low"], rec[f"{metric}_high"]
        records.append([method, "test", True, value, low, high, nan, nan, nan])
        for name, ext in tables.items():
            if method not in ext.index:
                records.append([method, name, False, nan, nan, nan, nan, nan, nan])
                continue
            e = ext.loc[method]
            drop = e[metric] - value
            half = np.sqrt(((high - low) / 2) ** 2
                           + ((e[f"{metric}_high"] - e[f"{metric}_low"]) / 2) ** 2)
            records.append([method, name, True, e[metric], e[f"{metric}_low"],
                            e[f"{metric}_high"], drop, drop - half, drop + half])
    frame = pd.DataFrame.from_records(records, columns=TRANSFER_COLUMNS)
    return Transfer(task, metric, tuple(tables), frame, taus)
