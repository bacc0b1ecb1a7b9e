"""``<run>/.lock``: one writer at a time for a results folder, and the run's lease.

The lock is one line, ``PID TOKEN HOST STARTED``: the driver's pid, a random token (the
run's *lease*), the driver's host and its process start time (``-`` where the system does not
say). A second ``bench run`` on the same folder is refused, naming who holds it and how to
clear it; a lock left by a process that is gone (or by a pid since reused by another process)
is taken over with a message.

Every job carries the token of the driver that planned it (:attr:`~mribench.run.jobs.Job.lease`)
and writes its final files only while :func:`lease_holds`: the lock still holds that token and
its driver still runs. A job whose driver was killed (an orphan on a worker that lives on) or
whose run another driver took over writes nothing final, so a resume never finds a row written
by an orphan. :func:`driver_pid` tells readers (``bench status``) whether the driver still runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mribench.api.errors import MribenchError
from mribench.results.layout import RunLayout

__all__ = ["LockOwner", "RunLock", "driver_pid", "lease_holds", "pid_alive", "read_owner"]

log = logging.getLogger("mribench")


@dataclass(frozen=True)
class LockOwner:
    """Who holds a run's lock, as its line says (an old lock holds only the pid)."""

    pid: int
    token: str | None = None
    host: str | None = None
    started: str | None = None

    @property
    def here(self) -> bool:
        """Whether the owner ran on this host (or the lock does not say)."""
        return self.host in (None, socket.gethostname())

    def alive(self) -> bool:
        """Whether the process that took the lock still runs. On this host: its pid is alive
        and started when the lock says (not a reused pid); on another host that cannot be
        told, and it counts as alive."""
        if not self.here:
            return True
        if not pid_alive(self.pid):
            return False
        return self.started is None or _stat(self.pid)[1] in (None, self.started)


def read_owner(path: Path) -> LockOwner | None:
    """The owner written in the lock file ``path``; None when it is missing or unreadable."""
    try:
        fields = Path(path).read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    rest = [None if f == "-" else f for f in fields[1:4]] + [None] * 3
    return LockOwner(pid, rest[0], rest[1], rest[2])


class RunLock:
    """``<run>/.lock`` holding the owner's pid and the run's lease (:attr:`token`)."""

    def __init__(self, layout: RunLayout | Path,
                 on_message: Callable[[str], None] | None = None) -> None:
        layout = layout if isinstance(layout, RunLayout) else RunLayout(Path(layout))
        self.path = layout.lock_file
        self.on_message = on_message or log.warning
        #: The run's lease: every job of this driver carries it.
        self.token = secrets.token_hex(8)

    def acquire(self) -> None:
        """Take the lock, or raise a one-line :class:`MribenchError` naming its live owner
        (never waits); a lock of a process that is gone is taken over with a message."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path)
                if owner is not None and owner.alive():
                    raise MribenchError(self._held_by(owner)) from None
                self.on_message(f"taking over the lock {self.path} left by a process that "
                                f"is gone (pid {owner.pid if owner else 'unreadable'})")
                self.path.unlink(missing_ok=True)
                continue
            started = _stat(os.getpid())[1] or "-"
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()} {self.token} {socket.gethostname()} {started}\n")
            return
        raise MribenchError(f"cannot take the lock {self.path}; delete it if no bench run "
                            "is writing this folder")

    def _held_by(self, owner: LockOwner) -> str:
        """The one-line refusal: whose pid holds the lock and how to clear it."""
        root = self.path.parent
        if not owner.here:
            return (f"{root} is being written by a bench run on {owner.host} (pid "
                    f"{owner.pid}); wait for it, or use --out NEW_FOLDER; if that run is "
                    f"gone, delete {self.path}")
        command = _command(owner.pid)
        shown = f"pid {owner.pid}" + (f", `{command}`" if command else "")
        if owner.token is not None or (command and "bench" in command):
            return (f"{root} is being written by another bench run ({shown}); wait for it "
                    f"to end or stop it, or use --out NEW_FOLDER")
        return (f"{root} is locked by {shown}, which is not a bench run; if no bench run "
                f"writes this folder, delete {self.path} and rerun (or use --out NEW_FOLDER)")

    def release(self) -> None:
        owner = read_owner(self.path)
        if owner is not None and owner.pid == os.getpid() and owner.token in (None,
                                                                              self.token):
            self.path.unlink(missing_ok=True)


def lease_holds(layout: RunLayout, token: str) -> bool:
    """Whether the run's lock still holds ``token`` and its driver still runs; a job writes
    final results only while it does."""
    owner = read_owner(layout.lock_file)
    return owner is not None and owner.token == token and owner.alive()


def _stat(pid: int) -> tuple[str | None, str | None]:
    """(state, start time) of process ``pid`` from ``/proc`` (Linux); (None, None) where
    the system does not say."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None, None
    fields = text[text.rfind(")") + 1:].split()
    return (fields[0] if fields else None), (fields[19] if len(fields) > 19 else None)


def _command(pid: int, limit: int = 120) -> str | None:
    """Process ``pid``'s command line, shortened (Linux ``/proc``); None where unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    text = " ".join(raw.replace(b"\0", b" ").decode("utf-8", "replace").split())  # one line
    return (text[: limit - 3] + "...") if len(text) > limit else (text or None)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie, dead but not yet reaped,
    does not count)."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # os.kill(0, 0) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return _stat(pid)[0] != "Z"


def driver_pid(layout: RunLayout) -> int | None:
    """The pid in the run's lock when that process still runs, else None."""
    owner = read_owner(layout.lock_file)
    return owner.pid if owner is not None and owner.alive() else None
