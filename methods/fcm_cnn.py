"""Fuzzy c-means tumour candidates and a CNN on (slice, membership map): segment and classify.

Reference: the FCM + CNN hybrid of the brain-MRI literature (fuzzy c-means clustering of the
skull-stripped slice to find the bright abnormal region, then a convolutional network for the
decision), e.g. the FCM step of Mohsen et al., Future Computing and Informatics Journal
3(1):68-71, 2018, doi:10.1016/j.fcij.2017.12.001, followed by a small CNN classifier as in the
Br35H detection papers. FCM: J. C. Bezdek, "Pattern Recognition with Fuzzy Objective Function
Algorithms", Plenum, 1981. This plugin implements the pipeline as a recipe; it does not claim
one paper's exact settings.

Recipe:

1. skull stripping (:func:`mribench.blocks.preprocess.brain_mask`) of the slice at ``map_size``;
2. fuzzy c-means with ``clusters`` clusters and fuzzifier ``m`` on the brain's intensities
   (:func:`mribench.blocks.fcm.fcm_image`); the membership map of the brightest cluster is the
   tumour evidence map (computed once per image through the run's feature cache);
3. segmentation: the pixels whose brightest-cluster membership is >= 0.5 form components;
   the *compact* one (largest ``area * solidity**2`` among components of at least
   ``min_area`` of the brain) is the tumour candidate;
4. classification: a small CNN (two conv/pool blocks, dropout, dense, sigmoid) on the
   2-channel input (slice, membership map), trained with BCE and Adam, augmentation applied
   jointly to both channels (intensity jitter to the slice only); streamed: a batch's slices
   are read from the data cache and their maps from the feature cache's table on disk when
   the batch is drawn (:class:`~mribench.blocks.nn.data.SliceDataset`), so memory depends on
   the batch, not the data set (the maps of 50,000 slices at 64 px are 820 MB as float32);
5. the segment answer is the candidate of slices the CNN calls tumour, an empty mask for the
   others.

Input: grayscale slices of any size. Output: labels and ``P(tumour)`` from the CNN; masks at
each slice's size (the candidate resized from ``map_size``) and the membership map as the
probability map.

Differences from the papers:

- the pipeline is a composite of the literature's FCM + CNN recipe; cluster count,
  fuzzifier and the compactness rule are parameters, not one paper's published values;
- FCM runs at ``map_size`` (64 px in ``quick``, 128 in ``paper``), so masks are coarse at
  256 px;
- ``quick`` uses 32 filters per block and at most 15 epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from skimage.measure import label as label_components
from skimage.measure import regionprops

from mribench.api import (
    Context,
    ExportRecipe,
    Interval,
    Method,
    MethodParams,
    Prediction,
    Sample,
)
from mribench.api.export import label_step, load_step, resize_step, sigmoid_step
from mribench.api.feature_cache import CHUNK, FeatureRows
from mribench.api.stack import write_rows
from mribench.blocks.fcm import fcm_image
from mribench.blocks.nn.blocks import ConvPoolClassifier
from mribench.blocks.nn.classify import fit_classifier_on, predict_proba
from mribench.blocks.nn.data import (
    Augment,
    SliceDataset,
    images_to_tensor,
    resize_back,
    stream_inputs,
)
from mribench.blocks.nn.train import TrainConfig, TrainParams, fingerprint, seed_everything
from mribench.blocks.preprocess import brain_mask


@dataclass(frozen=True)
class Params(TrainParams):
    """Hyper-parameters of ``fcm-cnn`` (defaults: the ``paper`` profile). Batch 32, lr 1e-3,
    patience 8 and dropout 0.5 are the defaults of :class:`~mribench.blocks.nn.train.TrainParams`."""

    owner: ClassVar[str] = "fcm-cnn"
    constraints: ClassVar[dict[str, Any]] = {
        "map_size": Interval(16, 1024, integer=True),
        "clusters": Interval(2, 10, integer=True),
        "m": Interval(1, None, closed="neither"),
        "erosion": Interval(0, 0.5, closed="left"),
        "min_area": Interval(0, 1, closed="left"),
        "filters": Interval(1, 1024, integer=True),
    }

    map_size: int = 128
    clusters: int = 4
    m: float = 2.0
    erosion: float = 0.04
    min_area: float = 0.002
    filters: int = 80
    epochs: int = 30
    augment: bool = True


def brightest_membership(image: np.ndarray, clusters: int, m: float,
                         erosion: float) -> np.ndarray:
    """Membership map (H, W) of the brightest FCM cluster inside the skull-stripped brain."""
    brain = brain_mask(image, erosion=erosion)
    if brain.sum() < clusters:
        brain = np.ones(image.shape, bool)
    maps, _ = fcm_image(image, brain, c=clusters, m=m)
    return maps[-1]


def compact_candidate(membership: np.ndarray, min_area: float) -> np.ndarray:
    """The component of ``membership >= 0.5`` with the largest ``area * solidity**2``."""
    components = label_components(membership >= 0.5, connectivity=1)
    best, best_score = 0, 0.0
    min_pixels = min_area * membership.size
    for region in regionprops(components):
        if region.area < max(min_pixels, 1):
            continue
        score = region.area * region.solidity**2
        if score > best_score:
            best, best_score = region.label, score
    return components == best if best else np.zeros(membership.shape, bool)


AUGMENT = Augment(hflip=0.5, vflip=0.5, rot90=True, max_angle=10, brightness=0.1, contrast=0.1,
                  intensity_channels=1)


class FCMCNN(Method):
    """FCM brightest-cluster candidates (segment) and a 2-channel CNN (classify)."""

    name: ClassVar[str] = "fcm-cnn"
    tasks: ClassVar[tuple[str, ...]] = ("segment", "classify")
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "FCM + CNN hybrid (fuzzy c-means tumour candidates, CNN decision), after the FCM step "
        "of Mohsen et al., Future Computing and Informatics Journal 3(1):68-71, 2018, "
        "doi:10.1016/j.fcij.2017.12.001; FCM: Bezdek 1981")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"map_size": 64, "filters": 32, "epochs": 15, "patience": 5},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    def _memberships(self, samples: Sequence[Sample], ctx: Context) -> FeatureRows:
        """The brightest-cluster memberships at ``map_size``, one ``(S, S)`` float32 map per
        sample read on access, via the feature cache (computed once, stored as float32)."""
        p = self.params
        key = {"map_size": p.map_size, "clusters": p.clusters, "m": p.m, "erosion": p.erosion}

        def compute(batch: Sequence[Sample]) -> np.ndarray:
            images = images_to_tensor(batch, p.map_size)[:, 0].numpy()
            return np.stack([brightest_membership(i, p.clusters, p.m, p.erosion).ravel()
                             for i in images])

        rows = ctx.cache.rows("fcm-brightest", key, list(samples), compute, dtype=np.float32)
        return rows.reshaped(p.map_size, p.map_size)

    def _inputs(self, samples: Sequence[Sample], ctx: Context) -> tuple[torch.Tensor, np.ndarray]:
        """The stacked ``(n, 2, S, S)`` inputs and ``(n, S, S)`` maps (``bench explain``'s few
        slices; training and prediction stream them)."""
        maps = self._memberships(samples, ctx).stack()
        return images_to_tensor(samples, self.params.map_size, extra=list(maps)), maps

    def _dataset(self, samples: Sequence[Sample], ctx: Context) -> SliceDataset:
        """(slice, membership) inputs and labels, read one sample at a time."""
        return SliceDataset(samples, self.params.map_size, target="label",
                            extra=self._memberships(samples, ctx))

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> FCMCNN:
        p = self.params
        train = [s for s in train if s.label in (0, 1)]
        val = [s for s in val if s.label in (0, 1)]
        train_set, val_set = self._dataset(train, ctx), self._dataset(val, ctx)
        seed_everything(ctx.seed)
        self.model_ = self.build_network()
        recipe = TrainConfig(epochs=p.epochs, lr=p.lr, patience=p.patience,
                             augment=AUGMENT if p.augment else None)
        self.train_result_ = fit_classifier_on(
            self.model_, train_set, val_set, ctx, recipe, batch_size=p.batch_size,
            fingerprint=fingerprint(p.digest(), [s.id for s in train], ctx.seed))
        ctx.log("trained", best_epoch=self.train_result_.best_epoch,
                val_accuracy=self.train_result_.best_score)
        return self

    def build_network(self, index: int = 0) -> ConvPoolClassifier:
        """The untrained network of ``fit`` (also how a saved model is rebuilt)."""
        p = self.params
        return ConvPoolClassifier(2, p.map_size, (p.filters, p.filters), dropout=p.dropout)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: the 2-channel CNN in the graph; the fuzzy c-means membership map
        (its second input) and the candidate region of the mask outside it."""
        p = self.params
        membership = {"step": "fcm_membership", "clusters": p.clusters, "m": p.m,
                      "erosion": p.erosion,
                      "how": "brain mask of the resized slice (mribench.blocks.preprocess."
                             "brain_mask with this erosion; every pixel when it holds fewer "
                             "than `clusters` pixels), fuzzy c-means of the brain's "
                             "intensities (mribench.blocks.fcm.fcm_image), the membership "
                             "map of the brightest cluster; the network's input is "
                             "[slice, membership] as two channels",
                      "code": "methods/fcm_cnn.py brightest_membership"}
        candidate = {"step": "candidate_mask", "min_area": p.min_area,
                     "how": "components (4-connectivity) of membership >= 0.5; the one with "
                            "the largest area * solidity**2 among those of at least "
                            "max(min_area * map_size**2, 1) pixels; resized back to the "
                            "slice's size (bilinear, >= 0.5); the mask is the candidate when "
                            "label is 1, else empty; the probability map is the membership "
                            "resized back", "code": "methods/fcm_cnn.py compact_candidate"}
        return ExportRecipe(
            inputs=((2, p.map_size, p.map_size),), output="tumour logit per slice, (n, 1)",
            preprocess=(load_step(), resize_step(p.map_size), membership),
            postprocess=(sigmoid_step(), label_step(), candidate),
            outside_graph=("resizing", "skull stripping and fuzzy c-means (the membership "
                           "channel)", "the sigmoid and the 0.5 threshold",
                           "the candidate region that makes the mask"))

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        p = self.params
        maps = self._memberships(samples, ctx)
        scores = predict_proba(self.model_, stream_inputs(samples, p.map_size, 64, extra=maps),
                               ctx, 64)
        labels = (scores >= 0.5).astype(int)
        if not len(samples):
            return Prediction(ids=[], labels=labels, scores=scores,
                              masks=np.zeros((0, 1, 1), bool),
                              prob_maps=np.zeros((0, 1, 1), np.float16))
        # masks and maps at the slices' size go to disk-backed stacks (the job's scratch
        # folder in a run), a chunk of membership maps in memory at a time
        masks = ctx.prediction_stack(len(samples), samples[0].shape, bool)
        probs = ctx.prediction_stack(len(samples), samples[0].shape, np.float16)
        for start in range(0, len(samples), CHUNK):
            part = maps.stack(start, start + CHUNK)
            rows = slice(start, start + len(part))
            shapes = [s.shape for s in samples[rows]]
            candidates = np.stack([compact_candidate(mp, p.min_area) for mp in part])
            write_rows(masks, rows, [(c >= 0.5) & bool(lab) for c, lab in zip(
                resize_back(candidates.astype(np.float32), shapes), labels[rows], strict=True)])
            write_rows(probs, rows, np.stack(resize_back(part, shapes)).astype(np.float16))
        return Prediction(ids=[s.id for s in samples], labels=labels, scores=scores,
                          masks=masks, prob_maps=probs)
