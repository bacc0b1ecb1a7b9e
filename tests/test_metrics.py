"""Metrics against scikit-learn, hand-computed empty-mask cases, and the bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn import metrics as skm

from mribench.api.errors import MribenchError
from mribench.api.types import Prediction, Sample
from mribench.eval.metrics import (
    CLASSIFY_METRICS,
    METRICS,
    bootstrap_weights,
    classification_metrics,
    confusion_counts,
    evaluate,
    mask_counts,
    metrics_from_counts,
    per_image_scores,
    segmentation_metrics,
    weighted_auc,
)


def sklearn_metrics(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    kw = {"zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(t, p),
        "f1": skm.f1_score(t, p, **kw),
        "iou": skm.jaccard_score(t, p, **kw),
        "precision": skm.precision_score(t, p, **kw),
        "recall": skm.recall_score(t, p, **kw),
        "specificity": skm.recall_score(t, p, pos_label=0, **kw),
        "fp_rate": 1 - skm.recall_score(t, p, pos_label=0, **kw),
    }


@pytest.mark.parametrize("seed", range(8))
def test_classification_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    t = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.7, t, 1 - t)
    s = p + rng.normal(0, 0.8, n)
    got = classification_metrics(t, p, s, n_boot=50, seed=seed)
    want = sklearn_metrics(t, p)
    for name in METRICS:
        assert got["metrics"][name]["value"] == pytest.approx(want[name], abs=1e-12), name
    if 0 < t.sum() < n:
        assert got["metrics"]["auc"]["value"] == pytest.approx(skm.roc_auc_score(t, s))
    c = got["confusion"]
    tn, fp, fn, tp = skm.confusion_matrix(t, p, labels=[0, 1]).ravel()
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (tp, fp, tn, fn)
    assert got["n"] == n and set(got["metrics"]) == set(CLASSIFY_METRICS)


def test_zero_division_is_zero_like_sklearn() -> None:
    # a population with a tumour, a method that predicts none: precision 0 (zero_division=0)
    t = np.array([1, 0, 0, 0])
    p = np.array([0, 0, 0, 0])
    got = metrics_from_counts(**confusion_counts(t, p))
    assert got == pytest.approx(sklearn_metrics(t, p))
    assert got["precision"] == 0.0 and got["f1"] == 0.0 and got["accuracy"] == 0.75


def test_a_population_without_a_positive_leaves_its_metrics_undefined() -> None:
    t = np.array([0, 0, 0, 0])
    p = np.array([0, 1, 0, 0])
    got = metrics_from_counts(**confusion_counts(t, p))
    assert all(np.isnan(got[k]) for k in ("f1", "iou", "recall"))
    assert got["precision"] == 0.0 and got["accuracy"] == 0.75
    assert got["specificity"] == 0.75 and got["fp_rate"] == 0.25
    block = classification_metrics(t, p, [0.1, 0.9, 0.2, 0.3], n_boot=20)
    for name in ("f1", "iou", "recall", "auc"):
        entry = block["metrics"][name]
        assert entry["value"] is None and entry["ci_low"] is None, name
    assert block["metrics"]["f1"]["undefined"] == "no tumour image in the population"
    assert block["metrics"]["auc"]["undefined"].startswith("one class only")
    assert block["metrics"]["precision"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_healthy_slices_alone_report_what_is_defined_there() -> None:
    truth = np.zeros((4, 8, 8), bool)
    guess = np.zeros((4, 8, 8), bool)
    guess[1, :2, :2] = True  # 4 false-positive pixels on one of four healthy slices
    block = segmentation_metrics(truth, guess, empty_policy="one-if-both-empty", n_boot=50)
    for name in ("f1", "iou", "recall"):
        assert block["metrics"][name]["value"] is None
        assert block["metrics"][name]["undefined"] == "no tumour pixel in the population"
    assert block["metrics"]["fp_rate"]["value"] == pytest.approx(4 / 256)
    assert block["metrics"]["specificity"]["value"] == pytest.approx(1 - 4 / 256)
    assert block["per_image"]["flagged"]["value"] == pytest.approx(0.25)
    assert block["per_image"]["dice"]["value"] == pytest.approx(0.75)
    excluded = segmentation_metrics(truth, guess, empty_policy="exclude", n_boot=0)
    assert excluded["per_image"]["dice"]["value"] is None
    assert "empty-mask policy" in excluded["per_image"]["dice"]["undefined"]
    assert excluded["per_image"]["flagged"]["value"] == pytest.approx(0.25)


def test_auc_nan_with_one_class_or_no_scores() -> None:
    m = classification_metrics([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8], n_boot=10)
    assert m["metrics"]["auc"]["value"] is None  # undefined: one class
    assert "one class only" in m["metrics"]["auc"]["undefined"]
    m = classification_metrics([1, 0, 1], [1, 0, 1], None, n_boot=10)
    assert np.isnan(m["metrics"]["auc"]["value"])  # no scores: no value, not undefined


@pytest.mark.parametrize("seed", range(4))
def test_weighted_auc_matches_sklearn_sample_weight(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    t = rng.integers(0, 2, n)
    s = np.round(t + rng.normal(0, 1, n), 1)  # rounding makes ties
    w = bootstrap_weights(n, 20, seed)
    got = weighted_auc(t, s, w)
    for b in range(20):
        keep = w[b] > 0
        if len(np.unique(t[keep])) < 2:
            assert np.isnan(got[b])
            continue
        want = skm.roc_auc_score(t[keep], s[keep], sample_weight=w[b][keep])
        assert got[b] == pytest.approx(want, abs=1e-12)


def test_pooled_segmentation_matches_sklearn_on_pixels() -> None:
    rng = np.random.default_rng(3)
    t = rng.random((7, 12, 10)) < 0.3
    p = np.where(rng.random(t.shape) < 0.8, t, ~t)
    got = segmentation_metrics(t, p, n_boot=20)
    want = sklearn_metrics(t.ravel(), p.ravel())
    for name in METRICS:
        assert got["metrics"][name]["value"] == pytest.approx(want[name], abs=1e-12), name
    # per-image Dice equals sklearn's f1 image by image
    dice, iou = per_image_scores(mask_counts(t, p))
    for i in range(len(t)):
        assert dice[i] == pytest.approx(skm.f1_score(t[i].ravel(), p[i].ravel()))
        assert iou[i] == pytest.approx(skm.jaccard_score(t[i].ravel(), p[i].ravel()))
    assert got["per_image"]["dice"]["value"] == pytest.approx(dice.mean())


def test_mask_counts_by_hand() -> None:
    t = np.zeros((1, 3, 3), bool)
    t[0, 0, :] = True  # 3 true pixels
    p = np.zeros((1, 3, 3), bool)
    p[0, :, 0] = True  # 3 predicted, 1 overlap
    assert mask_counts(t, p).tolist() == [[1, 2, 4, 2]]
    d, j = per_image_scores(mask_counts(t, p))
    assert d[0] == pytest.approx(2 / 6) and j[0] == pytest.approx(1 / 5)


def _empty_cases() -> tuple[np.ndarray, np.ndarray]:
    """Image 0: perfect; 1: empty truth, empty pred; 2: empty truth, 4 false pixels."""
    t = np.zeros((3, 4, 4), bool)
    p = np.zeros((3, 4, 4), bool)
    t[0, :2, :2] = p[0, :2, :2] = True
    p[2, 2:, 2:] = True
    return t, p


@pytest.mark.parametrize("policy, dice, n_excluded", [
    ("exclude", [1.0, np.nan, np.nan], 2),
    ("one-if-both-empty", [1.0, 1.0, 0.0], 0),
    ("nan-if-both-empty", [1.0, np.nan, 0.0], 1),
])
def test_empty_mask_policies(policy: str, dice: list[float], n_excluded: int) -> None:
    t, p = _empty_cases()
    d, j = per_image_scores(mask_counts(t, p), policy)
    np.testing.assert_array_equal(d, dice)
    np.testing.assert_array_equal(j, dice)  # IoU equals Dice on these cases
    got = segmentation_metrics(t, p, empty_policy=policy, n_boot=20)
    assert got["n_excluded"] == n_excluded and got["empty_policy"] == policy
    assert got["per_image"]["dice"]["value"] == pytest.approx(np.nanmean(dice))
    # pooled: tp 4, fp 4, fn 0 whatever the policy
    assert got["metrics"]["f1"]["value"] == pytest.approx(8 / 12)


def test_bad_policy_is_one_line_error() -> None:
    with pytest.raises(MribenchError, match="empty_policy must be one of"):
        per_image_scores(np.zeros((1, 4)), "ignore")


def test_ci_contains_point_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400, 4000):
        t = rng.integers(0, 2, n)
        p = np.where(rng.random(n) < 0.8, t, 1 - t)
        s = p + rng.normal(0, 1, n)
        m = classification_metrics(t, p, s, n_boot=500, seed=1)["metrics"]
        for name in CLASSIFY_METRICS:
            assert m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"], (n, name)
        widths.append(m["f1"]["ci_high"] - m["f1"]["ci_low"])
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_seeded_and_fast() -> None:
    w1, w2 = bootstrap_weights(500, 1000, 7), bootstrap_weights(500, 1000, 7)
    np.testing.assert_array_equal(w1, w2)
    assert (w1.sum(axis=1) == 500).all()
    rng = np.random.default_rng(0)
    t = rng.random((500, 32, 32)) < 0.2
    p = np.where(rng.random(t.shape) < 0.9, t, ~t)
    counts = mask_counts(t, p)
    start = time.perf_counter()
    got = segmentation_metrics(None, None, counts=counts, n_boot=1000, seed=0)
    classification_metrics(t[:, 0, 0], p[:, 0, 0], rng.random(500), n_boot=1000)
    assert time.perf_counter() - start < 1.0
    ci = got["metrics"]["iou"]
    assert ci["ci_low"] < ci["value"] < ci["ci_high"]


def _samples() -> list[Sample]:
    img = np.zeros((4, 4), np.float32)
    m1 = np.zeros((4, 4), bool)
    m1[:2, :2] = True
    return [
        Sample("a", "a", 1, img, m1),
        Sample("b", "b", 0, img, np.zeros((4, 4), bool)),
        Sample("c", "c", 1, img, None),        # labelled, not annotated
        Sample("d", "d", -1, img, None),       # unlabelled: in neither task
    ]


def test_evaluate_populations_and_records() -> None:
    samples = _samples()
    masks = np.zeros((4, 4, 4), bool)
    masks[0, :2, :] = True  # a: tp 4, fp 4
    # prediction in a different order than the samples
    pred = Prediction(ids=["d", "c", "b", "a"], labels=[1, 0, 0, 1], scores=[0.5, 0.2, 0.1, 0.9],
                      masks=masks[[3, 2, 1, 0]])
    tasks, records = evaluate(pred, samples, ["classify", "segment"], n_boot=50)
    assert tasks["classify"]["n"] == 3
    assert tasks["classify"]["confusion"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 1}
    seg = tasks["segment"]
    # default policy one-if-both-empty: b (empty truth, empty prediction) scores 1
    assert seg["n"] == 2 and seg["n_excluded"] == 0 and seg["view"] == "all"
    assert seg["confusion"] == {"tp": 4, "fp": 4, "fn": 0, "tn": 24}
    assert seg["per_image"]["dice"]["value"] == pytest.approx((8 / 12 + 1) / 2)
    assert seg["tumour_only"]["n"] == 1  # a only: b is label 0
    assert seg["tumour_only"]["per_image"]["dice"]["value"] == pytest.approx(8 / 12)
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    assert records[0]["dice"] == pytest.approx(8 / 12) and records[0]["pred_area"] == 8
    assert records[1]["dice"] == 1.0 and "dice" not in records[2]
    assert records[0]["truth"] == records[1]["truth"] == "annotated"
    assert records[0]["score"] == 0.9 and records[3]["pred"] == 1
    tasks, records = evaluate(pred, samples, ["segment"], n_boot=50, empty_policy="exclude")
    assert tasks["segment"]["n_excluded"] == 1 and records[1]["dice"] is None
    assert tasks["segment"]["per_image"]["dice"]["value"] == pytest.approx(8 / 12)


def test_evaluate_errors() -> None:
    samples = _samples()
    with pytest.raises(MribenchError, match="no answer for 1 test sample"):
        evaluate(Prediction(ids=["a", "b", "c"], labels=[1, 0, 1]), samples, ["classify"])
    ids = ["a", "b", "c", "d"]
    with pytest.raises(MribenchError, match="needs masks"):
        evaluate(Prediction(ids=ids, labels=[1, 0, 1, 0]), samples, ["segment"])
    bad = Prediction(ids=ids, labels=[1, 0, 1, 0], masks=np.zeros((4, 8, 8), bool))
    with pytest.raises(MribenchError, match=r"shape \(8, 8\) but its true mask \(4, 4\)"):
        evaluate(bad, samples, ["segment"])
    with pytest.raises(MribenchError, match="unknown task"):
        evaluate(bad, samples, ["detect"])


def test_empty_population_gives_nan() -> None:
    img = np.zeros((4, 4), np.float32)
    tasks, _ = evaluate(Prediction(ids=["x"], labels=[1]), [Sample("x", "x", -1, img)],
                        ["classify", "segment"], n_boot=10)
    assert tasks["classify"]["n"] == 0 and np.isnan(tasks["classify"]["metrics"]["f1"]["value"])
    assert tasks["segment"]["n"] == 0 and np.isnan(tasks["segment"]["metrics"]["iou"]["value"])
