"""Metrics from confusion counts, per image and pooled, with seeded bootstrap confidence intervals.

Everything is computed from the four confusion counts ``tp, fp, tn, fn`` of the positive
(tumour) class, so classification and segmentation share one set of formulas. The metrics
are the entries of the registry :mod:`mribench.eval.registry` (the built-ins below, plus any
registered there): this module computes every ``pooled`` metric of a task from its
``from_counts``, every ``per_image`` one as a mean over images, every ``scores`` one (AUC)
from the scores:

=============  ===============================  =====================================
name           formula                          also known as
=============  ===============================  =====================================
accuracy       (tp + tn) / (tp + fp + tn + fn)
f1             2 tp / (2 tp + fp + fn)          Dice (segmentation)
iou            tp / (tp + fp + fn)              Jaccard index
precision      tp / (tp + fp)                   positive predictive value
recall         tp / (tp + fn)                   sensitivity, true positive rate
specificity    tn / (tn + fp)                   true negative rate
=============  ===============================  =====================================

**Zero division and undefined metrics.** A metric whose *population* lacks what it measures
has no value (the registry's ``requires``): F1/Dice, IoU and recall need a positive (a tumour
image for ``classify``, a tumour pixel for ``segment``), specificity a negative, AUC both
classes. Such a value is stored as null, with its reason in the entry's ``"undefined"`` (e.g.
``"no tumour pixel in the population"``), never as 0 or 1: over healthy slices alone a pooled
Dice is 0 for any false positive and 1 for none. Otherwise a ratio whose denominator is 0 is
0.0, like scikit-learn's ``zero_division=0``: a method that never predicts tumour has precision
0, a property of the method. The *per-image* Dice/IoU of an image whose ground truth is empty
follows the explicit ``empty_policy`` below, because there "0/0" is a modelling choice.

**Classification** (task ``classify``) scores one label per image, on the test samples whose
label is 0 or 1 (unlabelled samples, label -1, are skipped). AUC comes from
:func:`sklearn.metrics.roc_auc_score` on the method's scores when it has scores and both
classes are present; otherwise it is NaN.

**Segmentation** (task ``segment``) scores every test slice whose ground truth is known, in
two labelled *views* (:data:`SEGMENT_VIEWS`):

- ``"all"`` (the ``segment`` block itself, the default and the one tables rank): *all slices
  with a known mask*, i.e. the slices whose ``Sample.mask_or_empty()`` is not None: those the
  data set annotates (``mask`` given, possibly all False, as on the synthetic set) and the
  tumour-free slices without a mask (label 0, ``mask`` None: Br35H ``no/``), whose truth is
  empty. A false-positive pixel on a healthy slice is an error like any other: it counts in
  the pooled metrics and, under the default policy, gives that slice a per-image Dice of 0.
- ``"tumour_only"`` (the ``segment["tumour_only"]`` sub-block, same structure): *annotated
  tumour slices only*, i.e. label 1 with an annotated mask, the population the Br35H U-Net
  paper (Khadra et al.) scores. Comparable with the literature, blind to false alarms on
  healthy slices.

Slices of unknown truth (label 1 or -1 without a mask) are in neither view. Each view has two
summaries:

- *pooled* (micro): the pixel counts of all scored images are summed, then the ratios taken,
  as the Br35H U-Net paper reports (``metrics`` in the task dict);
- *per-image* mean Dice and IoU (``per_image``), the mean over images of each image's own score,
  with the empty-ground-truth policy ``empty_policy``:

  ``"one-if-both-empty"`` (MONAI ``ignore_empty=False``; the default of :func:`evaluate`,
  :data:`DEFAULT_EMPTY_POLICY`, so that healthy slices count)
      empty truth and empty prediction score 1, empty truth with a non-empty prediction 0;
  ``"exclude"`` (MONAI ``ignore_empty=True``; the default of the array-level functions)
      an image with an empty ground truth gets NaN and is left out of the mean (with it the
      per-image mean of the ``all`` view equals that of annotated non-empty slices);
  ``"nan-if-both-empty"`` (nnU-Net)
      only empty truth *and* empty prediction are NaN and skipped; empty truth with a
      non-empty prediction scores 0.

  ``n_excluded`` records how many images the policy left out; the raw counts are kept in the
  per-case records, so any policy and either view can be recomputed afterwards.

The pixel counts are taken per slice, reading the true masks and the predicted ones (possibly
a disk-backed stack, :mod:`mribench.api.stack`) a chunk of slices at a time: scoring holds one
chunk in memory, never the test set, and the counts are those of the whole stack.

Per-case records (the second value of :func:`evaluate`) of a slice scored in ``segment``
carry ``tp, fp, tn, fn`` (pixels), ``gt_area``, ``pred_area``, ``dice`` and ``iou`` (under the
policy; None where it excludes) and ``truth``: ``"annotated"`` (the data set's mask) or
``"empty-by-label"`` (label 0 without a mask, truth taken as empty).
:func:`in_segment_view` says which view a record belongs to.

**Confidence intervals** are 95% percentile bootstrap intervals over *clusters* of images:
test images are not independent (slices of one patient, near-duplicate Br35H images), so each
of the ``n_boot`` resamples draws the clusters with replacement (``Sample.group``: the patient
or case on LGG and BraTS, the near-duplicate group on Br35H and the synthetic set, the image
itself where it has none), from ``numpy.random.default_rng(seed)``, and every image of a drawn
cluster enters as often as its cluster is drawn (:func:`bootstrap_weights`). With every
cluster a single image this is exactly the bootstrap over images (the same draws). The
resampling is vectorised through a (n_boot, n_clusters) matrix of multiplicities expanded to
the images by indexing: pooled metrics sum the resampled images' counts, per-image means
average the resampled images' scores, and AUC is computed in closed form from the weighted
Mann-Whitney statistic. A replicate in which a metric is undefined (it drew no tumour, say) is
left out of the percentiles. With the same seed and the same clusters, every method sees the
same resamples (a paired bootstrap). Each block records ``n`` (images) and ``n_clusters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mribench.api.errors import DataError, MribenchError
from mribench.api.overlap import mask_counts
from mribench.api.stack import chunks, read_rows
from mribench.api.types import Prediction, Sample
from mribench.eval import registry
from mribench.eval.auc import weighted_auc
from mribench.eval.registry import TASKS

__all__ = [
    "EMPTY_POLICIES",
    "DEFAULT_EMPTY_POLICY",
    "SEGMENT_VIEWS",
    "bootstrap_weights",
    "classification_metrics",
    "cluster_index",
    "confusion_counts",
    "evaluate",
    "in_segment_view",
    "mask_counts",
    "metrics_from_counts",
    "per_image_scores",
    "per_image_values",
    "percentile_ci",
    "segmentation_metrics",
    "undefined_reasons",
    "weighted_auc",
]


def __getattr__(name: str) -> tuple[str, ...]:
    """``METRICS`` (the pooled metrics), ``CLASSIFY_METRICS`` and ``SEGMENT_METRICS`` (those
    of the ``metrics`` section of a task's block), read from the registry when asked."""
    if name == "METRICS":
        return tuple(m.name for m in registry.metrics(aggregate="pooled"))
    if name == "CLASSIFY_METRICS":
        return tuple(m.name for m in registry.metrics("classify") if m.aggregate != "per_image")
    if name == "SEGMENT_METRICS":
        return tuple(m.name for m in registry.metrics("segment") if m.aggregate != "per_image")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EmptyPolicy = Literal["exclude", "one-if-both-empty", "nan-if-both-empty"]
EMPTY_POLICIES: tuple[str, ...] = ("exclude", "one-if-both-empty", "nan-if-both-empty")
CONFIDENCE = 0.95
#: The per-image policy :func:`evaluate` uses unless told otherwise: healthy slices count.
DEFAULT_EMPTY_POLICY = "one-if-both-empty"
#: The populations of the ``segment`` task: view name -> label shown beside its numbers.
SEGMENT_VIEWS: dict[str, str] = {
    "all": "all slices with a known mask",
    "tumour_only": "annotated tumour slices only",
}


# --------------------------------------------------------------------------- counts -> metrics


def metrics_from_counts(tp: Any, fp: Any, tn: Any, fn: Any,
                        names: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``pooled`` metrics of the registry (or those of ``names``) from confusion counts.

    Counts may be scalars or arrays of the same shape (one set of counts per bootstrap
    resample, say); the result has their shape, and plain floats for scalars. A metric whose
    population lacks what it requires (F1 without a positive, say) is NaN; other zero
    denominators give 0.0.

    Examples
    --------
    >>> m = metrics_from_counts(tp=8, fp=2, tn=85, fn=5)
    >>> round(m["f1"], 4), round(m["precision"], 2), m["recall"] == 8 / 13
    (0.6957, 0.8, True)
    """
    tp, fp, tn, fn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, tn, fn))
    pooled = registry.metrics(aggregate="pooled")
    if names is not None:
        pooled = tuple(m for m in pooled if m.name in names)
    out = {m.name: m.value(tp, fp, tn, fn) for m in pooled}
    if np.ndim(tp) == 0:
        return {k: float(v) for k, v in out.items()}
    return out


def confusion_counts(y_true: Any, y_pred: Any) -> dict[str, int]:
    """``tp, fp, tn, fn`` of the positive class 1 for binary (0/1 or bool) arrays."""
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    return {"tp": tp, "fp": fp, "tn": int(t.size - tp - fp - fn), "fn": fn}


def per_image_values(counts: np.ndarray, empty_policy: str = "exclude"
                     ) -> dict[str, np.ndarray]:
    """Each ``per_image`` metric's value per image, by its key, from (n, 4) counts
    ``tp, fp, tn, fn`` under ``empty_policy`` (module docstring; NaN marks an image the policy
    excludes). A metric registered with ``empty_policy=False`` (``flagged``) takes each
    image's value as it is."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
    undefined = _undefined(counts, empty_policy)
    tp, fp, tn, fn = counts.T
    # one-if-both-empty: 0/0 is a perfect answer, empty truth with a prediction scores 0
    both = ((tp + fn) == 0) & ((tp + fp) == 0)
    out = {}
    for metric in registry.metrics(aggregate="per_image"):
        values = np.asarray(metric.from_counts(tp, fp, tn, fn), dtype=np.float64)
        values = np.broadcast_to(values, tp.shape).copy()  # writable, one value per image
        if not metric.empty_policy:
            out[metric.key] = values
            continue
        if empty_policy == "one-if-both-empty":
            values[both] = 1.0
        values[undefined] = np.nan
        out[metric.key] = values
    return out


def _undefined(counts: np.ndarray, empty_policy: str) -> np.ndarray:
    """Which images of (n, 4) counts ``empty_policy`` leaves out of the per-image means."""
    _check_policy(empty_policy)
    tp, fp, _, fn = np.asarray(counts, dtype=np.float64).reshape(-1, 4).T
    gt_empty = (tp + fn) == 0
    if empty_policy == "exclude":
        return gt_empty
    if empty_policy == "nan-if-both-empty":
        return gt_empty & ((tp + fp) == 0)
    return np.zeros_like(gt_empty)


def per_image_scores(counts: np.ndarray, empty_policy: str = "exclude"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU from (n, 4) counts ``tp, fp, tn, fn`` under ``empty_policy``.

    See the module docstring for the policies. NaN marks an image the policy excludes.
    """
    values = per_image_values(counts, empty_policy)
    return values["dice"], values["iou"]


def _check_policy(empty_policy: str) -> None:
    if empty_policy not in EMPTY_POLICIES:
        raise MribenchError(
            f"empty_policy must be one of {', '.join(EMPTY_POLICIES)}; got {empty_policy!r}")


# --------------------------------------------------------------------------- bootstrap


def cluster_index(groups: Sequence[Any] | None, n: int | None = None
                  ) -> tuple[np.ndarray, int]:
    """Each item's cluster as an index ``0 .. k-1`` in order of first appearance, and ``k``.

    ``groups`` holds one cluster label per item (None or "" for an item alone: its own
    cluster). Without ``groups`` every one of the ``n`` items is its own cluster, and with
    every label distinct the index is ``0 .. n-1``, so a cluster bootstrap draws exactly what
    the bootstrap over items drew.

    Examples
    --------
    >>> idx, k = cluster_index(["p2", "p1", "p2", None])
    >>> idx.tolist(), k
    ([0, 1, 0, 2], 3)
    """
    if groups is None:
        count = max(int(n or 0), 0)
        return np.arange(count, dtype=np.int64), count
    labels = list(groups)
    seen: dict[Any, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        key = ("__alone__", i) if label is None or label == "" else label
        out[i] = seen.setdefault(key, len(seen))
    return out, len(seen)


def bootstrap_weights(n: int, n_boot: int = 1000, seed: int | Sequence[int] = 0,
                      groups: Sequence[Any] | None = None) -> np.ndarray:
    """Multiplicities of ``n`` items in ``n_boot`` cluster resamples, shape (n_boot, n).

    Each resample draws the ``k`` clusters of ``groups`` (:func:`cluster_index`; every item
    its own cluster without ``groups``) ``k`` times with replacement, and row ``b`` says how
    many times each item appears: as often as its cluster was drawn (rows sum to ``n`` when
    every cluster is one item). ``numpy.random.default_rng(seed).integers(0, k, (n_boot,
    k))``: deterministic for a given ``(clusters, n_boot, seed)``, so methods scored on the
    same images share their resamples, and with singleton clusters the draws are those of
    the bootstrap over items.
    """
    if n <= 0 or n_boot <= 0:
        return np.zeros((max(n_boot, 0), max(n, 0)), dtype=np.int64)
    idx, k = cluster_index(groups, n)
    if idx.size != n:
        raise ValueError(f"groups has {idx.size} labels for {n} items")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    flat = (draws + (np.arange(n_boot) * k)[:, None]).ravel()
    per_cluster = np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k)
    return per_cluster[:, idx].astype(np.int64)


def percentile_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values``: replicates where the statistic is
    undefined (NaN: a resample without a positive, say) are left out, like
    ``numpy.nanpercentile``; NaN if none is left."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _entry(value: float, boot: np.ndarray | None, reason: str | None = None
           ) -> dict[str, Any]:
    """One metric's entry of a block: value and interval, or nulls with the reason."""
    if reason is not None:
        return {"value": None, "ci_low": None, "ci_high": None, "undefined": reason}
    low, high = percentile_ci(boot) if boot is not None and boot.size else (np.nan, np.nan)
    return {"value": float(value), "ci_low": low, "ci_high": high}


def undefined_reasons(task: str, confusion: dict[str, Any]) -> dict[str, str]:
    """The metrics of ``task`` that are undefined on a population with these pooled
    ``confusion`` counts (``tp, fp, tn, fn``), with their reasons (registry ``requires``)."""
    counts = [float(confusion.get(k, 0) or 0) for k in ("tp", "fp", "tn", "fn")]
    out = {}
    for metric in registry.metrics(task):
        if metric.aggregate == "per_image":
            continue
        reason = metric.undefined_reason(task, *counts)
        if reason is not None:
            out[metric.name] = reason
    return out


# --------------------------------------------------------------------------- task summaries


def classification_metrics(y_true: Any, y_pred: Any, scores: Any | None = None, *,
                           n_boot: int = 1000, seed: int = 0,
                           groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Image-level metrics with 95% percentile bootstrap intervals over clusters.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape (n,)
    scores : array-like of float, shape (n,), optional
        Higher means more likely tumour; gives the ``scores`` metrics such as ``auc`` (NaN
        without scores or with a non-finite score; null with its reason with one class).
    n_boot : int, default=1000
        Bootstrap resamples of the clusters; 0 gives NaN intervals.
    seed : int, default=0
    groups : sequence, optional
        Each image's cluster (patient, near-duplicate group); default: each image alone.

    Returns
    -------
    dict
        ``{"n", "n_clusters", "metrics": {name: {"value", "ci_low", "ci_high"}}, "confusion":
        {tp, fp, tn, fn}}`` with every ``pooled`` and ``scores`` metric of ``classify`` in the
        registry; a metric undefined on these images (F1 without a tumour image, AUC with one
        class) is ``{"value": None, "ci_low": None, "ci_high": None, "undefined": reason}``.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    confusion = confusion_counts(t, p)
    n = t.size
    reasons = undefined_reasons("classify", confusion) if n else {}
    names = [m.name for m in registry.metrics("classify", "pooled")]
    point = metrics_from_counts(**confusion, names=names) if n else dict.fromkeys(
        names, float("nan"))
    w = bootstrap_weights(n, n_boot, seed, groups) if n else None
    boot: dict[str, np.ndarray | None] = dict.fromkeys(names)
    if w is not None and w.size:
        indicators = np.stack([t & p, ~t & p, ~t & ~p, t & ~p], axis=1).astype(np.float64)
        b = w @ indicators
        boot = metrics_from_counts(b[:, 0], b[:, 1], b[:, 2], b[:, 3], names=names)
    out = {name: _entry(point[name], boot[name], reasons.get(name)) for name in names}
    out.update(_score_metrics(t, scores, w, reasons))
    return {"n": int(n), "n_clusters": cluster_index(groups, n)[1], "metrics": out,
            "confusion": confusion}


def _score_metrics(t: np.ndarray, scores: Any | None, w: np.ndarray | None,
                   reasons: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The ``scores`` metrics of ``classify`` (AUC) with their bootstrap intervals over the
    resamples ``w``: NaN without scores or with a non-finite score, null with its reason
    (``reasons``) with one class."""
    s = None
    if scores is not None and t.size and t.any() and (~t).any():
        s = np.asarray(scores, dtype=np.float64).ravel()
        s = s if np.isfinite(s).all() else None
    out = {}
    for metric in registry.metrics("classify", "scores"):
        value, boot = float("nan"), None
        if s is not None:
            value = metric.point(t, s)
            if w is not None and w.size:
                boot = np.asarray(metric.from_scores(t, s, w), dtype=np.float64)
        out[metric.name] = _entry(value, boot, reasons.get(metric.name))
    return out


def _boot_mean(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The mean of the finite ``values`` in each resample (row of ``w``); NaN where a
    resample holds none."""
    valid = np.isfinite(values)
    wv = w @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(valid, values, 0.0)) / wv


def _finite_mean(values: np.ndarray) -> float:
    valid = np.isfinite(values)
    return float(np.mean(values[valid])) if valid.any() else float("nan")


def segmentation_metrics(true_masks: np.ndarray, pred_masks: np.ndarray, *,
                         empty_policy: str = "exclude", n_boot: int = 1000, seed: int = 0,
                         counts: np.ndarray | None = None,
                         groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """Pooled (micro) pixel metrics and per-image means (Dice, IoU, ...), with 95% percentile
    bootstrap intervals over clusters.

    Parameters
    ----------
    true_masks, pred_masks : bool arrays, shape (n, H, W)
    empty_policy : {"exclude", "one-if-both-empty", "nan-if-both-empty"}, default="exclude"
        How an image with an empty ground truth enters the per-image means (module docstring).
    n_boot, seed : bootstrap resamples of the clusters and their seed.
    counts : (n, 4) array, optional
        Precomputed :func:`mask_counts`, to avoid counting twice.
    groups : sequence, optional
        Each image's cluster (patient, near-duplicate group); default: each image alone.

    Returns
    -------
    dict
        ``{"n", "n_clusters", "empty_policy", "n_excluded", "metrics" (the registry's pooled
        metrics of segment), "per_image": {key: ...} (its per-image metrics by key: "dice",
        "iou", "flagged"), "confusion" (pooled pixel counts)}``. A metric undefined on these
        slices (pooled Dice without a tumour pixel; a per-image mean with every slice left
        out by the policy) is null with its reason in ``"undefined"``.
    """
    _check_policy(empty_policy)
    if counts is None:
        counts = mask_counts(true_masks, pred_masks)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, 4)
    n = counts.shape[0]
    total = counts.sum(axis=0)
    pooled = dict(zip(("tp", "fp", "tn", "fn"), (int(c) for c in total), strict=True))
    reasons = undefined_reasons("segment", pooled) if n else {}
    names = [m.name for m in registry.metrics("segment", "pooled")]
    point = metrics_from_counts(*total, names=names) if n else dict.fromkeys(
        names, float("nan"))
    per_image = per_image_values(counts, empty_policy)
    w = bootstrap_weights(n, n_boot, seed, groups) if n else None
    boot: dict[str, np.ndarray | None] = dict.fromkeys(names)
    per_boot: dict[str, np.ndarray | None] = dict.fromkeys(per_image)
    if w is not None and w.size:
        b = w @ counts.astype(np.float64)
        boot = metrics_from_counts(b[:, 0], b[:, 1], b[:, 2], b[:, 3], names=names)
        per_boot = {key: _boot_mean(w, values) for key, values in per_image.items()}
    left_out = (f"every slice is left out by the empty-mask policy {empty_policy!r}"
                if n else None)
    return {
        "n": int(n),
        "n_clusters": cluster_index(groups, n)[1],
        "empty_policy": empty_policy,
        "n_excluded": int(_undefined(counts, empty_policy).sum()),
        "metrics": {name: _entry(point[name], boot[name], reasons.get(name))
                    for name in names},
        "per_image": {key: _entry(_finite_mean(values), per_boot[key],
                                  None if np.isfinite(values).any() else left_out)
                      for key, values in per_image.items()},
        "confusion": pooled,
    }


# --------------------------------------------------------------------------- one method's run


def _clean(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def in_segment_view(record: dict[str, Any], view: str = "all") -> bool:
    """Whether a per-case record is scored in a ``segment`` view (:data:`SEGMENT_VIEWS`).

    ``"all"``: every record with pixel counts (``"tp"`` in it). ``"tumour_only"``: those of
    label 1 whose truth is ``"annotated"`` (records written before views existed have no
    ``truth`` key and count as annotated, which is what they were).
    """
    if view not in SEGMENT_VIEWS:
        raise MribenchError(f"segment view must be one of {', '.join(SEGMENT_VIEWS)}; "
                            f"got {view!r}")
    if "tp" not in record:
        return False
    if view == "all":
        return True
    return record.get("label") == 1 and record.get("truth", "annotated") == "annotated"


def evaluate(prediction: Prediction, samples: Sequence[Sample], tasks: Sequence[str], *,
             n_boot: int = 1000, seed: int = 0, empty_policy: str = DEFAULT_EMPTY_POLICY
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one method's prediction on the test samples.

    Parameters
    ----------
    prediction : Prediction
        The method's answer; its ``ids`` must cover every sample (order may differ).
    samples : sequence of Sample
        The test samples, with their labels and masks.
    tasks : sequence of {"classify", "segment"}
        The tasks to score. ``classify`` uses the samples whose label is 0 or 1; ``segment``
        uses the samples whose ``mask_or_empty()`` is not None (module docstring: annotated
        slices and tumour-free slices) and needs ``prediction.masks``, each of the same shape
        as its sample's mask (or image, for a tumour-free slice without a mask).
    n_boot, seed : bootstrap resamples of the samples' clusters (``Sample.group``: patient,
        case or near-duplicate group; a sample without one is alone) and their seed.
    empty_policy : per-image Dice/IoU policy for empty ground truths (module docstring),
        default ``"one-if-both-empty"``.

    Returns
    -------
    tasks : dict
        ``{"classify": classification_metrics(...), "segment": segmentation_metrics(...)}``
        for the tasks asked, the ``"tasks"`` value of ``metrics.json``. The ``segment`` block
        is the ``"all"`` view plus ``view``, ``population`` (its label) and
        ``n_empty_by_label``, and holds the ``"tumour_only"`` view as the sub-block
        ``segment["tumour_only"]`` (same keys, without a further sub-block). A task or view
        with no sample to score has ``n == 0`` and NaN metrics. Every block holds ``n`` and
        ``n_clusters``; a metric undefined on its population is null with ``"undefined"``.
    per_case : list of dict
        One record per sample, in the samples' order: ``id, group`` (the sample's cluster: its
        patient, case or near-duplicate group, the unit that statistics resample), ``label,
        pred, score`` and, for the
        samples scored in ``segment``, ``truth, dice, iou, tp, fp, tn, fn, gt_area,
        pred_area`` (``score`` is None without scores; ``dice``/``iou`` None where the policy
        excludes; ``truth`` is ``"annotated"`` or ``"empty-by-label"``).

    Raises
    ------
    MribenchError
        An unknown task, a sample missing from the prediction, missing masks for ``segment``,
        or a predicted mask whose shape differs from the sample's mask.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise MribenchError(f"unknown task {unknown[0]!r}; tasks are classify and segment")
    _check_policy(empty_policy)
    position = {sample_id: i for i, sample_id in enumerate(prediction.ids)}
    missing = [s.id for s in samples if s.id not in position]
    if missing:
        raise MribenchError(
            f"the prediction has no answer for {len(missing)} test sample(s), e.g. "
            f"{missing[0]!r}; predict() must return one entry per sample it is given")
    order = np.array([position[s.id] for s in samples], dtype=np.int64)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    pred = prediction.labels[order] if order.size else np.zeros(0, dtype=np.int64)
    scores = prediction.scores[order] if prediction.scores is not None else None

    records: list[dict[str, Any]] = [
        {"id": s.id, "group": s.group or s.id, "label": int(s.label), "pred": int(pred[i]),
         "score": None if scores is None else _clean(scores[i])}
        for i, s in enumerate(samples)
    ]
    out: dict[str, Any] = {}
    if "classify" in tasks:
        keep = np.isin(labels, (0, 1))
        out["classify"] = classification_metrics(
            labels[keep], pred[keep], None if scores is None else scores[keep],
            n_boot=n_boot, seed=seed,
            groups=[r["group"] for r, k in zip(records, keep, strict=True) if k])
    if "segment" in tasks:
        out["segment"] = _score_segment(prediction, samples, order, records, n_boot=n_boot,
                                        seed=seed, empty_policy=empty_policy)
    return out, records


def _segment_counts(prediction: Prediction, samples: Sequence[Sample], order: np.ndarray
                    ) -> tuple[list[int], np.ndarray]:
    """The positions of the samples scored in ``segment`` (known truth) and their (n, 4)
    pixel counts; the checks of :func:`evaluate` on masks and their shapes.

    Streamed: the true masks and the predicted ones (possibly a disk-backed stack,
    :mod:`mribench.api.stack`) are read :data:`~mribench.api.stack.CHUNK` slices at a time and
    counted per slice, so memory holds one chunk, never the set (the counts are those of the
    whole stack: each slice is counted alone)."""
    idx = [i for i, s in enumerate(samples) if s.has_mask or s.label == 0]
    if idx and prediction.masks is None:
        raise MribenchError("task 'segment' needs masks, but the prediction has none; "
                            "a segmenting method must return Prediction(masks=...)")
    counts = [np.zeros((0, 4), dtype=np.int64)]
    for part in chunks(len(idx)):
        rows = idx[part]
        truth = [np.asarray(samples[i].mask_or_empty(), dtype=bool) for i in rows]
        guess = read_rows(prediction.masks, order[rows])
        for i, t, g in zip(rows, truth, guess, strict=True):
            if t.shape != g.shape:
                raise DataError(
                    f"predicted mask of {samples[i].id!r} has shape {g.shape} but its true "
                    f"mask {t.shape}; predict masks at the run's image size")
        counts.append(mask_counts(np.stack(truth), guess))
    return idx, np.concatenate(counts)


def _score_segment(prediction: Prediction, samples: Sequence[Sample], order: np.ndarray,
                   records: list[dict[str, Any]], *, n_boot: int, seed: int,
                   empty_policy: str) -> dict[str, Any]:
    """The ``segment`` block of :func:`evaluate` (both views); adds the pixel counts and
    per-image values to the scored samples' ``records``."""
    idx, counts = _segment_counts(prediction, samples, order)
    per_image = per_image_values(counts, empty_policy)
    for j, i in enumerate(idx):
        tp, fp, tn, fn = (int(c) for c in counts[j])
        records[i].update(
            truth="annotated" if samples[i].has_mask else "empty-by-label",
            **{key: _clean(values[j]) for key, values in per_image.items()},
            tp=tp, fp=fp, tn=tn, fn=fn, gt_area=tp + fn, pred_area=tp + fp)
    views = {}
    for view in SEGMENT_VIEWS:
        rows = [j for j, i in enumerate(idx) if in_segment_view(records[i], view)]
        block = segmentation_metrics(None, None, counts=counts[rows],
                                     empty_policy=empty_policy, n_boot=n_boot, seed=seed,
                                     groups=[records[idx[j]]["group"] for j in rows])
        views[view] = {"view": view, "population": SEGMENT_VIEWS[view], **block}
    seg = views["all"]
    seg["n_empty_by_label"] = sum(not samples[i].has_mask for i in idx)
    seg["tumour_only"] = views["tumour_only"]
    return seg
