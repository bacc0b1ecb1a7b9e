"""Figures of "Which pipeline holds up?": the blob plot, the transfer-matrix heatmap, the
critical-difference diagram and accuracy on the line (matplotlib's object API, Agg).

Each ``fig_*`` function takes the data of :mod:`mribench.results.ranking` /
:mod:`mribench.results.robustness` and returns a :class:`matplotlib.figure.Figure`, or None
when there is nothing to draw. Colours are one per method (``colour``), as in the report's
other figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from mribench.api.specs import NO_SKILL
from mribench.eval.registry import metric_label
from mribench.report.figures import PALETTE, STYLE, _panels
from mribench.results.ranking import Consensus, RankStability
from mribench.results.robustness import OnTheLine
from mribench.results.transfer import TransferMatrix

__all__ = ["fig_blob", "fig_cd", "fig_on_the_line", "fig_transfer", "method_colours"]

#: Marker area (points^2) of a method that takes one rank in every draw.
BLOB_AREA = 520.0


def method_colours(names: Sequence[str]) -> dict[str, str]:
    """One colour per method, in the order given (cycled beyond ten)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


# --------------------------------------------------------------------------- blob plot


def _blob_panel(ax: Any, s: RankStability, order: list[str], colour: dict[str, str],
                k: int) -> None:
    freq, median = s.frequency(), s.median
    low, high = s.interval()
    for x, name in enumerate(order):
        if name not in s.methods:
            continue
        i = s.methods.index(name)
        ranks = np.arange(1, len(s.methods) + 1)
        seen = freq[i] > 0
        ax.scatter(np.full(seen.sum(), x), ranks[seen], s=BLOB_AREA * freq[i][seen],
                   color=colour.get(name, "#888"), alpha=0.75, linewidths=0)
        ax.vlines(x, low[i], high[i], color="#222", lw=1.2)
        ax.plot(x, median[i], marker="x", color="#222", ms=7, mew=1.6)
    ax.set_xticks(range(len(order)), order, rotation=35, ha="right")
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylim(k + 0.6, 0.4)
    ax.set_yticks(range(1, k + 1))
    ax.set_ylabel("rank (1 = best)")
    ax.grid(axis="x", visible=False)
    ax.set_title(f"{s.block} ({s.n} images, {s.n_clusters} clusters)", fontsize=9)


def fig_blob(consensus: Consensus, colour: dict[str, str]) -> Figure | None:
    """challengeR's blob plot, one panel per data set: x the methods in consensus order (then
    those not ranked everywhere), y the rank; dot area how often the method takes that rank
    over the bootstrap draws, the cross its median rank, the line its 95 % rank interval
    (None without a data set of two ranked methods)."""
    panels = [s for s in consensus.stability.values() if s.methods]
    if not panels or max(len(s.methods) for s in panels) < 2:
        return None
    order = list(dict.fromkeys([*consensus.methods, *(m for s in panels for m in s.methods)]))
    k = max(len(s.methods) for s in panels)
    with mpl.rc_context(STYLE):
        cols = 3 if len(order) <= 5 else 2
        fig, axes = _panels(len(panels), cols, max(2.6, 0.55 * len(order) + 1.4), 3.4)
        for ax, s in zip(axes, panels, strict=True):
            _blob_panel(ax, s, order, colour, k)
    return fig


# --------------------------------------------------------------------------- heatmap


def fig_transfer(matrices: Mapping[str, TransferMatrix]) -> Figure | None:
    """The transfer matrix as a heatmap per run (run id -> matrix): methods (rows; no-skill
    ones last, marked) x cells "trained on -> scored on" (columns), the metric in each
    cell."""
    wides = [(run_id, m, m.wide()) for run_id, m in matrices.items() if not m.cells.empty]
    if not wides:
        return None
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(wides), 1, 1.3 * max(w.shape[1] for *_, w in wides) + 3.2,
                            0.34 * max(w.shape[0] for *_, w in wides) + 1.6)
        for ax, (run_id, matrix, wide) in zip(axes, wides, strict=True):
            kinds = matrix.cells.drop_duplicates("method").set_index("method")["kind"]
            rows = sorted(wide.index, key=lambda n: kinds.get(n) == NO_SKILL)
            wide = wide.loc[rows]
            image = ax.imshow(wide.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1,
                              aspect="auto")
            for (i, j), v in np.ndenumerate(wide.to_numpy(dtype=float)):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if v < 0.6 else "#111")
            ax.set_xticks(range(wide.shape[1]), [c.replace("->", " →\n") for c in wide.columns])
            ax.set_yticks(range(len(rows)), [f"{n} (no skill)" if kinds.get(n) == NO_SKILL
                                             else n for n in rows])
            ax.grid(False)
            label = metric_label(matrix.metric, matrix.task)
            ax.set_title(f"{run_id + ': ' if len(wides) > 1 else ''}{matrix.task}, {label}: "
                         "trained on → scored on", fontsize=9)
            fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    return fig


# --------------------------------------------------------------------------- CD diagram


def _cd_panel(ax: Any, names: list[str], ranks: np.ndarray, groups: list[list[str]],
              title: str, colour: dict[str, str], cd: float | None = None) -> None:
    """One critical-difference diagram: a rank axis, each method on an elbow to its label
    (the better half left, the rest right), the cliques as thick bars under the axis."""
    k = max(len(names), 2)
    span = k - 1
    order = np.argsort(ranks, kind="stable")
    level = 0.28
    for j, group in enumerate(groups):
        at = [ranks[names.index(n)] for n in group]
        ax.plot([min(at) - 0.04, max(at) + 0.04], [-level * (j + 1)] * 2, lw=3.2,
                color="#222", solid_capstyle="round")
    base = -level * (len(groups) + 1) - 0.15
    half = (len(names) + 1) // 2
    for pos, i in enumerate(order):
        left = pos < half
        y = base - 0.32 * (pos if left else len(names) - 1 - pos)
        edge = 1 - 0.12 * span if left else k + 0.12 * span
        ax.plot([ranks[i], ranks[i], edge], [0, y, y], lw=1.0, color=colour.get(names[i],
                                                                               "#555"))
        ax.text(edge + (-0.03 if left else 0.03) * span, y,
                f"{names[i]} ({ranks[i]:.2f})" if left else f"({ranks[i]:.2f}) {names[i]}",
                ha="right" if left else "left", va="center", fontsize=8)
    ax.hlines(0, 1, k, color="#222", lw=1.2)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.1, color="#222", lw=1.0)
        ax.text(r, 0.16, str(r), ha="center", va="bottom", fontsize=8)
    if cd is not None and np.isfinite(cd):
        ax.plot([1, 1 + cd], [0.55, 0.55], lw=1.6, color="#a33a3a")
        ax.text(1 + cd / 2, 0.62, f"Nemenyi CD = {cd:.2f}", ha="center", va="bottom",
                fontsize=8, color="#a33a3a")
    ax.set_xlim(1 - 0.75 * span, k + 0.75 * span)
    ax.set_ylim(base - 0.32 * half - 0.2, 1.0)
    ax.axis("off")
    ax.set_title(title, fontsize=9)


def fig_cd(consensus: Consensus, colour: dict[str, str]) -> Figure | None:
    """Critical-difference diagrams: one per data set (its observed ranks; cliques from its
    Holm-adjusted paired tests) and the consensus (mean ranks; cliques of methods not shown
    different on every data set; the Nemenyi CD drawn with at least 5 data sets)."""
    panels: list[tuple[list[str], np.ndarray, list[list[str]], str, float | None]] = []
    for name, s in consensus.stability.items():
        if len(s.methods) >= 2:
            panels.append((s.methods, s.observed.astype(float),
                           consensus.block_cliques.get(name, []), f"{name}: rank", None))
    if len(consensus.blocks) > 1 and len(consensus.methods) >= 2:
        panels.append((consensus.methods, consensus.mean_rank.to_numpy(dtype=float),
                       consensus.cliques,
                       f"consensus: mean rank over {len(consensus.blocks)} data sets",
                       consensus.nemenyi_cd if consensus.friedman else None))
    if not panels:
        return None
    k = max(len(p[0]) for p in panels)
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(panels), 2, 5.2, 1.1 + 0.2 * k + 0.28 * max(
            (len(p[2]) for p in panels), default=0))
        for ax, (names, ranks, groups, title, cd) in zip(axes, panels, strict=True):
            _cd_panel(ax, names, ranks, groups, title, colour, cd)
    return fig


# --------------------------------------------------------------------------- on the line

#: Score ticks of the probit-scaled axes.
PROBIT_TICKS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def _shown_points(line: OnTheLine) -> Any:
    """The points drawn: the ranked methods with both scores, and the no-skill rows between
    scores 0.01 and 0.99 (a row at 0 or 1 would stretch the axes; it stays in the table)."""
    p = line.points
    finite = np.isfinite(p["x_probit"]) & np.isfinite(p["y_probit"])
    inside = p["in_distribution"].between(0.01, 0.99) & p["external"].between(0.01, 0.99)
    return p[finite & (p["in_fit"] | inside)]


def _line_panel(ax: Any, line: OnTheLine, colour: dict[str, str]) -> None:
    from scipy.stats import norm

    shown = _shown_points(line)
    both = np.concatenate([shown["x_probit"], shown["y_probit"]])
    lo, hi = (float(both.min()) - 0.3, float(both.max()) + 0.3) if both.size else (-2, 2)
    ax.plot([lo, hi], [lo, hi], ls="--", lw=0.8, color="#999", label="y = x")
    if np.isfinite(line.slope):
        xs = np.array([lo, hi])
        ax.plot(xs, line.slope * xs + line.intercept, lw=1.4, color="#17243a",
                label=f"probit fit (R² {line.r2:.2f})")
    at = shown.assign(key=list(zip(shown["x_probit"].round(6), shown["y_probit"].round(6),
                                   shown["in_fit"], strict=True)))
    for (x, y, fitted), group in at.groupby("key", sort=False):
        names = list(group["method"])
        ax.scatter(x, y, s=36 if fitted else 28, marker="o" if fitted else "x", zorder=3,
                   color=colour.get(names[0], "#888") if fitted else "#888")
        ax.annotate(", ".join(names) + ("" if fitted else " (no skill)"), (x, y),
                    xytext=(4, 3), textcoords="offset points", fontsize=7,
                    color="#222" if fitted else "#888")
    ticks = [t for t in PROBIT_TICKS if lo <= norm.ppf(t) <= hi]
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    label = metric_label(line.metric, line.task)
    ax.set_xlabel(f"{label} on {line.train} (in distribution, probit scale)")
    ax.set_ylabel(f"{label} on {line.external} (external)")
    ax.set_title(f"trained on {line.train}, scored on {line.external}", fontsize=9)
    ax.legend(loc="upper left")


def fig_on_the_line(lines: Sequence[OnTheLine], colour: dict[str, str]) -> Figure | None:
    """Accuracy on the line, one panel per (train set, external set): each method's
    in-distribution against its external score on probit-scaled axes, the probit fit across
    the ranked methods, y = x dashed, the no-skill rows as grey crosses (not fitted; those at
    a score below 0.01 or above 0.99 only in the table)."""
    lines = [line for line in lines if not line.points.empty]
    if not lines:
        return None
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(lines), 2, 4.6, 4.2)
        for ax, line in zip(axes, lines, strict=True):
            _line_panel(ax, line, colour)
    return fig
