"""``--executor local``: jobs on this machine.

- :class:`SerialExecutor`: in this process, one job after another (``--jobs 1``).
- :class:`LocalExecutor`: ``--jobs N`` worker processes started with ``spawn`` (never
  ``fork``, so a parent that has initialised CUDA or OpenMP can still have workers). Each
  worker pins BLAS/OpenMP to one thread (threadpoolctl) and torch to one thread, and dies with
  its parent (a watcher thread exits the worker when the parent's pid changes). Workers never
  see the terminal's Ctrl-C (:func:`~mribench.run.executor_base.no_ctrl_c_in_children`): the
  driver gets it and kills them, so no worker prints a traceback and nothing waits for a job
  to finish; a killed job has no ``status.json`` and ``--resume`` reruns it.

Jobs carry no images: a worker loads the data from the shared data cache, so the same job runs
unchanged on a dask worker or a SLURM node (:mod:`mribench.run.cluster`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from mribench.api.errors import MribenchError
from mribench.run.execute import RowOutcome, run_job
from mribench.run.executor_base import (
    THREAD_VARS,
    Executor,
    no_ctrl_c_in_children,
    pin_threads,
)
from mribench.run.jobs import Job

__all__ = ["LocalExecutor", "SerialExecutor", "make_local"]


class SerialExecutor:
    """Every job in this process, in order."""

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        for job in jobs:
            yield job, run_job(job)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)  # the driver died: stop, leaving the job resumable


def _worker_init(parent: int) -> None:
    """One BLAS/OpenMP thread and one torch thread per worker; die with the parent."""
    pin_threads(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class LocalExecutor:
    """``workers`` spawned processes on this machine."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Thread limits pass to spawned children through the environment, before they import
        # numpy: OpenBLAS / MKL / OpenMP read these once, at start-up.
        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        os.environ.update({k: "1" for k in THREAD_VARS})
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        finished = False
        try:
            with no_ctrl_c_in_children():  # the workers start with the first submissions
                futures = {pool.submit(run_job, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    yield job, future.result()
                except Exception as exc:  # the worker itself died (killed, out of memory)
                    reason = f"worker died: {type(exc).__name__}: {exc}".splitlines()[0]
                    yield job, [RowOutcome(job.row, "failed", reason, job.seed)]
            finished = True
        finally:
            if not finished:  # Ctrl-C or the caller stopped: end the jobs now, not after them
                _kill_workers(pool)
            pool.shutdown(wait=True)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _kill_workers(pool: Any) -> None:
    """Kill the pool's workers and cancel what has not started (killed jobs have no
    ``status.json``: they stay resumable)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, ValueError):  # pragma: no cover - already gone
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def make_local(jobs: int, **options: Any) -> Executor:
    """``--executor local``: serial for one job at a time, else ``jobs`` spawned processes;
    it takes no ``--executor-option``."""
    if options:
        raise MribenchError(f"--executor local takes no --executor-option, got "
                            f"{', '.join(sorted(options))}")
    return SerialExecutor() if jobs <= 1 else LocalExecutor(jobs)
