"""Run one job anywhere: load the data from the cache, fit, predict, score, write; never raise.

:func:`run_job` is what every executor calls (in this process, a spawned process, a dask
worker or a SLURM task). It needs only the :class:`~mribench.run.jobs.Job` and the run folder:
the data come from the shared data cache (:func:`mribench.data.load.load_dataset`), the split
from the run folder's ``split.json``. A failure is recorded in the job's folder (``status.json``
"failed", ``traceback.txt``) and returned, so one method's failure stops nothing.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import Method
from mribench.api.seeding import seed_everything
from mribench.api.types import Prediction, Sample
from mribench.atomic import atomic_write_json, atomic_write_text
from mribench.results.write import now, record_scores, write_status
from mribench.run.jobs import Job

__all__ = ["RowOutcome", "job_finished", "load_parts", "run_job"]

log = logging.getLogger("mribench")

#: Data sets already loaded in this process, by (spec, data_dir, image size).
_LOADED: dict[tuple[str, str | None, int], tuple[Any, list[Sample]]] = {}


@dataclass
class RowOutcome:
    name: str
    status: str
    reason: str | None = None
    seed: int | None = None


def load_samples(spec: str, data_dir: str | None, image_size: int,
                 show_progress: bool = False) -> tuple[Any, list[Sample]]:
    """A data set's samples, loaded once per process (from the on-disk data cache)."""
    from mribench.data.load import load_dataset

    key = (spec, data_dir, image_size)
    if key not in _LOADED:
        _LOADED.clear()  # keep one data set in memory (plus the one being loaded)
        _LOADED[key] = load_dataset(spec, data_dir=data_dir, image_size=image_size,
                                    show_progress=show_progress)
    return _LOADED[key]


def remember_samples(spec: str, data_dir: str | None, image_size: int, dataset: Any,
                     samples: list[Sample]) -> None:
    """Let jobs in this process reuse samples the driver has loaded already."""
    _LOADED.clear()
    _LOADED[(spec, data_dir, image_size)] = (dataset, samples)


def load_parts(job: Job) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, test) of the job's data set under the run's ``split.json``."""
    from mribench.split.manifest import apply, load_manifest

    _, samples = load_samples(job.dataset, job.data_dir, job.image_size, job.show_progress)
    manifest = load_manifest(job.run_dir / "split.json")
    return apply(manifest, samples, source=str(job.run_dir / "split.json"))


#: External evaluation sets already read in this process, by (spec, split, image size).
_EVAL_SETS: dict[tuple[str, str | None, int], list[Sample]] = {}


def load_eval_samples(spec: str, split: str | None, image_size: int) -> list[Sample]:
    """An external evaluation set: its labelled samples, or the test part of ``split``;
    read once per process (every job of a run scores the same sets)."""
    key = (spec, split, image_size)
    if key not in _EVAL_SETS:
        _EVAL_SETS[key] = _read_eval_samples(spec, split, image_size)
    return _EVAL_SETS[key]


def _read_eval_samples(spec: str, split: str | None, image_size: int) -> list[Sample]:
    from mribench.data.load import load_dataset
    from mribench.split.manifest import apply, split_for

    dataset, samples = load_dataset(spec, image_size=image_size)
    labelled = [s for s in samples if s.label in (0, 1)]
    if split:
        manifest, path = split_for(dataset.split_name, samples, split,
                                   official_parts=dataset.official_parts(),
                                   options=dataset.options)
        labelled = [s for s in apply(manifest, samples, source=str(path))[2]
                    if s.label in (0, 1)]
    if not labelled:
        raise MribenchError(f"--test-on {spec!r}: no labelled sample to score; give a data set "
                            "with labels (tumour / no tumour) or masks")
    return labelled


def job_finished(job: Job) -> bool:
    """Whether the job's folder holds a finished row (``status.json`` says done)."""
    from mribench.atomic import read_json

    status = job.folder / "status.json"
    try:
        return status.is_file() and read_json(status).get("status") == "done"
    except (OSError, ValueError):
        return False


def _tasks_of(method: Method, task: str | None) -> list[str]:
    return [t for t in method.tasks if task in (None, t)]


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


def _describe(job: Job, method: Method, variant: str | None) -> dict[str, Any]:
    return {"method": method.name, "row": job.row if variant is None else
            f"{job.row}+{variant}", "variant": variant, "kind": method.kind,
            "reference": method.reference, "params": method.params.as_dict(),
            "profile": method.profile, "seed": job.seed, "job": job.key,
            "time_capped": getattr(method.params, "max_minutes", None) is not None,
            "threads": _compute_threads(method.kind)}


def _method_logger(name: str, folder: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"mribench.method.{name}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(folder / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _score_rows(job: Job, method: Method, prediction: Prediction, samples: Sequence[Sample],
                tasks: list[str], subdir: str | None) -> None:
    """Write the scores of the base row and of each variant on one evaluation set."""
    for variant, pred in [(None, prediction), *prediction.variants.items()]:
        row = job.row if variant is None else f"{job.row}+{variant}"
        folder = job.run_dir / row / f"seed-{job.seed}"
        if subdir:
            folder = folder / "eval" / subdir
        folder.mkdir(parents=True, exist_ok=True)
        record_scores(folder, row, pred, samples, tasks, n_boot=job.n_boot, seed=job.seed)


def _answerable(tasks: list[str], samples: Sequence[Sample]) -> list[str]:
    """The tasks an evaluation set can score: segment needs known masks."""
    out = []
    for task in tasks:
        if task == "segment" and not any(s.mask_or_empty() is not None for s in samples):
            continue
        out.append(task)
    return out


def run_job(job: Job) -> list[RowOutcome]:
    """Fit, predict, score and record one job (and its variants); never raises."""
    folder = job.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "traceback.txt").unlink(missing_ok=True)
    logger, handler = _method_logger(f"{job.row}.{job.seed}", folder)
    method: Method | None = None
    device = job.device
    if device not in ("cpu", "cuda") or (device == "cuda" and job.resolve_on_worker):
        from mribench.run.device import resolve_device

        device = resolve_device(device)
    ctx = Context(device=device, seed=job.seed, profile=job.profile, workdir=folder,
                  cache=FeatureCache(job.run_dir / ".cache" / "features"),
                  show_progress=job.show_progress, method_name=job.row, logger=logger)
    try:
        method = job.build()
        tasks = _tasks_of(method, job.task)
        reason = method.skip(ctx)
        if reason:
            write_status(folder, "skipped", **_describe(job, method, None), reason=reason,
                         tasks=tasks)
            return [RowOutcome(job.row, "skipped", reason, job.seed)]
        train, val, test = load_parts(job)
        seed_everything(job.seed)
        ctx.log("fit", n_train=len(train), n_val=len(val), device=device, seed=job.seed)
        start = time.perf_counter()
        method.fit(train, val, ctx)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        prediction = method.predict(test, ctx)
        predict_s = time.perf_counter() - start
        timings = {"fit_s": fit_s, "predict_s": predict_s,
                   "predict_ms_per_image": 1000 * predict_s / max(len(test), 1)}
        ctx.log("done", **timings)
        atomic_write_json(folder / "history.json", ctx.history)
        try:
            _save_model(job, method, folder)
        except Exception as exc:  # a model that cannot be saved still has its scores
            ctx.log("model not saved", reason=f"{type(exc).__name__}: {exc}")
            logger.warning("model not saved: %s: %s", type(exc).__name__, exc)
        _score_rows(job, method, prediction, test, tasks, None)
        evaluated = {}
        for eval_set in job.eval_sets:
            samples = load_eval_samples(eval_set.spec, eval_set.split, job.image_size)
            eval_tasks = _answerable(tasks, samples)
            if not eval_tasks:
                evaluated[eval_set.name] = "skipped: no task of this method can be scored"
                continue
            _score_rows(job, method, method.predict(samples, ctx), samples, eval_tasks,
                        eval_set.name)
            evaluated[eval_set.name] = "done"
        outcomes = []
        for variant in prediction.variants:
            row = f"{job.row}+{variant}"
            write_status(job.run_dir / row / f"seed-{job.seed}", "done",
                         **_describe(job, method, variant), reason=None, timings=timings,
                         tasks=tasks, eval_sets=evaluated)
            outcomes.append(RowOutcome(row, "done", None, job.seed))
        write_status(folder, "done", **_describe(job, method, None), reason=None,
                     timings=timings, tasks=tasks, eval_sets=evaluated)
        return [RowOutcome(job.row, "done", None, job.seed), *outcomes]
    except Exception as exc:  # one job's failure must not stop the others
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:
            atomic_write_text(folder / "traceback.txt", traceback.format_exc())
            atomic_write_json(folder / "history.json", ctx.history)
            logger.error("failed: %s", reason)
            described = (_describe(job, method, None) if method is not None else
                         {"method": job.method, "row": job.row, "seed": job.seed,
                          "job": job.key})
            write_status(folder, "failed", **described, reason=reason,
                         tasks=_tasks_of(method, job.task) if method is not None else [])
        except OSError as write_error:  # e.g. the disk is full: say so, still return
            reason = f"{reason} (and the failure could not be recorded: {write_error})"
        return [RowOutcome(job.row, "failed", reason, job.seed)]
    finally:
        logger.removeHandler(handler)
        handler.close()


def _save_model(job: Job, method: Method, folder: Path) -> None:
    """The fitted pipeline as ``model/`` (when the model layer is installed)."""
    try:
        from mribench.model import save_model
    except ImportError:
        return
    info = {"image_size": job.image_size, "dataset": job.dataset, "seed": job.seed,
            "row": job.row, "profile": job.profile, "saved": now()}
    run_file = job.run_dir / "run.json"
    if run_file.is_file():
        from mribench.atomic import read_json

        identity = read_json(run_file).get("identity", {})
        info["split_sha256"] = identity.get("split_sha256")
        info["data_fingerprint"] = identity.get("data_fingerprint")
    save_model(method, folder / "model", info=info)
