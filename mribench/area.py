"""Image-level detection from a predicted mask: tumour present when its area passes a threshold.

The threshold on the predicted area fraction is chosen on validation slices to maximise the
balanced accuracy (mean of sensitivity and specificity), so a segmenter is scored on detection
without ever seeing a test label. Ties go to the smallest threshold.
"""

from __future__ import annotations

import numpy as np


def area_fractions(masks: np.ndarray) -> np.ndarray:
    """Fraction of pixels marked tumour in each mask of an (n, H, W) stack."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[0] == 0:
        return np.zeros(0)
    return masks.reshape(masks.shape[0], -1).mean(axis=1)


class AreaThreshold:
    """Learn ``area > threshold_`` from masks and labels; scores are area fractions."""

    def fit(self, masks: np.ndarray, labels: np.ndarray) -> AreaThreshold:
        areas = area_fractions(masks)
        labels = np.asarray(labels, dtype=int)
        self.threshold_ = 0.0
        if areas.size == 0 or len(np.unique(labels)) < 2:
            return self
        candidates = np.unique(np.concatenate([[0.0], areas]))
        pos = labels == 1
        best = -1.0
        for t in candidates:
            predicted = areas > t
            sens = predicted[pos].mean()
            spec = (~predicted[~pos]).mean()
            score = 0.5 * (sens + spec)
            if score > best + 1e-12:
                best, self.threshold_ = score, float(t)
        self.val_balanced_accuracy_ = float(best)
        return self

    def predict(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        areas = area_fractions(masks)
        return (areas > self.threshold_).astype(int), areas
