"""The section "Which pipeline holds up?" as text and figures: rank intervals per data set,
the consensus over data sets, the transfer matrix and accuracy on the line.

The data come from :func:`mribench.results.ranking.hold_up` (one :class:`HoldUp` per task);
this module writes them for ``bench rank`` (:func:`holdup_text`, :func:`write_figures`) and
for the report's section (:func:`holdup_section`, which :mod:`mribench.report.build` inlines).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.atomic import atomic_write_bytes
from mribench.eval.registry import TASKS, metric_label, rank_metric
from mribench.report import holdup_figures as HF
from mribench.report.figures import png
from mribench.report.tables import _tabulate, fmt_interval, matrix_table
from mribench.results.ranking import (
    MIN_BLOCKS,
    Consensus,
    HoldUp,
    RankStability,
    hold_up,
    nemenyi_cd,
)
from mribench.results.read import RunResults
from mribench.results.robustness import OnTheLine

__all__ = ["TITLE", "colours_of", "consensus_notes", "consensus_table", "holdup_figures",
           "holdup_section", "holdup_summary", "holdup_text", "holdups", "line_table",
           "stability_table", "write_figures"]

TITLE = "Which pipeline holds up?"
TASK_TITLES = {"classify": "Image-level classification", "segment": "Segmentation"}

#: A figure sink: (name, figure or None, caption) -> (HTML, Markdown) to place in the text.
FigureSink = Callable[[str, Any, str], tuple[str, str]]


def holdups(runs: Sequence[RunResults], rank_by: str = "f1", *,
            tasks: Sequence[str] | None = None, n_boot: int | None = None,
            seed: int = 0) -> list[HoldUp]:
    """:func:`~mribench.results.ranking.hold_up` for every task of ``runs`` (or ``tasks``),
    each ranked by ``rank_by`` where it is a metric of the task, else by f1."""
    present = {t for run in runs for view in ([run.of(d) for d in run.datasets] or [run])
               for t in view.tasks()}
    wanted = [t for t in TASKS if t in present and (tasks is None or t in tasks)]
    out = [hold_up(runs, t, rank_metric(t, rank_by), n_boot=n_boot, seed=seed)
           for t in wanted]
    return [h for h in out if h is not None]


def colours_of(runs: Sequence[RunResults]) -> dict[str, str]:
    """One colour per row name, in the order of the runs' rows (as the report's figures)."""
    names = [n for run in runs for n in run.rows]
    return HF.method_colours(names)


# --------------------------------------------------------------------------- tables


def _rank_text(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def stability_table(s: RankStability, fmt: str = "simple") -> str:
    """A block's methods: the metric, the observed rank, the median bootstrap rank, the 95 %
    rank interval and how often the method ranks first."""
    frame = s.frame()
    rows = [[r.method, f"{r.value:.3f}" if np.isfinite(r.value) else "–", _rank_text(r.rank),
             _rank_text(r.median_rank),
             f"[{_rank_text(r.rank_low)}, {_rank_text(r.rank_high)}]",
             f"{r.first:.0%}"] for r in frame.itertuples()]
    label = metric_label(s.metric, s.task)
    return _tabulate(rows, ["Method", label, "Rank", "Median rank", "95% rank interval",
                            "ranks first"], fmt)


def _clique_letters(c: Consensus) -> dict[str, str]:
    letters: dict[str, list[str]] = {}
    for k, group in enumerate(c.cliques):
        for name in group:
            letters.setdefault(name, []).append(chr(ord("a") + k % 26))
    return {n: ",".join(v) for n, v in letters.items()}


def consensus_table(c: Consensus, fmt: str = "simple") -> str:
    """The consensus: each method's mean rank over the data sets, its rank (and metric) on
    each, and the cliques it belongs to (letters)."""
    letters = _clique_letters(c)
    mean = c.mean_rank
    rows = [[k + 1, name, f"{mean[name]:.2f}",
             *[f"{_rank_text(c.rank_matrix.loc[name, b])} ({c.values.loc[name, b]:.3f})"
               for b in c.blocks], letters.get(name, "–")]
            for k, name in enumerate(c.methods)]
    label = metric_label(c.metric, c.task)
    return _tabulate(rows, ["#", "Method", "Mean rank", *[f"{b}: rank ({label})"
                                                          for b in c.blocks], "Clique"], fmt)


def power_note(c: Consensus) -> str:
    """Friedman/Nemenyi over the data sets (at least :data:`MIN_BLOCKS`), or how little power
    the data sets at hand give them."""
    n, k = len(c.blocks), len(c.methods)
    if k < 2:
        return ""
    if c.friedman is not None:
        stat, p = c.friedman
        pairs = ", ".join(f"{a} vs {b}" for a, b in c.nemenyi_pairs) or "none"
        return (f"Friedman test over {n} data sets: chi² = {stat:.2f}, p = {p:.3g}. Nemenyi "
                f"critical difference {c.nemenyi_cd:.2f} mean ranks (α = {c.alpha}); pairs "
                f"farther apart: {pairs}.")
    never = (f", more than the largest gap {k} methods can show ({c.max_gap}): no pair could "
             "ever differ" if c.nemenyi_cd > c.max_gap else "")
    return (f"Friedman/Nemenyi over data sets are run only with at least {MIN_BLOCKS} data "
            f"sets. {n} give them little power: {k} methods over {n} data set"
            f"{'s' if n != 1 else ''} would need a mean-rank gap of {c.nemenyi_cd:.1f} "
            f"(Nemenyi CD = q_{c.alpha} √(k(k+1)/6N)){never}; 10 methods on 4 data sets "
            f"would need {nemenyi_cd(10, 4, c.alpha):.1f}.")


def _test_name(c: Consensus) -> str:
    kind = next((t.test for t in c.tests.values() if t.test), "paired-permutation")
    unit = "swapping" if kind.endswith("permutation") else "resampling"
    return f"{kind.replace('-', ' ')} test ({unit} whole clusters)"


def consensus_notes(c: Consensus) -> list[str]:
    """What the consensus is, how far the data sets agree, and its cliques."""
    n = len(c.blocks)
    label = metric_label(c.metric, c.task)
    notes = [f"Consensus (rank-then-aggregate): methods ranked within each data set by "
             f"{label} (ties averaged), then ordered by their mean rank over {n} data "
             f"set{'s' if n != 1 else ''}; no-skill rows are never ranked."]
    if c.dropped:
        notes.append("Not ranked on every data set, left out of the consensus: " + "; ".join(
            f"{m} (not on {', '.join(b)})" for m, b in c.dropped.items()) + ".")
    if np.isfinite(c.kendall_w):
        notes.append(f"Kendall's W (ties corrected) = {c.kendall_w:.2f}: agreement of the "
                     f"{n} rankings of {len(c.methods)} methods (1: the data sets rank them "
                     "alike; 0: no agreement).")
    else:
        notes.append("Kendall's W needs at least two data sets and two methods ranked on "
                     "each.")
    power = power_note(c)
    notes += [power] if power else []
    if len(c.methods) >= 2:
        letters = "; ".join(f"{chr(ord('a') + k % 26)}: {', '.join(g)}"
                            for k, g in enumerate(c.cliques)) or "none (every pair differs)"
        notes.append(f"Cliques (not significantly different): a {_test_name(c)} of "
                     f"the {label} difference, Holm over every pair within a data set; over "
                     "data sets a pair differs only when it differs on every data set in the "
                     f"same direction. {letters}.")
    return notes


def _stability_note(s: RankStability) -> str:
    return (f"{s.block}: {s.n} images in {s.n_clusters} clusters, {len(s.ranks)} of "
            f"{s.n_boot} cluster-bootstrap draws with the metric defined; rank interval: the "
            "2.5% and 97.5% quantiles of each method's rank over the draws (the same draw for "
            "every method).")


def _signed(value: float, digits: int) -> str:
    """``+0.131``; ``–`` without a value; never ``-0.000``."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{round(float(value), digits) + 0.0:+.{digits}f}"


def line_table(line: OnTheLine, fmt: str = "simple") -> str:
    """One (train, external) pair: each method's in-distribution and external score, what the
    probit line predicts and the residual (effective robustness, in score units and on the
    probit scale)."""
    rows = []
    for r in line.points.itertuples():
        fitted = bool(r.in_fit)
        rows.append([r.method + ("" if fitted else " (no skill)"),
                     fmt_interval(r.in_distribution, np.nan, np.nan),
                     fmt_interval(r.external, np.nan, np.nan),
                     fmt_interval(r.fitted, np.nan, np.nan),
                     _signed(r.residual, 3), _signed(r.residual_probit, 2)])
    label = metric_label(line.metric, line.task)
    return _tabulate(rows, ["Method", f"{label} on {line.train}",
                            f"{label} on {line.external}", "line predicts",
                            "effective robustness", "residual (probit)"], fmt)


def line_note(line: OnTheLine) -> str:
    if not np.isfinite(line.slope):
        return (f"{line.train} → {line.external}: no line ({line.n} ranked method"
                f"{'' if line.n == 1 else 's'} with both scores; a fit needs 3 at different "
                "in-distribution scores).")
    label = metric_label(line.metric, line.task)
    return (f"{line.train} → {line.external}: probit({label} external) = "
            f"{line.slope:.2f} × probit({label} in distribution) "
            f"{'+' if line.intercept >= 0 else '−'} {abs(line.intercept):.2f}, R² = "
            f"{line.r2:.2f} over {line.n} ranked methods (scores clipped to "
            f"[{line.clip:g}, {1 - line.clip:g}]); effective robustness = external score − "
            "the line's prediction; no-skill rows are shown, not fitted.")


def holdup_summary(h: HoldUp, fmt: str = "simple") -> list[str]:
    """Rank intervals per data set and the consensus with its notes, as lines of text."""
    c = h.consensus
    gap = [] if fmt == "simple" else [""]  # Markdown: a blank line ends a table
    out = []
    for s in c.stability.values():
        out += [f"rank stability on {s.block}:", *gap, stability_table(s, fmt), *gap,
                _stability_note(s), ""]
    out += [f"consensus over {len(c.blocks)} data sets:", *gap, consensus_table(c, fmt), *gap,
            *[n + ("\n" if gap else "") for n in consensus_notes(c)], ""]
    return out


def _matrix_text(matrix: Any, fmt: str) -> str:
    """:func:`~mribench.report.tables.matrix_table`, its tau lines set apart in Markdown."""
    text = matrix_table(matrix, fmt)
    if fmt == "simple":
        return text
    lines = text.splitlines()
    k = matrix.cells["method"].nunique() + 2  # header, rule, one line per method
    return "\n".join(lines[:k]) + "\n\n" + "\n\n".join(lines[k:])


def holdup_text(h: HoldUp, fmt: str = "simple") -> str:
    """Everything of one task as text: rank intervals per data set, the consensus and its
    notes, each run's transfer matrix, and accuracy on the line per pair."""
    gap = [] if fmt == "simple" else [""]
    out = [f"{TASK_TITLES.get(h.task, h.task)}, ranked by {metric_label(h.metric, h.task)}",
           "", *holdup_summary(h, fmt)]
    for run_id, matrix in h.matrices.items():
        where = f" of {run_id}" if len(h.matrices) > 1 else ""
        out += [f"transfer matrix{where} ({matrix.task}, {matrix.metric}): trained on -> "
                "scored on", *gap, _matrix_text(matrix, fmt), ""]
    for line in h.lines:
        out += [f"accuracy on the line, {line.train} -> {line.external}:", *gap,
                line_table(line, fmt), *gap, line_note(line), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- figures

CAPTIONS = {
    "blob": "Rank stability (challengeR's blob plot), one panel per data set: the methods in "
            "consensus order; dot area = how often the method takes that rank over the cluster "
            "bootstrap draws, × its median rank, the line its 95% rank interval.",
    "transfer": "The transfer matrix: each method trained on one data set (left of →) and "
                "scored on another (right); the diagonal cells are in distribution.",
    "cd": "Critical-difference diagrams: each data set's ranks and the consensus mean rank; "
          "a thick bar joins methods not significantly different (paired tests, Holm; over "
          "data sets: not different on every data set in the same direction).",
    "line": "Accuracy on the line: each method's in-distribution score against its external "
            "score on probit-scaled axes, the probit fit across the ranked methods (solid), "
            "y = x (dashed); above the line: more robust than its in-distribution score "
            "predicts. Grey crosses: no-skill rows, not fitted (those scoring below 0.01 or "
            "above 0.99 are in the table only).",
}


def holdup_figures(h: HoldUp, colour: dict[str, str]) -> list[tuple[str, Any, str]]:
    """(name, figure or None, caption) of the task's four figures."""
    c = h.consensus
    return [(f"holdup_blob_{h.task}", HF.fig_blob(c, colour), CAPTIONS["blob"]),
            (f"holdup_cd_{h.task}", HF.fig_cd(c, colour), CAPTIONS["cd"]),
            (f"holdup_transfer_{h.task}", HF.fig_transfer(h.matrices), CAPTIONS["transfer"]),
            (f"holdup_line_{h.task}", HF.fig_on_the_line(h.lines, colour), CAPTIONS["line"])]


def write_figures(found: Sequence[HoldUp], out: Path, colour: dict[str, str]) -> list[Path]:
    """Write every figure of ``found`` as ``out/<name>.png``; the paths written."""
    paths = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for h in found:
            for name, fig, _ in holdup_figures(h, colour):
                if fig is not None:
                    atomic_write_bytes(out / f"{name}.png", png(fig))
                    paths.append(out / f"{name}.png")
    except OSError as exc:
        raise MribenchError(f"cannot write the figures to {out} ({exc.strerror or exc}); "
                            "pass --out a folder you can write to") from None
    return paths


# --------------------------------------------------------------------------- report section


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _task_parts(h: HoldUp, colour: dict[str, str], figure: FigureSink
                ) -> tuple[list[str], list[str]]:
    """One task's HTML and Markdown: consensus, rank intervals, figures, matrix, lines."""
    c = h.consensus
    figs = {name: figure(name, fig, caption) for name, fig, caption in
            holdup_figures(h, colour)}
    title = f"{TASK_TITLES.get(h.task, h.task)} ({metric_label(h.metric, h.task)})"
    notes = consensus_notes(c)
    html_parts = [f"<h3>{_e(title)}</h3>", consensus_table(c, "html"),
                  *[f"<p class='muted'>{_e(n)}</p>" for n in notes]]
    md = [f"### {title}", "", consensus_table(c, "github"), "", *[f"{n}\n" for n in notes]]
    for key in ("blob", "cd"):
        html_parts.append(figs[f"holdup_{key}_{h.task}"][0])
        md.append(figs[f"holdup_{key}_{h.task}"][1])
    for s in c.stability.values():
        html_parts += [f"<h4>Rank stability on {_e(s.block)}</h4>", stability_table(s, "html"),
                       f"<p class='muted'>{_e(_stability_note(s))}</p>"]
        md += [f"#### Rank stability on {s.block}", "", stability_table(s, "github"), "",
               _stability_note(s), ""]
    html_parts.append(figs[f"holdup_transfer_{h.task}"][0])
    md.append(figs[f"holdup_transfer_{h.task}"][1])
    for line in h.lines:
        head = f"Accuracy on the line: {line.train} → {line.external}"
        html_parts += [f"<h4>{_e(head)}</h4>", line_table(line, "html"),
                       f"<p class='muted'>{_e(line_note(line))}</p>"]
        md += [f"#### {head}", "", line_table(line, "github"), "", line_note(line), ""]
    html_parts.append(figs[f"holdup_line_{h.task}"][0])
    md.append(figs[f"holdup_line_{h.task}"][1])
    return html_parts, md


def holdup_section(results: RunResults, rank_by: str, figure: FigureSink
                   ) -> tuple[str, str] | None:
    """The report's "Which pipeline holds up?" (HTML, Markdown) for a run with several data
    sets or external sets; None otherwise. ``figure`` places each figure and returns its
    HTML and Markdown."""
    if len(results.datasets) < 2 and not results.eval_sets:
        return None
    found = holdups([results], rank_by)
    if not found:
        return None
    colour = colours_of([results])
    intro = ("How far does a ranking hold? Per data set, the methods are re-ranked on "
             "bootstrap draws of the test (or pooled out-of-fold) samples' clusters, giving "
             "each a median rank and a 95% rank interval; across data sets, the consensus is "
             "the mean rank (rank-then-aggregate), Kendall's W says how far the data sets "
             "agree, and the cliques join methods the paired tests cannot tell apart. The "
             "transfer matrix and accuracy on the line show what training on one data set "
             "says about another.")
    html_parts, md = [f"<p class='lead'>{_e(intro)}</p>"], [intro, ""]
    for h in found:
        part_html, part_md = _task_parts(h, colour, figure)
        html_parts += part_html
        md += part_md
    return "".join(html_parts), "\n".join(md)
