"""A metric is one registry entry (:mod:`mribench.eval.registry`).

A toy metric (balanced accuracy, from confusion counts) goes through ``bench run --rank-by``,
``metrics.json``, the tables, ``bench baseline``/``bench check`` and ``bench report`` without
touching any other list; a lower-is-better one ranks and regresses the other way.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mribench.api.errors import MribenchError
from mribench.api.overlap import safe_ratio
from mribench.cli import cli
from mribench.eval import registry
from mribench.eval.metrics import (
    classification_metrics,
    metrics_from_counts,
    segmentation_metrics,
)
from mribench.eval.registry import Metric, register_metric, unregister_metric

SPEC = "synthetic[n=60]"


def _balanced_accuracy(tp, fp, tn, fn):
    return (safe_ratio(tp, tp + fn) + safe_ratio(tn, tn + fp)) / 2


BALANCED = Metric("balanced_accuracy", "Balanced accuracy", _balanced_accuracy,
                  description="(recall + specificity) / 2")
ERROR_RATE = Metric("error_rate", "Error rate",
                    lambda tp, fp, tn, fn: safe_ratio(fp + fn, tp + fp + tn + fn),
                    higher_is_better=False, tasks=("classify",))


@pytest.fixture
def balanced():
    """The toy metric, registered for one test and removed after it."""
    register_metric(BALANCED)
    yield BALANCED
    unregister_metric(BALANCED.name)


@pytest.fixture
def error_rate():
    register_metric(ERROR_RATE)
    yield ERROR_RATE
    unregister_metric(ERROR_RATE.name)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))


def _table(output: str, heading: str) -> list[str]:
    """The method column of the table printed after the line starting with ``heading``
    (the ranked rows: the no-skill rows listed below them are not ranked)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 3:]:  # heading, header, rule
        if not line.strip() or "(no skill)" in line:
            break
        rows.append(line.split()[3])
    return rows


def test_a_toy_metric_is_one_registry_entry_through_bench_run(tmp_path, cache, balanced):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "run", "--method", "glcm-knn,region-growing", "--dataset", SPEC, "--image-size", "64",
        "--rank-by", "balanced_accuracy", "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "Balanced accuracy ▼" in result.output
    for task in ("classify", "segment"):
        values = {}
        for row in ("glcm-knn", "region-growing"):
            block = json.loads((out / row / "seed-0" / "metrics.json").read_text())["tasks"]
            if task not in block:
                continue
            entry = block[task]["metrics"]["balanced_accuracy"]
            c = block[task]["confusion"]
            assert entry["value"] == pytest.approx(
                (c["tp"] / (c["tp"] + c["fn"]) + c["tn"] / (c["tn"] + c["fp"])) / 2)
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
            values[row] = entry["value"]
        shown = _table(result.output, f"{task}: ranked by balanced_accuracy")
        assert shown == sorted(values, key=values.get, reverse=True)

    baseline = tmp_path / "baseline.json"
    made = CliRunner().invoke(cli, ["baseline", str(out), "--out", str(baseline)])
    assert made.exit_code == 0, made.output
    saved = json.loads(baseline.read_text())["methods"]["glcm-knn"]["classify"]
    assert "balanced_accuracy" in saved
    checked = CliRunner().invoke(cli, ["check", str(out), "--baseline", str(baseline)])
    assert checked.exit_code == 0, checked.output
    report = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "report"),
                                      "--rank-by", "balanced_accuracy"])
    assert report.exit_code == 0, report.output
    assert "Balanced accuracy" in (tmp_path / "report" / "report.md").read_text()


def test_a_new_metric_changes_no_other_number(balanced):
    """Registering a pooled metric adds its entry and leaves every other value, interval and
    resample of the bootstrap as it was (the draws do not depend on the metrics)."""
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 90)
    p = np.where(rng.random(90) < 0.7, t, 1 - t)
    s = p + rng.normal(0, 1, 90)
    masks_t = rng.random((9, 8, 8)) < 0.3
    masks_p = np.where(rng.random(masks_t.shape) < 0.8, masks_t, ~masks_t)
    with_toy = (classification_metrics(t, p, s, n_boot=200, seed=3),
                segmentation_metrics(masks_t, masks_p, n_boot=200, seed=3))
    unregister_metric("balanced_accuracy")
    try:
        without = (classification_metrics(t, p, s, n_boot=200, seed=3),
                   segmentation_metrics(masks_t, masks_p, n_boot=200, seed=3))
    finally:
        register_metric(BALANCED)
    for a, b in zip(with_toy, without, strict=True):
        assert a["metrics"].pop("balanced_accuracy")["value"] >= 0
        assert a == b


def test_a_lower_is_better_metric_ranks_and_regresses_the_other_way(tmp_path, error_rate):
    from mribench.report.check import check, make_baseline
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results
    from mribench.testing import make_fake_results

    run = make_fake_results(tmp_path / "run", n_test=40, seed=0)
    table = ranked_table(load_results(run), "classify", "error_rate")
    assert list(table["error_rate"]) == sorted(table["error_rate"])
    assert table.attrs["higher_is_better"] is False
    baseline = make_baseline(run, tmp_path / "baseline.json", tolerance=0.001)
    data = json.loads(baseline.read_text())
    row = next(iter(data["methods"]))
    data["methods"][row]["classify"]["error_rate"] -= 0.05   # the run is now worse than this
    data["methods"][row]["classify"]["accuracy"] -= 0.05     # ... and better than this
    baseline.write_text(json.dumps(data))
    problems = check(run, baseline)
    assert len(problems) == 1 and "error_rate" in problems[0]
    assert "is above the baseline" in problems[0] and "lower is better" in problems[0]


def test_metric_entries_are_checked_in_one_line():
    for bad, message in [
        (dict(name="Bad Name", label="x", from_counts=_balanced_accuracy), "lower-case"),
        (dict(name="rank", label="x", from_counts=_balanced_accuracy), "taken by a column"),
        (dict(name="x", label="x"), "needs from_counts"),
        (dict(name="x", label="x", from_counts=_balanced_accuracy, tasks=("detect",)),
         "tasks must be"),
        (dict(name="x", label="x", from_counts=_balanced_accuracy, aggregate="per_image"),
         "segment only"),
        (dict(name="x", label="x", aggregate="scores", tasks=("classify",)),
         "needs from_scores"),
        (dict(name="x", label="x", from_counts=_balanced_accuracy, test="t"), "test must be"),
    ]:
        with pytest.raises(MribenchError, match=message) as err:
            Metric(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(MribenchError, match="registered already"):
        register_metric(Metric("f1", "F1", _balanced_accuracy))
    with pytest.raises(MribenchError, match="is not a metric; choose one of accuracy, auc"):
        registry.get_metric("nosuch")


def test_metric_plugins_load_from_entry_points(monkeypatch):
    """A package's Metric under ``mribench.metrics`` is registered on the first look-up."""
    from importlib.metadata import EntryPoint

    module = type(sys)("toy_metric_plugin")
    module.NPV = Metric("npv", "NPV", lambda tp, fp, tn, fn: safe_ratio(tn, tn + fn))
    monkeypatch.setitem(sys.modules, "toy_metric_plugin", module)
    monkeypatch.setattr(registry, "_entry_points", lambda: [
        EntryPoint("npv", "toy_metric_plugin:NPV", registry.ENTRY_POINT_GROUP)])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert registry.metric_names("classify")[-1] == "npv"
    got = metrics_from_counts(8, 2, 85, 5)
    assert got["npv"] == pytest.approx(85 / 90)
