"""Handcrafted features + multilayer perceptron (ANN): the classical detection pipeline.

Reference: the multi-technique pipeline (pre-processing, segmentation, handcrafted feature
extraction, classification by SVM or ANN) that the CNN brain-MRI survey reviews as the
pre-deep-learning standard, "Deep learning-based analysis of brain MRI" (survey of CNN
methods for brain MRI; the SVM and ANN pipelines are its classical baselines). The network:
a one-hidden-layer perceptron trained by back-propagation (Rumelhart, Hinton & Williams,
"Learning representations by back-propagating errors", Nature 323:533-536, 1986,
doi:10.1038/323533a0), here scikit-learn's ``MLPClassifier`` (Adam, ReLU, L2 penalty).

Recipe: the same pre-processing, candidate segmentation and 45 handcrafted features as
``svm`` (:mod:`mribench.blocks.features.handcrafted`, shared through the run's feature cache, so the
second of the two methods to run computes nothing), z-scoring on the training slices, then
an MLP; (hidden units, alpha) is the pair of ``hidden_grid`` x ``alpha_grid`` with the best
validation accuracy (ties: first in grid order).

Input: labelled slices (``classify``). Output: labels and scores (the predicted tumour
probability, for AUC and ROC curves).

Differences from the paper:

- the survey gives no single architecture: one hidden layer whose width and L2 penalty are
  chosen on val, ReLU and Adam (scikit-learn's defaults) rather than the sigmoid units and
  plain gradient descent of the older papers;
- training stops after ``max_iter`` epochs or when the training loss stalls (scikit-learn's
  ``tol``/``n_iter_no_change``); seeded by the run's seed;
- ``quick`` describes slices at 128 px (``work_size``) and trains for at most 300 epochs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mribench.api import Check, Context, Interval, Method, MethodParams, Prediction, Sample
from mribench.blocks.features.handcrafted import HandcraftedParams, cached_handcrafted_features
from mribench.blocks.selection import select_on_val


def _positive_list(integer: bool) -> Check:
    def ok(v: Any) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0
                        and (not integer or float(x).is_integer()) for x in v))
    return Check(ok, f"a non-empty list of {'integers' if integer else 'numbers'} > 0")


@dataclass(frozen=True)
class Params(HandcraftedParams):
    """Hyper-parameters of ``ann``: the handcrafted features' and the MLP grid."""

    owner: ClassVar[str] = "ann"
    constraints: ClassVar[dict[str, Any]] = {
        **HandcraftedParams.constraints,
        "hidden_grid": _positive_list(integer=True),
        "alpha_grid": _positive_list(integer=False),
        "max_iter": Interval(1, None, integer=True),
        "learning_rate": Interval(0, None, closed="neither"),
    }

    hidden_grid: tuple[int, ...] = (16, 32, 64)
    alpha_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    max_iter: int = 1000
    learning_rate: float = 1e-3


class HandcraftedAnn(Method):
    """Pre-processing, region-grown candidate, handcrafted features, one-hidden-layer MLP."""

    name: ClassVar[str] = "ann"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = (
        "Handcrafted-feature ANN pipeline reviewed in 'Deep learning-based analysis of brain "
        "MRI' (CNN survey); back-propagation: Rumelhart, Hinton & Williams, Nature 323, 1986, "
        "doi:10.1038/323533a0")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 128, "max_iter": 300},
        "paper": {"work_size": None},
    }

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context
            ) -> HandcraftedAnn:
        p = self.params
        options = p.handcrafted_options()

        def mlp(hidden: int, alpha: float) -> Pipeline:
            return make_pipeline(StandardScaler(), MLPClassifier(
                hidden_layer_sizes=(int(hidden),), alpha=alpha, max_iter=p.max_iter,
                learning_rate_init=p.learning_rate, random_state=ctx.seed))

        x_val = cached_handcrafted_features(val, ctx.cache, options) if val else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is a budget here
            best, self.model_ = select_on_val(
                mlp, [{"hidden": h, "alpha": a} for h, a in product(p.hidden_grid, p.alpha_grid)],
                cached_handcrafted_features(train, ctx.cache, options),
                np.array([s.label for s in train]), x_val, np.array([s.label for s in val]),
                ctx=ctx)
        self.hidden_, self.alpha_ = int(best["hidden"]), float(best["alpha"])
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        x = cached_handcrafted_features(samples, ctx.cache, self.params.handcrafted_options())
        proba = self.model_.predict_proba(x)
        classes = list(self.model_.classes_)
        scores = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(samples))
        return Prediction(ids=[s.id for s in samples], labels=self.model_.predict(x),
                          scores=scores)
