"""``bench check`` and ``bench baseline``: metric regressions against a committed baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

results_argument = click.argument(
    "results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


@click.command("check", epilog="""\b
Example:
  bench check results/RUN --baseline benchmarks/baselines/quick-synthetic.json""")
@results_argument
@click.option("--baseline", "baseline_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Baseline JSON written by `bench baseline`.")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=None,
              help="Allowed drop of a metric (absolute, e.g. 0.02); default: the baseline's. "
                   "Per-metric tolerances in the baseline still apply.")
def check(results_dir: Path, baseline_path: Path, tolerance: float | None) -> None:
    """Exit 1, naming each regression, when a metric of RESULTS_DIR fell below the baseline.

    A method of the baseline that is missing, failed or skipped counts as a regression.
    """
    from mribench.report.check import check as run_check

    problems = run_check(results_dir, baseline_path, tolerance)
    if problems:
        for line in problems:
            click.echo(f"regression: {line}", err=True)
        click.echo(f"{len(problems)} regression(s) against {baseline_path}", err=True)
        sys.exit(1)
    click.echo(f"ok: no metric fell below {baseline_path}")


@click.command("baseline", epilog="""\b
Example:
  bench baseline results/RUN --out benchmarks/baselines/quick-synthetic.json""")
@results_argument
@click.option("--out", "out_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Baseline JSON to write.")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=0.02, show_default=True,
              help="Default allowed drop stored in the baseline.")
def baseline(results_dir: Path, out_path: Path, tolerance: float) -> None:
    """Write a baseline of the metrics of every method that finished in RESULTS_DIR."""
    from mribench.report.check import make_baseline

    path = make_baseline(results_dir, out_path, tolerance)
    click.echo(f"baseline: {path}")
