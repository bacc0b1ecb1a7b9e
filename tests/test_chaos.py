"""The chaos test (issue 24, item 5): kill a worker, then the driver, resume; same numbers.

A ``bench run --jobs 2`` on a tiny synthetic set loses one of its two worker processes and
then its driver (SIGKILL both) at random points, then ``--resume`` finishes it. Every row's
``metrics.json``, ``per_case.json`` and ``predictions.npz`` must equal those of an
uninterrupted run. The points are drawn from a seeded generator (``$MRIBENCH_CHAOS_SEED``,
default 0); to run it many times in a row::

    for s in $(seq 0 19); do MRIBENCH_CHAOS_SEED=$s python -m pytest -q -m slow \\
        tests/test_chaos.py || break; done
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from subprocess import Popen

import numpy as np
import pytest
from fault_helpers import end_group, group_alive, start_driver, started_jobs, wait_for

from mribench.cli import main

psutil = pytest.importorskip("psutil")

ARGS = ["--method", "glcm-knn,svm,region-growing", "--dataset", "synthetic[n=40]",
        "--image-size", "32", "--n-boot", "20", "--no-report", "--no-baselines", "--quiet"]
SCORES = ("metrics.json", "per_case.json", "predictions.npz")


def _bench(args: list[str]) -> int:
    try:
        main(["run", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _workers(driver: Popen) -> list:
    """The driver's worker processes (not multiprocessing's resource tracker)."""
    try:
        children = psutil.Process(driver.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def _kill_a_worker_then_the_driver(driver: Popen, rng: random.Random, run: Path
                                   ) -> list[str]:
    """SIGKILL one worker at a random point of the run, then the driver; what was done."""
    done = []

    def rows_done() -> str:
        return (f"{len(started_jobs(run))} job(s) started, "
                f"{len(list(run.glob('*/seed-*/status.json')))} done")

    wait_for(lambda: len(_workers(driver)) == 2 or driver.poll() is not None, 120,
             "the driver's two workers")
    # a random point: once 0 to 3 of the 3 jobs started (0: while the workers start up)
    started = rng.randint(0, 3)
    wait_for(lambda: len(started_jobs(run)) >= started or driver.poll() is not None, 120,
             f"{started} job(s) to start")
    time.sleep(rng.uniform(0.0, 1.0))
    workers = _workers(driver)
    if workers:
        victim = rng.choice(workers)
        victim.kill()
        done.append(f"killed a worker ({rows_done()})")
    time.sleep(rng.uniform(0.0, 1.5))
    if driver.poll() is None:
        driver.kill()
        done.append(f"killed the driver ({rows_done()})")
    driver.wait()
    return done


def _scores(run: Path) -> dict[str, object]:
    """Every score file of ``run`` by path (JSON as data, arrays as lists)."""
    out: dict[str, object] = {}
    for name in SCORES:
        for path in sorted(run.rglob(name)):
            key = str(path.relative_to(run))
            if name.endswith(".npz"):
                with np.load(path) as arrays:
                    out[key] = {k: arrays[k].tolist() for k in sorted(arrays.files)}
            else:
                out[key] = json.loads(path.read_text())
    return out


@pytest.mark.slow
def test_killing_a_worker_then_the_driver_and_resuming_gives_the_uninterrupted_metrics(
        tmp_path, monkeypatch, capsys):
    seed = int(os.environ.get("MRIBENCH_CHAOS_SEED", "0"))
    rng = random.Random(seed)
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    reference, chaos = tmp_path / "reference", tmp_path / "chaos"
    assert _bench([*ARGS, "--out", str(reference)]) == 0

    driver = start_driver([*ARGS, "--jobs", "2", "--out", str(chaos)])
    try:
        what = _kill_a_worker_then_the_driver(driver, rng, chaos)
        print(f"chaos seed {seed}: {', '.join(what) or 'the run ended first'}")
        driver.stderr.close()
        # the workers die with their driver; an orphan's job could write nothing final anyway
        wait_for(lambda: not group_alive(driver.pid), 15, "the workers to end")
    finally:
        end_group(driver.pid)
    assert _bench([*ARGS, "--resume", "--out", str(chaos)]) == 0, (seed, what)

    expected = _scores(reference)
    assert len(expected) == 3 * len(SCORES)  # three rows, one seed, one evaluation set
    assert _scores(chaos) == expected, (seed, what)
    statuses = [json.loads(p.read_text())["status"] for p in chaos.rglob("status.json")]
    assert statuses == ["done"] * 3, (seed, what)
    assert json.loads((chaos / "run.json").read_text())["status"] == "done"
