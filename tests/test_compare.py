"""``bench compare``: two runs row by row, the difference of a metric and a paired test of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mribench.cli import cli
from mribench.eval.metrics import classification_metrics
from mribench.eval.stats import paired_metric_test
from mribench.results.compare import compare_runs
from mribench.results.read import load_results
from mribench.testing import make_fake_results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = make_fake_results(root / "a", n_test=60, seed=0)
    b = make_fake_results(root / "b", n_test=60, seed=0)
    # B's classifier answers every image right: its F1 is 1 and the difference must show.
    cases = json.loads((b / "glcm-svm" / "seed-0" / "per_case.json").read_text())
    for record in cases:
        if "pred" in record:
            record["pred"] = record["label"]
    (b / "glcm-svm" / "seed-0" / "per_case.json").write_text(json.dumps(cases))
    metrics = json.loads((b / "glcm-svm" / "seed-0" / "metrics.json").read_text())
    y = [r["label"] for r in cases if "pred" in r]
    metrics["tasks"]["classify"]["metrics"]["f1"]["value"] = classification_metrics(
        y, y, n_boot=0)["metrics"]["f1"]["value"]
    (b / "glcm-svm" / "seed-0" / "metrics.json").write_text(json.dumps(metrics))
    return a, b


def test_a_run_against_itself_differs_by_nothing(runs):
    a, _ = runs
    frame = compare_runs(load_results(a), load_results(a), "classify", "f1")
    assert set(frame["method"]) == {"glcm-svm", "unet", "unet+crf"}
    assert np.allclose(frame["difference"], 0) and np.allclose(frame["p"], 1.0)


def test_the_difference_and_its_test_are_the_runs_own(runs):
    a, b = runs
    ra, rb = load_results(a), load_results(b)
    frame = compare_runs(ra, rb, "classify", "f1").set_index("method")
    row = frame.loc["glcm-svm"]
    want_a = ra.rows["glcm-svm"].metric("classify", "f1")["value"]
    assert row["a"] == pytest.approx(want_a) and row["b"] == pytest.approx(1.0)
    assert row["difference"] == pytest.approx(1.0 - want_a) and row["difference"] > 0.1
    direct = paired_metric_test(rb.rows["glcm-svm"].per_seed, ra.rows["glcm-svm"].per_seed,
                                "f1", "classify")
    assert row["p"] == pytest.approx(direct.p_value) and row["p"] < 0.01
    assert row["n"] == 60
    assert frame.loc["unet", "difference"] == pytest.approx(0.0)  # unchanged rows: no change
    # Holm over the three rows: never below the raw p, at most 1
    assert (frame["p_holm"] >= frame["p"] - 1e-12).all() and (frame["p_holm"] <= 1).all()


def test_bench_compare_prints_the_table_and_says_when_splits_differ(runs, tmp_path):
    a, b = runs
    result = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "glcm-svm" in result.output and "B - A" in result.output
    assert "different splits" not in result.output
    other = make_fake_results(tmp_path / "other", n_test=60, seed=0)
    run = json.loads((other / "run.json").read_text())
    run["split"]["sha256"] = "0" * 64
    (other / "run.json").write_text(json.dumps(run))
    result = CliRunner().invoke(cli, ["compare", str(a), str(other), "--task", "segment",
                                      "--format", "github"])
    assert result.exit_code == 0, result.output
    assert "different splits" in result.output and "| unet" in result.output
