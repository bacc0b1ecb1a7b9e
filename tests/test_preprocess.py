"""Tests of mribench.blocks.preprocess: skull stripping, denoising, equalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from mribench.api.errors import ParamError
from mribench.blocks.preprocess import (
    brain_mask,
    denoise,
    equalise,
    fill_holes,
    largest_component,
    prepare,
    zscore,
)


def _head(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright scalp ring, a darker skull ring, a mid-grey brain with a dark ventricle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    image = np.zeros((size, size), np.float32)
    brain = r < 0.8
    image[(r >= 0.86) & (r < 0.92)] = 0.8  # scalp
    image[(r >= 0.8) & (r < 0.86)] = 0.25  # skull
    image[brain] = 0.5
    image[r < 0.12] = 0.1                 # ventricle: a hole to fill
    image += 0.02 * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image, 0, 1), brain


def test_brain_mask_strips_skull_and_keeps_brain() -> None:
    image, brain = _head()
    mask = brain_mask(image)
    assert mask.dtype == bool and mask.shape == image.shape
    inside = (mask & brain).sum() / brain.sum()
    leak = (mask & ~brain).sum() / mask.sum()
    assert inside > 0.85        # most of the brain kept (the erosion costs a thin rim)
    yy, xx = np.mgrid[:96, :96]
    r = np.hypot(yy - 48, xx - 48) / 48
    assert not mask[r >= 0.84].any()   # scalp and most of the skull gone
    assert leak < 0.06
    assert mask[48, 48]         # the dark ventricle is filled in


def test_brain_mask_without_erosion_is_the_head_and_constant_image_is_empty() -> None:
    image, _ = _head()
    head = brain_mask(image, erosion=0.0)
    yy, xx = np.mgrid[:96, :96]
    r = np.hypot(yy - 48, xx - 48) / 48
    assert head[r < 0.9].mean() > 0.98 and not head[r > 0.95].any()
    assert not brain_mask(np.full((32, 32), 0.3, np.float32)).any()
    with pytest.raises(ParamError, match="erosion"):
        brain_mask(image, erosion=0.7)


def test_fill_holes_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((30, 41)) > rng.uniform(0.3, 0.7)
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))


def test_largest_component() -> None:
    mask = np.zeros((10, 10), bool)
    mask[0:2, 0:2] = True
    mask[5:9, 5:9] = True
    out = largest_component(mask)
    assert out.sum() == 16 and out[6, 6] and not out[0, 0]
    assert not largest_component(np.zeros((4, 4), bool)).any()


@pytest.mark.parametrize("method", ["median", "gaussian", "nl-means"])
def test_denoise_reduces_noise(method: str) -> None:
    rng = np.random.default_rng(1)
    clean = np.full((48, 48), 0.5, np.float32)
    noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    out = denoise(noisy, method)  # type: ignore[arg-type]
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert np.abs(out - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_denoise_median_removes_salt() -> None:
    image = np.zeros((9, 9), np.float32)
    image[4, 4] = 1.0
    assert denoise(image, "median").max() == 0.0
    with pytest.raises(ParamError, match="denoise"):
        denoise(image, "wiener")  # type: ignore[arg-type]


def test_equalise_flattens_histogram_inside_mask() -> None:
    rng = np.random.default_rng(2)
    image = (0.3 + 0.05 * rng.standard_normal((64, 64))).clip(0, 1).astype(np.float32)
    mask = np.zeros_like(image, bool)
    mask[8:56, 8:56] = True
    out = equalise(image, mask, "hist")
    values = out[mask]
    assert not out[~mask].any()                           # outside set to 0
    assert values.min() < 0.05 and values.max() > 0.95    # range spread
    assert abs(values.mean() - 0.5) < 0.05 and abs(values.std() - 1 / np.sqrt(12)) < 0.03
    clahe = equalise(image, mask, "clahe")
    assert clahe[mask].std() > image[mask].std()


def test_zscore_and_preprocess_chain() -> None:
    image, _ = _head()
    smooth, out, brain = prepare(image, equalise_method="hist")
    assert out.dtype == np.float32 and smooth.dtype == np.float32 and brain.dtype == bool
    assert not out[~brain].any()
    np.testing.assert_array_equal(brain, brain_mask(image, erosion=0.06))
    np.testing.assert_array_equal(smooth, denoise(image, "median"))
    np.testing.assert_array_equal(out, equalise(smooth, brain, "hist"))
    z = zscore(image, brain)
    assert abs(z[brain].mean()) < 1e-4 and abs(z[brain].std() - 1) < 1e-3
    assert not z[~brain].any()
