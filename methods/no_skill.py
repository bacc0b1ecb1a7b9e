"""No-skill baselines: what a table's numbers are worth when nothing is learnt about tumours.

Not literature pipelines: the reference rows every ranked table carries (``kind = "no-skill"``),
so a reader sees what each metric gives for free on this data. They are never part of
``--method all`` and never ranked: the runner adds them to every run (``--no-baselines`` leaves
them out) and the tables list them below the ranked methods. They follow the same contract as
every plugin (fit on train, select on val, predict), so they are scored by the same code, on
the same test part and on every external set.

Classification:

- ``always-tumour``: every slice is a tumour slice (recall 1; F1 = 2p / (1 + p) for a tumour
  share p);
- ``majority-class``: the majority label of the training part (accuracy = the majority share);
- ``size-only``: the shortcut audit's size-only forest (Geirhos et al., "Shortcut learning in
  deep neural networks", Nat. Mach. Intell. 2, 2020, doi:10.1038/s42256-020-00257-z): a random
  forest on each image's *original* height, width and aspect ratio, which carry no information
  about the anatomy; a score near the pipelines' says the data set has a shortcut.

Segmentation:

- ``predict-nothing``: an empty mask on every slice (per-image Dice 1 on every healthy slice
  under the default empty policy, 0 on every tumour slice; pooled Dice 0);
- ``whole-brain``: the skull-stripped brain (:func:`mribench.blocks.preprocess.brain_mask`) as
  the tumour (pooled recall near 1, precision the tumour's share of the brain);
- ``mean-mask``: the pixel-wise frequency of tumour over the annotated training slices,
  thresholded at the value of a grid (``n_thresholds`` up to ``max_threshold``) with the best
  pooled Dice on val (a location prior, the "mean training mask").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mribench.api import (
    Context,
    Interval,
    Method,
    MethodParams,
    Prediction,
    Sample,
    pooled_dice,
)
from mribench.blocks.features.size import size_features
from mribench.blocks.preprocess import brain_mask

REFERENCE = "no-skill baseline (what the metric gives without learning about tumours)"


def _constant(samples: Sequence[Sample], label: int) -> Prediction:
    n = len(samples)
    return Prediction(ids=[s.id for s in samples], labels=np.full(n, label, dtype=int),
                      scores=np.full(n, float(label)))


@dataclass(frozen=True)
class AlwaysTumourParams(MethodParams):
    owner: ClassVar[str] = "always-tumour"


@dataclass(frozen=True)
class MajorityClassParams(MethodParams):
    owner: ClassVar[str] = "majority-class"


@dataclass(frozen=True)
class PredictNothingParams(MethodParams):
    owner: ClassVar[str] = "predict-nothing"


@dataclass(frozen=True)
class WholeBrainParams(MethodParams):
    owner: ClassVar[str] = "whole-brain"


class NoSkill(Method):
    """Base of the no-skill rows (``kind = "no-skill"``)."""

    kind: ClassVar[str] = "no-skill"
    reference: ClassVar[str] = REFERENCE


class AlwaysTumour(NoSkill):
    """Every slice is a tumour slice."""

    name: ClassVar[str] = "always-tumour"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    Params: ClassVar[type[MethodParams]] = AlwaysTumourParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> AlwaysTumour:
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        return _constant(samples, 1)


class MajorityClass(NoSkill):
    """The training part's majority label for every slice (ties: tumour)."""

    name: ClassVar[str] = "majority-class"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    Params: ClassVar[type[MethodParams]] = MajorityClassParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context
            ) -> MajorityClass:
        labels = np.array([s.label for s in train if s.label in (0, 1)], dtype=int)
        self.label_ = int(labels.mean() >= 0.5) if labels.size else 1
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        return _constant(samples, self.label_)


@dataclass(frozen=True)
class SizeParams(MethodParams):
    """Hyper-parameters of ``size-only`` (those of the shortcut audit's forest)."""

    owner: ClassVar[str] = "size-only"
    constraints: ClassVar[dict[str, Any]] = {
        "n_trees": Interval(1, 2000, integer=True),
        "min_samples_leaf": Interval(1, None, integer=True),
    }

    n_trees: int = 50
    min_samples_leaf: int = 2


class SizeOnly(NoSkill):
    """A random forest on each image's original height, width and aspect ratio."""

    name: ClassVar[str] = "size-only"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    Params: ClassVar[type[MethodParams]] = SizeParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> SizeOnly:
        from sklearn.ensemble import RandomForestClassifier

        labelled = [s for s in train if s.label in (0, 1)]
        self.forest_ = RandomForestClassifier(
            n_estimators=self.params.n_trees, min_samples_leaf=self.params.min_samples_leaf,
            random_state=ctx.seed, n_jobs=1).fit(size_features(labelled),
                                                 [s.label for s in labelled])
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        classes = list(self.forest_.classes_)
        proba = self.forest_.predict_proba(size_features(samples))
        scores = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(samples))
        return Prediction(ids=[s.id for s in samples], labels=(scores >= 0.5).astype(int),
                          scores=scores)


def _masks_prediction(samples: Sequence[Sample], masks: np.ndarray) -> Prediction:
    area = masks.reshape(len(samples), -1).mean(axis=1) if len(samples) else np.zeros(0)
    return Prediction(ids=[s.id for s in samples], labels=(area > 0).astype(int),
                      scores=area, masks=masks)


def _shape(samples: Sequence[Sample]) -> tuple[int, ...]:
    return (len(samples), *samples[0].image.shape) if samples else (0, 1, 1)


class PredictNothing(NoSkill):
    """An empty mask on every slice."""

    name: ClassVar[str] = "predict-nothing"
    tasks: ClassVar[tuple[str, ...]] = ("segment",)
    Params: ClassVar[type[MethodParams]] = PredictNothingParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context
            ) -> PredictNothing:
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        return _masks_prediction(samples, np.zeros(_shape(samples), dtype=bool))


class WholeBrain(NoSkill):
    """The skull-stripped brain as the tumour, on every slice."""

    name: ClassVar[str] = "whole-brain"
    tasks: ClassVar[tuple[str, ...]] = ("segment",)
    Params: ClassVar[type[MethodParams]] = WholeBrainParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> WholeBrain:
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        masks = np.zeros(_shape(samples), dtype=bool)
        for i, s in enumerate(samples):
            masks[i] = brain_mask(s.image)
        return _masks_prediction(samples, masks)


@dataclass(frozen=True)
class MeanMaskParams(MethodParams):
    """Hyper-parameters of ``mean-mask``: the grid of thresholds on the tumour frequency tried
    on val (``n_thresholds`` evenly spaced up to ``max_threshold``)."""

    owner: ClassVar[str] = "mean-mask"
    constraints: ClassVar[dict[str, Any]] = {
        "max_threshold": Interval(0.0, 1.0, closed="right"),
        "n_thresholds": Interval(1, 100, integer=True),
    }

    max_threshold: float = 0.5
    n_thresholds: int = 10

    @property
    def thresholds(self) -> tuple[float, ...]:
        step = self.max_threshold / self.n_thresholds
        return tuple(round(step * (i + 1), 6) for i in range(self.n_thresholds))


class MeanMask(NoSkill):
    """Where tumours were in training, thresholded on val: a location prior."""

    name: ClassVar[str] = "mean-mask"
    tasks: ClassVar[tuple[str, ...]] = ("segment",)
    Params: ClassVar[type[MethodParams]] = MeanMaskParams

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> MeanMask:
        annotated = [s for s in train if s.label == 1 and s.has_mask]
        shape = (train[0].image.shape if train else (1, 1))
        total = np.zeros(shape, dtype=np.float64)
        for s in annotated:
            total += s.mask
        self.frequency_ = total / max(len(annotated), 1)
        known = [s for s in val if s.mask_or_empty() is not None]
        truth = np.stack([s.mask_or_empty() for s in known]) if known else None
        best, self.threshold_ = -1.0, float(self.params.thresholds[0])
        for t in self.params.thresholds:
            if truth is None:
                break
            pred = np.broadcast_to(self.frequency_ >= t, truth.shape)
            dice = pooled_dice(pred, truth, empty=0.0)
            if dice > best:
                best, self.threshold_ = dice, float(t)
        ctx.log("mean-mask threshold chosen on val", threshold=self.threshold_)
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        mask = self.frequency_ >= self.threshold_
        masks = np.broadcast_to(mask, _shape(samples)).copy() if samples else np.zeros(
            (0, *mask.shape), dtype=bool)
        return _masks_prediction(samples, masks)
