"""What every executor shares: the :class:`Executor` interface and the thread pinning.

Both the local executors (:mod:`mribench.run.local`) and the scale-out ones
(:mod:`mribench.run.cluster`) import this module; the registry
(:mod:`mribench.run.executors`) reaches them through entry points, so no executor module
imports another (no import cycle).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from mribench.run.execute import RowOutcome
from mribench.run.jobs import Job

__all__ = ["THREAD_VARS", "Executor", "ExecutorFactory", "no_ctrl_c_in_children",
           "pin_threads"]

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


@contextlib.contextmanager
def no_ctrl_c_in_children() -> Iterator[None]:
    """Start worker processes in this block: they never see the terminal's Ctrl-C.

    A Ctrl-C reaches every process of the terminal's foreground group; a worker that gets it
    prints a ``KeyboardInterrupt`` traceback. Processes started here inherit SIGINT blocked
    (the signal mask survives fork and exec), so only the driver gets it, and it stops its
    workers itself (cancels, kills). A Ctrl-C during the block is held and raised at its end.
    Outside the main thread (where signals cannot be handled) the block does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous if previous is not None else
                      signal.default_int_handler)
    if held:
        raise KeyboardInterrupt
