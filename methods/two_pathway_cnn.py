"""Two-pathway CNN of Havaei et al., trained in two phases, run fully convolutionally.

Reference: M. Havaei, A. Davy, D. Warde-Farley, A. Biard, A. Courville, Y. Bengio, C. Pal,
P.-M. Jodoin, H. Larochelle, "Brain tumor segmentation with deep neural networks", Medical
Image Analysis 35:18-31, 2017, doi:10.1016/j.media.2016.05.004.

Recipe (the paper's TwoPathCNN, Fig. 2-3):

- input: a 33 x 33 window around the pixel to classify;
- *local pathway*: maxout 7x7 convolution, 4x4 max-pooling (stride 1), maxout 3x3
  convolution, 2x2 max-pooling (stride 1) -> 21 x 21 maps;
- *global pathway*: one maxout 13x13 convolution -> 21 x 21 maps;
- the two are concatenated and classified by an *output convolution* of 21 x 21, so the
  trained network is convolutional from end to end: on a whole slice (zero-padded by 16 px) it
  labels every pixel in one pass, the paper's 40-fold speed-up over window-by-window
  classification (and exactly the same numbers, which the tests check);
- *two-phase training*: first on windows whose centres are balanced between tumour and
  non-tumour pixels, then only the output layer is re-trained on windows drawn from the
  natural class distribution, which calibrates the output to the true class frequencies;
- *input cascade* (``cascade="input"``, the paper's InputCascadeCNN): a first TwoPathCNN's
  tumour probability map is stacked as a second input channel of a second TwoPathCNN, so
  the second sees the first's output of a 65 x 65 context.

Input: slices (any size; resized to ``work_size`` for the network when set). Output: tumour
masks and probability maps at each slice's size; the image label comes from the mask area
(threshold learnt on val). A second result row ``two-pathway-cnn+crf`` refines the maps with a
dense CRF whose weights are chosen on val (:class:`mribench.blocks.crf.CRFVariant`).

Differences from the paper:

- one input channel: Br35H slices have one (unknown) MR sequence, not BRATS's four (T1, T1c,
  T2, FLAIR), and one output (tumour vs not, a sigmoid) instead of five classes (softmax);
- no N4 bias correction; the paper standardises each volume, here each slice is divided by
  its head's mean intensity (``normalise``: Br35H's TEST slices are ~30% darker than its
  TRAIN/VAL ones) and the network's first operation standardises with the training slices'
  head mean and standard deviation (so the zero padding outside a slice is the same for
  windows and whole slices);
- centres are drawn inside the head (:func:`mribench.blocks.nn.patches.head_regions`, no skull
  stripping: the network must also learn that skull is not tumour);
- optimiser: Adam in ``quick``; ``paper`` uses SGD with momentum 0.9 (the paper raised the
  momentum from 0.5 to 0.9 and decayed the learning rate by 0.1 per epoch, and used L1 + L2
  penalties; here only L2, through ``weight_decay``, and a fixed rate);
- early stopping and model selection on the pooled Dice of whole validation slices (the
  network run fully convolutionally, at most ``val_slices`` of them; the slices the
  segmentation metrics score, i.e. on Br35H the annotated tumour slices) at the best decision
  threshold; that threshold (a logit offset) is then used at test time (``calibrate``; with
  ``calibrate=false`` the threshold is 0.5, as in the paper). The second phase is kept only
  when it raises that Dice (otherwise the first phase's output layer stays);
- the cascade's first network is trained (both phases) and frozen before the second is
  trained; its map of the training slices comes from a network that has seen them;
- ``quick`` (sized for two CPU cores): slices at 96 px, 12 / 16 feature maps instead of
  64 / 160, a few thousand windows per epoch, and batch normalisation before each maxout
  (``batch_norm``, not in the paper: without it so few windows do not get the network off
  its initial plateau). ``paper`` keeps the published network, without batch normalisation.

Data feeding (streamed, memory by the batch, not the data set): the training slices are
prepared once (resized, normalised) into a scratch file in the job's folder
(:func:`mribench.blocks.nn.patches.prepare_slices`; deleted after training, also when it
fails); only their bool masks and head regions stay in memory (where window centres are
drawn), and each batch reads the slices its windows fall in. The per-channel standardisation
is a streamed pass over that file (:func:`mribench.blocks.nn.patches.head_statistics`,
float64 sums: the float32 mean is the correctly rounded one, whatever the thread count;
torch's float32 reduction over the stacked pixels, used before, could be an ulp away). The
input cascade writes the first network's maps of the training slices to a second file beside
them, ``infer_batch`` slices at a time. Validation reads only the ``val_slices`` whole slices
kept (:func:`mribench.blocks.nn.patches.val_slice_batches`; the cascade adds the first
network's map to each batch). Test slices are predicted, and the CRF row refines them, a chunk
at a time into disk-backed stacks (:mod:`mribench.api.stack`).
Balanced sampling (``positive_fraction``) and ``patches_per_epoch`` are the paper's
foreground oversampling and fixed iterations per epoch.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mribench.api import (
    Context,
    ExportRecipe,
    Interval,
    MethodParams,
    OneOf,
    Sample,
    SegmentationMethod,
)
from mribench.api.export import resize_back_step, sigmoid_step
from mribench.api.stack import CHUNK
from mribench.blocks.crf import CRFVariant
from mribench.blocks.nn.data import predict_stacks
from mribench.blocks.nn.losses import make_loss, pooled_dice
from mribench.blocks.nn.patch_nets import FFTConv2d, GlobalPathway, LocalPathway
from mribench.blocks.nn.patches import (
    Centres,
    PatchCNNParams,
    PatchLoader,
    SlicesOnDisk,
    best_dice,
    calibrate_offset,
    head_statistics,
    map_slices,
    maps_for,
    prepare_slices,
    slice_images,
    slice_steps,
    val_slice_batches,
)
from mribench.blocks.nn.train import (
    TrainConfig,
    fingerprint,
    fit_model,
    predict_batches,
    seed_everything,
)

WINDOW = 33  # the paper's window side
MARGIN = WINDOW // 2


class TwoPathCNN(nn.Module):
    """Havaei et al.'s TwoPathCNN with one logit output.

    Shapes: ``(n, C, H + 32, W + 32) -> (n, 1, H, W)`` logits; a ``(n, C, 33, 33)`` window
    gives ``(n, 1, 1, 1)``.
    """

    def __init__(self, in_channels: int = 1, local_maps: int = 64, global_maps: int = 160,
                 pieces: int = 2, dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        # Per-channel standardisation (the paper's pre-processing), inside the network so that
        # windows and whole slices see the same zero padding.
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1, 1))
        self.local_path = LocalPathway(in_channels, local_maps, pieces, dropout, batch_norm)
        self.global_path = GlobalPathway(in_channels, global_maps, pieces, dropout, batch_norm)
        # An nn.Conv2d whose dense pass over whole slices (eval mode) goes through the FFT.
        self.output = FFTConv2d(local_maps + global_maps, 1, WINDOW - LocalPathway.shrink)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.output(torch.cat([self.local_path(x), self.global_path(x)], dim=1))

    def standardise_on(self, slices: torch.Tensor | SlicesOnDisk, regions: np.ndarray) -> None:
        """Set the per-channel mean and standard deviation from the head pixels (``regions``)
        of slices ``(n, C, H, W)``, a stack or streamed from disk
        (:func:`mribench.blocks.nn.patches.head_statistics`, float64 sums)."""
        mean, std = head_statistics(slices, regions)
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(mean.astype(np.float32)).reshape(self.mean.shape))
            self.std.copy_(torch.from_numpy(std.astype(np.float32)).reshape(self.std.shape)
                           .clamp(min=1e-3))

    def train_output_only(self) -> None:
        """Freeze both pathways (the second training phase re-trains the output layer): no
        gradient, and they stay in eval mode (no dropout, batch-norm statistics kept)."""
        self.frozen_ = True
        for module in (self.local_path, self.global_path):
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> TwoPathCNN:
        super().train(mode)
        if getattr(self, "frozen_", False):
            self.local_path.eval()
            self.global_path.eval()
        return self


@dataclass(frozen=True)
class Params(PatchCNNParams):
    """Hyper-parameters of ``two-pathway-cnn`` (``paper`` profile: the published network);
    the shared ones are documented in :class:`mribench.blocks.nn.patches.PatchCNNParams`."""

    owner: ClassVar[str] = "two-pathway-cnn"
    constraints: ClassVar[dict[str, Any]] = {
        **PatchCNNParams.constraints,
        "local_maps": Interval(1, None, integer=True),
        "global_maps": Interval(1, None, integer=True),
        "pieces": Interval(1, 8, integer=True),
        "cascade": OneOf(("none", "input")),
        "phase1_epochs": Interval(1, None, integer=True),
        "phase2_epochs": Interval(0, None, integer=True),
    }

    local_maps: int = 64
    global_maps: int = 160
    pieces: int = 2
    cascade: str = "none"
    phase1_epochs: int = 20
    phase2_epochs: int = 3
    optimizer: str = "sgd"
    lr: float = 0.005
    weight_decay: float = 1e-4
    patience: int = 4
    dropout: float = 0.2


class TwoPathwayCNN(CRFVariant, SegmentationMethod):
    """Havaei et al. 2017's two-pathway patch CNN (with an optional input cascade) + dense CRF."""

    name: ClassVar[str] = "two-pathway-cnn"
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "Havaei et al., Brain tumor segmentation with deep neural networks, "
        "Medical Image Analysis 35:18-31, 2017, doi:10.1016/j.media.2016.05.004")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 96, "local_maps": 12, "global_maps": 16, "batch_norm": True,
                  "dropout": 0.0, "phase1_epochs": 6, "phase2_epochs": 1,
                  "patches_per_epoch": 4096, "val_slices": 48, "optimizer": "adam",
                  "lr": 2e-3, "weight_decay": 0.0, "patience": 3,
                  "crf_max_images": 24},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    # -- training -------------------------------------------------------------------------
    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        p = self.params
        train = [s for s in train if s.mask_or_empty() is not None]
        folder = ctx.subdir("slices")  # the prepared training slices (and maps), then deleted
        sources: list[SlicesOnDisk] = []
        try:
            source, masks, regions = prepare_slices(train, p.work_size, folder,
                                                    normalise=p.normalise)
            sources.append(source)
            # Validation on whole slices, run fully convolutionally: their pooled Dice.
            val, val_batches = val_slice_batches(val, p.work_size, p.infer_batch,
                                                 normalise=p.normalise, margin=MARGIN,
                                                 limit=p.val_slices, seed=ctx.seed)
            val_loader = val_batches if val else None
            ctx.log("training slices", n=len(train), n_val=len(val),
                    tumour_pixels=float(masks.mean()))
            self.stages_: list[TwoPathCNN] = []
            for stage in range(2 if p.cascade == "input" else 1):
                if stage == 1:  # input cascade: the first network's map, a second channel
                    source = source.with_channels(self._training_maps(source, folder, ctx))
                    sources.append(source)
                    if val_loader is not None:
                        val_loader = [(self._with_map(x, ctx), y) for x, y in val_loader]
                self.stages_.append(self._train_stage(stage, source, masks, regions,
                                                      val_loader, [s.id for s in train], ctx))
        finally:
            for opened in sources:
                opened.close()
            shutil.rmtree(folder, ignore_errors=True)
        self.logit_offset_ = 0.0
        if p.calibrate and val_loader is not None:
            self.logit_offset_ = calibrate_offset(self.stages_[-1], val_loader, ctx)

    def _training_maps(self, source: SlicesOnDisk, folder: Path, ctx: Context) -> SlicesOnDisk:
        """The input cascade's second channel of the training slices: the first network's
        probability maps (:meth:`_dense`), ``infer_batch`` slices at a time, on disk."""
        return map_slices(source, lambda x: self._dense(self.stages_, x, ctx),
                          folder / "maps.f32", self.params.infer_batch)

    def _with_map(self, padded: torch.Tensor, ctx: Context) -> torch.Tensor:
        """A batch of padded validation slices with the first network's map as a second
        channel (the input cascade), padded again."""
        x = padded[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN]
        return F.pad(torch.cat([x, self._dense(self.stages_, x, ctx)], dim=1), [MARGIN] * 4)

    def _train_stage(self, stage: int, source: SlicesOnDisk, masks: np.ndarray,
                     regions: np.ndarray,
                     val_loader: list[tuple[torch.Tensor, torch.Tensor]] | None, ids: list[str],
                     ctx: Context) -> TwoPathCNN:
        p = self.params
        seed_everything(ctx.seed + stage)
        net = self.build_network(stage)
        net.standardise_on(source, regions)

        def windows(c: Centres) -> torch.Tensor:
            part, local = source.take(c)
            return part.extract(local, WINDOW)

        scores: dict[str, float] = {}
        phases = [("balanced", p.positive_fraction, p.phase1_epochs),
                  ("natural", None, p.phase2_epochs)]
        for phase, fraction, epochs in phases:
            if epochs == 0:
                continue
            if phase == "natural":
                net.train_output_only()
                first_output = copy.deepcopy(net.output.state_dict())
            loader = PatchLoader(masks, regions, windows, n_patches=p.patches_per_epoch,
                                 batch_size=p.batch_size, positive_fraction=fraction)
            budget = (None if p.max_minutes is None else
                      p.max_minutes * (0.8 if phase == "balanced" else 0.2))
            recipe = TrainConfig(epochs=epochs, lr=p.lr, weight_decay=p.weight_decay,
                                 optimizer=p.optimizer,
                                 val_score_fn=best_dice if p.calibrate else pooled_dice,
                                 patience=p.patience, max_minutes=budget)
            n_rows = len(ctx.history)
            result = fit_model(
                net, loader, val_loader, make_loss("bce"), ctx, recipe,
                checkpoint_dir=ctx.subdir(f"checkpoints/stage{stage}-{phase}"),
                fingerprint=fingerprint(p.digest(), ids, stage, phase))
            for row in ctx.history[n_rows:]:
                row.update(stage=stage, phase=phase)
            scores[phase] = result.best_score
            ctx.log("training phase done", stage=stage, phase=phase,
                    best_epoch=result.best_epoch, val_dice=result.best_score,
                    seconds_per_epoch=result.seconds_per_epoch)
        if val_loader is not None and scores.get("natural", np.inf) < scores.get("balanced",
                                                                                  -np.inf):
            # Model selection on val: no second phase at all is a candidate too.
            net.output.load_state_dict(first_output)
            ctx.log("the second phase lowered the val Dice: first-phase output layer kept",
                    stage=stage, **scores)
        return net

    def build_network(self, index: int = 0) -> TwoPathCNN:
        """The untrained network of stage ``index`` (the cascade's second stage also reads the
        first's map: two channels); also how a saved model is rebuilt."""
        p = self.params
        return TwoPathCNN(1 if index == 0 else 2, p.local_maps, p.global_maps, p.pieces,
                          p.dropout, p.batch_norm)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: each stage's TwoPathCNN in its own graph (the per-channel
        standardisation inside it); normalising, padding, the cascade's wiring, the sigmoid
        with its logit offset and the threshold outside."""
        p = self.params
        side = (p.work_size or image_size or 0) + 2 * MARGIN
        pad = {"step": "pad", "pixels": MARGIN, "value": 0.0,
               "how": f"zero-pad the slice by {MARGIN} px on every side (network i's input)"}
        post: list[dict[str, Any]] = []
        if len(self.stages_) > 1:
            post.append({"step": "cascade",
                         "how": "network 0's probability = sigmoid(its logits) (no offset); "
                                "network 1's input = [slice, that probability] as two "
                                f"channels, zero-padded by {MARGIN} px; network 1 gives the "
                                "logits below"})
        post += [sigmoid_step(self.logit_offset_), resize_back_step(0.5, ">")]
        return ExportRecipe(
            inputs=tuple((1 if i == 0 else 2, side, side) for i in range(len(self.stages_))),
            output="tumour logit of every pixel of the unpadded slice, (n, 1, S, S)",
            preprocess=(*slice_steps(p.work_size, p.normalise), pad), postprocess=tuple(post),
            outside_graph=("resizing", "intensity normalisation", "zero padding",
                           "the input cascade's wiring", "the sigmoid with its logit offset "
                           "and the 0.5 threshold", "the area threshold of the label",
                           "the dense CRF of the +crf row"))

    # -- inference ------------------------------------------------------------------------
    def _dense(self, stages: Sequence[TwoPathCNN], images: torch.Tensor, ctx: Context,
               offset: float = 0.0) -> torch.Tensor:
        """Tumour probabilities (n, 1, H, W) of whole slices, one fully convolutional pass per
        stage (the cascade feeds each stage's map to the next); the last stage's logits are
        shifted by ``offset`` (the decision threshold chosen on val)."""
        probs = torch.zeros((images.shape[0], 1, *images.shape[2:]))
        for stage, net in enumerate(stages):
            x = images if stage == 0 else torch.cat([images, probs], dim=1)
            shift = offset if stage == len(stages) - 1 else 0.0
            probs = predict_batches(net, F.pad(x, [MARGIN] * 4), ctx.device,
                                    self.params.infer_batch,
                                    activation=lambda z, b=shift: torch.sigmoid(z - b))
        return probs

    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        # chunks of whole inference batches: each slice goes through the same batch as when
        # the set was stacked, so the numbers are unchanged
        step = p.infer_batch * max(1, CHUNK // p.infer_batch)
        inputs = (slice_images(samples[start:start + step], p.work_size, p.normalise)
                  for start in range(0, len(samples), step))

        def answer(x: torch.Tensor, chunk: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
            return maps_for(self._dense(self.stages_, x, ctx, self.logit_offset_), chunk)

        return predict_stacks(samples, ctx, inputs, answer)
