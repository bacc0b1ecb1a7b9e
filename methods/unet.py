"""U-Net segmentation of tumour slices, the standard network of the Br35H segmentation paper.

Reference: Khadra et al., "Advancing brain tumor diagnosis with deep learning-driven image
segmentation" (U-Net on Br35H's annotated slices; test pooled F1 0.826, IoU 0.74, precision
0.934, recall 0.780). The network is Ronneberger, Fischer & Brox, "U-Net: convolutional
networks for biomedical image segmentation", MICCAI 2015, doi:10.1007/978-3-319-24574-4_28.

Recipe (``paper`` profile):

- input: the grayscale slice at 256 x 256;
- 4 encoder levels (two 3x3 convolutions + batch norm + ReLU, then 2x2 max-pooling),
  a bottleneck, and 4 decoder levels (2x2 transposed convolution, concatenation with the
  encoder's skip, two 3x3 convolutions + batch norm + ReLU); widths 64-128-256-512-1024;
- a 1x1 convolution and a sigmoid: the tumour probability of each pixel; mask = p >= 0.5;
- binary cross-entropy (``loss="dice+bce"`` gives the Dice + BCE sum of the BraTS U-Net
  papers), Adam at 1e-4, batch 50, 100 epochs.

Input: slices of any size (resized to ``image_size``). Output: masks and probability maps at
each slice's own size (the map is resized back bilinearly, then thresholded); the image label
comes from the predicted area (threshold learnt on val by :class:`SegmentationMethod`).

Training data: every slice whose mask is known, i.e. the annotated tumour slices, plus, when
``empty_fraction > 0``, that many tumour-free slices per annotated slice (a seeded draw) as
empty masks. The paper trains on the annotated slices only (``empty_fraction=0``); the empty
slices teach the network that a slice may hold no tumour, which the image-level detection
task needs, at some cost in recall. Model selection (best epoch, early stopping, the optional
threshold) uses the pooled Dice of the validation slices chosen by the same rule.

Data feeding: the slices stream from the sample store (:class:`~mribench.blocks.nn.data.SliceDataset`:
one slice read and resized per item, ``workers`` loader processes), validation is scored from
streamed counts and test slices are predicted batch by batch into disk-backed stacks of masks
and maps (:func:`mribench.blocks.nn.data.predict_stacks`), so memory depends on the batch, not
on the data set; the numbers are those of the stacked tensors this replaced, bit for bit.
``iterations`` (batches per epoch; None: a pass over the slices) and ``oversample`` (share of
each batch drawn from slices holding tumour; nnU-Net forces a third) change the sampling to
nnU-Net's; both are off in ``quick`` and ``paper``: the paper trains plain epochs over its
annotated slices (every one holds tumour, so oversampling would change nothing there), and
``quick`` keeps the numbers of the baselines. Turn them on for a large data set with few
tumour slices (``unet[iterations=250,oversample=0.33]``, nnU-Net's 250 batches per epoch).

Differences from the paper:

- the network returns logits; the sigmoid is applied in the loss (``BCEWithLogits``, the
  stable equivalent) and at inference;
- early stopping on the validation pooled Dice (patience 20 in ``paper``) and the best
  epoch's weights are kept; the paper reports a fixed 100 epochs;
- ``quick`` (two CPU cores): 128 px, base width 8, 8 epochs (a fixed budget of work, never of
  time, so every machine gives the same numbers; ``max_minutes`` stays available as an explicit
  parameter and marks the row "time-capped"), Dice + BCE, a one-cycle schedule peaking at
  3e-3, random flips / 90-degree turns / small rotations and zooms / brightness and contrast,
  the probability threshold chosen on val, and test-time flip averaging; see ``profiles``.

Option ``augment=mri`` (``unet[augment=mri]``, a row of its own; not the paper's): the same
augmentation plus, on half the training slices (:data:`MRI_ARTEFACT_RATE`), one MRI artefact
(bias field, motion, ghosting, spike, noise, blur or gamma) at a severity 1..5 drawn from the
training loop's seeded generator: the transforms the artefact axis (``bench run --corrupt``)
scores under, so the row shows what robustness training buys. Validation and test slices are
never corrupted in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mribench.api import (
    FLAG,
    Check,
    Context,
    ExportRecipe,
    Interval,
    MethodParams,
    OneOf,
    OrNone,
    Sample,
    SegmentationMethod,
)
from mribench.api.export import load_step, resize_back_step, resize_step, sigmoid_step
from mribench.api.overlap import dice_from_counts
from mribench.blocks.nn.blocks import ConvBlock, Down, OutConv, Up
from mribench.blocks.nn.data import (
    Augment,
    EpochSampler,
    SliceDataset,
    make_loader,
    predict_stacks,
    resize_back,
    stream_inputs,
)
from mribench.blocks.nn.losses import LOSSES, POOLED_DICE, make_loss
from mribench.blocks.nn.train import (
    TrainConfig,
    TrainParams,
    fingerprint,
    fit_model,
    predict_batches,
    seed_everything,
)

#: Share of training slices ``augment=mri`` gives an MRI artefact.
MRI_ARTEFACT_RATE = 0.5


class UNet(nn.Module):
    """The U-Net: ``depth`` down-sampling levels, widths ``width * 2**level``.

    Shapes: ``(n, in_channels, H, W) -> (n, out_channels, H, W)`` logits; H and W must be
    multiples of ``2**depth``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 64,
                 depth: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.inc = ConvBlock(in_channels, widths[0])
        self.down = nn.ModuleList(
            Down(widths[i], widths[i + 1], dropout=dropout if i == depth - 1 else 0.0)
            for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i])
                                for i in reversed(range(depth)))
        self.head = OutConv(widths[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)


@dataclass(frozen=True)
class Params(TrainParams):
    """Hyper-parameters of ``unet`` (defaults: the paper's); the training ones are checked by
    :class:`mribench.blocks.nn.train.TrainParams`'s rules."""

    owner: ClassVar[str] = "unet"
    constraints: ClassVar[dict[str, Any]] = {
        "image_size": [Interval(8, 2048, integer=True),
                       Check(lambda v: v % 16 == 0, "a multiple of 16")],
        "base_width": Interval(1, 512, integer=True),
        "depth": Interval(1, 6, integer=True),
        "loss": OneOf(tuple(LOSSES)),
        "empty_fraction": Interval(0, None),
        "threshold": OrNone(Interval(0, 1, closed="neither")),
        "tta": FLAG,
        "channels_last": FLAG,
        # true: flips, rotations, zoom, brightness, contrast; mri: the same plus an MRI
        # artefact (bias, motion, ghosting, spike, noise, blur, gamma) on half the slices
        "augment": Check(lambda v: isinstance(v, bool) or v == "mri", "true, false or mri"),
    }

    image_size: int = 256
    base_width: int = 64
    depth: int = 4
    dropout: float = 0.0
    batch_size: int = 50
    epochs: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    loss: str = "bce"
    scheduler: str = "none"
    patience: int | None = 20
    augment: bool | str = False
    empty_fraction: float = 0.0
    threshold: float | None = 0.5
    tta: bool = False
    max_minutes: float | None = None
    channels_last: bool = False
    infer_batch: int = 16
    oversample: float = 0.0
    iterations: int | None = None
    workers: int = 0


class UNetSegmenter(SegmentationMethod):
    """Khadra et al.'s U-Net on Br35H (a standard 4-level U-Net, sigmoid output)."""

    name: ClassVar[str] = "unet"
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "Khadra et al., Advancing brain tumor diagnosis with deep learning-driven image "
        "segmentation (U-Net on Br35H); U-Net: Ronneberger et al., MICCAI 2015, "
        "doi:10.1007/978-3-319-24574-4_28")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"image_size": 128, "base_width": 8, "batch_size": 16, "epochs": 8,
                  "lr": 3e-3, "weight_decay": 1e-4, "loss": "dice+bce",
                  "scheduler": "onecycle", "patience": None, "augment": True,
                  "empty_fraction": 0.0, "threshold": None, "tta": True},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    def _with_masks(self, samples: Sequence[Sample], seed: int) -> list[Sample]:
        """Annotated slices plus ``empty_fraction`` tumour-free slices per annotated one."""
        annotated = [s for s in samples if s.mask is not None]
        empty = [s for s in samples if s.mask is None and s.mask_or_empty() is not None]
        n_empty = min(len(empty), int(round(self.params.empty_fraction * len(annotated))))
        if n_empty:
            pick = np.random.default_rng(seed).choice(len(empty), n_empty, replace=False)
            annotated += [empty[i] for i in sorted(pick)]
        return annotated

    def _augment(self) -> Augment | None:
        if not self.params.augment:
            return None
        return Augment(hflip=0.5, vflip=0.5, rot90=True, max_angle=15, max_scale=0.1,
                       brightness=0.1, contrast=0.15,
                       artefacts=MRI_ARTEFACT_RATE if self.params.augment == "mri" else 0.0)

    def _train_loader(self, train_set: Sequence[Sample], seed: int) -> Any:
        """Shuffled batches of the streamed training slices: a pass over them per epoch, or,
        with ``iterations`` / ``oversample``, that many batches each with that share of
        tumour slices (:class:`~mribench.blocks.nn.data.EpochSampler`)."""
        p = self.params
        data = SliceDataset(train_set, p.image_size, target="mask")
        if p.iterations is None and p.oversample == 0:
            return make_loader(data, p.batch_size, shuffle=True, seed=seed,
                               drop_last=len(data) > p.batch_size, workers=p.workers)
        foreground = [i for i, s in enumerate(train_set) if s.mask is not None
                      and np.any(s.mask)]
        return make_loader(data, p.batch_size, seed=seed, workers=p.workers,
                           batch_sampler=lambda g: EpochSampler(
                               len(data), p.batch_size, foreground=foreground,
                               oversample=p.oversample, iterations=p.iterations, generator=g))

    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        p = self.params
        train_set = self._with_masks(train, ctx.seed)
        val_set = self._with_masks(val, ctx.seed + 1)
        if not train_set:
            raise ValueError("unet: no training slice has a mask")
        ctx.log("training slices", n=len(train_set), n_val=len(val_set),
                annotated=sum(s.has_mask for s in train_set))
        seed_everything(ctx.seed)
        self.model_ = self.build_network()
        val_data = SliceDataset(val_set, p.image_size, target="mask") if val_set else None
        val_loader = (make_loader(val_data, p.infer_batch, workers=p.workers)
                      if val_data is not None else None)
        recipe = TrainConfig(epochs=p.epochs, lr=p.lr, weight_decay=p.weight_decay,
                             scheduler=p.scheduler, augment=self._augment(),
                             val_score_fn=POOLED_DICE, patience=p.patience,
                             max_minutes=p.max_minutes, channels_last=p.channels_last)
        result = fit_model(
            self.model_, self._train_loader(train_set, ctx.seed), val_loader,
            make_loss(p.loss), ctx, recipe, checkpoint_dir=ctx.subdir("checkpoints"),
            fingerprint=fingerprint(p.digest(), [s.id for s in train_set], ctx.seed))
        self.train_result_ = result
        ctx.log("trained", best_epoch=result.best_epoch, val_dice=result.best_score,
                epochs=result.epochs_run, seconds_per_epoch=result.seconds_per_epoch,
                timed_out=result.timed_out)
        self.threshold_ = p.threshold if p.threshold is not None else 0.5
        if p.threshold is None and val_loader is not None:
            self.threshold_ = _best_threshold(
                (self._probabilities(x, ctx), y) for x, y in val_loader)
            ctx.log("probability threshold chosen on val", threshold=self.threshold_)

    def build_network(self, index: int = 0) -> UNet:
        """The untrained network of ``fit`` (also how a saved model is rebuilt)."""
        p = self.params
        return UNet(1, 1, p.base_width, p.depth, p.dropout)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: the U-Net alone in the graph; resizing, the sigmoid, the
        test-time flip and the probability threshold around it."""
        p = self.params
        post = [sigmoid_step()]
        if p.tta:
            post.append({"step": "tta_flip",
                         "how": "run the network on the slice and on its left-right mirror "
                                "(last axis flipped), mirror that probability map back and "
                                "average the two maps"})
        post.append(resize_back_step(self.threshold_, ">="))
        return ExportRecipe(
            inputs=((1, p.image_size, p.image_size),),
            output="tumour logit of every pixel, (n, 1, S, S)",
            preprocess=(load_step(), resize_step(p.image_size)), postprocess=tuple(post),
            outside_graph=("resizing to and from the working size", "the sigmoid",
                           *(("the test-time left-right flip average",) if p.tta else ()),
                           "the probability threshold", "the area threshold of the label"))

    def _probabilities(self, images: torch.Tensor, ctx: Context) -> torch.Tensor:
        p = self.params
        run = lambda x: predict_batches(self.model_, x, ctx.device, p.infer_batch,  # noqa: E731
                                        channels_last=p.channels_last)
        probs = run(images)
        if p.tta:  # average with the left-right mirrored prediction
            probs = 0.5 * (probs + run(images.flip(-1)).flip(-1))
        return probs

    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params

        def answer(x: torch.Tensor, chunk: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
            batch = np.stack(resize_back(self._probabilities(x, ctx), [s.shape for s in chunk]))
            return batch >= self.threshold_, batch

        return predict_stacks(samples, ctx, stream_inputs(samples, p.image_size, p.infer_batch,
                                                          workers=p.workers),
                              answer, np.float16)


#: The probability thresholds :func:`_best_threshold` tries, nearest 0.5 first.
_THRESHOLDS = sorted(np.round(np.arange(0.1, 0.91, 0.05), 2), key=lambda v: abs(v - 0.5))


def _best_threshold(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The probability threshold (0.1 ... 0.9) with the best pooled Dice over the
    ``(probabilities, targets)`` batches; ties -> nearest 0.5. Counted batch by batch
    (integer counts: the same Dice as on the stacked set)."""
    counts = np.zeros((len(_THRESHOLDS), 3), np.int64)  # tp, predicted, true pixels
    for probs, targets in batches:
        y = (targets >= 0.5).numpy()
        for row, t in enumerate(_THRESHOLDS):
            pred = (probs >= t).numpy()
            counts[row] += (np.count_nonzero(pred & y), np.count_nonzero(pred),
                            np.count_nonzero(y))
    best, best_t = -1.0, 0.5
    for (tp, predicted, true), t in zip(counts, _THRESHOLDS, strict=True):
        dice = dice_from_counts(tp, predicted - tp, true - tp, empty=1.0)
        if dice > best + 1e-9:
            best, best_t = dice, float(t)
    return best_t
