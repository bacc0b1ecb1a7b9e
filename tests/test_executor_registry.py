"""An executor is one class and one entry point (:mod:`mribench.run.executors`).

A toy executor, declared by a dist-info folder on ``sys.path`` as an installed package would
declare it, runs ``bench run``; the registry reaches executors through entry points only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mribench.api.errors import MribenchError
from mribench.cli import cli

SPEC = "synthetic[n=60]"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))


TOY_EXECUTOR = '''
from mribench.run.execute import run_job


class ToyExecutor:
    """Runs every job in this process, last job first, and remembers what it was given."""

    seen = []

    def __init__(self, jobs, **options):
        self.jobs, self.options = jobs, options

    def map_jobs(self, jobs):
        for job in reversed(list(jobs)):
            ToyExecutor.seen.append((job.row, self.jobs, self.options))
            yield job, run_job(job)
'''


@pytest.fixture
def toy_executor(tmp_path, monkeypatch):
    """A package ``toy-exec`` on sys.path: one class and one entry point."""
    root = tmp_path / "site"
    (root / "toy_exec-0.1.dist-info").mkdir(parents=True)
    (root / "toy_exec.py").write_text(TOY_EXECUTOR)
    (root / "toy_exec-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-exec\nVersion: 0.1\n")
    (root / "toy_exec-0.1.dist-info" / "entry_points.txt").write_text(
        "[mribench.executors]\ntoy = toy_exec:ToyExecutor\n")
    monkeypatch.syspath_prepend(str(root))
    yield
    sys.modules.pop("toy_exec", None)


def test_a_toy_executor_is_one_class_and_one_entry_point(tmp_path, cache, toy_executor):
    from mribench.run.executors import executors, make_executor

    assert list(executors()) == ["local", "dask", "slurm", "toy"]
    with pytest.raises(MribenchError, match=r"not known; choose one of local, dask, slurm, toy"):
        make_executor("ray", 1, {})
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "run", "--method", "glcm-knn,svm", "--dataset", SPEC, "--image-size", "64",
        "--executor", "toy", "--executor-option", "queue=short", "--jobs", "2",
        "--n-boot", "50", "--out", str(out), "--no-report", "--no-baselines"])
    assert result.exit_code == 0, result.output
    seen = sys.modules["toy_exec"].ToyExecutor.seen
    assert sorted(row for row, _, _ in seen) == ["glcm-knn", "svm"]
    assert {(jobs, tuple(options.items())) for _, jobs, options in seen} == {
        (2, (("queue", "short"),))}
    assert json.loads((out / "run.json").read_text())["executor"] == "toy"
    for row in ("glcm-knn", "svm"):
        assert json.loads((out / row / "seed-0" / "status.json").read_text())["status"] == "done"


def test_an_executor_that_cannot_load_is_one_line(monkeypatch):
    from importlib.metadata import EntryPoint

    from mribench.run import executors

    monkeypatch.setattr(executors, "_entry_points", lambda: [
        EntryPoint("broken", "no_such_module_xyz:Executor", executors.ENTRY_POINT_GROUP)])
    with pytest.raises(MribenchError, match=r"^--executor broken: cannot load "
                                            r"no_such_module_xyz:Executor \(ModuleNotFound"):
        executors.make_executor("broken", 1, {})
    # the built-ins stay known even where the installed metadata lacks them
    assert list(executors.executors()) == ["local", "broken", "dask", "slurm"]


def test_no_executor_module_imports_another():
    """The registry reaches executors through entry points only (no import cycle)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "mribench" / "run"
    for name, forbidden in [("executors.py", {"mribench.run.cluster"}),
                            ("cluster.py", {"mribench.run.executors", "mribench.run.local"}),
                            ("local.py", {"mribench.run.executors", "mribench.run.cluster"})]:
        tree = ast.parse((root / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
        assert not imported & forbidden, name
