"""``bench compare``: two runs side by side, row by row, with a paired test of each difference."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.cli.options import metric_option


@click.command("compare", epilog="""\b
Examples:
  bench compare results/br35h results/br35h-harmonised
  bench compare results/A results/B --task segment --metric f1 --view tumour_only
  bench compare results/A results/B --eval-set lgg --format github""")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--task", type=click.Choice(["classify", "segment"]), default="classify",
              show_default=True)
@metric_option("--metric", help="The metric compared (a metric of --task).")
@click.option("--view", type=click.Choice(["all", "tumour_only"]), default="all",
              show_default=True, help="Segmentation: all slices with a known mask, or the "
                                      "annotated tumour slices only.")
@click.option("--eval-set", default="test", show_default=True,
              help="The run's own test part, or an external set of --test-on.")
@click.option("--format", "fmt", type=click.Choice(["simple", "github"]), default="simple",
              show_default=True, help="Table style (github: Markdown).")
def compare(run_a: Path, run_b: Path, task: str, metric: str, view: str, eval_set: str,
            fmt: str) -> None:
    """Compare RUN_A and RUN_B: each row both finished, its METRIC in each, B - A, and a paired
    test of the difference over the test images both scored (Holm over the rows)."""
    from mribench.report.tables import compare_table
    from mribench.results.read import load_results

    click.echo(compare_table(load_results(run_a), load_results(run_b), task, metric, view,
                             eval_set, fmt))
