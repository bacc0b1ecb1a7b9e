"""Accuracy on the line: each method's in-distribution score against its external score.

Miller et al. (ICML 2021, "Accuracy on the line") found that across models the
out-of-distribution score is close to a linear function of the in-distribution score once both
are put on the probit scale; a model above the line is robust beyond what its in-distribution
score predicts ("effective robustness", Taori et al., NeurIPS 2020). For each pair (train set,
external set) of a transfer matrix (:mod:`mribench.results.transfer`) :func:`fit_on_the_line`
takes every ranked method's in-distribution score ``x`` (the diagonal cell: its own test part
or pooled out of fold) and external score ``y``, maps both to the probit scale
(``scipy.stats.norm.ppf`` of the score clipped to ``[clip, 1 - clip]``, so 0 and 1 stay
finite), fits ``probit(y) = slope probit(x) + intercept`` by least squares across the methods
(R^2 the share of variance it explains), and gives each method's residual: on the probit
scale, ``probit(y) - fit``, and back-transformed, ``y - Phi(fit)`` (in score units: how much
better or worse it transfers than its in-distribution score predicts). The no-skill rows are
shown beside the line but never fitted. With fewer than :data:`MIN_POINTS` ranked methods, or
all of them at one in-distribution score, there is no line (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from mribench.api.specs import NO_SKILL
from mribench.results.transfer import TransferMatrix

__all__ = ["CLIP", "MIN_POINTS", "OnTheLine", "accuracy_on_the_line", "fit_on_the_line",
           "probit"]

#: Scores are clipped to [CLIP, 1 - CLIP] before the probit transform.
CLIP = 1e-3
#: Fewest ranked methods for a fitted line.
MIN_POINTS = 3

POINT_COLUMNS = ["method", "kind", "in_fit", "in_distribution", "external", "x_probit",
                 "y_probit", "fitted_probit", "residual_probit", "fitted", "residual"]


def probit(scores: Sequence[float] | np.ndarray, clip: float = CLIP) -> np.ndarray:
    """``norm.ppf`` of the scores clipped to ``[clip, 1 - clip]`` (NaN stays NaN)."""
    x = np.asarray(scores, dtype=np.float64)
    return norm.ppf(np.clip(x, clip, 1 - clip))


@dataclass
class OnTheLine:
    """The probit-scale line of one (train set, external set) pair.

    ``points`` has one row per method (columns :data:`POINT_COLUMNS`: its kind, whether it is
    in the fit, its in-distribution and external scores, both on the probit scale, the fitted
    value on the probit scale and back-transformed, and its residuals: ``residual_probit`` on
    the probit scale, ``residual`` in score units, the effective robustness). ``slope``,
    ``intercept`` and ``r2`` of the fit across ``n`` ranked methods (NaN without a line).
    """

    train: str
    external: str
    task: str
    metric: str
    points: pd.DataFrame
    slope: float
    intercept: float
    r2: float
    n: int
    clip: float = CLIP


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R^2 of ``y`` on ``x`` (NaN when undetermined)."""
    nan = float("nan")
    if x.size < MIN_POINTS or np.ptp(x) == 0:
        return nan, nan, nan
    slope, intercept = np.polyfit(x, y, 1)
    total = float(((y - y.mean()) ** 2).sum())
    resid = float(((y - (slope * x + intercept)) ** 2).sum())
    return float(slope), float(intercept), (1 - resid / total) if total > 0 else nan


def fit_on_the_line(methods: Sequence[str], in_distribution: Sequence[float],
                    external: Sequence[float], *, kinds: Sequence[str] | None = None,
                    train: str = "", external_set: str = "", task: str = "", metric: str = "",
                    clip: float = CLIP) -> OnTheLine:
    """The probit-scale line of ``external`` on ``in_distribution`` scores across the ranked
    ``methods`` (``kinds`` equal to ``"no-skill"`` are shown, not fitted), and each method's
    residual (module docstring)."""
    kinds = list(kinds) if kinds is not None else [""] * len(methods)
    x_raw = np.asarray(in_distribution, dtype=np.float64)
    y_raw = np.asarray(external, dtype=np.float64)
    x, y = probit(x_raw, clip), probit(y_raw, clip)
    in_fit = np.array([k != NO_SKILL for k in kinds], dtype=bool) & np.isfinite(x) & \
        np.isfinite(y)
    slope, intercept, r2 = _fit(x[in_fit], y[in_fit])
    fitted_probit = slope * x + intercept
    fitted = norm.cdf(fitted_probit)
    points = pd.DataFrame({
        "method": list(methods), "kind": kinds, "in_fit": in_fit, "in_distribution": x_raw,
        "external": y_raw, "x_probit": x, "y_probit": y, "fitted_probit": fitted_probit,
        "residual_probit": y - fitted_probit, "fitted": fitted, "residual": y_raw - fitted},
        columns=POINT_COLUMNS)
    return OnTheLine(train, external_set, task, metric, points, slope, intercept, r2,
                     int(in_fit.sum()), clip)


def accuracy_on_the_line(matrix: TransferMatrix, *, clip: float = CLIP) -> list[OnTheLine]:
    """One :class:`OnTheLine` per (train set, external set) pair of ``matrix`` (a method's
    in-distribution score is its diagonal cell), in the matrix's order."""
    cells = matrix.cells
    out: list[OnTheLine] = []
    if cells.empty:
        return out
    for train in dict.fromkeys(cells["train"]):
        own = cells[(cells["train"] == train) & (cells["test"] == train)].set_index("method")
        if own.empty:
            continue
        for test in dict.fromkeys(cells.loc[cells["train"] == train, "test"]):
            if test == train:
                continue
            ext = cells[(cells["train"] == train) & (cells["test"] == test)]
            ext = ext[ext["method"].isin(own.index)]
            out.append(fit_on_the_line(
                list(ext["method"]), own.loc[list(ext["method"]), "value"].to_numpy(float),
                ext["value"].to_numpy(float), kinds=list(ext["kind"]), train=train,
                external_set=test, task=matrix.task, metric=matrix.metric, clip=clip))
    return out
