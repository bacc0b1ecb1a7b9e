"""The report's figures, drawn with matplotlib's object API (Agg, no pyplot state).

Each ``fig_*`` function returns a :class:`matplotlib.figure.Figure`, or None when the run has
nothing to draw (no classifier with scores, no training history, ...). :func:`png` turns a
figure into PNG bytes. One colour per result row, the same in every figure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mribench.eval.registry import metric_label
from mribench.report.tables import table_metrics
from mribench.results.read import RowResult, RunResults

__all__ = ["colours", "fig_confusion", "fig_metric_bars", "fig_montage", "fig_roc",
           "fig_training", "png"]

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "savefig.dpi": 144,
    "savefig.facecolor": "white",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
TRUTH = "#ffd400"


def colours(results: RunResults) -> dict[str, str]:
    """One colour per result row, in the run's order (cycled beyond ten rows)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(results.rows)}


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    with mpl.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _panels(n: int, max_cols: int, width: float, height: float) -> tuple[Figure, list[Any]]:
    """A figure of ``n`` axes on a grid at most ``max_cols`` wide, each width x height in."""
    cols = min(max_cols, n)
    lines = int(np.ceil(n / cols))
    fig = _figure(width * cols, height * lines)
    return fig, [fig.add_subplot(lines, cols, k + 1) for k in range(n)]


def fig_metric_bars(table: pd.DataFrame, colour: dict[str, str],
                    metrics: Sequence[str] | None = None) -> Figure | None:
    """Grouped bars of a ranked table: one group per metric, one bar per method, 95% CI."""
    if table.empty:
        return None
    task = table.attrs.get("task", "classify")
    shown = [m for m in _metric_cols(table) if m in table_metrics(table)]
    metrics = [m for m in (metrics or shown) if table[m].notna().any()]
    n_methods = len(table)
    with mpl.rc_context(STYLE):
        fig = _figure(min(13.0, max(6.0, 0.14 * len(metrics) * max(n_methods, 2) + 3.0)), 4.2)
        ax = fig.add_subplot()
        width = min(0.8 / n_methods, 0.3)
        x = np.arange(len(metrics))
        for k, (_, row) in enumerate(table.iterrows()):
            values = np.array([row[m] for m in metrics], dtype=float)
            low = np.array([row[f"{m}_low"] for m in metrics], dtype=float)
            high = np.array([row[f"{m}_high"] for m in metrics], dtype=float)
            err = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
            err = np.clip(err, 0, None)
            ax.bar(x + (k - (n_methods - 1) / 2) * width, values, width * 0.92,
                   yerr=err, capsize=2, color=colour.get(row["method"], "#888"),
                   error_kw={"elinewidth": 0.8, "ecolor": "#333"},
                   label=(f"{row['method']} (no skill)" if row.get("no_skill") else
                          f"{int(row['rank'])}. {row['method']}"))
        ax.set_xticks(x, [metric_label(m, task).replace(" (", "\n(") for m in metrics])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score (95% CI)")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _metric_cols(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if f"{c}_low" in table.columns]


def fig_roc(results: RunResults, colour: dict[str, str]) -> Figure | None:
    """ROC curves of every finished row with classify scores, AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    curves = []
    for r in results.done("classify"):
        recs = [c for c in r.per_case if c.get("label") in (0, 1) and c.get("score") is not None]
        if not recs:
            continue
        y = np.array([c["label"] for c in recs])
        s = np.array([c["score"] for c in recs], dtype=float)
        if y.min() == y.max() or not np.isfinite(s).all():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        curves.append((r.name, fpr, tpr, roc_auc_score(y, s)))
    if not curves:
        return None
    with mpl.rc_context(STYLE):
        fig = _figure(5.2, 4.2)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#999")
        for name, fpr, tpr, auc in sorted(curves, key=lambda c: -c[3]):
            ax.plot(fpr, tpr, lw=1.6, color=colour.get(name, "#888"),
                    label=f"{name} (AUC {auc:.3f})")
        ax.set_xlabel("false positive rate (1 − specificity)")
        ax.set_ylabel("true positive rate (recall)")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="lower right")
        ax.set_title("ROC curves, image-level classification")
    return fig


def fig_confusion(results: RunResults, order: Sequence[str]) -> Figure | None:
    """Image-level confusion matrices, one panel per finished row, in ``order``."""
    rows = [results.rows[n] for n in order if "classify" in results.rows[n].metrics]
    if not rows:
        return None
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(rows), 4, 2.6, 2.5)
        for ax, r in zip(axes, rows, strict=True):
            c = r.metrics["classify"].get("confusion", {})
            m = np.array([[c.get("tn", 0), c.get("fp", 0)], [c.get("fn", 0), c.get("tp", 0)]])
            share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for i in range(2):
                for j in range(2):
                    ax.text(j, i, f"{m[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                            color="white" if share[i, j] > 0.6 else "#222", fontsize=9)
            ax.set_xticks([0, 1], ["no tumour", "tumour"])
            ax.set_yticks([0, 1], ["no tumour", "tumour"])
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.grid(False)
            ax.set_title(r.name, fontsize=9)
    return fig


def fig_training(results: RunResults, colour: dict[str, str]) -> Figure | None:
    """Training curves from history.json: losses (left axis) and validation metric (right)."""
    rows = [r for r in results.rows.values() if r.history]
    if not rows:
        return None
    with mpl.rc_context(STYLE):
        fig, axes = _panels(len(rows), 3, 4.4, 3.3)
        for ax, r in zip(axes, rows, strict=True):
            h = pd.DataFrame(r.history)
            x = h["epoch"] if "epoch" in h else np.arange(1, len(h) + 1)
            handles = []
            for key, style in (("train_loss", "-"), ("val_loss", "--")):
                if key in h and h[key].notna().any():
                    handles += ax.plot(x, h[key], style, color="#333", lw=1.3,
                                       label=key.replace("_", " "))
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            if "val_metric" in h and h["val_metric"].notna().any():
                ax2 = ax.twinx()
                ax2.grid(False)
                ax2.spines["right"].set_visible(True)
                handles += ax2.plot(x, h["val_metric"], color=colour.get(r.name, "#1f77b4"),
                                    lw=1.6, label="val metric")
                ax2.set_ylabel("val metric", color=colour.get(r.name, "#1f77b4"))
                best = int(np.nanargmax(h["val_metric"].to_numpy(dtype=float)))
                ax2.plot(x.iloc[best] if hasattr(x, "iloc") else x[best],
                         h["val_metric"].iloc[best], "o", ms=4,
                         color=colour.get(r.name, "#1f77b4"))
            ax.set_title(r.name, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
                      handlelength=1.6, columnspacing=1.0)
    return fig


def _pick_slices(results: RunResults, rows: list[RowResult], ids: set[str],
                 n: int) -> list[tuple[str, float]]:
    """Slices spread over the leader's per-image Dice, worst to best.

    Slices with a tumour in the truth come first; slices with an empty truth (no per-image
    Dice under the "exclude" policy) fill the montage only when too few tumour slices exist.
    """
    leader = rows[0]
    dice = {c["id"]: c.get("dice") for c in leader.per_case if "tp" in c and c["id"] in ids}
    area = {c["id"]: c.get("gt_area", 1) for c in leader.per_case if c["id"] in dice}
    scored = sorted((d, i) for i, d in dice.items() if d is not None and area[i])
    rest = sorted(i for i, d in dice.items() if d is None or not area[i])
    picks: list[tuple[str, float]] = []
    if scored:
        at = np.unique(np.linspace(0, len(scored) - 1, min(n, len(scored))).round().astype(int))
        picks = [(scored[p][1], scored[p][0]) for p in at]
    return picks + [(i, float("nan")) for i in rest[: n - len(picks)]]


def fig_montage(results: RunResults, order: Sequence[str], colour: dict[str, str],
                n_slices: int = 5) -> Figure | None:
    """Test slices (columns) with the true contour and each segmenter's contour (rows).

    Slices are chosen across the leading segmenter's per-image Dice, worst to best, so the
    figure shows failures as well as successes. Needs ``test_images.npz`` at the run root.
    """
    images = results.test_images
    if not images or "images" not in images:
        return None
    index = {str(i): k for k, i in enumerate(images["ids"])}
    # only the montage's slices are unpacked, never a row's whole test set
    masks = {n: results.rows[n].predicted_masks(set(index)) for n in order}
    rows = [results.rows[n] for n in order if masks[n]]
    if not rows:
        return None
    picks = _pick_slices(results, rows, set(index), n_slices)
    if not picks:
        return None
    truth = images.get("masks")
    dice = {r.name: {c["id"]: c.get("dice") for c in r.per_case if "tp" in c} for r in rows}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(1.9 * len(picks) + 0.6, 1.95 * len(rows)), layout="constrained")
        axes = fig.subplots(len(rows), len(picks), squeeze=False)
        for j, (sid, _) in enumerate(picks):
            k = index[sid]
            img = np.asarray(images["images"][k], dtype=np.float32)
            for i, r in enumerate(rows):
                ax = axes[i, j]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
                if truth is not None and truth[k].any():
                    ax.contour(truth[k].astype(float), levels=[0.5], colors=TRUTH,
                               linewidths=1.4)
                pred = masks[r.name].get(sid)
                if pred is not None and pred.any():
                    ax.contour(pred.astype(float), levels=[0.5], colors=colour.get(r.name, "r"),
                               linewidths=1.1, linestyles="--")
                d = dice[r.name].get(sid)
                if d is not None:
                    note = f"Dice {d:.2f}"
                elif truth is not None and not truth[k].any():
                    n_px = 0 if pred is None else int(pred.sum())
                    note = "no tumour" + (f", {n_px} px predicted" if n_px else ", none found")
                else:
                    note = "Dice –"
                ax.text(0.03, 0.97, note,
                        transform=ax.transAxes, ha="left", va="top", fontsize=7.5,
                        color="white", bbox={"boxstyle": "round,pad=0.2", "fc": "black",
                                             "ec": "none", "alpha": 0.6})
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for side in ax.spines.values():
                    side.set_visible(False)
                if j == 0:
                    ax.set_ylabel(r.name, fontsize=8, color=colour.get(r.name, "#000"),
                                  fontweight="bold")
            axes[-1, j].set_xlabel(sid, fontsize=7)
    return fig


def as_dict(**figures: Any) -> dict[str, Figure]:
    """Keep the figures that exist."""
    return {k: v for k, v in figures.items() if v is not None}
