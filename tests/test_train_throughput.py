"""benchmarks/bench_train_throughput.py: it finds what a plugin trains (network, loader, loss,
recipe) through its own ``fit`` and times both loops on it, writing its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_throughput.py"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("bench_train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_of_both_loops_on_what_the_plugins_train(bench, tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    assert bench.main(["--methods", "dwt-dnn,unet", "--dataset", "synthetic[n=48]",
                       "--image-size", "64", "--epochs", "1", "--repeats", "2",
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["device"] == "cpu" and not result["amp"]
    for name, batch in (("dwt-dnn", 32), ("unet", 16)):  # the quick profiles' batches
        row = result["methods"][name]
        assert row["batch_size"] == batch and row["epochs"] == 1 and row["clock"] == "cpu"
        assert row["items_per_epoch"] > 0 and len(row["cpu"]["ratios"]) == 2
        assert row["cpu"]["mribench_per_s"] > 0 and row["ratio"] == row["cpu"]["ratio"] > 0


def test_a_plugin_that_never_trains_is_an_error(bench) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--methods", "glcm-knn"])
