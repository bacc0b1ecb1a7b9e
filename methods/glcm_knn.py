"""GLCM texture features + k-nearest neighbours: the classical tumour/no-tumour baseline.

Reference: the GLCM + KNN pipeline that the Br35H U-Net paper (Khadra et al., "Advancing brain
tumor diagnosis with deep learning-driven image segmentation") cites for detection on MRI,
K. V. Archana & G. Komarasamy, "A novel deep learning-based brain tumor detection using the
Bagging ensemble with K-nearest neighbor", Journal of Intelligent Systems 32(1):20220206, 2023,
doi:10.1515/jisys-2022-0206 (texture features of the pre-processed slice, classified by KNN).
Texture features: Haralick, Shanmugam & Dinstein, IEEE Trans. SMC 3(6):610-621, 1973,
doi:10.1109/TSMC.1973.4309314.

Recipe:

1. pre-processing: skull stripping (:func:`mribench.blocks.preprocess.brain_mask`) and median
   denoising;
2. grey-level co-occurrence matrices of the brain (``levels`` grey levels, pixel distances
   ``distances``, 4 angles, symmetric, normalised) and their Haralick properties (contrast,
   dissimilarity, homogeneity, ASM, energy, correlation, entropy) averaged over the angles
   (:func:`mribench.blocks.features.glcm.brain_glcm_features`, through the run's feature cache);
3. z-scoring on the training slices (``StandardScaler``) and a Euclidean KNN; k is the odd
   value of ``k_grid`` with the best validation accuracy (ties: the smallest k; the first
   when there are no validation slices).

Input: labelled slices (``classify``). Output: labels and scores (the fraction of tumour slices
among the k neighbours, distance-weighted with ``weights="distance"``).

Differences from the paper:

- Archana & Komarasamy segment with a U-Net and classify with a *bagged* KNN; this plugin is
  the plain GLCM + KNN pipeline they compare against (no U-Net, no bagging);
- the GLCM is counted over the skull-stripped brain only (pairs with both pixels inside), not
  over the whole slice, so the black background does not dominate the texture;
- k is chosen on the validation slices (the paper does not say how k was set);
- ``quick`` describes slices at 128 px and adds distances 2 and 4 (cheaper and, on Br35H,
  more accurate than distance 1 alone); ``paper`` uses the run's image size and distance 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from mribench.api import (
    FLAG,
    POSITIVE_INTS,
    Context,
    Interval,
    Method,
    MethodParams,
    OneOf,
    OrNone,
    Prediction,
    Sample,
)
from mribench.blocks.features.glcm import brain_glcm_features
from mribench.blocks.preprocess import DENOISERS
from mribench.blocks.selection import select_on_val


@dataclass(frozen=True)
class Params(MethodParams):
    """Hyper-parameters of ``glcm-knn``."""

    owner: ClassVar[str] = "glcm-knn"
    constraints: ClassVar[dict[str, Any]] = {
        "levels": Interval(2, 256, integer=True),
        "distances": POSITIVE_INTS,
        "denoise": OneOf(DENOISERS),
        "skull_strip": FLAG,
        "work_size": OrNone(Interval(16, None, integer=True)),
        "k_grid": POSITIVE_INTS,
        "weights": OneOf(("uniform", "distance")),
    }

    levels: int = 32
    distances: tuple[int, ...] = (1,)
    denoise: str = "median"
    skull_strip: bool = True
    work_size: int | None = None
    k_grid: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 15, 21)
    weights: str = "uniform"


class GlcmKnn(Method):
    """GLCM Haralick texture + z-scoring + KNN, k chosen on val."""

    name: ClassVar[str] = "glcm-knn"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = (
        "GLCM + KNN as cited by Khadra et al. (U-Net on Br35H): Archana & Komarasamy, A novel "
        "deep learning-based brain tumor detection using the Bagging ensemble with K-nearest "
        "neighbor, J. Intelligent Systems 32(1), 2023, doi:10.1515/jisys-2022-0206")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 128, "distances": (1, 2, 4)},
        "paper": {},
    }

    def _features(self, samples: Sequence[Sample], ctx: Context) -> np.ndarray:
        p = self.params
        options = {"levels": p.levels, "distances": tuple(p.distances), "denoise": p.denoise,
                   "skull_strip": p.skull_strip, "work_size": p.work_size}
        return ctx.cache.features("glcm", options, samples,
                                  lambda todo: brain_glcm_features(todo, **options))

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> GlcmKnn:
        p = self.params
        features = self._features(train, ctx)
        self.scaler_ = StandardScaler().fit(features)
        x_val = self.scaler_.transform(self._features(val, ctx)) if val else None
        ks = sorted({k for k in p.k_grid if k <= len(train)}) or [1]
        best, self.model_ = select_on_val(
            lambda k: KNeighborsClassifier(k, weights=p.weights), [{"k": k} for k in ks],
            self.scaler_.transform(features), np.array([s.label for s in train]),
            x_val, np.array([s.label for s in val]), ctx=ctx)
        self.k_ = best["k"]
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        x = self.scaler_.transform(self._features(samples, ctx))
        proba = self.model_.predict_proba(x)
        classes = list(self.model_.classes_)
        scores = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(samples))
        labels = self.model_.predict(x)
        return Prediction(ids=[s.id for s in samples], labels=labels, scores=scores)
