"""Where a run stands, job by job, read from its results folder (``bench status``).

Works while the run goes on (any executor: local, dask, SLURM) and after its driver stopped:
the folder says it all. ``run.json`` lists the rows (``methods``) and ``seeds``; a job's folder
holds ``status.json`` (done, failed, skipped) once it finished, only its log while it runs (or
when it was stopped mid-way), nothing before it starts. Whether the driver still runs is read
from the run's lock (its pid, on this machine).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from mribench.results.layout import JobKey, RunLayout
from mribench.results.lock import driver_pid
from mribench.results.read import job_status, load_results, run_rows

__all__ = ["STATES", "run_status"]

#: Job states in display order.
STATES = ("done", "failed", "skipped", "running", "interrupted", "not started")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def run_status(run_dir: Path | str) -> dict[str, Any]:
    """The run's state and one record per job (row, seed): ``status`` (one of
    :data:`STATES`) and ``reason``; plus ``counts`` per state."""
    layout = RunLayout(Path(run_dir))
    results = load_results(layout.root)
    run = results.run
    rows = run_rows(run) or list(results.rows)
    seeds = [int(s) for s in run.get("seeds") or [] if isinstance(s, int)]
    if not seeds:  # a run.json without seeds: the seeds its folders hold
        seeds = sorted({s for r in rows for s in layout.seeds_of(r)}) or [
            int(run.get("seed", 0) or 0)]
    pid = driver_pid(layout)
    recorded = str(run.get("status") or "unknown")
    driver_alive = recorded == "running" and pid is not None
    state = "stopped" if recorded == "running" and not driver_alive else recorded
    names = [str(d["name"]) for d in run.get("datasets") or [] if isinstance(d, dict)
             and isinstance(d.get("name"), str)] or [None]
    k = run.get("folds")
    folds = list(range(k)) if isinstance(k, int) and not isinstance(k, bool) and k > 0 \
        else [None]
    jobs = [_job_record(layout.for_dataset(name), JobKey(row, seed, fold), driver_alive)
            for name in names for row in rows for fold in folds for seed in seeds]
    counts = Counter(j["status"] for j in jobs)
    return {"run": str(run_dir), "run_id": results.run_id, "state": state,
            "driver_pid": pid if driver_alive else None, "executor": run.get("executor"),
            "reason": run.get("reason"), "jobs": jobs,
            "counts": {s: counts[s] for s in [*STATES, *sorted(set(counts) - set(STATES))]
                       if counts[s]}}


def _job_record(layout: RunLayout, key: JobKey, driver_alive: bool) -> dict[str, Any]:
    folder = layout.job_dir(key)
    status, reason = job_status(folder)
    if status == "started":
        log = layout.log_file(key)
        age = f"log updated {_ago(time.time() - log.stat().st_mtime)} ago" if log.is_file() \
            else "no log yet"
        if driver_alive:
            status, reason = "running", age
        else:
            status, reason = "interrupted", f"stopped before it finished ({age})"
    record = {"row": key.row, "seed": key.seed, "status": status, "reason": reason,
              "folder": str(folder)}
    if layout.dataset is not None:
        record["dataset"] = layout.dataset
    if key.fold is not None:
        record["fold"] = key.fold
    return record
