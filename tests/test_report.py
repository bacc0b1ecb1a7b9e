"""The report of a fake results folder, the results loader, ranked tables, and the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mribench.api.errors import MribenchError
from mribench.cli import cli
from mribench.report import build_report
from mribench.report.tables import format_table
from mribench.results.rank import ranked_table
from mribench.results.read import load_results, metric_names
from mribench.testing import make_fake_results

ROWS = ["glcm-svm", "unet", "unet+crf"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_results(tmp_path_factory.mktemp("results") / "20240101-000000-fake-quick")


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(run_dir, tmp_path_factory.mktemp("report"))


def test_loader_reads_every_row(run_dir: Path) -> None:
    results = load_results(run_dir)
    assert list(results.rows) == [*ROWS, "two-pathway-cnn", "fcm-cluster"]
    assert [r.name for r in results.done()] == ROWS
    assert {r.name: r.status for r in results.not_done()} == {
        "two-pathway-cnn": "failed", "fcm-cluster": "skipped"}
    frame = results.frame()
    done = frame[frame.status == "done"]
    assert len(done) == 8 + 2 * (8 + 10)  # glcm: classify; unet rows: classify + segment
    assert set(done.metric) == set(metric_names("classify")) | set(metric_names("segment"))
    # the frame carries metrics.json's numbers
    f1 = json.loads((run_dir / "unet" / "seed-0" / "metrics.json").read_text())["tasks"]["segment"]
    got = done[(done.row == "unet") & (done.task == "segment") & (done.metric == "f1")]
    assert got.value.item() == pytest.approx(f1["metrics"]["f1"]["value"])
    masks = results.rows["unet"].predicted_masks()
    assert len(masks) == 40 and next(iter(masks.values())).shape == (64, 64)
    few = sorted(masks)[::7]  # only those unpacked (the report's montage)
    chosen = results.rows["unet"].predicted_masks(set(few))
    assert sorted(chosen) == few
    assert all(np.array_equal(chosen[i], masks[i]) for i in few)


def test_ranked_table_orders_and_groups(run_dir: Path) -> None:
    results = load_results(run_dir)
    for task, rank_by in (("classify", "f1"), ("classify", "auc"), ("segment", "mean_dice")):
        df = ranked_table(results, task, rank_by)
        assert list(df[rank_by]) == sorted(df[rank_by], reverse=True)
        assert df["rank"].iloc[0] == 1 and df["group"].iloc[0] == 1
        assert np.isnan(df["p_vs_leader"].iloc[0])
        text = format_table(df, "github")
        assert all(m in text for m in df["method"])
        assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", text)
    with pytest.raises(MribenchError, match="cannot rank segment by 'auc'"):
        ranked_table(results, "segment", "auc")


def test_report_has_every_method_metric_and_figure(report: Path, run_dir: Path) -> None:
    page = report.read_text()
    assert report.name == "index.html"
    for name in [*ROWS, "two-pathway-cnn", "fcm-cluster"]:
        assert name in page
    for label in ["Accuracy", "F1", "IoU", "Precision", "Recall", "Specificity", "AUC",
                  "Dice (per image)", "IoU (per image)"]:
        assert f">{label}" in page
    figures = sorted(p.stem for p in (report.parent / "figures").glob("*.png"))
    assert figures == ["bars_classify", "bars_segment", "confusion", "montage", "roc",
                       "training"]
    assert page.count("src='data:image/png;base64,") == len(figures)
    assert not re.search(r"(src|href)=['\"]https?:", page)  # self-contained
    assert "CUDA out of memory" in page and "scikit-fuzzy" in page
    run = json.loads((run_dir / "run.json").read_text())
    assert run["split"]["sha256"] in page and run["command"] in page
    assert "0.826" in page  # published U-Net F1 beside the reproduced one
    md = (report.parent / "report.md").read_text()
    assert "| Rank" in md and "![montage](figures/montage.png)" in md


def test_report_without_images_or_finished_rows(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "test_images.npz").unlink()
    index = build_report(copy, tmp_path / "r1")
    assert not (tmp_path / "r1" / "figures" / "montage.png").exists()
    assert "glcm-svm" in index.read_text()
    for row in ROWS:
        shutil.rmtree(copy / row)
    page = build_report(copy, tmp_path / "r2").read_text()
    assert "No method finished" in page


def test_report_rejects_bad_input(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MribenchError, match="not a results folder"):
        build_report(tmp_path, tmp_path / "out")
    with pytest.raises(MribenchError, match="is not a metric"):
        build_report(run_dir, tmp_path / "out", rank_by="speed")


def _degrade(run_dir: Path, dest: Path) -> Path:
    copy = shutil.copytree(run_dir, dest)
    path = copy / "unet" / "seed-0" / "metrics.json"
    data = json.loads(path.read_text())
    data["tasks"]["segment"]["metrics"]["iou"]["value"] -= 0.1
    path.write_text(json.dumps(data))
    return copy


def test_cli_report_check_and_baseline(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = tmp_path / "baseline.json"
    res = runner.invoke(cli, ["baseline", str(run_dir), "--out", str(base)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["check", str(run_dir), "--baseline", str(base)])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output
    worse = _degrade(run_dir, tmp_path / "worse")
    res = runner.invoke(cli, ["check", str(worse), "--baseline", str(base)])
    assert res.exit_code == 1
    assert "regression: unet segment iou" in res.output
    assert res.output.count("regression:") == 1
    res = runner.invoke(cli, ["check", str(worse), "--baseline", str(base), "--tolerance",
                              "0.2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["report", str(run_dir), "--out", str(tmp_path / "rep"),
                              "--rank-by", "iou"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.parametrize("command", ["report", "check", "baseline"])
def test_cli_help(command: str) -> None:
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and "RESULTS_DIR" in res.output


def test_report_names_the_data_set_with_its_options(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "harmonised"
    shutil.copytree(run_dir, copy)
    run = json.loads((copy / "run.json").read_text())
    run["dataset"]["spec"] = "fake[harmonise=true]"
    (copy / "run.json").write_text(json.dumps(run))
    index = build_report(copy, tmp_path / "rep")
    markdown = (index.parent / "report.md").read_text()
    assert "Data set **fake[harmonise=true]**" in markdown
    assert "fake[harmonise=true] (" in index.read_text()
