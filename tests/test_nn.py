"""The torch machinery: blocks' shapes, augmentation, losses, and the training loop's early
stopping, checkpoints and resume (an interrupted run ends with the same weights)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mribench.api.context import Context
from mribench.api.errors import DataError, ParamError
from mribench.api.types import Sample
from mribench.blocks.nn.blocks import ConvBlock, Down, OutConv, Up, count_parameters
from mribench.blocks.nn.data import (
    Augment,
    SampleDataset,
    images_to_tensor,
    make_loader,
    masks_to_tensor,
    resize_back,
)
from mribench.blocks.nn.losses import DiceBCELoss, DiceLoss, binary_accuracy, make_loss, pooled_dice
from mribench.blocks.nn.train import (
    TrainConfig,
    fit_model,
    predict_batches,
    seed_everything,
    torch_threads,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.enc = ConvBlock(1, 4)
        self.down = Down(4, 8, dropout=dropout)
        self.up = Up(8, 4, 4)
        self.head = OutConv(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc(x)
        return self.head(self.up(self.down(a), a))


def _disc_samples(n: int, size: int = 16, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        cy, cx = rng.integers(4, size - 4, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        image = (0.3 + 0.1 * rng.standard_normal((size, size)) + 0.4 * mask).astype(np.float32)
        out.append(Sample(id=f"d{i}", group=f"d{i}", label=1, image=image.clip(0, 1), mask=mask))
    return out


def _loaders(seed: int = 0):
    samples = _disc_samples(24)
    train = make_loader(SampleDataset(samples[:16], target="mask"), 4, shuffle=True, seed=seed)
    val = make_loader(SampleDataset(samples[16:], target="mask"), 8)
    return train, val


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FIT = TrainConfig(epochs=5, lr=1e-2, scheduler="onecycle", val_score_fn=pooled_dice,
                  augment=Augment(rot90=True, max_angle=10, brightness=0.1, contrast=0.1))


@pytest.mark.parametrize("size", [16, 17])
def test_blocks_shapes(size: int) -> None:
    x = torch.zeros(2, 3, size, size)
    a = ConvBlock(3, 5)(x)
    assert a.shape == (2, 5, size, size)
    d = Down(5, 7)(a)
    assert d.shape == (2, 7, size // 2, size // 2)
    u = Up(7, 5, 6)(d, a)
    assert u.shape == (2, 6, size, size)
    assert OutConv(6, 1)(u).shape == (2, 1, size, size)
    assert count_parameters(ConvBlock(1, 2)) == 1 * 2 * 9 + 2 * 2 * 9 + 2 * 2 * 2


def test_augment_moves_mask_with_image() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 12, 12)
    y = (x > 0.5).float()
    aug = Augment(hflip=0.5, vflip=0.5, rot90=True)
    xa, ya = aug(x, y)
    assert torch.equal(ya, (xa > 0.5).float())
    assert not torch.equal(xa, x)  # something moved
    labels = torch.ones(16)
    xb, lb = Augment(brightness=0.2, contrast=0.2)(x, labels)
    assert lb is labels and xb.min() >= 0 and xb.max() <= 1
    two = torch.rand(4, 2, 8, 8)
    xc, _ = Augment(hflip=0.0, brightness=0.3, intensity_channels=1)(two, None)
    assert torch.equal(xc[:, 1], two[:, 1]) and not torch.equal(xc[:, 0], two[:, 0])


def test_tensors_and_resizing() -> None:
    samples = _disc_samples(3, size=16)
    x = images_to_tensor(samples, 8, extra=[s.image for s in samples])
    assert x.shape == (3, 2, 8, 8)
    m = masks_to_tensor(samples, 8)
    assert m.shape == (3, 1, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
    back = resize_back(m, [(16, 16), (20, 10), (16, 16)])
    assert back[1].shape == (20, 10)
    unknown = Sample(id="u", group="u", label=1, image=np.zeros((8, 8), np.float32))
    with pytest.raises(DataError, match="'u'"):
        masks_to_tensor([unknown])
    empty = Sample(id="e", group="e", label=0, image=np.zeros((8, 8), np.float32))
    assert masks_to_tensor([empty]).sum() == 0


def test_losses() -> None:
    y = torch.zeros(2, 1, 4, 4)
    y[0, 0, :2] = 1
    perfect = (y * 2 - 1) * 20
    assert DiceLoss()(perfect, y) < 1e-3
    assert DiceBCELoss()(perfect, y) < 1e-3
    assert DiceLoss()(-perfect, y) > 0.9
    assert pooled_dice(perfect, y) == pytest.approx(1.0)
    assert pooled_dice(-perfect, y) == 0.0
    assert binary_accuracy(torch.tensor([3.0, -1.0, 2.0]), torch.tensor([1.0, 0.0, 0.0])) == (
        pytest.approx(2 / 3))
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss("hinge")


def test_training_learns_and_checkpoint_reloads(tmp_path: Path) -> None:
    train, val = _loaders()
    seed_everything(0)
    model = TinyNet()
    ctx = Context(workdir=tmp_path)
    result = fit_model(model, train, val, make_loss("dice+bce"), ctx,
                       dataclasses.replace(FIT, epochs=12), checkpoint_dir=tmp_path / "ckpt")
    assert result.best_score > 0.5  # discs are easy
    assert len(ctx.history) == 12 and {"epoch", "train_loss", "val_loss", "val_metric",
                                       "seconds"} <= ctx.history[0].keys()
    x = val.dataset.inputs
    expected = predict_batches(model, x, "cpu", batch_size=3)
    reloaded = TinyNet()
    reloaded.load_state_dict(torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True))
    assert torch.equal(predict_batches(reloaded, x, "cpu"), expected)
    assert pooled_dice(torch.logit(expected.clamp(1e-6, 1 - 1e-6)),
                       val.dataset.targets) == pytest.approx(result.best_score)


def test_early_stopping_restores_best(tmp_path: Path) -> None:
    train, val = _loaders()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.9])
    states: dict[int, dict[str, torch.Tensor]] = {}
    seed_everything(0)
    model = TinyNet()
    recipe = TrainConfig(epochs=7, lr=1e-2, patience=3,
                         val_score_fn=lambda logits, y: next(scores))
    result = fit_model(model, train, val, make_loss("bce"), Context(), recipe,
                       on_epoch_end=lambda epoch, row: states.__setitem__(epoch, _state(model)))
    assert result.stopped_early and result.epochs_run == 5
    assert result.best_epoch == 2 and result.best_score == 0.5
    assert _same(_state(model), states[2])


def test_interrupted_training_resumes_to_same_weights(tmp_path: Path) -> None:
    seed_everything(0)
    full_model = TinyNet()
    train, val = _loaders()
    full = fit_model(full_model, train, val, make_loss("dice+bce"), Context(), FIT,
                     checkpoint_dir=tmp_path / "full")

    def interrupt(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    seed_everything(0)
    train, val = _loaders()
    with pytest.raises(KeyboardInterrupt):
        fit_model(TinyNet(), train, val, make_loss("dice+bce"), Context(), FIT,
                  checkpoint_dir=tmp_path / "cut", on_epoch_end=interrupt, checkpoint_every=0)
    seed_everything(123)  # a different start must not matter: everything comes from the checkpoint
    resumed_model = TinyNet()
    train, val = _loaders()
    ctx = Context()
    resumed = fit_model(resumed_model, train, val, make_loss("dice+bce"), ctx, FIT,
                        checkpoint_dir=tmp_path / "cut")
    assert resumed.resumed_from == 2 and resumed.epochs_run == full.epochs_run == 5
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert len(ctx.history) == 5
    assert _same(_state(resumed_model), _state(full_model))

    # A finished training is not repeated; another configuration starts afresh.
    again = fit_model(TinyNet(), train, val, make_loss("dice+bce"), Context(), FIT,
                      checkpoint_dir=tmp_path / "cut")
    assert again.resumed_from == 5 and again.best_score == resumed.best_score
    other = fit_model(TinyNet(), train, val, make_loss("dice+bce"), Context(), FIT,
                      checkpoint_dir=tmp_path / "cut", fingerprint="other")
    assert other.resumed_from == 0


def test_checkpoints_between_writes_are_redone_to_the_same_weights(tmp_path: Path) -> None:
    """Checkpoints are written at most every ``checkpoint_every`` seconds, and always at the
    end: an interruption before the first write resumes from scratch, to the same weights."""
    seed_everything(0)
    full_model = TinyNet()
    train, val = _loaders()
    full = fit_model(full_model, train, val, make_loss("dice+bce"), Context(), FIT)
    written: list[bool] = []

    def interrupt(epoch: int, row: dict) -> None:
        written.append((tmp_path / "cut" / "last.pt").exists())
        if epoch == 3:
            raise KeyboardInterrupt

    seed_everything(0)
    with pytest.raises(KeyboardInterrupt):
        fit_model(TinyNet(), train, val, make_loss("dice+bce"), Context(), FIT,
                  checkpoint_dir=tmp_path / "cut", on_epoch_end=interrupt,
                  checkpoint_every=3600)
    assert written == [False, False, False]
    assert not (tmp_path / "cut" / "best.pt").exists()
    seed_everything(0)
    resumed_model = TinyNet()
    resumed = fit_model(resumed_model, train, val, make_loss("dice+bce"), Context(), FIT,
                        checkpoint_dir=tmp_path / "cut", checkpoint_every=3600)
    assert resumed.resumed_from == 0 and resumed.best_epoch == full.best_epoch
    assert _same(_state(resumed_model), _state(full_model))
    # the end is always written, best weights with it
    best = TinyNet()
    best.load_state_dict(torch.load(tmp_path / "cut" / "best.pt", weights_only=True))
    assert _same(_state(best), _state(full_model))
    again = fit_model(TinyNet(), train, val, make_loss("dice+bce"), Context(), FIT,
                      checkpoint_dir=tmp_path / "cut", checkpoint_every=3600)
    assert again.resumed_from == 5 and again.best_score == full.best_score


def test_time_budget_and_bad_settings(tmp_path: Path) -> None:
    train, val = _loaders()
    budget = TrainConfig(epochs=50, lr=1e-3, max_minutes=1e-6)
    result = fit_model(TinyNet(), train, val, make_loss("bce"), Context(), budget,
                       checkpoint_dir=tmp_path, checkpoint_every=3600)
    assert result.timed_out and result.epochs_run == 1
    # the budget's end is written even between two checkpoint times: a rerun stops there
    again = fit_model(TinyNet(), train, val, make_loss("bce"), Context(), budget,
                      checkpoint_dir=tmp_path, checkpoint_every=3600)
    assert again.timed_out and again.resumed_from == 1 and again.epochs_run == 1
    with pytest.raises(ParamError, match="scheduler"):
        TrainConfig(epochs=1, scheduler="warm")
    with pytest.raises(ParamError, match="optimizer"):
        TrainConfig(epochs=1, optimizer="lbfgs")
    with pytest.raises(ParamError, match="epochs"):
        TrainConfig(epochs=0)


def test_torch_threads_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_amp_is_off_on_the_cpu_unless_asked_and_then_bfloat16(tmp_path: Path) -> None:
    """``amp=None`` on the CPU trains in float32 (the quick profiles' numbers); ``amp=True``
    autocasts to bfloat16 there, without a gradient scaler (float16's is CUDA's)."""
    runs = {}
    for amp in (None, False, True):
        train, val = _loaders()
        seed_everything(0)
        model = TinyNet()
        folder = tmp_path / str(amp)
        result = fit_model(model, train, val, make_loss("bce"), Context(),
                           TrainConfig(epochs=2, lr=1e-2, amp=amp), checkpoint_dir=folder)
        assert np.isfinite(result.history[-1]["train_loss"])
        assert torch.load(folder / "last.pt", weights_only=True)["scaler"] is None
        runs[amp] = (_state(model), [r["train_loss"] for r in result.history])
    assert _same(runs[None][0], runs[False][0]) and runs[None][1] == runs[False][1]
    assert runs[True][1] != runs[False][1]  # bfloat16 arithmetic: other (close) numbers
    assert runs[True][1] == pytest.approx(runs[False][1], rel=0.05)


@pytest.mark.parametrize(("shuffle", "drop_last"), [(True, True), (True, False), (False, False)])
def test_tensor_loaders_fetch_whole_batches_identical_to_per_sample(shuffle: bool,
                                                                     drop_last: bool) -> None:
    """make_loader indexes in-memory tensors once per batch: the batches (and their order,
    epoch after epoch under fit_model's re-seeding) are those of a per-sample DataLoader."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y = torch.randn(70, 1, 4, 4), torch.randint(0, 2, (70,)).float()
    fast = make_loader(TensorDataset(x, y), 16, shuffle=shuffle, seed=3, drop_last=drop_last)
    generator = torch.Generator().manual_seed(3)
    slow = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle, drop_last=drop_last,
                      generator=generator)
    assert len(fast) == len(slow) == (4 if drop_last else 5)
    for epoch in range(3):
        fast.generator.manual_seed(epoch)
        slow.generator.manual_seed(epoch)
        pairs = list(zip(fast, slow, strict=True))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
