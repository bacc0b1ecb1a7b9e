"""Paired tests against scipy and hand computations, Holm, and rank groups."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mribench.eval.stats import PairedTest, holm, mcnemar, rank_groups, wilcoxon_signed_rank


def _pairs(b: int, c: int, same_right: int = 5, same_wrong: int = 3) -> tuple[np.ndarray, ...]:
    a = [True] * b + [False] * c + [True] * same_right + [False] * same_wrong
    bb = [False] * b + [True] * c + [True] * same_right + [False] * same_wrong
    return np.array(a), np.array(bb)


def test_mcnemar_exact_matches_binomtest() -> None:
    a, b = _pairs(b=9, c=2)
    res = mcnemar(a, b)
    assert res.test == "mcnemar-exact" and res.n == 11
    assert res.p_value == pytest.approx(sps.binomtest(9, 11, 0.5).pvalue)
    # by hand: 2 * P(X <= 2), X ~ Bin(11, 1/2) = 2 * (1 + 11 + 55) / 2048
    assert res.p_value == pytest.approx(2 * 67 / 2048)


def test_mcnemar_chi2_with_continuity() -> None:
    a, b = _pairs(b=30, c=12)
    res = mcnemar(a, b)
    chi2 = (abs(30 - 12) - 1) ** 2 / 42
    assert res.test == "mcnemar-chi2" and res.statistic == pytest.approx(chi2)
    assert res.p_value == pytest.approx(sps.chi2.sf(chi2, 1))
    assert res.p_value < 0.05


def test_mcnemar_identical_and_symmetric() -> None:
    a, _ = _pairs(b=4, c=4)
    assert mcnemar(a, a).p_value == 1.0
    x, y = _pairs(b=7, c=1)
    assert mcnemar(x, y).p_value == pytest.approx(mcnemar(y, x).p_value)


def test_wilcoxon_matches_scipy_and_drops_nan() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(40)
    b = np.clip(a - 0.05 + rng.normal(0, 0.05, 40), 0, 1)
    a_nan = a.copy()
    a_nan[[3, 7]] = np.nan
    res = wilcoxon_signed_rank(a_nan, b)
    keep = np.isfinite(a_nan)
    want = sps.wilcoxon(a[keep], b[keep])
    assert res.n == 38
    assert res.statistic == pytest.approx(want.statistic)
    assert res.p_value == pytest.approx(want.pvalue)
    assert res.p_value < 0.05
    assert wilcoxon_signed_rank(a, a).p_value == 1.0


def test_holm_by_hand() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max-accumulate 0.06
    got = holm([0.04, 0.005, 0.03, 0.01])
    np.testing.assert_allclose(got, [0.06, 0.02, 0.06, 0.03])
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])
    got = holm([np.nan, 0.02])
    assert np.isnan(got[0]) and got[1] == pytest.approx(0.02)


def test_rank_groups() -> None:
    # A leads; B is indistinguishable from A; C and D differ from A; D is like C.
    p = {("A", "B"): 0.30, ("A", "C"): 0.001, ("A", "D"): 0.0001, ("C", "D"): 0.5}

    def compare(x: str, y: str) -> PairedTest:
        return PairedTest("fake", 0.0, p[(x, y)], 10)

    groups, adjusted = rank_groups(["A", "B", "C", "D"], compare)
    assert groups == {"A": 1, "B": 1, "C": 2, "D": 2}
    assert adjusted["B"] == pytest.approx(0.30)  # Holm on 3: 0.0001*3, 0.001*2, 0.3*1
    # every p-value is against the overall leader A, also outside group 1 (C leads group 2)
    assert np.isnan(adjusted["A"]) and adjusted["C"] == pytest.approx(0.002)
    assert adjusted["D"] == pytest.approx(0.0003)


def test_rank_groups_holm_makes_borderline_join() -> None:
    # raw p 0.03 and 0.04 both < 0.05, but Holm-adjusted 0.06 and 0.06 are not
    p = {("A", "B"): 0.03, ("A", "C"): 0.04}
    groups, _ = rank_groups(["A", "B", "C"], lambda x, y: PairedTest("f", 0, p[(x, y)], 5))
    assert groups == {"A": 1, "B": 1, "C": 1}
