"""ROC AUC: the point value (scikit-learn) and its vectorised weighted form (the bootstrap's).

:func:`weighted_auc` is the weighted Mann-Whitney statistic for a matrix of integer weights, one
row per bootstrap resample, so every resample's AUC comes from one pass over the sorted scores;
:func:`roc_auc` is :func:`sklearn.metrics.roc_auc_score`, the value a table reports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "weighted_auc"]


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """:func:`sklearn.metrics.roc_auc_score` of boolean labels and finite scores (both classes
    present; the caller checks)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, scores))


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of integer ``weights`` (n_boot, n), ties counted one half.

    The weighted Mann-Whitney statistic: the probability that a positive outranks a negative,
    each case counted as many times as its weight. Equals
    ``roc_auc_score(y_true, scores, sample_weight=w)`` row by row; NaN where a row has no
    positive or no negative weight.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # cumulative negative weight in score order, with a leading 0: (b, n + 1)
    neg = np.zeros((w.shape[0], s.size + 1))
    np.cumsum(w[:, order] * ~y[order], axis=1, out=neg[:, 1:])
    lo = np.searchsorted(s_sorted, s[y], side="left")    # negatives strictly below
    hi = np.searchsorted(s_sorted, s[y], side="right")   # ... and tied with each positive
    beaten = neg[:, lo] + 0.5 * (neg[:, hi] - neg[:, lo])  # (b, n_pos)
    pos_credit = (w[:, y] * beaten).sum(axis=1)
    w_pos = w[:, y].sum(axis=1)
    w_neg = w[:, ~y].sum(axis=1)
    den = w_pos * w_neg
    out = np.full(w.shape[0], np.nan)
    np.divide(pos_credit, den, out=out, where=den > 0)
    return out
