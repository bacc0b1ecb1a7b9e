"""The one reader of the results folder (:mod:`mribench.results.write` is the one writer).

:func:`load_results` reads ``results/<run-id>/`` into a :class:`RunResults` (one
:class:`RowResult` per row, over every seed), which the ranked tables, the report, ``bench
check`` and ``bench status`` share. :meth:`RunResults.on` gives the same view of an external
evaluation set (``--test-on``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mribench.api.errors import MribenchError
from mribench.atomic import read_json
from mribench.eval import registry
from mribench.eval.registry import TASKS, metric_names, rank_metric
from mribench.eval.stats import align_cases, case_groups
from mribench.results.layout import (
    IN_DISTRIBUTION,
    METRICS_FILE,
    PER_CASE_FILE,
    PREDICTIONS_FILE,
    STATUS_FILE,
    JobKey,
    RunLayout,
    corrupted_set,
    is_row_name,
    job_of,
    parse_corrupted_set,
    seed_folders,
)

__all__ = ["RowResult", "RunResults", "job_status", "load_results", "metric_names",
           "rank_metric", "read_predictions", "row_test_images", "seed_folders"]
# metric_names and rank_metric are the registry's (mribench.eval.registry), kept importable
# from here for the readers of results.


#: Key of a (fold, seed) job among the "seeds" of a cross-validated row: fold * this + seed.
_FOLD_KEY = 1_000_000


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


def job_status(folder: Path) -> tuple[str, str | None]:
    """A job folder's ``(status, reason)``: status.json's ``done``/``failed``/``skipped``;
    ``started`` when the folder holds no status.json yet (running, or stopped mid-way);
    ``not started`` when there is no folder."""
    folder = Path(folder)
    status = _read(folder / STATUS_FILE, None)
    if isinstance(status, dict) and status.get("status"):
        reason = status.get("reason")
        return str(status["status"]), None if reason is None else str(reason)
    return ("started", None) if folder.is_dir() else ("not started", None)


@dataclass
class RowResult:
    """One result row on one evaluation set: a method, or a variant such as
    ``two-pathway-cnn+crf``, over every seed it was trained with.

    With one seed, ``metrics`` are that seed's (value and 95 % bootstrap interval over the
    test images' clusters: patients, near-duplicate groups). With several, each metric's
    ``value`` is the mean over seeds, ``sd`` its spread over seeds, and the interval is a
    two-level bootstrap over clusters and seeds with the run's ``n_boot`` replicates
    (:func:`mribench.results.aggregate.aggregate_seeds`). ``per_seed`` keeps every seed's
    per-case records for the paired tests; ``per_case`` is the first seed's. A metric
    undefined on the population (no tumour in it, say) is NaN, with its reason in the block's
    entry (``"undefined"``).
    """

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
    #: Per-case records of every seed, by seed.
    per_seed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: Metrics of every seed, by seed (the ``"tasks"`` dict of each seed's metrics.json).
    seed_metrics: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: The evaluation set these scores are on ("test": the run's own test part).
    eval_set: str = "test"
    #: Whether a training budget in wall-clock time (``max_minutes``) was set.
    time_capped: bool = False
    #: Folder of the first seed's scores (predictions.npz lives there).
    scores_path: Path | None = None
    #: Cross-validated rows: each fold's own row (its seeds combined), by fold.
    folds: dict[int, RowResult] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def seeds(self) -> list[int]:
        return list(self.seed_metrics)

    @classmethod
    def load(cls, path: Path, eval_set: str = "test", *, n_boot: int = 1000) -> RowResult:
        """Read a row folder over its seeds (and folds, :mod:`mribench.results.folds`);
        ``n_boot``: replicates of the intervals computed here (the run's ``--n-boot``)."""
        path = Path(path)
        layout = RunLayout(path.parent)
        keys = layout.jobs_of(path.name)
        if not keys:
            return cls(name=path.name, path=path, status="incomplete",
                       reason="no job folder: the run stopped before this row started",
                       eval_set=eval_set)
        parts = {key: cls._load_one(layout, key, eval_set) for key in keys}
        folds = sorted({k.fold for k in keys if k.fold is not None})
        if not folds:
            return cls._combine(path, {k.seed: p for k, p in parts.items()}, eval_set, n_boot)
        return cls._combine_folds(path, parts, folds, eval_set, n_boot)

    @classmethod
    def _combine_folds(cls, path: Path, parts: dict[JobKey, RowResult], folds: list[int],
                       eval_set: str, n_boot: int) -> RowResult:
        """A cross-validated row: pooled out of fold on its own data set, folds combined like
        seeds on an external one; the spread over folds beside every metric."""
        from mribench.results.folds import pool_out_of_fold, with_fold_spread

        per_fold = {f: cls._combine(path, {k.seed: p for k, p in parts.items() if k.fold == f},
                                    eval_set, n_boot) for f in folds}
        corrupted = parse_corrupted_set(eval_set)  # a corrupted test part is pooled too
        own = (corrupted[0] if corrupted else eval_set) == IN_DISTRIBUTION
        row = cls._combine(path, {k.fold * _FOLD_KEY + k.seed: p for k, p in parts.items()},
                           eval_set, n_boot, aggregate=not own)
        if not row.done:
            return row
        if own:
            seeds = sorted(set.intersection(*(set(per_fold[f].per_seed) for f in folds)))
            row.per_seed = {s: [r for f in folds for r in per_fold[f].per_seed[s]]
                            for s in seeds}
            row.metrics = pool_out_of_fold(
                {f: per_fold[f].per_seed for f in folds}, per_fold[folds[0]].metrics,
                n_boot=n_boot)
            row.seed_metrics = {s: row.metrics for s in seeds}
            row.per_case = row.per_seed[seeds[0]] if seeds else []
        row.metrics = with_fold_spread(row.metrics, {f: per_fold[f].metrics for f in folds})
        row.folds = per_fold
        return row

    @classmethod
    def _combine(cls, path: Path, parts: dict[int, RowResult], eval_set: str, n_boot: int,
                 *, aggregate: bool = True) -> RowResult:
        """One row from its jobs (by seed): status, aggregated metrics, timings."""
        first = next(iter(parts.values()))
        statuses = [p.status for p in parts.values()]
        status = ("done" if all(s == "done" for s in statuses) else
                  "failed" if "failed" in statuses else
                  "skipped" if all(s == "skipped" for s in statuses) else "incomplete")
        reason = next((p.reason for p in parts.values() if p.status == status and p.reason),
                      None)
        if status == "incomplete" and reason is None:
            missing = [s for s, p in parts.items() if p.status != "done"]
            reason = f"seeds {missing} did not finish"
        done = {s: p for s, p in parts.items() if p.done}
        if aggregate and done and any(p.per_case for p in done.values()):
            # intervals are recomputed here from the per-case records (their clusters), so
            # every run is read with the same statistics, whenever it was scored
            from mribench.results.aggregate import aggregate_seeds

            metrics = aggregate_seeds({s: p.metrics for s, p in done.items()},
                                      {s: p.per_case for s, p in done.items()}, n_boot=n_boot)
        else:
            metrics = first.metrics
        timings = {}
        for key in ("fit_s", "predict_s", "predict_ms_per_image", "corrupt_s"):
            values = [float(p.timings[key]) for p in done.values()
                      if isinstance(p.timings.get(key), int | float)]
            if values:
                timings[key] = float(np.mean(values))
        return cls(
            name=path.name, path=path, status=status, reason=reason, method=first.method,
            variant=first.variant, kind=first.kind, tasks=first.tasks,
            reference=first.reference, params=first.params, timings=timings,
            metrics=metrics, per_case=first.per_case, history=first.history,
            per_seed={s: p.per_case for s, p in done.items()},
            seed_metrics={s: p.metrics for s, p in done.items()}, eval_set=eval_set,
            time_capped=any(p.time_capped for p in parts.values()),
            scores_path=first.scores_path)

    @classmethod
    def _load_one(cls, layout: RunLayout, key: JobKey, eval_set: str) -> RowResult:
        folder, scores, name = layout.job_dir(key), layout.scores_dir(key, eval_set), key.row
        status = _read(layout.status_file(key), None)
        if not isinstance(status, dict):
            status = {"status": "incomplete",
                      "reason": "no status.json: the run stopped before this row finished"}
        state = str(status.get("status", "incomplete"))
        reason = status.get("reason")
        if state == "done" and eval_set != "test":
            said = (status.get("eval_sets") or {}).get(eval_set)
            if said and said != "done":
                state, reason = "skipped", str(said)
            elif not (scores / METRICS_FILE).is_file():
                state, reason = "incomplete", f"no scores on {eval_set}"
        metrics = _read(scores / METRICS_FILE, {})
        metrics = metrics if isinstance(metrics, dict) else {}
        tasks_block = metrics.get("tasks", {}) if isinstance(metrics.get("tasks"), dict) else {}
        seed = status.get("seed")
        per_case = _read(scores / PER_CASE_FILE, [])
        return cls(
            name=name,
            path=folder,
            status=state,
            reason=reason,
            method=status.get("method") or name.split("+")[0],
            variant=status.get("variant"),
            kind=status.get("kind") or "",
            tasks=list(status.get("tasks") or tasks_block.keys()),
            reference=status.get("reference") or "",
            params=status.get("params") or {},
            timings=status.get("timings") or {},
            metrics=tasks_block,
            per_case=per_case if isinstance(per_case, list) else [],
            history=_read(layout.history_file(key), []),
            per_seed={int(seed) if isinstance(seed, int) else 0: per_case}
            if state == "done" else {},
            seed_metrics={int(seed) if isinstance(seed, int) else 0: tasks_block}
            if state == "done" else {},
            eval_set=eval_set,
            time_capped=bool(status.get("time_capped")),
            scores_path=scores,
        )

    def metric(self, task: str, name: str, view: str = "all") -> dict[str, float]:
        """``{"value", "ci_low", "ci_high", "sd"}`` of a metric (NaN entries when absent;
        ``sd`` is the spread over seeds, NaN with one seed). ``view`` (segment only):
        ``"all"`` slices with a known mask, or ``"tumour_only"`` annotated tumour slices."""
        nan = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "sd": np.nan}
        block = self.block(task, view)
        if not block:
            return nan
        metric = registry.get_metric(name) if name in registry.metric_names() else None
        if metric is not None and metric.aggregate == "per_image":
            entry = block.get("per_image", {}).get(metric.key)
        else:
            entry = block.get("metrics", {}).get(name)
        if not entry or self.undefined(task, name, view):
            return nan
        return {k: np.nan if entry.get(k) is None else float(entry[k]) for k in nan}

    def metric_entry(self, task: str, name: str, view: str = "all") -> dict[str, Any]:
        """The raw entry of a metric in this row's block ({} when absent): value, interval,
        seeds and, for a cross-validated row, ``fold_values``, ``fold_mean``, ``fold_sd``."""
        block = self.block(task, view)
        metric = registry.get_metric(name) if name in registry.metric_names() else None
        if metric is not None and metric.aggregate == "per_image":
            return dict(block.get("per_image", {}).get(metric.key) or {})
        return dict(block.get("metrics", {}).get(name) or {})

    def undefined(self, task: str, name: str, view: str = "all") -> str | None:
        """Why metric ``name`` has no value on this row's population (None when it has one or
        none is known): the entry's ``"undefined"``, or, for results written before it was
        recorded, the reason the block's pooled ``confusion`` gives (F1 with no tumour)."""
        block = self.block(task, view)
        if not block or name not in registry.metric_names(task):
            return None
        metric = registry.get_metric(name)
        section = "per_image" if metric.aggregate == "per_image" else "metrics"
        entry = (block.get(section) or {}).get(metric.key if section == "per_image" else name)
        if isinstance(entry, dict) and entry.get("undefined"):
            return str(entry["undefined"])
        confusion = block.get("confusion")
        if section == "per_image" or not isinstance(confusion, dict) or not block.get("n"):
            return None
        counts = [float(confusion.get(k, 0) or 0) for k in ("tp", "fp", "tn", "fn")]
        return metric.undefined_reason(task, *counts)

    def n_clusters(self, task: str, view: str = "all") -> int:
        """The clusters (patients, near-duplicate groups) among the images scored in ``task``
        and ``view``: the block's ``n_clusters``, else counted from the first seed's per-case
        records (``"group"``, the id where absent)."""
        value = self.block(task, view).get("n_clusters")
        if isinstance(value, int | float) and np.isfinite(value):
            return int(value)
        ids, (seeds,) = align_cases([self.per_case], task, view)
        return len(set(case_groups(seeds[0]))) if ids else 0

    def block(self, task: str, view: str = "all") -> dict[str, Any]:
        """The metrics block of a task in a view ({} when absent)."""
        block = self.metrics.get(task) or {}
        if view != "all":
            block = block.get(view) or {}
        return block if isinstance(block, dict) else {}

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        """The arrays of predictions.npz ({} when absent)."""
        return _read_npz((self.scores_path or self.path) / PREDICTIONS_FILE)

    def predicted_masks(self, ids: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Predicted masks by sample id; with ``ids``, only those samples' (the others stay
        bit-packed: the report's montage unpacks its few slices, not the test set).

        ``predictions.npz`` holds ``masks`` (bit-packed along the last axis when
        ``mask_shape`` is saved, as the runner does); their ids are ``mask_ids`` when saved,
        else ``ids`` when the counts match, else the ids of the per-case records scored in
        ``segment``, in order.
        """
        p = self.predictions
        masks = p.get("masks")
        packed = masks is not None and "mask_shape" in p
        shape = tuple(int(s) for s in p["mask_shape"]) if packed else np.shape(masks)
        if masks is None or len(shape) != 3:
            return {}
        if "mask_ids" in p:
            names = [str(i) for i in p["mask_ids"]]
        elif "ids" in p and len(p["ids"]) == shape[0]:
            names = [str(i) for i in p["ids"]]
        else:
            names = [r["id"] for r in self.per_case if "tp" in r]
        if len(names) != shape[0]:
            return {}
        rows = [k for k, name in enumerate(names) if ids is None or name in ids]
        chosen = _unpack_masks({"masks": masks[rows],
                                "mask_shape": np.array((len(rows), *shape[1:]))}) if packed \
            else masks[rows]
        return {names[k]: m for k, m in zip(rows, chosen, strict=True)}


@dataclass
class RunResults:
    """A results folder: ``run.json`` plus its rows, in the run's order."""

    path: Path
    run: dict[str, Any]
    rows: dict[str, RowResult]
    #: The evaluation set of these rows' scores ("test": the run's own test part).
    eval_set: str = "test"
    #: The data set these rows were trained on, in a run of several (None: its only one).
    dataset: str | None = None
    #: Views on other evaluation sets read so far (:meth:`on`), by name: each is read once.
    _views: dict[str, RunResults] = field(default_factory=dict, repr=False, compare=False)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.path, self.dataset)

    @property
    def datasets(self) -> list[str]:
        """The data sets of a run of several (``--dataset a,b``), by name; [] for one."""
        return [str(d["name"]) for d in self.run.get("datasets") or []
                if isinstance(d, dict) and isinstance(d.get("name"), str)]

    def of(self, dataset: str) -> RunResults:
        """The rows trained on ``dataset`` (a run of several)."""
        if dataset == self.dataset:
            return self
        return load_results(self.path, dataset=dataset)

    @property
    def dataset_name(self) -> str:
        """What tables call the data set these rows were trained on."""
        return self.dataset or str((self.run.get("dataset") or {}).get("name") or "test")

    @property
    def eval_sets(self) -> list[str]:
        """External evaluation sets of these rows (the run's other data sets, ``--test-on``),
        by name."""
        record = next((d for d in self.run.get("datasets") or [] if isinstance(d, dict)
                       and d.get("name") == self.dataset), None) if self.dataset else None
        sets = (record or {}).get("eval_sets") if record else self.run.get("eval_sets")
        return [str(e["name"]) for e in sets or [] if isinstance(e, dict) and "name" in e]

    @property
    def artefacts(self) -> dict[str, Any]:
        """The artefact axis of the run (``--corrupt``): ``{"corrupt": [...], "severities":
        [...], "reference": row or None}``; {} for a run without it."""
        record = self.run.get("artefacts")
        if not isinstance(record, dict) or not record.get("corrupt"):
            return {}
        return {"corrupt": [str(a) for a in record.get("corrupt") or []],
                "severities": [int(s) for s in record.get("severities") or []],
                "reference": record.get("reference")}

    def corrupted_sets(self, base: str = IN_DISTRIBUTION) -> dict[tuple[str, int], str]:
        """The corrupted copies of evaluation set ``base``: (artefact, severity) -> the set's
        name (:func:`mribench.results.layout.corrupted_set`); {} without the axis."""
        axis = self.artefacts
        return {(a, s): corrupted_set(base, a, s) for a in axis.get("corrupt", [])
                for s in axis.get("severities", [])}

    def on(self, eval_set: str) -> RunResults:
        """The same rows scored on another evaluation set (a corrupted one included)."""
        if eval_set == self.eval_set:
            return self
        corrupted = {n for base in ["test", *self.eval_sets]
                     for n in self.corrupted_sets(base).values()}
        if eval_set != "test" and eval_set not in self.eval_sets and eval_set not in corrupted:
            raise MribenchError(f"{self.path} has no evaluation set {eval_set!r}; it has "
                                f"{', '.join(['test', *self.eval_sets])}")
        layout = self.layout
        if eval_set not in self._views:
            rows = {name: RowResult.load(layout.row_dir(name), eval_set, n_boot=self.n_boot)
                    for name in self.rows}
            self._views[eval_set] = RunResults(path=self.path, run=self.run, rows=rows,
                                               eval_set=eval_set, dataset=self.dataset)
        return self._views[eval_set]

    @property
    def n_boot(self) -> int:
        """Bootstrap replicates of the intervals computed at read time (seed-aggregated rows,
        transfer drops, rank correlations): the run's ``--n-boot`` (run.json's
        ``identity.n_boot``), 1000 when absent."""
        value = (self.run.get("identity") or {}).get("n_boot", self.run.get("n_boot"))
        try:
            return max(int(value), 0) if value is not None else 1000
        except (TypeError, ValueError):
            return 1000

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id") or self.path.name)

    def done(self, task: str | None = None, view: str = "all") -> list[RowResult]:
        """Rows that finished, optionally only those with metrics for ``task`` (in ``view``)."""
        return [r for r in self.rows.values()
                if r.done and (task is None or r.block(task, view))]

    def not_done(self) -> list[RowResult]:
        """Rows that failed, were skipped, or never finished."""
        return [r for r in self.rows.values() if not r.done]

    def tasks(self) -> list[str]:
        """Tasks with at least one finished row, in canonical order."""
        present = {t for r in self.done() for t in r.metrics}
        return [t for t in TASKS if t in present]

    @cached_property
    def test_images(self) -> dict[str, np.ndarray]:
        """``test_images.npz`` of the run root (ids, images, optionally masks); {} if absent."""
        return _read_npz(self.layout.test_images_file)

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
            for task in TASKS:
                if task not in r.metrics:
                    continue
                n = int(r.metrics[task].get("n", 0))
                for name in metric_names(task):
                    records.append({**base, "task": task, "metric": name,
                                    **r.metric(task, name), "n": n})
        return pd.DataFrame.from_records(
            records, columns=["row", "method", "variant", "kind", "status", "task", "metric",
                              "value", "ci_low", "ci_high", "n"])


def run_rows(run: dict[str, Any]) -> list[str]:
    """The rows ``run.json`` lists under ``methods``: a list of names, or one name or a comma
    list as text (a hand-edited record: never its characters one by one)."""
    listed = run.get("methods")
    if isinstance(listed, str):
        listed = [part.strip() for part in listed.split(",")]
    if not isinstance(listed, list):
        return []
    return [str(n) for n in listed if isinstance(n, str) and n.strip()]


def load_results(path: str | Path, dataset: str | None = None) -> RunResults:
    """Read a results folder written by the runner (in a run of several data sets, the rows
    trained on ``dataset``, by default the first; see :attr:`RunResults.datasets`).

    Raises
    ------
    MribenchError
        When ``path`` is not a folder holding ``run.json``, or has no data set ``dataset``.
    """
    layout = RunLayout(Path(path))
    run_file = layout.run_file
    if not run_file.is_file():
        raise MribenchError(f"{layout.root} is not a results folder (no run.json); pass the "
                            "folder that `bench run` wrote, e.g. results/<run-id>")
    run = _read(run_file, {})
    if not isinstance(run, dict):
        raise MribenchError(f"{run_file} is not a run record (a JSON object); pass a folder "
                            "that `bench run` wrote")
    shell = RunResults(path=layout.root, run=run, rows={})
    if shell.datasets:
        dataset = dataset or shell.datasets[0]
        if dataset not in shell.datasets:
            raise MribenchError(f"{layout.root} has no data set {dataset!r}; it has "
                                f"{', '.join(shell.datasets)}")
        layout = layout.for_dataset(dataset)
    elif dataset is not None:
        raise MribenchError(f"{layout.root} holds one data set; drop the data-set name")
    names = [n for n in run_rows(run) if is_row_name(n)]
    extra = [n for n in layout.row_names() if n not in names]
    rows = {name: RowResult.load(layout.row_dir(name), n_boot=shell.n_boot)
            for name in [*names, *extra]}
    return RunResults(path=layout.root, run=run, rows=rows, dataset=layout.dataset)


def read_predictions(folder: Path) -> tuple[list[str], np.ndarray | None]:
    """A scores folder's ``predictions.npz`` back: ids and the unpacked boolean masks (or
    None)."""
    folder = Path(folder)
    arrays = _read_npz(folder if folder.suffix == ".npz" else folder / PREDICTIONS_FILE)
    return [str(i) for i in arrays.get("ids", [])], _unpack_masks(arrays)


def _unpack_masks(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The masks of predictions.npz, unpacked when bit-packed (``mask_shape`` saved)."""
    masks = arrays.get("masks")
    if masks is not None and "mask_shape" in arrays:  # bit-packed along the last axis
        shape = tuple(int(s) for s in arrays["mask_shape"])
        masks = np.unpackbits(masks, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return masks


def find_model(path: Path | str) -> Any:
    """The saved model behind ``path`` as a :class:`mribench.model.predict.ModelRef`: a model
    folder itself, a job folder (``<run>/<row>/seed-<s>``), or a row folder (its first seed's
    job). A variant row (``two-pathway-cnn+crf``) has no model of its own: it points to its
    base job's model, with the variant to apply."""
    from mribench.model.engines import SPEC_FILE, ModelRef, resolve_model_dir
    from mribench.model.state import ModelError

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such folder; pass results/<run>/<row> or its model/ folder")
    if (path / "info.json").is_file():
        return ModelRef(path)
    if (path / SPEC_FILE).is_file():  # a bench export folder: says which --engine runs it
        resolve_model_dir(path)
    seeds = seed_folders(path)
    if seeds:  # a row folder: the first seed's job
        path = next(iter(seeds.values()))
    where = job_of(path)
    status = _read(path / STATUS_FILE, {}) if where else {}
    status = status if isinstance(status, dict) else {}
    row = where[1].row if where else path.name
    variant = status.get("variant") or (row.split("+", 1)[1] if "+" in row else None)
    model = where[0].model_dir(where[1]) if where else path / "model"
    if (model / "info.json").is_file():
        return ModelRef(model, variant)
    if variant and where:
        layout, key = where
        base_key = JobKey(row.split("+", 1)[0], key.seed)
        if isinstance(status.get("job"), str) and "/" in status["job"]:
            base_key = JobKey(status["job"].split("/", 1)[0], key.seed)
        base_model = layout.model_dir(base_key)
        if (base_model / "info.json").is_file():
            return ModelRef(base_model, variant)
        raise ModelError(f"{path}: variant row {row!r} has no model; its base row "
                         f"{layout.row_dir(base_key.row)} holds none either (re-run "
                         f"{base_key.row} to save one)")
    raise ModelError(f"{path}: no saved model (no model/info.json); re-run the method with a "
                     "mribench that saves models, or pass a model folder")


def row_test_images(path: Path | str) -> tuple[list[Any], str]:
    """The run's test slices (``test_images.npz``, the report's montage) behind ``path`` (a
    row, job or model folder of a results folder) as samples, and a line saying where they
    come from; ``([], "")`` when ``path`` is in no run or its run kept none. ``bench export``
    verifies the exported graph on them."""
    from mribench.api.types import UNLABELLED, Sample

    path = Path(path)
    seeds = seed_folders(path) if path.is_dir() else {}
    candidates = [next(iter(seeds.values()))] if seeds else [path, path.parent]
    for folder in candidates:
        where = job_of(folder)
        if where is None:
            continue
        npz = where[0].test_images_file
        try:
            data = _read_npz(npz)
        except (OSError, ValueError) as exc:
            raise MribenchError(f"{npz}: cannot be read ({type(exc).__name__}); pass "
                                "--synthetic to verify on synthetic slices") from None
        if "images" not in data or not len(data["images"]):
            return [], ""
        ids = [str(i) for i in data.get("ids", range(len(data["images"])))]
        samples = [Sample(id=i, group=i, label=UNLABELLED, image=np.asarray(im, np.float32))
                   for i, im in zip(ids, data["images"], strict=False)]
        return samples, f"test slices of the run ({npz})"
    return [], ""
