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

SUITE_KEYS = {"methods", "dataset", "data_dir", "task", "profile", "device", "seed", "seeds",
              "split", "image_size", "jobs", "n_boot", "test_on", "test_split", "executor"}
SUITE_TABLES = {"description", "baseline", "params", "executor_options"}


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
    """A suite file's settings: the run options of ``SUITE_KEYS``, ``[params]`` per method
    (merged into ``methods``) and ``[executor_options]``."""
    path = suite_path(name)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MribenchError(f"{path}: not a readable TOML suite ({exc}); fix the file") from None
    unknown = sorted(set(data) - SUITE_KEYS - SUITE_TABLES)
    if unknown:
        raise MribenchError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(SUITE_KEYS | SUITE_TABLES))}")
    params = data.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise MribenchError(f"{path}: [params] maps method names to 'k=v,...' strings")
    if params:
        from mribench.api import registry

        chosen = registry.resolve_methods(str(data.get("methods", "all")))
        from mribench.api.params import parse_overrides

        data["methods"] = ",".join(
            registry.format_spec(name, parse_overrides(params[name])
                                 if name in params and not overrides else overrides)
            for name, overrides in chosen)
    for key in ("test_on",):
        if isinstance(data.get(key), list):
            data[key] = ",".join(str(v) for v in data[key])
    if "seeds" in data and not isinstance(data["seeds"], str):
        data["seeds"] = ",".join(str(s) for s in data["seeds"]) if isinstance(
            data["seeds"], list) else str(data["seeds"])
    return data


def parse_executor_options(items: tuple[str, ...]) -> dict[str, Any]:
    from mribench.api.params import parse_overrides

    options: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise MribenchError(f"--executor-option {item!r}: write key=value")
        options.update(parse_overrides(item))
    return options


@click.command(epilog="""\b
Examples:
  bench run --method all --dataset synthetic
  bench run --method glcm-knn,region-growing --dataset br35h --data-dir ../shared/data/br35h
  bench run --method glcm-knn,cnn --dataset synthetic --seeds 0-2
  bench run --method "glcm-knn[levels=8],glcm-knn[levels=64]" --dataset synthetic
  bench run --method glcm-knn --dataset br35h --test-on "lgg:PATH/kaggle_3m"
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
@click.option("--seeds", default=None,
              help="Train every method once per seed on the same split: 0-4 or 0,1,2 "
                   "(tables show mean ± sd over seeds). Overrides --seed.")
@split_option
@image_size_option
@click.option("--test-on", "test_on", default=None,
              help="External evaluation sets (comma list of data-set specs, e.g. "
                   "lgg:PATH or brats:PATH): each method, fitted once on --dataset, is also "
                   "scored on them; prints a transfer table.")
@click.option("--test-split", default=None,
              help="Score the --test-on sets on the test part of this split (strategy or "
                   "manifest) instead of all their labelled samples.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Results folder (default: results/<time>-<dataset>-<profile>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out with the same configuration, skipping "
                   "finished jobs.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Jobs run in parallel worker processes (one BLAS thread each).")
@click.option("--executor", default="local", show_default=True,
              help="Where jobs run: local (this machine), dask (a dask.distributed cluster) or "
                   "slurm (submitit job arrays); see README 'Running on a cluster'.")
@click.option("--executor-option", "executor_option", multiple=True,
              help="key=value for the executor (repeatable).")
@click.option("--n-boot", type=click.IntRange(0, 100000), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% confidence intervals.")
@click.option("--suite", default=None,
              help="A suite of benchmarks/suites/ (e.g. quick-synthetic) filling the defaults.")
@click.option("--no-report", is_flag=True, help="Skip writing the HTML/Markdown report.")
@click.option("--rank-by", default="f1", show_default=True, help="Metric the tables rank by.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def run(ctx: click.Context, methods: str, dataset: str, data_dir: Path | None, task: str | None,
        profile: str, device: str, seed: int, seeds: str | None, split: str | None,
        image_size: int, test_on: str | None, test_split: str | None, out: Path | None,
        resume: bool, jobs: int, executor: str, executor_option: tuple[str, ...], n_boot: int,
        suite: str | None, no_report: bool, rank_by: str, quiet: bool) -> None:
    """Train and score methods on a data set under one common split.

    Prints a ranked table per task (classify, segment) with accuracy, F1, IoU, precision,
    recall and specificity with 95% bootstrap intervals, writes a results folder and a report.
    Exits 1 when a method failed (the others still ran), 2 on bad input.
    """
    from mribench.eval.registry import metric_names
    from mribench.run.config import RunConfig, parse_seeds
    from mribench.run.runner import run_benchmark

    known = sorted(metric_names())
    if rank_by not in known:
        raise MribenchError(f"--rank-by {rank_by!r} is not a metric; choose one of "
                            f"{', '.join(known)}")
    values: dict[str, Any] = dict(methods=methods, dataset=dataset, data_dir=data_dir,
                                  task=task, profile=profile, device=device, seed=seed,
                                  seeds=seeds, split=split, image_size=image_size,
                                  test_on=test_on, test_split=test_split, jobs=jobs,
                                  n_boot=n_boot, executor=executor)
    executor_options = parse_executor_options(executor_option)
    if suite:
        data = load_suite(suite)
        for key, value in data.items():
            if key not in SUITE_KEYS:
                continue
            source = ctx.get_parameter_source(key)
            if source in (None, click.core.ParameterSource.DEFAULT):
                values[key] = Path(value) if key == "data_dir" else value
        if not executor_option and isinstance(data.get("executor_options"), dict):
            executor_options = dict(data["executor_options"])
    if not methods.strip() and not suite:
        raise MribenchError("--method is empty; use --method all or names from `bench list`")
    seeds_text = values.pop("seeds")
    values["seeds"] = parse_seeds(seeds_text) if seeds_text not in (None, "") else ()
    from mribench.api.params import split_top_level

    test_on = values.pop("test_on")
    values["test_on"] = tuple(s.strip() for s in split_top_level(test_on or "") if s.strip())
    show = not quiet and sys.stderr.isatty()
    config = RunConfig(**values, executor_options=executor_options, out=out, resume=resume,
                       show_progress=show)

    def on_row(row) -> None:
        mark = {"done": "ok", "failed": "FAILED", "skipped": "skipped"}[row.status]
        tail = f" ({row.reason})" if row.reason else ""
        seed_text = f" seed {row.seed}" if len(config.seeds) > 1 else ""
        click.echo(f"[{mark}] {row.name}{seed_text}{tail}", err=True)

    def on_message(text: str) -> None:
        click.echo(f"note: {text}", err=True)

    outcome = run_benchmark(config, on_row=on_row, on_message=on_message)
    print_tables(outcome.results_dir, rank_by)
    if not no_report:
        from mribench.report import build_report

        page = build_report(outcome.results_dir, rank_by=rank_by)
        click.echo(f"report: {page}")
    click.echo(f"results: {outcome.results_dir}")
    if outcome.failed:
        names = ", ".join(sorted({r.name for r in outcome.failed}))
        click.echo(f"error: {len(outcome.failed)} job(s) failed: {names} "
                   f"(see traceback.txt in their folders); rerun with --resume --out "
                   f"{outcome.results_dir} after fixing", err=True)
        sys.exit(1)


def print_tables(results_dir: Path, rank_by: str = "f1") -> None:
    """Print each task's ranked table per evaluation set, then the transfer table."""
    from mribench.eval.registry import rank_metric
    from mribench.report.tables import format_table, transfer_table
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results

    results = load_results(results_dir)
    for eval_set in ["test", *results.eval_sets]:
        view = results.on(eval_set)
        where = "" if eval_set == "test" else f" on external set {eval_set!r}"
        for task in view.tasks():
            chosen = rank_metric(task, rank_by)
            for population in (("all", "tumour_only") if task == "segment" else ("all",)):
                table = ranked_table(view, task, rank_by=chosen, view=population)
                if table.empty:
                    continue
                click.echo(f"\n{task}{where}: ranked by {chosen}; {table.attrs.get('note', '')}")
                click.echo(format_table(table, fmt="simple", ci=False))
    if results.eval_sets:
        for task in results.tasks():
            chosen = rank_metric(task, rank_by)
            table = transfer_table(results, task, chosen)
            if table is not None:
                click.echo(f"\ntransfer ({task}, {chosen}): in-distribution test vs external "
                           "sets; drop = external - test, 95% interval")
                click.echo(table)
    click.echo("\n95% intervals: report.md / index.html, or `bench report`")
