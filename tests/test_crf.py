"""Dense CRF post-processing (mribench.blocks.crf): shapes, refinement, the val search, the skip path,
and the variant rows it gives a segmentation method."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest

from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.method import SegmentationMethod
from mribench.api.overlap import pooled_dice
from mribench.api.types import Sample
from mribench.blocks.crf import (
    CRFParams,
    CRFVariant,
    DenseCRF,
    crf_available,
    dense_crf,
)

needs_crf = pytest.mark.skipif(not crf_available(), reason="pydensecrf is not installed")


def _noisy_case(n: int = 3, size: int = 48, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices with a bright disc (a clean edge) and a noisy probability map of the disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, probs, truths = [], [], []
    for _ in range(n):
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        truth = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 5) ** 2
        image = np.where(truth, 0.8, 0.3) + 0.01 * rng.standard_normal((size, size))
        prob = np.clip(0.2 + 0.55 * truth + 0.22 * rng.standard_normal((size, size)), 0, 1)
        images.append(image.astype(np.float32))
        probs.append(prob.astype(np.float32))
        truths.append(truth)
    return np.stack(probs), np.stack(images), np.stack(truths)


@needs_crf
def test_shape_is_preserved_and_mismatch_is_an_error() -> None:
    rng = np.random.default_rng(1)
    probs = rng.random((2, 30, 41)).astype(np.float32)
    images = rng.random((2, 30, 41)).astype(np.float32)
    masks, refined = DenseCRF().refine(probs, images)
    assert masks.shape == refined.shape == (2, 30, 41)
    assert masks.dtype == bool and refined.dtype == np.float32
    assert np.all((refined >= 0) & (refined <= 1))
    assert dense_crf(probs[0], images[0]).shape == (30, 41)
    with pytest.raises(MribenchError, match="same"):
        dense_crf(probs[0], images[0, :, :40])
    with pytest.raises(MribenchError, match="same"):
        DenseCRF().refine(probs, images[:, :29])


@needs_crf
def test_noisy_map_with_a_clean_edge_is_refined() -> None:
    probs, images, truths = _noisy_case()
    raw = pooled_dice(probs > 0.5, truths, empty=1.0)
    masks, _ = DenseCRF(CRFParams(bilateral_sxy=8, bilateral_srgb=10,
                                  bilateral_compat=8)).refine(probs, images)
    refined = pooled_dice(masks, truths, empty=1.0)
    assert raw < 0.85
    assert refined > raw + 0.08
    assert refined > 0.9


@needs_crf
def test_search_records_every_setting_and_keeps_the_best() -> None:
    probs, images, truths = _noisy_case(seed=2)
    grid = {"bilateral_sxy": (2.0, 8.0), "bilateral_compat": (0.0, 8.0)}
    crf = DenseCRF(grid=grid, max_images=2, seed=0).fit(probs, images, truths)
    assert len(crf.search_) == 4
    assert {(r["bilateral_sxy"], r["bilateral_compat"]) for r in crf.search_} == {
        (2.0, 0.0), (2.0, 8.0), (8.0, 0.0), (8.0, 8.0)}
    best = max(r["dice"] for r in crf.search_)
    assert crf.val_dice_ == pytest.approx(best)
    chosen = next(r for r in crf.search_ if r["dice"] == best)
    assert crf.params_.bilateral_sxy == chosen["bilateral_sxy"]
    assert crf.val_dice_ > crf.raw_dice_
    with pytest.raises(MribenchError, match="unknown grid"):
        DenseCRF(grid={"sigma": (1.0,)}).fit(probs, images, truths)


def test_bad_weights_are_one_line_errors() -> None:
    with pytest.raises(MribenchError, match="iterations"):
        CRFParams(iterations=0)
    with pytest.raises(MribenchError, match="bilateral_srgb"):
        CRFParams(bilateral_srgb=0)


def test_missing_pydensecrf_warns_and_returns_the_raw_mask(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert not crf_available()
    probs, images, truths = _noisy_case(n=2)
    with pytest.warns(RuntimeWarning, match="pydensecrf is not installed"):
        crf = DenseCRF().fit(probs, images, truths)
    assert crf.params_ == CRFParams() and crf.search_ == []
    with pytest.warns(RuntimeWarning, match="raw masks returned"):
        masks, refined = crf.refine(probs, images)
    np.testing.assert_array_equal(masks, probs > 0.5)
    np.testing.assert_array_equal(refined, probs)
    with pytest.raises(MribenchError, match="pip install pydensecrf2"):
        dense_crf(probs[0], images[0])


class _Thresholder(CRFVariant, SegmentationMethod):
    """A stand-in segmenter: its 'probability' is a noisy copy of the truth."""

    name = "thresholder"

    def fit_masks(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> None:
        self.fitted_ = True

    def predict_masks(self, samples: Sequence[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        truth = np.stack([s.mask_or_empty() for s in samples]).astype(np.float32)
        probs = np.clip(0.2 + 0.55 * truth + 0.22 * rng.standard_normal(truth.shape), 0, 1)
        return probs > 0.5, probs.astype(np.float32)


@needs_crf
def test_variant_rows_get_their_own_labels(tmp_path) -> None:
    probs, images, truths = _noisy_case(n=6, seed=3)
    samples = [Sample(id=f"s{i}", group=f"s{i}", label=int(i % 3 != 0), image=images[i],
                      mask=truths[i] & (i % 3 != 0)) for i in range(6)]
    method = _Thresholder()
    ctx = Context(workdir=tmp_path)
    method.fit(samples[:3], samples, ctx)
    assert set(method.variant_thresholds_) == {"crf"}
    pred = method.predict(samples, ctx)
    crf = pred.variants["crf"]
    assert crf.masks.shape == pred.masks.shape == (6, 48, 48)
    assert crf.ids == pred.ids and crf.labels.shape == (6,)
    assert crf.prob_maps is not None and crf.prob_maps.shape == (6, 48, 48)
    truth = np.stack([s.mask_or_empty() for s in samples])
    assert pooled_dice(crf.masks, truth, empty=1.0) > pooled_dice(pred.masks, truth, empty=1.0)
    # The CRF removes the noise of tumour-free slices, so its labels are right there.
    np.testing.assert_array_equal(crf.labels, [s.label for s in samples])
