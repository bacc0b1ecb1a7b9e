"""Near-duplicate groups: copies at other contrasts and resolutions group, distinct slices don't."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from mribench.api.errors import DataError
from mribench.api.types import Sample
from mribench.data.duplicates import (
    assign_groups,
    duplicate_pairs,
    group_labels,
    group_names,
    normalise,
)
from mribench.data.imageio import resize_image, thumbnail


def _slice(seed: int, size: int = 128) -> np.ndarray:
    noise = np.random.default_rng(seed).random((size, size))
    img = ndimage.gaussian_filter(noise, 6)
    return ((img - img.min()) / np.ptp(img)).astype(np.float32)


def test_normalised_dot_is_pearson():
    x = np.random.default_rng(0).random((5, 64))
    z = normalise(x)
    np.testing.assert_allclose(z @ z.T, np.corrcoef(x), atol=1e-12)


def test_copies_group_and_distinct_slices_do_not():
    a, b = _slice(1), _slice(2)
    brighter = np.clip(0.8 * a + 0.1, 0, 1)                 # another contrast
    smaller = resize_image(resize_image(a, 48), 128)        # another resolution
    thumbs = np.stack([thumbnail(x) for x in (a, b, brighter, smaller)])
    labels = group_labels(thumbs)
    assert labels[0] == labels[2] == labels[3] != labels[1]
    i, j, corr = duplicate_pairs(thumbs)
    assert {(int(p), int(q)) for p, q in zip(i, j, strict=True)} == {(0, 2), (0, 3), (2, 3)}
    assert (corr > 0.995).all()


def test_groups_are_connected_components():
    # 0~1 and 1~2 above the threshold, 0~2 below it: still one group (a chain).
    base = np.random.default_rng(0).standard_normal(1024)
    step = np.random.default_rng(1).standard_normal(1024)
    thumbs = np.stack([base, base + 0.08 * step, base + 0.16 * step, -base])
    corr = np.corrcoef(thumbs)
    assert corr[0, 1] > 0.995 and corr[1, 2] > 0.995 and corr[0, 2] < 0.995
    labels = group_labels(thumbs)
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_blank_images_stay_alone_and_names_are_smallest_ids():
    thumbs = np.stack([np.zeros(16), np.zeros(16), np.arange(16.0), np.arange(16.0) * 2])
    assert group_names(["d", "c", "b", "a"], thumbs) == ["d", "c", "a", "a"]


def test_assign_groups_from_images():
    a = _slice(3, 64)
    samples = [Sample(id=f"s{i}", group="", label=0, image=img)
               for i, img in enumerate([a, np.clip(a * 0.9 + 0.05, 0, 1), _slice(4, 64)])]
    assign_groups(samples)
    assert [s.group for s in samples] == ["s0", "s0", "s2"]


def test_threshold_is_checked():
    with pytest.raises(DataError, match="threshold"):
        group_labels(np.zeros((2, 4)), threshold=1.5)


def test_three_thousand_thumbnails_group_in_seconds():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1500, 1024)).astype(np.float32)
    thumbs = np.concatenate([base, base + 0.01 * rng.standard_normal(base.shape)])
    start = time.perf_counter()
    labels = group_labels(thumbs)
    assert time.perf_counter() - start < 5.0
    assert len(set(labels.tolist())) == 1500
    assert (labels[:1500] == labels[1500:]).all()
