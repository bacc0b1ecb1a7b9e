"""Patch CNNs: samplers, window extraction, dense == window-by-window inference, and learning
(two-pathway-cnn, multiscale-cnn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mribench.api.context import Context
from mribench.api.errors import ParamError
from mribench.api.overlap import pooled_dice
from mribench.api.registry import methods
from mribench.api.stack import is_on_disk
from mribench.api.types import Sample
from mribench.blocks.nn.patch_nets import ScaleStack, max_pool_stride1
from mribench.blocks.nn.patches import (
    Centres,
    PatchLoader,
    PatchSource,
    head_regions,
    normalise_intensity,
    position_features,
    position_map,
    sample_centres,
    slice_images,
)
from mribench.methods import two_pathway_cnn


def _stack(n: int = 6, size: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
        images[i] = head * (0.4 + 0.05 * rng.standard_normal((size, size)))
        if i % 2:
            masks[i] = (yy - size / 2 - 3) ** 2 + (xx - size / 2) ** 2 < 16
            images[i][masks[i]] += 0.4
    return np.clip(images, 0, 1), masks


def _centres_all(m: int, h: int, w: int, index: int = 0) -> Centres:
    yy, xx = np.mgrid[:h, :w]
    return Centres(np.full(h * w, index), yy.ravel(), xx.ravel(), np.zeros(h * w, np.float32))


# -- samplers ---------------------------------------------------------------------------------
def test_balanced_sampling_is_balanced_and_respects_the_regions() -> None:
    images, masks = _stack()
    regions = head_regions(images, masks)
    c = sample_centres(masks, regions, 1000, positive_fraction=0.5, rng=3)
    assert len(c) == 1000 and c.label.sum() == 500
    on_tumour = masks[c.index, c.y, c.x]
    np.testing.assert_array_equal(on_tumour, c.label == 1)
    assert regions[c.index, c.y, c.x].all()
    # Seeded: the same draw twice, another seed another draw.
    again = sample_centres(masks, regions, 1000, positive_fraction=0.5, rng=3)
    np.testing.assert_array_equal(again.y, c.y)
    assert not np.array_equal(sample_centres(masks, regions, 1000, rng=4).y, c.y)
    c3 = sample_centres(masks, regions, 1000, positive_fraction=0.25, rng=0)
    assert c3.label.sum() == 250


def test_natural_sampling_follows_the_class_frequencies() -> None:
    images, masks = _stack()
    regions = head_regions(images, masks)
    c = sample_centres(masks, regions, 20000, positive_fraction=None, rng=0)
    expected = masks[regions].mean()
    assert abs(c.label.mean() - expected) < 0.01
    assert regions[c.index, c.y, c.x].all()
    # Centres spread over every slice, not only the first ones.
    assert set(np.unique(c.index)) == set(range(len(images)))


def test_sampling_without_tumour_gives_negatives_only() -> None:
    images, masks = _stack()
    masks[:] = False
    c = sample_centres(masks, head_regions(images), 200, positive_fraction=0.5, rng=0)
    assert c.label.sum() == 0 and len(c) == 200


def test_head_regions_cover_the_head_not_the_background() -> None:
    images, masks = _stack()
    regions = head_regions(images, masks)
    assert regions[:, 20, 20].all() and not regions[:, 0, 0].any()
    assert (regions | ~masks).all()


def test_windows_match_a_padded_crop_at_every_scale() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((3, 2, 12, 15)).astype(np.float32)
    source = PatchSource(images)
    c = Centres(np.array([0, 2, 1]), np.array([0, 11, 5]), np.array([14, 0, 7]), np.zeros(3))
    for size, scale in [(5, 1), (4, 1), (4, 2), (3, 4)]:
        extent = size * scale
        got = source.extract(c, size, scale).numpy()
        padded = np.pad(images, [(0, 0), (0, 0), (extent, extent), (extent, extent)])
        for k in range(3):
            y0 = c.y[k] - extent // 2 + extent
            x0 = c.x[k] - extent // 2 + extent
            crop = padded[c.index[k], :, y0:y0 + extent, x0:x0 + extent]
            want = crop.reshape(2, size, scale, size, scale).mean(axis=(2, 4))
            np.testing.assert_allclose(got[k], want, atol=1e-6)


def test_patch_loader_redraws_per_epoch_but_is_seeded_by_torch() -> None:
    images, masks = _stack()
    regions = head_regions(images, masks)
    source = PatchSource(images)
    loader = PatchLoader(masks, regions, lambda c: source.extract(c, 9), n_patches=50,
                         batch_size=16)
    assert len(loader) == 4
    torch.manual_seed(0)
    first = torch.cat([y for _, y in loader])
    torch.manual_seed(0)
    again = [(x, y) for x, y in loader]
    np.testing.assert_array_equal(first.numpy(), torch.cat([y for _, y in again]).numpy())
    assert again[0][0].shape == (16, 1, 9, 9) and len(first) == 50 and first.sum() == 25
    # A second pass without re-seeding (the next epoch) draws other centres.
    torch.manual_seed(0)
    one, two = loader.centres(), loader.centres()
    assert not np.array_equal(one.y, two.y)


def test_position_features_and_map_agree() -> None:
    pos = position_map((4, 6))
    assert pos.shape == (3, 4, 6)
    f = position_features(np.array([1]), np.array([5]), (4, 6))[0]
    torch.testing.assert_close(pos[:, 1, 5], f)
    assert float(pos[0].min()) > -1 and float(pos[0].max()) < 1
    assert float(pos[2].max()) <= 1


def test_intensity_normalisation_scales_the_head_to_mean_one() -> None:
    images, _ = _stack()
    x = torch.from_numpy(images)[:, None]
    out = normalise_intensity(x)
    darker = normalise_intensity(0.6 * x)  # a darker acquisition of the same slices
    torch.testing.assert_close(out, darker)
    regions = head_regions(images)
    np.testing.assert_allclose(out[:, 0].numpy()[regions].reshape(-1).mean(), 1.0, rtol=0.05)
    assert float(out[:, 0, 0, 0].abs().max()) == 0.0  # background stays 0


def test_fast_stride1_pool_equals_torch() -> None:
    x = torch.rand(2, 3, 17, 19)
    with torch.no_grad():
        for k, d in [(2, 1), (4, 1), (2, 3)]:
            torch.testing.assert_close(max_pool_stride1(x, k, d),
                                       F.max_pool2d(x, k, stride=1, dilation=d))


# -- dense inference == window by window -----------------------------------------------------
def _slice_samples(n: int = 2, size: int = 20, seed: int = 0) -> list[Sample]:
    images, masks = _stack(n, size, seed)
    return [Sample(id=f"s{i}", group=f"s{i}", label=int(masks[i].any()), image=images[i],
                   mask=masks[i]) for i in range(n)]


@pytest.mark.parametrize("cascade", ["none", "input"])
def test_two_pathway_dense_equals_window_by_window(cascade: str) -> None:
    from mribench.methods.two_pathway_cnn import WINDOW, TwoPathCNN

    cls = methods()["two-pathway-cnn"]
    method = cls(profile="quick", work_size=None, local_maps=4, global_maps=5, cascade=cascade)
    torch.manual_seed(0)
    method.stages_ = [TwoPathCNN(1, 4, 5, 2).eval()]
    if cascade == "input":
        method.stages_.append(TwoPathCNN(2, 4, 5, 2).eval())
    method.logit_offset_ = 0.3  # the decision threshold applies to the last stage only
    samples = _slice_samples()
    _, dense = method.predict_masks(samples, Context())
    images = slice_images(samples, None, normalise=True)[:, 0].numpy()  # what the net sees
    h, w = images.shape[1:]
    with torch.no_grad():
        inputs = torch.from_numpy(images)[:, None]
        for stage, net in enumerate(method.stages_):
            per_pixel = []
            for i in range(len(samples)):
                windows = PatchSource(inputs).extract(_centres_all(len(samples), h, w, i), WINDOW)
                last = stage + 1 == len(method.stages_)
                per_pixel.append(torch.sigmoid(net(windows) - (0.3 if last else 0.0))
                                 .reshape(h, w))
            probs = torch.stack(per_pixel)[:, None]
            if stage + 1 < len(method.stages_):
                inputs = torch.cat([torch.from_numpy(images)[:, None], probs], dim=1)
    np.testing.assert_allclose(dense, probs[:, 0].numpy(), atol=1e-5)


def test_multiscale_dense_equals_window_by_window() -> None:
    from mribench.methods.multiscale_cnn import MultiScaleCNN

    cls = methods()["multiscale-cnn"]
    method = cls(profile="quick", work_size=None)
    torch.manual_seed(0)
    method.net_ = MultiScaleCNN(1, (1, 2, 4), (4, 6, 6), 8, (8,), 0.3).eval()
    method.logit_offset_ = 0.25
    samples = _slice_samples(size=18)
    _, dense = method.predict_masks(samples, Context())
    images = slice_images(samples, None, normalise=True)[:, 0].numpy()  # what the net sees
    h, w = images.shape[1:]
    source = PatchSource(images)
    with torch.no_grad():
        per_pixel = [torch.sigmoid(method.net_(method._inputs(source, (h, w),
                                                              _centres_all(2, h, w, i)))
                                   - 0.25).reshape(h, w) for i in range(2)]
    np.testing.assert_allclose(dense, torch.stack(per_pixel).numpy(), atol=1e-5)


def test_scale_stack_rejects_windows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        ScaleStack(patch=16)
    assert ScaleStack(patch=32).fc_kernel == 4


def test_bad_parameters_name_the_plugin() -> None:
    with pytest.raises(ParamError, match="two-pathway-cnn.*cascade"):
        methods()["two-pathway-cnn"](cascade="output")
    with pytest.raises(ParamError, match="multiscale-cnn.*channels"):
        methods()["multiscale-cnn"](channels=(8, 16))


# -- learning ---------------------------------------------------------------------------------
TINY = {
    "two-pathway-cnn": {"work_size": None, "local_maps": 8, "global_maps": 8,
                        "phase1_epochs": 4, "phase2_epochs": 1, "patches_per_epoch": 2048,
                        "patience": 6, "max_minutes": None, "crf_max_images": 8},
    "multiscale-cnn": {"work_size": None, "channels": (8, 16, 16), "features": 32,
                       "hidden": (32,), "epochs": 5, "patches_per_epoch": 2048,
                       "patience": 6, "max_minutes": None, "crf_max_images": 8},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_patch_cnn_learns_on_synthetic_data(name: str, synthetic_parts, tmp_path,
                                            torch_one_thread) -> None:
    train, val, test = synthetic_parts
    method = methods()[name](profile="quick", **TINY[name])
    ctx = Context(workdir=tmp_path, method_name=name)
    method.fit(train, val, ctx)
    pred = method.predict(test, ctx)
    truth = np.stack([s.mask_or_empty() for s in test])
    trivial = pooled_dice(np.ones_like(truth), truth, empty=1.0)  # "all tumour": the best constant mask
    dice = pooled_dice(pred.masks, truth, empty=1.0)
    assert dice > max(0.35, 5 * trivial), (dice, trivial)
    assert pred.masks.shape == truth.shape and pred.prob_maps.shape == truth.shape
    crf = pred.variants["crf"]
    assert crf.masks.shape == truth.shape
    assert pooled_dice(crf.masks, truth, empty=1.0) > max(0.35, 5 * trivial)
    assert any(row.get("val_metric") is not None for row in ctx.history)


def test_input_cascade_trains_two_stages(tiny_samples, tmp_path, torch_one_thread,
                                         monkeypatch) -> None:
    samples = tiny_samples(n=16, size=48, seed=1)
    method = methods()["two-pathway-cnn"](
        profile="quick", work_size=None, local_maps=2, global_maps=2, cascade="input",
        phase1_epochs=1, phase2_epochs=1, patches_per_epoch=256, batch_size=64,
        max_minutes=None, crf_max_images=4)
    ctx = Context(workdir=tmp_path, method_name="two-pathway-cnn")
    method.fit(samples[:10], samples[10:], ctx)
    assert len(method.stages_) == 2
    assert method.stages_[1].local_path[0].conv.in_channels == 2  # image + first-stage map
    assert {row["stage"] for row in ctx.history} == {0, 1}
    assert {row["phase"] for row in ctx.history} == {"balanced", "natural"}
    pred = method.predict(samples[10:], ctx)
    assert pred.masks.shape == (6, 48, 48) and pred.variants["crf"].masks.shape == (6, 48, 48)
    # Slices predicted a chunk at a time into disk-backed stacks: the same numbers.
    method.params = method.params.replace(infer_batch=2)
    whole = method.predict(samples, ctx)
    monkeypatch.setattr(two_pathway_cnn, "CHUNK", 3)  # chunks of 2 slices (whole batches)
    chunked = method.predict(samples, Context(method_name="two-pathway-cnn",
                                              scratch=tmp_path / "scratch"))
    assert is_on_disk(chunked.masks) and is_on_disk(chunked.variants["crf"].prob_maps)
    np.testing.assert_array_equal(chunked.masks, whole.masks)
    np.testing.assert_array_equal(chunked.prob_maps, whole.prob_maps)
    np.testing.assert_array_equal(chunked.variants["crf"].prob_maps,
                                  whole.variants["crf"].prob_maps)
    # Checkpoints of both stages and phases let an interrupted run resume.
    assert len(list((tmp_path / "checkpoints").glob("stage*/last.pt"))) == 4


# -- streamed training (two-pathway-cnn) ------------------------------------------------------
def _tiny_two_pathway(cascade: str = "none"):
    return methods()["two-pathway-cnn"](
        profile="quick", work_size=None, local_maps=2, global_maps=2, cascade=cascade,
        phase1_epochs=1, phase2_epochs=1, patches_per_epoch=128, batch_size=64,
        max_minutes=None, crf_max_images=4, infer_batch=3)


def test_streamed_standardisation_equals_the_stacked_one(tiny_samples, tmp_path) -> None:
    from mribench.blocks.nn.patches import (
        head_statistics,
        known_slices,
        map_slices,
        prepare_slices,
    )
    from mribench.methods.two_pathway_cnn import TwoPathCNN

    samples = tiny_samples(n=11, size=40, seed=2)
    kept, images, masks = known_slices(samples, None, normalise=True)
    regions = head_regions(images[:, 0].numpy(), masks)
    source, _, _ = prepare_slices(kept, None, tmp_path, normalise=True, chunk=4)
    both = source.with_channels(map_slices(source, lambda x: torch.sigmoid(3 * x - 2),
                                           tmp_path / "maps.f32", 3))
    stack = torch.cat([images, torch.sigmoid(3 * images - 2)], dim=1)
    assert torch.equal(both.read(np.arange(len(kept))), stack)  # the second channel on disk
    streamed, stacked = TwoPathCNN(2, 2, 2), TwoPathCNN(2, 2, 2)
    streamed.standardise_on(both, regions)
    stacked.standardise_on(stack, regions)
    assert torch.equal(streamed.mean, stacked.mean) and torch.equal(streamed.std, stacked.std)
    # The chunks do not matter; torch's reduction of the stacked head pixels gives the same
    # standard deviation, and a mean at most an ulp away (a float32 sum).
    for chunk in (1, 5, 64):
        mean, std = head_statistics(both, regions, chunk=chunk)
        assert np.array_equal(mean.astype(np.float32), stacked.mean.flatten().numpy())
        assert np.array_equal(std.astype(np.float32), stacked.std.flatten().numpy())
    for c in range(2):
        values = stack[:, c][torch.as_tensor(regions)]
        assert streamed.std[0, c] == values.std()
        np.testing.assert_allclose(streamed.mean[0, c], values.mean(), rtol=2e-7, atol=0)
    both.close()
    source.close()


def test_cascade_maps_on_disk_equal_the_stacked_ones(tiny_samples, tmp_path) -> None:
    from mribench.blocks.nn.patches import (
        known_slices,
        prepare_slices,
        slice_batches,
        val_slice_batches,
    )
    from mribench.methods.two_pathway_cnn import MARGIN, TwoPathCNN

    method = _tiny_two_pathway("input")
    torch.manual_seed(0)
    method.stages_ = [TwoPathCNN(1, 2, 2, 2)]
    samples, ctx = tiny_samples(n=10, size=40, seed=4), Context(workdir=tmp_path)
    kept, images, masks = known_slices(samples, None, normalise=True)
    source, _, _ = prepare_slices(kept, None, tmp_path, normalise=True)
    maps = method._training_maps(source, tmp_path, ctx)
    assert torch.equal(maps.read(np.arange(len(kept))), method._dense(method.stages_, images, ctx))
    # Validation batches with the map channel: those of the stacked slices with their maps.
    _, v_images, v_masks = known_slices(samples, None, scored=True, normalise=True)
    stacked = torch.cat([v_images, method._dense(method.stages_, v_images, ctx)], dim=1)
    reference = slice_batches(stacked, v_masks, 3, margin=MARGIN)
    _, streamed = val_slice_batches(samples, None, 3, normalise=True, margin=MARGIN)
    for (xa, ya), (xb, yb) in zip(reference, streamed, strict=True):
        assert torch.equal(xa, method._with_map(xb, ctx)) and torch.equal(ya, yb)
    maps.close()
    source.close()


@pytest.mark.parametrize("cascade", ["none", "input"])
def test_two_pathway_streams_its_slices_and_removes_them(cascade, tiny_samples, tmp_path,
                                                         monkeypatch, torch_one_thread) -> None:
    samples = tiny_samples(n=12, size=40, seed=5)
    method = _tiny_two_pathway(cascade)
    seen: list[list[str]] = []
    train_stage = type(method)._train_stage

    def spy(self, stage, source, *args, **kwargs):
        seen.append(sorted(p.name for p in (tmp_path / "slices").iterdir()))
        assert source.channels == stage + 1  # the cascade's map is a second file
        return train_stage(self, stage, source, *args, **kwargs)

    monkeypatch.setattr(type(method), "_train_stage", spy)
    method.fit(samples[:8], samples[8:], Context(workdir=tmp_path))
    assert seen == [["slices.f32"], ["maps.f32", "slices.f32"]][:len(seen)]
    assert len(seen) == len(method.stages_) == (2 if cascade == "input" else 1)
    assert not (tmp_path / "slices").exists()

    def fail(self, *args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(type(method), "_train_stage", fail)
    with pytest.raises(RuntimeError, match="training failed"):
        _tiny_two_pathway(cascade).fit(samples[:8], samples[8:], Context(workdir=tmp_path))
    assert not (tmp_path / "slices").exists()  # removed when fit raises too
