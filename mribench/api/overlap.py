"""Pixel overlap of binary masks: the one implementation of Dice and IoU.

Counts first, ratios second. :func:`mask_counts` gives the confusion counts ``tp, fp, tn, fn``
of each image of a stack; :func:`dice_from_counts` and :func:`iou_from_counts` turn counts
(scalars or arrays of any shape) into scores; :func:`pooled_dice` is the Dice of all pixels of
a stack pooled together (micro average). The metrics (:mod:`mribench.eval.metrics`), the dense
CRF search (:mod:`mribench.blocks.crf`) and the validation scores of the deep methods
(:mod:`mribench.blocks.nn.losses`, :mod:`mribench.blocks.nn.patches`) all go through here.

=======  ==========================  =================================
score    from counts                 with areas
=======  ==========================  =================================
Dice     2 tp / (2 tp + fp + fn)     2 |P & T| / (|P| + |T|)   (= F1)
IoU      tp / (tp + fp + fn)         |P & T| / |P | T|         (Jaccard)
=======  ==========================  =================================

**Empty masks.** When prediction and truth are both empty the ratio is 0/0. Every function
takes that value as the required keyword ``empty``, so each caller states its convention:

- ``empty=0.0`` (scikit-learn's ``zero_division=0``): what the metrics report for pooled
  scores, before their per-image ``empty_policy`` (documented in :mod:`mribench.eval.metrics`)
  decides about images with an empty ground truth;
- ``empty=1.0``: what a validation score uses when choosing a threshold or a setting (an
  empty prediction for an empty truth is a perfect answer).

Everything is computed in float64 from exact integer counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dice_from_counts", "iou_from_counts", "mask_counts", "pooled_dice", "safe_ratio"]


def safe_ratio(num: Any, den: Any, *, empty: float = 0.0) -> np.ndarray:
    """``num / den`` in float64, ``empty`` where ``den == 0`` (an array, 0-d for scalars)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(empty))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _as_result(values: np.ndarray) -> Any:
    return float(values) if values.ndim == 0 else values


def dice_from_counts(tp: Any, fp: Any, fn: Any, *, empty: float) -> Any:
    """Dice ``2 tp / (2 tp + fp + fn)``; ``empty`` where ``tp + fp + fn == 0``.

    Counts may be scalars (the result is a float) or arrays of one shape (an array of it).

    Examples
    --------
    >>> dice_from_counts(8, 2, 5, empty=0.0) == 16 / 23
    True
    >>> dice_from_counts(0, 0, 0, empty=1.0)
    1.0
    """
    tp, fp, fn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn))
    return _as_result(safe_ratio(2 * tp, 2 * tp + fp + fn, empty=empty))


def iou_from_counts(tp: Any, fp: Any, fn: Any, *, empty: float) -> Any:
    """IoU (Jaccard) ``tp / (tp + fp + fn)``; ``empty`` where ``tp + fp + fn == 0``."""
    tp, fp, fn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn))
    return _as_result(safe_ratio(tp, tp + fp + fn, empty=empty))


def mask_counts(true_masks: Any, pred_masks: Any) -> np.ndarray:
    """Per-image pixel counts of an (n, H, W) stack of boolean masks.

    Returns an int64 array of shape (n, 4) with columns ``tp, fp, tn, fn``.
    """
    t = np.asarray(true_masks, dtype=bool)
    p = np.asarray(pred_masks, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"true masks have shape {t.shape} but predicted masks {p.shape}")
    n = t.shape[0]
    t = t.reshape(n, -1)
    p = p.reshape(n, -1)
    tp = np.count_nonzero(t & p, axis=1)
    t_area = np.count_nonzero(t, axis=1)
    p_area = np.count_nonzero(p, axis=1)
    fp = p_area - tp
    fn = t_area - tp
    tn = t.shape[1] - tp - fp - fn
    return np.stack([tp, fp, tn, fn], axis=1).astype(np.int64)


def pooled_dice(pred: Any, truth: Any, *, empty: float) -> float:
    """Dice of all pixels of ``pred`` and ``truth`` (masks or stacks of one shape) pooled
    together; ``empty`` when both are empty."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    tp = np.count_nonzero(p & t)
    return dice_from_counts(tp, np.count_nonzero(p) - tp, np.count_nonzero(t) - tp, empty=empty)
