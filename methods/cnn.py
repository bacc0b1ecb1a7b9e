"""A small sequential CNN that tells tumour slices from tumour-free ones.

Reference: the compact Keras CNN of the Br35H detection literature, as described by Sharma et
al. and by R. Vavekanand (2024): ``Conv2D(80, 3x3) -> max-pool -> Conv2D(3x3) -> max-pool ->
dropout -> flatten -> dense -> sigmoid``, binary cross-entropy, Adam, with augmentation by
flips, rotations and brightness changes. (Exact venues, input size and epoch counts are not
restated here: the papers are cited by their recipe; see "Differences".)

Input: grayscale slices of any size (resized to ``image_size``). Output: a label per slice
(``P(tumour) >= 0.5``) and ``P(tumour)`` as its score.

Recipe (``paper`` profile): 128 x 128 input, two 3x3 convolution + ReLU + 2x2 max-pooling
blocks of 80 filters each, dropout 0.5, flatten, one dense unit with a sigmoid; Adam at 1e-3,
batch 32, at most 30 epochs with early stopping on validation accuracy (patience 8); random
left-right and up-down flips, 90-degree turns and small rotations, brightness and contrast
jitter.

Differences from the papers:

- the papers' input size and epoch count vary between write-ups; 128 px and 30 epochs here;
- the second block's filter count is not always stated; 80 is used for both;
- model selection on the validation accuracy (the best epoch's weights are kept), where the
  papers train a fixed number of epochs;
- ``quick`` (two CPU cores): 96 px, 32 filters per block, at most 15 epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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
from mribench.blocks.nn.blocks import ConvPoolClassifier
from mribench.blocks.nn.classify import fit_classifier_on, predict_proba
from mribench.blocks.nn.data import Augment, SliceDataset, stream_inputs
from mribench.blocks.nn.train import TrainConfig, TrainParams, fingerprint, seed_everything


@dataclass(frozen=True)
class Params(TrainParams):
    """Hyper-parameters of ``cnn`` (defaults: the ``paper`` profile); ``batch_size``, ``lr``,
    ``patience`` and ``dropout`` keep :class:`~mribench.blocks.nn.train.TrainParams`' defaults."""

    owner: ClassVar[str] = "cnn"
    constraints: ClassVar[dict[str, Any]] = {
        "image_size": Interval(16, 1024, integer=True),
        "filters": Interval(1, 1024, integer=True),
        "filters2": Interval(1, 1024, integer=True),
        "hidden": Interval(0, None, integer=True),
    }

    image_size: int = 128
    filters: int = 80
    filters2: int = 80
    hidden: int = 0
    epochs: int = 30
    augment: bool = True
    workers: int = 0


#: The papers' augmentation: flips, rotations, brightness.
AUGMENT = Augment(hflip=0.5, vflip=0.5, rot90=True, max_angle=10, brightness=0.1, contrast=0.1)


class SequentialCNN(Method):
    """Two conv/pool blocks (80 filters), dropout, flatten, dense, sigmoid."""

    name: ClassVar[str] = "cnn"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)
    kind: ClassVar[str] = "deep"
    reference: ClassVar[str] = (
        "Sharma et al.; R. Vavekanand 2024: a small sequential CNN (Conv2D 80 3x3, max-pool, "
        "Conv2D, max-pool, dropout, dense, sigmoid) for Br35H tumour detection")
    Params: ClassVar[type[MethodParams]] = Params
    profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"image_size": 96, "filters": 32, "filters2": 32, "epochs": 15, "patience": 5},
        "paper": {},
    }
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> SequentialCNN:
        p = self.params
        train = [s for s in train if s.label in (0, 1)]
        val = [s for s in val if s.label in (0, 1)]
        seed_everything(ctx.seed)
        self.model_ = self.build_network()
        recipe = TrainConfig(epochs=p.epochs, lr=p.lr, patience=p.patience,
                             augment=AUGMENT if p.augment else None)
        self.train_result_ = fit_classifier_on(
            self.model_, SliceDataset(train, p.image_size, target="label"),
            SliceDataset(val, p.image_size, target="label"), ctx, recipe,
            batch_size=p.batch_size, workers=p.workers,
            fingerprint=fingerprint(p.digest(), [s.id for s in train], ctx.seed))
        ctx.log("trained", best_epoch=self.train_result_.best_epoch,
                val_accuracy=self.train_result_.best_score,
                seconds_per_epoch=self.train_result_.seconds_per_epoch)
        return self

    def build_network(self, index: int = 0) -> ConvPoolClassifier:
        """The untrained network of ``fit`` (also how a saved model is rebuilt)."""
        p = self.params
        return ConvPoolClassifier(1, p.image_size, (p.filters, p.filters2),
                                  dropout=p.dropout, hidden=p.hidden)

    def export_recipe(self, image_size: int | None = None) -> ExportRecipe:
        """``bench export``: the network in the graph; resizing and the sigmoid outside."""
        p = self.params
        return ExportRecipe(
            inputs=((1, p.image_size, p.image_size),), output="tumour logit per slice, (n, 1)",
            preprocess=(load_step(), resize_step(p.image_size)),
            postprocess=(sigmoid_step(), label_step()),
            outside_graph=("resizing to the working size", "the sigmoid and the 0.5 threshold"))

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        p = self.params
        scores = predict_proba(self.model_, stream_inputs(samples, p.image_size, 64,
                                                          workers=p.workers), ctx, 64)
        return Prediction(ids=[s.id for s in samples], labels=(scores >= 0.5).astype(int),
                          scores=scores)

