"""Multi-scale patch CNN with location features, run densely on whole slices.

Reference: the multi-scale patch CNN described in the seed survey "Deep learning-based analysis
of brain MRI" (the design of M. Ghafoorian, N. Karssemeijer, T. Heskes, I. W. M. van Uden,
C. I. Sanchez, G. Litjens, F.-E. de Leeuw, B. van Ginneken, E. Marchiori, B. Platel,
"Location sensitive deep convolutional neural networks for segmentation of white matter
hyperintensities", Scientific Reports 7:5110, 2017, doi:10.1038/s41598-017-05300-5).

Recipe:

- for each pixel, three windows around it: 32 x 32, 64 x 64 and 128 x 128, the larger two
  down-sampled (block averages) to 32 x 32;
- each window goes through a structurally identical convolution stack (its own weights):
  valid convolutions with ReLU and max-pooling, ending in a fully connected layer;
- the three feature vectors and the pixel's position features (row, column, distance from the
  centre, normalised) are merged in fully connected layers with dropout 0.3, ending in the
  tumour probability of the pixel;
- training windows are drawn with the tumour (positive) pixels over-sampled to a fixed share.

Inference is dense and runs once per slice, not once per pixel: the down-sampled scale s is a
box filter of the slice (computed once), each stack runs on it fully convolutionally as an
*a trous* network (dilation s, stride-1 pools with doubling dilation: see
:class:`mribench.blocks.nn.patch_nets.ScaleStack`), and the fully connected layers are 1 x 1
convolutions over the feature maps and a position map. This gives, up to float rounding, the
same probability as the window-by-window network for every pixel (tested).

Input: slices (resized to ``work_size`` for the network when set). Output: tumour masks and
probability maps at each slice's size; image labels from the mask area (threshold learnt on
val); a second row ``multiscale-cnn+crf`` refines the maps with a dense CRF whose weights are
chosen on val (:class:`mribench.blocks.crf.CRFVariant`).

Differences from the paper:

- 2-D slices of one sequence (Br35H), not 3-D FLAIR/T1 volumes; the position features are
  the pixel's normalised image coordinates and radius, not the paper's atlas coordinates and
  distances to brain structures (there is no atlas registration for Br35H);
- the sizes of the convolution stack (3 convolutions 5x5, 3x3, 3x3, two 2x2 pools, a
  fully connected layer of ``features`` units) and of the merged layers are ours, the exact
  published filter counts are not reproduced; ``quick`` (two CPU cores) works at 96 px with
  narrower layers (8 / 16 / 16 maps, 32 features) and 8 epochs of 4,096 windows;
- over-sampling the positives shifts the network's output towards tumour; a logit offset
  chosen on the validation slices (maximising their pooled Dice) re-centres it so that 0.5
  is the decision threshold (and the CRF sees calibrated maps); ``calibrate=false`` keeps 0.5;
- each slice is divided by its head's mean intensity (``normalise``; Br35H's TEST slices are
  ~30% darker than its TRAIN/VAL ones);
- early stopping on the pooled Dice of (at most ``val_slices``) whole validation slices, run
  densely, at that best threshold (the slices the segmentation metrics score: on Br35H the
  annotated tumour slices); Adam;
- batch normalisation after the stack's convolutions (``batch_norm``): without it the quick
  profile's few thousand windows are not enough to leave the initial plateau.

Data feeding: the training slices are prepared (resized, normalised) once and streamed from a
scratch file in the job's folder, deleted after training (:func:`mribench.blocks.nn.patches.prepare_slices`);
a batch of windows reads the slices it touches, validation reads only its ``val_slices``, and
val and test slices are predicted batch by batch into disk-backed stacks of masks and maps
(:func:`mribench.blocks.nn.data.predict_stacks`), which the ``+crf`` row chooses its weights on
and refines a chunk at a time; only the bool masks and head regions of the training slices stay
in memory (what the centres are drawn from). The numbers are those of the stacked
tensors this replaced, bit for bit. Oversampling and a fixed number of iterations per epoch
are the paper's own: ``positive_fraction`` of the windows centred on tumour (already on in both
profiles: the positives are rare) and ``patches_per_epoch``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mribench.api import (
    POSITIVE_INTS,
    Check,
    Context,
    ExportRecipe,
    Interval,
    MethodParams,
    Sample,
    SegmentationMethod,
)
from mribench.api.export import resize_back_step, sigmoid_step
from mribench.blocks.crf import CRFVariant
from mribench.blocks.nn.data import predict_stacks, stream_inputs
from mribench.blocks.nn.losses import make_loss, pooled_dice
from mribench.blocks.nn.patch_nets import ScaleStack
from mribench.blocks.nn.patches import (
    Centres,
    PatchCNNParams,
    PatchLoader,
    PatchSource,
    SlicesOnDisk,
    best_dice,
    calibrate_offset,
    maps_for,
    normalise_intensity,
    position_features,
    position_map,
    prepare_slices,
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

PATCH = 32  # every scale is seen as a 32 x 32 window
SCALES = (1, 2, 4)  # 32, 64 and 128 px windows


class MultiScaleCNN(nn.Module):
    """Three :class:`ScaleStack` s (one per scale) + position features -> fully connected layers.

    ``forward``: packed windows ``(n, len(scales) * C + 3, 32, 32)`` (each scale's C channels,
    then the 3 position features broadcast over the window) -> ``(n, 1, 1, 1)`` logits; given
    slices with ``C`` channels it runs :meth:`forward_dense`.
    ``forward_dense``: slices ``(n, C, H, W)`` -> ``(n, 1, H, W)`` logits of every pixel.
    """

    def __init__(self, in_channels: int = 1, scales: Sequence[int] = SCALES,
                 channels: Sequence[int] = (16, 32, 32), features: int = 64,
                 hidden: Sequence[int] = (128, 64), dropout: float = 0.3,
                 batch_norm: bool = False) -> None:
        super().__init__()
        self.in_channels, self.scales = in_channels, tuple(scales)
        self.stacks = nn.ModuleList(ScaleStack(in_channels, channels, features=features,
                                               patch=PATCH, batch_norm=batch_norm)
                                    for _ in self.scales)
        layers: list[nn.Module] = []
        width = len(self.scales) * features + 3
        for units in hidden:
            layers += [nn.Conv2d(width, units, 1), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Conv2d(width, 1, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows or whole slices, told apart by their channels (see the class docstring)."""
        c = self.in_channels
        if x.shape[1] == c:
            return self.forward_dense(x)
        feats = [stack(x[:, i * c:(i + 1) * c]) for i, stack in enumerate(self.stacks)]
        position = x[:, -3:, :1, :1]
        return self.head(torch.cat([*feats, position], dim=1))

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for s, stack in zip(self.scales, self.stacks, strict=True):
            extent = PATCH * s  # rows y - extent // 2 .. y + extent - extent // 2 - 1
            low, high = extent // 2, extent - extent // 2 - 1
            padded = F.pad(x, [low, high, low, high])
            boxed = F.avg_pool2d(padded, s, stride=1) if s > 1 else padded
            feats.append(stack.forward_dense(boxed, s))
        position = position_map(x.shape[-2:]).to(x)[None].expand(x.shape[0], -1, -1, -1)
        return self.head(torch.cat([*feats, position], dim=1))


@dataclass(frozen=True)
class Params(PatchCNNParams):
    """Hyper-parameters of ``multiscale-cnn``; the shared ones are documented in
    :class:`mribench.blocks.nn.patches.PatchCNNParams`."""

    owner: ClassVar[str] = "multiscale-cnn"
    constraints: ClassVar[dict[str, Any]] = {
        **PatchCNNParams.constraints,
        "channels": Check(lambda v: POSITIVE_INTS.check(v) and len(v) == 3,
                          "three channel counts >= 1"),
        "features": Interval(1, None, integer=True),
        "hidden": Check(lambda v: isinstance(v, (list, tuple))
                        and (len(v) == 0 or POSITIVE_INTS.check(v)),
                        "a list of layer widths >= 1"),
    }

    channels: tuple[int, ...] = (20, 40, 80)
    features: int = 128
    hidden: tuple[int, ...] = (300, 200)
    epochs: int = 30
    lr: float = 5e-4
    dropout: float = 0.3
    batch_norm: bool = True
    infer_batch: int = 4


class MultiScaleCNNMethod(CRFVariant, SegmentationMethod):
    """Multi-scale (32/64/128 px) patch CNN with location features, dense inference + CRF."""

    name: ClassVar[str] = "multiscale-cnn"
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "Multi-scale patch CNN of the survey 'Deep learning-based analysis of brain MRI', after "
        "Ghafoorian et al., Location sensitive deep convolutional neural networks for "
        "segmentation of white matter hyperintensities, Scientific Reports 7:5110, 2017, "
        "doi:10.1038/s41598-017-05300-5")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"work_size": 96, "channels": (8, 16, 16), "features": 32, "hidden": (32,),
                  "epochs": 8, "patches_per_epoch": 4096, "val_slices": 48, "lr": 2e-3,
                  "patience": 3, "crf_max_images": 24},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    def _inputs(self, source: PatchSource | SlicesOnDisk, shape: Sequence[int],
                c: Centres) -> torch.Tensor:
        part, local = source.take(c)
        windows = [part.extract(local, PATCH, s) for s in SCALES]
        position = position_features(c.y, c.x, shape)[:, :, None, None]
        return torch.cat([*windows, position.expand(-1, -1, PATCH, PATCH)], dim=1)

    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        p = self.params
        train = [s for s in train if s.mask_or_empty() is not None]
        folder = ctx.subdir("slices")  # the prepared training slices, streamed, then deleted
        source, masks, regions = prepare_slices(train, p.work_size, folder,
                                                normalise=p.normalise)
        val, val_batches = val_slice_batches(val, p.work_size, p.infer_batch,
                                             normalise=p.normalise, limit=p.val_slices,
                                             seed=ctx.seed)
        shape = tuple(masks.shape[-2:])
        ctx.log("training slices", n=len(train), n_val=len(val),
                tumour_pixels=float(masks.mean()))

        seed_everything(ctx.seed)
        self.net_ = self.build_network()
        loader = PatchLoader(masks, regions, lambda c: self._inputs(source, shape, c),
                             n_patches=p.patches_per_epoch, batch_size=p.batch_size,
                             positive_fraction=p.positive_fraction)
        # Validation on whole slices, run densely: their pooled Dice (at the best threshold
        # when ``calibrate``).
        val_loader = val_batches if val else None
        recipe = TrainConfig(epochs=p.epochs, lr=p.lr, weight_decay=p.weight_decay,
                             optimizer=p.optimizer,
                             val_score_fn=best_dice if p.calibrate else pooled_dice,
                             patience=p.patience, max_minutes=p.max_minutes)
        try:
            result = fit_model(self.net_, loader, val_loader, make_loss("bce"), ctx, recipe,
                               checkpoint_dir=ctx.subdir("checkpoints"),
                               fingerprint=fingerprint(p.digest(), [s.id for s in train]))
        finally:
            source.close()
            shutil.rmtree(folder, ignore_errors=True)
        ctx.log("training done", best_epoch=result.best_epoch, val_dice=result.best_score,
                seconds_per_epoch=result.seconds_per_epoch)
        self.logit_offset_ = 0.0
        if p.calibrate and val_loader is not None:
            self.logit_offset_ = calibrate_offset(self.net_, val_loader, ctx)

    def build_network(self, index: int = 0) -> MultiScaleCNN:
        """The untrained network of ``fit`` (one-channel slices; also how a saved model is
        rebuilt)."""
        p = self.params
        return MultiScaleCNN(1, SCALES, p.channels, p.features, p.hidden, p.dropout,
                             p.batch_norm)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: the dense network in the graph (its padding, box filters and
        position map inside it); normalising, the sigmoid with its logit offset and the
        threshold outside."""
        p = self.params
        side = p.work_size or image_size or 0
        return ExportRecipe(
            inputs=((1, side, side),), output="tumour logit of every pixel, (n, 1, S, S)",
            preprocess=tuple(slice_steps(p.work_size, p.normalise)),
            postprocess=(sigmoid_step(self.logit_offset_), resize_back_step(0.5, ">")),
            outside_graph=("resizing", "intensity normalisation", "the sigmoid with its logit "
                           "offset and the 0.5 threshold", "the area threshold of the label",
                           "the dense CRF of the +crf row"))

    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        offset = self.logit_offset_

        def answer(x: torch.Tensor, chunk: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
            images = normalise_intensity(x) if p.normalise else x
            probs = predict_batches(self.net_, images, ctx.device, p.infer_batch,
                                    activation=lambda z: torch.sigmoid(z - offset))
            return maps_for(probs, chunk)

        return predict_stacks(samples, ctx, stream_inputs(samples, p.work_size, p.infer_batch),
                              answer)
