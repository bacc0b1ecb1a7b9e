"""Regression check against a baseline: tolerances, missing and failed methods."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mribench.api.errors import MribenchError
from mribench.report.check import check, make_baseline
from mribench.testing import make_fake_results


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_results(tmp_path_factory.mktemp("results") / "run", n_test=20, size=32)


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_baseline_round_trip(run_dir: Path, tmp_path: Path) -> None:
    base = make_baseline(run_dir, tmp_path / "b.json", tolerance=0.03)
    data = json.loads(base.read_text())
    assert set(data["methods"]) == {"glcm-svm", "unet", "unet+crf"}  # not failed/skipped
    assert set(data["methods"]["unet"]) == {"classify", "segment"}
    assert data["tolerance"] == 0.03 and data["created_from"]["dataset"] == "fake"
    assert "mean_dice" in data["methods"]["unet"]["segment"]
    assert check(run_dir, base) == []


def test_drop_beyond_tolerance_is_named(run_dir: Path, tmp_path: Path) -> None:
    base = make_baseline(run_dir, tmp_path / "b.json", tolerance=0.02)
    value = json.loads(base.read_text())["methods"]["glcm-svm"]["classify"]["accuracy"]
    copy = shutil.copytree(run_dir, tmp_path / "run")

    def lower(by: float):
        def change(d):
            d["tasks"]["classify"]["metrics"]["accuracy"]["value"] = value - by
        return change

    _edit(copy / "glcm-svm" / "seed-0" / "metrics.json", lower(0.019))
    assert check(copy, base) == []
    _edit(copy / "glcm-svm" / "seed-0" / "metrics.json", lower(0.05))
    problems = check(copy, base)
    assert len(problems) == 1
    assert problems[0].startswith("glcm-svm classify accuracy:") and "0.0500" in problems[0]
    assert check(copy, base, tolerance=0.06) == []
    # a per-metric tolerance in the baseline wins over the default and --tolerance
    _edit(base, lambda d: d.update(tolerances={"accuracy": 0.001}))
    assert len(check(copy, base, tolerance=0.06)) == 1
    # and an entry's own tolerance wins over the per-metric one
    _edit(base, lambda d: d["methods"]["glcm-svm"]["classify"].update(
        accuracy={"value": value, "tolerance": 0.1}))
    assert check(copy, base) == []


def test_missing_failed_and_nan_are_regressions(run_dir: Path, tmp_path: Path) -> None:
    base = make_baseline(run_dir, tmp_path / "b.json")
    copy = shutil.copytree(run_dir, tmp_path / "run")
    shutil.rmtree(copy / "glcm-svm")
    _edit(copy / "run.json", lambda d: d["methods"].remove("glcm-svm"))
    _edit(copy / "unet+crf" / "seed-0" / "status.json",
          lambda d: d.update(status="failed", reason="ValueError: boom"))
    _edit(copy / "unet" / "seed-0" / "metrics.json",
          lambda d: d["tasks"]["classify"]["metrics"]["auc"].update(value=None))
    problems = check(copy, base)
    assert "glcm-svm: missing from the results (the baseline expects it)" in problems
    assert "unet+crf: failed: ValueError: boom" in problems
    assert any(p.startswith("unet classify auc: no value") for p in problems)
    assert len(problems) == 3


def test_other_dataset_and_bad_files(run_dir: Path, tmp_path: Path) -> None:
    base = make_baseline(run_dir, tmp_path / "b.json")
    _edit(base, lambda d: d["created_from"].update(dataset="br35h"))
    assert any("dataset 'br35h'" in p for p in check(run_dir, base))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(MribenchError, match="no \"methods\" table"):
        check(run_dir, bad)
    with pytest.raises(MribenchError, match="does not exist"):
        check(run_dir, tmp_path / "nope.json")
    with pytest.raises(MribenchError, match="not a results folder"):
        make_baseline(tmp_path, tmp_path / "x.json")
