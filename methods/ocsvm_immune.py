"""One-class SVM novelty detector of healthy slices, its (nu, gamma) tuned by clonal selection.

References: the detector is Schölkopf, Platt, Shawe-Taylor, Smola & Williamson, "Estimating
the support of a high-dimensional distribution", Neural Computation 13(7):1443-1471, 2001,
doi:10.1162/089976601750264965; the tuner is the artificial-immune-system optimiser CLONALG,
de Castro & Von Zuben, "Learning and optimization using the clonal selection principle",
IEEE Transactions on Evolutionary Computation 6(3):239-251, 2002,
doi:10.1109/TEVC.2002.1011539 (:mod:`mribench.blocks.clonalg`). Immune-inspired tuning of SVM
hyper-parameters is a recurring recipe of the classical medical-imaging literature; this plugin
is the project's instance of it (no single paper applies exactly this recipe to Br35H).

Recipe:

1. the handcrafted features of ``svm`` / ``ann`` (:mod:`mribench.blocks.features.handcrafted`:
   pre-processing, region-grown candidate, intensity, texture and shape; shared through the
   run's feature cache);
2. a novelty detector: z-scoring then ``OneClassSVM`` (RBF kernel) fitted on *healthy*
   slices only; a slice's tumour score is minus its decision value (far outside the healthy
   support = tumour);
3. (nu, gamma) tuned by CLONALG (antibodies on a log scale in ``nu_bounds`` x
   ``gamma_bounds``). The affinity of an antibody is its K-fold cross-validated ROC AUC on
   the training slices: for each of ``folds`` stratified folds, the detector is fitted on the
   healthy slices of the other folds and scores the held-out healthy *and* tumour slices; the
   AUC of those scores (tumour positive) is averaged over the folds. The AUC is threshold-free,
   so it measures how well healthy acceptance and tumour rejection can be traded off, which
   is what the next step needs. The best affinity of each generation goes to the method's
   history (``generation``, ``best_affinity``);
4. the final detector (best antibody) is fitted on all healthy training slices; the decision
   threshold on the tumour score is the one with the best balanced accuracy on ``val`` (the
   only use of ``val``).

Input: labelled slices (``classify``). Output: labels and scores (minus the decision value).

Differences from the usual one-class setting:

- tumour slices of the training part are used, but only to score antibodies (held-out AUC),
  never to fit the detector; a pure novelty detector would tune on healthy data alone;
- ``tune=False`` skips the search and uses ``nu`` and ``gamma`` as given;
- ``quick`` uses a smaller immune population and fewer generations, and 128 px features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from mribench.api import (
    FLAG,
    Check,
    Context,
    Interval,
    Method,
    MethodParams,
    MribenchError,
    Prediction,
    Sample,
    ScoreThreshold,
)
from mribench.blocks.clonalg import CloneSearchCV
from mribench.blocks.features.handcrafted import HandcraftedParams, cached_handcrafted_features


def _range_ok(high: float) -> Check:
    def ok(v: Any) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                and 0 < v[0] < v[1] <= high)
    return Check(ok, f"a pair (low, high) with 0 < low < high <= {high:g}")


@dataclass(frozen=True)
class Params(HandcraftedParams):
    """Hyper-parameters of ``ocsvm-immune``: features, detector and the immune search."""

    owner: ClassVar[str] = "ocsvm-immune"
    constraints: ClassVar[dict[str, Any]] = {
        **HandcraftedParams.constraints,
        "nu": Interval(0, 1, closed="right"),
        "gamma": Check(lambda v: v in ("scale", "auto") or (
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
            "a number > 0, 'scale' or 'auto'"),
        "tune": FLAG,
        "nu_bounds": _range_ok(1.0),
        "gamma_bounds": _range_ok(float("inf")),
        "folds": Interval(2, None, integer=True),
        "population": Interval(2, None, integer=True),
        "generations": Interval(0, None, integer=True),
        "clone_factor": Interval(0, None, closed="neither"),
        "rho": Interval(0, None),
    }

    nu: float = 0.1
    gamma: float | str = "scale"
    tune: bool = True
    nu_bounds: tuple[float, float] = (0.01, 0.5)
    gamma_bounds: tuple[float, float] = (1e-4, 1.0)
    folds: int = 3
    population: int = 10
    generations: int = 10
    clone_factor: float = 1.0
    rho: float = 3.0


def _detector() -> Pipeline:
    return make_pipeline(StandardScaler(), OneClassSVM(kernel="rbf"))


def _novelty_auc(model: Pipeline, x: np.ndarray, y: np.ndarray) -> float:
    """Held-out ROC AUC of the tumour score (minus the decision value), tumour positive."""
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, -model.decision_function(x)))


class OcsvmImmune(Method):
    """One-class SVM of healthy slices; (nu, gamma) by CLONALG on K-fold AUC."""

    name: ClassVar[str] = "ocsvm-immune"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = (
        "One-class SVM: Schölkopf et al., Neural Computation 13(7), 2001, "
        "doi:10.1162/089976601750264965; tuned by CLONALG: de Castro & Von Zuben, IEEE TEC "
        "6(3), 2002, doi:10.1109/TEVC.2002.1011539")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 128, "population": 8, "generations": 6},
        "paper": {"work_size": None, "population": 20, "generations": 20},
    }

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> OcsvmImmune:
        p = self.params
        options = p.handcrafted_options()
        x = cached_handcrafted_features(train, ctx.cache, options)
        y = np.array([s.label for s in train])
        healthy = y == 0
        if healthy.sum() < 2:
            raise MribenchError("ocsvm-immune: needs at least 2 tumour-free training slices")
        folds = min(p.folds, int(healthy.sum()), int((~healthy).sum()))
        if p.tune and folds >= 2:
            search = CloneSearchCV(
                _detector(), {"oneclasssvm__nu": p.nu_bounds,
                              "oneclasssvm__gamma": p.gamma_bounds},
                log_scale=("oneclasssvm__nu", "oneclasssvm__gamma"), scoring=_novelty_auc,
                cv=StratifiedKFold(folds, shuffle=True, random_state=ctx.seed),
                fit_classes=(0,), population=p.population, generations=p.generations,
                clone_factor=p.clone_factor, rho=p.rho, seed=ctx.seed)
            search.fit(x, y, callback=lambda g, best, _x: ctx.record(
                generation=g, best_affinity=best))
            self.nu_ = search.best_params_["oneclasssvm__nu"]
            self.gamma_: float | str = search.best_params_["oneclasssvm__gamma"]
            self.cv_auc_ = search.best_score_
            self.model_ = search.best_estimator_
            ctx.log("CLONALG search", nu=self.nu_, gamma=self.gamma_, cv_auc=self.cv_auc_,
                    evaluations=search.result_.n_evaluations)
        else:
            self.nu_, self.gamma_ = p.nu, p.gamma
            self.model_ = _detector().set_params(oneclasssvm__nu=p.nu,
                                                 oneclasssvm__gamma=p.gamma)
            self.model_.fit(x[healthy])
        self.threshold_ = ScoreThreshold()
        if val:
            x_val = cached_handcrafted_features(val, ctx.cache, options)
            self.threshold_.fit(-self.model_.decision_function(x_val),
                                np.array([s.label for s in val]))
        else:
            self.threshold_.threshold_ = 0.0  # the detector's own boundary
        ctx.log("threshold chosen on val", threshold=self.threshold_.threshold_)
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        x = cached_handcrafted_features(samples, ctx.cache, self.params.handcrafted_options())
        scores = -self.model_.decision_function(x)
        return Prediction(ids=[s.id for s in samples], labels=self.threshold_.predict(scores),
                          scores=scores)
