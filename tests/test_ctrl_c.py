"""Ctrl-C (SIGINT to the driver's whole process group, as a terminal sends it) ends the jobs of
every executor with no traceback (issue 24, item 3).

They were opt-in for a while (``MRIBENCH_CTRL_C_TESTS=1``): a test session started from a
shell's background job (``bash .ci/run &``, ``nohup``) ignores SIGINT, as such a shell starts
it, and its drivers inherited the ignored signal across ``exec``, so they never saw the Ctrl-C
(measured: the driver's ``SigIgn`` held SIGINT; ``local`` timed out after 60 s).
``start_driver`` now gives each driver a terminal's dispositions; a failure still prints the
driver's signal state.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from fault_helpers import (
    end_group,
    group_alive,
    group_members,
    start_driver,
    started_jobs,
    wait_for,
)

from mribench.results.status import run_status

pytest.importorskip("distributed")
pytest.importorskip("submitit")

BASE = ["--dataset", "synthetic[n=40]", "--image-size", "32", "--n-boot", "5", "--no-report",
        "--no-baselines", "--quiet"]


def _signal_state(pid: int) -> str:
    """The Sig* lines of a process's /proc status (blocked, ignored, caught signals)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        return f"no status ({exc})"
    return " ".join(line for line in status.splitlines() if line.startswith(("Sig", "Shd")))


@pytest.mark.slow
@pytest.mark.parametrize("executor", [
    ["--executor", "local"],
    ["--executor", "dask"],
    ["--executor", "slurm", "--executor-option", "cluster=local"],
], ids=["local", "dask", "slurm-local"])
def test_ctrl_c_ends_dask_and_submitit_jobs_without_tracebacks(tmp_path, data_cache, executor):
    out = tmp_path / "run"
    driver = start_driver(["--method", "nap", *BASE, "--seeds", "0-1", "--jobs", "2",
                           "--out", str(out), *executor])
    try:
        wait_for(lambda: len(started_jobs(out)) == 2 or driver.poll() is not None, 120,
                 "both jobs to start")
        assert driver.poll() is None, driver.stderr.read()
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:  # the driver itself (its stderr may stay open while a worker lingers)
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "the driver did not end within 60 s of Ctrl-C; its group: "
                f"{group_members(driver.pid)}; driver {_signal_state(driver.pid)}; "
                f"this process {_signal_state(os.getpid())}") from None
        # the jobs were ended, not left to sleep on (Nap sleeps a minute)
        wait_for(lambda: not group_alive(driver.pid), 10, "the jobs to end")
        err = driver.stderr.read()
        assert driver.returncode == 130, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert err.split() == ["aborted"], err
    finally:
        end_group(driver.pid)
    assert not list(out.glob("*/seed-*/status.json"))
    info = run_status(out)
    assert info["state"] == "failed" and info["counts"] == {"interrupted": 2}
