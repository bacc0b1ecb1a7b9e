"""Scale-out executors: ``--executor dask`` (dask.distributed) and ``--executor slurm``
(SLURM job arrays through submitit).

Both run the same :func:`~mribench.run.execute.run_job` as the local executors: a job names its
method, params, seed and run folder and loads its data from the shared data cache, so the run
folder and the data cache (``$MRIBENCH_CACHE``) must be on a file system the workers share.

- ``dask``: ``scheduler=ADDRESS`` joins a running cluster (``Client(ADDRESS)``); without it a
  ``LocalCluster`` of ``--jobs`` single-threaded worker processes is started (and closed at the
  end). Options: ``scheduler``, ``dashboard`` (address, e.g. ``:8787``; off by default),
  ``memory_limit`` (per worker, e.g. ``4GB``; dask's default otherwise).
- ``slurm``: one job array per kind of job (deep jobs on ``--device cuda`` ask for a GPU each),
  its files in ``<run>/.submitit/``. Options (:func:`slurm_parameters`): ``partition``,
  ``time`` (minutes), ``cpus`` (per job), ``gpus`` (per job), ``mem_gb``,
  ``array_parallelism`` (default ``--jobs`` when above 1), ``account``, ``qos`` and
  ``cluster=slurm|local|debug`` (``local``/``debug`` run the array on this machine, for tests).

Every job pins BLAS/OpenMP and torch to its configured threads (``--threads``, part of the
run's identity, so a node with more cores gives the same numbers) in the thread that runs it. A job whose worker died (killed, out of memory, time limit) comes back as a
failed row with the reason; its folder has no ``status.json``, so ``--resume`` reruns it.

dask and submitit are optional (``pip install "mribench[cluster]"``); this module imports
them only when an executor is made.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from mribench.api.errors import MribenchError
from mribench.run.execute import RowOutcome, run_job
from mribench.run.executor_base import THREAD_VARS, pin_threads
from mribench.run.jobs import Job

__all__ = ["DASK_OPTIONS", "SLURM_OPTIONS", "DaskExecutor", "SlurmExecutor", "make_dask",
           "make_slurm", "run_pinned", "slurm_parameters"]

log = logging.getLogger("mribench")

#: ``--executor-option`` keys of ``--executor dask``.
DASK_OPTIONS = ("dashboard", "memory_limit", "scheduler")
#: ``--executor-option`` keys of ``--executor slurm`` and the submitit parameter each sets
#: (``cluster`` picks submitit's executor instead).
SLURM_OPTIONS = {
    "partition": "slurm_partition",
    "time": "timeout_min",
    "cpus": "cpus_per_task",
    "gpus": "gpus_per_node",
    "mem_gb": "mem_gb",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "cluster": None,
}
SLURM_CLUSTERS = ("slurm", "local", "debug")
INSTALL = 'pip install "mribench[cluster]"'


def run_pinned(job: Job) -> list[RowOutcome]:
    """:func:`run_job` with BLAS/OpenMP and torch pinned to the job's threads in the calling
    thread (what a dask worker thread or a SLURM task runs)."""
    pin_threads(job.threads)
    return run_job(job)


def _died(job: Job, exc: BaseException, what: str = "worker died") -> list[RowOutcome]:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return [RowOutcome(job.row, "failed", f"{what}: {detail}", job.seed)]


def _unknown(executor: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise MribenchError(f"--executor {executor}: unknown --executor-option "
                            f"{', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _positive_int(executor: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MribenchError(f"--executor {executor}: option {key} must be an integer of at "
                            f"least {minimum}, got {value!r}")
    return value


# --------------------------------------------------------------------------- dask


class DaskExecutor:
    """Jobs on a dask.distributed cluster: an existing one (``scheduler``) or a LocalCluster
    of ``workers`` single-threaded processes started for this run."""

    def __init__(self, workers: int, scheduler: str | None = None,
                 dashboard: str | None = None, memory_limit: str | int | None = None) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self.dashboard = dashboard
        self.memory_limit = memory_limit

    def _connect(self) -> tuple[Any, Any]:
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                return Client(self.scheduler), None
            except (OSError, TimeoutError) as exc:
                raise MribenchError(f"--executor dask: cannot reach the scheduler at "
                                    f"{self.scheduler} ({exc}); start it, or drop "
                                    "scheduler= to use a local cluster") from None
        # Thread limits reach the workers through their environment, set before they start
        # (and again whenever the nanny restarts one), before numpy loads its BLAS.
        env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        env.update({k: "1" for k in THREAD_VARS})
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                   processes=True, dashboard_address=self.dashboard,
                                   memory_limit=self.memory_limit or "auto",
                                   silence_logs=logging.ERROR)
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        if not jobs:
            return
        from distributed import as_completed

        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        client, cluster = self._connect()
        futures: dict[Any, Job] = {}
        try:
            tag = uuid.uuid4().hex[:8]
            for job in jobs:
                future = client.submit(run_pinned, job, pure=False,
                                       key=f"mribench-{job.key}-{tag}")
                futures[future] = job
            for future in as_completed(futures):
                job = futures.pop(future)
                try:
                    outcomes = future.result()
                except Exception as exc:  # KilledWorker, a lost cluster, ...
                    outcomes = _died(job, exc)
                future.release()
                yield job, outcomes
        finally:
            if futures:
                try:
                    client.cancel(list(futures))
                except Exception:  # pragma: no cover - best effort on the way out
                    pass
            client.close()
            if cluster is not None:
                cluster.close()
            for k, v in saved.items():  # dask sets the workers' variables here too
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def make_dask(jobs: int, **options: Any) -> DaskExecutor:
    """``--executor dask`` (entry point): its options checked, dask.distributed present."""
    _unknown("dask", options, DASK_OPTIONS)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MribenchError(f"--executor dask needs dask.distributed: {INSTALL}") from None
    scheduler = options.get("scheduler")
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
        raise MribenchError(f"--executor dask: scheduler must be an address such as "
                            f"tcp://HOST:8786, got {scheduler!r}")
    dashboard = options.get("dashboard")
    return DaskExecutor(jobs, scheduler=scheduler.strip() if scheduler else None,
                        dashboard=str(dashboard) if dashboard not in (None, "") else None,
                        memory_limit=options.get("memory_limit"))


# --------------------------------------------------------------------------- slurm


def _needs_gpu(job: Job) -> bool:
    """A deep method's job on ``--device cuda`` asks for a GPU (``auto`` asks for none and
    uses one only where the node has it; the device is resolved on the node)."""
    if job.device != "cuda":
        return False
    from mribench.api import registry

    cls = job.method_cls or registry.get_method(job.method)
    return getattr(cls, "kind", "classical") == "deep"


def slurm_parameters(options: dict[str, Any], jobs: Sequence[Job] = (),
                     parallel: int = 1) -> dict[str, Any]:
    """submitit's ``update_parameters`` keywords for ``--executor-option`` ``options``.

    ``partition`` -> ``slurm_partition``, ``time`` (minutes) -> ``timeout_min``, ``cpus`` ->
    ``cpus_per_task`` (default: the jobs' ``--threads``), ``gpus`` -> ``gpus_per_node``, ``mem_gb`` -> ``mem_gb``,
    ``array_parallelism`` -> ``slurm_array_parallelism`` (default ``parallel``, the run's
    ``--jobs``, when above 1), ``account``/``qos`` -> ``slurm_account``/``slurm_qos``.
    ``cluster`` is checked (slurm, local or debug) but is no parameter. When ``gpus`` is not
    set, an array of deep jobs on ``cuda`` (``jobs``) asks for one GPU per job. Unknown keys
    and bad values are a one-line :class:`MribenchError`.
    """
    _unknown("slurm", options, SLURM_OPTIONS)
    out: dict[str, Any] = {"name": "mribench"}
    cluster = options.get("cluster", "slurm")
    if cluster not in SLURM_CLUSTERS:
        raise MribenchError(f"--executor slurm: option cluster must be one of "
                            f"{', '.join(SLURM_CLUSTERS)}, got {cluster!r}")
    for key in ("partition", "account", "qos"):
        if key in options:
            value = options[key]
            if value is None or isinstance(value, bool | dict | list) or not str(value).strip():
                raise MribenchError(f"--executor slurm: option {key} must be a name, got "
                                    f"{value!r}")
            out[SLURM_OPTIONS[key]] = str(value).strip()
    if "time" in options:
        out["timeout_min"] = _positive_int("slurm", "time", options["time"])
    threads = max((job.threads for job in jobs), default=1)
    out["cpus_per_task"] = _positive_int("slurm", "cpus", options.get("cpus", threads))
    if "gpus" in options:
        gpus = _positive_int("slurm", "gpus", options["gpus"], minimum=0)
        if gpus:
            out["gpus_per_node"] = gpus
    elif any(_needs_gpu(job) for job in jobs):
        out["gpus_per_node"] = 1
    if "mem_gb" in options:
        mem = options["mem_gb"]
        if isinstance(mem, bool) or not isinstance(mem, int | float) or mem <= 0:
            raise MribenchError(f"--executor slurm: option mem_gb must be a positive number, "
                                f"got {mem!r}")
        out["mem_gb"] = mem
    if "array_parallelism" in options:
        out["slurm_array_parallelism"] = _positive_int("slurm", "array_parallelism",
                                                       options["array_parallelism"])
    elif parallel > 1:
        out["slurm_array_parallelism"] = parallel
    return out


class SlurmExecutor:
    """Jobs as SLURM job arrays through submitit (``cluster=local|debug``: on this machine)."""

    def __init__(self, options: dict[str, Any], parallel: int = 1,
                 poll_s: float | None = None) -> None:
        self.options = dict(options)
        self.parallel = parallel
        self.cluster = str(self.options.get("cluster", "slurm"))
        self.poll_s = poll_s if poll_s is not None else (5.0 if self.cluster == "slurm"
                                                         else 0.5)

    def _submit(self, jobs: Sequence[Job]) -> list[tuple[Job, Any]]:
        import submitit

        folder = jobs[0].layout.submitit_dir
        submitted: list[tuple[Job, Any]] = []
        groups = [[j for j in jobs if _needs_gpu(j)], [j for j in jobs if not _needs_gpu(j)]]
        for group in groups:
            if not group:
                continue
            params = slurm_parameters(self.options, group, self.parallel)
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            if self.cluster != "slurm":  # slurm_* keys mean nothing on this machine
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            try:
                handles = executor.map_array(run_pinned, list(group))
            except Exception as exc:  # sbatch missing or refused the array
                for _, handle in submitted:
                    handle.cancel(check=False)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise MribenchError(f"--executor slurm: cannot submit the job array "
                                    f"({type(exc).__name__}: {first})") from None
            submitted.extend(zip(group, handles, strict=True))
        return submitted

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        if not jobs:
            return
        pending = self._submit(jobs)
        log.info("submitted %d job(s) to %s (files in %s)", len(pending), self.cluster,
                 jobs[0].layout.submitit_dir)
        try:
            while pending:
                # the debug executor runs a job in this process when its result is asked for
                finished = [p for p in pending if self.cluster == "debug" or p[1].done()]
                for item in finished:
                    pending.remove(item)
                    job, handle = item
                    try:
                        outcomes = handle.result()
                    except Exception as exc:  # killed, out of memory, time limit, cancelled
                        outcomes = _died(job, exc, "SLURM job failed")
                    yield job, outcomes
                if pending and not finished:
                    time.sleep(self.poll_s)
        finally:
            for _, handle in pending:  # the driver stopped: stop what it started
                try:
                    handle.cancel(check=False)
                except Exception:  # pragma: no cover - best effort on the way out
                    pass


def make_slurm(jobs: int, **options: Any) -> SlurmExecutor:
    """``--executor slurm`` (entry point): its options checked, submitit (and, on a real
    cluster, sbatch) present."""
    slurm_parameters(options, (), jobs)  # checks every option
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise MribenchError(f"--executor slurm needs submitit: {INSTALL}") from None
    cluster = options.get("cluster", "slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise MribenchError("--executor slurm: sbatch is not on PATH (run on a SLURM login "
                            "node, or try it here with --executor-option cluster=local)")
    return SlurmExecutor(options, parallel=jobs)

