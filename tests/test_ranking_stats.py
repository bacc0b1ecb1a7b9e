"""Rankings that hold: paired tests of the ranked set-level metric, seed-pooled intervals, and
healthy slices in the segmentation metrics (issue 11)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from sklearn import metrics as skm

from mribench.api.errors import MribenchError
from mribench.api.types import Prediction, Sample
from mribench.eval.metrics import (
    bootstrap_weights,
    evaluate,
    in_segment_view,
    metrics_from_counts,
    percentile_ci,
)
from mribench.eval.stats import (
    PairedTest,
    align_cases,
    mcnemar,
    paired_metric_test,
    rank_groups,
    seed_pooled_interval,
    swap_matrix,
)

# --------------------------------------------------------------------------- helpers


def _cls_records(labels, preds, scores=None) -> list[dict]:
    scores = [None] * len(labels) if scores is None else scores
    return [{"id": f"i{k}", "label": int(t), "pred": int(p),
             "score": None if s is None else float(s)}
            for k, (t, p, s) in enumerate(zip(labels, preds, scores, strict=True))]


def _seg_records(counts: np.ndarray, labels=None, truth=None) -> list[dict]:
    counts = np.asarray(counts, dtype=np.int64)
    labels = [1] * len(counts) if labels is None else labels
    out = []
    for k, (tp, fp, tn, fn) in enumerate(counts):
        den = 2 * tp + fp + fn
        dice = 1.0 if den == 0 else 2 * tp / den
        out.append({"id": f"i{k}", "label": int(labels[k]), "pred": int(tp + fp > 0),
                    "score": None, "truth": "annotated" if truth is None else truth[k],
                    "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
                    "dice": dice, "iou": 1.0 if den == 0 else tp / (tp + fp + fn)})
    return out


def _noisy(t: np.ndarray, rng: np.random.Generator, acc: float) -> np.ndarray:
    return np.where(rng.random(t.size) < acc, t, 1 - t)


def _f1(t: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """F1 by hand (sklearn's f1_score is too slow to call thousands of times)."""
    w = np.ones(t.size) if w is None else w
    tp = np.sum(w * ((t == 1) & (p == 1)))
    den = 2 * tp + np.sum(w * ((t == 0) & (p == 1))) + np.sum(w * ((t == 1) & (p == 0)))
    return 0.0 if den == 0 else 2 * tp / den


def _perm_p(delta_obs: float, deltas: list[float]) -> float:
    hits = sum(abs(d) >= abs(delta_obs) - 1e-12 for d in deltas)
    return (1 + hits) / (1 + len(deltas))


# --------------------------------------------------------------------------- paired test


def test_permutation_f1_matches_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    n, r = 40, 300
    t = rng.integers(0, 2, n)
    pa, pb = _noisy(t, rng, 0.85), _noisy(t, rng, 0.7)
    got = paired_metric_test(_cls_records(t, pa), _cls_records(t, pb), "f1", n_resamples=r,
                             seed=5)
    z = swap_matrix(n, r, 5)
    obs = skm.f1_score(t, pa) - skm.f1_score(t, pb)
    assert _f1(t, pa) == pytest.approx(skm.f1_score(t, pa))
    deltas = [_f1(t, np.where(z[i], pb, pa)) - _f1(t, np.where(z[i], pa, pb)) for i in range(r)]
    assert got.test == "paired-permutation" and got.n == n
    assert got.statistic == pytest.approx(obs)
    assert got.p_value == pytest.approx(_perm_p(obs, deltas))


def test_permutation_pooled_dice_with_seeds_matches_loop() -> None:
    rng = np.random.default_rng(1)
    n, r, seeds = 25, 200, 3
    area = rng.integers(0, 60, n)
    ca, cb = [], []
    for _ in range(seeds):
        for store, q in ((ca, 0.8), (cb, 0.6)):
            tp = rng.binomial(area, q)
            fp = rng.integers(0, 30, n)
            store.append(np.stack([tp, fp, 1000 - area - fp, area - tp], axis=1))
    a = {s: _seg_records(ca[s]) for s in range(seeds)}
    b = {s: _seg_records(cb[s]) for s in range(seeds)}
    got = paired_metric_test(a, b, "f1", "segment", n_resamples=r, seed=2)

    def pooled(counts: np.ndarray) -> float:
        tp, fp, _, fn = counts.sum(axis=0)
        return 2 * tp / (2 * tp + fp + fn)

    obs = np.mean([pooled(c) for c in ca]) - np.mean([pooled(c) for c in cb])
    z = swap_matrix(n, r, 2)
    deltas = []
    for i in range(r):
        sw = z[i][:, None]
        deltas.append(np.mean([pooled(np.where(sw, cb[s], ca[s])) for s in range(seeds)])
                      - np.mean([pooled(np.where(sw, ca[s], cb[s])) for s in range(seeds)]))
    assert got.statistic == pytest.approx(obs)
    assert got.p_value == pytest.approx(_perm_p(obs, deltas))
    assert "3/3 seeds" in got.detail


def test_bootstrap_and_auc_match_loops() -> None:
    rng = np.random.default_rng(2)
    n, r = 30, 80
    t = rng.integers(0, 2, n)
    sa, sb = t + rng.normal(0, 0.7, n), t + rng.normal(0, 1.5, n)
    pa, pb = (sa > 0.5).astype(int), (sb > 0.5).astype(int)
    ra, rb = _cls_records(t, pa, sa), _cls_records(t, pb, sb)
    # bootstrap, accuracy: the same resampled images for both methods
    got = paired_metric_test(ra, rb, "accuracy", n_resamples=r, seed=3, method="bootstrap")
    w = bootstrap_weights(n, r, 3)
    obs = np.mean(pa == t) - np.mean(pb == t)
    deltas = [np.average(pa == t, weights=w[i]) - np.average(pb == t, weights=w[i])
              for i in range(r)]
    want = (1 + sum(abs(d - obs) >= abs(obs) - 1e-12 for d in deltas)) / (1 + r)
    assert got.test == "paired-bootstrap" and got.p_value == pytest.approx(want)
    # permutation, AUC from swapped scores
    got = paired_metric_test(ra, rb, "auc", n_resamples=r, seed=4)
    z = swap_matrix(n, r, 4)
    obs = skm.roc_auc_score(t, sa) - skm.roc_auc_score(t, sb)
    deltas = [skm.roc_auc_score(t, np.where(z[i], sb, sa))
              - skm.roc_auc_score(t, np.where(z[i], sa, sb)) for i in range(r)]
    assert got.statistic == pytest.approx(obs)
    assert got.p_value == pytest.approx(_perm_p(obs, deltas))


def test_permutation_close_to_exact_enumeration() -> None:
    rng = np.random.default_rng(3)
    n = 10
    t = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    pa, pb = _noisy(t, rng, 0.9), _noisy(t, rng, 0.5)
    obs = _f1(t, pa) - _f1(t, pb)
    deltas = []
    for bits in itertools.product([False, True], repeat=n):
        z = np.array(bits)
        deltas.append(_f1(t, np.where(z, pb, pa)) - _f1(t, np.where(z, pa, pb)))
    exact = np.mean(np.abs(deltas) >= abs(obs) - 1e-12)
    got = paired_metric_test(_cls_records(t, pa), _cls_records(t, pb), "f1",
                             n_resamples=20000, seed=0)
    assert got.p_value == pytest.approx(exact, abs=0.015)


def test_null_p_values_roughly_uniform() -> None:
    rng = np.random.default_rng(4)
    p = []
    for rep in range(300):
        t = rng.integers(0, 2, 40)
        pa, pb = _noisy(t, rng, 0.75), _noisy(t, rng, 0.75)  # same method twice
        p.append(paired_metric_test(_cls_records(t, pa), _cls_records(t, pb), "f1",
                                    n_resamples=199, seed=rep).p_value)
    p = np.array(p)
    assert 0.01 <= np.mean(p <= 0.05) <= 0.10
    assert 0.12 <= np.mean(p <= 0.2) <= 0.28
    assert 0.40 <= np.mean(p <= 0.5) <= 0.60


def test_mcnemar_and_f1_test_disagree() -> None:
    # 100 tumour, 300 healthy images. A finds every tumour but raises 60 false alarms; B misses
    # 60 tumours and raises none. Both are right on 340 images: equal accuracy, and McNemar
    # (b = c = 60) sees nothing, but F1 is 0.769 against 0.571.
    t = np.array([1] * 100 + [0] * 300)
    pa = t.copy()
    pa[100:160] = 1
    pb = t.copy()
    pb[:60] = 0
    assert np.mean(pa == t) == np.mean(pb == t) == 0.85
    mc = mcnemar(pa == t, pb == t)
    assert mc.p_value > 0.5
    for method in ("permutation", "bootstrap"):
        f1 = paired_metric_test(_cls_records(t, pa), _cls_records(t, pb), "f1", seed=0,
                                method=method)
        assert f1.statistic == pytest.approx(200 / 260 - 80 / 140)
        assert f1.p_value < 0.01
    # accuracy itself, tested the same way, agrees with McNemar
    acc = paired_metric_test(_cls_records(t, pa), _cls_records(t, pb), "accuracy", seed=0)
    assert acc.statistic == 0 and acc.p_value == 1.0


def test_deterministic_identical_and_unequal_seeds() -> None:
    rng = np.random.default_rng(5)
    t = rng.integers(0, 2, 60)
    ra, rb = _cls_records(t, _noisy(t, rng, 0.8)), _cls_records(t, _noisy(t, rng, 0.7))
    one = paired_metric_test(ra, rb, "f1", seed=9)
    assert one == paired_metric_test(ra, rb, "f1", seed=9)
    assert paired_metric_test(ra, ra, "f1").p_value == 1.0
    # 2 seeds against 1: swaps cannot pair seeds, so the bootstrap is used and named
    got = paired_metric_test({0: ra, 1: rb}, [ra], "f1", n_resamples=100)
    assert got.test == "paired-bootstrap" and "2/1 seeds" in got.detail
    # images missing from one method are dropped from both
    got = paired_metric_test(ra[:50], rb, "f1", n_resamples=50)
    assert got.n == 50
    none = paired_metric_test(ra[:5], rb[5:], "f1")
    assert none.n == 0 and np.isnan(none.p_value)
    with pytest.raises(MribenchError, match="cannot test segment by 'auc'"):
        paired_metric_test(ra, rb, "auc", "segment")


def test_rank_groups_with_the_set_level_test() -> None:
    rng = np.random.default_rng(6)
    t = rng.integers(0, 2, 300)
    rows = {"best": _noisy(t, rng, 0.95), "close": _noisy(t, rng, 0.94),
            "weak": _noisy(t, rng, 0.7), "weaker": _noisy(t, rng, 0.68)}
    recs = {k: _cls_records(t, p) for k, p in rows.items()}

    def compare(x: str, y: str) -> PairedTest:
        return paired_metric_test(recs[x], recs[y], "f1", n_resamples=1000)

    groups, p = rank_groups(list(rows), compare)
    assert groups["best"] == groups["close"] == 1 and groups["weak"] > 1
    assert np.isnan(p["best"])
    assert all(np.isfinite(p[k]) for k in ("close", "weak", "weaker"))  # never "leader"
    assert p["weak"] < 0.05 and p["weaker"] < 0.05


@pytest.mark.parametrize("seeds", [1, 3])
def test_paired_test_fast_enough(seeds: int) -> None:
    # 2000 resamples x 450 images, 1-3 seeds: well under a second per pair
    rng = np.random.default_rng(7)
    n = 450
    t = rng.integers(0, 2, n)
    cls = [{s: _cls_records(t, _noisy(t, rng, 0.8), rng.random(n)) for s in range(seeds)}
           for _ in range(2)]
    seg = [{s: _seg_records(np.stack([rng.integers(0, 50, n), rng.integers(0, 50, n),
                                      np.full(n, 60000), rng.integers(0, 50, n)], axis=1))
            for s in range(seeds)} for _ in range(2)]
    for a, b, task, metric in ((*cls, "classify", "f1"), (*seg, "segment", "f1"),
                               (*seg, "segment", "mean_dice"), (*cls, "classify", "auc")):
        start = time.process_time()  # CPU time: the test machine's cores are shared
        paired_metric_test(a, b, metric, task, n_resamples=2000)
        assert time.process_time() - start < 1.0, (task, metric)


# --------------------------------------------------------------------------- healthy slices


def _healthy_case() -> tuple[list[Sample], Prediction]:
    img = np.zeros((4, 4), np.float32)
    tumour = np.zeros((4, 4), bool)
    tumour[:2, :2] = True
    samples = [
        Sample("t", "t", 1, img, tumour),  # annotated tumour slice
        Sample("h", "h", 0, img, None),    # tumour-free, no mask: truth is empty
        Sample("u", "u", 1, img, None),    # tumour, not annotated: unknown truth
        Sample("x", "x", -1, img, None),   # unlabelled
    ]
    masks = np.zeros((4, 4, 4), bool)
    masks[0, :2, :] = True   # t: tp 4, fp 4
    masks[1, 3, :2] = True   # h: 2 false-positive pixels
    masks[2, :, :] = True    # u: not scored whatever it predicts
    pred = Prediction(ids=["t", "h", "u", "x"], labels=[1, 1, 1, 0], masks=masks)
    return samples, pred


def test_healthy_slice_false_positives_count() -> None:
    samples, pred = _healthy_case()
    tasks, records = evaluate(pred, samples, ["segment"], n_boot=20)
    seg, tum = tasks["segment"], tasks["segment"]["tumour_only"]
    # all slices with a known mask: t and h; pooled tp 4, fp 4 + 2, fn 0
    assert seg["n"] == 2 and seg["n_empty_by_label"] == 1
    assert seg["confusion"] == {"tp": 4, "fp": 6, "tn": 22, "fn": 0}
    assert seg["metrics"]["f1"]["value"] == pytest.approx(8 / 14)
    truth = np.concatenate([samples[0].mask.ravel(), np.zeros(16, bool)])
    guess = np.concatenate([pred.masks[0].ravel(), pred.masks[1].ravel()])
    assert seg["metrics"]["f1"]["value"] == pytest.approx(skm.f1_score(truth, guess))
    assert seg["metrics"]["iou"]["value"] == pytest.approx(skm.jaccard_score(truth, guess))
    # per image, default policy one-if-both-empty: t 8/12, h 0 (empty truth, 2 pixels)
    assert seg["empty_policy"] == "one-if-both-empty"
    assert seg["per_image"]["dice"]["value"] == pytest.approx((8 / 12 + 0) / 2)
    # annotated tumour slices only: t alone, the Br35H U-Net paper's convention
    assert tum["n"] == 1 and tum["view"] == "tumour_only"
    assert tum["population"] == "annotated tumour slices only"
    assert tum["metrics"]["f1"]["value"] == pytest.approx(8 / 12)
    assert "tumour_only" not in tum
    # records carry what both views and the paired tests need
    rec = {r["id"]: r for r in records}
    assert rec["h"]["truth"] == "empty-by-label" and rec["t"]["truth"] == "annotated"
    assert (rec["h"]["fp"], rec["h"]["tp"], rec["h"]["dice"]) == (2, 0, 0.0)
    assert "tp" not in rec["u"] and "tp" not in rec["x"]
    assert [in_segment_view(rec[i], "tumour_only") for i in "thux"] == [1, 0, 0, 0]
    # a healthy slice predicted empty scores 1 per image
    pred.masks[1] = False
    tasks, _ = evaluate(pred, samples, ["segment"], n_boot=0)
    assert tasks["segment"]["per_image"]["dice"]["value"] == pytest.approx((8 / 12 + 1) / 2)
    assert tasks["segment"]["metrics"]["f1"]["value"] == pytest.approx(8 / 12)


def test_views_in_the_paired_test() -> None:
    samples, pred = _healthy_case()
    _, a = evaluate(pred, samples, ["segment"], n_boot=0)
    pred.masks[1] = False  # B: the same, without the false alarm on h
    _, b = evaluate(pred, samples, ["segment"], n_boot=0)
    ids, _ = align_cases([a, b], "segment", "all")
    assert ids == ["t", "h"]
    got = paired_metric_test(a, b, "f1", "segment", n_resamples=100)
    assert got.statistic == pytest.approx(8 / 14 - 8 / 12)
    same = paired_metric_test(a, b, "f1", "segment", view="tumour_only", n_resamples=100)
    assert same.n == 1 and same.statistic == 0 and same.p_value == 1.0


# --------------------------------------------------------------------------- seed intervals


def _cls_run(seed: int, n: int = 120) -> tuple[list[Sample], Prediction]:
    rng = np.random.default_rng(100 + seed)
    t = np.random.default_rng(0).integers(0, 2, n)
    img = np.zeros((2, 2), np.float32)
    samples = [Sample(f"i{k}", f"i{k}", int(t[k]), img) for k in range(n)]
    s = t + rng.normal(0, 0.9, n)
    return samples, Prediction(ids=[x.id for x in samples], labels=(s > 0.5).astype(int),
                               scores=s)


def test_seed_interval_one_seed_is_evaluate_interval() -> None:
    samples, pred = _cls_run(0)
    tasks, records = evaluate(pred, samples, ["classify"], n_boot=300, seed=4)
    for metric in ("f1", "accuracy", "auc"):
        got = seed_pooled_interval(records, metric, "classify", n_boot=300, seed=4)
        m = tasks["classify"]["metrics"][metric]
        assert got.mean == pytest.approx(m["value"]) and np.isnan(got.sd)
        assert (got.low, got.high) == pytest.approx((m["ci_low"], m["ci_high"]))
    s_samples, s_pred = _healthy_case()
    tasks, records = evaluate(s_pred, s_samples, ["segment"], n_boot=200, seed=1)
    for metric, entry in (("iou", tasks["segment"]["metrics"]["iou"]),
                          ("mean_dice", tasks["segment"]["per_image"]["dice"])):
        mean, sd, low, high = seed_pooled_interval(records, metric, "segment", 200, 1)
        assert (mean, low, high) == pytest.approx(
            (entry["value"], entry["ci_low"], entry["ci_high"]))


def test_seed_interval_three_seeds_matches_loop() -> None:
    runs = {}
    for s in range(3):
        samples, pred = _cls_run(s)
        runs[s] = evaluate(pred, samples, ["classify"], n_boot=0)[1]
    n_boot = 200
    mean, sd, low, high = seed_pooled_interval(runs, "f1", "classify", n_boot, seed=2)
    t = np.array([r["label"] for r in runs[0]])
    preds = [np.array([r["pred"] for r in runs[s]]) for s in range(3)]
    per_seed = [skm.f1_score(t, p) for p in preds]
    assert mean == pytest.approx(np.mean(per_seed))
    assert sd == pytest.approx(np.std(per_seed, ddof=1)) and sd > 0
    w = bootstrap_weights(len(t), n_boot, 2)
    assert _f1(t, preds[0], w[0]) == pytest.approx(skm.f1_score(t, preds[0], sample_weight=w[0]))
    # two levels: the images' clusters (here each image alone), then 3 seeds with replacement
    drawn = np.random.default_rng([2, 0x5EED]).integers(0, 3, size=(n_boot, 3))
    boot = [np.mean([_f1(t, preds[s], w[b]) for s in drawn[b]]) for b in range(n_boot)]
    assert (low, high) == pytest.approx(percentile_ci(np.array(boot)))
    assert low < mean < high
    # the seed level widens the interval of the images alone
    images_only = [np.mean([_f1(t, p, w[b]) for p in preds]) for b in range(n_boot)]
    naive = percentile_ci(np.array(images_only))
    assert high - low > naive[1] - naive[0]
    # three copies of one seed: the one-seed interval, no spread
    same = seed_pooled_interval([runs[0]] * 3, "f1", "classify", n_boot, seed=2)
    one = seed_pooled_interval(runs[0], "f1", "classify", n_boot, seed=2)
    assert same.sd == 0 and (same.low, same.high) == pytest.approx((one.low, one.high))
    # sanity: pooled counts formula
    c = metrics_from_counts(1, 1, 1, 1)
    assert c["f1"] == 0.5
