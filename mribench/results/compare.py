"""Two runs side by side: the same rows, a metric in each, their difference and a paired test.

For ablations a researcher runs twice (original vs harmonised data, two profiles, two image
sizes, before and after a change): :func:`compare_runs` pairs the rows both runs finished, and
tests each difference with :func:`mribench.eval.stats.paired_metric_test` over the test images
the two runs share (matched by id; all seeds of each), Holm-corrected over the rows. The runs
should score the same images: where their split hashes differ, :func:`compare_table` says so,
and only the common images enter the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mribench.eval.stats import holm, paired_metric_test
from mribench.results.rank import _fmt
from mribench.results.read import RunResults

__all__ = ["compare_runs", "compare_table"]


def compare_runs(a: RunResults, b: RunResults, task: str, metric: str, view: str = "all",
                 eval_set: str = "test") -> pd.DataFrame:
    """One row per method both runs finished: ``a``, ``a_low``, ``a_high``, ``b``, ``b_low``,
    ``b_high``, ``difference`` (b - a), ``p`` (paired permutation test of the metric, or a
    bootstrap when the seeds differ), ``p_holm`` and ``n`` (common images), ordered by ``b``."""
    a, b = a.on(eval_set), b.on(eval_set)
    mine = {r.name: r for r in a.done(task, view)}
    theirs = {r.name: r for r in b.done(task, view)}
    rows = []
    for name in [n for n in mine if n in theirs]:
        ra, rb = mine[name], theirs[name]
        ma, mb = ra.metric(task, metric, view), rb.metric(task, metric, view)
        test = paired_metric_test(rb.per_seed, ra.per_seed, metric, task, view=view)
        rows.append({"method": name, "a": ma["value"], "a_low": ma["ci_low"],
                     "a_high": ma["ci_high"], "b": mb["value"], "b_low": mb["ci_low"],
                     "b_high": mb["ci_high"], "difference": mb["value"] - ma["value"],
                     "p": test.p_value, "n": test.n, "test": test.test})
    frame = pd.DataFrame(rows, columns=["method", "a", "a_low", "a_high", "b", "b_low",
                                        "b_high", "difference", "p", "n", "test"])
    if not frame.empty:
        finite = np.isfinite(frame["p"].to_numpy(dtype=float))
        adjusted = np.full(len(frame), np.nan)
        adjusted[finite] = holm(frame["p"].to_numpy(dtype=float)[finite])
        frame["p_holm"] = adjusted
        frame = frame.sort_values("b", ascending=False, kind="stable").reset_index(drop=True)
    else:
        frame["p_holm"] = []
    return frame


def compare_table(a: RunResults, b: RunResults, task: str, metric: str, view: str = "all",
                  eval_set: str = "test", fmt: str = "simple") -> str:
    """:func:`compare_runs` as a text table (tabulate ``fmt``), with a line per caveat."""
    from tabulate import tabulate

    frame = compare_runs(a, b, task, metric, view, eval_set)
    name_a, name_b = a.run_id, b.run_id
    if frame.empty:
        return f"no row finished {task} ({view}) in both {name_a} and {name_b}"
    rows = [[r.method, _fmt(r.a, r.a_low, r.a_high), _fmt(r.b, r.b_low, r.b_high),
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
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True) + "\n" + \
        "\n".join(notes)
