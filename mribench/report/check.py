"""Regression check of a results folder against a metric baseline (``bench check``).

A baseline is a JSON file, usually ``benchmarks/baselines/<suite>.json``, written by
:func:`make_baseline` from a run that is known to be good::

    {
      "format": 1,
      "created_from": {"run_id": ..., "dataset": "synthetic", "profile": "quick", ...},
      "tolerance": 0.02,                      # default allowed drop, absolute
      "tolerances": {"auc": 0.05},            # optional, per metric name
      "methods": {
        "glcm-svm": {"classify": {"accuracy": 0.93, "f1": 0.92, ...}},
        "unet":     {"segment": {"f1": {"value": 0.81, "tolerance": 0.04}, ...}, ...}
      }
    }

A metric regresses when its value in the results is below ``baseline - tolerance`` (above
``baseline + tolerance`` for a metric where lower is better, see
:mod:`mribench.eval.registry`), or is missing or NaN; the metrics are those of the registry. A method of the baseline that is missing from the results, or did not finish
(failed, skipped, interrupted), is a regression too, and so is a task it no longer reports.
Methods in the results but not in the baseline are ignored (add them by remaking the baseline).
A baseline made on another data set or profile than the run is reported as a regression too,
since its numbers are not comparable.

Tolerance of a metric, first that applies: the entry's own ``{"value", "tolerance"}``, the
baseline's ``tolerances[metric]``, the ``tolerance`` argument (``--tolerance``), the
baseline's ``tolerance``, 0.02. Values are fractions in [0, 1], so 0.02 is two points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.atomic import atomic_write_json, read_json
from mribench.eval.registry import get_metric, metric_names
from mribench.results.read import load_results

__all__ = ["DEFAULT_TOLERANCE", "check", "make_baseline"]

DEFAULT_TOLERANCE = 0.02


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a{'n object' if isinstance(value, dict) else ' list'}"
    return repr(value)[:40]


def _load_baseline(path: Path) -> dict[str, Any]:
    """Read and validate a baseline; every problem is a one-line MribenchError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise MribenchError(f"baseline {path} does not exist; make one with "
                            "`bench baseline RESULTS_DIR --out FILE`")
    try:
        data = read_json(path)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise MribenchError(f"baseline {path} is not valid JSON "
                            f"({' '.join(str(err).split())[:200]})") from err
    except OSError as err:
        raise MribenchError(f"baseline {path} cannot be read ({err.strerror or err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise MribenchError(f"baseline {path} has no \"methods\" table; remake it with "
                            "`bench baseline`")

    def bad(key: str, value: Any, what: str) -> MribenchError:
        return MribenchError(f"baseline {path}: {key} must be {what}, got {_shown(value)}; "
                             "fix it or remake it with `bench baseline`")

    def tolerance_ok(key: str, value: Any) -> None:
        if not _is_number(value) or not value >= 0:
            raise bad(key, value, "a number >= 0")

    if data.get("tolerance") is not None:
        tolerance_ok("\"tolerance\"", data["tolerance"])
    tolerances = data.get("tolerances")
    if tolerances is not None:
        if not isinstance(tolerances, dict):
            raise bad("\"tolerances\"", tolerances, "an object of metric: tolerance")
        for name, value in tolerances.items():
            tolerance_ok(f"tolerances.{name}", value)
    made = data.get("created_from")
    if made is not None and not isinstance(made, dict):
        raise bad("\"created_from\"", made, "an object")
    for method, tasks in data["methods"].items():
        if tasks is None:
            continue
        if not isinstance(tasks, dict):
            raise bad(f"methods.{method}", tasks, "an object of task: metrics")
        for task, metrics in tasks.items():
            where = f"methods.{method}.{task}"
            if metrics is None:
                continue
            if not isinstance(metrics, dict):
                raise bad(where, metrics, "an object of metric: value")
            for name, entry in metrics.items():
                key = f"{where}.{name}"
                if isinstance(entry, dict):
                    value, tol = entry.get("value"), entry.get("tolerance")
                    if value is not None and not _is_number(value):
                        raise bad(f"{key}.value", value, "a number")
                    if tol is not None:
                        tolerance_ok(f"{key}.tolerance", tol)
                elif not _is_number(entry):
                    raise bad(key, entry, 'a number or {"value", "tolerance"}')
    return data


def _entry(entry: Any) -> tuple[float, float | None]:
    """(value, own tolerance) of a validated baseline entry (NaN value: not checked)."""
    if isinstance(entry, dict):
        value = entry.get("value")
        tol = entry.get("tolerance")
        return float("nan") if value is None else float(value), (
            None if tol is None else float(tol))
    return float(entry), None


def check(results_dir: str | Path, baseline_path: str | Path,
          tolerance: float | None = None) -> list[str]:
    """Regressions of a results folder against a baseline, one line each ([] if none).

    Every message is one line: names taken from the files (a method key holding a line break,
    say) are shown with their line breaks escaped.
    """
    try:
        problems = _check(results_dir, baseline_path, tolerance)
    except MribenchError as exc:
        raise MribenchError(_one_line(str(exc))) from None
    return [_one_line(p) for p in problems]


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _check(results_dir: str | Path, baseline_path: str | Path,
           tolerance: float | None = None) -> list[str]:
    """Regressions of a results folder against a baseline, one sentence each ([] if none).

    Parameters
    ----------
    results_dir : Path
        A folder written by ``bench run``.
    baseline_path : Path
        A baseline JSON (module docstring).
    tolerance : float, optional
        Default allowed drop, replacing the baseline's ``tolerance``; per-metric tolerances
        written in the baseline still apply to their metrics.

    Raises
    ------
    MribenchError
        When the results folder or the baseline cannot be read, or tolerance is negative.
    """
    if tolerance is not None and tolerance < 0:
        raise MribenchError(f"--tolerance must be >= 0, got {tolerance}")
    results = load_results(results_dir)
    baseline = _load_baseline(Path(baseline_path))
    own = baseline.get("tolerance")
    default = float(tolerance if tolerance is not None
                    else own if own is not None else DEFAULT_TOLERANCE)
    per_metric = {str(k): float(v) for k, v in (baseline.get("tolerances") or {}).items()}
    problems: list[str] = []

    made = baseline.get("created_from") or {}
    run_dataset = results.run.get("dataset")
    run_dataset = run_dataset.get("name") if isinstance(run_dataset, dict) else None
    for key, ours in (("dataset", run_dataset), ("profile", results.run.get("profile"))):
        theirs = made.get(key)
        if theirs and ours and theirs != ours:
            problems.append(f"the baseline was made with {key} {theirs!r} but this run used "
                            f"{ours!r}; check against a baseline of the same suite")

    for method, tasks in baseline["methods"].items():
        row = results.rows.get(method)
        if row is None:
            problems.append(f"{method}: missing from the results (the baseline expects it)")
            continue
        if not row.done:
            why = f": {row.reason}" if row.reason else ""
            problems.append(f"{method}: {row.status}{why}")
            continue
        for task, metrics in (tasks or {}).items():
            if task not in row.metrics:
                problems.append(f"{method}: task {task} missing from the results")
                continue
            known = metric_names(task)
            for name, entry in (metrics or {}).items():
                expected, own_tol = _entry(entry)
                if not np.isfinite(expected):
                    continue
                tol = own_tol if own_tol is not None else per_metric.get(name, default)
                value = row.metric(task, name)["value"] if name in known else float("nan")
                if not np.isfinite(value):
                    problems.append(f"{method} {task} {name}: no value in the results "
                                    f"(baseline {expected:.4f})")
                elif get_metric(name).higher_is_better and value < expected - tol - 1e-12:
                    problems.append(
                        f"{method} {task} {name}: {value:.4f} is below the baseline "
                        f"{expected:.4f} by {expected - value:.4f} (tolerance {tol:.4f})")
                elif not get_metric(name).higher_is_better and value > expected + tol + 1e-12:
                    problems.append(
                        f"{method} {task} {name}: {value:.4f} is above the baseline "
                        f"{expected:.4f} by {value - expected:.4f} (tolerance {tol:.4f}; "
                        "lower is better)")
    return problems


def make_baseline(results_dir: str | Path, out_path: str | Path,
                  tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Write a baseline of every finished row's metrics (finite values only) and return it.

    Rows that failed or were skipped are left out, so the baseline expects exactly the rows
    that worked in this run.
    """
    if tolerance < 0:
        raise MribenchError(f"--tolerance must be >= 0, got {tolerance}")
    results = load_results(results_dir)
    methods: dict[str, dict[str, dict[str, float]]] = {}
    for row in results.done():
        tasks = {}
        for task in row.metrics:
            if task not in ("classify", "segment"):
                continue
            values = {name: round(row.metric(task, name)["value"], 6)
                      for name in metric_names(task)}
            tasks[task] = {k: v for k, v in values.items() if np.isfinite(v)}
        if tasks:
            methods[row.name] = tasks
    if not methods:
        raise MribenchError(f"{results.path} has no finished method to make a baseline from")
    run = results.run
    data = {
        "format": 1,
        "created_from": {"run_id": results.run_id,
                         "dataset": (run.get("dataset") or {}).get("name"),
                         "profile": run.get("profile"), "seed": run.get("seed"),
                         "git_revision": run.get("git_revision"),
                         "command": run.get("command")},
        "tolerance": float(tolerance),
        "tolerances": {},
        "methods": methods,
    }
    out = Path(out_path)
    try:
        atomic_write_json(out, data)
    except OSError as exc:
        raise MribenchError(f"cannot write the baseline {out} ({exc.strerror or exc}); pass "
                            "--out a file in a folder you can write to") from None
    return out
