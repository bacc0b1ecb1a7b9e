"""The runner: one split for all, results written atomically, failures recorded, resume works."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from mribench.api import registry
from mribench.api.context import Context
from mribench.api.errors import MribenchError, ParamError
from mribench.api.method import Method
from mribench.api.params import Interval, MethodParams
from mribench.api.types import Prediction, Sample
from mribench.results.read import read_predictions
from mribench.run.runner import RunConfig, run_benchmark
from mribench.testing import TruthSegmenter

SPEC = "synthetic[n=40]"


@dataclass(frozen=True)
class BrightParams(MethodParams):
    quantile: float = 0.5
    constraints: ClassVar = {"quantile": Interval(0, 1)}
    owner: ClassVar[str] = "bright"


class Bright(Method):
    """Thresholds the 99th intensity percentile, threshold learnt on train (a real, tiny learner)."""

    name = "bright"
    reference = "test fixture"
    Params = BrightParams
    seen_train: ClassVar[list[str]] = []

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> Bright:
        type(self).seen_train = [s.id for s in train]
        v = np.array([np.percentile(s.image, 99.5) for s in train])
        y = np.array([s.label for s in train])
        self.threshold_ = float((v[y == 1].mean() + v[y == 0].mean()) / 2)
        ctx.record(epoch=1, train_loss=0.5)
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        v = np.array([np.percentile(s.image, 99.5) for s in samples])
        return Prediction([s.id for s in samples], (v > self.threshold_).astype(int), v)


class Crash(Bright):
    name = "crash"
    broken: ClassVar[bool] = True

    def fit(self, train, val, ctx):
        if type(self).broken:
            raise RuntimeError("boom halfway")
        return super().fit(train, val, ctx)


class Oracle(TruthSegmenter):
    """Returns the true masks with a variant that erodes nothing; checks segment bookkeeping."""

    name = "oracle"

    def predict(self, samples, ctx):
        pred = super().predict(samples, ctx)
        empty = Prediction(pred.ids, np.zeros(len(samples), int), None,
                           np.zeros_like(pred.masks))
        pred.variants = {"empty": empty}
        return pred


@pytest.fixture
def fake_registry(monkeypatch):
    table = {"bright": Bright, "crash": Crash, "oracle": Oracle}
    monkeypatch.setattr(registry, "methods", lambda: table)
    Crash.broken = True
    return table


def _config(tmp_path, **kw):
    base = dict(methods="bright,crash,oracle", dataset=SPEC, image_size=48, n_boot=50,
                out=tmp_path / "run", results_root=tmp_path)
    base.update(kw)
    return RunConfig(**base)


def test_run_records_everything_and_a_failure_stops_nothing(tmp_path, fake_registry):
    outcome = run_benchmark(_config(tmp_path))
    status = {r.name: r.status for r in outcome.rows}
    assert status == {"bright": "done", "crash": "failed", "oracle": "done",
                      "oracle+empty": "done"}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed"
    assert len(run["split"]["sha256"]) == 64
    assert run["versions"]["numpy"] == np.__version__
    assert "traceback" not in run
    tb = (tmp_path / "run" / "crash" / "seed-0" / "traceback.txt").read_text()
    assert "boom halfway" in tb
    crash = json.loads((tmp_path / "run" / "crash" / "seed-0" / "status.json").read_text())
    assert crash["status"] == "failed" and "boom halfway" in crash["reason"]
    # the oracle's masks are perfect, the empty variant's are not
    oracle = json.loads((tmp_path / "run" / "oracle" / "seed-0" / "metrics.json").read_text())
    empty = json.loads((tmp_path / "run" / "oracle+empty" / "seed-0" / "metrics.json").read_text())
    assert oracle["tasks"]["segment"]["metrics"]["f1"]["value"] == pytest.approx(1.0)
    assert empty["tasks"]["segment"]["metrics"]["f1"]["value"] == 0.0
    assert oracle["tasks"]["classify"]["metrics"]["accuracy"]["value"] == pytest.approx(1.0)
    ids, masks = read_predictions(tmp_path / "run" / "oracle" / "seed-0" / "predictions.npz")
    assert masks is not None and masks.shape == (len(ids), 48, 48)
    # a method never trains on a test image
    per_case = json.loads((tmp_path / "run" / "bright" / "seed-0" / "per_case.json").read_text())
    test_ids = {c["id"] for c in per_case}
    assert test_ids and not test_ids & set(Bright.seen_train)
    history = json.loads((tmp_path / "run" / "bright" / "seed-0" / "history.json").read_text())
    assert history == [{"epoch": 1.0, "train_loss": 0.5}]


def test_resume_reruns_only_what_did_not_finish(tmp_path, fake_registry):
    run_benchmark(_config(tmp_path))
    done_file = tmp_path / "run" / "bright" / "seed-0" / "metrics.json"
    before = done_file.stat().st_mtime_ns
    Crash.broken = False
    outcome = run_benchmark(_config(tmp_path, resume=True))
    status = {r.name: (r.status, r.reason) for r in outcome.rows}
    assert status["crash"] == ("done", None)
    assert status["bright"][1].startswith("resumed")
    assert done_file.stat().st_mtime_ns == before
    assert not (tmp_path / "run" / "crash" / "seed-0" / "traceback.txt").exists()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "done"


def test_an_existing_folder_needs_resume(tmp_path, fake_registry):
    run_benchmark(_config(tmp_path, methods="bright"))
    run_file = tmp_path / "run" / "run.json"
    before = run_file.read_bytes()
    with pytest.raises(MribenchError, match="already holds a run; pass --resume"):
        run_benchmark(_config(tmp_path, methods="bright"))
    assert run_file.read_bytes() == before  # the first run is left as it was


def test_bad_parameter_fails_before_anything_is_written(tmp_path, fake_registry):
    with pytest.raises(ParamError, match=r"bright: parameter 'quantile' must be"):
        run_benchmark(_config(tmp_path, methods="bright[quantile=3]"))
    assert not (tmp_path / "run").exists()


def test_parallel_jobs_give_the_same_metrics(tmp_path, fake_registry):
    a = run_benchmark(_config(tmp_path, methods="bright,oracle", out=tmp_path / "a"))
    b = run_benchmark(_config(tmp_path, methods="bright,oracle", out=tmp_path / "b", jobs=2))
    for row in ("bright", "oracle"):
        ma = json.loads((a.results_dir / row / "seed-0" / "metrics.json").read_text())
        mb = json.loads((b.results_dir / row / "seed-0" / "metrics.json").read_text())
        assert ma == mb


def test_test_on_scores_every_row_on_the_external_set(tmp_path, fake_registry):
    """--test-on: fitted once, scored on the run's test part and on the external set, which
    gets its own tables and a transfer table."""
    from mribench.report.tables import transfer_table
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results

    external = "synthetic[n=30,seed=9]"
    run_benchmark(_config(tmp_path, methods="bright,oracle", test_on=(external,)))
    for row in ("bright", "oracle", "oracle+empty"):
        per_case = json.loads((tmp_path / "run" / row / "seed-0" / "eval" / "synthetic"
                               / "per_case.json").read_text())
        assert len(per_case) == 30
    results = load_results(tmp_path / "run")
    assert results.eval_sets == ["synthetic"]
    view = results.on("synthetic")
    table = ranked_table(view, "segment", "f1")
    oracle = table.set_index("method").loc["oracle"]
    assert oracle["f1"] == pytest.approx(1.0) and oracle["n"] == 30
    text = transfer_table(results, "classify", "f1")
    assert "drop (synthetic)" in text and "bright" in text
