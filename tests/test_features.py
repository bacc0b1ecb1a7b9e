"""Tests of mribench.blocks.features: GLCM vs scikit-image, first-order statistics vs scipy, shape
descriptors on known masks, the handcrafted vector, and the run's feature cache."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage.feature import graycomatrix, graycoprops

from mribench.api.errors import ParamError
from mribench.api.feature_cache import FeatureCache
from mribench.api.types import Sample
from mribench.blocks.features.glcm import (
    GLCM_PROPS,
    brain_glcm_features,
    glcm_feature_names,
    glcm_features,
    glcm_matrices,
    quantise,
)
from mribench.blocks.features.handcrafted import (
    HandcraftedOptions,
    cached_handcrafted_features,
    describe_slice,
    handcrafted_feature_names,
    handcrafted_features,
)
from mribench.blocks.features.intensity import intensity_feature_names, intensity_features
from mribench.blocks.features.shape import SHAPE_FEATURES, shape_features

ANGLES = np.arange(4) * np.pi / 4


def test_glcm_matrices_and_props_equal_scikit_image() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((3, 21, 17)).astype(np.float32)
    levels, distances = 8, (1, 2)
    q = quantise(images, levels)
    ours = glcm_matrices(images, levels=levels, distances=distances, angles=4)
    feats = glcm_features(images, levels=levels, distances=distances, average=False)
    feats = feats.reshape(3, len(distances), 4, len(GLCM_PROPS))
    for i in range(3):
        ref = graycomatrix(q[i], distances, ANGLES, levels=levels, symmetric=True, normed=True)
        np.testing.assert_allclose(ours[i], ref.transpose(2, 3, 0, 1), atol=1e-12)
        for j, prop in enumerate(GLCM_PROPS):
            np.testing.assert_allclose(feats[i, :, :, j], graycoprops(ref, prop), atol=1e-10)
    averaged = glcm_features(images, levels=levels, distances=distances)
    np.testing.assert_allclose(averaged, feats.mean(axis=2).reshape(3, -1))
    assert len(glcm_feature_names(distances=distances)) == averaged.shape[1]


def test_glcm_mask_counts_only_pairs_inside() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((20, 20)).astype(np.float32)
    mask = rng.random((20, 20)) > 0.3
    counts = glcm_matrices(image, levels=8, masks=mask[None], normed=False)[0]
    # Reference: mark outside pixels with an extra grey level and drop it afterwards.
    q = quantise(image, 8)
    q[~mask] = 8
    ref = graycomatrix(q, [1], ANGLES, levels=9, symmetric=True, normed=False)[:8, :8]
    np.testing.assert_array_equal(counts, ref.transpose(2, 3, 0, 1))


def test_glcm_constant_image_and_bad_levels() -> None:
    feats = glcm_features(np.full((1, 10, 10), 0.5, np.float32), levels=4)
    values = dict(zip(GLCM_PROPS, feats[0], strict=True))
    assert values["contrast"] == 0 and values["ASM"] == pytest.approx(1.0)
    assert values["correlation"] == 1.0 and values["entropy"] == 0.0
    with pytest.raises(ParamError, match="levels"):
        glcm_matrices(np.zeros((4, 4)), levels=1)


def test_glcm_separates_textures() -> None:
    rng = np.random.default_rng(2)
    smooth = np.full((4, 32, 32), 0.5, np.float32) + 0.01 * rng.standard_normal((4, 32, 32))
    rough = rng.random((4, 32, 32)).astype(np.float32)
    contrast = glcm_features(np.concatenate([smooth, rough]), props=("contrast",))[:, 0]
    assert contrast[:4].max() < contrast[4:].min()
    assert brain_glcm_features(rough, skull_strip=False).shape == (4, len(GLCM_PROPS))


def test_intensity_features_against_scipy() -> None:
    rng = np.random.default_rng(3)
    images = (rng.random((3, 30, 30)) ** 2).astype(np.float32)
    masks = rng.random((3, 30, 30)) > 0.5
    masks[2] = False
    feats = intensity_features(images, masks)
    assert feats.shape == (3, len(intensity_feature_names()))
    for i in range(2):
        v = images[i][masks[i]].astype(np.float64)
        hist, _ = np.histogram(v, bins=32, range=(0, 1))
        p = hist[hist > 0] / v.size
        expected = [v.mean(), v.std(), stats.skew(v), stats.kurtosis(v), -(p * np.log2(p)).sum(),
                    *np.percentile(v, [10, 25, 50, 75, 90])]
        np.testing.assert_allclose(feats[i], expected, rtol=1e-6, atol=1e-9)
    assert not feats[2].any()                      # empty region: zeros
    whole = intensity_features(images[0])          # no mask: every pixel
    assert whole[0, 0] == pytest.approx(images[0].mean(), rel=1e-6)


def test_shape_features_of_known_masks() -> None:
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 <= 10 ** 2
    bar = np.zeros((64, 64), bool)
    bar[30:34, 10:50] = True
    feats = shape_features(np.stack([disc, bar, np.zeros((64, 64), bool)]))
    named = [dict(zip(SHAPE_FEATURES, row, strict=True)) for row in feats]
    assert named[0]["area"] == pytest.approx(disc.mean())
    assert named[0]["eccentricity"] < 0.1 and named[0]["solidity"] > 0.9
    assert named[0]["compactness"] > 0.85 and named[0]["n_components"] == 1
    assert named[1]["eccentricity"] > 0.95 and named[1]["extent"] == pytest.approx(1.0)
    assert named[1]["major_axis"] > 0.5
    assert not feats[2].any()


def _samples(n: int = 6) -> list[Sample]:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:48, :48]
    head = (yy - 24) ** 2 + (xx - 24) ** 2 <= 20 ** 2
    out = []
    for i in range(n):
        image = np.where(head, 0.4, 0.0) + 0.03 * rng.standard_normal((48, 48))
        mask = np.zeros((48, 48), bool)
        if i % 2:
            mask = (yy - 20) ** 2 + (xx - 28) ** 2 <= 5 ** 2
            image[mask] = 0.85
        out.append(Sample(id=f"s{i}", group=f"s{i}", label=i % 2,
                          image=np.clip(image, 0, 1).astype(np.float32), mask=mask))
    return out


def test_handcrafted_features_find_the_bright_candidate() -> None:
    samples = _samples()
    options = HandcraftedOptions(erosion=0.04)
    feats = handcrafted_features(samples, options)
    names = handcrafted_feature_names(options)
    assert feats.shape == (6, len(names)) and np.isfinite(feats).all()
    contrast = feats[:, names.index("candidate_zscore")]
    assert contrast[1::2].min() > contrast[0::2].max()
    described = describe_slice(samples[1].image, options)
    truth = samples[1].mask
    dice = 2 * (described.candidate & truth).sum() / (described.candidate.sum() + truth.sum())
    assert dice > 0.8


def test_feature_cache_shared_between_methods_and_work_size() -> None:
    samples = _samples(4)
    cache = FeatureCache(None)
    options = HandcraftedOptions(work_size=32)
    first = cached_handcrafted_features(samples, cache, options)
    assert cache.misses == 4 and cache.hits == 0
    second = cached_handcrafted_features(samples, cache, options)   # e.g. the next method
    assert cache.hits == 4 and cache.misses == 4
    np.testing.assert_array_equal(first, second)
    cached_handcrafted_features(samples, cache, HandcraftedOptions(work_size=None))
    assert cache.misses == 8            # other options: another table
