"""``bench rank``: how far a ranking holds over data sets, from finished runs."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.cli.options import metric_option


@click.command("rank", epilog="""\b
Examples:
  bench rank results/cross-dataset
  bench rank results/br35h-folds results/lgg-folds --metric auc --out reports/rank
  bench rank results/A results/B --task segment --format github""")
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--task", type=click.Choice(["classify", "segment"]), default=None,
              help="Only this task (default: every task of the runs).")
@metric_option("--metric", help="The metric ranked (tasks without it rank by f1).")
@click.option("--n-boot", type=click.IntRange(1, 100_000), default=None,
              help="Bootstrap draws of the rank intervals (default: each run's --n-boot).")
@click.option("--format", "fmt", type=click.Choice(["simple", "github"]), default="simple",
              show_default=True, help="Table style (github: Markdown).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder to write the figures to (PNG).")
def rank(runs: tuple[Path, ...], task: str | None, metric: str, n_boot: int | None, fmt: str,
         out_dir: Path | None) -> None:
    """Rank intervals per data set, the consensus over data sets (mean rank, Kendall's W,
    critical-difference cliques), the transfer matrix and accuracy on the line, from RUNS:
    one run over several data sets, or several runs (each run's data sets are blocks; runs
    whose methods ran with other params are refused)."""
    from mribench.report.holdup import colours_of, holdup_text, holdups, write_figures
    from mribench.results.ranking import check_same_params
    from mribench.results.read import load_results

    loaded = [load_results(path) for path in runs]
    check_same_params(loaded)
    found = holdups(loaded, metric, tasks=[task] if task else None, n_boot=n_boot)
    if not found:
        click.echo("no ranked method finished in these runs: nothing to rank")
        return
    for h in found:
        click.echo(holdup_text(h, fmt))
    if out_dir is not None:
        for path in write_figures(found, out_dir, colours_of(loaded)):
            click.echo(f"figure: {path}")
