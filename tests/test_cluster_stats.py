"""Statistics that respect clusters (issue 20): the cluster bootstrap and cluster swaps, the
two-level seed interval, p-values with their Monte-Carlo error, undecided rank groups, no-skill
rows that are never ranked, and undefined metrics shown as undefined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

from mribench.api.types import Prediction, Sample
from mribench.eval.metrics import bootstrap_weights, classification_metrics, evaluate
from mribench.eval.stats import (
    PairedTest,
    holm_decisions,
    kendall_tau,
    paired_metric_test,
    rank_groups,
    seed_pooled_interval,
    swap_matrix,
)

# --------------------------------------------------------------------------- toys


def _duplicated(k: int = 40, copies: int = 10, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``k`` independent cases, each seen ``copies`` times (near-duplicates), interleaved:
    labels, predictions and each image's cluster."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, k)
    preds = np.where(rng.random(k) < 0.7, labels, 1 - labels)
    order = rng.permutation(np.repeat(np.arange(k), copies))  # clusters not contiguous
    return labels[order], preds[order], [f"case{c}" for c in order]


def _reference_cluster_interval(t: np.ndarray, p: np.ndarray, groups: list[str], n_boot: int,
                                seed: int) -> tuple[float, float]:
    """A cluster bootstrap of accuracy written out by hand: draw the clusters (in order of
    first appearance) with replacement, pool their images, take the percentile interval."""
    clusters = list(dict.fromkeys(groups))
    members = {c: np.flatnonzero(np.array(groups) == c) for c in clusters}
    draws = np.random.default_rng(seed).integers(0, len(clusters), size=(n_boot, len(clusters)))
    values = []
    for row in draws:
        idx = np.concatenate([members[clusters[c]] for c in row])
        values.append(np.mean(t[idx] == p[idx]))
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def _records(t: np.ndarray, p: np.ndarray, groups: list[str] | None = None,
             scores: np.ndarray | None = None) -> list[dict]:
    return [{"id": f"i{i}", "group": None if groups is None else groups[i],
             "label": int(t[i]), "pred": int(p[i]),
             "score": None if scores is None else float(scores[i])} for i in range(len(t))]


# --------------------------------------------------------------------------- the bootstrap


def test_cluster_bootstrap_is_the_reference_and_sqrt10_wider_than_the_naive_one() -> None:
    t, p, groups = _duplicated()
    n_boot, seed = 2000, 3
    got = classification_metrics(t, p, n_boot=n_boot, seed=seed, groups=groups)
    acc = got["metrics"]["accuracy"]
    assert got["n"] == 400 and got["n_clusters"] == 40
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx(
        _reference_cluster_interval(t, p, groups, n_boot, seed))
    naive = classification_metrics(t, p, n_boot=n_boot, seed=seed)["metrics"]["accuracy"]
    ratio = (acc["ci_high"] - acc["ci_low"]) / (naive["ci_high"] - naive["ci_low"])
    assert ratio / np.sqrt(10) == pytest.approx(1.0, abs=0.2)
    assert acc["value"] == naive["value"]  # the point value does not move


def test_evaluate_and_the_seed_interval_draw_the_samples_clusters() -> None:
    t, p, groups = _duplicated(k=30, copies=10, seed=1)
    img = np.zeros((2, 2), np.float32)
    samples = [Sample(f"s{i}", groups[i], int(t[i]), img) for i in range(len(t))]
    pred = Prediction(ids=[s.id for s in samples], labels=p, scores=p + 0.1 * np.arange(len(p)))
    tasks, records = evaluate(pred, samples, ["classify"], n_boot=500, seed=2)
    block = tasks["classify"]
    assert block["n_clusters"] == 30 and records[0]["group"] == groups[0]
    acc = block["metrics"]["accuracy"]
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx(
        _reference_cluster_interval(t, p, groups, 500, 2))
    for metric in ("accuracy", "f1", "auc"):
        got = seed_pooled_interval(records, metric, "classify", n_boot=500, seed=2)
        m = block["metrics"][metric]
        assert (got.mean, got.low, got.high) == pytest.approx(
            (m["value"], m["ci_low"], m["ci_high"]))


def test_singleton_clusters_draw_exactly_the_image_bootstrap() -> None:
    n, b, seed = 57, 300, 9
    rng = np.random.default_rng(seed)  # the draws of the image bootstrap, written out
    idx = rng.integers(0, n, size=(b, n))
    image_draws = np.stack([np.bincount(row, minlength=n) for row in idx])
    distinct = [f"x{i}" for i in range(n)]
    np.testing.assert_array_equal(bootstrap_weights(n, b, seed), image_draws)
    np.testing.assert_array_equal(bootstrap_weights(n, b, seed, distinct), image_draws)
    np.testing.assert_array_equal(swap_matrix(n, b, seed, distinct),
                                  np.random.default_rng(seed).random((b, n)) < 0.5)
    t, p, _ = _duplicated(k=n, copies=1)
    scores = p + np.linspace(0, 0.5, n)
    alone = classification_metrics(t, p, scores, n_boot=b, seed=seed)
    named = classification_metrics(t, p, scores, n_boot=b, seed=seed, groups=distinct)
    assert alone["metrics"] == named["metrics"]


def test_replicates_without_a_positive_are_left_out_of_the_percentiles() -> None:
    t = np.array([1, 1] + [0] * 28)
    p = np.array([1, 0] + [0] * 26 + [1, 1])
    got = classification_metrics(t, p, n_boot=400, seed=1)["metrics"]["recall"]
    w = bootstrap_weights(30, 400, 1).astype(float)
    tp, fn = w @ (t & p), w @ (t & (1 - p))
    recall = np.where(tp + fn > 0, tp / np.where(tp + fn > 0, tp + fn, 1), np.nan)
    assert np.isnan(recall).any()  # some resamples draw no tumour image
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        tuple(np.nanquantile(recall, [0.025, 0.975])))


# --------------------------------------------------------------------------- the paired test


def test_permutation_swaps_whole_clusters() -> None:
    t, p, groups = _duplicated(k=25, copies=4, seed=2)
    z = swap_matrix(len(t), 500, 7, groups)
    first, second = (np.flatnonzero(np.array(groups) == groups[0])[:2])
    assert np.array_equal(z[:, first], z[:, second])  # always swapped together
    other = groups.index(next(g for g in groups if g != groups[0]))
    assert not np.array_equal(z[:, first], z[:, other])
    for g in set(groups):
        cols = z[:, np.array(groups) == g]
        assert (cols == cols[:, :1]).all()
    # the test uses those swaps: a loop over the cluster swaps gives its p-value
    rng = np.random.default_rng(4)
    q = np.where(rng.random(len(t)) < 0.8, p, 1 - p)
    got = paired_metric_test(_records(t, p, groups), _records(t, q, groups), "accuracy",
                             n_resamples=500, seed=7, alpha=None)
    obs = np.mean(p == t) - np.mean(q == t)
    deltas = [np.mean(np.where(z[i], q, p) == t) - np.mean(np.where(z[i], p, q) == t)
              for i in range(500)]
    hits = sum(abs(d) >= abs(obs) - 1e-12 for d in deltas)
    assert got.p_value == pytest.approx((1 + hits) / 501)
    assert "25 clusters" in got.detail


def test_p_value_carries_its_monte_carlo_error_and_resamples_adaptively() -> None:
    rng = np.random.default_rng(5)
    t = rng.integers(0, 2, 120)
    a = np.where(rng.random(120) < 0.85, t, 1 - t)
    b = np.where(rng.random(120) < 0.75, t, 1 - t)
    ra, rb = _records(t, a), _records(t, b)
    fixed = paired_metric_test(ra, rb, "f1", n_resamples=500, alpha=None)
    assert fixed.resamples == 500
    assert fixed.mc_se == pytest.approx(np.sqrt(fixed.p_value * (1 - fixed.p_value) / 500))
    # far from the level: one chunk, the fixed test's answer
    far = paired_metric_test(ra, rb, "f1", n_resamples=500, alpha=fixed.p_value / 50)
    assert (far.p_value, far.resamples) == (fixed.p_value, 500)
    # at the level: chunks are added up to the cap, deterministically
    near = paired_metric_test(ra, rb, "f1", n_resamples=500, alpha=fixed.p_value,
                              max_resamples=3000)
    assert near.resamples == 3000 and near.mc_se < fixed.mc_se
    again = paired_metric_test(ra, rb, "f1", n_resamples=500, alpha=fixed.p_value,
                               max_resamples=3000)
    assert again == near


def test_holm_decisions_leave_a_close_call_undecided() -> None:
    # the second smallest p is compared with alpha / 2: 0.024 ± 3 x 0.002 straddles 0.025
    adjusted, errors, decisions = holm_decisions([0.001, 0.024, 0.3], [0.0005, 0.002, 0.01])
    assert decisions == ["significant", "undecided", "not significant"]
    assert adjusted[1] == pytest.approx(0.048) and errors[1] == pytest.approx(0.004)
    # without errors: Holm's own decision
    assert holm_decisions([0.001, 0.024, 0.3])[2] == [
        "significant", "significant", "not significant"]
    p = {("A", "B"): (0.05, 0.004), ("A", "C"): (0.001, 0.0002)}
    found = rank_groups(["A", "B", "C"],
                        lambda x, y: PairedTest("f", 0.0, p[(x, y)][0], 9, "", p[(x, y)][1]))
    assert found.groups == {"A": 1, "B": 1, "C": 2} and found.undecided == {"B"}
    groups, values = found  # unpacks as before
    assert values["B"] == pytest.approx(0.05) and found.p_errors["B"] == pytest.approx(0.004)


def test_an_undecided_group_from_real_resamples_at_the_cap() -> None:
    rng = np.random.default_rng(6)
    t = rng.integers(0, 2, 90)
    recs = {"A": _records(t, np.where(rng.random(90) < 0.85, t, 1 - t)),
            "B": _records(t, np.where(rng.random(90) < 0.75, t, 1 - t))}
    level = paired_metric_test(recs["A"], recs["B"], "f1", alpha=None).p_value

    def compare(x: str, y: str) -> PairedTest:
        return paired_metric_test(recs[x], recs[y], "f1", alpha=level, max_resamples=6000)

    found = rank_groups(["A", "B"], compare, alpha=level)
    assert found.groups == {"A": 1, "B": 1} and found.undecided == {"B"}
    assert compare("A", "B").resamples == 6000


def test_kendall_tau_is_scipys_tau_b_row_by_row() -> None:
    rng = np.random.default_rng(7)
    x = np.round(rng.normal(size=(30, 8)), 1)  # rounding makes ties
    y = np.round(x + rng.normal(scale=0.7, size=x.shape), 1)
    got = kendall_tau(x, y)
    want = [sps.kendalltau(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(got, want)
    assert kendall_tau(x[0], y[0]) == pytest.approx(want[0])
    y[3, 2] = np.nan
    assert np.isnan(kendall_tau(x, y)[3]) and np.isfinite(kendall_tau(x, y)[2])


# --------------------------------------------------------------------------- through a run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds on synthetic slices, scored also on a folder set whose only slices with a
    known truth are healthy (its no/ folder)."""
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    root = tmp_path_factory.mktemp("cluster-stats")
    rng = np.random.default_rng(0)
    for folder in ("yes", "no"):
        (root / "healthy" / folder).mkdir(parents=True)
        for i in range(6):
            arr = (rng.random((32, 32)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / "healthy" / folder / f"{folder}{i}.png")
    out = root / "run"
    run_benchmark(RunConfig(methods="glcm-knn,region-growing,svm", dataset="synthetic[n=40]",
                            image_size=32, n_boot=40, seeds=(0, 1), out=out,
                            test_on=f"synthetic[n=24,seed=3],folder:{root / 'healthy'}"))
    return out


def test_no_skill_rows_are_listed_last_and_never_ranked(run: Path) -> None:
    from mribench.report.tables import format_table
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results

    results = load_results(run)
    assert results.n_boot == 40
    for task in ("classify", "segment"):
        df = ranked_table(results, task, "f1")
        skill = df["no_skill"].to_numpy(dtype=bool)
        assert skill.any() and not skill[0]
        assert (np.diff(skill.astype(int)) >= 0).all()  # the no-skill rows come last
        assert df.loc[skill, ["rank", "group", "p_vs_leader"]].isna().all().all()
        assert df.loc[~skill, "rank"].notna().all()
        assert (df["n_clusters"] <= df["n"]).all() and (df["n_clusters"] > 0).all()
        text = format_table(df, "simple")
        assert "(no skill)" in text and "n (clusters)" in text
        # the intervals of seed-aggregated rows use the run's --n-boot
        row = df.loc[0, "method"]
        got = seed_pooled_interval(results.rows[row].per_seed, "f1", task, n_boot=40)
        assert (df.loc[0, "f1_low"], df.loc[0, "f1_high"]) == pytest.approx(
            (got.low, got.high), nan_ok=True)


def test_a_healthy_only_population_shows_n_a_and_what_is_defined(run: Path) -> None:
    from mribench.report.tables import format_table, table_notes, transfer_table
    from mribench.results.rank import ranked_table, transfer_data
    from mribench.results.read import load_results

    results = load_results(run)
    healthy = next(name for name in results.eval_sets if name == "healthy")  # its folder
    df = ranked_table(results.on(healthy), "segment", "f1")
    assert df.attrs["no_positive"]
    assert df.attrs["undefined"]["f1"] == "no tumour pixel in the population"
    assert df["f1"].isna().all() and df["recall"].isna().all()
    assert df["fp_rate"].notna().all() and df["flagged"].notna().all()
    text = format_table(df, "simple")
    assert "n/a" in text and "FP pixel rate" in text and "Slices flagged" in text
    assert any("no tumour pixel" in note for note in table_notes(df))
    block = results.on(healthy).rows["region-growing"].block("segment")
    assert block["metrics"]["f1"]["value"] is None
    assert block["metrics"]["f1"]["undefined"] == "no tumour pixel in the population"
    data = transfer_data(results, "segment", "f1")
    on_set = data.frame[data.frame["eval_set"] == healthy]
    assert on_set["drop"].isna().all() and healthy in data.undefined
    assert data.taus[healthy].rows == 0
    assert "n/a" in transfer_table(results, "segment", "f1")


def test_transfer_tau_excludes_no_skill_rows_and_has_an_interval(run: Path) -> None:
    from mribench.report.tables import transfer_table
    from mribench.results.rank import transfer_data
    from mribench.results.read import load_results

    results = load_results(run)
    data = transfer_data(results, "classify", "f1")
    ranked = [m for m in data.methods
              if not data.frame.loc[data.frame["method"] == m, "no_skill"].any()]
    external = data.eval_sets[0]
    tau = data.taus[external]
    assert tau.rows == len(ranked) == 3
    assert np.isfinite(tau.low) and tau.low <= tau.high
    drops = data.frame[(data.frame["eval_set"] == external) & data.frame["scored"]]
    assert (drops["drop_low"] <= drops["drop_high"]).all()
    best = data.no_skill_best[external]
    for r in drops.itertuples():
        assert r.below_no_skill == (not r.no_skill and not r.value > best)
    text = transfer_table(results, "classify", "f1")
    assert "Kendall tau" in text and "no-skill rows excluded" in text


def test_tables_show_undecided_groups_and_p_with_its_monte_carlo_error(tmp_path: Path) -> None:
    from mribench.report.tables import format_table, table_notes
    from mribench.results.rank import ranked_table
    from mribench.results.read import load_results
    from mribench.testing import make_fake_results

    df = ranked_table(load_results(make_fake_results(tmp_path / "fake")), "classify", "f1")
    assert np.isfinite(df.loc[1, "p_vs_leader_se"])
    df.loc[1, "group_undecided"] = True
    report = format_table(df, "github")
    p, se = df.loc[1, "p_vs_leader"], df.loc[1, "p_vs_leader_se"]
    assert f"{p:.3f} ± {se:.3f}" in report and f"| {int(df.loc[1, 'group'])}? " in report
    terminal = format_table(df, "simple", ci=False)
    assert f"{p:.3f} ± {se:.3f}" not in terminal and f"{p:.3g}" in terminal
    assert any(note.startswith("?: undecided") for note in table_notes(df))
    assert table_notes(df)[0].startswith("Intervals: 95% percentile bootstrap")
