"""The section "Under artefacts" as text and figures: the per-artefact tables for the terminal
(``bench run``, ``bench report``) and the report's section with its heatmap, severity curves
and example slices.

The data come from :func:`mribench.results.artefacts.artefact_data` (one per task); the
figures from :mod:`mribench.report.artefact_figures`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import numpy as np

from mribench.eval.registry import TASKS, metric_label, rank_metric
from mribench.report.tables import _tabulate
from mribench.results.artefacts import ArtefactData, artefact_data
from mribench.results.read import RunResults

__all__ = ["TITLE", "artefact_datas", "artefact_section", "artefact_tables", "artefact_text"]

TITLE = "Under artefacts"
TASK_TITLES = {"classify": "Image-level classification", "segment": "Segmentation"}
_MARKS = {"significant": "*", "undecided": "?"}

#: A figure sink: (name, figure or None, caption) -> (HTML, Markdown) to place in the text.
FigureSink = Callable[[str, Any, str], tuple[str, str]]


def artefact_datas(results: RunResults, rank_by: str = "f1") -> list[ArtefactData]:
    """:func:`artefact_data` of every task of the run on its test part and on each external
    set, each by ``rank_by`` where it is a metric of the task, else by f1."""
    if not results.artefacts:
        return []
    out = [artefact_data(results, t, rank_metric(t, rank_by), base=base)
           for base in ["test", *results.eval_sets] for t in TASKS
           if t in results.on(base).tasks()]
    return [d for d in out if d is not None]


def _where(data: ArtefactData) -> str:
    return "test part" if data.base == "test" else f"external set {data.base}"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _summary_rows(data: ArtefactData) -> tuple[list[list[str]], list[str]]:
    """Rows x (clean, mean over severities per artefact, mCE, mean rCE)."""
    summary = data.summary.set_index(["row", "artefact"])
    headers = ["method", "kind", "clean", *data.artefacts, "mCE", "rCE"]
    rows = []
    for rec in data.clean.itertuples():
        mean = summary.loc[(rec.row, "mean")] if (rec.row, "mean") in summary.index else None
        rows.append([rec.row + (" (ref)" if rec.row == data.reference else ""), rec.kind,
                     _num(rec.value),
                     *[_num(summary.loc[(rec.row, a), "mean"]) if (rec.row, a) in summary.index
                       else "–" for a in data.artefacts],
                     _num(mean["ce_norm"] if mean is not None else np.nan, 2),
                     _num(mean["rel_ce"] if mean is not None else np.nan, 2)])
    return rows, headers


def artefact_tables(data: ArtefactData, fmt: str = "simple") -> list[tuple[str, str]]:
    """(title, table text) of the summary and of each artefact's severity table."""
    rows, headers = _summary_rows(data)
    out = [(f"mean {data.metric} over severities per artefact; mCE = mean normalised "
            "corruption error, rCE = mean relative corruption error (1: degrades like the "
            "reference)", _tabulate(rows, headers, fmt))]
    cells = data.cells.set_index(["row", "artefact", "severity"])
    summary = data.summary.set_index(["row", "artefact"])
    for artefact in data.artefacts:
        body = []
        for rec in data.clean.itertuples():
            values = []
            for s in data.severities:
                c = cells.loc[(rec.row, artefact, s)]
                values.append(_num(c["value"]) + _MARKS.get(str(c["decision"]), ""))
            ce = summary.loc[(rec.row, artefact)]
            body.append([rec.row, _num(rec.value), *values, _num(ce["ce"]),
                         _num(ce["ce_norm"], 2), _num(ce["rel_ce"], 2)])
        headers = ["method", "clean", *[f"s{s}" for s in data.severities], "CE", "CE/ref",
                   "rCE"]
        out.append((artefact, _tabulate(body, headers, fmt)))
    return out


def _legend(data: ArtefactData) -> str:
    unit = "1 - balanced accuracy" if data.task == "classify" else "1 - Dice (pooled)"
    return (f"* = {data.metric} differs from clean (paired permutation test over the same "
            f"images, swapping whole clusters; Holm over all rows x artefacts x severities, "
            f"alpha {data.alpha}); ? = undecided within Monte-Carlo error. CE = mean over "
            f"severities of the balanced error ({unit}); CE/ref = CE / the reference's; rCE = "
            f"(CE - clean error) / (reference CE - reference clean error); "
            f"{data.reference_note}.")


def artefact_text(results: RunResults, rank_by: str = "f1") -> str:
    """The terminal text of the artefact axis ('' for a run without it)."""
    parts = []
    for data in artefact_datas(results, rank_by):
        parts.append(f"\nunder artefacts ({data.task}, {data.metric}, {_where(data)}; severities "
                     f"{', '.join(map(str, data.severities))}):")
        for title, table in artefact_tables(data):
            parts += [f"{title}:", table]
        parts.append(_legend(data))
        spent = [v for v in data.corrupt_s.values() if np.isfinite(v)]
        if spent:
            parts.append(f"time on the corrupted sets: {sum(spent):.1f} s over "
                         f"{len(spent)} rows (predicting and scoring; images made once)")
    return "\n".join(parts)


def _suffix(data: ArtefactData) -> str:
    """A figure name's suffix: none on the test part, the set's name on an external set."""
    return "" if data.base == "test" else "_" + "".join(
        c if c.isalnum() or c in "-_" else "-" for c in data.base)


def _e(value: Any) -> str:
    return html.escape(str(value))


def artefact_section(results: RunResults, rank_by: str, figure: FigureSink
                     ) -> tuple[str, str] | None:
    """The report's "Under artefacts" (HTML, Markdown); None for a run without the axis.
    ``figure`` places each figure and returns its HTML and Markdown."""
    from mribench.report import artefact_figures as AF

    datas = artefact_datas(results, rank_by)
    if not datas:
        return None
    intro = ("Every fitted row was also scored on its test part (and on each external set) "
             "corrupted by MRI artefacts "
             "(TorchIO; parameters fixed per severity, seeded per image so every method sees "
             "the same pixels; masks untouched). Training and selection never saw a "
             "corrupted image. Classical rows are drawn in blue, deep rows in orange.")
    html_parts, md = [f"<p class='lead'>{_e(intro)}</p>"], [intro, ""]
    place = figure("artefact_examples", AF.fig_examples(results, datas[0].artefacts,
                                                        datas[0].severities),
                   "A test slice under each artefact (rows) at each severity (columns; "
                   "severity 0 is the clean image); the tumour contour in yellow.")
    html_parts.append(place[0])
    md.append(place[1])
    for data in datas:
        label = metric_label(data.metric, data.task)
        title = f"{TASK_TITLES[data.task]} ({label}), {_where(data)}"
        html_parts.append(f"<h3>{_e(title)}</h3>")
        md += [f"### {title}", ""]
        for name, fig, caption in (
                (f"artefact_heatmap_{data.task}{_suffix(data)}", AF.fig_heatmap(data),
                 f"{label} per method (rows) and artefact (columns), mean over severities; "
                 "the first column is clean."),
                (f"artefact_curves_{data.task}{_suffix(data)}", AF.fig_curves(data),
                 f"{label} against severity per artefact (severity 0: clean), every method; "
                 "classical blue, deep orange, no-skill grey.")):
            placed = figure(name, fig, caption)
            html_parts.append(placed[0])
            md.append(placed[1])
        for (table_title, text_html), (_, text_md) in zip(artefact_tables(data, "html"),
                                                          artefact_tables(data, "github"),
                                                          strict=True):
            html_parts.append(f"<h4>{_e(table_title)}</h4>{text_html}")
            md += [f"#### {table_title}", "", text_md, ""]
        html_parts.append(f"<p class='muted'>{_e(_legend(data))}</p>")
        md += [_legend(data), ""]
    return "".join(html_parts), "\n".join(md)
