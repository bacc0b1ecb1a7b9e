"""Run one job anywhere: load the data from the cache, fit, predict, score, write; never raise.

:func:`run_job` is what every executor calls (in this process, a spawned process, a dask
worker or a SLURM task). It needs only the :class:`~mribench.run.jobs.Job` and the run folder:
the data come from the shared data cache (:func:`mribench.data.load.load_dataset`), the split
from the run folder's ``split.json``. A failure is recorded in the job's folder (``status.json``
"failed", ``traceback.txt``) and returned, so one method's failure stops nothing.

A segmenter predicts into disk-backed stacks (:mod:`mribench.api.stack`) in the job's scratch
folder (``Context.scratch``, :meth:`~mribench.results.layout.RunLayout.scratch_dir`); the job
empties it when it starts (what a killed try left), after fitting (the val stacks), once the
scores of each evaluation set are written, and when it ends or fails, so the folder never
outlives the job and scoring one set never holds another's stacks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import Method
from mribench.api.seeding import seed_everything
from mribench.api.specs import DatasetSpec
from mribench.api.types import Prediction, Sample
from mribench.cpu_kernels import describe as describe_kernels
from mribench.cpu_kernels import job_kernels
from mribench.eval.metrics import evaluate
from mribench.results.layout import IN_DISTRIBUTION, RunLayout, corrupted_set
from mribench.results.lock import lease_holds
from mribench.results.read import job_status
from mribench.results.write import RunWriter, now
from mribench.run.jobs import Job

__all__ = ["RowOutcome", "corrupted_copies", "job_finished", "load_parts", "run_job"]

log = logging.getLogger("mribench")

#: Data sets already loaded in this process, by (spec, data_dir, image size).
_LOADED: dict[tuple[str, str | None, int], tuple[Any, list[Sample]]] = {}


@dataclass
class RowOutcome:
    name: str
    status: str
    reason: str | None = None
    seed: int | None = None


def load_samples(spec: DatasetSpec, data_dir: str | None, image_size: int,
                 show_progress: bool = False) -> tuple[Any, list[Sample]]:
    """A data set's samples, loaded once per process (from the on-disk data cache)."""
    from mribench.data.load import load_dataset

    key = (spec.text, data_dir, image_size)
    if key not in _LOADED:
        _LOADED.clear()  # keep one data set in memory (plus the one being loaded)
        _LOADED[key] = load_dataset(spec, data_dir=data_dir, image_size=image_size,
                                    show_progress=show_progress)
    return _LOADED[key]


def remember_samples(spec: DatasetSpec, data_dir: str | None, image_size: int, dataset: Any,
                     samples: list[Sample]) -> None:
    """Let jobs in this process reuse samples the driver has loaded already."""
    _LOADED.clear()
    _LOADED[(spec.text, data_dir, image_size)] = (dataset, samples)


def load_parts(job: Job) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, test) of the job's data set under the run's ``split.json``."""
    from mribench.split.manifest import apply, load_manifest

    _, samples = load_samples(job.dataset, job.data_dir, job.image_size, job.show_progress)
    split_file = job.layout.split_file_for(job.fold)
    return apply(load_manifest(split_file), samples, source=str(split_file))


#: External evaluation sets already read in this process, by (spec, split, image size).
_EVAL_SETS: dict[tuple[str, str | None, int, str | None], list[Sample]] = {}


def load_eval_samples(spec: DatasetSpec, split: str | None, image_size: int,
                      data_dir: str | None = None) -> list[Sample]:
    """An external evaluation set: its labelled samples, or the test part of ``split``;
    read once per process (every job of a run scores the same sets). ``data_dir``
    (``--data-dir``) serves a spec without a path of its own (``br35h`` as the other data set
    of ``--dataset lgg:PATH,br35h``)."""
    key = (spec.text, split, image_size, data_dir)
    if key not in _EVAL_SETS:
        _EVAL_SETS[key] = _read_eval_samples(spec, split, image_size, data_dir)
    return _EVAL_SETS[key]


def _read_eval_samples(spec: DatasetSpec, split: str | None, image_size: int,
                       data_dir: str | None = None) -> list[Sample]:
    from mribench.data.load import load_dataset
    from mribench.split.manifest import apply, split_for

    dataset, samples = load_dataset(spec, data_dir=data_dir, image_size=image_size)
    labelled = [s for s in samples if s.label in (0, 1)]
    if split:
        manifest, path = split_for(dataset.split_name, samples, split,
                                   official_parts=dataset.official_parts(),
                                   options=dataset.options)
        labelled = [s for s in apply(manifest, samples, source=str(path))[2]
                    if s.label in (0, 1)]
    if not labelled:
        raise MribenchError(f"--test-on {spec.text!r}: no labelled sample to score; give a data set "
                            "with labels (tumour / no tumour) or masks")
    return labelled


def job_finished(job: Job) -> bool:
    """Whether the job's folder holds a finished job (``status.json`` says done)."""
    try:
        return job_status(job.folder)[0] == "done"
    except MribenchError:  # a damaged status.json: run the job again
        return False


def _orphaned(job: Job) -> list[RowOutcome] | None:
    """The outcome of a job that lost the run's lease (its driver is gone, or another driver
    took the run over), which then writes nothing more into the run; None while it holds it."""
    if job.lease is None or lease_holds(job.layout, job.lease):
        return None
    return [RowOutcome(job.row, "failed", "not recorded: the run's driver is gone (its lock "
                       "no longer holds this job's lease)", job.seed)]


def _tasks_of(method: Method, task: str | None) -> list[str]:
    return [t for t in method.tasks if task in (None, t)]


@contextlib.contextmanager
def compute_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` BLAS/OpenMP (threadpoolctl) and torch intra-op threads
    and with torch's deterministic algorithms (cuDNN deterministic, its autotuner off); the
    previous settings come back after.

    Every executor runs a job inside this, so a job computes with the threads its
    configuration says whatever the machine's cores or the process's ``OMP_NUM_THREADS``: a
    deep row's floating-point sums, and so its weights, depend on the thread count. Kernels
    that have no deterministic version only warn (``warn_only``): they are not used on the CPU
    by the shipped methods.
    """
    # cuBLAS is deterministic only with a fixed workspace, read when CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch
    from threadpoolctl import threadpool_limits

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with threadpool_limits(threads):
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.set_num_threads(before[0])
            torch.use_deterministic_algorithms(before[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


def _compute_threads(kind: str) -> dict[str, int]:
    """The threads the job computed with: torch's intra-op threads for deep methods (their
    floating-point sums, and so their trained weights, depend on it), BLAS/OpenMP for all."""
    from threadpoolctl import threadpool_info

    threads = {"blas": max((int(p.get("num_threads", 0)) for p in threadpool_info()),
                           default=0)}
    if kind == "deep":
        import torch

        threads["torch"] = int(torch.get_num_threads())
    return threads


def _check_kernels(job: Job, logger: logging.Logger) -> None:
    """Log a warning when a job asked for portable CPU kernels and its process does not have
    them (started without mribench's environment, or torch or numpy loaded before mribench):
    its numbers are then this CPU's only, as ``status.json``'s ``kernels`` records."""
    if job.cpu_kernels != "portable":
        return
    info = describe_kernels(job.cpu_kernels)
    if not info["portable"]:
        logger.warning("this job computes with non-portable CPU kernels (%s): its numbers may "
                       "differ on another CPU; start the run in a fresh process",
                       ", ".join(f"{k}={v}" for k, v in info.items() if k != "portable"))


def _describe(job: Job, method: Method, variant: str | None) -> dict[str, Any]:
    return {"method": method.name, "row": job.row if variant is None else
            f"{job.row}+{variant}", "variant": variant, "kind": method.kind,
            "reference": method.reference, "params": method.params.as_dict(),
            "profile": method.profile, "seed": job.seed, "job": job.key.text,
            "time_capped": getattr(method.params, "max_minutes", None) is not None,
            "threads": _compute_threads(method.kind),
            "kernels": describe_kernels(job.cpu_kernels)}


def _method_logger(name: str, log_file: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"mribench.method.{name}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _score_rows(job: Job, ctx: Context, writer: RunWriter, prediction: Prediction,
                samples: Sequence[Sample], tasks: list[str], eval_set: str) -> None:
    """Score the base row and each variant on one evaluation set, and write the scores; the
    prediction's disk-backed stacks (the job's scratch folder) are removed after, written
    or not: the next evaluation set predicts into an empty folder."""
    try:
        for variant, pred in [(None, prediction), *prediction.variants.items()]:
            key = job.key if variant is None else job.key.variant(variant)
            metrics, per_case = evaluate(pred, samples, tasks, n_boot=job.n_boot,
                                         seed=job.seed)
            writer.write_scores(key, key.row, metrics, per_case, pred, eval_set)
    finally:
        ctx.clear_scratch()


def _answerable(tasks: list[str], samples: Sequence[Sample]) -> list[str]:
    """The tasks an evaluation set can score: segment needs known masks."""
    out = []
    for task in tasks:
        if task == "segment" and not any(s.mask_or_empty() is not None for s in samples):
            continue
        out.append(task)
    return out


def _context(job: Job, logger: logging.Logger) -> Context:
    device = job.device
    if device not in ("cpu", "cuda") or (device == "cuda" and job.resolve_on_worker):
        from mribench.run.device import resolve_device

        device = resolve_device(device)
    return Context(device=device, seed=job.seed, profile=job.profile, workdir=job.folder,
                   cache=FeatureCache(job.layout.feature_cache_dir),
                   show_progress=job.show_progress, method_name=job.row, logger=logger,
                   scratch=job.layout.scratch_dir(job.key))


def run_job(job: Job) -> list[RowOutcome]:
    """Fit, predict, score and record one job (and its variants); never raises."""
    orphaned = _orphaned(job)
    if orphaned:
        return orphaned
    writer = RunWriter(job.layout)
    writer.start_job(job.key)
    logger, handler = _method_logger(f"{job.row}.{job.seed}", job.layout.log_file(job.key))
    ctx = _context(job, logger)
    ctx.clear_scratch()  # what a killed try of this job left
    built: list[Method] = []
    try:
        with compute_threads(job.threads), job_kernels(job.cpu_kernels):
            _check_kernels(job, logger)
            return _fit_and_score(job, ctx, writer, built)
    except Exception as exc:  # one job's failure must not stop the others
        return _record_failure(job, ctx, writer, built[0] if built else None, exc, logger)
    finally:
        ctx.clear_scratch()
        logger.removeHandler(handler)
        handler.close()


def _fit_and_score(job: Job, ctx: Context, writer: RunWriter, built: list[Method]
                   ) -> list[RowOutcome]:
    """The recipe of a job: build, fit on train (+val), predict test, save, score, record."""
    method = job.build()
    built.append(method)
    tasks = _tasks_of(method, job.task)
    reason = method.skip(ctx)
    if reason:
        writer.write_status(job.key, "skipped", **_describe(job, method, None), reason=reason,
                            tasks=tasks)
        return [RowOutcome(job.row, "skipped", reason, job.seed)]
    train, val, test = load_parts(job)
    seed_everything(job.seed)
    ctx.log("fit", n_train=len(train), n_val=len(val), device=ctx.device, seed=job.seed)
    start = time.perf_counter()
    method.fit(train, val, ctx)
    ctx.clear_scratch()  # the stacks of val predicted while fitting
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    prediction = method.predict(test, ctx)
    predict_s = time.perf_counter() - start
    orphaned = _orphaned(job)
    if orphaned:  # the driver died while this job fitted: write nothing into the run
        return orphaned
    timings = {"fit_s": fit_s, "predict_s": predict_s,
               "predict_ms_per_image": 1000 * predict_s / max(len(test), 1)}
    ctx.log("done", **timings)
    writer.write_history(job.key, ctx.history)
    try:
        _save_model(job, method)
    except Exception as exc:  # a model that cannot be saved still has its scores
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # but a full disk fails
            raise MribenchError(f"model not saved ({os.strerror(errno.ENOSPC)}); free some "
                                "space, then rerun with --resume") from exc  # --resume reruns
        ctx.log("model not saved", reason=f"{type(exc).__name__}: {exc}")
        ctx.logger.warning("model not saved: %s: %s", type(exc).__name__, exc)
    _score_rows(job, ctx, writer, prediction, test, tasks, IN_DISTRIBUTION)
    start = time.perf_counter()
    evaluated = _score_corrupted(job, method, ctx, writer, IN_DISTRIBUTION, test, tasks)
    if job.corrupt:  # the time the artefact axis adds to the job
        timings["corrupt_s"] = time.perf_counter() - start
    evaluated.update(_score_eval_sets(job, method, ctx, writer, tasks, timings))
    orphaned = _orphaned(job)
    if orphaned:  # "done" only under the run's lease: a resume never finds an orphan's row
        return orphaned
    outcomes = []
    for variant in prediction.variants:
        key = job.key.variant(variant)
        writer.write_status(key, "done", **_describe(job, method, variant), reason=None,
                            timings=timings, tasks=tasks, eval_sets=evaluated)
        outcomes.append(RowOutcome(key.row, "done", None, job.seed))
    writer.write_status(job.key, "done", **_describe(job, method, None), reason=None,
                        timings=timings, tasks=tasks, eval_sets=evaluated)
    return [RowOutcome(job.row, "done", None, job.seed), *outcomes]


def _score_eval_sets(job: Job, method: Method, ctx: Context, writer: RunWriter,
                     tasks: list[str], timings: dict[str, float]) -> dict[str, str]:
    """Predict and score every external evaluation set (and its corrupted copies); what
    happened on each, by name. The corrupted sets' time is added to ``corrupt_s``."""
    evaluated = {}
    for eval_set in job.eval_sets:
        samples = load_eval_samples(eval_set.spec, eval_set.split, job.image_size,
                                    job.data_dir)
        eval_tasks = _answerable(tasks, samples)
        if not eval_tasks:
            evaluated[eval_set.name] = "skipped: no task of this method can be scored"
            continue
        _score_rows(job, ctx, writer, method.predict(samples, ctx), samples, eval_tasks,
                    eval_set.name)
        evaluated[eval_set.name] = "done"
        if job.corrupt:
            start = time.perf_counter()
            evaluated.update(_score_corrupted(job, method, ctx, writer, eval_set.name, samples,
                                              eval_tasks))
            timings["corrupt_s"] = timings.get("corrupt_s", 0.0) + time.perf_counter() - start
    return evaluated


def corrupted_copies(job_layout: RunLayout, base: str, samples: Sequence[Sample],
                     corrupt: Sequence[str], severities: Sequence[int]
                     ) -> Iterator[tuple[str, list[Sample]]]:
    """(name, samples) of every corrupted copy of evaluation set ``base``: read from the
    run's cache (``job_layout.corrupted_cache_dir``), made there first when absent."""
    from mribench.data.corrupted import corrupted_samples, ids_digest

    digest = ids_digest(samples)
    for artefact in corrupt:
        for severity in severities:
            name = corrupted_set(base, artefact, severity)
            folder = job_layout.corrupted_cache_dir(name, digest)
            yield name, corrupted_samples(samples, artefact, severity, folder)


def _score_corrupted(job: Job, method: Method, ctx: Context, writer: RunWriter,
                     base: str, samples: Sequence[Sample], tasks: list[str]) -> dict[str, str]:
    """Predict and score ``samples`` (the evaluation set ``base``) under every artefact and
    severity of the job (``--corrupt``): the fitted method only predicts, so no corrupted
    image reaches training or selection. The corrupted images come from the run's cache
    (made once, by the driver, for all jobs); their masks are the clean ones."""
    evaluated = {}
    if not job.corrupt:
        return evaluated
    for name, corrupted in corrupted_copies(job.layout, base, samples, job.corrupt,
                                            job.severities):
        _score_rows(job, ctx, writer, method.predict(corrupted, ctx), corrupted, tasks, name)
        evaluated[name] = "done"
    return evaluated


def _record_failure(job: Job, ctx: Context, writer: RunWriter, method: Method | None,
                    exc: Exception, logger: logging.Logger) -> list[RowOutcome]:
    """Record a failed job (traceback, history, status) and say why; never raises."""
    orphaned = _orphaned(job)
    if orphaned:
        return orphaned
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    try:
        writer.write_traceback(job.key, traceback.format_exc())
        writer.write_history(job.key, ctx.history)
        logger.error("failed: %s", reason)
        described = (_describe(job, method, None) if method is not None else
                     {"method": job.method, "row": job.row, "seed": job.seed,
                      "job": job.key.text})
        writer.write_status(job.key, "failed", **described, reason=reason,
                            tasks=_tasks_of(method, job.task) if method is not None else [])
    except OSError as write_error:  # e.g. the disk is full: say so, still return
        reason = f"{reason} (and the failure could not be recorded: {write_error})"
    return [RowOutcome(job.row, "failed", reason, job.seed)]


def _save_model(job: Job, method: Method) -> None:
    """The fitted pipeline as the job's ``model/`` (when the model layer is installed)."""
    try:
        from mribench.model import save_model
    except ImportError:
        return
    info = {"image_size": job.image_size, "dataset": job.dataset.text, "seed": job.seed,
            "row": job.row, "profile": job.profile, "saved": now()}
    run_file = job.layout.run_file
    if run_file.is_file():
        from mribench.atomic import read_json

        identity = read_json(run_file).get("identity", {})
        info["split_sha256"] = identity.get("split_sha256")
        info["data_fingerprint"] = identity.get("data_fingerprint")
    save_model(method, job.layout.model_dir(job.key), info=info)
