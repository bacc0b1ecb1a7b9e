"""``bench run``: train and score methods on a data set, print ranked tables, write a report."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from mribench.api.errors import MribenchError
from mribench.cli.options import (
    data_dir_option,
    dataset_option,
    image_size_option,
    seed_option,
    split_option,
)

SUITE_KEYS = {"methods", "dataset", "data_dir", "task", "profile", "device", "seed", "split",
              "image_size", "jobs", "n_boot"}


def suite_path(name: str) -> Path:
    """A suite name (``quick-synthetic``) or a TOML path -> the file."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate
    from mribench.paths import benchmarks_dir

    root = benchmarks_dir() / "suites"
    path = root / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in root.glob("*.toml"))) or "none"
        raise MribenchError(f"no suite {name!r} (looked for {path}); known suites: {known}")
    return path


def load_suite(name: str) -> dict[str, Any]:
    path = suite_path(name)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    unknown = sorted(set(data) - SUITE_KEYS - {"description", "baseline", "params"})
    if unknown:
        raise MribenchError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(SUITE_KEYS | {'description', 'baseline', 'params'}))}")
    params = data.get("params", {})
    if params:
        from mribench.api import registry

        chosen = registry.resolve_methods(str(data.get("methods", "all")))
        data["methods"] = ",".join(
            f"{name}[{params[name]}]" if name in params and not overrides else
            registry.format_spec(name, overrides) for name, overrides in chosen)
    return data


@click.command(epilog="""\b
Examples:
  bench run --method all --dataset synthetic
  bench run --method glcm-knn,region-growing --dataset br35h --data-dir ../shared/data/br35h
  bench run --method "unet[epochs=5]" --task segment --profile quick
  bench run --suite quick-synthetic --out results/ci
""")
@click.option("--method", "methods", default="all", show_default=True,
              help="'all', a method name, or a comma list of name[k=v] (see `bench list`).")
@dataset_option
@data_dir_option
@click.option("--task", type=click.Choice(["classify", "segment"]), default=None,
              help="Only this task (default: every task each method answers).")
@click.option("--profile", type=click.Choice(["quick", "paper"]), default="quick",
              show_default=True, help="quick: sized for 2 CPU cores; paper: published settings.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where deep methods train.")
@seed_option
@split_option
@image_size_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Results folder (default: results/<time>-<dataset>-<profile>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out, skipping finished methods.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Methods run in parallel worker processes (one BLAS thread each).")
@click.option("--n-boot", type=click.IntRange(0, 100000), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% confidence intervals.")
@click.option("--suite", default=None,
              help="A suite of benchmarks/suites/ (e.g. quick-synthetic) filling the defaults.")
@click.option("--no-report", is_flag=True, help="Skip writing the HTML/Markdown report.")
@click.option("--rank-by", default="f1", show_default=True, help="Metric the tables rank by.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def run(ctx: click.Context, methods: str, dataset: str, data_dir: Path | None, task: str | None,
        profile: str, device: str, seed: int, split: str | None, image_size: int,
        out: Path | None, resume: bool, jobs: int, n_boot: int, suite: str | None,
        no_report: bool, rank_by: str, quiet: bool) -> None:
    """Train and score methods on a data set under one common split.

    Prints a ranked table per task (classify, segment) with accuracy, F1, IoU, precision,
    recall and specificity with 95% bootstrap intervals, writes a results folder and a report.
    Exits 1 when a method failed (the others still ran), 2 on bad input.
    """
    from mribench.run.runner import RunConfig, run_benchmark

    values = dict(methods=methods, dataset=dataset, data_dir=data_dir, task=task,
                  profile=profile, device=device, seed=seed, split=split,
                  image_size=image_size, jobs=jobs, n_boot=n_boot)
    if suite:
        for key, value in load_suite(suite).items():
            if key not in SUITE_KEYS:
                continue
            source = ctx.get_parameter_source(key)
            if source in (None, click.core.ParameterSource.DEFAULT):
                values[key] = Path(value) if key == "data_dir" else value
    show = not quiet and sys.stderr.isatty()
    config = RunConfig(**values, out=out, resume=resume, show_progress=show)

    def on_row(row) -> None:
        mark = {"done": "ok", "failed": "FAILED", "skipped": "skipped"}[row.status]
        tail = f" ({row.reason})" if row.reason else ""
        click.echo(f"[{mark}] {row.name}{tail}", err=True)

    outcome = run_benchmark(config, on_row=on_row)
    print_tables(outcome.results_dir, rank_by)
    if not no_report:
        from mribench.report import build_report

        page = build_report(outcome.results_dir, rank_by=rank_by)
        click.echo(f"report: {page}")
    click.echo(f"results: {outcome.results_dir}")
    if outcome.failed:
        names = ", ".join(r.name for r in outcome.failed)
        click.echo(f"error: {len(outcome.failed)} method(s) failed: {names} "
                   f"(see traceback.txt in their folders); rerun with --resume --out "
                   f"{outcome.results_dir} after fixing", err=True)
        sys.exit(1)


def print_tables(results_dir: Path, rank_by: str = "f1") -> None:
    """Print the ranked table of each task to the terminal (95% intervals are in the report)."""
    from mribench.results.folder import format_table, load_results, rank_metric, ranked_table

    results = load_results(results_dir)
    for task in ("classify", "segment"):
        if not results.done(task):
            continue
        chosen = rank_metric(task, rank_by)
        table = ranked_table(results, task, rank_by=chosen)
        click.echo(f"\n{task}: ranked by {chosen}; methods sharing the leader's group differ "
                   f"from it by no significant margin ({table.attrs.get('test', '')}, Holm)")
        click.echo(format_table(table, fmt="simple", ci=False))
    click.echo("\n95% bootstrap intervals: report.md / index.html, or `bench report`")
