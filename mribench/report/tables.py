"""Ranked tables as text: the terminal (tabulate ``simple``), Markdown (``github``) and HTML.

The results layer returns data (:func:`mribench.results.rank.ranked_table`,
:func:`mribench.results.rank.transfer_data`, :func:`mribench.results.compare.compare_runs`);
this module writes it out for ``bench run``, ``bench compare`` and the report. A cell reads
``value ± sd [low, high]``: the value, its spread over seeds (with several) and its 95 %
interval, three decimals; ``–`` where there is no value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mribench.eval.registry import metric_label, metric_names
from mribench.results.compare import compare_runs
from mribench.results.rank import Transfer, transfer_data
from mribench.results.read import RunResults

__all__ = ["compare_table", "fmt_interval", "format_table", "format_transfer",
           "transfer_table"]


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


def format_table(df: pd.DataFrame, fmt: str = "github", *, metrics: tuple[str, ...] | None = None,
                 ci: bool = True) -> str:
    """A ranked table as text: ``0.912 [0.880, 0.940]`` per metric (value [95% CI]).

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`mribench.results.rank.ranked_table`.
    fmt : str, default="github"
        A tabulate format: "github" (Markdown), "simple" (terminal), "html", ...
    metrics : tuple of str, optional
        Metric columns to show (default: all of the task's in the registry).
    ci : bool, default=True
        Whether to print the confidence intervals beside the values.
    """
    task = df.attrs.get("task", "classify")
    names = metrics or metric_names(task)
    rank_by = df.attrs.get("rank_by")
    multi_seed = "seeds" in df and len(df) and int(df["seeds"].max()) > 1
    headers = ["Rank", "Group", "p vs leader", "Method", "n"] + (["seeds"] if multi_seed else [])
    headers += [metric_label(n, task) + (" ▼" if n == rank_by else "") for n in names]
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
            cells.append(fmt_interval(r[n], low, high, sd=r.get(f"{n}_sd", np.nan)))
        cells.append("–" if not np.isfinite(r["fit_s"]) else f"{r['fit_s']:.1f}")
        cells.append("–" if not np.isfinite(r["predict_ms"]) else f"{r['predict_ms']:.1f}")
        rows.append(cells)
    return _tabulate(rows, headers, fmt)


def format_transfer(data: Transfer, fmt: str = "simple") -> str:
    """A :class:`~mribench.results.rank.Transfer` as text: a row per method (test, each
    external set and its drop), then a line per external set with Kendall's tau."""
    headers = ["Method", "test"]
    for name in data.eval_sets:
        headers += [name, f"drop ({name})"]
    rows = []
    for method in data.methods:
        cells = [method]
        for r in data.frame[data.frame["method"] == method].itertuples():
            if not r.scored:
                cells += ["skipped", "–"]
                continue
            cells.append(fmt_interval(r.value, r.ci_low, r.ci_high))
            if r.eval_set != "test":
                cells.append(fmt_interval(r.drop, r.drop_low, r.drop_high))
        rows.append(cells)
    taus = [f"{name}: Kendall tau {tau.tau:.2f} over {tau.rows} rows" if tau.rows >= 3 else
            f"{name}: too few rows for a rank correlation" for name, tau in data.taus.items()]
    return _tabulate(rows, headers, fmt) + "\n" + "\n".join(taus)


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
             "–" if not np.isfinite(r.p_holm) else f"{r.p_holm:.3g}", int(r.n)]
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
