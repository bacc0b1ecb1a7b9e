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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mribench import __version__
from mribench.api.errors import MribenchError
from mribench.api.types import Sample
from mribench.atomic import atomic_save_npz, atomic_write_json, atomic_write_text, read_json
from mribench.results.write import now
from mribench.run.config import RunConfig, identity_diff
from mribench.run.device import resolve_device
from mribench.run.execute import RowOutcome, job_finished, remember_samples
from mribench.run.executors import make_executor
from mribench.run.jobs import EvalSet, Job, eval_set_name, plan_jobs, plan_methods
from mribench.run.provenance import command_line, git_revision, machine, package_versions

__all__ = ["RowOutcome", "RunConfig", "RunOutcome", "run_benchmark"]

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


def _run_id(config: RunConfig, dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{dataset_name}-{config.profile}"


def _save_test_images(run_dir: Path, test: Sequence[Sample], seed: int) -> None:
    """Keep a few test slices (masked ones first) for the report's montage."""
    rng = np.random.default_rng(seed)
    masked = [s for s in test if s.has_mask and s.mask.any()]
    chosen_ids = {s.id for s in masked}
    others = [s for s in test if s.id not in chosen_ids]
    order = list(rng.permutation(len(masked)))[:MONTAGE_SLICES]
    chosen = [masked[i] for i in order]
    if len(chosen) < MONTAGE_SLICES and others:
        extra = rng.permutation(len(others))[: MONTAGE_SLICES - len(chosen)]
        chosen += [others[i] for i in extra]
    if not chosen:
        return
    empty = np.zeros_like(chosen[0].image, dtype=bool)
    atomic_save_npz(
        run_dir / "test_images.npz",
        ids=np.array([s.id for s in chosen]),
        images=np.stack([s.image for s in chosen]).astype(np.float16),
        masks=np.stack([s.mask if s.mask is not None else empty for s in chosen]),
        labels=np.array([s.label for s in chosen]),
    )


# --------------------------------------------------------------------------- the run folder


class RunLock:
    """``<run>/.lock`` with the owner's pid; a lock of a dead process is taken over."""

    def __init__(self, run_dir: Path, on_message: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / ".lock"
        self.on_message = on_message or log.warning

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner):
                    raise MribenchError(
                        f"{self.path.parent} is being written by another bench run (pid "
                        f"{owner}); wait for it, or use --out NEW_FOLDER") from None
                self.on_message(f"taking over the lock {self.path} left by a process that "
                                f"is gone (pid {owner})")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            return
        raise MribenchError(f"cannot take the lock {self.path}; delete it if no bench run "
                            "is writing this folder")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writable_error(path: Path, exc: OSError) -> MribenchError:
    reason = exc.strerror or str(exc)
    fix = ("free some space, then rerun with --resume" if exc.errno == errno.ENOSPC else
           "choose a folder you can write with --out")
    return MribenchError(f"cannot write {path} ({reason}); {fix}")


def prepare_run_dir(run_dir: Path, resume: bool) -> dict[str, Any]:
    """Check the output folder before anything trains; returns the previous run.json or {}.

    New or empty: fine. Holding a run: needs ``resume``. Anything else (an unrelated,
    non-empty folder): refused, so results are never mixed into other files.
    """
    run_file = run_dir / "run.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise MribenchError(f"--out {run_dir} is a file; give a folder")
    if run_file.is_file():
        if not resume:
            raise MribenchError(f"{run_dir} already holds a run; pass --resume to continue it "
                                f"or --out NEW_FOLDER for a new one")
        try:
            previous = read_json(run_file)
        except (OSError, ValueError) as exc:
            raise MribenchError(f"{run_file} is damaged ({exc}); use --out NEW_FOLDER") from exc
        if not isinstance(previous, dict):
            raise MribenchError(f"{run_file} is not a run record; use --out NEW_FOLDER")
        return previous
    if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
        raise MribenchError(f"--out {run_dir} is not empty and holds no run; give a new or "
                            "empty folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _writable_error(run_dir, exc) from None
    return {}


# --------------------------------------------------------------------------- the run


def run_benchmark(config: RunConfig, *, on_row: Callable[[RowOutcome], None] | None = None,
                  on_message: Callable[[str], None] | None = None) -> RunOutcome:
    """Run ``config``; returns the results folder and each row's outcome (one per job).

    Raises :class:`~mribench.api.errors.MribenchError` for bad input found before training
    (unknown method, bad parameter, missing data, a manifest that does not fit the data, an
    output folder that cannot be used) and when the results cannot be written (disk full).
    """
    from mribench.data.load import load_dataset
    from mribench.run.execute import load_eval_samples
    from mribench.split.choose import choose_split
    from mribench.split.manifest import save_manifest

    # Remote executors (dask, SLURM) resolve "auto"/"cuda" on the node that runs the job.
    device = resolve_device(config.device) if config.executor == "local" else config.device
    rows = plan_methods(config)
    executor = make_executor(config.executor, config.jobs, config.executor_options)
    dataset, samples = load_dataset(config.dataset, data_dir=config.data_dir,
                                    image_size=config.image_size,
                                    show_progress=config.show_progress)
    # An explicit --task is checked strictly; otherwise segment is checked only where the
    # data set has masks (class folders have none; their segmenters still answer classify).
    tasks = {config.task} if config.task else None
    split = choose_split(dataset, samples, config.split, seed=config.split_seed, tasks=tasks)
    train, val, test = split.parts
    taken: set[str] = set()
    eval_sets = tuple(EvalSet(eval_set_name(spec, taken), spec, config.test_split)
                      for spec in config.test_on)
    for eval_set in eval_sets:  # fail early on a bad --test-on (and warm the data cache)
        load_eval_samples(eval_set.spec, eval_set.split, config.image_size)

    run_dir = Path(config.out) if config.out else config.results_root / _run_id(config, dataset.name)
    previous = prepare_run_dir(run_dir, config.resume)
    identity = config.identity(
        {row: {"method": m.name, "params": m.params.as_dict()} for row, m in rows},
        split.sha256, dataset.fingerprint(), __version__)
    if previous:
        old = previous.get("identity")
        if not isinstance(old, dict):
            raise MribenchError(f"{run_dir} was written by an older mribench (no run identity "
                                "in run.json); use --out NEW_FOLDER")
        differs = identity_diff(old, identity)
        if differs:
            raise MribenchError(f"{run_dir} was run with another configuration ("
                                f"{'; '.join(differs)}); resume with the same options, or use "
                                "--out NEW_FOLDER")
    lock = RunLock(run_dir, on_message)
    lock.acquire()
    info: dict[str, Any] = {}
    try:
        save_manifest(split.manifest, run_dir / "split.json")
        info = {
            "run_id": run_dir.name,
            "command": command_line(),
            "config": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(config).items()},
            "identity": identity,
            "versions": package_versions(),
            "git_revision": git_revision(),
            "machine": machine(),
            "device": device,
            "seed": config.seeds[0],
            "seeds": list(config.seeds),
            "profile": config.profile,
            "image_size": config.image_size,
            "dataset": {"name": dataset.name, "spec": config.dataset,
                        "data_dir": str(dataset.data_dir) if dataset.data_dir else None,
                        "n_samples": len(samples), "fingerprint": dataset.fingerprint()},
            "split": {**split.describe(), **({} if split.path else {"path": "split.json"})},
            "eval_sets": [{"name": e.name, "spec": e.spec, "split": e.split}
                          for e in eval_sets],
            "methods": [row for row, _ in rows],
            "rows": {row: {"method": m.name, "params": m.params.as_dict()} for row, m in rows},
            "executor": config.executor,
            "started": previous.get("started", now()),
            "ended": None,
            "status": "running",
        }
        atomic_write_json(run_dir / "run.json", info)
        _save_test_images(run_dir, test, config.split_seed)
        remember_samples(config.dataset, str(config.data_dir) if config.data_dir else None,
                         config.image_size, dataset, samples)

        jobs = plan_jobs(config, rows, run_dir, device, eval_sets)
        outcomes: list[RowOutcome] = []
        todo: list[Job] = []
        for job in jobs:
            if config.resume and job_finished(job):
                outcome = RowOutcome(job.row, "done", "resumed: finished in an earlier run",
                                     job.seed)
                outcomes.append(outcome)
                if on_row:
                    on_row(outcome)
            else:
                todo.append(job)
        for _job, job_outcomes in executor.map_jobs(todo):
            for outcome in job_outcomes:
                outcomes.append(outcome)
                if on_row:
                    on_row(outcome)
        if any(o.reason and "No space left" in o.reason for o in outcomes):
            raise OSError(errno.ENOSPC, "No space left on device")
        info["ended"] = now()
        info["status"] = "failed" if any(o.status == "failed" for o in outcomes) else "done"
        atomic_write_json(run_dir / "run.json", info)
        return RunOutcome(run_dir, outcomes)
    except OSError as exc:
        _mark_failed(run_dir, info, exc)
        raise _writable_error(run_dir, exc) from None
    except BaseException as exc:
        _mark_failed(run_dir, info, exc)
        raise
    finally:
        lock.release()


def _mark_failed(run_dir: Path, info: dict[str, Any], exc: BaseException) -> None:
    """Best effort: run.json says "failed" (not "running"), with why."""
    if not info:
        return
    info.update(ended=now(), status="failed",
                reason=f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else
                type(exc).__name__)
    try:
        atomic_write_json(run_dir / "run.json", info)
    except OSError:
        try:  # a tiny in-place write may still fit where a temp file did not
            atomic_write_text(run_dir / "run.json", '{"status": "failed"}\n')
        except OSError:
            pass
