"""``bench status``: where a run stands, job by job (:mod:`mribench.results.status`)."""

from __future__ import annotations

import json
from pathlib import Path

import click


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
    from mribench.results.status import run_status

    info = run_status(results_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from tabulate import tabulate

    jobs = info["jobs"]
    columns = [c for c in ("dataset", "row", "fold", "seed", "status", "reason")
               if c in ("row", "status") or (c == "seed" and len({j["seed"] for j in jobs}) > 1)
               or (c == "reason" and any(j["reason"] for j in jobs))
               or (c in ("dataset", "fold") and any(c in j for j in jobs))]
    table = [["" if j.get(c) is None else j[c] for c in columns] for j in jobs]
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
        click.echo(tabulate(table, headers=columns, tablefmt="simple"))
    counts = ", ".join(f"{n} {s}" for s, n in info["counts"].items())
    click.echo(f"{len(info['jobs'])} job(s): {counts or 'none'}")
    unfinished = sum(n for s, n in info["counts"].items()
                     if s in ("failed", "interrupted", "not started"))
    if unfinished and not info["driver_pid"]:
        click.echo(f"to finish them: bench run --resume --out {results_dir} (with the run's "
                   "options)")
