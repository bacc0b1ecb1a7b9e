"""Shortcut audit: how well does metadata alone, without looking at the tumour, predict the label?

A benchmark score means "this method sees tumours" only when the label cannot be read off
something else. In collections assembled from several sources it often can: in Br35H the
``yes/`` and ``no/`` folders were gathered from different places, so the images' original
sizes, their aspect ratios and their global brightness already differ between the classes. A
method can then reach a high accuracy by recognising the *source* of a slice (its resolution,
its black borders, its contrast) and never look at the lesion, and a ranking of methods
partly ranks how well each picks up that cue.

:func:`shortcut_audit` measures the cue. It fits small random forests on the training part
using only

* ``size_only``: the image's original height and width and its aspect ratio
  (:attr:`Sample.original_size`), which carry no information about the anatomy at all;
* ``acquisition``: how the image is framed and padded, read off its background at the run's
  size (fraction of black pixels; mean, spread and black fraction of the outer border), which
  depends on the scanner, the export and the cropping, and not on the lesion;
* ``content``: the image content around the head, read off the head mask of
  :func:`mribench.data.head.head_mask` (threshold, holes filled, largest component) at the
  same reduced size: the mean and spread of the pixels outside the head (background noise,
  text, frames), the fraction of exact-zero pixels (padding, masking, clipping), the head's
  share of the image (field of view, zoom) and how much of its bounding box it fills (head
  cropped by the frame or not). Harmonising a data set (``br35h[harmonise=true]``) is meant
  to take these away; this probe says how far it did,

and reports their accuracy and AUC on the test part beside the majority-class baseline. A
probe well above the baseline (by :data:`SHORTCUT_MARGIN` or more, and significantly so: a
one-sided binomial test at :data:`SHORTCUT_ALPHA`) means part of any
method's accuracy on this split may come from the shortcut; compare methods with that in mind
(and prefer data sets or splits where the probes stay near the baseline).

The audit is cheap (a second or two on 3,000 images): a few numbers per image (a head mask
at 64 px for the content probe), three forests of :data:`N_TREES` trees, one thread, fixed
seed.

Measured on Br35H's leak-free manifest (test accuracy; majority 0.508): size_only 0.921,
acquisition 0.921, content 0.959 on the images as published; with ``br35h[harmonise=true]``
(head crop, square padding, standardisation inside the head) size_only 0.921 (the recorded
original size is kept on purpose), acquisition 0.894, content 0.810. Harmonising takes the
background away (outside mean and spread alone: 0.64 -> 0.59 and 0.63 -> 0.55; head share of
the image 0.86 -> 0.64) but not everything that separates the sources: the head's outline
and what lies at its rim (scalp, sequence contrast) still predict the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mribench.api.types import Sample
from mribench.blocks.features.size import size_features

__all__ = ["ACQUISITION_FEATURES", "CONTENT_FEATURES", "N_TREES", "PROBE_DESCRIPTIONS", "PROBE_SIDE",
           "SHORTCUT_ALPHA", "SHORTCUT_MARGIN", "SIZE_FEATURES", "acquisition_features",
           "content_features", "shortcut_audit",
           "shortcut_warning", "size_features"]

#: Trees per probe forest.
N_TREES = 50
#: A probe this much (accuracy) above the majority-class baseline is reported as a shortcut...
SHORTCUT_MARGIN = 0.10
#: ... when a one-sided binomial test against the baseline also gives a p-value below this
#: (so a small test part's luck is not reported as a shortcut).
SHORTCUT_ALPHA = 0.01
#: Pixels at or below this value count as black (padding, background).
BLACK = 1.0 / 255.0
#: Side (px) of the strided view the acquisition statistics are computed on.
PROBE_SIDE = 64

#: Plain-language name of what each probe sees (for warnings and reports).
PROBE_DESCRIPTIONS = {"size_only": "the images' original size",
                      "acquisition": "the images' background and padding",
                      "content": "the image content around the head (background, zeros, "
                                 "head framing)"}

SIZE_FEATURES = ("height", "width", "log_aspect")
ACQUISITION_FEATURES = ("black_fraction", "border_mean", "border_std", "border_black_fraction")
CONTENT_FEATURES = ("outside_mean", "outside_std", "zero_fraction", "head_fraction", "box_fill")

NOTE = ("Random forests fitted on the training part using only metadata, never the tumour: "
        "size_only uses each image's original height, width and aspect ratio; acquisition its "
        "fraction of black pixels and the mean, spread and black fraction of its outer border "
        "(framing and padding); content the mean and spread of the pixels outside the head, the "
        "fraction of exact-zero pixels, the head's share of the image and of its bounding box. "
        "Accuracy well above the majority baseline means the classes "
        "differ in how the images were made, so a method can score high without looking at the tumour.")


def acquisition_features(samples: Sequence[Sample], *, chunk: int = 512) -> np.ndarray:
    """(n, 4) float: how each image was framed and padded, read off its background.

    Columns (:data:`ACQUISITION_FEATURES`): the fraction of black pixels in the whole image,
    and the mean, standard deviation and black fraction of its border (the outer eighth on
    each side), where the brain, let alone the tumour, rarely reaches. Computed on the image
    block-averaged to about :data:`PROBE_SIDE` px a side (so the numbers barely depend on the
    run's image size), ``chunk`` images stacked at a time (images of different shapes are
    reduced one by one).
    """
    out = np.empty((len(samples), len(ACQUISITION_FEATURES)), dtype=np.float64)
    for start in range(0, len(samples), chunk):
        views = [_reduced(np.asarray(s.image, dtype=np.float32))
                 for s in samples[start:start + chunk]]
        stacks = ([np.stack(views)] if len({v.shape for v in views}) == 1
                  else [v[None] for v in views])
        out[start:start + len(views)] = np.concatenate([_background_stats(x) for x in stacks])
    return out


def content_features(samples: Sequence[Sample]) -> np.ndarray:
    """(n, 5) float: the image content around the head (:data:`CONTENT_FEATURES`).

    On the image block-averaged to about :data:`PROBE_SIDE` px a side (as
    :func:`acquisition_features`): the mean and standard deviation of the pixels outside the
    head mask (:func:`mribench.data.head.head_mask`; 0 and 0 when the head fills the image),
    the fraction of pixels exactly 0 (counted at the image's own size), the head's area over the image's, and the head's area
    over its bounding box's (0 when no head is found).
    """
    from mribench.data.head import head_box, head_mask

    out = np.zeros((len(samples), len(CONTENT_FEATURES)), dtype=np.float64)
    for i, s in enumerate(samples):
        image = np.asarray(s.image, dtype=np.float32)
        zero_fraction = float(np.mean(image == 0)) if image.size else 0.0
        view = _reduced(image)
        head = head_mask(view)
        outside = view[~head]
        area = int(head.sum())
        top, bottom, left, right = head_box(head)
        box = (bottom - top) * (right - left)
        out[i] = (float(outside.mean()) if outside.size else 0.0,
                  float(outside.std()) if outside.size else 0.0,
                  zero_fraction, area / max(head.size, 1), area / box if area else 0.0)
    return out


def _reduced(image: np.ndarray) -> np.ndarray:
    """``image`` block-averaged to about PROBE_SIDE px a side (as a resize to it would).

    Sums of strided slices: much faster than a mean over reshaped block axes.
    """
    step = max(1, min(image.shape[:2]) // PROBE_SIDE)
    if step == 1:
        return image
    h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    image = image[:h, :w]
    cols = sum(image[:, i::step] for i in range(step))
    return sum(cols[i::step] for i in range(step)) / np.float32(step * step)


def _background_stats(images: np.ndarray) -> np.ndarray:
    n, h, w = images.shape
    k = max(1, min(h, w) // 8)
    frame = np.ones((h, w), dtype=bool)
    frame[k:h - k, k:w - k] = False
    black = images <= BLACK
    border = images[:, frame]
    return np.column_stack([black.reshape(n, -1).mean(axis=1), border.mean(axis=1),
                            border.std(axis=1), black[:, frame].mean(axis=1)])


def _labelled(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.label in (0, 1)]


def _probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
           seed: int) -> dict[str, float]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        forest = RandomForestClassifier(n_estimators=N_TREES, min_samples_leaf=2,
                                        random_state=seed, n_jobs=1).fit(x_train, y_train)
        proba = forest.predict_proba(x_test)
    # A training part with one class gives one column: its class has probability 1.
    scores = (proba[:, list(forest.classes_).index(1)] if 1 in forest.classes_
              else np.zeros(len(x_test)))
    labels = (scores >= 0.5).astype(int)
    auc = (float(roc_auc_score(y_test, scores)) if len(np.unique(y_test)) == 2
           else float("nan"))
    return {"accuracy": round(float(np.mean(labels == y_test)), 4),
            "auc": round(auc, 4) if np.isfinite(auc) else auc}


def _p_above(accuracy: float, n: int, baseline: float) -> float:
    """One-sided binomial p-value of ``accuracy`` on ``n`` images against ``baseline``."""
    if not (n and np.isfinite(accuracy) and 0.0 < baseline < 1.0):
        return float("nan")
    from scipy.stats import binomtest

    hits = int(round(accuracy * n))
    return float(binomtest(hits, n, baseline, alternative="greater").pvalue)


def shortcut_audit(train: Sequence[Sample], test: Sequence[Sample], *,
                   seed: int = 0) -> dict[str, Any]:
    """How well metadata alone predicts the labels of ``test`` after fitting on ``train``.

    Parameters
    ----------
    train, test : sequence of Sample
        The parts of a split; unlabelled samples are ignored.
    seed : int, default=0
        Seed of the random forests.

    Returns
    -------
    dict
        JSON-ready::

            {"size_only": {"accuracy", "auc", "p_value", "features"},
             "acquisition": {"accuracy", "auc", "p_value", "features"},
             "content": {"accuracy", "auc", "p_value", "features"},
             "majority": float, "majority_label": int, "n_train": int, "n_test": int,
             "margin": float, "flagged": [probe names], "warning": str, "note": str}

        ``majority`` is the accuracy on test of always answering the training part's most
        common label; ``p_value`` a one-sided binomial test of a probe's accuracy against it.
        ``flagged`` lists the probes whose accuracy exceeds it by :data:`SHORTCUT_MARGIN` or
        more with ``p_value`` below :data:`SHORTCUT_ALPHA`, and ``warning`` says so in one
        line ("" when none).
        With an empty part or a single-class training part, accuracies and AUCs are NaN.
    """
    train, test = _labelled(train), _labelled(test)
    y_train = np.array([s.label for s in train], dtype=int)
    y_test = np.array([s.label for s in test], dtype=int)
    nan = {"accuracy": float("nan"), "auc": float("nan")}
    if len(train) and len(test):
        majority_label = int(np.bincount(y_train, minlength=2).argmax())
        majority = round(float(np.mean(y_test == majority_label)), 4)
    else:
        majority_label, majority = -1, float("nan")
    usable = len(test) > 0 and len(np.unique(y_train)) == 2
    result: dict[str, Any] = {
        "n_train": len(train), "n_test": len(test), "majority": majority,
        "majority_label": majority_label, "margin": SHORTCUT_MARGIN, "note": NOTE,
    }
    probes = {"size_only": (size_features, SIZE_FEATURES),
              "acquisition": (acquisition_features, ACQUISITION_FEATURES),
              "content": (content_features, CONTENT_FEATURES)}
    for name, (features, names) in probes.items():
        scores = (_probe(features(train), y_train, features(test), y_test, seed) if usable
                  else dict(nan))
        result[name] = {**scores, "p_value": _p_above(scores["accuracy"], len(test), majority),
                        "features": list(names)}
    result["flagged"] = [name for name in probes
                         if result[name]["accuracy"] >= majority + SHORTCUT_MARGIN
                         and result[name]["p_value"] < SHORTCUT_ALPHA]
    result["warning"] = shortcut_warning(result)
    return result


def shortcut_warning(audit: dict[str, Any]) -> str:
    """One plain-language line about the flagged probes of an audit, "" when none is."""
    flagged = [name for name in audit.get("flagged", ()) if isinstance(audit.get(name), dict)]
    if not flagged:
        return ""
    parts = [f"{PROBE_DESCRIPTIONS.get(name, name)} alone give accuracy "
             f"{audit[name]['accuracy']:.3f}" for name in flagged]
    return (f"shortcut: {'; '.join(parts)} (majority baseline {audit['majority']:.3f}); "
            "part of any method's accuracy here may come from telling the image sources "
            "apart, not from seeing the tumour")
