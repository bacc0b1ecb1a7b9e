"""Helpers of the fault tests (Ctrl-C, killed drivers and workers, the chaos test).

A *driver* is a ``bench run`` in a process of its own, in a new session (its own process
group, as a terminal's foreground job is), so a test can send it the terminal's Ctrl-C
(SIGINT to the whole group) or SIGKILL it. Its workers find the test methods of this module
by reference (``Job.method_cls``): the tests folder is on their ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mribench.api.context import Context
from mribench.api.method import Method
from mribench.api.types import Prediction, Sample

TESTS = Path(__file__).resolve().parent
#: The environment variable that sets :class:`Nap`'s sleep in seconds.
NAP_S = "MRIBENCH_TEST_NAP_S"

_DRIVER = """
import sys
from mribench.api import registry
import fault_helpers
real = registry.methods
registry.methods = lambda: {**real(), "nap": fault_helpers.Nap}
from mribench.cli import main
main(sys.argv[1:])
"""


class Nap(Method):
    """Sleeps through its fit (``$MRIBENCH_TEST_NAP_S`` seconds, default 60), then predicts
    the training set's majority class: a job a test can act on while it runs."""

    name = "nap"
    reference = "test fixture"

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> Nap:
        time.sleep(float(os.environ.get(NAP_S, "60")))
        labels = [s.label for s in train]
        self.label_ = int(np.mean(labels) >= 0.5)
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        labels = np.full(len(samples), self.label_)
        return Prediction([s.id for s in samples], labels, labels.astype(float))


def _terminal_signals() -> None:
    """SIGINT and SIGQUIT at their defaults, as a terminal's foreground job has them.

    A shell without job control starts a background command (``cmd &``, ``nohup``) with both
    *ignored*, and an ignored signal stays ignored across ``exec``: a test session started that
    way (``bash .ci/run &``) handed its drivers a SIGINT they could not receive (Python then
    installs no ``KeyboardInterrupt`` handler), and the Ctrl-C tests timed out for a reason of
    the test's, not mribench's.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start_driver(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``bench run ARGS`` in a new session, with a terminal's signal dispositions (stdout
    dropped, stderr kept)."""
    environ = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-c", _DRIVER, "run", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=environ, start_new_session=True,
                            preexec_fn=_terminal_signals)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` still runs (zombies do not count)."""
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != "zombie":
                members.append(proc.info["pid"])
        except (ProcessLookupError, PermissionError):
            continue
    return members


def end_group(pgid: int) -> None:
    """SIGKILL whatever is left of a driver's group (test clean-up)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def started_jobs(run: Path) -> list[Path]:
    """The job folders of ``run`` holding a log (the job started)."""
    return sorted(p.parent for p in run.glob("*/seed-*/log.txt"))
