"""What every executor shares: the :class:`Executor` interface and the thread pinning.

Both the local executors (:mod:`mribench.run.local`) and the scale-out ones
(:mod:`mribench.run.cluster`) import this module; the registry
(:mod:`mribench.run.executors`) reaches them through entry points, so no executor module
imports another (no import cycle).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from mribench.run.execute import RowOutcome
from mribench.run.jobs import Job

__all__ = ["THREAD_VARS", "Executor", "ExecutorFactory", "pin_threads"]

#: Environment variables that fix the BLAS/OpenMP thread count of a process at its start-up.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Executor(Protocol):
    """Runs jobs; yields each job with its outcomes as it finishes."""

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]: ...


class ExecutorFactory(Protocol):
    """What an entry point of ``mribench.executors`` loads: ``factory(jobs, **options)``, an
    executor class whose ``__init__`` takes them, or a function that checks the options and
    makes one. ``jobs`` is ``--jobs``; ``options`` are the ``--executor-option`` pairs, and a
    bad one is a one-line :class:`~mribench.api.errors.MribenchError`."""

    def __call__(self, jobs: int, **options: Any) -> Executor: ...


_LIMITS = None


def pin_threads(threads: int = 1) -> None:
    """Limit BLAS/OpenMP (threadpoolctl) and torch to ``threads`` threads in this process
    (OpenMP's limit holds for the calling thread: call it in the thread that runs the job)."""
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
