"""``<run>/.lock``: one writer at a time for a results folder.

The lock holds the driver's pid; a second ``bench run`` on the same folder is refused, and a
lock left by a process that is gone is taken over with a message. :func:`driver_pid` tells
readers (``bench status``) whether the driver still runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from mribench.api.errors import MribenchError
from mribench.results.layout import RunLayout

__all__ = ["RunLock", "driver_pid", "pid_alive"]

log = logging.getLogger("mribench")


class RunLock:
    """``<run>/.lock`` with the owner's pid; a lock of a dead process is taken over."""

    def __init__(self, layout: RunLayout | Path,
                 on_message: Callable[[str], None] | None = None) -> None:
        layout = layout if isinstance(layout, RunLayout) else RunLayout(Path(layout))
        self.path = layout.lock_file
        self.on_message = on_message or log.warning

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and pid_alive(owner):
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def driver_pid(layout: RunLayout) -> int | None:
    """The pid in the run's lock when that process is alive on this machine, else None."""
    try:
        pid = int(layout.lock_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None
