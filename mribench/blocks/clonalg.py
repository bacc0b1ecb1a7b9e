"""CLONALG, the clonal selection algorithm, as a seeded black-box maximiser and a CV tuner.

de Castro, L. N. & Von Zuben, F. J., "Learning and optimization using the clonal selection
principle", IEEE Transactions on Evolutionary Computation 6(3):239-251, 2002,
doi:10.1109/TEVC.2002.1011539.

The optimisation version of the algorithm (the paper's "CLONALG for optimisation"), per
generation:

1. every antibody (a candidate ``x`` in the search box) has an affinity, the objective value;
2. the ``n_select`` best are selected;
3. each selected antibody is cloned in proportion to its rank: the antibody of rank ``i``
   (1 = best) gets ``round(clone_factor * population / i)`` clones (the paper's Eq. 2);
4. each clone is hypermutated with a rate inversely related to its parent's affinity:
   Gaussian steps of scale ``exp(-rho * f*)`` in the unit box, ``f*`` the affinity normalised
   to [0, 1] over the population (1 for the best), so good antibodies move little and poor ones
   explore;
5. the clones are evaluated and each selected antibody is replaced by its best clone when the
   clone is better (re-selection; the parent survives otherwise, so the best never gets worse);
6. receptor editing: the ``n_replace`` worst antibodies are replaced by random newcomers.

The search runs in the unit box; each dimension maps linearly, or logarithmically for the
``log_scale`` dimensions (C, gamma, nu...), onto its ``bounds``. Everything is drawn from one
``numpy.random.Generator`` seeded by ``seed``, so a run is reproducible.

:func:`clonalg_maximise` is the generic optimiser; :class:`CloneSearchCV` tunes any
scikit-learn estimator's numeric parameters by K-fold cross-validation with it (like
``GridSearchCV``), including novelty detectors fitted on one class only (``fit_classes``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import StratifiedKFold, check_cv

from mribench.api.errors import ParamError

__all__ = ["CloneSearchCV", "ClonalgResult", "clonalg_maximise"]


@dataclass
class ClonalgResult:
    """What :func:`clonalg_maximise` returns.

    Attributes
    ----------
    best_x : np.ndarray
        The best point found, in the objective's own units (float (d,)).
    best_value : float
        Its objective value.
    history : list of float
        The best value after each generation (generation 0 is the initial population), never
        decreasing.
    n_evaluations : int
        How many times the objective was called.
    population : np.ndarray
        The final population (p, d), best first, in the objective's units.
    values : np.ndarray
        Their objective values (p,).
    """

    best_x: np.ndarray
    best_value: float
    history: list[float] = field(default_factory=list)
    n_evaluations: int = 0
    population: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))


class _Box:
    """Maps the unit box to ``bounds`` (linear or log per dimension)."""

    def __init__(self, bounds: Sequence[tuple[float, float]], log_scale: Sequence[bool]) -> None:
        b = np.asarray(bounds, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] == 0:
            raise ParamError(f"clonalg: bounds must be a list of (low, high) pairs, got {bounds!r}")
        if np.any(b[:, 1] <= b[:, 0]):
            raise ParamError(f"clonalg: each bound needs low < high, got {bounds!r}")
        self.log = np.asarray(log_scale, dtype=bool)
        if self.log.shape != (b.shape[0],):
            raise ParamError("clonalg: log_scale needs one flag per dimension")
        if np.any(b[self.log, 0] <= 0):
            raise ParamError("clonalg: a log-scale dimension needs a positive lower bound")
        self.low = np.where(self.log, np.log(np.where(self.log, b[:, 0], 1.0)), b[:, 0])
        self.high = np.where(self.log, np.log(np.where(self.log, b[:, 1], 1.0)), b[:, 1])

    @property
    def dim(self) -> int:
        return int(self.low.size)

    def to_x(self, unit: np.ndarray) -> np.ndarray:
        scaled = self.low + np.clip(unit, 0.0, 1.0) * (self.high - self.low)
        return np.where(self.log, np.exp(scaled), scaled)


def clonalg_maximise(objective: Callable[[np.ndarray], float],
                     bounds: Sequence[tuple[float, float]], *,
                     log_scale: bool | Sequence[bool] = False, population: int = 20,
                     n_select: int | None = None, clone_factor: float = 1.0, rho: float = 3.0,
                     n_replace: int | None = None, generations: int = 20, seed: int = 0,
                     callback: Callable[[int, float, np.ndarray], None] | None = None
                     ) -> ClonalgResult:
    """Maximise ``objective`` over a box with CLONALG (see the module docstring).

    Parameters
    ----------
    objective : callable
        ``objective(x) -> float`` for x a float (d,) array in the units of ``bounds``. Higher
        is better; a non-finite value counts as the worst possible.
    bounds : sequence of (low, high)
        The search box, one pair per dimension.
    log_scale : bool or sequence of bool, default=False
        Search these dimensions on a log scale (all of them when a single bool).
    population : int, default=20
        Antibodies kept from one generation to the next.
    n_select : int or None
        How many of the best are cloned; default half the population (at least 1).
    clone_factor : float, default=1.0
        beta of the paper: the antibody of rank i gets ``round(beta * population / i)`` clones
        (at least 1).
    rho : float, default=3.0
        Decay of the mutation scale with the normalised affinity: ``exp(-rho * f*)``.
    n_replace : int or None
        Receptor editing: how many of the worst antibodies are replaced by random ones each
        generation; default 10% of the population (at least 1 when the population exceeds 2).
    generations : int, default=20
    seed : int, default=0
    callback : callable or None
        Called as ``callback(generation, best_value, best_x)`` after every generation
        (generation 0 is the initial population).

    Returns
    -------
    ClonalgResult
    """
    if population < 1:
        raise ParamError(f"clonalg: population must be >= 1, got {population!r}")
    if generations < 0:
        raise ParamError(f"clonalg: generations must be >= 0, got {generations!r}")
    if rho < 0 or clone_factor <= 0:
        raise ParamError("clonalg: rho must be >= 0 and clone_factor > 0")
    dim = len(bounds)
    flags = [bool(log_scale)] * dim if isinstance(log_scale, bool) else list(log_scale)
    box = _Box(bounds, flags)
    n_select, n_replace = _selection_sizes(population, n_select, n_replace)
    rng = np.random.default_rng(seed)
    repertoire = _Repertoire(objective, box, rng, population)
    history: list[float] = []

    def report(generation: int) -> None:
        value, x = repertoire.best()
        history.append(value)
        if callback is not None:
            callback(generation, value, x)

    report(0)
    n_clones = [max(1, int(round(clone_factor * population / rank)))
                for rank in range(1, n_select + 1)]
    for generation in range(1, generations + 1):
        repertoire.sort()
        repertoire.clone_and_mutate(n_clones, rho)
        repertoire.edit_receptors(n_replace)
        report(generation)

    repertoire.sort()
    # The receptor editing never replaces the best, so the history's last value is affinity[0].
    return ClonalgResult(best_x=box.to_x(repertoire.antibodies[0]),
                         best_value=float(repertoire.affinity[0]), history=history,
                         n_evaluations=repertoire.evaluations,
                         population=np.stack([box.to_x(a) for a in repertoire.antibodies]),
                         values=repertoire.affinity.copy())


def _selection_sizes(population: int, n_select: int | None,
                     n_replace: int | None) -> tuple[int, int]:
    """``(n_select, n_replace)`` with their defaults filled in, checked against
    ``population``."""
    n_select = max(1, population // 2) if n_select is None else int(n_select)
    if not 1 <= n_select <= population:
        raise ParamError(f"clonalg: n_select must be in [1, population], got {n_select!r}")
    if n_replace is None:
        n_replace = max(1, population // 10) if population > 2 else 0
    if not 0 <= n_replace < population:
        raise ParamError(f"clonalg: n_replace must be in [0, population), got {n_replace!r}")
    return n_select, n_replace


class _Repertoire:
    """The antibodies (points of the unit box, ``(population, d)``) and their affinities, with
    the steps of one generation. Every draw comes from ``rng``, in the algorithm's order."""

    def __init__(self, objective: Callable[[np.ndarray], float], box: _Box,
                 rng: np.random.Generator, population: int) -> None:
        self.objective, self.box, self.rng = objective, box, rng
        self.evaluations = 0
        self.antibodies = rng.random((population, box.dim))
        self.affinity = self.evaluate(self.antibodies)

    def evaluate(self, units: np.ndarray) -> np.ndarray:
        """The objective at unit-box points ``units``; a non-finite value becomes -inf."""
        out = np.empty(len(units))
        for k, u in enumerate(units):
            value = float(self.objective(self.box.to_x(u)))
            out[k] = value if math.isfinite(value) else -np.inf
        self.evaluations += len(units)
        return out

    def best(self) -> tuple[float, np.ndarray]:
        """The best affinity and its antibody in the objective's units."""
        best = int(np.argmax(self.affinity))
        return float(self.affinity[best]), self.box.to_x(self.antibodies[best])

    def sort(self) -> None:
        """Best first (stable)."""
        order = np.argsort(-self.affinity, kind="stable")
        self.antibodies, self.affinity = self.antibodies[order], self.affinity[order]

    def normalised_affinity(self) -> np.ndarray:
        """Affinities scaled to [0, 1] over the finite ones (1 for the best; 0 for -inf)."""
        affinity = self.affinity
        finite = np.isfinite(affinity)
        lo = affinity[finite].min() if finite.any() else 0.0
        hi = affinity[finite].max() if finite.any() else 0.0
        return np.where(finite, (affinity - lo) / (hi - lo) if hi > lo else 1.0, 0.0)

    def clone_and_mutate(self, n_clones: Sequence[int], rho: float) -> None:
        """Steps 3-5 on the sorted repertoire: the antibody of rank ``i`` gets
        ``n_clones[i]`` clones, mutated at scale ``exp(-rho * f*)``; its best clone replaces
        it when better."""
        normalised = self.normalised_affinity()
        for i, count in enumerate(n_clones):
            scale = math.exp(-rho * float(normalised[i]))
            clones = self.antibodies[i] + scale * self.rng.standard_normal((count, self.box.dim))
            clones = np.clip(clones, 0.0, 1.0)
            clone_affinity = self.evaluate(clones)
            best = int(np.argmax(clone_affinity))
            if clone_affinity[best] > self.affinity[i]:
                self.antibodies[i], self.affinity[i] = clones[best], clone_affinity[best]

    def edit_receptors(self, n_replace: int) -> None:
        """Step 6: the ``n_replace`` worst antibodies are replaced by random newcomers."""
        if n_replace:
            worst = np.argsort(self.affinity, kind="stable")[:n_replace]
            self.antibodies[worst] = self.rng.random((n_replace, self.box.dim))
            self.affinity[worst] = self.evaluate(self.antibodies[worst])


Scoring = Callable[[Any, np.ndarray, np.ndarray], float]


class CloneSearchCV:
    """Tune an estimator's numeric parameters by K-fold cross-validation with CLONALG.

    Parameters
    ----------
    estimator : scikit-learn estimator
        Cloned for every fit.
    param_bounds : mapping name -> (low, high)
        The parameters to tune and their ranges.
    log_scale : sequence of str
        Names of the parameters searched on a log scale.
    integer : sequence of str
        Names of the parameters rounded to integers.
    scoring : callable or None
        ``scoring(fitted_estimator, X_test, y_test) -> float`` (higher is better); None uses
        ``estimator.score``.
    cv : int or cross-validation splitter, default=3
        An int means ``StratifiedKFold(cv, shuffle=True, random_state=seed)``.
    fit_classes : sequence of int or None
        When given, each fold's estimator is fitted only on the training-fold samples whose
        label is in ``fit_classes`` (novelty detection: a one-class model of healthy slices),
        and scored on every held-out sample. The final refit likewise.
    population, generations, n_select, clone_factor, rho, n_replace, seed
        Passed to :func:`clonalg_maximise`.
    refit : bool, default=True
        Refit the best parameters on all of ``X``.

    Attributes
    ----------
    best_params_ : dict
    best_score_ : float
        Mean CV score of the best parameters.
    best_estimator_ : estimator (when ``refit``)
    history_ : list of float
        Best mean CV score per generation.
    result_ : ClonalgResult
    """

    def __init__(self, estimator: BaseEstimator, param_bounds: Mapping[str, tuple[float, float]],
                 *, log_scale: Sequence[str] = (), integer: Sequence[str] = (),
                 scoring: Scoring | None = None, cv: Any = 3,
                 fit_classes: Sequence[int] | None = None, population: int = 10,
                 generations: int = 10, n_select: int | None = None, clone_factor: float = 1.0,
                 rho: float = 3.0, n_replace: int | None = None, seed: int = 0,
                 refit: bool = True) -> None:
        self.estimator = estimator
        self.param_bounds = dict(param_bounds)
        self.log_scale = tuple(log_scale)
        self.integer = tuple(integer)
        self.scoring = scoring
        self.cv = cv
        self.fit_classes = fit_classes
        self.population = population
        self.generations = generations
        self.n_select = n_select
        self.clone_factor = clone_factor
        self.rho = rho
        self.n_replace = n_replace
        self.seed = seed
        self.refit = refit

    def _params(self, x: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in zip(self.param_bounds, x, strict=True):
            out[name] = int(round(value)) if name in self.integer else float(value)
        return out

    def _fit_subset(self, y: np.ndarray, index: np.ndarray) -> np.ndarray:
        if self.fit_classes is None:
            return index
        return index[np.isin(y[index], list(self.fit_classes))]

    def cv_score(self, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray) -> float:
        """Mean held-out score of ``estimator`` with ``params`` over the folds."""
        scores = []
        for train, test in self._splits:
            fit_on = self._fit_subset(y, train)
            if fit_on.size == 0:
                continue
            model = clone(self.estimator).set_params(**params)
            model.fit(X[fit_on], y[fit_on])
            score = (self.scoring(model, X[test], y[test]) if self.scoring is not None
                     else model.score(X[test], y[test]))
            scores.append(float(score))
        return float(np.mean(scores)) if scores else -np.inf

    def fit(self, X: np.ndarray, y: np.ndarray,
            callback: Callable[[int, float, np.ndarray], None] | None = None) -> CloneSearchCV:
        """Search, then refit the best parameters on ``X`` (or its ``fit_classes`` part)."""
        X = np.asarray(X)
        y = np.asarray(y)
        splitter = (StratifiedKFold(self.cv, shuffle=True, random_state=self.seed)
                    if isinstance(self.cv, int) else check_cv(self.cv))
        self._splits = list(splitter.split(X, y))
        unknown = [n for n in (*self.log_scale, *self.integer) if n not in self.param_bounds]
        if unknown:
            raise ParamError(f"CloneSearchCV: {', '.join(unknown)} not in param_bounds")
        self.result_ = clonalg_maximise(
            lambda x: self.cv_score(self._params(x), X, y),
            list(self.param_bounds.values()),
            log_scale=[name in self.log_scale for name in self.param_bounds],
            population=self.population, generations=self.generations, n_select=self.n_select,
            clone_factor=self.clone_factor, rho=self.rho, n_replace=self.n_replace,
            seed=self.seed, callback=callback)
        self.best_params_ = self._params(self.result_.best_x)
        self.best_score_ = self.result_.best_value
        self.history_ = list(self.result_.history)
        if self.refit:
            fit_on = self._fit_subset(y, np.arange(len(y)))
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            self.best_estimator_.fit(X[fit_on], y[fit_on])
        return self
