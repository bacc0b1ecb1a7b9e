"""Image-level detection from a predicted mask: tumour present when its area passes a threshold.

The threshold on the predicted area fraction is chosen on validation slices to maximise the
balanced accuracy (mean of sensitivity and specificity), so a segmenter is scored on detection
without ever seeing a test label. Ties go to the smallest threshold.
"""

from __future__ import annotations

import numpy as np

from mribench.api.stack import chunks, read_rows


def area_fractions(masks: np.ndarray) -> np.ndarray:
    """Fraction of pixels marked tumour in each mask of an (n, H, W) stack, read a chunk of
    slices at a time (a disk-backed stack, :mod:`mribench.api.stack`, is never read whole;
    each fraction is an exact count over the pixels, so chunks change no value)."""
    if not isinstance(masks, np.ndarray):
        masks = np.asarray(masks, dtype=bool)
    n = masks.shape[0]
    out = np.zeros(n)
    for part in chunks(n):
        rows = read_rows(masks, part).astype(bool, copy=False)
        out[part] = rows.reshape(len(rows), -1).mean(axis=1)
    return out


def best_threshold(scores: np.ndarray, labels: np.ndarray, floor: float = 0.0
                   ) -> tuple[float, float]:
    """The threshold ``t`` for ``score > t`` that maximises the balanced accuracy of ``labels``
    (1 positive, 0 negative), and that accuracy. Candidates are ``floor`` and the observed
    scores; ties go to the smallest threshold. (floor, nan) when both classes are not
    present."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=int)
    if scores.size == 0 or len(np.unique(labels)) < 2:
        return float(floor), float("nan")
    candidates = np.unique(np.concatenate([[floor], scores]))
    pos = labels == 1
    best, threshold = -1.0, float(floor)
    for t in candidates:
        predicted = scores > t
        sens = predicted[pos].mean()
        spec = (~predicted[~pos]).mean()
        score = 0.5 * (sens + spec)
        if score > best + 1e-12:
            best, threshold = score, float(t)
    return threshold, float(best)


class ScoreThreshold:
    """Learn ``score > threshold_`` from any image scores and labels (see
    :func:`best_threshold`); e.g. a novelty detector's outlier score chosen on val."""

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> ScoreThreshold:
        scores = np.asarray(scores, dtype=float)
        floor = float(scores.min()) - 1.0 if scores.size else 0.0  # "every slice positive"
        self.threshold_, accuracy = best_threshold(scores, labels, floor)
        if accuracy == accuracy:  # not NaN
            self.val_balanced_accuracy_ = accuracy
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=float) > self.threshold_).astype(int)


class AreaThreshold:
    """Learn ``area > threshold_`` from masks and labels; scores are area fractions."""

    def fit(self, masks: np.ndarray, labels: np.ndarray) -> AreaThreshold:
        self.threshold_, accuracy = best_threshold(area_fractions(masks), labels)
        if accuracy == accuracy:  # not NaN
            self.val_balanced_accuracy_ = accuracy
        return self

    def predict(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        areas = area_fractions(masks)
        return (areas > self.threshold_).astype(int), areas
