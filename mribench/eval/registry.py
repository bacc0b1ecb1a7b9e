"""The metric registry: one entry per metric, read by everything that lists metrics.

A metric is a frozen :class:`Metric`: its name, the tasks it applies to, its labels, its
direction, how it aggregates over the test images and the paired test the rank groups use.
Scoring (:func:`mribench.eval.metrics.evaluate` and its bootstrap), the paired tests and
intervals of :mod:`mribench.eval.stats`, the ranked tables, ``--rank-by`` of ``bench run``,
``bench report`` and ``bench compare``, ``bench baseline``, ``bench check``, the report's
tables and figures all read this registry, so adding a metric is one entry:

.. code-block:: python

    from mribench.api.overlap import safe_ratio
    from mribench.eval.registry import Metric, register_metric

    register_metric(Metric("npv", "NPV", lambda tp, fp, tn, fn: safe_ratio(tn, tn + fn)))

A package declares the same :class:`Metric` object under the entry-point group
``mribench.metrics`` (``npv = "mypkg.metrics:NPV"``); entry points are loaded on the first
look-up in every process, so worker processes (``--jobs N``, dask, SLURM) score the metric too,
which a :func:`register_metric` call in the driver alone cannot do. Metrics keep their
registration order, which is the order of the tables' columns (the built-ins first).

**Aggregation** (``aggregate``) says how a metric summarises a set of images, and therefore
how its bootstrap interval and its paired test are computed:

``"pooled"``
    ``from_counts(tp, fp, tn, fn)`` of the confusion counts summed over the images (image
    labels for ``classify``, pixels for ``segment``). It must be vectorised: it is called
    with scalars and with arrays of any shape (one set of summed counts per bootstrap or
    permutation resample) and returns values of the same shape; a zero denominator should
    give 0.0, like the built-ins (:func:`mribench.api.overlap.safe_ratio`): where that 0 is a
    fact about the population rather than a measurement, declare ``requires`` (below) and
    the value becomes null with its reason.
``"per_image"`` (``segment`` only)
    the mean over images of each image's ``from_counts`` of its own pixel counts, under the
    empty-mask policy of :func:`mribench.eval.metrics.per_image_scores`; ``key`` names the
    value in the per-case records and in the ``per_image`` section of ``metrics.json``
    (``"dice"`` for ``mean_dice``).
``"scores"`` (``classify`` only)
    computed from the method's scores: ``from_scores(y_true, scores, weights)`` for a
    (b, n) matrix of integer image weights returns one value per row (the bootstrap), and
    ``point_from_scores(y_true, scores)`` the reported value (default: ``from_scores`` with
    weights of one). NaN without scores, with a non-finite score or with one class.

``per_image`` metrics follow the empty-mask policy (a Dice of an image with an empty truth is
1, 0 or left out); ``empty_policy=False`` takes each image's ``from_counts`` as it is (the
share of slices with any predicted tumour, ``flagged``).

**Direction**: ``higher_is_better`` (default True). The tables rank in that direction,
``bench check`` flags a move the wrong way, the report marks the best cell accordingly.

**Undefined** (``requires``): a metric whose population lacks what it measures has no value.
``"positive"``: F1/Dice, IoU and recall need a positive in the population (a tumour image for
``classify``, a tumour pixel for ``segment``): over healthy slices alone a pooled Dice is 0 for
any false positive and 1 for none, a fact about the population, not a measurement.
``"negative"``: specificity (and the false-positive pixel rate) need a negative. ``"both"``:
AUC needs both classes. Such a value is stored as null with its reason
(:meth:`Metric.undefined_reason`) and printed "n/a"; it never enters a drop or a rank
correlation. A bootstrap replicate that draws no positive is likewise undefined and left out of
the percentiles. Precision with no predicted positive stays 0 (``zero_division=0``, as in
scikit-learn): it says something about the method, not about the population.

**Display** (``display``): ``"always"``, or ``"no-positive"`` for a metric of healthy
populations (the false-positive pixel rate ``fp_rate``, the share of slices flagged
``flagged``): computed and stored always, shown in the tables only where the population has no
positive, where Dice, IoU and recall are n/a.

**Paired test** (``test``): how rank groups and ``bench compare`` test a difference in the
metric, ``"permutation"`` (default) or ``"bootstrap"``, the two methods of
:func:`mribench.eval.stats.paired_metric_test`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.api.overlap import dice_from_counts, iou_from_counts, safe_ratio
from mribench.eval.auc import roc_auc, weighted_auc

__all__ = ["AGGREGATES", "DISPLAYS", "ENTRY_POINT_GROUP", "REQUIRES", "TASKS", "TESTS", "Metric",
           "get_metric", "shown_metrics",
           "metric_label", "metric_names", "metrics", "per_image_metric", "rank_metric",
           "register_metric", "unregister_metric"]

#: The tasks a metric can apply to, in the order tables show them.
TASKS: tuple[str, ...] = ("classify", "segment")
#: How a metric summarises a set of images (module docstring).
AGGREGATES: tuple[str, ...] = ("pooled", "per_image", "scores")
#: The paired tests of a metric difference (:func:`mribench.eval.stats.paired_metric_test`).
TESTS: tuple[str, ...] = ("permutation", "bootstrap")
#: What a metric's population must hold for the metric to be defined (module docstring).
REQUIRES: tuple[str, ...] = ("positive", "negative", "both")
#: When the tables show a metric's column (module docstring).
DISPLAYS: tuple[str, ...] = ("always", "no-positive")
#: Entry-point group of metric plugins (each entry point loads a :class:`Metric`).
ENTRY_POINT_GROUP = "mribench.metrics"

#: Column names of a ranked table that a metric name may not take.
_RESERVED_NAMES = frozenset({"rank", "group", "group_undecided", "p_vs_leader",
                             "p_vs_leader_se", "method", "kind", "no_skill", "n", "n_clusters",
                             "seeds", "time_capped", "fit_s", "predict_ms", "p_secondary",
                             "test"})
#: Keys of a per-case record that a per-image metric's ``key`` may not take.
_RESERVED_KEYS = frozenset({"id", "group", "label", "pred", "score", "truth", "tp", "fp", "tn", "fn",
                            "gt_area", "pred_area"})
_NAME = re.compile(r"[a-z][a-z0-9_]*")

CountsFn = Callable[[Any, Any, Any, Any], Any]
ScoresFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Metric:
    """One metric: what it is called, where it applies and how it is computed and tested.

    Parameters
    ----------
    name : str
        Lower-case identifier (``[a-z][a-z0-9_]*``): the key in ``metrics.json``, the
        ``--rank-by`` value, the column of the ranked tables.
    label : str
        Column header in tables and figures.
    from_counts : callable ``(tp, fp, tn, fn) -> ratio``, optional
        The formula of a ``pooled`` or ``per_image`` metric, vectorised (module docstring).
    tasks : tuple of {"classify", "segment"}, default=both
    aggregate : {"pooled", "per_image", "scores"}, default="pooled"
    segment_label : str, optional
        Header in the ``segment`` tables when it differs (``"Dice (pooled)"`` for ``f1``).
    higher_is_better : bool, default=True
    test : {"permutation", "bootstrap"}, default="permutation"
        The paired test of a difference in this metric (rank groups, ``bench compare``).
    key : str, optional
        ``per_image`` only: the name of each image's value in the per-case records and in the
        ``per_image`` section of ``metrics.json``.
    from_scores : callable ``(y_true, scores, weights) -> values``, optional
        ``scores`` only: one value per row of the (b, n) weight matrix.
    point_from_scores : callable ``(y_true, scores) -> float``, optional
        ``scores`` only: the reported value (default: ``from_scores`` with weights of one).
    description : str
        One line for documentation (``bench list`` style listings).
    requires : {"positive", "negative", "both"}, optional
        What the population must hold for the metric to be defined (module docstring).
    empty_policy : bool, default=True
        ``per_image`` only: whether the empty-mask policy applies to each image's value.
    display : {"always", "no-positive"}, default="always"
        When the tables show the metric's column (module docstring).
    """

    name: str
    label: str
    from_counts: CountsFn | None = field(default=None, compare=False)
    tasks: tuple[str, ...] = TASKS
    aggregate: str = "pooled"
    segment_label: str | None = None
    higher_is_better: bool = True
    test: str = "permutation"
    key: str | None = None
    from_scores: ScoresFn | None = field(default=None, compare=False)
    point_from_scores: Callable[[np.ndarray, np.ndarray], float] | None = field(
        default=None, compare=False)
    description: str = ""
    requires: str | None = None
    empty_policy: bool = True
    display: str = "always"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        where = f"metric {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise MribenchError(f"{where}: a metric name is lower-case letters, digits and _, "
                                "starting with a letter")
        if self.name in _RESERVED_NAMES or self.name.endswith(("_low", "_high", "_sd")):
            raise MribenchError(f"{where}: the name is taken by a column of the ranked tables; "
                                "choose another")
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise MribenchError(f"{where}: tasks must be a non-empty subset of "
                                f"{', '.join(TASKS)}; got {self.tasks!r}")
        if self.aggregate not in AGGREGATES:
            raise MribenchError(f"{where}: aggregate must be one of {', '.join(AGGREGATES)}; "
                                f"got {self.aggregate!r}")
        if self.test not in TESTS:
            raise MribenchError(f"{where}: test must be one of {', '.join(TESTS)}; "
                                f"got {self.test!r}")
        if self.requires is not None and self.requires not in REQUIRES:
            raise MribenchError(f"{where}: requires must be None or one of "
                                f"{', '.join(REQUIRES)}; got {self.requires!r}")
        if self.display not in DISPLAYS:
            raise MribenchError(f"{where}: display must be one of {', '.join(DISPLAYS)}; "
                                f"got {self.display!r}")
        if self.aggregate in ("pooled", "per_image") and not callable(self.from_counts):
            raise MribenchError(f"{where}: a {self.aggregate} metric needs "
                                "from_counts(tp, fp, tn, fn)")
        if self.aggregate == "per_image":
            if self.tasks != ("segment",):
                raise MribenchError(f"{where}: a per_image metric applies to segment only")
            if not self.key or not _NAME.fullmatch(self.key) or self.key in _RESERVED_KEYS:
                raise MribenchError(f"{where}: a per_image metric needs a key (a lower-case "
                                    "name for its per-image values, e.g. 'dice') that is no "
                                    "per-case field")
        if self.aggregate == "scores":
            if self.tasks != ("classify",):
                raise MribenchError(f"{where}: a scores metric applies to classify only")
            if not callable(self.from_scores):
                raise MribenchError(f"{where}: a scores metric needs "
                                    "from_scores(y_true, scores, weights)")

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"``: which values are better."""
        return "higher" if self.higher_is_better else "lower"

    def label_in(self, task: str) -> str:
        """The column header in ``task``'s tables."""
        return self.segment_label if task == "segment" and self.segment_label else self.label

    def defined(self, tp: Any, fp: Any, tn: Any, fn: Any) -> np.ndarray:
        """Whether the population behind the confusion counts holds what the metric requires
        (vectorised: one answer per set of counts; always True without ``requires``)."""
        tp, fp, tn, fn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, tn, fn))
        positive, negative = (tp + fn) > 0, (tn + fp) > 0
        shape = np.broadcast(tp, fp, tn, fn).shape
        if self.requires == "positive":
            return np.broadcast_to(positive, shape)
        if self.requires == "negative":
            return np.broadcast_to(negative, shape)
        if self.requires == "both":
            return np.broadcast_to(positive & negative, shape)
        return np.ones(shape, dtype=bool)

    def value(self, tp: Any, fp: Any, tn: Any, fn: Any) -> np.ndarray:
        """``from_counts`` of the counts, NaN where the population lacks what the metric
        requires (vectorised, float64)."""
        out = np.array(self.from_counts(*(np.asarray(c, dtype=np.float64)
                                          for c in (tp, fp, tn, fn))), dtype=np.float64)
        ok = self.defined(tp, fp, tn, fn)
        out = np.broadcast_to(out, ok.shape).copy()
        out[~ok] = np.nan
        return out

    def undefined_reason(self, task: str, tp: float, fp: float, tn: float, fn: float
                         ) -> str | None:
        """Why the metric has no value on a population with these pooled counts (None when it
        is defined): ``"no tumour pixel in the population"`` and the like."""
        if bool(self.defined(tp, fp, tn, fn)):
            return None
        unit = "image" if task == "classify" else "pixel"
        no_positive, no_negative = (tp + fn) == 0, (tn + fp) == 0
        if no_positive and no_negative:
            return "no image in the population"
        missing = f"no tumour {unit}" if no_positive else f"no tumour-free {unit}"
        if self.requires == "both":
            return f"one class only in the population ({missing})"
        return f"{missing} in the population"

    def point(self, y_true: np.ndarray, scores: np.ndarray) -> float:
        """A ``scores`` metric's value on all images (labels bool, finite scores)."""
        if self.point_from_scores is not None:
            return float(self.point_from_scores(y_true, scores))
        return float(self.from_scores(y_true, scores, np.ones((1, len(scores))))[0])


# --------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, Metric] = {}
_plugins_loaded = False


def _entry_points() -> Iterable[EntryPoint]:
    """The entry points of :data:`ENTRY_POINT_GROUP` (a function, so tests can replace it)."""
    return entry_points(group=ENTRY_POINT_GROUP)


def _load_plugins() -> None:
    """Register the metrics of the installed packages' entry points, once per process.

    A name already registered keeps its entry (the built-ins cannot be replaced this way).
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in _entry_points():
        try:
            obj = ep.load()
        except Exception as exc:
            raise MribenchError(f"metric plugin {ep.name!r} ({ep.value}) cannot be loaded: "
                                f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        if not isinstance(obj, Metric):
            raise MribenchError(f"metric plugin {ep.name!r} ({ep.value}) is not a "
                                "mribench.eval.registry.Metric")
        if obj.name not in _REGISTRY:
            _add(obj)


def _add(metric: Metric) -> None:
    if metric.aggregate == "per_image":
        taken = [m.name for m in _REGISTRY.values()
                 if m.aggregate == "per_image" and m.key == metric.key and m.name != metric.name]
        if taken:
            raise MribenchError(f"metric {metric.name!r}: per-image key {metric.key!r} is "
                                f"taken by {taken[0]!r}")
    _REGISTRY[metric.name] = metric


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the registry and return it.

    Raises
    ------
    MribenchError
        When ``metric`` is no :class:`Metric`, or its name is registered already and
        ``replace`` is False.
    """
    _load_plugins()
    if not isinstance(metric, Metric):
        raise MribenchError(f"register_metric takes a Metric, got {type(metric).__name__}")
    if metric.name in _REGISTRY and not replace:
        raise MribenchError(f"metric {metric.name!r} is registered already; pass "
                            "replace=True to redefine it")
    _add(metric)
    return metric


def unregister_metric(name: str) -> Metric:
    """Remove the metric called ``name`` and return it (tests, redefinitions)."""
    _load_plugins()
    if name not in _REGISTRY:
        raise MribenchError(f"no metric {name!r} is registered; known: {', '.join(_REGISTRY)}")
    return _REGISTRY.pop(name)


def get_metric(name: str) -> Metric:
    """The metric called ``name``; a one-line :class:`MribenchError` naming the known ones."""
    _load_plugins()
    if name not in _REGISTRY:
        raise MribenchError(f"{name!r} is not a metric; choose one of "
                            f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def metrics(task: str | None = None, aggregate: str | None = None) -> tuple[Metric, ...]:
    """The registered metrics in registration order, optionally those of one task and/or one
    kind of aggregation."""
    _load_plugins()
    if task is not None and task not in TASKS:
        raise MribenchError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    return tuple(m for m in _REGISTRY.values()
                 if (task is None or task in m.tasks)
                 and (aggregate is None or m.aggregate == aggregate))


def metric_names(task: str | None = None) -> tuple[str, ...]:
    """The names of the metrics of ``task`` (every metric without one), in display order."""
    return tuple(m.name for m in metrics(task))


def shown_metrics(task: str, no_positive: bool = False) -> tuple[str, ...]:
    """The metrics of ``task`` the tables show: those displayed ``"always"``, and those for
    populations without a positive (``display="no-positive"``) when ``no_positive``."""
    return tuple(m.name for m in metrics(task)
                 if m.display == "always" or (no_positive and m.display == "no-positive"))


def rank_metric(task: str, rank_by: str, fallback: str = "f1") -> str:
    """``rank_by`` when it is a metric of ``task``, else ``fallback`` (e.g. auc -> f1 for
    segmentation, mean_dice -> f1 for classification)."""
    return rank_by if rank_by in metric_names(task) else fallback


def metric_label(name: str, task: str) -> str:
    """The column header of metric ``name`` in ``task``'s tables (the name when unknown)."""
    _load_plugins()
    metric = _REGISTRY.get(name)
    return metric.label_in(task) if metric is not None else name


def per_image_metric(key: str) -> Metric | None:
    """The ``per_image`` metric whose per-image values are called ``key`` (None if none)."""
    return next((m for m in metrics(aggregate="per_image") if m.key == key), None)


# --------------------------------------------------------------------------- the built-ins


def _accuracy(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return safe_ratio(tp + tn, tp + fp + tn + fn)


def _f1(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return dice_from_counts(tp, fp, fn, empty=0.0)


def _iou(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return iou_from_counts(tp, fp, fn, empty=0.0)


def _precision(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return safe_ratio(tp, tp + fp)


def _recall(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return safe_ratio(tp, tp + fn)


def _specificity(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return safe_ratio(tn, tn + fp)


def _fp_rate(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return safe_ratio(fp, tn + fp)


def _flagged(tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
    return (np.asarray(tp) + np.asarray(fp) > 0).astype(np.float64)


for _metric in (
    Metric("accuracy", "Accuracy", _accuracy, description="(tp + tn) / (tp + fp + tn + fn)"),
    Metric("f1", "F1", _f1, segment_label="Dice (pooled)", requires="positive",
           description="2 tp / (2 tp + fp + fn); Dice in segmentation"),
    Metric("iou", "IoU", _iou, segment_label="IoU (pooled)", requires="positive",
           description="tp / (tp + fp + fn); Jaccard index"),
    Metric("precision", "Precision", _precision, description="tp / (tp + fp)"),
    Metric("recall", "Recall", _recall, requires="positive",
           description="tp / (tp + fn); sensitivity"),
    Metric("specificity", "Specificity", _specificity, requires="negative",
           description="tn / (tn + fp)"),
    Metric("auc", "AUC", tasks=("classify",), aggregate="scores", from_scores=weighted_auc,
           point_from_scores=roc_auc, requires="both",
           description="ROC AUC of the method's scores"),
    Metric("mean_dice", "Dice (per image)", _f1, tasks=("segment",), aggregate="per_image",
           key="dice", description="mean over images of each image's Dice"),
    Metric("mean_iou", "IoU (per image)", _iou, tasks=("segment",), aggregate="per_image",
           key="iou", description="mean over images of each image's IoU"),
    Metric("fp_rate", "FP rate", _fp_rate, segment_label="FP pixel rate",
           higher_is_better=False, requires="negative", display="no-positive",
           description="fp / (fp + tn): the share of tumour-free images (pixels) called "
                       "tumour; 1 - specificity"),
    Metric("flagged", "Slices flagged", _flagged, tasks=("segment",), aggregate="per_image",
           key="flagged", higher_is_better=False, empty_policy=False, display="no-positive",
           description="share of slices with any predicted tumour pixel"),
):
    _add(_metric)
del _metric
