"""The contract every pipeline plugin fulfils (scikit-learn's shape, benchopt's one file each).

A plugin in ``methods/`` defines one subclass of :class:`Method` (or of
:class:`SegmentationMethod` when it segments) with:

- ``name``: the name users type (``bench run --method glcm-knn``);
- ``tasks``: the tasks it answers, ``("classify",)`` or ``("segment", "classify")``;
- ``kind``: ``"classical"`` or ``"deep"``;
- ``reference``: the paper it reproduces (authors, title, venue, year, DOI);
- ``Params``: a frozen dataclass of its hyper-parameters (see :mod:`mribench.api.params`);
- ``profiles``: overrides of ``Params`` per profile, ``{"quick": {...}, "paper": {...}}``;
- ``fit(train, val, ctx) -> self`` and ``predict(samples, ctx) -> Prediction``;
- a deep plugin also defines ``export_recipe()`` (``bench export``: its networks' inputs and
  the steps around them, :class:`mribench.api.export.ExportRecipe`).

Learned state is set in ``fit`` only and its attribute names end in ``_``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mribench.api.context import Context
from mribench.api.params import MethodParams
from mribench.api.thresholds import AreaThreshold
from mribench.api.types import Prediction, Sample, Task

if TYPE_CHECKING:
    from mribench.api.export import ExportRecipe

PROFILES = ("quick", "paper")


class Method(ABC):
    """Base class of a literature pipeline."""

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[Task, ...]] = ("classify",)
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    profiles: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "paper": {}}
    #: Import names this plugin needs beyond the core dependencies.
    requirements: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: MethodParams | None = None, *, profile: str = "quick",
                 **overrides: Any) -> None:
        self.profile = profile
        self.params = params if params is not None else self.params_for(profile, **overrides)

    @classmethod
    def params_for(cls, profile: str = "quick", **overrides: Any) -> MethodParams:
        """The ``Params`` of a profile with ``overrides`` applied, validated."""
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        base = cls.Params()
        values = {**cls.profiles.get(profile, {}), **overrides}
        return base.replace(**values) if values else base

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "tasks": list(cls.tasks), "kind": cls.kind,
                "reference": cls.reference}

    def skip(self, ctx: Context) -> str | None:
        """A reason not to run here (a missing package, say), or None to run."""
        import importlib.util

        for module in self.requirements:
            if importlib.util.find_spec(module) is None:
                return f"needs the Python package {module!r}: pip install {module}"
        return None

    @abstractmethod
    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> Method:
        """Learn from ``train``; use ``val`` for model selection only. Returns self."""

    @abstractmethod
    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        """Answer every task in ``tasks`` for ``samples`` (labels always)."""

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe | None:
        """How the fitted pipeline runs outside mribench (``bench export``): its networks'
        input shapes and the steps around them (:class:`mribench.api.export.ExportRecipe`).
        ``image_size``: the side slices are loaded at (the model's), for a method whose working
        size follows it. None (the default): the pipeline holds no network to export."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class SegmentationMethod(Method):
    """A method that segments; it also answers ``classify`` from the predicted mask area.

    Subclasses implement :meth:`fit_masks` and :meth:`predict_masks`. After fitting, the
    threshold on the predicted tumour area that best separates tumour from tumour-free slices
    of ``val`` (balanced accuracy) is learnt by :class:`mribench.api.thresholds.AreaThreshold`; the image
    score is the predicted area fraction.

    Variants (optional): a subclass that post-processes its masks (a dense CRF, say) overrides
    :meth:`fit_variants` (learn on val what the post-processing needs) and
    :meth:`predict_variants` (``{"crf": (masks, prob_maps)}`` derived from the raw output).
    Each variant gets its own area threshold learnt on val and comes back in
    ``Prediction.variants``, i.e. as an extra result row ``<name>+<key>``.

    Large sets: :meth:`predict_masks` (and a variant) fills its ``(n, H, W)`` masks and maps
    batch by batch into stacks from ``ctx.prediction_stack`` (:mod:`mribench.api.stack`): in a
    run they are files in the job's scratch folder, and everything here reads them a chunk at a
    time (the area fractions of the labels, the metrics, the writer of ``predictions.npz``), so
    the memory of predicting and scoring depends on the batch, not on the number of slices.
    """

    tasks: ClassVar[tuple[Task, ...]] = ("segment", "classify")

    @abstractmethod
    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        """Learn to segment (train on samples whose ``mask_or_empty()`` is known)."""

    @abstractmethod
    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (masks bool (n, H, W), probability maps float (n, H, W) or None), best as
        stacks of ``ctx.prediction_stack`` filled batch by batch."""

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context
            ) -> SegmentationMethod:
        self.fit_masks(train, val, ctx)
        labelled = [s for s in val if s.label in (0, 1)]
        masks, probs = self.predict_masks(labelled, ctx) if labelled else (None, None)
        masks = masks if masks is not None else np.zeros((0, 1, 1), bool)
        val_labels = np.array([s.label for s in labelled], dtype=int)
        self.area_threshold_ = AreaThreshold().fit(masks, val_labels)
        ctx.log("area threshold chosen on val", threshold=self.area_threshold_.threshold_)
        self.fit_variants(labelled, masks, probs, ctx)
        self.variant_thresholds_: dict[str, AreaThreshold] = {}
        for key, (vmasks, _) in self.predict_variants(labelled, masks, probs, ctx).items():
            self.variant_thresholds_[key] = AreaThreshold().fit(vmasks, val_labels)
            ctx.log(f"area threshold of variant {key!r} chosen on val",
                    threshold=self.variant_thresholds_[key].threshold_)
        return self

    def fit_variants(self, val: Sequence[Sample], masks: np.ndarray,
                     probs: np.ndarray | None, ctx: Context) -> None:
        """Learn on ``val`` (with its raw ``masks`` and ``probs``) what the variants need."""

    def predict_variants(self, samples: Sequence[Sample], masks: np.ndarray,
                         probs: np.ndarray | None, ctx: Context
                         ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Extra segmentations derived from the raw ones, by suffix: ``{"crf": (masks, probs)}``."""
        return {}

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        masks, probs = self.predict_masks(samples, ctx)
        labels, scores = self.area_threshold_.predict(masks)
        ids = [s.id for s in samples]
        variants = {}
        for key, (vmasks, vprobs) in self.predict_variants(samples, masks, probs, ctx).items():
            threshold = getattr(self, "variant_thresholds_", {}).get(key, self.area_threshold_)
            vlabels, vscores = threshold.predict(vmasks)
            variants[key] = Prediction(ids=ids, labels=vlabels, scores=vscores, masks=vmasks,
                                       prob_maps=vprobs)
        return Prediction(ids=ids, labels=labels, scores=scores, masks=masks, prob_maps=probs,
                          variants=variants)
