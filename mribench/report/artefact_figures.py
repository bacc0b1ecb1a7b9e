"""Figures of "Under artefacts": the method x artefact heatmap, the severity curves and the
example corrupted slices (matplotlib's object API, Agg).

Each ``fig_*`` function takes the data of :func:`mribench.results.artefacts.artefact_data`
(or the run, for the examples) and returns a :class:`matplotlib.figure.Figure`, or None when
there is nothing to draw. Classical rows are blue, deep rows orange, no-skill rows grey: the
question of the axis is classical against deep.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from mribench.blocks.artefacts import MAX_SEVERITY, corrupt
from mribench.eval.registry import get_metric, metric_label
from mribench.report.figures import STYLE, _panels
from mribench.results.artefacts import ArtefactData
from mribench.results.read import RunResults

__all__ = ["KIND_COLOURS", "fig_curves", "fig_examples", "fig_heatmap"]

#: Line colour by the row's kind.
KIND_COLOURS = {"classical": "#1f77b4", "deep": "#ff7f0e", "no-skill": "#9a9a9a"}
_STYLES = ("-", "--", ":", "-.")


def fig_heatmap(data: ArtefactData) -> Figure | None:
    """Methods (rows, clean rank order) x (clean, each artefact's mean over severities),
    coloured by the metric, each cell written."""
    summary = data.summary.set_index(["row", "artefact"])
    rows = list(data.clean["row"])
    if not rows:
        return None
    columns = ["clean", *data.artefacts]
    grid = np.full((len(rows), len(columns)), np.nan)
    for i, rec in enumerate(data.clean.itertuples()):
        grid[i, 0] = rec.value
        for j, artefact in enumerate(data.artefacts, 1):
            if (rec.row, artefact) in summary.index:
                grid[i, j] = summary.loc[(rec.row, artefact), "mean"]
    cmap = "viridis" if get_metric(data.metric).higher_is_better else "viridis_r"
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(1.0 * len(columns) + 2.8, 0.42 * len(rows) + 1.4),
                     layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.55 else "black")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        labels = [f"{r} ({k})" for r, k in zip(rows, data.clean["kind"], strict=True)]
        ax.set_yticks(range(len(rows)), labels)
        ax.grid(False)
        fig.colorbar(image, ax=ax, label=metric_label(data.metric, data.task), shrink=0.8)
    return fig


def fig_curves(data: ArtefactData) -> Figure | None:
    """One panel per artefact: the metric against severity (0: clean) for every method,
    classical blue and deep orange (line styles tell methods of one kind apart)."""
    if not data.artefacts or data.clean.empty:
        return None
    cells = data.cells
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(data.artefacts), 4, 3.0, 2.6)
        seen: dict[str, int] = {}
        styles = {}
        for rec in data.clean.itertuples():
            k = seen.get(rec.kind, 0)
            styles[rec.row] = _STYLES[k % len(_STYLES)]
            seen[rec.kind] = k + 1
        for ax, artefact in zip(axes, data.artefacts, strict=True):
            for rec in data.clean.itertuples():
                part = cells[(cells["row"] == rec.row) & (cells["artefact"] == artefact)]
                x = [0, *part["severity"].tolist()]
                y = [rec.value, *part["value"].tolist()]
                ax.plot(x, y, styles[rec.row], marker="o", ms=3, lw=1.4,
                        color=KIND_COLOURS.get(rec.kind, "#444"), label=rec.row)
            ax.set_title(artefact, fontsize=10)
            ax.set_xticks(range(0, MAX_SEVERITY + 1))
            ax.set_xlabel("severity")
            ax.set_ylim(-0.02, 1.02)
        axes[0].set_ylabel(metric_label(data.metric, data.task))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    return fig


def fig_examples(results: RunResults, artefacts: Sequence[str],
                 severities: Sequence[int] = range(1, MAX_SEVERITY + 1)) -> Figure | None:
    """One test slice (a tumour slice where there is one, from ``test_images.npz``) under
    each artefact (rows) at severity 0 and each of ``severities`` (columns), corrupted with
    the same seed as the run's evaluation sets; the true tumour contour in yellow."""
    images = results.test_images
    if not images or "images" not in images or not len(images["images"]) or not artefacts:
        return None
    masks = images.get("masks")
    k = next((i for i in range(len(images["images"]))
              if masks is not None and np.asarray(masks[i]).any()), 0)
    image = np.asarray(images["images"][k], dtype=np.float32)
    sid = str(images["ids"][k])
    levels = [0, *severities]
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(1.55 * len(levels) + 0.6, 1.6 * len(artefacts)),
                     layout="constrained")
        axes = fig.subplots(len(artefacts), len(levels), squeeze=False)
        for i, artefact in enumerate(artefacts):
            for j, severity in enumerate(levels):
                ax = axes[i, j]
                ax.imshow(corrupt(image, artefact, severity, sid), cmap="gray", vmin=0, vmax=1)
                if masks is not None and np.asarray(masks[k]).any():
                    ax.contour(np.asarray(masks[k], dtype=float), levels=[0.5],
                               colors="yellow", linewidths=0.6)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if i == 0:
                    ax.set_title(f"severity {severity}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(artefact, fontsize=9)
    return fig
