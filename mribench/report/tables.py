"""Ranked tables as text: the terminal (tabulate ``simple``), Markdown (``github``) and HTML.

The results layer returns data (:func:`mribench.results.rank.ranked_table`,
:func:`mribench.results.rank.transfer_data`, :func:`mribench.results.compare.compare_runs`);
this module writes it out for ``bench run``, ``bench compare`` and the report. A cell reads
``value ± sd [low, high]``: the value, its spread over seeds (with several) and its 95 %
interval (a bootstrap over the test images' clusters, and over seeds with several), three
decimals; ``–`` where there is no value, ``n/a`` where the metric is undefined on the
population (its reason in the notes, :func:`table_notes`). ``n (clusters)`` gives the images
scored and the clusters (patients, near-duplicate groups) the statistics resample. The no-skill
rows come last, marked ``(no skill)``, with no rank and no group; a group ``1?`` is undecided
(the Holm decision within 3 Monte-Carlo errors of alpha at the resampling cap); the p column
reads ``p ± its Monte-Carlo error`` where intervals are shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mribench.eval.registry import metric_label, shown_metrics
from mribench.eval.stats import MAX_RESAMPLES, MC_MARGIN
from mribench.results.compare import compare_runs
from mribench.results.rank import Transfer, transfer_data
from mribench.results.read import RunResults

__all__ = ["compare_table", "fmt_interval", "fmt_p", "fold_table", "format_table",
           "format_transfer", "matrix_table", "table_metrics", "table_notes", "transfer_table"]

#: The mark of a no-skill row's Method cell.
NO_SKILL_MARK = " (no skill)"
#: The mark of a transfer cell not above the external set's best no-skill row.
BELOW_MARK = " †"


def _tabulate(rows: list[list[Any]], headers: list[str], fmt: str) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def fmt_interval(value: float, low: float, high: float, digits: int = 3,
                 sd: float = np.nan) -> str:
    """``0.912 ± 0.010 [0.880, 0.940]``: the value, its sd when finite, its interval when
    finite; ``–`` without a value."""
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    if sd is not None and np.isfinite(sd):
        text += f" ± {sd:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def fmt_p(p: float, se: float = np.nan, mc_error: bool = True) -> str:
    """A p-value, ``0.048 ± 0.003`` with its Monte-Carlo error when asked and known, else
    ``0.048`` (three significant digits); ``–`` without one."""
    if p is None or not np.isfinite(p):
        return "–"
    if mc_error and se is not None and np.isfinite(se):
        return f"{p:.3f} ± {se:.3f}"
    return f"{p:.3g}"


def table_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    """The metric columns a ranked table shows: the task's metrics displayed always, and on a
    population without a positive those defined there (false-positive rate, slices flagged)."""
    return shown_metrics(df.attrs.get("task", "classify"), bool(df.attrs.get("no_positive")))


def _rank_cells(r: pd.Series, mc_error: bool) -> list[Any]:
    """Rank, group (``1?`` when undecided) and p vs leader of a row (``–`` for a no-skill
    row and for the leader)."""
    if r.get("no_skill") or not np.isfinite(r["rank"]):
        return ["–", "–", "–"]
    group = "–" if not np.isfinite(r["group"]) else (
        f"{int(r['group'])}{'?' if r.get('group_undecided') else ''}")
    p = r["p_vs_leader"]
    leader = int(r["rank"]) == 1 and (not np.isfinite(p) or p >= 1)
    return [int(r["rank"]), group,
            "–" if leader else fmt_p(p, r.get("p_vs_leader_se", np.nan), mc_error)]


def format_table(df: pd.DataFrame, fmt: str = "github", *, metrics: tuple[str, ...] | None = None,
                 ci: bool = True, mc_error: bool | None = None) -> str:
    """A ranked table as text: ``0.912 [0.880, 0.940]`` per metric (value [95% CI]).

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`mribench.results.rank.ranked_table`.
    fmt : str, default="github"
        A tabulate format: "github" (Markdown), "simple" (terminal), "html", ...
    metrics : tuple of str, optional
        Metric columns to show (default: :func:`table_metrics`).
    ci : bool, default=True
        Whether to print the confidence intervals beside the values.
    mc_error : bool, optional
        Whether to print each p-value's Monte-Carlo error (default: as ``ci``).
    """
    task = df.attrs.get("task", "classify")
    names = metrics or table_metrics(df)
    mc_error = ci if mc_error is None else mc_error
    rank_by = df.attrs.get("rank_by")
    undefined = df.attrs.get("undefined") or {}
    multi_seed = "seeds" in df and len(df) and int(df["seeds"].max()) > 1
    headers = ["Rank", "Group", "p vs leader", "Method", "n (clusters)"]
    headers += ["seeds"] if multi_seed else []
    headers += [metric_label(n, task) + (" ▼" if n == rank_by else "") for n in names]
    headers += ["Fit (s)", "ms/image"]
    rows = []
    for _, r in df.iterrows():
        name = (r["method"] + (" (time-capped)" if r.get("time_capped") else "")
                + (NO_SKILL_MARK if r.get("no_skill") else ""))
        clusters = r.get("n_clusters", np.nan)
        size = f"{int(r['n'])}" + (f" ({int(clusters)})" if pd.notna(clusters) else "")
        cells = [*_rank_cells(r, mc_error), name, size]
        if multi_seed:
            cells.append(int(r["seeds"]))
        for n in names:
            low, high = (r[f"{n}_low"], r[f"{n}_high"]) if ci else (np.nan, np.nan)
            text = fmt_interval(r[n], low, high, sd=r.get(f"{n}_sd", np.nan))
            cells.append("n/a" if text == "–" and n in undefined else text)
        cells.append("–" if not np.isfinite(r["fit_s"]) else f"{r['fit_s']:.1f}")
        cells.append("–" if not np.isfinite(r["predict_ms"]) else f"{r['predict_ms']:.1f}")
        rows.append(cells)
    return _tabulate(rows, headers, fmt)


def table_notes(df: pd.DataFrame, *, intervals: bool = True, legend: bool = True
                ) -> list[str]:
    """The notes printed under a ranked table: what its intervals cover (``intervals``), why
    a cell is ``n/a``, what an undecided group is and (``legend``) what a no-skill row is,
    where present."""
    task = df.attrs.get("task", "classify")
    notes = [f"Intervals: {df.attrs['interval']}."] if intervals and df.attrs.get(
        "interval") else []
    by_reason: dict[str, list[str]] = {}
    for name, reason in (df.attrs.get("undefined") or {}).items():
        by_reason.setdefault(reason, []).append(metric_label(name, task))
    notes += [f"n/a: {', '.join(labels)} undefined here ({reason})."
              for reason, labels in by_reason.items()]
    if "group_undecided" in df and df["group_undecided"].fillna(False).astype(bool).any():
        notes.append(f"?: undecided: the Holm decision lies within {MC_MARGIN:g} Monte-Carlo "
                     f"standard errors of alpha after {MAX_RESAMPLES:,} resamples; the row "
                     "stays in the group.")
    if legend and "no_skill" in df and df["no_skill"].fillna(False).astype(bool).any():
        notes.append("(no skill): a reference row that learns nothing about tumours (what the "
                     "metric gives for free); listed, never ranked.")
    return notes


def format_transfer(data: Transfer, fmt: str = "simple") -> str:
    """A :class:`~mribench.results.rank.Transfer` as text: a row per method (test, each
    external set and its drop), then a line per external set with Kendall's tau and its
    interval, then the notes (``n/a``, ``†``)."""
    headers = ["Method", "test"]
    for name in data.eval_sets:
        headers += [name, f"drop ({name})"]
    rows = []
    for method in data.methods:
        part = data.frame[data.frame["method"] == method]
        cells = [method + (NO_SKILL_MARK if part["no_skill"].any() else "")]
        for r in part.itertuples():
            if not r.scored:
                cells += ["skipped", "–"]
                continue
            text = fmt_interval(r.value, r.ci_low, r.ci_high)
            if text == "–" and r.eval_set in data.undefined:
                text = "n/a"
            cells.append(text + (BELOW_MARK if r.below_no_skill else ""))
            if r.eval_set != "test":
                cells.append(fmt_interval(r.drop, r.drop_low, r.drop_high))
        rows.append(cells)
    return _tabulate(rows, headers, fmt) + "\n" + "\n".join(_transfer_notes(data))


def _transfer_notes(data: Transfer) -> list[str]:
    """Kendall's tau per external set, then why a cell is n/a and what † marks."""
    lines = []
    for name, tau in data.taus.items():
        if tau.rows < 3:
            lines.append(f"{name}: too few ranked rows for a rank correlation")
            continue
        ci = (f" [{tau.low:.2f}, {tau.high:.2f}]" if np.isfinite(tau.low)
              and np.isfinite(tau.high) else "")
        lines.append(f"{name}: Kendall tau {tau.tau:.2f}{ci} over {tau.rows} ranked rows "
                     "(no-skill rows excluded; 95% bootstrap interval over both sets' "
                     "clusters)")
    lines += [f"n/a on {name}: {data.metric} undefined ({reason}); no drop, not in tau."
              for name, reason in data.undefined.items()]
    if data.frame["below_no_skill"].any():
        lines.append("†: not above the external set's best no-skill row ("
                     + ", ".join(f"{name} {value:.3f}" for name, value in
                                 data.no_skill_best.items() if np.isfinite(value)) + ").")
    return lines


def transfer_table(results: RunResults, task: str, metric: str, fmt: str = "simple"
                   ) -> str | None:
    """:func:`~mribench.results.rank.transfer_data` as text (:func:`format_transfer`); None
    without external sets or scores."""
    data = transfer_data(results, task, metric)
    return None if data is None else format_transfer(data, fmt)


def compare_table(a: RunResults, b: RunResults, task: str, metric: str, view: str = "all",
                  eval_set: str = "test", fmt: str = "simple") -> str:
    """:func:`~mribench.results.compare.compare_runs` as a text table (tabulate ``fmt``), with
    a line per caveat."""
    frame = compare_runs(a, b, task, metric, view, eval_set)
    name_a, name_b = a.run_id, b.run_id
    if frame.empty:
        return f"no row finished {task} ({view}) in both {name_a} and {name_b}"
    rows = [[r.method, fmt_interval(r.a, r.a_low, r.a_high),
             fmt_interval(r.b, r.b_low, r.b_high),
             f"{r.difference:+.3f}" if np.isfinite(r.difference) else "–",
             fmt_p(r.p_holm, getattr(r, "p_holm_se", np.nan), fmt != "simple"), int(r.n)]
            for r in frame.itertuples()]
    what = metric if task == "classify" else f"{metric} ({view} slices)"
    headers = ["Method", f"{what}: {name_a}", f"{what}: {name_b}", "B - A",
               "p (Holm)", "images"]
    notes = [f"A = {name_a}, B = {name_b}; p: paired test of the {metric} difference over the "
             "test images both runs scored (all seeds of each), Holm over the rows."]
    split_a = (a.run.get("split") or {}).get("sha256")
    split_b = (b.run.get("split") or {}).get("sha256")
    if split_a != split_b:
        notes.append("note: the two runs used different splits; only their common test images "
                     "are compared.")
    return _tabulate(rows, headers, fmt) + "\n" + "\n".join(notes)


def fold_table(results: RunResults, task: str, metric: str, fmt: str = "simple") -> str:
    """Each ranked row's ``metric`` per fold, their mean ± sd, and the pooled out-of-fold
    value with its interval (a cross-validated run)."""
    from mribench.results.rank import ranked_table

    table = ranked_table(results, task, metric)
    rows, folds = [], 0
    for name in table["method"]:
        row = results.rows[name]
        entry = _entry(row.metric_entry(task, metric))
        values = [v for v in entry.get("fold_values", [])]
        folds = max(folds, len(values))
        rows.append([name + (NO_SKILL_MARK if row.kind == "no-skill" else ""),
                     fmt_interval(entry.get("value", np.nan), entry.get("ci_low", np.nan),
                                  entry.get("ci_high", np.nan)),
                     fmt_interval(entry.get("fold_mean", np.nan), np.nan, np.nan,
                                  sd=entry.get("fold_sd", np.nan)),
                     *[("–" if v is None or not np.isfinite(v) else f"{v:.3f}")
                       for v in values]])
    pooled = results.eval_set == "test"
    headers = ["Method", f"{metric} pooled out of fold" if pooled else
               f"{metric} over the fold models", "folds: mean ± sd",
               *[f"fold {i}" for i in range(folds)]]
    return _tabulate([r + [""] * (len(headers) - len(r)) for r in rows], headers, fmt)


def _entry(entry: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(entry or {})
    for key in ("value", "ci_low", "ci_high", "fold_mean", "fold_sd"):
        out[key] = np.nan if out.get(key) is None else float(out[key])
    return out


def matrix_table(matrix: Any, fmt: str = "simple") -> str:
    """The transfer matrix: one row per method, one column per (trained on -> scored on)
    cell, value [95% interval]; then Kendall's tau between every pair of cells."""
    cells = matrix.cells
    names = list(dict.fromkeys(cells["train"] + "->" + cells["test"]))
    rows = []
    for method, group in cells.groupby("method", sort=False):
        by_cell = {f"{r.train}->{r.test}": r for r in group.itertuples()}
        mark = NO_SKILL_MARK if (group["kind"] == "no-skill").any() else ""
        rows.append([method + mark, *[fmt_interval(by_cell[c].value, by_cell[c].low,
                                                   by_cell[c].high) if c in by_cell else "–"
                                      for c in names]])
    text = _tabulate(rows, ["Method", *names], fmt)
    taus = [f"{a} vs {b}: Kendall tau {tau:.2f} over {n} rows" if np.isfinite(tau) else
            f"{a} vs {b}: too few rows for a rank correlation"
            for (a, b), (tau, n) in matrix.taus.items()]
    return text + ("\n" + "\n".join(taus) if taus else "")
