"""``bench status``: where a run stands, job by job, read from its results folder.

Works while the run goes on (any executor: local, dask, SLURM) and after its driver stopped:
the folder says it all. ``run.json`` lists the rows (``methods``) and ``seeds``; a job's folder
``<row>/seed-<s>/`` holds ``status.json`` (done, failed, skipped) once it finished, only its
``log.txt`` while it runs (or when it was stopped mid-way), nothing before it starts. Whether
the driver still runs is read from ``<run>/.lock`` (its pid, on this machine).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

#: Job states in display order.
STATES = ("done", "failed", "skipped", "running", "interrupted", "not started")


def _driver_pid(run_dir: Path) -> int | None:
    """The pid in ``<run>/.lock`` when that process is alive on this machine, else None."""
    try:
        pid = int((run_dir / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    except OSError:
        return None
    return pid


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def run_status(run_dir: Path) -> dict[str, Any]:
    """The run's state and one record per job (row, seed): ``status`` (one of
    :data:`STATES`) and ``reason``; plus ``counts`` per state."""
    from mribench.results.read import job_status, load_results, seed_folders

    results = load_results(run_dir)
    run = results.run
    rows = [str(r) for r in run.get("methods") or [] if isinstance(r, str)] or list(
        results.rows)
    seeds = [int(s) for s in run.get("seeds") or [] if isinstance(s, int)]
    if not seeds:  # an older run.json: the seeds its folders hold
        seeds = sorted({s for r in rows for s in seed_folders(run_dir / r)}) or [
            int(run.get("seed", 0) or 0)]
    pid = _driver_pid(run_dir)
    recorded = str(run.get("status") or "unknown")
    driver_alive = recorded == "running" and pid is not None
    if recorded == "running" and not driver_alive:
        state = "stopped"
    else:
        state = recorded
    jobs = []
    now = time.time()
    for row in rows:
        for seed in seeds:
            folder = run_dir / row / f"seed-{seed}"
            status, reason = job_status(folder)
            if status == "started":
                log = folder / "log.txt"
                age = f"log updated {_ago(now - log.stat().st_mtime)} ago" if log.is_file() \
                    else "no log yet"
                if driver_alive:
                    status, reason = "running", age
                else:
                    status, reason = "interrupted", f"stopped before it finished ({age})"
            jobs.append({"row": row, "seed": seed, "status": status, "reason": reason,
                         "folder": str(folder)})
    counts = Counter(j["status"] for j in jobs)
    return {"run": str(run_dir), "run_id": results.run_id, "state": state,
            "driver_pid": pid if driver_alive else None, "executor": run.get("executor"),
            "reason": run.get("reason"), "jobs": jobs,
            "counts": {s: counts[s] for s in [*STATES, *sorted(set(counts) - set(STATES))]
                       if counts[s]}}


@click.command("status", epilog="""\b
Examples:
  bench status results/RUN
  bench status results/RUN --json""")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(results_dir: Path, as_json: bool) -> None:
    """Show each job (row, seed) of RESULTS_DIR: done, failed (with why), skipped, running,
    interrupted (the run stopped mid-job) or not started; and the counts.

    Reads only the folder, so it works while the run goes on and after it stopped; rerun
    what did not finish with `bench run --resume --out RESULTS_DIR` (same options).
    """
    info = run_status(results_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from tabulate import tabulate

    several = len({j["seed"] for j in info["jobs"]}) > 1
    table = [[j["row"], j["seed"], j["status"], j["reason"] or ""] for j in info["jobs"]]
    head = f"run {info['run_id']}: {info['state']}"
    if info["driver_pid"]:
        head += f" (driver pid {info['driver_pid']})"
    elif info["state"] == "stopped":
        head += " (its driver is gone)"
    if info["executor"]:
        head += f", executor {info['executor']}"
    click.echo(head)
    if info["state"] in ("failed", "stopped") and info["reason"]:
        click.echo(f"  reason: {info['reason']}")
    if table:
        headers = ["row", "seed", "status", "reason"]
        keep = [0, *([1] if several else []), 2, *([3] if any(r[3] for r in table) else [])]
        headers = [headers[i] for i in keep]
        table = [[r[i] for i in keep] for r in table]
        click.echo(tabulate(table, headers=headers, tablefmt="simple"))
    counts = ", ".join(f"{n} {s}" for s, n in info["counts"].items())
    click.echo(f"{len(info['jobs'])} job(s): {counts or 'none'}")
    unfinished = sum(n for s, n in info["counts"].items()
                     if s in ("failed", "interrupted", "not started"))
    if unfinished and not info["driver_pid"]:
        click.echo(f"to finish them: bench run --resume --out {results_dir} (with the run's "
                   "options)")
