"""Losses on logits: binary cross-entropy, soft Dice, and their sum (Dice + BCE).

Every loss takes raw logits and 0/1 targets of the same number of elements (``(n, 1, H, W)``
masks or ``(n,)`` / ``(n, 1)`` labels) and returns a scalar. :func:`make_loss` builds one by
name (``"bce"``, ``"dice"``, ``"dice+bce"``) for a plugin's ``loss`` parameter.

Also here: the validation scores used for early stopping, on concatenated logits and targets:
:func:`pooled_dice` (pixels pooled over the set, the Br35H U-Net paper's F1; :data:`POOLED_DICE`
is the same score computed from counts summed batch by batch) and :func:`binary_accuracy`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mribench.api.overlap import dice_from_counts

__all__ = ["LOSSES", "POOLED_DICE", "BCELoss", "DiceBCELoss", "DiceLoss", "PooledDice",
           "binary_accuracy", "make_loss",
           "pooled_dice"]


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.reshape(logits.shape[0], -1).float(), target.reshape(target.shape[0], -1).float()


class BCELoss(nn.Module):
    """Binary cross-entropy on logits (``BCEWithLogitsLoss``), optional positive weight."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flat(logits, target)
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=x.device)
        return F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)`` on ``p = sigmoid(logits)``.

    Args:
        smooth: the additive ``s`` (keeps empty masks defined: an empty prediction of an empty
            mask scores 1).
        per_image: average the Dice of each image (True) or pool all pixels of the batch
            (False, default: stable when a batch holds tumour-free slices).
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = False) -> None:
        super().__init__()
        self.smooth = smooth
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flat(logits, target)
        p = torch.sigmoid(x)
        dims = 1 if self.per_image else (0, 1)
        inter = (p * y).sum(dims)
        denom = p.sum(dims) + y.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - dice.mean()


class DiceBCELoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice`` (the BraTS U-Net papers' combined loss)."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0,
                 smooth: float = 1.0) -> None:
        super().__init__()
        self.bce, self.dice = BCELoss(), DiceLoss(smooth)
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.bce_weight * self.bce(logits, target)
                + self.dice_weight * self.dice(logits, target))


LOSSES = {"bce": BCELoss, "dice": DiceLoss, "dice+bce": DiceBCELoss}


def make_loss(name: str) -> nn.Module:
    """The loss called ``name``: one of ``bce``, ``dice``, ``dice+bce``."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}") from None


def pooled_dice(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Dice (F1) of the thresholded prediction, pixels pooled over all images; 1 if both empty."""
    pred = torch.sigmoid(logits.float()) >= threshold
    y = target >= 0.5
    tp = int((pred & y).sum().item())
    return dice_from_counts(tp, int(pred.sum().item()) - tp, int(y.sum().item()) - tp,
                            empty=1.0)


class PooledDice:
    """:func:`pooled_dice` as a streamed score: ``counts`` of one batch (int64 true positives,
    predicted and true pixels), ``from_counts`` of their sum. Integer counts, so the value is
    that of :func:`pooled_dice` on the concatenated batches, exactly; ``fit_model`` uses the
    counts and never holds the validation outputs together. Calling it is :func:`pooled_dice`.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        return pooled_dice(logits, target, self.threshold)

    def counts(self, logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        pred = torch.sigmoid(logits.float()) >= self.threshold
        y = target >= 0.5
        return np.array([int((pred & y).sum().item()), int(pred.sum().item()),
                         int(y.sum().item())], dtype=np.int64)

    def from_counts(self, counts: np.ndarray) -> float:
        tp, predicted, true = (int(v) for v in counts)
        return dice_from_counts(tp, predicted - tp, true - tp, empty=1.0)


#: The validation score of the segmenters: pooled Dice at 0.5, streamed.
POOLED_DICE = PooledDice()


def binary_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Share of ``sigmoid(logits) >= 0.5`` equal to the 0/1 targets."""
    pred = (logits.reshape(-1).float() >= 0).float()
    return float((pred == target.reshape(-1).float()).float().mean().item()) if pred.numel() else 0.0
