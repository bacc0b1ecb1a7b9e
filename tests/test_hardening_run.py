"""Hardening of `bench run`: bad options fail at start-up in one line, nothing is lost or
mixed, a full disk marks the run failed and resumable, resume is exact, one writer at a time,
and workers die with their parent."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from test_runner import Bright, Oracle

from mribench.api import registry
from mribench.api.errors import MribenchError
from mribench.cli import main
from mribench.results.lock import RunLock
from mribench.run.config import RunConfig, identity_diff, parse_seeds
from mribench.run.runner import run_benchmark

SPEC = "synthetic[n=40]"


@pytest.fixture
def fake_registry(monkeypatch):
    table = {"bright": Bright, "oracle": Oracle}
    monkeypatch.setattr(registry, "methods", lambda: table)
    return table


def _config(tmp_path, **kw):
    base = dict(methods="bright", dataset=SPEC, image_size=48, n_boot=20,
                out=tmp_path / "run", results_root=tmp_path)
    base.update(kw)
    return RunConfig(**base)


def _bench(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999", "1.5"])
def test_seed_out_of_range_is_a_usage_error(seed, capsys):
    code, err = _bench(["run", "--method", "glcm-knn", "--seed", seed, "--no-report"], capsys)
    assert code == 2 and err.startswith("error: --seed must be an integer from 0 to")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["-1", "0-99999999999", "a", "3-1", "", "1,1"])
def test_bad_seeds_are_one_line(text):
    with pytest.raises(MribenchError, match="--seeds"):
        parse_seeds(text)


def test_seeds_ranges_and_lists():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("3, 1,7") == (3, 1, 7)


def test_rank_by_unknown_fails_before_anything_runs(tmp_path, capsys):
    code, err = _bench(["run", "--method", "glcm-knn", "--dataset", SPEC, "--rank-by", "nosuch",
                        "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "--rank-by 'nosuch'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    code, err = _bench(["run", "--method", "glcm-knn", "--dataset", SPEC, "--image-size", "48",
                        "--out", "/proc/mribench-x"], capsys)
    assert code == 2 and "cannot write /proc/mribench-x" in err
    assert len(err.strip().splitlines()) == 1


def test_out_on_a_read_only_folder_is_one_line(tmp_path, fake_registry, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("pathlib.Path.write_bytes", refuse)
    with pytest.raises(MribenchError, match=r"cannot write .* \(Read-only file system\); "
                                            "choose a folder"):
        run_benchmark(_config(tmp_path))


def test_unrelated_non_empty_out_is_refused_and_left_alone(tmp_path, fake_registry):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(MribenchError, match="is not empty and holds no run"):
        run_benchmark(_config(tmp_path, out=out))
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_disk_full_marks_the_run_failed_and_it_resumes(tmp_path, fake_registry, monkeypatch):
    from mribench.results.write import RunWriter

    real = RunWriter.write_scores

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunWriter, "write_scores", full)
    with pytest.raises(MribenchError, match="No space left on device.*free some space, then "
                                            "rerun with --resume"):
        run_benchmark(_config(tmp_path))
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed"
    assert not (tmp_path / "run" / ".lock").exists()
    monkeypatch.setattr(RunWriter, "write_scores", real)  # space freed
    outcome = run_benchmark(_config(tmp_path, resume=True))
    assert [r.status for r in outcome.rows] == ["done"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done"


@pytest.mark.parametrize("change", [
    {"seeds": (1,)}, {"profile": "paper"}, {"image_size": 40},
    {"methods": "bright[quantile=0.3]"}, {"dataset": "synthetic[n=41]"},
])
def test_resume_with_another_configuration_is_refused(tmp_path, fake_registry, change):
    run_benchmark(_config(tmp_path))
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(MribenchError, match="was run with another configuration"):
        run_benchmark(_config(tmp_path, resume=True, **change))
    assert (tmp_path / "run" / "run.json").read_bytes() == before


def test_resume_may_add_a_method_but_not_drop_one(tmp_path, fake_registry):
    run_benchmark(_config(tmp_path))
    bright = tmp_path / "run" / "bright" / "seed-0" / "metrics.json"
    before = bright.read_bytes(), bright.stat().st_mtime_ns
    outcome = run_benchmark(_config(tmp_path, resume=True, methods="bright,oracle"))
    assert {"bright", "oracle"} <= {r.name for r in outcome.rows}
    assert (bright.read_bytes(), bright.stat().st_mtime_ns) == before  # kept, not rerun
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert sorted(run["identity"]["methods"]) == ["bright", "oracle"]
    with pytest.raises(MribenchError, match=r"another configuration \(methods \(oracle\)\)"):
        run_benchmark(_config(tmp_path, resume=True, methods="bright"))


def test_identity_of_real_methods_survives_its_json_round_trip():
    # Real plugins hold tuples (grids, distances); run.json gives lists back. A resume of an
    # unchanged run must see no difference.
    from mribench.api.registry import get_method

    config = RunConfig(methods="glcm-knn,svm,ocsvm-immune", dataset=SPEC)
    methods = {name: {"method": name, "params": get_method(name)(profile="quick").params.as_dict()}
               for name in ("glcm-knn", "svm", "ocsvm-immune")}
    identity = config.identity(methods, "abc", "fp", "0.1.0")
    stored = json.loads(json.dumps(identity))
    assert identity_diff(stored, config.identity(methods, "abc", "fp", "0.1.0")) == []
    assert identity_diff(stored, config.identity(methods, "abc", "fp2", "0.1.0")) == [
        "data_fingerprint (the data files' names, sizes or modification times changed)"]


def test_resume_names_what_differs(tmp_path, fake_registry):
    run_benchmark(_config(tmp_path))
    with pytest.raises(MribenchError, match=r"seeds: \[0\] -> \[0, 1\]"):
        run_benchmark(_config(tmp_path, resume=True, seeds=(0, 1)))


def test_a_live_lock_refuses_a_second_writer_and_a_stale_one_is_taken_over(
        tmp_path, fake_registry):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from mribench.results.lock import RunLock
        RunLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MribenchError, match=f"being written by another bench run \\(pid "
                                                f"{holder.pid}, `.*`\\); wait for it"):
            run_benchmark(_config(tmp_path))
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    messages = []
    outcome = run_benchmark(_config(tmp_path), on_message=messages.append)
    assert [r.status for r in outcome.rows] == ["done"]
    assert any("taking over the lock" in m for m in messages)
    assert not (out / ".lock").exists()
    lock = RunLock(out)
    lock.acquire()
    lock.release()


def test_workers_die_with_their_parent(tmp_path):
    """A spawned worker of the local executor exits when its driver is SIGKILLed."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing as mp, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from mribench.run.local import _worker_init

        if __name__ == "__main__":
            pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                       initializer=_worker_init, initargs=(os.getpid(),))
            future = pool.submit(os.getpid)
            print(future.result(), flush=True)
            pool.submit(time.sleep, 120)
            time.sleep(120)
    """))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(driver.stdout.readline())
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it became our zombie
            os.waitpid(worker, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its parent by 20 s")


def test_two_param_sets_of_one_method_are_two_rows(tmp_path, fake_registry):
    outcome = run_benchmark(_config(tmp_path, methods="bright[quantile=0.2],bright[quantile=0.8]"))
    assert sorted(r.name for r in outcome.rows) == ["bright[quantile=0.2]",
                                                    "bright[quantile=0.8]"]
    for name in ("bright[quantile=0.2]", "bright[quantile=0.8]"):
        status = json.loads((tmp_path / "run" / name / "seed-0" / "status.json").read_text())
        assert status["status"] == "done"
    a, b = (json.loads((tmp_path / "run" / n / "seed-0" / "status.json").read_text())["params"]
            for n in ("bright[quantile=0.2]", "bright[quantile=0.8]"))
    assert a["quantile"] == 0.2 and b["quantile"] == 0.8


def test_several_seeds_give_per_seed_rows_and_mean_and_sd(tmp_path, fake_registry):
    from mribench.report.tables import format_table
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results

    run_benchmark(_config(tmp_path, methods="bright,oracle", seeds=(0, 1, 2)))
    for seed in (0, 1, 2):
        assert (tmp_path / "run" / "bright" / f"seed-{seed}" / "metrics.json").is_file()
    results = load_results(tmp_path / "run")
    table = ranked_table(results, "classify", "f1")
    assert set(table["seeds"]) == {3}
    oracle = results.rows["oracle"]
    assert sorted(oracle.seed_metrics) == [0, 1, 2]
    f1 = oracle.metrics["classify"]["metrics"]["f1"]
    assert f1["seeds"] and len(f1["seeds"]) == 3 and "sd" in f1
    assert "±" in format_table(table, "simple")
    from mribench.report import build_report

    index = build_report(tmp_path / "run", tmp_path / "report")
    assert ("Values: mean over 3 seeds ± sd [95% interval of a two-level bootstrap: clusters "
            "of test images, then seeds") in (index.parent / "report.md").read_text()


def test_a_job_records_the_threads_it_computed_with(tmp_path, fake_registry):
    # Deep methods' trained weights depend on torch's thread count: every row says it.
    run_benchmark(_config(tmp_path))
    status = json.loads((tmp_path / "run" / "bright" / "seed-0" / "status.json").read_text())
    assert status["threads"]["blas"] >= 1
