"""The one training loop of the deep methods: early stopping, checkpoints, resume, AMP.

API (what a plugin calls)::

    from mribench.blocks.nn.data import Augment, SampleDataset, make_loader
    from mribench.blocks.nn.losses import make_loss, pooled_dice
    from mribench.blocks.nn.train import (TrainConfig, fingerprint, fit_model, predict_batches,
                                          seed_everything)

    seed_everything(ctx.seed)                      # before building the model (weight init)
    model = MyNet(...)
    train_loader = make_loader(SampleDataset(train, 128, target="mask"), 16, shuffle=True,
                               seed=ctx.seed)
    val_loader = make_loader(SampleDataset(val, 128, target="mask"), 32)
    recipe = TrainConfig(epochs=30, lr=1e-3, scheduler="onecycle", augment=Augment(rot90=True),
                         val_score_fn=pooled_dice, patience=8)
    result = fit_model(model, train_loader, val_loader, make_loss("dice+bce"), ctx, recipe,
                       checkpoint_dir=ctx.subdir("checkpoints"),
                       fingerprint=fingerprint(params.digest(), ids))
    probs = predict_batches(model, images, ctx.device, batch_size=32)   # sigmoid outputs

``fit_model(model, train_loader, val_loader, loss_fn, ctx, config, *, checkpoint_dir=None,
fingerprint=None, on_epoch_end=None, checkpoint_every=60.0) -> TrainResult``, with ``config`` a :class:`TrainConfig`
(``epochs``, ``lr=1e-3``, ``weight_decay=0.0``, ``optimizer="adam"``, ``scheduler="none"``,
``grad_clip=None``, ``augment=None``, ``val_score_fn=None``, ``patience=None``,
``min_delta=0.0``, ``max_minutes=None``, ``amp=None``, ``channels_last=False``). It reads as
its recipe: per epoch :func:`_train_epoch` (the loop over the batches), :func:`_validate` and
:class:`_Selection` (model selection and early stopping), then :class:`_Checkpoints` (write
``last.pt`` / ``best.pt``; resume from them).

- ``train_loader`` / ``val_loader``: any iterables of ``(inputs, targets)`` batches (usually
  :func:`mribench.blocks.nn.data.make_loader`); the model maps inputs to logits shaped like targets
  (or with the same number of elements). ``val_loader`` may be None (no early stopping).
- ``val_score_fn(logits, targets) -> float``: the validation metric, *higher is better*,
  computed on the concatenated validation logits and targets, or, when it has
  ``counts(logits, targets)`` and ``from_counts(summed)`` (a streamed score such as
  :data:`~mribench.blocks.nn.losses.POOLED_DICE`), from counts summed batch by batch, so the
  validation outputs are never held together (e.g.
  :func:`~mribench.blocks.nn.losses.pooled_dice`, :func:`~mribench.blocks.nn.losses.binary_accuracy`).
  Without it the score is ``-val_loss``.
- Early stopping: training stops after ``patience`` epochs without an improvement larger
  than ``min_delta``; the best epoch's weights are restored at the end in every case.
- ``max_minutes``: a training-time budget (cumulated over resumes). Before an epoch starts,
  training stops when the mean epoch time so far would take it past the budget. A run cut
  short by the budget is no longer bit-for-bit reproducible (it depends on the machine's
  speed); the result says so (``timed_out``).
- ``scheduler`` (per-step schedules need ``len(train_loader)``): ``"none"``, ``"cosine"``
  (cosine decay per step over ``epochs``),
  ``"onecycle"`` (``OneCycleLR`` with ``max_lr=lr``, per step) or ``"plateau"`` (halve the
  lr after ``max(1, patience // 2)`` epochs without improvement).
- ``augment(x, y) -> (x, y)``: a batch transform applied on the device to training batches
  only (see :class:`mribench.blocks.nn.data.Augment`).
- ``amp``: mixed precision; None means "on CUDA" (float16 autocast + gradient scaling),
  off on the CPU; True on the CPU autocasts to bfloat16 (no scaling needed). ``channels_last``
  converts model and batches to NHWC. See "On a GPU" below for which are exact enough.
- Per epoch: a progress bar over the batches (``ctx.progress``), one ``ctx.record(epoch=,
  train_loss=, val_loss=, val_metric=, lr=, seconds=)`` row and one ``ctx.log`` line.
- Checkpoints (``checkpoint_dir``, normally ``ctx.subdir("checkpoints")``): ``last.pt``
  (model, optimizer, scheduler, scaler, epoch, history, early-stopping state) and ``best.pt``
  (the best weights), written together, atomically, at the end of an epoch when
  ``checkpoint_every`` seconds (default :data:`CHECKPOINT_EVERY`, a minute) passed since the
  last write, and always when the training ends (finished, stopped early, out of time);
  ``checkpoint_every=0`` writes after every epoch. An interruption loses at most that much
  training (the resumed run repeats those epochs and ends with the same weights); writing
  every epoch cost half the training time of the small networks (a 50k-parameter MLP
  epoch of a few ms against two ``torch.save``) and, for the paper's U-Net (31 M parameters,
  ~370 MB with Adam's moments), seconds per epoch on a GPU. When ``last.pt`` exists
  with the same ``fingerprint``, training resumes after its epoch; a finished training is
  not repeated (its best weights are loaded). Use :func:`fingerprint` on the parameters and
  the training ids so that a changed configuration starts afresh.
- ``on_epoch_end(epoch, row)``: called after the checkpoint of each epoch is written (tests
  raise ``KeyboardInterrupt`` there to simulate an interruption).

Reproducibility: torch's global generator and the train loader's generator are re-seeded at
the start of every epoch from ``ctx.seed`` and the epoch number, so dropout, augmentation and
batch order of epoch ``e`` do not depend on how the run got there: a run interrupted and
resumed ends with the same weights as one that never stopped (bit for bit on the CPU, with
the same number of threads). GPU kernels may be non-deterministic.

On a GPU (what the loop does, and which switches are exact enough):

- Batches are copied through pinned memory with ``non_blocking=True`` (:func:`_to_device`), and
  the training loss is read once per epoch, not with a ``.item()`` per step, so the host is not
  made to wait for the device inside an epoch (the float32 losses are summed in the same order
  as before: the recorded ``train_loss`` is unchanged).
- Determinism is the runner's: every executor runs a job inside
  :func:`mribench.run.execute.compute_threads`, which turns torch's deterministic algorithms on,
  ``torch.backends.cudnn.deterministic`` on and ``cudnn.benchmark`` (the autotuner) off.
  ``benchmarks/bench_train_throughput.py --device cuda --no-deterministic`` measures what that
  costs; no GPU was lent when this was written, so no figure is claimed here.
- ``amp`` (float16 on CUDA, with a ``GradScaler``; None = on there) is the usual GPU setting
  (nnU-Net trains so) but not exact: logits move by about 1e-3 (measured with bfloat16 on the
  CPU on the quick U-Net and CNN: max |d logit| 1e-3 at logits of order 0.1, no 0.5-decision
  changed), so trained weights and metrics differ from float32 runs; it is off on the CPU, which
  keeps the quick profiles' numbers.
- ``channels_last`` is the same arithmetic in another memory order: outputs agree to float32
  rounding (max |d logit| 3e-8 to 1.3e-7, measured as above) but are not bit-identical, so a run
  with it is not bit-for-bit the run without it; it helps on GPUs with tensor cores and is off
  by default (the U-Net's ``channels_last`` parameter).

``predict_batches(model, inputs, device, batch_size=32, *, activation=torch.sigmoid,
amp=None, channels_last=False) -> torch.Tensor``: the model (eval mode, no grad) on an
``(n, C, H, W)`` tensor in batches; the outputs, through ``activation`` (None: raw logits),
come back as a float32 CPU tensor.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mribench.api.context import Context
from mribench.api.errors import ParamError
from mribench.api.params import FLAG, Constraint, Interval, MethodParams, OneOf, OrNone
from mribench.api.seeding import seed_everything  # re-exported for the plugins

__all__ = ["CHECKPOINT_EVERY", "OPTIMIZERS", "SCHEDULERS", "TRAINING_RULES", "TrainConfig", "TrainParams",
           "TrainResult", "fingerprint", "fit_model", "predict_batches", "seed_everything",
           "torch_threads"]

SCHEDULERS = ("none", "cosine", "onecycle", "plateau")
#: Seconds between two checkpoint writes during a training (see the module docstring).
CHECKPOINT_EVERY = 60.0
OPTIMIZERS = ("adam", "adamw", "sgd")

Batch = tuple[torch.Tensor, torch.Tensor]

#: The one table of constraints of the training knobs the deep plugins share (the fields of
#: :class:`TrainConfig` and the arguments of the networks they build). A :class:`TrainParams` subclass that has
#: one of these fields is checked by its rule; its own ``constraints`` may tighten one.
TRAINING_RULES: dict[str, Constraint] = {
    "batch_size": Interval(1, None, integer=True),
    "epochs": Interval(1, None, integer=True),
    "lr": Interval(0, None, closed="neither"),
    "weight_decay": Interval(0, None),
    "patience": OrNone(Interval(1, None, integer=True)),
    "max_minutes": OrNone(Interval(0, None, closed="neither")),
    "optimizer": OneOf(OPTIMIZERS),
    "scheduler": OneOf(SCHEDULERS),
    "dropout": Interval(0, 1, closed="left"),
    "augment": FLAG,
    "infer_batch": Interval(1, None, integer=True),
    "oversample": Interval(0, 1),
    "iterations": OrNone(Interval(1, None, integer=True)),
    "workers": Interval(0, 64, integer=True),
}


@dataclass(frozen=True)
class TrainParams(MethodParams):
    """Base of the ``Params`` of every deep plugin: the training knobs all of them have, and
    the rules of :data:`TRAINING_RULES` for those (and for the ones only some declare:
    ``epochs``, ``weight_decay``, ``max_minutes``, ``optimizer``, ``scheduler``, ``augment``,
    ``infer_batch``; and the streamed feeding's ``workers``: loader worker processes, 0 = read
    in the training process; ``iterations``: batches per epoch, None = a pass over the data;
    ``oversample``: share of each batch forced onto foreground slices). A subclass declares
    its own fields with its defaults (re-declaring a field here changes its default) and
    ``constraints`` for the rest.

    ``batch_size``: training batch; ``lr``: learning rate; ``patience``: epochs without a
    better validation score before stopping (None: no early stopping); ``dropout``: the
    network's dropout rate.
    """

    batch_size: int = 32
    lr: float = 1e-3
    patience: int | None = 8
    dropout: float = 0.5

    @classmethod
    def rules(cls) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}
        shared = {k: rule for k, rule in TRAINING_RULES.items() if k in names}
        return {**shared, **cls.constraints}


@dataclass
class TrainResult:
    """What :func:`fit_model` reports; the model itself holds the best weights afterwards."""

    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    timed_out: bool = False
    resumed_from: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        times = [row["seconds"] for row in self.history if "seconds" in row]
        return sum(times) / len(times) if times else float("nan")


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit_model` trains: the recipe a paper states, in one checked object.

    ``epochs`` (required): the most epochs; ``lr``, ``weight_decay``; ``optimizer`` (one of
    :data:`OPTIMIZERS`; ``sgd`` has momentum 0.9); ``scheduler`` (one of :data:`SCHEDULERS`, see
    the module docstring); ``grad_clip``: largest gradient norm (None: no clipping);
    ``augment(x, y) -> (x, y)``: a batch transform of the training batches (e.g.
    :class:`mribench.blocks.nn.data.Augment`); ``val_score_fn(logits, targets) -> float``: the
    validation metric model selection maximises (None: ``-val_loss``); ``patience`` and
    ``min_delta``: early stopping (None: train every epoch); ``max_minutes``: training-time
    budget; ``amp`` (None: on CUDA) and ``channels_last``: how the hardware runs it.

    Raises:
        ParamError: ``epochs`` below 1, or an unknown optimizer or scheduler.
    """

    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "none"
    grad_clip: float | None = None
    augment: Callable[[torch.Tensor, torch.Tensor],
                      tuple[torch.Tensor, torch.Tensor]] | None = None
    val_score_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None
    patience: int | None = None
    min_delta: float = 0.0
    max_minutes: float | None = None
    amp: bool | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ParamError(f"epochs must be at least 1, got {self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise ParamError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ParamError(f"scheduler must be one of {', '.join(SCHEDULERS)}, "
                             f"got {self.scheduler!r}")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore.

    Tiny networks (an MLP on a hundred features) train several times faster on one thread:
    with more, each small operation pays the threads' synchronisation, badly so on a busy
    machine.
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fingerprint(*parts: Any) -> str:
    """A short hash of anything printable (parameters, ids): tells checkpoints apart."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def _seed_epoch(seed: int, epoch: int, loader: Any, device: str = "cpu") -> None:
    """Seed torch's generator(s) and the loader's for ``epoch``. On the CPU only the CPU
    generator (the one a CPU training draws from): ``torch.manual_seed`` also queues a lazy
    seeding of CUDA, which records a stack trace each time, about 3 ms, as long as an epoch of
    a small network."""
    s = _epoch_seed(seed, epoch)
    if device == "cpu":
        torch.default_generator.manual_seed(s)
    else:
        torch.manual_seed(s)
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(s)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ParamError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _make_scheduler(name: str, optimizer: torch.optim.Optimizer, lr: float, epochs: int,
                    steps_per_epoch: int, patience: int | None) -> Any:
    total = max(1, epochs * max(1, steps_per_epoch))
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total,
                                                   pct_start=0.25)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(1, (patience or 4) // 2))
    raise ParamError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")


def _to_device(x: torch.Tensor, device: str, channels_last: bool = False) -> torch.Tensor:
    """``x`` on ``device``; a CPU batch bound for a GPU goes through pinned (page-locked)
    memory, so the copy is asynchronous (``non_blocking``) and the host queues the next
    kernels meanwhile (a loader that pins itself, ``pin_memory=True``, is not pinned twice)."""
    if device != "cpu" and x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _loss_on(loss_fn: Callable[..., torch.Tensor], logits: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
    if logits.shape != target.shape and logits.numel() == target.numel():
        logits = logits.reshape(target.shape)
    return loss_fn(logits.float(), target.float())


def _use_amp(amp: bool | None, device: str) -> bool:
    """Whether to train in mixed precision: ``amp`` None means "on CUDA" (off on the CPU,
    where bfloat16 is slower than float32 on most cores and changes the numbers); True asks
    for it on the CPU too (bfloat16)."""
    if amp is None:
        return device.startswith("cuda")
    return bool(amp)


def _autocast(enabled: bool, device: str = "cuda") -> contextlib.AbstractContextManager:
    """Autocast when ``enabled``: float16 on CUDA (with gradient scaling, see
    :class:`_Optimisation`), bfloat16 on the CPU (float32's range: no scaling); else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def _evaluate(model: nn.Module, loader: Iterable[Batch], loss_fn: Callable[..., torch.Tensor],
              device: str, amp: bool, channels_last: bool, keep: bool,
              counts: Callable[[torch.Tensor, torch.Tensor], Any] | None = None
              ) -> tuple[float, Any, torch.Tensor | None]:
    """``(mean loss, logits, targets)`` over ``loader``; with ``counts`` (a streamed score's
    per-batch counts, summed) ``(mean loss, summed counts, None)`` and nothing is kept."""
    model.eval()
    total, count = 0.0, 0
    outs: list[torch.Tensor] = []
    tgts: list[torch.Tensor] = []
    summed: Any = None
    autocast = _autocast(amp, device)
    with torch.no_grad():
        for x, y in loader:
            x = _to_device(x, device, channels_last)
            y = _to_device(y, device)
            with autocast:
                logits = model(x)
            loss = _loss_on(loss_fn, logits, y)
            total += float(loss.item()) * x.shape[0]
            count += x.shape[0]
            if counts is not None:
                batch = counts(logits.float().reshape(y.shape), y.float())
                summed = batch if summed is None else summed + batch
            elif keep:
                outs.append(logits.float().reshape(y.shape).cpu())
                tgts.append(y.float().cpu())
    if count == 0:
        return float("nan"), None, None
    if counts is not None:
        return total / count, summed, None
    if not keep:
        return total / count, None, None
    return total / count, torch.cat(outs), torch.cat(tgts)


# --------------------------------------------------------------------------- the pieces


class _Optimisation:
    """The optimiser, its learning-rate schedule and the AMP gradient scaler of one training
    (float16 on CUDA needs the scaling; bfloat16 on the CPU does not: it is disabled there)."""

    def __init__(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int,
                 amp: bool, device: str = "cpu") -> None:
        self.optimizer = _make_optimizer(config.optimizer, model.parameters(), config.lr,
                                         config.weight_decay)
        self.scheduler = _make_scheduler(config.scheduler, self.optimizer, config.lr,
                                         config.epochs, steps_per_epoch, config.patience)
        self.per_step = config.scheduler in ("cosine", "onecycle")
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and device.startswith("cuda"))
        self.amp, self.device = amp, device

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, model: nn.Module, loss: torch.Tensor, grad_clip: float | None) -> None:
        """Back-propagate ``loss`` (scaled under AMP), clip, step; per-step schedules advance."""
        self.scaler.scale(loss).backward()
        if grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None and self.per_step:
            self.scheduler.step()

    def end_epoch(self, score: float) -> None:
        """Per-epoch schedules (``plateau``) see the epoch's validation score."""
        if self.scheduler is not None and not self.per_step:
            self.scheduler.step(score)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])


@dataclass
class _Selection:
    """Model selection and early stopping: the best validation score so far, its epoch
    (0-based; -1 before the first) and weights, and the epochs since it."""

    min_delta: float = 0.0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = None

    def offer(self, score: float, epoch: int, model: nn.Module) -> bool:
        """Keep ``model``'s weights when ``score`` beats the best by more than ``min_delta``
        (the first epoch always does); True when it did."""
        if score > self.best_score + self.min_delta or self.best_epoch < 0:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_weights = _cpu_state(model)
            return True
        self.bad_epochs += 1
        return False


@dataclass
class _Progress:
    """Where a training stands: epochs done, their history rows, the model selection, the
    training seconds of earlier calls (``elapsed_before``, a resume) and how it ended."""

    selection: _Selection
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    done: bool = False
    stopped_early: bool = False
    timed_out: bool = False


class _Checkpoints:
    """``last.pt`` (everything a resume needs, written after every epoch) and ``best.pt`` (the
    best weights) in one folder; without a folder nothing is written or read."""

    def __init__(self, folder: Path | str | None, fingerprint: str | None,
                 every: float = 0.0) -> None:
        self.fingerprint, self.every = fingerprint, every
        self._written = time.perf_counter()
        self._best: dict[str, torch.Tensor] | None = None  # best weights not yet on disk
        self.last: Path | None = None
        self.best: Path | None = None
        if folder is not None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            self.last, self.best = folder / "last.pt", folder / "best.pt"

    def resume(self, model: nn.Module, optimisation: _Optimisation, min_delta: float,
               ctx: Context) -> _Progress:
        """Load ``last.pt`` into ``model`` and ``optimisation`` when it belongs to this
        configuration (same fingerprint); the progress it holds, or a fresh one."""
        progress = _Progress(_Selection(min_delta))
        if self.last is None or not self.last.exists():
            return progress
        state = torch.load(self.last, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            ctx.log("checkpoint belongs to another configuration; training afresh",
                    path=str(self.last))
            return progress
        model.load_state_dict(state["model"])
        optimisation.load_state_dict(state)
        selection = progress.selection
        progress.epoch = int(state["epoch"])
        progress.history = list(state["history"])
        selection.best_score, selection.best_epoch = (float(state["best_score"]),
                                                      int(state["best_epoch"]))
        selection.bad_epochs = int(state["bad_epochs"])
        progress.elapsed_before = float(state["elapsed"])
        progress.done = bool(state["done"])
        progress.stopped_early = bool(state["stopped_early"])
        progress.timed_out = bool(state["timed_out"])
        if self.best is not None and self.best.exists():
            selection.best_weights = torch.load(self.best, map_location="cpu",
                                                weights_only=True)
        for row in progress.history:
            if row not in ctx.history:
                ctx.history.append(dict(row))
        ctx.log("resuming from checkpoint", epoch=progress.epoch, done=progress.done)
        return progress

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        """New best weights: written to ``best.pt`` with the next ``last.pt``, so the two
        files always describe one moment of the training."""
        self._best = weights

    def save_last(self, model: nn.Module, optimisation: _Optimisation, progress: _Progress,
                  finished: bool, elapsed: float, *, force: bool = False,
                  timed_out: bool = False) -> None:
        """Write ``last.pt`` (and the pending ``best.pt``) when the training is finished,
        when ``force``, or when ``every`` seconds passed since the last write."""
        if self.last is None:
            return
        if not (finished or force or time.perf_counter() - self._written >= self.every):
            return
        if self._best is not None and self.best is not None:
            _atomic_torch_save(self._best, self.best)
            self._best = None
        selection = progress.selection
        opt = optimisation.state_dict()
        _atomic_torch_save({
            "model": model.state_dict(), "optimizer": opt["optimizer"],
            "scheduler": opt["scheduler"], "scaler": opt["scaler"],
            "epoch": progress.epoch, "history": progress.history,
            "best_score": selection.best_score, "best_epoch": selection.best_epoch,
            "bad_epochs": selection.bad_epochs, "elapsed": elapsed,
            "done": finished, "stopped_early": progress.stopped_early,
            "timed_out": timed_out, "fingerprint": self.fingerprint,
        }, self.last)
        self._written = time.perf_counter()


# --------------------------------------------------------------------------- the steps


def _steps_per_epoch(loader: Iterable[Batch]) -> int:
    return len(loader) if hasattr(loader, "__len__") else 1  # type: ignore[arg-type]


def _budget_spent(progress: _Progress, elapsed: float, max_minutes: float | None) -> bool:
    """Whether one more epoch of the mean length so far would pass ``max_minutes``."""
    if max_minutes is None or not progress.history:
        return False
    mean_epoch = sum(r["seconds"] for r in progress.history) / len(progress.history)
    return elapsed + mean_epoch > max_minutes * 60


def _train_epoch(model: nn.Module, loader: Iterable[Batch], loss_fn: Callable[..., torch.Tensor],
                 optimisation: _Optimisation, config: TrainConfig, epoch: int,
                 ctx: Context) -> float:
    """One pass over ``loader`` (seeded for ``epoch``, see the module docstring); the mean
    training loss."""
    device, channels_last = ctx.device, config.channels_last
    _seed_epoch(ctx.seed, epoch, loader, device)
    model.train()
    autocast = _autocast(optimisation.amp, device)
    losses: list[torch.Tensor] = []
    sizes: list[int] = []
    bar = ctx.progress(loader, desc=f"epoch {epoch + 1}/{config.epochs}",
                       total=_steps_per_epoch(loader) if hasattr(loader, "__len__") else None)
    for x, y in bar:
        x, y = _to_device(x, device), _to_device(y, device)
        if config.augment is not None:
            x, y = config.augment(x, y)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        optimisation.optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(x)
        loss = _loss_on(loss_fn, logits, y)
        optimisation.step(model, loss, config.grad_clip)
        losses.append(loss.detach())  # read once per epoch: no device sync per step
        sizes.append(x.shape[0])
    values = torch.stack(losses).tolist() if losses else []
    total = sum(float(v) * n for v, n in zip(values, sizes, strict=True))
    return total / max(sum(sizes), 1)


def _validate(model: nn.Module, loader: Iterable[Batch] | None,
              loss_fn: Callable[..., torch.Tensor], config: TrainConfig, amp: bool,
              device: str) -> tuple[float, float | None]:
    """``(val_loss, val_metric)``: NaN and None without a validation loader, None without a
    ``val_score_fn``."""
    if loader is None:
        return float("nan"), None
    score_fn = config.val_score_fn
    counts = getattr(score_fn, "counts", None)  # a streamed score: summed per-batch counts
    val_loss, logits, targets = _evaluate(model, loader, loss_fn, device, amp,
                                          config.channels_last, score_fn is not None, counts)
    if score_fn is None or logits is None:
        return val_loss, None
    if counts is not None:
        return val_loss, float(score_fn.from_counts(logits))  # type: ignore[union-attr]
    return val_loss, float(score_fn(logits, targets))


def _selection_score(val_metric: float | None, val_loss: float, train_loss: float) -> float:
    """What model selection maximises: the validation metric, else ``-val_loss``, else (no
    validation data) ``-train_loss``."""
    if val_metric is not None:
        return val_metric
    return -val_loss if not math.isnan(val_loss) else -train_loss


def _run_epoch(model: nn.Module, train_loader: Iterable[Batch],
               val_loader: Iterable[Batch] | None, loss_fn: Callable[..., torch.Tensor],
               config: TrainConfig, optimisation: _Optimisation, progress: _Progress,
               checkpoints: _Checkpoints, ctx: Context) -> dict[str, Any]:
    """Train one epoch, validate, select, record: the epoch's history row."""
    t_epoch = time.perf_counter()
    epoch = progress.epoch
    train_loss = _train_epoch(model, train_loader, loss_fn, optimisation, config, epoch, ctx)
    val_loss, val_metric = _validate(model, val_loader, loss_fn, config, optimisation.amp,
                                     ctx.device)
    score = _selection_score(val_metric, val_loss, train_loss)
    optimisation.end_epoch(score)
    selection = progress.selection
    if selection.offer(score, epoch, model):
        checkpoints.save_best(selection.best_weights)  # type: ignore[arg-type]
    row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
           "val_metric": val_metric, "lr": optimisation.lr,
           "seconds": time.perf_counter() - t_epoch}
    progress.history.append(row)
    ctx.record(**row)
    ctx.log("epoch", **{k: v for k, v in row.items() if v is not None})
    progress.epoch = epoch + 1
    if (config.patience is not None and val_loader is not None
            and selection.bad_epochs >= config.patience):
        progress.stopped_early = True
    return row


# --------------------------------------------------------------------------- the loop


def fit_model(model: nn.Module, train_loader: Iterable[Batch],
              val_loader: Iterable[Batch] | None, loss_fn: Callable[..., torch.Tensor],
              ctx: Context, config: TrainConfig, *, checkpoint_dir: Path | str | None = None,
              fingerprint: str | None = None,
              on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
              checkpoint_every: float = CHECKPOINT_EVERY) -> TrainResult:
    """Train ``model`` by ``config`` with early stopping, checkpoints and resume; see the
    module docstring.

    Returns:
        A :class:`TrainResult`; ``model`` holds the best weights, in eval mode, on
        ``ctx.device``.
    """
    use_amp = _use_amp(config.amp, ctx.device)
    model.to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimisation = _Optimisation(model, config, _steps_per_epoch(train_loader), use_amp,
                                 ctx.device)
    checkpoints = _Checkpoints(checkpoint_dir, fingerprint, checkpoint_every)
    progress = checkpoints.resume(model, optimisation, config.min_delta, ctx)
    start_epoch = progress.epoch
    t0 = time.perf_counter()

    def elapsed() -> float:
        return progress.elapsed_before + time.perf_counter() - t0

    while not progress.done and progress.epoch < config.epochs:
        if _budget_spent(progress, elapsed(), config.max_minutes):
            progress.timed_out = True
            ctx.log("time budget reached", minutes=config.max_minutes, epochs=progress.epoch)
            break
        row = _run_epoch(model, train_loader, val_loader, loss_fn, config, optimisation,
                         progress, checkpoints, ctx)
        finished = progress.stopped_early or progress.epoch >= config.epochs
        checkpoints.save_last(model, optimisation, progress, finished, elapsed())
        if on_epoch_end is not None:
            on_epoch_end(progress.epoch, row)
        if progress.stopped_early:
            ctx.log("early stop", best_epoch=progress.selection.best_epoch + 1,
                    best_score=progress.selection.best_score)
            break

    if progress.timed_out:  # recorded as done: a rerun does not train on
        checkpoints.save_last(model, optimisation, progress, True, elapsed(), timed_out=True)
    return _restore_best(model, progress, start_epoch, elapsed(), ctx.device)


def _restore_best(model: nn.Module, progress: _Progress, start_epoch: int, seconds: float,
                  device: str) -> TrainResult:
    """Load the best weights into ``model`` (eval mode, on ``device``); the result."""
    selection = progress.selection
    if selection.best_weights is not None:
        model.load_state_dict(selection.best_weights)
    model.to(device)
    model.eval()
    return TrainResult(best_epoch=selection.best_epoch + 1, best_score=selection.best_score,
                       epochs_run=len(progress.history),
                       history=copy.deepcopy(progress.history),
                       stopped_early=progress.stopped_early, timed_out=progress.timed_out,
                       resumed_from=start_epoch, seconds=seconds)


def predict_batches(model: nn.Module, inputs: torch.Tensor, device: str, batch_size: int = 32,
                    *, activation: Callable[[torch.Tensor], torch.Tensor] | None = torch.sigmoid,
                    amp: bool | None = None, channels_last: bool = False) -> torch.Tensor:
    """Run ``model`` over ``inputs`` ``(n, C, H, W)`` in batches; float32 CPU outputs.

    The model is put in eval mode on ``device``; ``activation`` (default sigmoid) turns logits
    into probabilities (None keeps logits). Mixed precision only on CUDA (``amp`` None: on).
    """
    use_amp = _use_amp(amp, device)
    model.to(device)
    model.eval()
    outs = []
    autocast = _autocast(use_amp, device)
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            x = _to_device(inputs[start:start + batch_size], device, channels_last)
            with autocast:
                out = model(x)
            out = out.float()
            if activation is not None:
                out = activation(out)
            outs.append(out.cpu())
    if not outs:
        return torch.zeros((0,))
    return torch.cat(outs)
