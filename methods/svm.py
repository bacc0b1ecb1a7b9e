"""Handcrafted features + RBF support vector machine: the classical detection pipeline.

Reference: the multi-technique pipeline (pre-processing, segmentation, handcrafted feature
extraction, classification by SVM or ANN) that the CNN brain-MRI survey reviews as the
pre-deep-learning standard, "Deep learning-based analysis of brain MRI" (survey of CNN
methods for brain MRI; the SVM and ANN pipelines are its classical baselines). The SVM:
Cortes & Vapnik, "Support-vector networks", Machine Learning 20:273-297, 1995,
doi:10.1007/BF00994018.

Recipe (the shared engine, :mod:`mribench.blocks.features.handcrafted`):

1. pre-processing: skull stripping, median denoising, histogram equalisation of the brain;
2. segmentation stage: a tumour candidate grown from the strongest group of bright intensity
   outliers of the brain (z-score above ``seed_k``, tolerance ``tolerance`` brain standard
   deviations), cleaned by morphology;
3. handcrafted features: first-order intensity statistics of the brain and of the candidate,
   the candidate's contrast, GLCM texture of the brain, the candidate's shape (45 values);
4. z-scoring on the training slices and an RBF SVM; (C, gamma) is the pair of ``C_grid`` x
   ``gamma_grid`` with the best validation accuracy (ties: first in grid order).

Input: labelled slices (``classify``). Output: labels and scores (the SVM decision value, for
AUC and ROC curves).

Differences from the paper:

- the survey describes the pipeline family, not one parameter set: the segmentation stage is
  the engine's outlier-seeded region growing, the feature set is the union of the families it
  lists (intensity, texture, shape), and (C, gamma) are chosen on val;
- the features are shared with ``ann`` through the run's feature cache (computed once);
- ``quick`` describes slices at 128 px (``work_size``); ``paper`` at the run's image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, ClassVar

import numpy as np
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mribench.api import Check, Context, Method, MethodParams, Prediction, Sample
from mribench.blocks.features.handcrafted import HandcraftedParams, cached_handcrafted_features
from mribench.blocks.selection import select_on_val


def _grid_ok(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all((isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0)
                    or x in ("scale", "auto") for x in v))


@dataclass(frozen=True)
class Params(HandcraftedParams):
    """Hyper-parameters of ``svm``: the handcrafted features' and the SVM grid."""

    owner: ClassVar[str] = "svm"
    constraints: ClassVar[dict[str, Any]] = {
        **HandcraftedParams.constraints,
        "C_grid": Check(_grid_ok, "a non-empty list of numbers > 0"),
        "gamma_grid": Check(_grid_ok, "a non-empty list of numbers > 0, 'scale' or 'auto'"),
    }

    C_grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    gamma_grid: tuple[float | str, ...] = ("scale", 0.001, 0.01, 0.1)


def _svm(C: float, gamma: float | str) -> Pipeline:  # noqa: N803
    return make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, kernel="rbf"))


class HandcraftedSvm(Method):
    """Pre-processing, region-grown candidate, handcrafted features, RBF SVM."""

    name: ClassVar[str] = "svm"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = (
        "Handcrafted-feature SVM pipeline reviewed in 'Deep learning-based analysis of brain "
        "MRI' (CNN survey); SVM: Cortes & Vapnik, Machine Learning 20, 1995, "
        "doi:10.1007/BF00994018")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 128},
        "paper": {"work_size": None},
    }

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context
            ) -> HandcraftedSvm:
        p = self.params
        options = p.handcrafted_options()
        x_val = cached_handcrafted_features(val, ctx.cache, options) if val else None
        best, self.model_ = select_on_val(
            _svm, [{"C": c, "gamma": g} for c, g in product(p.C_grid, p.gamma_grid)],
            cached_handcrafted_features(train, ctx.cache, options),
            np.array([s.label for s in train]), x_val, np.array([s.label for s in val]),
            ctx=ctx)
        self.C_, self.gamma_ = best["C"], best["gamma"]
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        x = cached_handcrafted_features(samples, ctx.cache, self.params.handcrafted_options())
        return Prediction(ids=[s.id for s in samples], labels=self.model_.predict(x),
                          scores=self.model_.decision_function(x))
