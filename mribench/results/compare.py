"""Two runs side by side: the same rows, a metric in each, their difference and a paired test.

For ablations a researcher runs twice (original vs harmonised data, two profiles, two image
sizes, before and after a change): :func:`compare_runs` pairs the rows both runs finished, and
tests each difference with :func:`mribench.eval.stats.paired_metric_test` over the test images
the two runs share (matched by id; all seeds of each), Holm-corrected over the rows. The runs
should score the same images: only the common images enter the test (the text of
:func:`mribench.report.tables.compare_table` says so where their split hashes differ).
"""

from __future__ import annotations

import pandas as pd

from mribench.api.specs import NO_SKILL
from mribench.eval.registry import get_metric
from mribench.eval.stats import holm_decisions, holm_levels, paired_metric_test
from mribench.results.read import RunResults

__all__ = ["compare_runs"]


def compare_runs(a: RunResults, b: RunResults, task: str, metric: str, view: str = "all",
                 eval_set: str = "test") -> pd.DataFrame:
    """One row per method both runs finished: ``a``, ``a_low``, ``a_high``, ``b``, ``b_low``,
    ``b_high``, ``difference`` (b - a), ``p`` (paired permutation test of the metric swapping
    whole clusters, or a cluster bootstrap when the seeds differ; the metric's own ``test``,
    resampled adaptively around the Holm levels), ``p_se`` (its Monte-Carlo error),
    ``p_holm``, ``p_holm_se`` and ``n`` (common images), ordered by ``b``, best first in the
    metric's direction. The no-skill rows are left out: they are references, not methods, and
    would only widen the Holm family."""
    a, b = a.on(eval_set), b.on(eval_set)
    mine = {r.name: r for r in a.done(task, view) if r.kind != NO_SKILL}
    theirs = {r.name: r for r in b.done(task, view)}
    rows = []
    common = [n for n in mine if n in theirs]
    levels = holm_levels(0.05, len(common))
    for name in common:
        ra, rb = mine[name], theirs[name]
        ma, mb = ra.metric(task, metric, view), rb.metric(task, metric, view)
        test = paired_metric_test(rb.per_seed, ra.per_seed, metric, task, view=view,
                                  method=get_metric(metric).test, alpha=levels)
        rows.append({"method": name, "a": ma["value"], "a_low": ma["ci_low"],
                     "a_high": ma["ci_high"], "b": mb["value"], "b_low": mb["ci_low"],
                     "b_high": mb["ci_high"], "difference": mb["value"] - ma["value"],
                     "p": test.p_value, "p_se": test.mc_se, "n": test.n, "test": test.test})
    frame = pd.DataFrame(rows, columns=["method", "a", "a_low", "a_high", "b", "b_low",
                                        "b_high", "difference", "p", "p_se", "n", "test"])
    if not frame.empty:
        adjusted, adjusted_se, _ = holm_decisions(frame["p"].to_numpy(dtype=float),
                                                  frame["p_se"].to_numpy(dtype=float))
        frame["p_holm"], frame["p_holm_se"] = adjusted, adjusted_se
        ascending = not get_metric(metric).higher_is_better
        frame = frame.sort_values("b", ascending=ascending, kind="stable").reset_index(drop=True)
    else:
        frame["p_holm"], frame["p_holm_se"] = [], []
    return frame
