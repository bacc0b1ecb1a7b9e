"""``bench report``: the HTML/Markdown report of a results folder."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.cli.options import metric_option


@click.command("report", epilog="""\b
Examples:
  bench report results/20240101-120000-br35h-quick
  bench report results/RUN --out site/ --rank-by iou""")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default: reports/<name of RESULTS_DIR>).")
@metric_option("--rank-by", help="Metric the tables are ranked by (tasks without it rank by "
                                 "f1).")
@click.option("--published", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Published-figures TOML (default: benchmarks/published.toml).")
def report(results_dir: Path, out_dir: Path | None, rank_by: str,
           published: Path | None) -> None:
    """Write index.html (self-contained), report.md and figures/ for RESULTS_DIR."""
    from mribench.report import build_report

    index = build_report(results_dir, out_dir, rank_by=rank_by, published=published)
    click.echo(f"report: {index}")
