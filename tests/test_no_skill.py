"""The no-skill rows: what each metric gives for free, computed like every other row."""

from __future__ import annotations

import numpy as np
import pytest

from mribench.api.context import Context
from mribench.api.types import Sample
from mribench.eval.metrics import evaluate
from mribench.methods.no_skill import (
    AlwaysTumour,
    MajorityClass,
    MeanMask,
    PredictNothing,
    SizeOnly,
    WholeBrain,
)


def _slices(n_tumour: int, n_healthy: int, size: int = 16) -> list[Sample]:
    out = []
    for i in range(n_tumour):
        mask = np.zeros((size, size), bool)
        mask[4:8, 4 + i % 4:8 + i % 4] = True
        out.append(Sample(f"t{i}", f"g{i}", 1, np.full((size, size), 0.5, np.float32), mask,
                          original_size=(512, 512)))
    for i in range(n_healthy):  # Br35H's no/: label 0 and no mask (the truth is empty)
        out.append(Sample(f"h{i}", f"h{i}", 0, np.full((size, size), 0.5, np.float32),
                          original_size=(256, 256)))
    return out


def test_predict_nothing_scores_the_healthy_share_per_image_and_zero_pooled():
    samples = _slices(3, 7)
    ctx = Context()
    prediction = PredictNothing().fit(samples, samples, ctx).predict(samples, ctx)
    metrics, _ = evaluate(prediction, samples, ["segment"], n_boot=0)
    assert metrics["segment"]["per_image"]["dice"]["value"] == pytest.approx(0.7)
    assert metrics["segment"]["metrics"]["f1"]["value"] == 0.0
    assert metrics["segment"]["metrics"]["recall"]["value"] == 0.0


def test_classification_baselines_answer_what_they_say():
    train, test = _slices(6, 4), _slices(2, 5)
    ctx = Context(seed=0)
    always = AlwaysTumour().fit(train, train, ctx).predict(test, ctx)
    assert always.labels.tolist() == [1] * 7
    assert MajorityClass().fit(train, train, ctx).predict(test, ctx).labels.tolist() == [1] * 7
    assert MajorityClass().fit(test, test, ctx).predict(train, ctx).labels.tolist() == [0] * 10
    # sizes separate the classes here, so the size-only forest is perfect: a shortcut
    sizes = SizeOnly().fit(train, train, ctx).predict(test, ctx)
    assert sizes.labels.tolist() == [s.label for s in test]


def test_whole_brain_and_mean_mask_segment_without_learning_tumours(tiny_samples):
    samples = tiny_samples(n=24, size=48, seed=3)
    ctx = Context(seed=0)
    brain = WholeBrain().fit(samples, samples, ctx).predict(samples, ctx)
    assert brain.masks.shape == (24, 48, 48) and brain.masks.mean() > 0.2
    mean = MeanMask().fit(samples[:16], samples[16:], ctx)
    out = mean.predict(samples, ctx)
    assert np.all(out.masks == out.masks[0])  # one mask, wherever the image
    assert mean.threshold_ in MeanMask.Params().thresholds


def test_every_run_carries_the_no_skill_rows_of_its_tasks(tmp_path):
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    outcome = run_benchmark(RunConfig(methods="glcm-knn", dataset="synthetic[n=30]",
                                      image_size=32, n_boot=10, out=tmp_path / "a"))
    rows = {r.name for r in outcome.rows}
    assert rows == {"glcm-knn", "always-tumour", "majority-class", "size-only"}
    outcome = run_benchmark(RunConfig(methods="glcm-knn", dataset="synthetic[n=30]",
                                      image_size=32, n_boot=10, out=tmp_path / "b",
                                      baselines=False))
    assert {r.name for r in outcome.rows} == {"glcm-knn"}


@pytest.mark.br35h
def test_predict_nothing_on_the_br35h_leak_free_test_part(br35h_samples):
    """The issue's number: 0.721 per-image Dice = 225 healthy of 312 slices with known truth."""
    from mribench.split.manifest import apply, load_manifest, manifest_path

    _, samples = br35h_samples
    _, _, test = apply(load_manifest(manifest_path("br35h", "leak-free")), samples)
    ctx = Context()
    prediction = PredictNothing().predict(test, ctx)
    metrics, _ = evaluate(prediction, test, ["segment"], n_boot=0)
    block = metrics["segment"]
    assert block["n"] == 312
    assert block["per_image"]["dice"]["value"] == pytest.approx(225 / 312)
    assert round(block["per_image"]["dice"]["value"], 3) == 0.721
