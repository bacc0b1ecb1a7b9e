"""Hardening (issue 14): `bench report`, `bench check` and `bench baseline` on bad input end in
one line and exit status 2, never a traceback, and never write outside the folder asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mribench.cli import main
from mribench.testing import make_fake_results


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_results(tmp_path_factory.mktemp("results") / "run", n_test=12, size=16)


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `bench ARGS`; assert exit status 2 and a single `error:` line; return that line."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _unwritable(tmp_path: Path) -> Path:
    """A path that cannot be created on any system (its parent is a regular file), like
    /proc/x for a user; it needs neither root nor a special mount."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    return blocker / "x"


# --------------------------------------------------------------------------- writing fails


def test_report_out_unwritable_is_one_line(run_dir, tmp_path, capsys):
    out = _unwritable(tmp_path)
    line = _one_line_error(["report", str(run_dir), "--out", str(out)], capsys)
    assert f"cannot write the report to {out}" in line and "--out" in line


def test_report_out_proc_is_one_line(run_dir, capsys):
    line = _one_line_error(["report", str(run_dir), "--out", "/proc/x"], capsys)
    assert "/proc/x" in line and "pass --out a folder you can write to" in line


def test_baseline_out_unwritable_is_one_line(run_dir, tmp_path, capsys):
    out = _unwritable(tmp_path) / "b.json"
    line = _one_line_error(["baseline", str(run_dir), "--out", str(out)], capsys)
    assert f"cannot write the baseline {out}" in line and "--out" in line


def test_baseline_out_proc_is_one_line(run_dir, capsys):
    line = _one_line_error(["baseline", str(run_dir), "--out", "/proc/x/b.json"], capsys)
    assert "/proc/x/b.json" in line


# --------------------------------------------------------------------------- where reports go


def test_report_run_json_list_is_one_line(run_dir, tmp_path, capsys):
    bad = shutil.copytree(run_dir, tmp_path / "listrun")
    (bad / "run.json").write_text("[1, 2, 3]")
    line = _one_line_error(["report", str(bad), "--out", str(tmp_path / "rep")], capsys)
    assert "run.json" in line


@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/mribench-escaped-report", "..", ""])
def test_report_never_uses_run_id_as_a_path(run_dir, tmp_path, monkeypatch, run_id):
    from mribench.report import build_report

    copy = shutil.copytree(run_dir, tmp_path / "work" / "results" / "my run")
    info = json.loads((copy / "run.json").read_text())
    info["run_id"] = run_id
    (copy / "run.json").write_text(json.dumps(info))
    cwd = tmp_path / "work"
    monkeypatch.chdir(cwd)
    index = build_report(copy)
    assert index == copy / "report" / "index.html"  # inside the results folder, by default
    assert index.is_file() and not (cwd / "reports").exists()
    assert not Path("/tmp/mribench-escaped-report").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_report_dir_is_inside_the_results_folder():
    from mribench.report.build import report_dir

    assert report_dir(Path("results/..hidden name")) == Path("results/..hidden name/report")
    assert report_dir(Path("/elsewhere/run")) == Path("/elsewhere/run/report")


@pytest.mark.parametrize("out", ["sub/..", ".", "..", "sub/../.."])
def test_report_out_into_working_folder_is_refused(run_dir, tmp_path, monkeypatch, capsys, out):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work)
    line = _one_line_error(["report", str(run_dir), "--out", out], capsys)
    assert "a report needs a folder of its own" in line
    assert not (work / "index.html").exists() and not (tmp_path / "index.html").exists()


def test_report_out_sibling_with_dotdot_is_allowed(tmp_path, monkeypatch):
    from mribench.report.build import report_dir

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert report_dir(Path("r"), Path("../site")) == Path("../site")


# --------------------------------------------------------------------------- baseline files


def _baseline(tmp_path: Path, change) -> Path:
    data = {"format": 1, "tolerance": 0.02, "tolerances": {},
            "methods": {"glcm-svm": {"classify": {"accuracy": 0.5}}}}
    change(data)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("change", "key"), [
    (lambda d: d["methods"]["glcm-svm"]["classify"].update(accuracy="abc"),
     "methods.glcm-svm.classify.accuracy"),
    (lambda d: d.update(tolerance="x"), '"tolerance"'),
    (lambda d: d["methods"].update({"glcm-svm": "fast"}), "methods.glcm-svm"),
    (lambda d: d["methods"]["glcm-svm"]["classify"].update(
        accuracy={"value": 0.5, "tolerance": "x"}), "methods.glcm-svm.classify.accuracy.tolerance"),
    (lambda d: d["methods"]["glcm-svm"].update(classify=[0.5]), "methods.glcm-svm.classify"),
    (lambda d: d.update(tolerances={"f1": -1}), "tolerances.f1"),
    (lambda d: d.update(created_from="yesterday"), '"created_from"'),
], ids=["value-abc", "tolerance-x", "method-string", "entry-tolerance-x", "task-list",
        "negative-tolerance", "created-from-string"])
def test_check_bad_baseline_is_one_line_naming_the_key(run_dir, tmp_path, capsys, change, key):
    path = _baseline(tmp_path, change)
    line = _one_line_error(["check", str(run_dir), "--baseline", str(path)], capsys)
    assert str(path) in line and f"{key} must be" in line


def test_check_baseline_not_json_is_one_line(run_dir, tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_bytes(b"\xff\xfe{")
    line = _one_line_error(["check", str(run_dir), "--baseline", str(path)], capsys)
    assert "not valid JSON" in line


def test_check_null_tolerance_means_the_default(run_dir, tmp_path):
    from mribench.report.check import check

    def change(d):
        d.update(tolerance=None)
        d["methods"]["glcm-svm"]["classify"]["accuracy"] = 1.0

    problems = check(run_dir, _baseline(tmp_path, change))
    assert len(problems) == 1 and "(tolerance 0.0200)" in problems[0]
