"""Run a benchmark: plan the jobs, skip the finished ones, run the rest, record the run.

The flow (DESIGN.md): data set -> samples -> split manifest -> jobs (method x params x seed)
-> ``method.fit(train, val)`` -> ``method.predict(test and each --test-on set)`` -> metrics
-> results folder -> ranked tables.

Guarantees the runner gives its users:

- **One split for all.** Every job reads the same manifest (copied to ``split.json`` in the
  run folder; its SHA-256 goes into ``run.json``); every seed trains on the same split.
- **Fail early.** Every method is constructed (its ``Params`` validated), the data set and
  every evaluation set loaded, the split made and the output folder checked before anything
  trains: bad input is a one-line error at start-up.
- **One failure stops nothing.** A job that raises is recorded as ``failed`` with its
  traceback in its folder; the others still run; the exit status is non-zero.
- **Atomic, exact resume.** Every file is written atomically; ``status.json`` last. The run's
  identity (methods and params, data set and its fingerprint, split hash, profile, image
  size, seeds, evaluation sets, mribench version) is stored; ``--resume`` skips finished jobs
  and refuses a different identity, naming what differs.
- **One writer at a time.** ``<run>/.lock`` holds the driver's pid; a second ``bench run`` on
  the same folder is refused; a lock left by a dead process is taken over with a message.
- **Parallel jobs** run through an executor (:mod:`mribench.run.executors`): spawned worker
  processes pinned to one BLAS/OpenMP and one torch thread each.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mribench import __version__
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.types import Sample
from mribench.results.layout import RunLayout
from mribench.results.lock import RunLock
from mribench.results.write import RunWriter, now, writable_error
from mribench.run.config import RunConfig, identity_diff
from mribench.run.data_plan import (
    PlannedData,
    plan_datasets,
    run_fingerprint,
    run_split_sha256,
)
from mribench.run.device import resolve_device
from mribench.run.execute import RowOutcome, job_finished, remember_samples
from mribench.run.executors import Executor, make_executor
from mribench.run.jobs import Job, plan_jobs, plan_methods
from mribench.run.provenance import command_line, git_revision, machine, package_versions

__all__ = ["RowOutcome", "RunConfig", "RunOutcome", "RunPlan", "run_benchmark"]

log = logging.getLogger("mribench")

#: Test slices kept in ``test_images.npz`` for the report's montage.
MONTAGE_SLICES = 12


@dataclass
class RunOutcome:
    results_dir: Path
    rows: list[RowOutcome]

    @property
    def failed(self) -> list[RowOutcome]:
        return [r for r in self.rows if r.status == "failed"]


@dataclass
class RunPlan:
    """What a run will do, decided before anything trains: the rows (methods constructed,
    params validated), the executor, every data set with its split(s) and evaluation sets,
    and the results folder."""

    config: RunConfig
    device: str
    rows: list[tuple[str, Method]]
    executor: Executor
    data: list[PlannedData]
    layout: RunLayout

    def identity(self) -> dict[str, Any]:
        return self.config.identity(
            {row: {"method": m.name, "params": m.params.as_dict()} for row, m in self.rows},
            run_split_sha256(self.data), run_fingerprint(self.data), __version__)


def _run_id(config: RunConfig, dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{dataset_name}-{config.profile}"


def _montage_slices(test: Sequence[Sample], seed: int) -> list[Sample]:
    """A few test slices (masked ones first) for the report's montage."""
    rng = np.random.default_rng(seed)
    masked = [s for s in test if s.has_mask and s.mask.any()]
    chosen_ids = {s.id for s in masked}
    others = [s for s in test if s.id not in chosen_ids]
    order = list(rng.permutation(len(masked)))[:MONTAGE_SLICES]
    chosen = [masked[i] for i in order]
    if len(chosen) < MONTAGE_SLICES and others:
        extra = rng.permutation(len(others))[: MONTAGE_SLICES - len(chosen)]
        chosen += [others[i] for i in extra]
    return chosen


def _save_test_images(writer: RunWriter, test: Sequence[Sample], seed: int) -> None:
    chosen = _montage_slices(test, seed)
    if not chosen:
        return
    empty = np.zeros_like(chosen[0].image, dtype=bool)
    writer.write_test_images(
        [s.id for s in chosen], np.stack([s.image for s in chosen]),
        np.stack([s.mask if s.mask is not None else empty for s in chosen]),
        [s.label for s in chosen])


# --------------------------------------------------------------------------- the run


def run_benchmark(config: RunConfig, *, on_row: Callable[[RowOutcome], None] | None = None,
                  on_message: Callable[[str], None] | None = None) -> RunOutcome:
    """Run ``config``; returns the results folder and each row's outcome (one per job).

    Three steps: :func:`plan_run` (everything that can fail on bad input, before training),
    :func:`prepare_run` (the results folder: checked, locked, ``run.json`` and ``split.json``
    written) and :func:`dispatch` (the jobs through the executor).

    Raises :class:`~mribench.api.errors.MribenchError` for bad input found before training
    (unknown method, bad parameter, missing data, a manifest that does not fit the data, an
    output folder that cannot be used) and when the results cannot be written (disk full).
    """
    plan = plan_run(config)
    writer = RunWriter(plan.layout)
    previous = writer.prepare(config.resume)
    _check_resume(plan, previous)
    lock = RunLock(plan.layout, on_message)
    lock.acquire()
    info: dict[str, Any] = {}
    try:
        info = prepare_run(plan, writer, previous)
        outcomes = dispatch(plan, on_row, lease=lock.token)
        if any(o.reason and "No space left" in o.reason for o in outcomes):
            raise OSError(errno.ENOSPC, "No space left on device")
        info["ended"] = now()
        info["status"] = "failed" if any(o.status == "failed" for o in outcomes) else "done"
        writer.write_run(info)
        return RunOutcome(plan.layout.root, outcomes)
    except OSError as exc:
        _mark_failed(writer, info, exc)
        raise writable_error(plan.layout.root, exc) from None
    except BaseException as exc:
        _mark_failed(writer, info, exc)
        raise
    finally:
        lock.release()


def plan_run(config: RunConfig) -> RunPlan:
    """Decide the run: construct every method and the executor, load and split every data
    set, load every evaluation set; bad input fails here, before anything is written."""
    # Remote executors (dask, SLURM) resolve "auto"/"cuda" on the node that runs the job.
    device = resolve_device(config.device) if config.executor == "local" else config.device
    rows = plan_methods(config)
    _check_reference(config, rows)
    executor = make_executor(config.executor, config.jobs, config.executor_options)
    data = plan_datasets(config, rows)
    name = "+".join(d.dataset.name for d in data)
    root = config.out or config.results_root / _run_id(config, name)
    return RunPlan(config, device, rows, executor, data, RunLayout(root))


def _check_reference(config: RunConfig, rows: list[tuple[str, Method]]) -> None:
    """``--corrupt-reference`` names a row of the run, and comes with ``--corrupt``."""
    if config.corrupt_reference is None:
        return
    if not config.corrupt:
        raise MribenchError("--corrupt-reference needs --corrupt (the artefacts to score "
                            "under); add --corrupt all or drop --corrupt-reference")
    names = [row for row, _ in rows]
    if config.corrupt_reference not in names:
        raise MribenchError(f"--corrupt-reference {config.corrupt_reference!r} is not a row "
                            f"of this run; choose one of {', '.join(names)}")


def _check_resume(plan: RunPlan, previous: dict[str, Any]) -> None:
    """A resumed run must have the same identity (a resume may add rows)."""
    if not previous:
        return
    root = plan.layout.root
    old = previous.get("identity")
    if not isinstance(old, dict):
        raise MribenchError(f"{root} was written by an older mribench (no run identity "
                            "in run.json); use --out NEW_FOLDER")
    differs = identity_diff(old, plan.identity())
    if differs:
        raise MribenchError(f"{root} was run with another configuration ("
                            f"{'; '.join(differs)}); resume with the same options, or use "
                            "--out NEW_FOLDER")


def prepare_run(plan: RunPlan, writer: RunWriter, previous: dict[str, Any]) -> dict[str, Any]:
    """Write ``run.json`` (status running) first, so a driver killed after this leaves a
    resumable folder, then each data set's split(s) and montage slices; returns the run
    record."""
    config = plan.config
    records = [_data_record(plan, data) for data in plan.data]
    first = records[0]
    info = {
        "run_id": plan.layout.root.name,
        "command": command_line(),
        "config": config.as_record(),
        "identity": plan.identity(),
        "versions": package_versions(),
        "git_revision": git_revision(),
        "machine": machine(),
        "device": plan.device,
        "seed": config.seeds[0],
        "seeds": list(config.seeds),
        "folds": config.folds,
        "threads": config.threads,
        "profile": config.profile,
        "image_size": config.image_size,
        "dataset": first["dataset"],
        "split": first["split"],
        "datasets": records if len(records) > 1 else [],
        "eval_sets": [{"name": e.name, "spec": e.spec.text, "split": e.split}
                      for e in plan.data[0].plan.eval_sets],
        "methods": [row for row, _ in plan.rows],
        "rows": {row: {"method": m.name, "params": m.params.as_dict()} for row, m in plan.rows},
        "executor": config.executor,
        "artefacts": {"corrupt": list(config.corrupt), "severities": list(config.severities),
                      "reference": config.corrupt_reference} if config.corrupt else None,
        "started": previous.get("started", now()),
        "ended": None,
        "status": "running",
    }
    writer.write_run(info)  # first: a driver killed after this leaves a resumable folder
    for data in plan.data:
        _write_data(plan, data)
    _make_corrupted(plan)
    last = plan.data[-1]
    remember_samples(last.plan.spec, str(config.data_dir) if config.data_dir else None,
                     config.image_size, last.dataset, last.samples)
    return info


def _make_corrupted(plan: RunPlan) -> None:
    """With ``--corrupt``: every corrupted copy of every evaluation set (each fold's test part,
    the other data sets, the ``--test-on`` sets), made once here, before any job, into the
    run's cache that every job then reads (parallel workers never make one twice)."""
    from mribench.results.layout import IN_DISTRIBUTION
    from mribench.run.execute import corrupted_copies, load_eval_samples

    config = plan.config
    if not config.corrupt:
        return
    data_dir = str(config.data_dir) if config.data_dir else None
    for data in plan.data:
        layout = plan.layout.for_dataset(data.plan.folder)
        sets = [(IN_DISTRIBUTION, split.parts[2]) for split in data.splits]
        sets += [(e.name, load_eval_samples(e.spec, e.split, config.image_size, data_dir))
                 for e in data.plan.eval_sets]
        for base, samples in sets:
            for _ in corrupted_copies(layout, base, samples, config.corrupt, config.severities):
                pass


def _write_data(plan: RunPlan, data: PlannedData) -> None:
    """One data set's split(s), folds and montage slices."""
    scoped = RunWriter(plan.layout.for_dataset(data.plan.folder))
    for fold, split in zip(data.plan.folds, data.splits, strict=True):
        scoped.write_split(split.manifest, fold)
    if data.folds_record is not None:
        scoped.write_folds(data.folds_record)
    _save_test_images(scoped, data.splits[0].parts[2], plan.config.split_seed)


def _data_record(plan: RunPlan, data: PlannedData) -> dict[str, Any]:
    """One data set's record for run.json: spec, evaluation sets, split or folds."""
    layout = plan.layout.for_dataset(data.plan.folder)
    first = data.splits[0]
    dataset = data.dataset
    split = {**first.describe(), **({} if first.path else
                                    {"path": layout.split_file_for(data.plan.folds[0]).name})}
    if data.folds_record is not None:
        split = {"name": f"{dataset.split_name}-{len(data.splits)}-fold", "folds":
                 len(data.splits), "sha256": data.sha256, "strategy": "k-fold",
                 "counts": [s.describe()["counts"] for s in data.splits]}
    return {"name": data.plan.folder or dataset.name, "spec": data.plan.spec.text,
            "eval_sets": [{"name": e.name, "spec": e.spec.text, "split": e.split}
                          for e in data.plan.eval_sets],
            "dataset": {"name": dataset.name, "spec": data.plan.spec.text,
                        "data_dir": str(dataset.data_dir) if dataset.data_dir else None,
                        "n_samples": len(data.samples), "fingerprint": dataset.fingerprint()},
            "split": split}


def dispatch(plan: RunPlan, on_row: Callable[[RowOutcome], None] | None = None,
             lease: str | None = None) -> list[RowOutcome]:
    """Run every job not finished yet through the executor; outcomes as they come.

    ``lease`` is the run's lock token: each job writes its final files only while the lock
    still holds it (:func:`mribench.results.lock.lease_holds`). The executor's iterator is
    closed on the way out, so an interrupted run stops (cancels) what it started at once.
    """
    config = plan.config
    jobs = [replace(job, lease=lease) for job in
            plan_jobs(config, plan.rows, plan.layout.root, plan.device,
                      tuple(d.plan for d in plan.data))]
    outcomes: list[RowOutcome] = []

    def report(outcome: RowOutcome) -> None:
        outcomes.append(outcome)
        if on_row:
            on_row(outcome)

    todo: list[Job] = []
    for job in jobs:
        if config.resume and job_finished(job):
            report(RowOutcome(job.row, "done", "resumed: finished in an earlier run", job.seed))
        else:
            todo.append(job)
    running = iter(plan.executor.map_jobs(todo))
    try:
        for _job, job_outcomes in running:
            for outcome in job_outcomes:
                report(outcome)
    finally:
        close = getattr(running, "close", None)
        if close is not None:  # a generator: run its clean-up (cancel, stop workers) now
            close()
    return outcomes


def _mark_failed(writer: RunWriter, info: dict[str, Any], exc: BaseException) -> None:
    """Best effort: run.json says "failed" (not "running"), with why."""
    if not info:
        return
    info.update(ended=now(), status="failed",
                reason=f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else
                type(exc).__name__)
    writer.write_run_failed(info)
