"""Seeded region growing: the classical tumour segmentation workflow.

Reference: the "existing workflow" that R. Vavekanand (2024) describes, and improves on with a
CNN, in his paper on brain-tumour recognition from MRI with convolutional neural networks:
skull stripping, denoising, histogram equalisation, seed points from intensity outliers,
region growing, morphological post-processing and connected components. Region growing
itself: Adams & Bischof, "Seeded region growing", IEEE Trans. Pattern Analysis and Machine
Intelligence 16(6):641-647, 1994, doi:10.1109/34.295913.

Recipe (engine: :mod:`mribench.blocks.preprocess`, :mod:`mribench.blocks.region`):

1. skull stripping (:func:`~mribench.blocks.preprocess.brain_mask`), median denoising, histogram
   equalisation of the brain (``equalise``);
2. intensities standardised by the brain's mean and standard deviation (z-scores);
3. seeds: the strongest connected group of brain pixels whose *denoised* intensity is an
   outlier, z > ``seed_k`` (outliers are taken before equalisation, which flattens the
   histogram and leaves no outlier by construction);
4. region growing from the seeds over connected brain pixels of the *equalised* slice within
   ``tolerance`` (in brain standard deviations) of the seeds' mean intensity;
5. morphological clean-up: opening and closing (radius ``opening`` / ``closing`` px), hole
   filling, and removal of components smaller than ``min_size`` px.

(seed_k, tolerance) is the pair of ``seed_k_grid`` x ``tolerance_grid`` with the best pooled
Dice (pixels pooled over slices) on the training slices whose mask is known (annotated tumour
slices and tumour-free slices, whose mask is empty: ``Sample.mask_or_empty``), at most
``max_search`` of them (a seeded, label-stratified draw). Classification comes from the
predicted area (threshold learnt on ``val`` by :class:`~mribench.api.method.SegmentationMethod`).

Input: slices (``segment`` and ``classify``). Output: bool masks at each slice's size (no
probability maps), labels and scores (the predicted area fraction).

Differences from the paper:

- the paper's thresholds are hand-set; here (seed_k, tolerance) are chosen on training masks;
- the paper grows from manually or randomly placed seeds; here they are the strongest bright
  outlier group, so a slice always gets at most one region (tumour-free slices often get a
  small one, which the area threshold then rejects);
- ``quick`` segments at 128 px (``work_size``; masks are resized back) and searches on at
  most 400 training slices; ``paper`` works at the run's image size on every training slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mribench.api import (
    Check,
    Context,
    Interval,
    MethodParams,
    OneOf,
    OrNone,
    Sample,
    SegmentationMethod,
    dice_from_counts,
)
from mribench.api.stack import write_rows
from mribench.blocks.preprocess import DENOISERS, EQUALISERS, prepare, zscore
from mribench.blocks.region import outlier_regions
from mribench.blocks.resize import resize_image, resize_mask


def _numbers(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))


@dataclass(frozen=True)
class Params(MethodParams):
    """Hyper-parameters of ``region-growing``."""

    owner: ClassVar[str] = "region-growing"
    constraints: ClassVar[dict[str, Any]] = {
        "denoise": OneOf(DENOISERS),
        "equalise": OneOf(EQUALISERS),
        "erosion": Interval(0, 0.5, closed="left"),
        "seed_k_grid": Check(_numbers, "a non-empty list of numbers"),
        "tolerance_grid": Check(lambda v: _numbers(v) and min(v) >= 0,
                                "a non-empty list of numbers >= 0"),
        "min_seed": Interval(1, None, integer=True),
        "opening": Interval(0, None, integer=True),
        "closing": Interval(0, None, integer=True),
        "min_size": Interval(0, None, integer=True),
        "work_size": OrNone(Interval(16, None, integer=True)),
        "max_search": OrNone(Interval(2, None, integer=True)),
    }

    denoise: str = "median"
    equalise: str = "hist"
    erosion: float = 0.06
    seed_k_grid: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5)
    tolerance_grid: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    min_seed: int = 4
    opening: int = 1
    closing: int = 1
    min_size: int = 10
    work_size: int | None = None
    max_search: int | None = None


class RegionGrowing(SegmentationMethod):
    """Skull strip, denoise, equalise, grow from outlier seeds, clean up."""

    name: ClassVar[str] = "region-growing"
    kind: ClassVar[str] = "classical"
    reference: ClassVar[str] = (
        "Classical workflow of R. Vavekanand (2024), brain-tumour recognition with CNNs "
        "('existing workflow'); seeded region growing: Adams & Bischof, IEEE TPAMI 16(6), "
        "1994, doi:10.1109/34.295913")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 128, "max_search": 400},
        "paper": {},
    }

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """z-scores of the equalised and of the denoised slice, and the brain mask, at the
        working size."""
        p = self.params
        if p.work_size is not None and max(image.shape) > p.work_size:
            image = resize_image(image, p.work_size)
        smooth, equalised, brain = prepare(image, denoise_method=p.denoise,  # type: ignore[arg-type]
                                           equalise_method=p.equalise,  # type: ignore[arg-type]
                                           erosion=p.erosion)
        return zscore(equalised, brain), zscore(smooth, brain), brain

    def _regions(self, prepared: tuple[np.ndarray, np.ndarray, np.ndarray], seed_k: float,
                 tolerances: Sequence[float]) -> np.ndarray:
        p = self.params
        grow_on, seed_on, brain = prepared
        return outlier_regions(grow_on, brain, tolerances, k=seed_k, min_seed=p.min_seed,
                               opening=p.opening, closing=p.closing, min_size=p.min_size,
                               seed_image=seed_on)

    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        p = self.params
        known = [s for s in train if s.mask_or_empty() is not None]
        if not known:
            raise ValueError("region-growing: no training slice has a known mask")
        if p.max_search is not None and len(known) > p.max_search:
            known = _stratified_draw(known, p.max_search, ctx.seed)
        tolerances = [float(t) for t in p.tolerance_grid]
        ks = [float(k) for k in p.seed_k_grid]
        counts = np.zeros((len(ks), len(tolerances), 3))  # tp, fp, fn
        for sample in ctx.progress(known, desc="tolerance search"):
            prepared = self._prepare(sample.image)
            truth = np.asarray(sample.mask_or_empty(), dtype=bool)
            if truth.shape != prepared[2].shape:
                truth = resize_mask(truth, prepared[2].shape[0])
            for i, k in enumerate(ks):
                grown = self._regions(prepared, k, tolerances)
                tp = (grown & truth).sum(axis=(1, 2))
                counts[i, :, 0] += tp
                counts[i, :, 1] += grown.sum(axis=(1, 2)) - tp
                counts[i, :, 2] += truth.sum() - tp
        dice = dice_from_counts(counts[..., 0], counts[..., 1], counts[..., 2], empty=0.0)
        for i, k in enumerate(ks):
            for j, t in enumerate(tolerances):
                ctx.record(seed_k=k, tolerance=t, train_pooled_dice=dice[i, j])
        i, j = np.unravel_index(int(np.argmax(dice)), dice.shape)  # ties: first in grid order
        self.seed_k_, self.tolerance_ = ks[i], tolerances[j]
        self.train_dice_ = float(dice[i, j])
        ctx.log("seed_k, tolerance chosen on train masks", seed_k=self.seed_k_,
                tolerance=self.tolerance_, pooled_dice=self.train_dice_, n_slices=len(known))

    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, None]:
        if not samples:
            return np.zeros((0, 0, 0), bool), None
        # one slice at a time into a stack of the context (on disk in a run)
        masks = ctx.prediction_stack(len(samples), samples[0].shape, bool)
        for i, sample in enumerate(ctx.progress(samples, desc="segment")):
            mask = self._regions(self._prepare(sample.image), self.seed_k_, [self.tolerance_])[0]
            if mask.shape != sample.shape:
                # back at the slice's own (H, W): bilinear on 0/1, then >= 0.5
                mask = resize_mask(mask, sample.shape, filter="bilinear")
            write_rows(masks, i, mask)
        return masks, None


def _stratified_draw(samples: Sequence[Sample], n: int, seed: int) -> list[Sample]:
    """``n`` samples drawn without replacement, keeping the label proportions (seeded)."""
    rng = np.random.default_rng(seed)
    labels = np.array([s.label for s in samples])
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(round(n * len(members) / len(samples)))
        chosen += list(rng.choice(members, min(take, len(members)), replace=False))
    return [samples[i] for i in sorted(chosen)]
