"""Hardening of the executors (issue 24, item 3 and its smaller cases).

- Options are checked when the executor is made, before any run folder: one line, exit 2.
- A scheduler address that accepts and never answers, an HTTP server, foreign bytes: one line
  within the timeout (``timeout=``, default 30 s), memory bounded (servers started here, on
  127.0.0.1).
- Ctrl-C (SIGINT to the driver's whole process group, as a terminal sends it) ends the jobs of
  every executor with no traceback.
- The run's lease: a job whose driver is gone writes nothing final, so ``bench status`` and
  ``--resume`` agree and a resume runs each row once.
- A lock held by a live process that is no bench run says whose pid and how to clear it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import (
    NAP_S,
    Nap,
    end_group,
    group_alive,
    start_driver,
    started_jobs,
    wait_for,
)
from test_runner import Bright

from mribench.api import registry
from mribench.api.errors import MribenchError
from mribench.cli import main
from mribench.results.lock import RunLock, driver_pid, lease_holds
from mribench.results.status import run_status
from mribench.run.config import RunConfig
from mribench.run.executors import make_executor
from mribench.run.runner import run_benchmark

pytest.importorskip("distributed")
pytest.importorskip("submitit")

SPEC = "synthetic[n=40]"
BASE = ["--dataset", SPEC, "--image-size", "32", "--n-boot", "5", "--no-report",
        "--no-baselines", "--quiet"]


def _bench(args: list[str], capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("option, message", [
    ("memory_limit=lots", r"option memory_limit must be a size such as 4GB, a fraction of "
                          r"this machine's memory such as 0.5, 0 or auto, got 'lots'"),
    ("memory_limit=-1", r"option memory_limit must be a size"),
    ("scheduler=not a url", r"option scheduler must be an address such as tcp://HOST:8786, "
                            r"got 'not a url'"),
    ("scheduler=http://h:8786", r"option scheduler must be .*schemes: tcp, tls"),
    ("scheduler=tcp://h:99999", r"port 1 to 65535"),
    ("dashboard=everywhere", r"option dashboard must be an address such as :8787"),
    ("timeout=0", r"option timeout must be a number of seconds above 0"),
    ("timeout=soon", r"option timeout must be a number of seconds above 0"),
])
def test_memory_limit_lots_and_scheduler_not_a_url_are_one_line_and_leave_no_folder(
        tmp_path, capsys, data_cache, option, message):
    out = tmp_path / "run"
    code, err = _bench(["run", "--method", "glcm-knn", *BASE, "--executor", "dask",
                        "--executor-option", option, "--out", str(out)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: --executor dask: ")
    assert re.search(message, err), err
    assert not out.exists()


def test_dask_options_that_are_fine_are_kept():
    ex = make_executor("dask", 2, {"memory_limit": "4GB", "dashboard": ":0", "timeout": 5})
    assert (ex.memory_limit, ex.dashboard, ex.timeout, ex.scheduler) == ("4GB", ":0", 5.0, None)
    assert make_executor("dask", 2, {"memory_limit": 0.5}).memory_limit == 0.5
    assert make_executor("dask", 2, {"memory_limit": "auto"}).timeout == 30.0


# --------------------------------------------------------------------------- schedulers


def _answer_http(conn: socket.socket) -> None:
    """An HTTP server's way: answer once a request came (the probe sends none)."""
    with contextlib.suppress(OSError):
        conn.settimeout(10)
        if conn.recv(1024):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@contextlib.contextmanager
def _server(kind: str) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that is no dask scheduler; yields its address.

    ``silent`` accepts and never answers, ``http`` answers only a request, ``foreign``
    sends bytes at once (what made dask allocate 3.07 EiB), ``closes`` hangs up.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop, conns = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conns.append(conn)
            if kind == "foreign":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            elif kind == "closes":
                conn.close()
            elif kind == "http":
                threading.Thread(target=_answer_http, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        listener.close()


@pytest.mark.parametrize("kind, message, slowest", [
    ("silent", r"the scheduler at tcp://127\.0\.0\.1:\d+ does not answer within 1 s; check "
               r"it runs there, or give it longer with --executor-option timeout=SECONDS", 3),
    ("http", r"does not answer within 1 s", 3),
    ("foreign", r"tcp://127\.0\.0\.1:\d+ is not a dask scheduler \(it answered "
                r"b'HTTP/1\.1'\); check the address and port", 0.9),
    ("closes", r"is not a dask scheduler \(it answered nothing, and closed the connection\)",
     0.9),
])
def test_a_scheduler_that_accepts_but_never_answers_or_sends_foreign_bytes_is_one_line(
        kind, message, slowest):
    with _server(kind) as address:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(MribenchError, match=message) as err:
                make_executor("dask", 1, {"scheduler": address, "timeout": 1})
        finally:
            elapsed = time.monotonic() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert "\n" not in str(err.value)
    assert elapsed < slowest, elapsed
    assert peak < 8 * 2**20, peak  # no allocation of the size foreign bytes announce


def test_a_silent_scheduler_through_bench_run_is_one_line_and_no_folder(tmp_path, capsys,
                                                                        data_cache):
    out = tmp_path / "run"
    with _server("silent") as address:
        start = time.monotonic()
        code, err = _bench(["run", "--method", "glcm-knn", *BASE, "--executor", "dask",
                            "--executor-option", f"scheduler={address}",
                            "--executor-option", "timeout=1", "--out", str(out)], capsys)
        assert time.monotonic() - start < 10
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "does not answer within 1 s" in err
    assert not out.exists()


def test_a_closed_port_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MribenchError, match=r"cannot reach the scheduler at tcp://127\.0\.0\.1"
                                            r":\d+ \(.*\); start it, or drop scheduler="):
        make_executor("dask", 1, {"scheduler": f"127.0.0.1:{port}", "timeout": 1})


def test_a_dask_scheduler_passes_the_probe():
    from distributed import LocalCluster

    from mribench.run.cluster import probe_scheduler

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        probe_scheduler(address, 5)
        executor = make_executor("dask", 1, {"scheduler": address.removeprefix("tcp://")})
        assert executor.scheduler == address and executor.timeout == 30.0


# --------------------------------------------------------------------------- the lease


class TakenOver(Bright):
    """Fits while its run is taken over: its driver dies (the lock's pid is gone) and another
    driver holds the run (another token) before the job writes its results."""

    name = "taken-over"

    def fit(self, train, val, ctx):
        lock = Path(ctx.workdir).parents[1] / ".lock"
        if not (lock.parent / "taken-over-once").exists():
            (lock.parent / "taken-over-once").write_text("x")
            lock.write_text(f"{_dead_pid()} another-token {socket.gethostname()} -\n")
        return super().fit(train, val, ctx)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_bench_status_calls_them_interrupted_and_resume_ran_svm_a_second_time(
        tmp_path, monkeypatch, capsys, data_cache):
    """The orphan (a job whose run was taken over mid-fit) writes nothing final: status calls
    it interrupted, and the resume runs it once, writing the only ``status.json``."""
    monkeypatch.setattr(registry, "methods", lambda: {"bright": Bright, "taken-over": TakenOver})
    out = tmp_path / "run"
    config = dict(methods="bright,taken-over", dataset=SPEC, image_size=32, n_boot=5,
                  out=out, results_root=tmp_path, baselines=False)
    outcome = run_benchmark(RunConfig(**config))
    status = {r.name: (r.status, r.reason) for r in outcome.rows}
    assert status["bright"] == ("done", None)
    assert status["taken-over"] == ("failed", "not recorded: the run's driver is gone (its lock "
                                              "no longer holds this job's lease)")
    job = out / "taken-over" / "seed-0"
    assert sorted(p.name for p in job.iterdir()) == ["log.txt"]  # nothing final, no scores
    info = run_status(out)
    assert info["state"] == "failed" and info["driver_pid"] is None
    assert [j["status"] for j in info["jobs"]] == ["done", "interrupted"]

    messages: list[str] = []
    outcome = run_benchmark(RunConfig(**config, resume=True), on_message=messages.append)
    assert sorted((r.name, r.status, r.reason) for r in outcome.rows) == [
        ("bright", "done", "resumed: finished in an earlier run"),
        ("taken-over", "done", None)]
    assert any("taking over the lock" in m for m in messages)
    assert run_status(out)["counts"] == {"done": 2}
    assert not (out / ".lock").exists()


def test_a_job_holds_the_lease_only_while_its_driver_runs(tmp_path):
    from mribench.results.layout import RunLayout

    layout = RunLayout(tmp_path)
    lock = RunLock(layout)
    lock.acquire()
    pid, token, host, started = (tmp_path / ".lock").read_text().split()
    assert (int(pid), token, host) == (os.getpid(), lock.token, socket.gethostname())
    assert lease_holds(layout, lock.token) and not lease_holds(layout, "stale")
    assert driver_pid(layout) == os.getpid()
    # the same pid, started at another time: a reused pid, not the driver
    (tmp_path / ".lock").write_text(f"{pid} {token} {host} 1\n")
    assert not lease_holds(layout, lock.token) and driver_pid(layout) is None
    (tmp_path / ".lock").write_text(f"{_dead_pid()} {token} {host} {started}\n")
    assert not lease_holds(layout, lock.token)
    # on another host the pid cannot be checked: the token decides
    (tmp_path / ".lock").write_text(f"{_dead_pid()} {token} elsewhere-host -\n")
    assert lease_holds(layout, lock.token) and not lease_holds(layout, "stale")
    (tmp_path / ".lock").unlink()
    assert not lease_holds(layout, lock.token)


@pytest.mark.slow
def test_jobs_of_a_killed_slurm_driver_write_nothing_and_resume_runs_each_row_once(
        tmp_path, monkeypatch, capsys, data_cache):
    """SLURM through submitit (``cluster=local``): SIGKILL the driver mid-job; its jobs end
    within seconds (not after their fit) without writing a row; ``bench status`` calls them
    interrupted; the resume runs each once."""
    out = tmp_path / "run"
    args = ["--method", "nap", *BASE, "--seeds", "0-1", "--out", str(out)]
    driver = start_driver([*args, "--jobs", "2", "--executor", "slurm", "--executor-option",
                           "cluster=local"], env={NAP_S: "20"})
    try:
        wait_for(lambda: len(started_jobs(out)) == 2 or driver.poll() is not None, 120,
                 "both jobs to start")
        assert driver.poll() is None, driver.stderr.read()
        driver.kill()
        driver.wait()
        driver.stderr.close()
        wait_for(lambda: not group_alive(driver.pid), 8, "the orphaned jobs to end")
    finally:
        end_group(driver.pid)
    assert not list(out.glob("*/seed-*/status.json"))
    info = run_status(out)
    assert info["state"] == "stopped" and info["counts"] == {"interrupted": 2}

    monkeypatch.setenv(NAP_S, "0")
    monkeypatch.setattr(registry, "methods", lambda: {"nap": Nap})
    code, err = _bench(["run", *args, "--resume"], capsys)
    assert code == 0, err
    assert sorted(line for line in err.splitlines() if line.startswith("[")) == [
        "[ok] nap seed 0", "[ok] nap seed 1"]
    for seed in (0, 1):
        assert json.loads((out / "nap" / f"seed-{seed}" / "status.json").read_text())[
            "status"] == "done"


# --------------------------------------------------------------------------- the lock


def test_a_lock_held_by_a_live_unrelated_pid_says_whose_and_how_to_clear_it(tmp_path):
    """No wait and no false "another bench run": one line naming the pid, its command and
    the file to delete."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(f"{sleeper.pid}\n")
        start = time.monotonic()
        with pytest.raises(MribenchError) as err:
            RunLock(tmp_path).acquire()
        assert time.monotonic() - start < 1
    finally:
        sleeper.kill()
        sleeper.wait()
    text = str(err.value)
    assert "\n" not in text
    assert text == (f"{tmp_path} is locked by pid {sleeper.pid}, `{sys.executable} -c import "
                    f"time; time.sleep(60)`, which is not a bench run; if no bench run writes "
                    f"this folder, delete {tmp_path / '.lock'} and rerun (or use --out "
                    "NEW_FOLDER)")


def test_a_lock_whose_pid_was_reused_is_taken_over(tmp_path):
    """The lock's pid runs, but it started later than the lock says: not its driver."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(f"{sleeper.pid} old-token {socket.gethostname()} 1\n")
        messages: list[str] = []
        lock = RunLock(tmp_path, on_message=messages.append)
        lock.acquire()
        lock.release()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert messages == [f"taking over the lock {tmp_path / '.lock'} left by a process that "
                        f"is gone (pid {sleeper.pid})"]
    assert not (tmp_path / ".lock").exists()
