"""Streamed deep data feeding: the same batches, weights and predictions as the stacked path,
and nothing stacked (issue 22, item 1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mribench.api.context import Context
from mribench.api.types import Sample
from mribench.blocks.nn.data import (
    EpochSampler,
    SampleDataset,
    SliceDataset,
    images_to_tensor,
    make_loader,
    resize_back,
    stream_inputs,
)
from mribench.blocks.nn.losses import POOLED_DICE, make_loss, pooled_dice
from mribench.blocks.nn.train import TrainConfig, fit_model, predict_batches, seed_everything
from mribench.data.store import StoreWriter
from mribench.methods.unet import UNet, UNetSegmenter


class CountingReader:
    """A sample reader that counts the slices read (wraps a store)."""

    def __init__(self, store) -> None:
        self.store, self.shape, self.images, self.masks = store, store.shape, 0, 0

    def read_image(self, index: int) -> np.ndarray:
        self.images += 1
        return self.store.read_image(index)

    def read_mask(self, index: int) -> np.ndarray | None:
        self.masks += 1
        return self.store.read_mask(index)

    def has_mask(self, index: int) -> bool:
        return self.store.has_mask(index)


@pytest.fixture
def stored(tiny_samples, tmp_path: Path) -> tuple[list[Sample], CountingReader]:
    writer = StoreWriter(tmp_path / "store")
    for s in tiny_samples(n=20, size=40, seed=3):
        writer.add(s)
    store = writer.close()
    reader = CountingReader(store)
    samples = [Sample.stored(reader, i, id=r["id"], group=r["group"], label=r["label"])
               for i, r in enumerate(store.records)]
    return samples, reader


@pytest.mark.parametrize("size", [32, 48, None])
def test_items_equal_the_stacked_rows(stored, size) -> None:
    samples, _ = stored
    for target in ("mask", "label"):
        stacked = SampleDataset(samples, size, target=target)
        streamed = SliceDataset(samples, size, target=target)
        assert len(streamed) == len(stacked)
        for i in range(len(samples)):
            x, y = streamed[i]
            assert torch.equal(x, stacked.inputs[i]) and torch.equal(y, stacked.targets[i])


def test_the_dataset_reads_one_slice_per_item(stored) -> None:
    samples, reader = stored
    data = SliceDataset(samples, 32, target="mask")
    assert (reader.images, reader.masks) == (0, 0)  # nothing read, nothing stacked
    data[7]
    assert (reader.images, reader.masks) == (1, 1)
    assert not any(isinstance(v, torch.Tensor) for v in vars(data).values())
    batches = list(stream_inputs(samples, 32, 6))
    assert [len(b) for b in batches] == [6, 6, 6, 2] and reader.images == 21
    assert torch.equal(torch.cat(batches), images_to_tensor(samples, 32))


def test_loaders_give_the_stacked_batches(stored) -> None:
    samples, _ = stored
    stacked = make_loader(SampleDataset(samples, 32, target="mask"), 4, shuffle=True, seed=5,
                          drop_last=True)
    streamed = make_loader(SliceDataset(samples, 32, target="mask"), 4, shuffle=True, seed=5,
                           drop_last=True, workers=1)
    for epoch in range(2):
        for loader in (stacked, streamed):
            loader.generator.manual_seed(100 + epoch)
        for (xa, ya), (xb, yb) in zip(stacked, streamed, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_streamed_training_gives_the_stacked_weights(stored, tmp_path: Path,
                                                     torch_one_thread) -> None:
    samples, _ = stored
    weights = []
    for kind in (SampleDataset, SliceDataset):
        seed_everything(0)
        model = UNet(1, 1, 4, 2)
        train = make_loader(kind(samples[:14], 32, target="mask"), 4, shuffle=True, seed=0,
                            drop_last=True)
        val = make_loader(kind(samples[14:], 32, target="mask"), 3)
        score = pooled_dice if kind is SampleDataset else POOLED_DICE
        result = fit_model(model, train, val, make_loss("dice+bce"), Context(seed=0),
                           TrainConfig(epochs=2, lr=3e-3, val_score_fn=score))
        weights.append((model.state_dict(), result.best_score))
    (a, score_a), (b, score_b) = weights
    assert score_a == score_b
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unet_predictions_equal_the_stacked_reference(stored, tmp_path: Path,
                                                      torch_one_thread) -> None:
    samples, _ = stored
    method = UNetSegmenter(UNetSegmenter.params_for("quick", image_size=32, base_width=4,
                                                    depth=2, epochs=2, infer_batch=3))
    ctx = Context(seed=0, workdir=tmp_path)
    method.fit(samples[:12], samples[12:16], ctx)
    masks, maps = method.predict_masks(samples[16:] + samples[:3], ctx)
    # the stacked path of before: the whole stack through the network, TTA, resized back
    images = images_to_tensor(samples[16:] + samples[:3], 32)
    run = lambda x: predict_batches(method.model_, x, "cpu", 3)  # noqa: E731
    probs = 0.5 * (run(images) + run(images.flip(-1)).flip(-1))
    ref = np.stack(resize_back(probs, [s.shape for s in samples[:7]]))
    assert np.array_equal(maps, ref.astype(np.float16))
    assert np.array_equal(masks, ref >= method.threshold_)


def test_epoch_sampler_oversamples_foreground() -> None:
    foreground = [3, 8]
    make = lambda seed: EpochSampler(  # noqa: E731
        20, 6, foreground=foreground, oversample=0.33, iterations=5,
        generator=torch.Generator().manual_seed(seed))
    batches = list(make(1))
    assert len(batches) == len(make(1)) == 5 and all(len(b) == 6 for b in batches)
    assert all(set(b[-2:]) <= set(foreground) for b in batches)  # round(0.33 * 6) = 2 forced
    assert batches == list(make(1)) and batches != list(make(2))
    assert len(EpochSampler(20, 6)) == 4  # no iterations: a pass over the data set
    plain = list(EpochSampler(20, 6, oversample=0.5))  # no foreground: nothing forced
    assert all(0 <= i < 20 for b in plain for i in b)
    with pytest.raises(ValueError, match="oversample"):
        EpochSampler(20, 6, oversample=1.5)


def test_unet_iterations_and_oversampling(stored, tmp_path: Path, torch_one_thread) -> None:
    samples, _ = stored
    params = UNetSegmenter.params_for("quick", image_size=32, base_width=4, depth=2, epochs=1,
                                      batch_size=3, iterations=2, oversample=0.34)
    method = UNetSegmenter(params)
    loader = method._train_loader(samples[:12], 0)
    tumour = {i for i, s in enumerate(samples[:12]) if s.mask is not None and s.mask.any()}
    batches = list(loader.batch_sampler)
    assert len(loader) == 2 and all(b[-1] in tumour for b in batches)
    assert dataclasses.asdict(UNetSegmenter.params_for("quick"))["oversample"] == 0.0


def test_pooled_dice_counts_equal_the_concatenation() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 1, 8, 8, generator=g)
    targets = (torch.rand(10, 1, 8, 8, generator=g) > 0.7).float()
    summed = sum(POOLED_DICE.counts(logits[i:i + 3], targets[i:i + 3]) for i in range(0, 10, 3))
    assert POOLED_DICE.from_counts(summed) == pooled_dice(logits, targets)


def test_prepared_slices_stream_the_stacked_windows(stored, tmp_path: Path) -> None:
    from mribench.blocks.nn.patches import (
        PatchSource,
        head_regions,
        known_slices,
        prepare_slices,
        sample_centres,
        slice_batches,
        val_slice_batches,
    )

    samples, reader = stored
    kept, images, masks = known_slices(samples, 48, normalise=True)
    regions = head_regions(images[:, 0].numpy(), masks)
    source, s_masks, s_regions = prepare_slices(kept, 48, tmp_path / "slices", normalise=True,
                                                chunk=7)
    assert np.array_equal(masks, s_masks) and np.array_equal(regions, s_regions)
    centres = sample_centres(masks, regions, 64, rng=1)
    part, local = source.take(centres.take(slice(0, 16)))
    assert len(part.shape) == 4 and part.shape[0] <= 16  # only the slices the batch touches
    whole = PatchSource(images)
    for scale in (1, 2, 4):
        assert torch.equal(whole.extract(centres.take(slice(0, 16)), 32, scale),
                           part.extract(local, 32, scale))
    source.close()
    _, v_images, v_masks = known_slices(samples, 48, scored=True, normalise=True)
    reference = slice_batches(v_images, v_masks, 4, limit=9, seed=2)
    reader.images = 0
    _, streamed = val_slice_batches(samples, 48, 4, normalise=True, limit=9, seed=2)
    assert reader.images == 9
    for (xa, ya), (xb, yb) in zip(reference, streamed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize(("n", "shuffle", "drop_last"),
                         [(23, True, True), (23, True, False), (24, True, True), (23, False, False)])
def test_tensor_batches_are_the_dataloaders(n: int, shuffle: bool, drop_last: bool) -> None:
    """make_loader's in-memory batches: a DataLoader's, batch for batch, over two epochs
    without re-seeding (so the generator is left where the DataLoader leaves it)."""
    from torch.utils.data import (
        BatchSampler,
        DataLoader,
        RandomSampler,
        SequentialSampler,
        TensorDataset,
    )

    data = TensorDataset(torch.randn(n, 3), torch.arange(n).float())
    fast = make_loader(data, 4, shuffle=shuffle, seed=7, drop_last=drop_last)
    assert not isinstance(fast, DataLoader)
    g = torch.Generator().manual_seed(7)
    order = RandomSampler(data, generator=g) if shuffle else SequentialSampler(data)
    slow = DataLoader(data, batch_size=None, generator=g,
                      sampler=BatchSampler(order, 4, drop_last))
    assert len(fast) == len(slow)
    for _ in range(2):
        iter(fast), iter(slow)  # a bar (tqdm.auto) makes an iterator it never reads
        got, want = list(fast), list(slow)
        assert len(got) == len(want) > 0
        for (x, y), (wx, wy) in zip(got, want, strict=True):
            assert torch.equal(x, wx) and torch.equal(y, wy)
    assert torch.equal(fast.generator.get_state(), g.get_state())
