"""``bench run``: train and score methods on a data set, print ranked tables, write a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mribench.api.errors import MribenchError
from mribench.cli.options import (
    data_dir_option,
    dataset_option,
    image_size_option,
    split_option,
)


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
  bench run --method glcm-knn,cnn --dataset synthetic --corrupt bias,noise --severities 1,3,5
""")
@click.option("--method", "methods", default="all", show_default=True,
              help="'all', a method name, or a comma list of name[k=v] (see `bench list`).")
@dataset_option
@data_dir_option
@click.option("--task", default=None, metavar="classify|segment",
              help="Only this task (default: every task each method answers).")
@click.option("--profile", default="quick", show_default=True, metavar="quick|paper",
              help="quick: sized for 2 CPU cores; paper: published settings.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="Where deep methods train.")
@click.option("--seed", default="0", show_default=True, metavar="N",
              help="Seed of the split (when one is made), training and bootstrap: 0 to "
                   "2**32-1.")
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
@click.option("--corrupt", default=None, metavar="all|ARTEFACT,...",
              help="Also score every fitted row on its test part (and the --test-on sets) "
                   "corrupted by these MRI artefacts: all, or a comma list of bias, motion, "
                   "ghosting, spike, noise, blur, gamma (never in training); prints a "
                   "per-artefact table.")
@click.option("--severities", default="1-5", show_default=True, metavar="1-5|1,3,5",
              help="Severities of the --corrupt artefacts (integers 1 to 5).")
@click.option("--corrupt-reference", "corrupt_reference", default=None, metavar="ROW",
              help="Row the relative corruption error is measured against (default: the "
                   "best classical row on clean data).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Results folder (default: results/<time>-<dataset>-<profile>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out with the same configuration, skipping "
                   "finished jobs.")
@click.option("--jobs", default="1", show_default=True, metavar="N",
              help="Jobs run in parallel worker processes (one BLAS thread each): 1 to 64.")
@click.option("--folds", default=None, metavar="K",
              help="Patient-level K-fold cross-validation (2 to 20): stratified, grouped folds; "
                   "every sample is predicted once out of fold per seed.")
@click.option("--threads", default="1", show_default=True, metavar="N",
              help="BLAS/OpenMP and torch threads of each job, under every executor (part of "
                   "the run: deep rows' numbers depend on it); use --jobs for more cores.")
@click.option("--executor", default="local", show_default=True,
              help="Where jobs run: local (this machine), dask (a dask.distributed cluster) or "
                   "slurm (submitit job arrays); see README 'Running on a cluster'.")
@click.option("--executor-option", "executor_option", multiple=True,
              help="key=value for the executor (repeatable).")
@click.option("--n-boot", default="1000", show_default=True, metavar="N",
              help="Bootstrap replicates of every 95% interval (clusters of test images; "
                   "seeds too with --seeds; transfer drops and Kendall tau): 0 to 100000.")
@click.option("--suite", default=None,
              help="A suite of benchmarks/suites/ (e.g. quick-synthetic) filling the defaults.")
@click.option("--no-report", is_flag=True, help="Skip writing the HTML/Markdown report.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Add the no-skill reference rows (always tumour, majority class, size-only "
                   "forest; predict nothing, whole brain, mean mask) to every table.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the report goes (default: report/ inside the results folder).")
@click.option("--rank-by", default="f1", show_default=True, help="Metric the tables rank by.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def run(ctx: click.Context, executor_option: tuple[str, ...], suite: str | None,
        no_report: bool, rank_by: str, quiet: bool, **options: Any) -> None:
    """Train and score methods on a data set under one common split.

    Prints a ranked table per task (classify, segment) with accuracy, F1, IoU, precision,
    recall and specificity with 95% bootstrap intervals, writes a results folder and a report.
    Exits 1 when a method failed (the others still ran), 2 on bad input.
    """
    from mribench.eval.registry import metric_names
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    known = sorted(metric_names())
    if rank_by not in known:
        raise MribenchError(f"--rank-by {rank_by!r} is not a metric; choose one of "
                            f"{', '.join(known)}")
    explicit = {name for name in options
                if ctx.get_parameter_source(name) not in (None,
                                                          click.core.ParameterSource.DEFAULT)}
    if executor_option:
        options["executor_options"] = parse_executor_options(executor_option)
        explicit.add("executor_options")
    options["show_progress"] = not quiet and sys.stderr.isatty()
    config = RunConfig.from_sources(options, suite=suite, explicit=explicit)

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

        page = build_report(outcome.results_dir, config.report_dir, rank_by=rank_by)
        click.echo(f"report: {page}")
    click.echo(f"results: {outcome.results_dir}")
    if outcome.failed:
        names = ", ".join(sorted({r.name for r in outcome.failed}))
        click.echo(f"error: {len(outcome.failed)} job(s) failed: {names} "
                   f"(see traceback.txt in their folders); rerun with --resume --out "
                   f"{outcome.results_dir} after fixing", err=True)
        sys.exit(1)


def print_tables(results_dir: Path, rank_by: str = "f1") -> None:
    """Print each data set's ranked tables per evaluation set (with the spread over folds in a
    cross-validated run), its transfer table, and for a run over several data sets the
    transfer matrix, the rank intervals per data set and the consensus (`bench rank`)."""
    from mribench.results.read import load_results

    root = load_results(results_dir)
    for results in [root.of(d) for d in root.datasets] or [root]:
        if root.datasets:
            click.echo(f"\n=== trained on {results.dataset}")
        _print_ranked(results, rank_by)
        _print_transfer(results, rank_by)
        _print_artefacts(results, rank_by)
    if root.datasets:
        _print_matrix(root, rank_by)
        _print_holdup(root, rank_by)
    click.echo("\n95% intervals: report.md / index.html, or `bench report`")


def _print_ranked(results: Any, rank_by: str) -> None:
    from mribench.eval.registry import rank_metric
    from mribench.report.tables import fold_table, format_table, table_notes
    from mribench.results.rank import ranked_table

    folds = results.run.get("folds")
    for eval_set in ["test", *results.eval_sets]:
        view = results.on(eval_set)
        where = ("" if eval_set == "test" else f" on external set {eval_set!r}") + (
            f" (pooled out of {folds} folds)" if folds and eval_set == "test" else "")
        for task in view.tasks():
            chosen = rank_metric(task, rank_by)
            for population in (("all", "tumour_only") if task == "segment" else ("all",)):
                table = ranked_table(view, task, rank_by=chosen, view=population)
                if table.empty:
                    continue
                click.echo(f"\n{task}{where}: ranked by {chosen}; {table.attrs.get('note', '')}")
                click.echo(format_table(table, fmt="simple", ci=False))
                for note in table_notes(table, intervals=False, legend=False):
                    click.echo(note)
                if folds and population == "all":
                    click.echo(f"{chosen} per fold (mean ± sd over {folds} folds):")
                    click.echo(fold_table(view, task, chosen))


def _print_transfer(results: Any, rank_by: str) -> None:
    from mribench.eval.registry import rank_metric
    from mribench.report.tables import transfer_table

    if not results.eval_sets:
        return
    for task in results.tasks():
        chosen = rank_metric(task, rank_by)
        table = transfer_table(results, task, chosen)
        if table is not None:
            click.echo(f"\ntransfer ({task}, {chosen}): in-distribution test vs external "
                       "sets; drop = external - test, 95% interval from resampling "
                       "each set's clusters")
            click.echo(table)


def _print_artefacts(results: Any, rank_by: str) -> None:
    from mribench.report.artefacts import artefact_text

    text = artefact_text(results, rank_by)
    if text:
        click.echo(text)


def _print_matrix(root: Any, rank_by: str) -> None:
    from mribench.eval.registry import rank_metric
    from mribench.report.tables import matrix_table
    from mribench.results.transfer import transfer_matrix

    for task in ("classify", "segment"):
        matrix = transfer_matrix(root, task, rank_metric(task, rank_by))
        if matrix.cells.empty:
            continue
        click.echo(f"\ntransfer matrix ({task}, {matrix.metric}): trained on -> scored on")
        click.echo(matrix_table(matrix))


def _print_holdup(root: Any, rank_by: str) -> None:
    from mribench.report.holdup import holdup_summary, holdups

    for h in holdups([root], rank_by):
        click.echo(f"\nhow far the {h.task} ranking holds ({h.metric}; figures: bench rank "
                   "--out, or the report):")
        click.echo("\n".join(holdup_summary(h)).rstrip())
