"""The deep plugins learn: U-Net, CNN, FCM-CNN and DWT-DNN on small synthetic slices, on the CPU.

The data is ``easy_parts`` below, a balanced set of 48 px head-like slices whose tumours are
clearly visible blobs, not the project's phantom (``synthetic_parts``): with its 84 training
slices at 64 px (a third of the tumours faint by design) these small literature classifiers
stay near chance and a tiny U-Net needs half a minute, so a fixed bar on the phantom would
test the phantom, not the plugin. (The contract suite runs every plugin on the phantom.)
Models are tiny and runs take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mribench.api.context import Context
from mribench.api.errors import ParamError
from mribench.api.stack import is_on_disk
from mribench.api.types import Sample
from mribench.methods.cnn import SequentialCNN
from mribench.methods.dwt_dnn import DWTDNN
from mribench.methods.fcm_cnn import FCMCNN, compact_candidate
from mribench.methods.unet import UNet, UNetSegmenter

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _easy_samples(n: int, size: int, seed: int) -> list[Sample]:
    """Head ellipses with texture and noise; half carry a bright blob (the tumour, masked)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    out = []
    for i in range(n):
        label = i % 2
        ry, rx = rng.uniform(0.36, 0.46, 2)
        head = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
        image = np.where(head, 0.35 + 0.08 * rng.standard_normal((size, size)), 0.02)
        image += 0.03 * rng.standard_normal((size, size))
        mask = np.zeros((size, size), bool)
        if label:
            cy, cx = rng.uniform(-0.2, 0.2, 2)
            r = rng.uniform(0.07, 0.14)
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & head
            image = image + 0.35 * mask
        out.append(Sample(id=f"easy/{i:04d}", group=f"easy/{i:04d}", label=label,
                          image=np.clip(image, 0, 1).astype(np.float32), mask=mask,
                          original_size=(size, size)))
    return out


@pytest.fixture(scope="module")
def easy_parts() -> tuple[list[Sample], list[Sample], list[Sample]]:
    samples = _easy_samples(160, 48, seed=1)
    return samples[:96], samples[96:128], samples[128:]


def _ctx(tmp_path: Path, name: str) -> Context:
    return Context(workdir=tmp_path / name, seed=0)


def _accuracy(method, samples, ctx) -> float:
    pred = method.predict(samples, ctx)
    return float((pred.labels == np.array([s.label for s in samples])).mean())


def test_unet_shapes() -> None:
    net = UNet(1, 1, width=2, depth=4)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ParamError, match="unet: parameter 'image_size' must be a multiple of 16"):
        UNetSegmenter(image_size=40)


def test_unet_learns(easy_parts, tmp_path: Path) -> None:
    train, val, test = easy_parts
    method = UNetSegmenter(profile="quick", image_size=48, base_width=8, depth=3, epochs=10,
                           lr=3e-3, batch_size=8, max_minutes=None)
    ctx = _ctx(tmp_path, "unet")
    method.fit(train, val, ctx)
    tumour = [s for s in val + test if s.label == 1]
    pred = method.predict(tumour, ctx)
    truth = np.stack([s.mask for s in tumour])
    assert pred.masks.shape == truth.shape and pred.prob_maps.shape == truth.shape
    dice = 2 * (pred.masks & truth).sum() / (pred.masks.sum() + truth.sum())
    trivial = 2 * truth.sum() / (truth.sum() + truth.size)  # "everything is tumour"
    assert dice > max(0.75, 5 * trivial), (dice, trivial)
    assert len(ctx.history) >= 1 and (ctx.workdir / "checkpoints" / "best.pt").exists()
    # predicted into disk-backed stacks (a run's scratch folder): the same masks and maps
    on_disk = method.predict(tumour, Context(seed=0, scratch=tmp_path / "scratch"))
    assert is_on_disk(on_disk.masks) and is_on_disk(on_disk.prob_maps)
    np.testing.assert_array_equal(on_disk.masks, pred.masks)
    np.testing.assert_array_equal(on_disk.prob_maps, pred.prob_maps)
    np.testing.assert_array_equal(on_disk.scores, pred.scores)


@pytest.mark.parametrize(("cls", "overrides", "floor"), [
    (SequentialCNN, {"image_size": 48, "filters": 16, "filters2": 16, "epochs": 15,
                     "lr": 3e-3, "patience": None}, 0.75),
    (DWTDNN, {"image_size": 48, "levels": 2, "pca_components": 24, "hidden": [32, 16],
              "epochs": 80, "patience": 20}, 0.75),
], ids=["cnn", "dwt-dnn"])
def test_classifiers_learn(cls, overrides, floor, easy_parts, tmp_path: Path) -> None:
    train, val, test = easy_parts
    method = cls(profile="quick", **overrides)
    ctx = _ctx(tmp_path, cls.name)
    method.fit(train, val, ctx)
    assert _accuracy(method, test, ctx) >= floor
    pred = method.predict(test, ctx)
    assert pred.scores is not None and ((pred.scores >= 0) & (pred.scores <= 1)).all()


def test_fcm_cnn_classifies_and_segments(easy_parts, tmp_path: Path) -> None:
    train, val, test = easy_parts
    method = FCMCNN(profile="quick", map_size=48, filters=8, epochs=15, patience=None)
    ctx = _ctx(tmp_path, "fcm")
    method.fit(train, val, ctx)
    assert _accuracy(method, test, ctx) >= 0.75
    tumour = [s for s in test if s.label == 1]
    pred = method.predict(tumour, ctx)
    truth = np.stack([s.mask for s in tumour])
    dice = 2 * (pred.masks & truth).sum() / (pred.masks.sum() + truth.sum())
    assert dice > 0.5
    # and the FCM maps were computed once: a second predict hits the cache only
    misses = ctx.cache.misses
    method.predict(tumour, ctx)
    assert ctx.cache.misses == misses


def test_fcm_cnn_streamed_training_equals_the_stacked_one(easy_parts, tmp_path: Path) -> None:
    """``fit`` reads (slice, membership) one sample at a time; the same network trained on
    the stacked inputs (how it trained before) ends with the same weights and scores."""
    from mribench.blocks.nn.classify import fit_classifier, predict_proba
    from mribench.blocks.nn.train import TrainConfig, seed_everything
    from mribench.methods.fcm_cnn import AUGMENT

    train, val, test = (part[:40] for part in easy_parts)
    method = FCMCNN(profile="quick", map_size=24, filters=4, epochs=2, patience=None,
                    batch_size=8)
    ctx = _ctx(tmp_path, "streamed")
    method.fit(train, val, ctx)
    streamed = method.predict(test, ctx)
    stacked_ctx = Context(workdir=tmp_path / "stacked", seed=0, cache=ctx.cache)
    seed_everything(0)
    model = method.build_network()
    fit_classifier(model, method._inputs(train, ctx)[0], [s.label for s in train],
                   method._inputs(val, ctx)[0], [s.label for s in val], stacked_ctx,
                   TrainConfig(epochs=2, augment=AUGMENT), batch_size=8)
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, method.model_.state_dict()[name]), name
    stacked = predict_proba(model, method._inputs(test, ctx)[0], stacked_ctx)
    np.testing.assert_array_equal(streamed.scores, stacked)
    assert streamed.masks.shape == (len(test), 48, 48) and streamed.prob_maps.dtype == np.float16


def test_compact_candidate_prefers_the_compact_blob() -> None:
    membership = np.zeros((40, 40))
    membership[5:15, 5:15] = 1.0  # compact square, 100 px
    membership[30, 2:38] = 1.0    # thin line, 36 px
    membership[32:34, 2:38] = 1.0  # thin band, 72 px
    chosen = compact_candidate(membership, min_area=0.0)
    assert chosen.sum() == 100 and chosen[10, 10]


def test_same_seed_same_result(easy_parts, tmp_path: Path) -> None:
    train, val, test = easy_parts
    scores = []
    for run in range(2):
        method = SequentialCNN(profile="quick", image_size=32, filters=4, filters2=4, epochs=3,
                               patience=None)
        ctx = _ctx(tmp_path, f"run{run}")  # separate folders: no resuming from the first run
        method.fit(train, val, ctx)
        scores.append(method.predict(test, ctx).scores)
    np.testing.assert_array_equal(scores[0], scores[1])


def test_dwt_dnn_rejects_impossible_levels() -> None:
    with pytest.raises(ParamError, match="dwt-dnn: 9 DWT levels"):
        DWTDNN(image_size=64, levels=9)
    with pytest.raises(ParamError, match="dwt-dnn: parameter 'wavelet'"):
        DWTDNN(wavelet="nope")
