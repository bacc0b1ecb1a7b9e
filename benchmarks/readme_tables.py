"""Print the README's results tables (GitHub Markdown) from a finished results folder.

Usage::

    python benchmarks/readme_tables.py results/<run>            # every evaluation set
    python benchmarks/readme_tables.py results/<run> --eval-set lgg
    python benchmarks/readme_tables.py results/<run> --artefacts   # the artefact axis

One row per ranked method (best first by F1), then the no-skill rows, marked and unranked:
group (paired permutation test of F1 against the leader, whole clusters swapped, Holm; "1?"
undecided), accuracy, F1 with its 95 % interval (clusters, and seeds with several), AUC,
pooled Dice on every slice with a known mask (with its interval) and on the annotated tumour
slices alone, and n (clusters). With several seeds the cells are mean ± sd over seeds.
Everything is read through mribench's own reader, so the README shows exactly what
``bench run`` / ``bench report`` compute.

``--artefacts`` prints, for a run with ``--corrupt``, the tables of "Under artefacts" per task
(:mod:`mribench.report.artefacts`): each row's clean F1 (Dice for segment) and its mean over
severities under every artefact, mCE and mean relative CE, then each artefact's severities with
Holm-significant drops starred.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mribench.report.tables import fmt_interval
from mribench.results.rank import ranked_table
from mribench.results.read import RunResults, load_results


def _cell(rec: pd.Series | None, metric: str, interval: bool = True) -> str:
    if rec is None:
        return ""
    value = rec.get(metric, np.nan)
    sd = rec.get(f"{metric}_sd", np.nan)
    low, high = ((rec.get(f"{metric}_low", np.nan), rec.get(f"{metric}_high", np.nan))
                 if interval else (np.nan, np.nan))
    return fmt_interval(value, low, high, sd=sd)


def _group(rec: pd.Series) -> str:
    value = rec["group"]
    text = f"{int(value)}" if isinstance(value, float | int | np.integer) else str(value)
    return text + ("?" if bool(rec.get("group_undecided", False)) else "")


def table(results: RunResults) -> str:
    """The README table of one evaluation set."""
    classify = ranked_table(results, "classify", "f1") if results.done("classify") else None
    segment = ranked_table(results, "segment", "f1") if results.done("segment") else None
    tumour = (ranked_table(results, "segment", "f1", view="tumour_only")
              if results.done("segment", "tumour_only") else None)
    order = list(classify["method"]) if classify is not None else []
    order += [m for m in (segment["method"] if segment is not None else []) if m not in order]

    def rec(df: pd.DataFrame | None, method: str) -> pd.Series | None:
        if df is None or method not in set(df["method"]):
            return None
        return df[df["method"] == method].iloc[0]

    lines = ["| method | group | n (clusters) | accuracy | F1 [95% CI] | AUC | "
             "pooled Dice, all slices | pooled Dice, tumour slices |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method in order:
        c, s, t = rec(classify, method), rec(segment, method), rec(tumour, method)
        first = c if c is not None else s
        no_skill = first["kind"] == "no-skill"
        group = "no skill" if no_skill else _group(first)
        n = str(first.get("n_label", first["n"])) if "n_label" in first else (
            f"{int(first['n'])} ({int(first['n_clusters'])})" if "n_clusters" in first
            else str(int(first["n"])))
        lines.append(
            f"| {method} | {group} | {n} | {_cell(c, 'accuracy', False)} | {_cell(c, 'f1')} | "
            f"{_cell(c, 'auc', False)} | {_cell(s, 'f1')} | {_cell(t, 'f1', False)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--eval-set", default=None, help="one evaluation set (default all)")
    parser.add_argument("--artefacts", action="store_true",
                        help="the artefact tables of a run with --corrupt")
    args = parser.parse_args()
    results = load_results(args.run)
    if args.artefacts:
        from mribench.report.artefacts import artefact_datas, artefact_tables

        for data in artefact_datas(results, "f1"):
            for title, text in artefact_tables(data, "github"):
                print(f"\n#### {data.task}: {title}\n\n{text}")
            print(f"\n{data.reference_note}; severities "
                  f"{', '.join(map(str, data.severities))}")
        return
    sets = [args.eval_set] if args.eval_set else ["test", *results.eval_sets]
    for name in sets:
        print(f"\n### {name}\n")
        print(table(results.on(name)))


if __name__ == "__main__":
    main()
