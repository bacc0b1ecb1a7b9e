"""Tests of mribench.blocks.region: seeds, growing, clean-up, components."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from mribench.api.errors import ParamError
from mribench.blocks.region import (
    clean_mask,
    filter_components,
    grow_region,
    outlier_region,
    outlier_regions,
    select_seeds,
)


def _disc(size: int, cy: int, cx: int, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy brain disc with a bright tumour disc (0.8 on 0.4) and a small bright speck."""
    rng = np.random.default_rng(seed)
    brain = _disc(64, 32, 32, 28)
    tumour = _disc(64, 22, 38, 6)
    image = np.where(brain, 0.4, 0.0) + 0.02 * rng.standard_normal((64, 64))
    image[tumour] = 0.8 + 0.02 * rng.standard_normal(int(tumour.sum()))
    image[45, 20] = 0.9  # one bright pixel: too small to seed
    return image.astype(np.float32), brain, tumour


def test_select_seeds_picks_the_strong_group() -> None:
    image, brain, tumour = _scene()
    seeds = select_seeds(image, brain, k=2.0, min_size=4)
    assert seeds.any() and not (seeds & ~tumour).any()
    assert not seeds[45, 20]
    assert not select_seeds(image, brain, k=50.0).any()
    assert not select_seeds(np.full((8, 8), 0.5), None).any()   # constant: no outlier


def test_select_seeds_dark_outliers_with_negative_k() -> None:
    image, brain, tumour = _scene()
    dark = np.where(brain, 1.0 - image, 0.0)
    seeds = select_seeds(dark, brain, k=-2.0)
    assert seeds.any() and not (seeds & ~tumour).any()


def test_grow_region_equals_iterated_constrained_dilation() -> None:
    rng = np.random.default_rng(4)
    image = ndi.gaussian_filter(rng.random((40, 40)), 2)
    seeds = np.zeros((40, 40), bool)
    seeds[20, 20] = True
    tol = 0.02
    grown = grow_region(image, seeds, tol)
    # Reference: dilate step by step inside the tolerance band until nothing changes.
    band = np.abs(image - image[20, 20]) <= tol
    ref = seeds.copy()
    while True:
        nxt = ndi.binary_dilation(ref) & band | seeds
        if np.array_equal(nxt, ref):
            break
        ref = nxt
    assert np.array_equal(grown, ref)
    assert grown.sum() > 1


def test_grow_region_recovers_the_tumour_and_respects_within() -> None:
    image, brain, tumour = _scene()
    seeds = select_seeds(image, brain, k=2.0)
    grown = grow_region(image, seeds, 0.15, within=brain)
    dice = 2 * (grown & tumour).sum() / (grown.sum() + tumour.sum())
    assert dice > 0.95
    assert not grow_region(image, np.zeros_like(seeds), 0.1).any()
    half = np.zeros_like(brain)
    half[:, :38] = True
    assert not (grow_region(image, seeds, 0.15, within=half) & ~half & ~seeds).any()
    with pytest.raises(ParamError, match="tolerance"):
        grow_region(image, seeds, -1.0)


def test_clean_mask_and_filter_components() -> None:
    mask = _disc(40, 20, 20, 8)
    mask[20, 20] = False          # a hole
    mask[2, 2] = True             # a speck
    mask[0:3, 35:38] = True       # a 9-pixel blob
    out = clean_mask(mask, opening=1, closing=1, min_size=20)
    assert out[20, 20] and not out[2, 2] and not out[1, 36]
    assert filter_components(mask, largest=1).sum() == _disc(40, 20, 20, 8).sum() - 1
    kept = filter_components(mask, min_size=5)
    assert kept[1, 36] and not kept[2, 2]
    assert not filter_components(np.zeros((5, 5), bool), min_size=1).any()


def test_outlier_regions_for_several_tolerances() -> None:
    image, brain, tumour = _scene()
    regions = outlier_regions(image, brain, [0.0, 0.15, 0.5], k=2.0, opening=0, closing=0)
    assert regions.shape == (3, 64, 64)
    sizes = regions.sum(axis=(1, 2))
    assert sizes[0] <= sizes[1] <= sizes[2]            # nested in the tolerance
    single = outlier_region(image, brain, 0.15, k=2.0, opening=0, closing=0)
    assert np.array_equal(single, regions[1])
    assert not outlier_regions(image, brain, [0.1], k=50.0).any()
    # Seeds may come from another image than the one grown over.
    flat = np.where(brain, 0.4, 0.0).astype(np.float32)
    assert outlier_region(flat, brain, 0.0, k=2.0, seed_image=image).any()
