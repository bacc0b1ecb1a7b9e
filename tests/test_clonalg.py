"""Tests of mribench.blocks.clonalg: known optima, determinism, history, the CV tuner."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC, OneClassSVM

from mribench.api.errors import ParamError
from mribench.blocks.clonalg import CloneSearchCV, clonalg_maximise

SHIFT = np.array([1.3, -0.7])


def _sphere(x: np.ndarray) -> float:
    return -float(np.sum((x - SHIFT) ** 2))


def _rastrigin(x: np.ndarray) -> float:
    z = x - SHIFT
    return -float(20 + np.sum(z * z - 10 * np.cos(2 * np.pi * z)))


def test_finds_the_shifted_sphere_optimum() -> None:
    result = clonalg_maximise(_sphere, [(-5, 5)] * 2, population=20, generations=30, seed=0)
    assert np.abs(result.best_x - SHIFT).max() < 0.1
    assert result.best_value == pytest.approx(_sphere(result.best_x))
    assert len(result.history) == 31 and np.all(np.diff(result.history) >= 0)
    assert result.history[-1] == result.best_value
    assert result.population.shape == (20, 2) and result.values[0] == result.best_value


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_global_optimum_of_rastrigin(seed: int) -> None:
    result = clonalg_maximise(_rastrigin, [(-5.12, 5.12)] * 2, population=20, generations=40,
                              seed=seed)
    assert np.abs(result.best_x - SHIFT).max() < 0.1   # the global basin, not a local one
    assert result.best_value > -1.0


def test_is_deterministic_and_counts_evaluations() -> None:
    calls = []

    def objective(x: np.ndarray) -> float:
        calls.append(x)
        return _sphere(x)

    a = clonalg_maximise(objective, [(-5, 5)] * 2, population=6, generations=3, seed=7)
    b = clonalg_maximise(_sphere, [(-5, 5)] * 2, population=6, generations=3, seed=7)
    np.testing.assert_array_equal(a.best_x, b.best_x)
    assert a.n_evaluations == len(calls)
    # population + per generation: clones round(6/1), round(6/2), round(6/3) and 1 newcomer
    assert a.n_evaluations == 6 + 3 * (6 + 3 + 2 + 1)


def test_log_scale_search_and_callback() -> None:
    seen = []
    result = clonalg_maximise(lambda x: -(np.log10(x[0]) - 2.0) ** 2, [(1e-3, 1e3)],
                              log_scale=True, generations=15, seed=0,
                              callback=lambda g, best, x: seen.append((g, best)))
    assert result.best_x[0] == pytest.approx(100.0, rel=0.1)
    assert [g for g, _ in seen] == list(range(16))
    assert [b for _, b in seen] == result.history


def test_non_finite_objective_counts_as_worst() -> None:
    result = clonalg_maximise(lambda x: np.nan if x[0] < 0 else -abs(x[0] - 1), [(-2, 2)],
                              generations=10, seed=0)
    assert result.best_x[0] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"bounds": [(1, 0)]}, "low < high"),
    ({"bounds": [(0, 1)], "log_scale": True}, "positive lower bound"),
    ({"bounds": [(0, 1)], "population": 0}, "population"),
    ({"bounds": [(0, 1)], "n_select": 50}, "n_select"),
])
def test_bad_settings_are_param_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        clonalg_maximise(_sphere, **kwargs)


def test_clone_search_cv_tunes_an_svm() -> None:
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=0)
    search = CloneSearchCV(SVC(), {"C": (1e-3, 1e3), "gamma": (1e-4, 10.0)},
                           log_scale=("C", "gamma"), cv=3, population=6, generations=4, seed=0)
    search.fit(X, y)
    assert set(search.best_params_) == {"C", "gamma"}
    assert search.best_score_ == pytest.approx(search.cv_score(search.best_params_, X, y))
    # Better than scikit-learn's defaults and far better than a poor corner of the box.
    assert search.best_score_ > search.cv_score({"C": 1.0, "gamma": "scale"}, X, y)
    assert search.cv_score({"C": 1e-3, "gamma": 1e-4}, X, y) < 0.6 < 0.75 < search.best_score_
    assert search.best_estimator_.get_params()["C"] == search.best_params_["C"]
    assert len(search.history_) == 5


def test_clone_search_cv_novelty_detector_fits_on_one_class() -> None:
    rng = np.random.default_rng(0)
    healthy = rng.normal(0, 1, (80, 3))
    tumour = rng.normal(3, 1, (40, 3))
    X = np.vstack([healthy, tumour])
    y = np.r_[np.zeros(80, int), np.ones(40, int)]

    def auc(model: OneClassSVM, x: np.ndarray, labels: np.ndarray) -> float:
        return float(roc_auc_score(labels, -model.decision_function(x)))

    search = CloneSearchCV(OneClassSVM(), {"nu": (0.01, 0.5), "gamma": (1e-3, 10.0)},
                           log_scale=("nu", "gamma"), integer=(), scoring=auc, cv=3,
                           fit_classes=(0,), population=6, generations=3, seed=1)
    search.fit(X, y)
    assert search.best_score_ > 0.9
    # Refitted on the healthy slices only: its support vectors all come from them.
    assert search.best_estimator_.support_vectors_.shape[0] <= 80
    assert np.isin(search.best_estimator_.support_vectors_, healthy).all()
