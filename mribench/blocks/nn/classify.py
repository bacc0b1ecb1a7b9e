"""Image-level classifiers in one call: tensors in, a trained network and its probabilities out.

:func:`fit_classifier` wraps :func:`mribench.blocks.nn.train.fit_model` for the common case of a
network mapping ``(n, ...)`` inputs to ``(n, 1)`` logits of "tumour present", trained by a
:class:`~mribench.blocks.nn.train.TrainConfig` with binary cross-entropy, model selection on
validation accuracy (ties: the earlier epoch), and seeded loaders; :func:`predict_proba`
returns ``P(tumour)`` per input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mribench.api.context import Context
from mribench.blocks.nn.data import make_loader
from mribench.blocks.nn.losses import binary_accuracy, make_loss
from mribench.blocks.nn.train import TrainConfig, TrainResult, fit_model, predict_batches

__all__ = ["fit_classifier", "fit_classifier_on", "predict_proba"]


def fit_classifier(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor | np.ndarray,
                   x_val: torch.Tensor | None, y_val: torch.Tensor | np.ndarray | None,
                   ctx: Context, config: TrainConfig, *, batch_size: int = 32,
                   fingerprint: str | None = None,
                   checkpoint_name: str = "checkpoints") -> TrainResult:
    """Train ``model`` (logits ``(n, 1)``) on 0/1 labels by ``config``; it keeps the best
    epoch's weights.

    Model selection is on validation accuracy unless ``config.val_score_fn`` names another
    score. Training batches hold ``batch_size`` inputs, validation batches four times as
    many. Checkpoints go to ``ctx.subdir(checkpoint_name)``; with ``fingerprint`` a rerun
    resumes. :func:`fit_classifier_on` does the same on any datasets of ``(input, label)``
    (e.g. a streamed :class:`~mribench.blocks.nn.data.SliceDataset`).
    """
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.float32).reshape(-1)
    val = None
    if x_val is not None and y_val is not None and len(x_val):
        y_val = torch.as_tensor(np.asarray(y_val), dtype=torch.float32).reshape(-1)
        val = TensorDataset(x_val, y_val)
    return fit_classifier_on(model, TensorDataset(x_train, y_train), val, ctx, config,
                             batch_size=batch_size, fingerprint=fingerprint,
                             checkpoint_name=checkpoint_name)


def fit_classifier_on(model: nn.Module, train: Dataset, val: Dataset | None, ctx: Context,
                      config: TrainConfig, *, batch_size: int = 32,
                      fingerprint: str | None = None, checkpoint_name: str = "checkpoints",
                      workers: int = 0) -> TrainResult:
    """:func:`fit_classifier` on datasets of ``(input, float 0/1 label)`` items; ``workers``:
    loader worker processes (see :func:`~mribench.blocks.nn.data.make_loader`)."""
    if config.val_score_fn is None:
        config = dataclasses.replace(config, val_score_fn=binary_accuracy)
    val_loader = None
    if val is not None and len(val):
        val_loader = make_loader(val, 4 * batch_size, workers=workers)
    loader = make_loader(train, batch_size, shuffle=True, seed=ctx.seed,
                         drop_last=len(train) > batch_size, workers=workers)
    return fit_model(model, loader, val_loader, make_loss("bce"), ctx, config,
                     checkpoint_dir=ctx.subdir(checkpoint_name), fingerprint=fingerprint)


def predict_proba(model: nn.Module, x: torch.Tensor | Iterable[torch.Tensor], ctx: Context,
                  batch_size: int = 64) -> np.ndarray:
    """``P(tumour)`` for each input, float64 ``(n,)``: of a stacked ``(n, C, H, W)`` tensor,
    or of the batches of a stream (e.g. :func:`~mribench.blocks.nn.data.stream_inputs` with
    ``batch_size``: the same batches, the same numbers)."""
    if isinstance(x, torch.Tensor):
        if len(x) == 0:
            return np.zeros(0)
        return predict_batches(model, x, ctx.device, batch_size).reshape(-1).double().numpy()
    parts = [predict_batches(model, batch, ctx.device, batch_size).reshape(-1) for batch in x]
    return torch.cat(parts).double().numpy() if parts else np.zeros(0)
