"""The executor registry: where jobs run, found by name like methods and data sets.

An executor runs jobs and yields each with its outcomes as it finishes
(:class:`~mribench.run.executor_base.Executor`, one method ``map_jobs``). Executors are
registered under the entry-point group ``mribench.executors``: the name is ``--executor``'s
value and the entry point loads a factory ``factory(jobs, **options)`` (an executor class, or
a function that checks the options first). mribench declares its own in ``pyproject.toml``::

    [project.entry-points."mribench.executors"]
    local = "mribench.run.local:make_local"      # this machine (serial, or --jobs processes)
    dask = "mribench.run.cluster:make_dask"      # a dask.distributed cluster
    slurm = "mribench.run.cluster:make_slurm"    # SLURM job arrays through submitit

Adding an executor is one class and one entry point in the package that holds it. Entry
points are loaded only when their executor is asked for, so an executor's dependencies (dask,
submitit) are imported only when it is used, and this module imports no executor module.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mribench.api.errors import MribenchError
from mribench.run.executor_base import Executor, pin_threads
from mribench.run.local import LocalExecutor, SerialExecutor

__all__ = ["ENTRY_POINT_GROUP", "Executor", "LocalExecutor", "SerialExecutor", "executors",
           "make_executor", "pin_threads"]

#: Entry-point group of the executors.
ENTRY_POINT_GROUP = "mribench.executors"
#: The built-in executors as pyproject.toml declares them; used where the installed metadata
#: predates them (a source checkout not re-installed since), never over an entry point.
_BUILTIN = {"local": "mribench.run.local:make_local", "dask": "mribench.run.cluster:make_dask",
            "slurm": "mribench.run.cluster:make_slurm"}


def _entry_points() -> list[EntryPoint]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP` (a function, so tests can
    replace it)."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def executors() -> dict[str, EntryPoint]:
    """Every registered executor by name (``local`` first, then by name), not yet loaded."""
    found: dict[str, EntryPoint] = {}
    for ep in _entry_points():
        found.setdefault(ep.name, ep)
    for name, value in _BUILTIN.items():
        found.setdefault(name, EntryPoint(name, value, ENTRY_POINT_GROUP))
    return {name: found[name] for name in sorted(found, key=lambda n: (n != "local", n))}


def make_executor(name: str, jobs: int, options: dict | None = None) -> Executor:
    """The executor called ``name`` for ``jobs`` parallel jobs with its ``options``.

    Raises
    ------
    MribenchError
        One line: an unknown name (listing the known ones), an executor that cannot be
        loaded, or its own refusal of an option.
    """
    table = executors()
    if name not in table:
        raise MribenchError(f"--executor {name!r} is not known; choose one of "
                            f"{', '.join(table)}")
    ep = table[name]
    try:
        factory = ep.load()
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise MribenchError(f"--executor {name}: cannot load {ep.value} ({detail})") from None
    options: dict[str, Any] = dict(options or {})
    return factory(jobs=jobs, **options)
