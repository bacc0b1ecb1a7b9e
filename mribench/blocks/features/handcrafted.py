"""The handcrafted feature vector of the classical "segment, describe, classify" pipelines.

For each slice (see :func:`describe_slice`):

1. pre-processing (:mod:`mribench.blocks.preprocess`): skull stripping, denoising, and histogram
   equalisation of the brain;
2. segmentation stage (:mod:`mribench.blocks.region`): a tumour candidate grown from the strongest
   group of bright intensity outliers of the brain (z-score above ``seed_k``; tolerance
   ``tolerance`` brain standard deviations), cleaned by morphology;
3. description: first-order intensity statistics of the brain and of the candidate
   (:mod:`.intensity`, on the denoised slice), the candidate's mean z-score (its contrast
   with the brain), GLCM texture of the equalised brain (:mod:`.glcm`) and the candidate's
   shape (:mod:`.shape`).

:func:`handcrafted_features` returns the (n, d) matrix, :func:`handcrafted_feature_names` its
columns; plugins call :func:`cached_handcrafted_features` so every method of a run that uses
the same options (the SVM and the MLP, say) shares one computation through the run's
:class:`~mribench.api.feature_cache.FeatureCache`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from mribench.api.feature_cache import FeatureCache
from mribench.api.params import POSITIVE_INTS, Interval, MethodParams, OneOf, OrNone
from mribench.api.types import Sample
from mribench.blocks.features.common import ImageInput, as_stack, shrink_stack
from mribench.blocks.features.glcm import GLCM_PROPS, glcm_feature_names, glcm_features
from mribench.blocks.features.intensity import intensity_feature_names, intensity_features
from mribench.blocks.features.shape import shape_feature_names, shape_features
from mribench.blocks.preprocess import DENOISERS, EQUALISERS, prepare, zscore
from mribench.blocks.region import outlier_region

__all__ = ["HandcraftedOptions", "HandcraftedParams", "SliceDescription", "cached_handcrafted_features",
           "describe_slice", "handcrafted_feature_names", "handcrafted_features"]


@dataclass(frozen=True)
class HandcraftedOptions:
    """Settings of the handcrafted pipeline (they are the feature cache key).

    Attributes
    ----------
    denoise : str
        :func:`mribench.blocks.preprocess.denoise` method.
    equalise : str
        :func:`mribench.blocks.preprocess.equalise` method for the texture image.
    erosion : float
        Skull-stripping erosion (fraction of the image side), see
        :func:`mribench.blocks.preprocess.brain_mask`.
    seed_k : float
        Seeds are brain pixels with z-score above ``seed_k``.
    tolerance : float
        Region-growing tolerance in brain standard deviations.
    min_size : int
        Candidate components smaller than this many pixels are dropped.
    levels : int
        GLCM grey levels.
    distances : tuple of int
        GLCM pixel distances (4 angles, averaged).
    work_size : int or None
        Side of the square the slices are resized to before description (None: as given).
        The features are size-free (areas and lengths are fractions of the image), so this
        only bounds the cost: a 128 px slice is described about 4 times faster than a 256 px
        one.
    """

    denoise: str = "median"
    equalise: str = "hist"
    erosion: float = 0.06
    seed_k: float = 1.5
    tolerance: float = 0.5
    min_size: int = 8
    levels: int = 32
    distances: tuple[int, ...] = (1, 2)
    work_size: int | None = 128

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HandcraftedParams(MethodParams, HandcraftedOptions):
    """Base of the ``Params`` of plugins built on the handcrafted features (svm, ann,
    ocsvm-immune): the fields of :class:`HandcraftedOptions` (inherited, same defaults) with
    their constraints. Subclasses add their classifier's fields and extend ``constraints``
    (``{**HandcraftedParams.constraints, ...}``)."""

    constraints: ClassVar[dict[str, Any]] = {
        "denoise": OneOf(DENOISERS),
        "equalise": OneOf(EQUALISERS),
        "erosion": Interval(0, 0.5, closed="left"),
        "seed_k": Interval(None, None),
        "tolerance": Interval(0, None),
        "min_size": Interval(0, None, integer=True),
        "levels": Interval(2, 256, integer=True),
        "distances": POSITIVE_INTS,
        "work_size": OrNone(Interval(16, None, integer=True)),
    }

    def handcrafted_options(self) -> HandcraftedOptions:
        """The :class:`HandcraftedOptions` part of these parameters (the feature cache key:
        the classifier's own fields stay out of it, so svm and ann share the features)."""
        values = {f.name: getattr(self, f.name) for f in fields(HandcraftedOptions)}
        values["distances"] = tuple(values["distances"])
        return HandcraftedOptions(**values)


@dataclass
class SliceDescription:
    """The intermediate images of one slice (for figures, debugging and tests)."""

    denoised: np.ndarray   # float32 (H, W)
    equalised: np.ndarray  # float32 (H, W), 0 outside the brain
    brain: np.ndarray      # bool (H, W)
    zscore: np.ndarray     # float32 (H, W), (denoised - brain mean) / brain std, 0 outside
    candidate: np.ndarray  # bool (H, W)


def describe_slice(image: np.ndarray, options: HandcraftedOptions = HandcraftedOptions()
                   ) -> SliceDescription:
    """Pre-process one slice and grow its tumour candidate (steps 1 and 2 above)."""
    smooth, equalised, brain = prepare(image, denoise_method=options.denoise,  # type: ignore[arg-type]
                                       equalise_method=options.equalise,  # type: ignore[arg-type]
                                       erosion=options.erosion)
    z = zscore(smooth, brain)
    candidate = outlier_region(z, brain, options.tolerance, k=options.seed_k,
                               min_size=options.min_size)
    return SliceDescription(smooth, equalised, brain, z, candidate)


#: Slices described at once by :func:`handcrafted_features` (their intermediate images are
#: held only for one chunk, so memory does not grow with the number of slices).
_STREAM_IMAGES = 256


def handcrafted_features(images: ImageInput,
                         options: HandcraftedOptions = HandcraftedOptions()) -> np.ndarray:
    """The handcrafted feature matrix: float64 (n, d), columns in
    :func:`handcrafted_feature_names` order.

    Streamed: slices are stacked, resized and described :data:`_STREAM_IMAGES` at a time
    (every feature of a slice depends on that slice only, so the values are those of one
    call over all of them)."""
    items = as_stack(images) if isinstance(images, np.ndarray) else list(images)
    if len(items) == 0:
        return np.zeros((0, len(handcrafted_feature_names(options))))
    return np.vstack([_handcrafted_chunk(items[start:start + _STREAM_IMAGES], options)
                      for start in range(0, len(items), _STREAM_IMAGES)])


def _handcrafted_chunk(images: ImageInput, options: HandcraftedOptions) -> np.ndarray:
    """:func:`handcrafted_features` of a few slices (at least one)."""
    stack = shrink_stack(as_stack(images), options.work_size)
    parts = [describe_slice(im, options) for im in stack]
    denoised = np.stack([p.denoised for p in parts])
    brains = np.stack([p.brain for p in parts])
    candidates = np.stack([p.candidate for p in parts])
    z_contrast = np.array([[float(p.zscore[p.candidate].mean()) if p.candidate.any() else 0.0]
                           for p in parts])
    return np.hstack([
        intensity_features(denoised, brains),
        intensity_features(denoised, candidates),
        z_contrast,
        glcm_features(np.stack([p.equalised for p in parts]), masks=brains,
                      levels=options.levels, distances=options.distances),
        shape_features(candidates),
    ])


def handcrafted_feature_names(options: HandcraftedOptions = HandcraftedOptions()) -> list[str]:
    """Column names of :func:`handcrafted_features`."""
    return (intensity_feature_names("brain_") + intensity_feature_names("candidate_")
            + ["candidate_zscore"]
            + glcm_feature_names(distances=options.distances, props=GLCM_PROPS)
            + shape_feature_names("candidate_"))


def cached_handcrafted_features(samples: Sequence[Sample], cache: FeatureCache,
                                options: HandcraftedOptions = HandcraftedOptions()
                                ) -> np.ndarray:
    """:func:`handcrafted_features` of ``samples`` through the run's feature cache (name
    ``"handcrafted"``, key ``options``): computed once per image and options per run."""
    return cache.features("handcrafted", options.as_dict(), samples,
                          lambda todo: handcrafted_features(todo, options))
