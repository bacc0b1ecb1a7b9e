"""Scale-out executors (dask, SLURM through submitit) and ``bench status``, without a cluster.

dask runs a two-worker LocalCluster and submitit its local executor (subprocesses); both must
give metrics identical to the in-process run. Test methods live at module level: a spawned
worker gets the class by reference (``Job.method_cls``), a monkeypatched registry does not
reach it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mribench.api import registry
from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.types import Prediction, Sample
from mribench.run.config import RunConfig
from mribench.run.executors import make_executor
from mribench.run.jobs import Job
from mribench.run.runner import run_benchmark

pytest.importorskip("distributed")
pytest.importorskip("submitit")

SPEC = "synthetic[n=60]"
METHODS = "glcm-knn,svm"


class Bright(Method):
    """A tiny, real learner: thresholds the 99.5th intensity percentile."""

    name = "bright"
    reference = "test fixture"

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> Bright:
        v = np.array([np.percentile(s.image, 99.5) for s in train])
        y = np.array([s.label for s in train])
        self.threshold_ = float((v[y == 1].mean() + v[y == 0].mean()) / 2)
        import torch
        from threadpoolctl import threadpool_info

        ctx.record(torch_threads=torch.get_num_threads(),  # the executor's pinning
                   blas_threads=max([p["num_threads"] for p in threadpool_info()] or [1]),
                   omp_env=os.environ.get("OMP_NUM_THREADS"))
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        v = np.array([np.percentile(s.image, 99.5) for s in samples])
        return Prediction([s.id for s in samples], (v > self.threshold_).astype(int), v)


class DiesOnce(Bright):
    """Kills its worker process in the middle of its first fit (a marker file remembers)."""

    name = "dies-once"

    def fit(self, train, val, ctx):
        marker = Path(ctx.workdir) / "died-once"
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
        return super().fit(train, val, ctx)


class DeepFake(Bright):
    name = "deep-fake"
    kind = "deep"


def _config(out: Path, **kw) -> RunConfig:
    base = dict(methods=METHODS, dataset=SPEC, image_size=64, n_boot=50, device="cpu",
                out=out, results_root=out.parent, baselines=False)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache) -> Path:
    """The in-process (serial) run every executor must match."""
    out = tmp_path_factory.mktemp("reference") / "run"
    outcome = run_benchmark(_config(out))
    assert {r.status for r in outcome.rows} == {"done"}
    return out


def _metrics(run: Path) -> dict[str, dict]:
    return {f"{row}/{seed.name}": json.loads((seed / "metrics.json").read_text())
            for row in METHODS.split(",") for seed in sorted((run / row).glob("seed-*"))}


def test_dask_local_cluster_matches_the_local_executor(tmp_path, reference):
    outcome = run_benchmark(_config(tmp_path / "run", executor="dask", jobs=2))
    assert sorted((r.name, r.status) for r in outcome.rows) == [("glcm-knn", "done"),
                                                               ("svm", "done")]
    assert _metrics(tmp_path / "run") == _metrics(reference)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["executor"] == "dask"


def test_submitit_local_array_matches_the_local_executor(tmp_path, reference):
    outcome = run_benchmark(_config(tmp_path / "run", executor="slurm",
                                    executor_options={"cluster": "local", "time": 10}))
    assert sorted((r.name, r.status) for r in outcome.rows) == [("glcm-knn", "done"),
                                                               ("svm", "done")]
    assert _metrics(tmp_path / "run") == _metrics(reference)
    assert (tmp_path / "run" / ".submitit").is_dir()


def test_a_killed_dask_worker_leaves_a_resumable_run(tmp_path, data_cache, monkeypatch):
    import dask

    from mribench.cli import cli

    table = {"bright": Bright, "dies-once": DiesOnce}
    monkeypatch.setattr(registry, "methods", lambda: table)
    out = tmp_path / "run"
    config = dict(methods="bright,dies-once", image_size=48)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # no retry
        outcome = run_benchmark(_config(out, executor="dask", jobs=1, **config))
    status = {r.name: (r.status, r.reason) for r in outcome.rows}
    assert status["bright"] == ("done", None)
    assert status["dies-once"][0] == "failed"
    assert status["dies-once"][1].startswith("worker died: KilledWorker")
    assert not (out / "dies-once" / "seed-0" / "status.json").exists()
    history = json.loads((out / "bright" / "seed-0" / "history.json").read_text())
    assert history == [{"torch_threads": 1.0, "blas_threads": 1.0, "omp_env": "1"}]
    assert json.loads((out / "run.json").read_text())["status"] == "failed"

    shown = CliRunner().invoke(cli, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line for line in shown.output.splitlines() if line.strip()}
    assert "done" in lines["bright"]
    assert "interrupted" in lines["dies-once"] and "stopped before it finished" in shown.output
    assert "2 job(s): 1 done, 1 interrupted" in shown.output
    assert f"bench run --resume --out {out}" in shown.output

    outcome = run_benchmark(_config(out, resume=True, **config))
    status = {r.name: (r.status, r.reason) for r in outcome.rows}
    assert status["dies-once"] == ("done", None)
    assert status["bright"][1].startswith("resumed")
    shown = CliRunner().invoke(cli, ["status", str(out), "--json"])
    info = json.loads(shown.output)
    assert info["state"] == "done" and info["counts"] == {"done": 2}


def _job(method: type[Method], device: str = "cpu") -> Job:
    return Job(row=method.name, method=method.name, overrides=(), seed=0,
               run_dir=Path("/tmp/run"), dataset=SPEC, data_dir=None, image_size=64,
               profile="quick", task=None, device=device, n_boot=50, method_cls=method)


def test_slurm_parameters_map_our_names_to_submitit():
    from mribench.run.cluster import slurm_parameters

    options = {"partition": "gpu", "time": 90, "cpus": 4, "mem_gb": 16,
               "array_parallelism": 8, "account": "lab", "qos": "normal", "cluster": "slurm"}
    assert slurm_parameters(options, [_job(Bright)]) == {
        "name": "mribench", "slurm_partition": "gpu", "timeout_min": 90, "cpus_per_task": 4,
        "mem_gb": 16, "slurm_array_parallelism": 8, "slurm_account": "lab",
        "slurm_qos": "normal"}
    # deep jobs on cuda ask for one GPU each, unless the user said how many
    assert slurm_parameters({}, [_job(DeepFake, "cuda")])["gpus_per_node"] == 1
    assert "gpus_per_node" not in slurm_parameters({}, [_job(DeepFake, "cpu")])
    assert "gpus_per_node" not in slurm_parameters({}, [_job(Bright, "cuda")])
    assert slurm_parameters({"gpus": 2}, [_job(DeepFake, "cuda")])["gpus_per_node"] == 2
    assert "gpus_per_node" not in slurm_parameters({"gpus": 0}, [_job(DeepFake, "cuda")])
    # --jobs caps the array unless array_parallelism says otherwise
    assert slurm_parameters({}, [], parallel=3)["slurm_array_parallelism"] == 3
    assert "slurm_array_parallelism" not in slurm_parameters({}, [], parallel=1)
    assert slurm_parameters({}, [])["cpus_per_task"] == 1


@pytest.mark.parametrize("options, message", [
    ({"partiton": "gpu"}, r"unknown --executor-option partiton; allowed: account, "
                          r"array_parallelism, cluster, cpus, gpus, mem_gb, partition, qos, "
                          r"time"),
    ({"time": "1h"}, r"option time must be an integer of at least 1, got '1h'"),
    ({"cpus": 0}, r"option cpus must be an integer of at least 1"),
    ({"gpus": -1}, r"option gpus must be an integer of at least 0"),
    ({"mem_gb": "lots"}, r"option mem_gb must be a positive number"),
    ({"cluster": "pbs"}, r"option cluster must be one of slurm, local, debug"),
    ({"partition": ""}, r"option partition must be a name"),
])
def test_slurm_parameters_refuse_bad_options_in_one_line(options, message):
    from mribench.run.cluster import slurm_parameters

    with pytest.raises(MribenchError, match=message) as err:
        slurm_parameters(options, [])
    assert "\n" not in str(err.value)


def test_make_executor_checks_cluster_options(monkeypatch):
    with pytest.raises(MribenchError, match=r"--executor dask: unknown --executor-option "
                                            r"workers; allowed: dashboard, memory_limit, "
                                            r"scheduler"):
        make_executor("dask", 2, {"workers": 3})
    with pytest.raises(MribenchError, match=r"not known; choose one of local, dask, slurm"):
        make_executor("ray", 2, {})
    monkeypatch.setenv("PATH", "")
    with pytest.raises(MribenchError, match=r"sbatch is not on PATH.*cluster=local"):
        make_executor("slurm", 1, {})
    assert make_executor("slurm", 1, {"cluster": "local"}).cluster == "local"
    # a scheduler is probed when the executor is made (tests/test_hardening_executors.py)
    with pytest.raises(MribenchError, match=r"cannot reach the scheduler at tcp://h:8786"):
        make_executor("dask", 2, {"scheduler": "h:8786", "timeout": 2})


def test_a_missing_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(MribenchError, match=r'^--executor dask needs dask.distributed: pip '
                                            r'install "mribench\[cluster\]"$'):
        make_executor("dask", 2, {})
    with pytest.raises(MribenchError, match=r'^--executor slurm needs submitit: pip install '
                                            r'"mribench\[cluster\]"$'):
        make_executor("slurm", 2, {"cluster": "local"})


def test_status_of_a_run_whose_driver_was_stopped(tmp_path):
    """A folder as a killed driver leaves it: run.json says running, the lock's pid is gone."""
    from mribench.cli import cli

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "run_id": "r1", "methods": ["a", "b", "c"], "seeds": [0, 1], "status": "running",
        "executor": "slurm"}))
    (run / ".lock").write_text("999999999\n")  # no such process
    for row, seed, status in [("a", 0, "done"), ("a", 1, "done"), ("b", 0, "failed"),
                              ("c", 0, "skipped")]:
        folder = run / row / f"seed-{seed}"
        folder.mkdir(parents=True)
        reason = {"failed": "RuntimeError: boom", "skipped": "needs a GPU"}.get(status)
        (folder / "status.json").write_text(json.dumps({"status": status, "reason": reason}))
    (run / "b" / "seed-1").mkdir()
    (run / "b" / "seed-1" / "log.txt").write_text("fit\n")

    result = CliRunner().invoke(cli, ["status", str(run)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("run r1: stopped (its driver is gone), executor slurm")
    rows = [line.split(None, 3) for line in out.splitlines()[3:9]]
    assert [r[:3] for r in rows] == [["a", "0", "done"], ["a", "1", "done"],
                                     ["b", "0", "failed"], ["b", "1", "interrupted"],
                                     ["c", "0", "skipped"], ["c", "1", "not"]]
    assert "RuntimeError: boom" in rows[2][3] and "needs a GPU" in rows[4][3]
    assert "6 job(s): 2 done, 1 failed, 1 skipped, 1 interrupted, 1 not started" in out
    assert "bench run --resume --out" in out

    # while the driver runs, a started job is running
    (run / ".lock").write_text(f"{os.getpid()}\n")
    info = json.loads(CliRunner().invoke(cli, ["status", str(run), "--json"]).output)
    assert info["state"] == "running" and info["driver_pid"] == os.getpid()
    assert [j["status"] for j in info["jobs"] if j["row"] == "b"] == ["failed", "running"]
    assert info["counts"]["running"] == 1


def test_status_refuses_a_folder_that_is_not_a_run(tmp_path):
    from mribench.cli import main

    with pytest.raises(SystemExit) as code:
        main(["status", str(tmp_path)])
    assert code.value.code == 2


def test_submitit_debug_runs_the_array_in_this_process(tmp_path, data_cache, monkeypatch):
    monkeypatch.setattr(registry, "methods", lambda: {"bright": Bright})
    outcome = run_benchmark(_config(tmp_path / "run", methods="bright", image_size=48,
                                    seeds=(0, 1), executor="slurm",
                                    executor_options={"cluster": "debug"}))
    assert sorted((r.name, r.seed, r.status) for r in outcome.rows) == [
        ("bright", 0, "done"), ("bright", 1, "done")]
