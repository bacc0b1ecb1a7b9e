"""Read a results folder back, and rank its methods per task.

The runner writes ``results/<run-id>/`` (``run.json`` and one folder per result row, see the
results-folder layout in the runner's docstring); :func:`load_results` reads it into a
:class:`RunResults`, which the report, ``bench check`` and the end-of-run table share.

:func:`ranked_table` ranks the rows that finished (``status == "done"``) by one metric and
adds rank groups (:mod:`mribench.eval.stats`): classifiers are compared with McNemar's test on the
per-image correctness, segmenters with the Wilcoxon signed-rank test on per-image Dice (IoU
when ranking by an IoU), both paired on the test images, Holm-adjusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.atomic import read_json
from mribench.eval.metrics import CLASSIFY_METRICS, SEGMENT_METRICS
from mribench.eval.stats import PairedTest, mcnemar, rank_groups, wilcoxon_signed_rank

__all__ = [
    "RowResult",
    "RunResults",
    "format_table",
    "load_results",
    "metric_names",
    "rank_metric",
    "ranked_table",
]

#: Per-image means of the segment task, named in tables as these metrics.
PER_IMAGE = {"mean_dice": "dice", "mean_iou": "iou"}
#: Metric names shown per task, in display order.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classify": CLASSIFY_METRICS,
    "segment": (*SEGMENT_METRICS, *PER_IMAGE),
}
LABELS = {"accuracy": "Accuracy", "f1": "F1", "iou": "IoU", "precision": "Precision",
          "recall": "Recall", "specificity": "Specificity", "auc": "AUC",
          "mean_dice": "Dice (per image)", "mean_iou": "IoU (per image)"}
SEGMENT_LABELS = {**LABELS, "f1": "Dice (pooled)", "iou": "IoU (pooled)"}


def rank_metric(task: str, rank_by: str, fallback: str = "f1") -> str:
    """``rank_by`` when it is a metric of ``task``, else ``fallback`` (e.g. auc -> f1 for
    segmentation, mean_dice -> f1 for classification)."""
    return rank_by if rank_by in metric_names(task) else fallback


def metric_names(task: str) -> tuple[str, ...]:
    """The metric names of a task's tables, in display order."""
    if task not in TASK_METRICS:
        raise MribenchError(f"unknown task {task!r}; tasks are {', '.join(TASK_METRICS)}")
    return TASK_METRICS[task]


def _read(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return read_json(path)
    except ValueError as err:
        raise MribenchError(f"{path} is not valid JSON ({err}); re-run the method") from err


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@dataclass
class RowResult:
    """One result row: a method, or a method's variant such as ``two-pathway-cnn+crf``."""

    name: str
    path: Path
    status: str
    reason: str | None = None
    method: str = ""
    variant: str | None = None
    kind: str = ""
    tasks: list[str] = field(default_factory=list)
    reference: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    #: The ``"tasks"`` dict of metrics.json ({} when absent).
    metrics: dict[str, Any] = field(default_factory=dict)
    per_case: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def load(cls, path: Path) -> RowResult:
        path = Path(path)
        status = _read(path / "status.json", None)
        if status is None:
            status = {"status": "incomplete",
                      "reason": "no status.json: the run stopped before this row finished"}
        metrics = _read(path / "metrics.json", {})
        return cls(
            name=path.name,
            path=path,
            status=str(status.get("status", "incomplete")),
            reason=status.get("reason"),
            method=status.get("method") or path.name.split("+")[0],
            variant=status.get("variant"),
            kind=status.get("kind") or "",
            tasks=list(status.get("tasks") or metrics.get("tasks", {}).keys()),
            reference=status.get("reference") or "",
            params=status.get("params") or {},
            timings=status.get("timings") or {},
            metrics=metrics.get("tasks", {}),
            per_case=_read(path / "per_case.json", []),
            history=_read(path / "history.json", []),
        )

    def metric(self, task: str, name: str) -> dict[str, float]:
        """``{"value", "ci_low", "ci_high"}`` of a metric (NaN entries when absent)."""
        nan = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        block = self.metrics.get(task)
        if not block:
            return nan
        if name in PER_IMAGE:
            entry = block.get("per_image", {}).get(PER_IMAGE[name])
        else:
            entry = block.get("metrics", {}).get(name)
        if not entry:
            return nan
        return {k: np.nan if entry.get(k) is None else float(entry[k]) for k in nan}

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        """The arrays of predictions.npz ({} when absent)."""
        return _read_npz(self.path / "predictions.npz")

    def predicted_masks(self) -> dict[str, np.ndarray]:
        """Predicted masks by sample id.

        ``predictions.npz`` holds ``masks`` (bit-packed along the last axis when
        ``mask_shape`` is saved, as the runner does); their ids are ``mask_ids`` when saved,
        else ``ids`` when the counts match, else the ids of the per-case records scored in
        ``segment``, in order.
        """
        p = self.predictions
        masks = p.get("masks")
        if masks is not None and "mask_shape" in p:  # bit-packed along the last axis
            shape = tuple(int(s) for s in p["mask_shape"])
            masks = np.unpackbits(masks, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
        if masks is None or masks.ndim != 3:
            return {}
        if "mask_ids" in p:
            ids = [str(i) for i in p["mask_ids"]]
        elif "ids" in p and len(p["ids"]) == len(masks):
            ids = [str(i) for i in p["ids"]]
        else:
            ids = [r["id"] for r in self.per_case if "tp" in r]
        if len(ids) != len(masks):
            return {}
        return dict(zip(ids, masks, strict=True))


@dataclass
class RunResults:
    """A results folder: ``run.json`` plus its rows, in the run's order."""

    path: Path
    run: dict[str, Any]
    rows: dict[str, RowResult]

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id") or self.path.name)

    def done(self, task: str | None = None) -> list[RowResult]:
        """Rows that finished, optionally only those with metrics for ``task``."""
        return [r for r in self.rows.values()
                if r.done and (task is None or task in r.metrics)]

    def not_done(self) -> list[RowResult]:
        """Rows that failed, were skipped, or never finished."""
        return [r for r in self.rows.values() if not r.done]

    def tasks(self) -> list[str]:
        """Tasks with at least one finished row, in canonical order."""
        present = {t for r in self.done() for t in r.metrics}
        return [t for t in TASK_METRICS if t in present]

    @cached_property
    def test_images(self) -> dict[str, np.ndarray]:
        """``test_images.npz`` of the run root (ids, images, optionally masks); {} if absent."""
        return _read_npz(self.path / "test_images.npz")

    def frame(self) -> pd.DataFrame:
        """One row per result row x task x metric, with value, CI, status and n.

        Columns: ``row, method, variant, kind, status, task, metric, value, ci_low, ci_high,
        n``. Rows that did not finish appear once with task and metric None.
        """
        records = []
        for r in self.rows.values():
            base = {"row": r.name, "method": r.method, "variant": r.variant, "kind": r.kind,
                    "status": r.status}
            if not r.done or not r.metrics:
                records.append({**base, "task": None, "metric": None, "value": np.nan,
                                "ci_low": np.nan, "ci_high": np.nan, "n": 0})
                continue
            for task in TASK_METRICS:
                if task not in r.metrics:
                    continue
                n = int(r.metrics[task].get("n", 0))
                for name in TASK_METRICS[task]:
                    records.append({**base, "task": task, "metric": name,
                                    **r.metric(task, name), "n": n})
        return pd.DataFrame.from_records(
            records, columns=["row", "method", "variant", "kind", "status", "task", "metric",
                              "value", "ci_low", "ci_high", "n"])


def load_results(path: str | Path) -> RunResults:
    """Read a results folder written by the runner.

    Raises
    ------
    MribenchError
        When ``path`` is not a folder holding ``run.json``.
    """
    path = Path(path)
    run_file = path / "run.json"
    if not run_file.is_file():
        raise MribenchError(f"{path} is not a results folder (no run.json); pass the folder "
                            "that `bench run` wrote, e.g. results/<run-id>")
    run = _read(run_file, {})
    names = [str(n) for n in run.get("methods", [])]
    extra = sorted(p.name for p in path.iterdir()
                   if p.is_dir() and (p / "status.json").is_file() and p.name not in names)
    rows = {}
    for name in [*names, *extra]:
        rows[name] = RowResult.load(path / name)
    return RunResults(path=path, run=run, rows=rows)


# --------------------------------------------------------------------------- ranking


def _paired(a: RowResult, b: RowResult, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-case values of ``key`` of two rows, on their common ids."""
    va = {r["id"]: r for r in a.per_case if key in r}
    vb = {r["id"]: r for r in b.per_case if key in r}
    common = [i for i in va if i in vb]

    def value(rec: dict[str, Any]) -> float:
        v = rec.get(key)
        return np.nan if v is None else float(v)

    return (np.array([value(va[i]) for i in common]),
            np.array([value(vb[i]) for i in common]))


def _correct(a: RowResult, b: RowResult) -> tuple[np.ndarray, np.ndarray]:
    ra = {r["id"]: r for r in a.per_case if r.get("label") in (0, 1)}
    rb = {r["id"]: r for r in b.per_case if r.get("label") in (0, 1)}
    common = [i for i in ra if i in rb]
    return (np.array([ra[i]["pred"] == ra[i]["label"] for i in common], dtype=bool),
            np.array([rb[i]["pred"] == rb[i]["label"] for i in common], dtype=bool))


def _comparison(results: RunResults, task: str, rank_by: str):
    rows = results.rows
    if task == "classify":
        def compare(x: str, y: str) -> PairedTest:
            return mcnemar(*_correct(rows[x], rows[y]))
        return compare, "McNemar (exact binomial below 25 discordant images)"
    key = "iou" if rank_by in ("iou", "mean_iou") else "dice"

    def compare_seg(x: str, y: str) -> PairedTest:
        return wilcoxon_signed_rank(*_paired(rows[x], rows[y], key))
    return compare_seg, f"Wilcoxon signed-rank on per-image {'IoU' if key == 'iou' else 'Dice'}"


def ranked_table(results: RunResults, task: str, rank_by: str = "f1", *,
                 alpha: float = 0.05) -> pd.DataFrame:
    """The finished rows of ``task`` ranked by ``rank_by``, best first, with rank groups.

    Parameters
    ----------
    results : RunResults
    task : {"classify", "segment"}
    rank_by : str, default="f1"
        A metric of the task (:func:`metric_names`); higher is better. Ties share the lower
        rank; rows whose metric is NaN come last.
    alpha : float, default=0.05
        Significance level of the rank groups (Holm-adjusted paired tests vs each leader).

    Returns
    -------
    pandas.DataFrame
        Columns ``rank, group, p_vs_leader, method, kind, n``, then for each metric ``m``
        of the task the columns ``m``, ``m_low``, ``m_high``, then ``fit_s``,
        ``predict_ms``. ``df.attrs`` holds ``task``, ``rank_by``, ``test`` and ``alpha``.
    """
    names = metric_names(task)
    if rank_by not in names:
        raise MribenchError(f"cannot rank {task} by {rank_by!r}; choose one of "
                            f"{', '.join(names)}")
    records = []
    for r in results.done(task):
        rec: dict[str, Any] = {"method": r.name, "kind": r.kind,
                               "n": int(r.metrics[task].get("n", 0))}
        for name in names:
            m = r.metric(task, name)
            rec[name], rec[f"{name}_low"], rec[f"{name}_high"] = (
                m["value"], m["ci_low"], m["ci_high"])
        rec["fit_s"] = _number(r.timings.get("fit_s"))
        rec["predict_ms"] = _number(r.timings.get("predict_ms_per_image"))
        records.append(rec)
    metric_cols = [c for n in names for c in (n, f"{n}_low", f"{n}_high")]
    columns = ["rank", "group", "p_vs_leader", "method", "kind", "n", *metric_cols,
               "fit_s", "predict_ms"]
    compare, test = _comparison(results, task, rank_by)
    df = pd.DataFrame.from_records(records, columns=[c for c in columns
                                                     if c not in ("rank", "group",
                                                                  "p_vs_leader")])
    if not df.empty:
        df = df.sort_values(rank_by, ascending=False, na_position="last", kind="stable")
        df = df.reset_index(drop=True)
        ranks = df[rank_by].rank(method="min", ascending=False)
        df.insert(0, "rank", ranks.fillna(len(df)).astype(int))
        groups, p_values = rank_groups(list(df["method"]), compare, alpha=alpha)
        df.insert(1, "group", df["method"].map(groups).astype(int))
        df.insert(2, "p_vs_leader", df["method"].map(p_values).astype(float))
    else:
        df = pd.DataFrame(columns=columns)
    df.attrs.update(task=task, rank_by=rank_by, test=test, alpha=alpha)
    return df


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: float, low: float, high: float, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def format_table(df: pd.DataFrame, fmt: str = "github", *, metrics: tuple[str, ...] | None = None,
                 ci: bool = True) -> str:
    """A ranked table as text: ``0.912 [0.880, 0.940]`` per metric (value [95% CI]).

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`ranked_table`.
    fmt : str, default="github"
        A tabulate format: "github" (Markdown), "simple" (terminal), "html", ...
    metrics : tuple of str, optional
        Metric columns to show (default: all of the task's).
    ci : bool, default=True
        Whether to print the confidence intervals beside the values.
    """
    from tabulate import tabulate

    task = df.attrs.get("task", "classify")
    names = metrics or metric_names(task)
    labels = SEGMENT_LABELS if task == "segment" else LABELS
    rank_by = df.attrs.get("rank_by")
    headers = ["Rank", "Group", "Method", "n"]
    headers += [labels.get(n, n) + (" ▼" if n == rank_by else "") for n in names]
    headers += ["Fit (s)", "ms/image"]
    rows = []
    for _, r in df.iterrows():
        cells = [int(r["rank"]), int(r["group"]), r["method"], int(r["n"])]
        for n in names:
            low, high = (r[f"{n}_low"], r[f"{n}_high"]) if ci else (np.nan, np.nan)
            cells.append(_fmt(r[n], low, high))
        cells.append("–" if not np.isfinite(r["fit_s"]) else f"{r['fit_s']:.1f}")
        cells.append("–" if not np.isfinite(r["predict_ms"]) else f"{r['predict_ms']:.1f}")
        rows.append(cells)
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
