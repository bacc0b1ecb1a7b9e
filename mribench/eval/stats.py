"""Paired significance tests between methods, Holm's correction, and rank groups.

Every method of a run is scored on the same test images, so comparisons are *paired*:

- **classify**: McNemar's test on the per-image correctness of two methods. Only the
  discordant images count (``b``: A right and B wrong, ``c``: A wrong and B right). When
  ``b + c < 25`` the exact two-sided binomial test ``binomtest(b, b + c, 0.5)`` is used (the
  chi-square approximation is poor for few discordant pairs); otherwise the chi-square
  statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom.
  With no discordant image at all the p-value is 1.
- **segment**: the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided,
  ``zero_method="wilcox"``) on per-image Dice (or IoU), over the images where both methods
  have a finite score. With every difference zero (or fewer than one non-zero pair) the
  p-value is 1.

Several comparisons are made at once, so p-values are adjusted with Holm's step-down method,
which controls the family-wise error rate without assuming independence.

**Rank groups.** Methods are sorted by the ranking metric (best first). The best method leads
group 1; each other method is compared with it, the p-values Holm-adjusted together, and every
method whose difference from the leader is not significant (adjusted p >= alpha) joins group 1.
The best of the methods left leads group 2 and is compared with the rest of them, and so on.
A method in group 1 is therefore statistically indistinguishable from the leader; group numbers
follow the leaders' order, so a method can sit in a lower group number than a method ranked
above it when only the latter differs significantly from the leader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "EXACT_BELOW",
    "PairedTest",
    "holm",
    "mcnemar",
    "rank_groups",
    "wilcoxon_signed_rank",
]

#: McNemar uses the exact binomial test below this many discordant pairs.
EXACT_BELOW = 25


@dataclass(frozen=True)
class PairedTest:
    """Outcome of one paired test."""

    test: str
    statistic: float
    p_value: float
    n: int
    detail: str = ""


def mcnemar(correct_a: Any, correct_b: Any, *, exact_below: int = EXACT_BELOW) -> PairedTest:
    """McNemar's test on the paired per-image correctness of two classifiers.

    Parameters
    ----------
    correct_a, correct_b : bool arrays of shape (n,)
        Whether each method labelled each image correctly (same images, same order).
    exact_below : int, default=25
        Use the exact binomial test when the discordant count ``b + c`` is below this.

    Returns
    -------
    PairedTest
        ``statistic`` is ``b`` for the exact test and the chi-square value otherwise; ``n`` is
        the number of discordant images.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    bb = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != bb.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} and {bb.size}")
    b = int(np.count_nonzero(a & ~bb))
    c = int(np.count_nonzero(~a & bb))
    n = b + c
    if n == 0:
        return PairedTest("mcnemar-exact", 0.0, 1.0, 0, "b=0 c=0")
    if n < exact_below:
        p = sps.binomtest(b, n, 0.5, alternative="two-sided").pvalue
        return PairedTest("mcnemar-exact", float(b), float(min(p, 1.0)), n, f"b={b} c={c}")
    chi2 = (abs(b - c) - 1.0) ** 2 / n
    return PairedTest("mcnemar-chi2", float(chi2), float(sps.chi2.sf(chi2, 1)), n,
                      f"b={b} c={c}")


def wilcoxon_signed_rank(scores_a: Any, scores_b: Any) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on paired per-image scores (Dice, IoU).

    Pairs where either score is NaN (an image excluded by the empty-mask policy) are dropped.
    ``n`` is the number of pairs kept.
    """
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    if np.count_nonzero(d) == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, int(a.size), "all differences zero")
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedTest("wilcoxon", float(res.statistic), float(res.pvalue), int(a.size))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN).

    The k-th smallest of m p-values is multiplied by ``m - k + 1``, a running maximum keeps
    the adjusted values in order, and they are capped at 1.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def rank_groups(names: Sequence[str], compare: Callable[[str, str], PairedTest], *,
                alpha: float = 0.05) -> tuple[dict[str, int], dict[str, float]]:
    """Rank groups of methods listed best first (see the module docstring).

    Parameters
    ----------
    names : sequence of str
        Methods sorted by the ranking metric, best first.
    compare : callable (leader, other) -> PairedTest
        The paired test between two methods.
    alpha : float, default=0.05
        Family-wise significance level of each group's comparisons (Holm).

    Returns
    -------
    groups : dict
        Method -> group number (1 is the leader's group).
    p_values : dict
        Method -> Holm-adjusted p-value of its comparison with its group's leader (NaN for
        the leaders themselves).
    """
    remaining = list(names)
    groups: dict[str, int] = {}
    p_out: dict[str, float] = {}
    group = 0
    while remaining:
        group += 1
        leader, others = remaining[0], remaining[1:]
        groups[leader] = group
        p_out[leader] = float("nan")
        adjusted = holm([compare(leader, other).p_value for other in others])
        left = []
        for other, p in zip(others, adjusted, strict=True):
            if np.isnan(p) or p >= alpha:
                groups[other] = group
                p_out[other] = float(p)
            else:
                left.append(other)
        remaining = left
    return groups, p_out
