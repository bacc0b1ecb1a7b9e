"""Rank the rows of a results folder per task, with rank groups from paired tests.

:func:`ranked_table` ranks the rows that finished (``status == "done"``) by one metric and
adds rank groups (:mod:`mribench.eval.stats`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.eval.stats import (
    PairedTest,
    align_cases,
    mcnemar,
    paired_metric_test,
    rank_groups,
    wilcoxon_signed_rank,
)
from mribench.results.read import LABELS, SEGMENT_LABELS, RunResults, metric_names

__all__ = ["format_table", "ranked_table"]


def _comparison(results: RunResults, task: str, rank_by: str, view: str):
    """The paired test of the ranked metric itself, over the same images and seeds."""
    rows = results.rows

    def compare(x: str, y: str) -> PairedTest:
        return paired_metric_test(rows[x].per_seed, rows[y].per_seed, rank_by, task,
                                  view=view)
    return compare, (f"paired permutation test of the {rank_by} difference over the same "
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
        A metric of the task (:func:`metric_names`); higher is better. Ties share the lower
        rank; rows whose metric is NaN come last.
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
        ``df.attrs`` holds ``task``, ``rank_by``, ``test``, ``alpha``, ``view`` and ``note``.
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
    if not df.empty:
        df = df.sort_values(rank_by, ascending=False, na_position="last", kind="stable")
        df = df.reset_index(drop=True)
        ranks = df[rank_by].rank(method="min", ascending=False)
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
    df.attrs.update(task=task, rank_by=rank_by, test=test, alpha=alpha, view=view,
                    secondary=secondary,
                    note=f"{population}methods sharing the leader's group differ from it by "
                         f"no significant margin ({test}, Holm)")
    return df


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: float, low: float, high: float, digits: int = 3, sd: float = np.nan) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    if sd is not None and np.isfinite(sd):
        text += f" ± {sd:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def format_table(df: pd.DataFrame, fmt: str = "github", *, metrics: tuple[str, ...] | None = None,
                 ci: bool = True) -> str:
    """A ranked table as text: ``0.912 [0.880, 0.940]`` per metric (value [95% CI]).

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`ranked_table`.
    fmt : str, default="github"
        A tabulate format: "github" (Markdown), "simple" (terminal), "html", ...
    metrics : tuple of str, optional
        Metric columns to show (default: all of the task's).
    ci : bool, default=True
        Whether to print the confidence intervals beside the values.
    """
    from tabulate import tabulate

    task = df.attrs.get("task", "classify")
    names = metrics or metric_names(task)
    labels = SEGMENT_LABELS if task == "segment" else LABELS
    rank_by = df.attrs.get("rank_by")
    multi_seed = "seeds" in df and len(df) and int(df["seeds"].max()) > 1
    headers = ["Rank", "Group", "p vs leader", "Method", "n"] + (["seeds"] if multi_seed else [])
    headers += [labels.get(n, n) + (" ▼" if n == rank_by else "") for n in names]
    headers += ["Fit (s)", "ms/image"]
    rows = []
    for _, r in df.iterrows():
        p = r["p_vs_leader"]
        name = r["method"] + (" (time-capped)" if r.get("time_capped") else "")
        cells = [int(r["rank"]), int(r["group"]),
                 "–" if int(r["rank"]) == 1 and (not np.isfinite(p) or p >= 1) else
                 ("–" if not np.isfinite(p) else f"{p:.3g}"), name, int(r["n"])]
        if multi_seed:
            cells.append(int(r["seeds"]))
        for n in names:
            low, high = (r[f"{n}_low"], r[f"{n}_high"]) if ci else (np.nan, np.nan)
            cells.append(_fmt(r[n], low, high, sd=r.get(f"{n}_sd", np.nan)))
        cells.append("–" if not np.isfinite(r["fit_s"]) else f"{r['fit_s']:.1f}")
        cells.append("–" if not np.isfinite(r["predict_ms"]) else f"{r['predict_ms']:.1f}")
        rows.append(cells)
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def transfer_table(results: RunResults, task: str, metric: str, fmt: str = "simple"
                   ) -> str | None:
    """In-distribution score beside each external set's score, the drop with its 95 %
    interval, and Kendall's tau between the in-distribution and the external rankings.

    The drop's interval treats the two test sets as independent samples: its half-width is
    the root sum of squares of the two scores' interval half-widths (normal approximation of
    each bootstrap interval). Tau is over the rows scored on both sets.
    """
    from scipy.stats import kendalltau
    from tabulate import tabulate

    if not results.eval_sets:
        return None
    base = ranked_table(results, task, metric).set_index("method")
    if base.empty:
        return None
    headers = ["Method", "test"]
    columns = {}
    taus = []
    for name in results.eval_sets:
        other = results.on(name)
        if not other.done(task):
            continue
        ext = ranked_table(other, task, metric).set_index("method")
        columns[name] = ext
        headers += [name, f"drop ({name})"]
        common = [m for m in base.index if m in ext.index
                  and np.isfinite(base.loc[m, metric]) and np.isfinite(ext.loc[m, metric])]
        if len(common) >= 3:
            tau = kendalltau([base.loc[m, metric] for m in common],
                             [ext.loc[m, metric] for m in common]).statistic
            taus.append(f"{name}: Kendall tau {tau:.2f} over {len(common)} rows")
        else:
            taus.append(f"{name}: too few rows for a rank correlation")
    if not columns:
        return None
    rows = []
    for method, rec in base.iterrows():
        cells = [method, _fmt(rec[metric], rec[f"{metric}_low"], rec[f"{metric}_high"])]
        for ext in columns.values():
            if method not in ext.index:
                cells += ["skipped", "–"]
                continue
            e = ext.loc[method]
            cells.append(_fmt(e[metric], e[f"{metric}_low"], e[f"{metric}_high"]))
            drop = e[metric] - rec[metric]
            half = np.sqrt(((rec[f"{metric}_high"] - rec[f"{metric}_low"]) / 2) ** 2
                           + ((e[f"{metric}_high"] - e[f"{metric}_low"]) / 2) ** 2)
            cells.append(_fmt(drop, drop - half, drop + half))
        rows.append(cells)
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True) + \
        "\n" + "\n".join(taus)
