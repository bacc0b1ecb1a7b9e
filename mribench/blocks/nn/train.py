"""The one training loop of the deep methods: early stopping, checkpoints, resume, AMP.

API (what a plugin calls)::

    from mribench.blocks.nn.data import Augment, SampleDataset, make_loader
    from mribench.blocks.nn.losses import make_loss, pooled_dice
    from mribench.blocks.nn.train import fingerprint, fit_model, predict_batches, seed_everything

    seed_everything(ctx.seed)                      # before building the model (weight init)
    model = MyNet(...)
    train_loader = make_loader(SampleDataset(train, 128, target="mask"), 16, shuffle=True,
                               seed=ctx.seed)
    val_loader = make_loader(SampleDataset(val, 128, target="mask"), 32)
    result = fit_model(model, train_loader, val_loader, make_loss("dice+bce"), ctx,
                       epochs=30, lr=1e-3, patience=8, val_score_fn=pooled_dice,
                       checkpoint_dir=ctx.subdir("checkpoints"), augment=Augment(rot90=True),
                       scheduler="onecycle", fingerprint=fingerprint(params.digest(), ids))
    probs = predict_batches(model, images, ctx.device, batch_size=32)   # sigmoid outputs

``fit_model(model, train_loader, val_loader, loss_fn, ctx, *, epochs, lr=1e-3,
weight_decay=0.0, patience=None, val_score_fn=None, checkpoint_dir=None, max_minutes=None,
scheduler="none", amp=None, channels_last=False, augment=None, optimizer="adam",
grad_clip=None, min_delta=0.0, fingerprint=None, on_epoch_end=None) -> TrainResult``

- ``train_loader`` / ``val_loader``: any iterables of ``(inputs, targets)`` batches (usually
  :func:`mribench.blocks.nn.data.make_loader`); the model maps inputs to logits shaped like targets
  (or with the same number of elements). ``val_loader`` may be None (no early stopping).
- ``val_score_fn(logits, targets) -> float``: the validation metric, *higher is better*,
  computed on the concatenated validation logits and targets (e.g.
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
- ``amp``: mixed precision (float16 autocast + gradient scaling); None means "on CUDA", and
  it is always off on the CPU. ``channels_last`` converts model and batches to NHWC.
- Per epoch: a progress bar over the batches (``ctx.progress``), one ``ctx.record(epoch=,
  train_loss=, val_loss=, val_metric=, lr=, seconds=)`` row and one ``ctx.log`` line.
- Checkpoints (``checkpoint_dir``, normally ``ctx.subdir("checkpoints")``): ``last.pt``
  (model, optimizer, scheduler, scaler, epoch, history, early-stopping state; written
  atomically after every epoch) and ``best.pt`` (the best weights). When ``last.pt`` exists
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mribench.api.context import Context
from mribench.api.errors import ParamError
from mribench.api.params import FLAG, Constraint, Interval, MethodParams, OneOf, OrNone
from mribench.api.seeding import seed_everything  # re-exported for the plugins

__all__ = ["OPTIMIZERS", "SCHEDULERS", "TRAINING_RULES", "TrainParams", "TrainResult",
           "fingerprint", "fit_model", "predict_batches", "seed_everything", "torch_threads"]

SCHEDULERS = ("none", "cosine", "onecycle", "plateau")
OPTIMIZERS = ("adam", "adamw", "sgd")

Batch = tuple[torch.Tensor, torch.Tensor]

#: The one table of constraints of the training knobs the deep plugins share (the arguments of
#: :func:`fit_model` and of the networks they build). A :class:`TrainParams` subclass that has
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
}


@dataclass(frozen=True)
class TrainParams(MethodParams):
    """Base of the ``Params`` of every deep plugin: the training knobs all of them have, and
    the rules of :data:`TRAINING_RULES` for those (and for the ones only some declare:
    ``epochs``, ``weight_decay``, ``max_minutes``, ``optimizer``, ``scheduler``, ``augment``,
    ``infer_batch``). A subclass declares its own fields with its defaults (re-declaring a
    field here changes its default) and ``constraints`` for the rest.

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


def _seed_epoch(seed: int, epoch: int, loader: Any) -> None:
    s = _epoch_seed(seed, epoch)
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


def _to_device(x: torch.Tensor, device: str, channels_last: bool) -> torch.Tensor:
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
    """Mixed precision only on CUDA; ``amp`` None means "wherever it can"."""
    return device == "cuda" and (amp is None or bool(amp))


def _autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when ``enabled``, else a no-op context."""
    return (torch.autocast(device_type="cuda", dtype=torch.float16) if enabled
            else contextlib.nullcontext())


def _evaluate(model: nn.Module, loader: Iterable[Batch], loss_fn: Callable[..., torch.Tensor],
              device: str, amp: bool, channels_last: bool, keep: bool
              ) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    model.eval()
    total, count = 0.0, 0
    outs: list[torch.Tensor] = []
    tgts: list[torch.Tensor] = []
    autocast = _autocast(amp)
    with torch.no_grad():
        for x, y in loader:
            x = _to_device(x, device, channels_last)
            y = y.to(device)
            with autocast:
                logits = model(x)
            loss = _loss_on(loss_fn, logits, y)
            total += float(loss.item()) * x.shape[0]
            count += x.shape[0]
            if keep:
                outs.append(logits.float().reshape(y.shape).cpu())
                tgts.append(y.float().cpu())
    if count == 0:
        return float("nan"), None, None
    if not keep:
        return total / count, None, None
    return total / count, torch.cat(outs), torch.cat(tgts)


def fit_model(model: nn.Module, train_loader: Iterable[Batch],
              val_loader: Iterable[Batch] | None, loss_fn: Callable[..., torch.Tensor],
              ctx: Context, *, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
              patience: int | None = None,
              val_score_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
              checkpoint_dir: Path | str | None = None, max_minutes: float | None = None,
              scheduler: str = "none", amp: bool | None = None, channels_last: bool = False,
              augment: Callable[[torch.Tensor, torch.Tensor],
                                tuple[torch.Tensor, torch.Tensor]] | None = None,
              optimizer: str = "adam", grad_clip: float | None = None, min_delta: float = 0.0,
              fingerprint: str | None = None,
              on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
              ) -> TrainResult:
    """Train ``model`` with early stopping, checkpoints and resume; see the module docstring.

    Returns:
        A :class:`TrainResult`; ``model`` holds the best weights, in eval mode, on
        ``ctx.device``.
    """
    if epochs < 1:
        raise ParamError(f"epochs must be at least 1, got {epochs}")
    device = ctx.device
    use_amp = _use_amp(amp, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    steps = len(train_loader) if hasattr(train_loader, "__len__") else 1  # type: ignore[arg-type]
    sched = _make_scheduler(scheduler, opt, lr, epochs, steps, patience)
    per_step = scheduler in ("cosine", "onecycle")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    autocast = _autocast(use_amp)

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    last_path = ckpt_dir / "last.pt" if ckpt_dir is not None else None
    best_path = ckpt_dir / "best.pt" if ckpt_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    start_epoch = 0
    history: list[dict[str, Any]] = []
    best_score, best_epoch, bad_epochs = -math.inf, -1, 0
    best_state: dict[str, torch.Tensor] | None = None
    elapsed_before = 0.0
    done = stopped_early = timed_out = False

    if last_path is not None and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            ctx.log("checkpoint belongs to another configuration; training afresh",
                    path=str(last_path))
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            if state.get("scaler") is not None:
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"])
            history = list(state["history"])
            best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
            bad_epochs = int(state["bad_epochs"])
            elapsed_before = float(state["elapsed"])
            done = bool(state["done"])
            stopped_early, timed_out = bool(state["stopped_early"]), bool(state["timed_out"])
            if best_path is not None and best_path.exists():
                best_state = torch.load(best_path, map_location="cpu", weights_only=True)
            for row in history:
                if row not in ctx.history:
                    ctx.history.append(dict(row))
            ctx.log("resuming from checkpoint", epoch=start_epoch, done=done)

    t0 = time.perf_counter()
    epoch = start_epoch
    while not done and epoch < epochs:
        elapsed = elapsed_before + time.perf_counter() - t0
        if max_minutes is not None and history:
            mean_epoch = sum(r["seconds"] for r in history) / len(history)
            if elapsed + mean_epoch > max_minutes * 60:
                timed_out = True
                ctx.log("time budget reached", minutes=max_minutes, epochs=epoch)
                break
        t_epoch = time.perf_counter()
        _seed_epoch(ctx.seed, epoch, train_loader)
        model.train()
        total, count = 0.0, 0
        bar = ctx.progress(train_loader, desc=f"epoch {epoch + 1}/{epochs}",
                           total=steps if hasattr(train_loader, "__len__") else None)
        for x, y in bar:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if augment is not None:
                x, y = augment(x, y)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = model(x)
            loss = _loss_on(loss_fn, logits, y)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            if sched is not None and per_step:
                sched.step()
            total += float(loss.item()) * x.shape[0]
            count += x.shape[0]
        train_loss = total / max(count, 1)

        val_loss, val_metric = float("nan"), None
        if val_loader is not None:
            val_loss, logits, targets = _evaluate(model, val_loader, loss_fn, device, use_amp,
                                                  channels_last, val_score_fn is not None)
            if val_score_fn is not None and logits is not None:
                val_metric = float(val_score_fn(logits, targets))
        score = (val_metric if val_metric is not None
                 else (-val_loss if not math.isnan(val_loss) else -train_loss))
        if sched is not None and not per_step:
            sched.step(score)

        improved = score > best_score + min_delta or best_epoch < 0
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state = _cpu_state(model)
            if best_path is not None:
                _atomic_torch_save(best_state, best_path)
        else:
            bad_epochs += 1
        seconds = time.perf_counter() - t_epoch
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "val_metric": val_metric, "lr": opt.param_groups[0]["lr"], "seconds": seconds}
        history.append(row)
        ctx.record(**row)
        ctx.log("epoch", **{k: v for k, v in row.items() if v is not None})
        epoch += 1
        if patience is not None and val_loader is not None and bad_epochs >= patience:
            stopped_early = True
        finished = stopped_early or epoch >= epochs
        if last_path is not None:
            _atomic_torch_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict() if use_amp else None,
                "epoch": epoch, "history": history, "best_score": best_score,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "elapsed": elapsed_before + time.perf_counter() - t0,
                "done": finished, "stopped_early": stopped_early, "timed_out": False,
                "fingerprint": fingerprint,
            }, last_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if stopped_early:
            ctx.log("early stop", best_epoch=best_epoch + 1, best_score=best_score)
            break

    if timed_out and last_path is not None and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        state.update(done=True, timed_out=True)
        _atomic_torch_save(state, last_path)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to(device)
    model.eval()
    return TrainResult(best_epoch=best_epoch + 1, best_score=best_score, epochs_run=len(history),
                       history=copy.deepcopy(history), stopped_early=stopped_early,
                       timed_out=timed_out, resumed_from=start_epoch,
                       seconds=elapsed_before + time.perf_counter() - t0)


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
    autocast = _autocast(use_amp)
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
