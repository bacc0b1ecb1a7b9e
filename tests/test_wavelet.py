"""DWT features: validation one-liners, sizes, and agreement with pywt on known images."""

from __future__ import annotations

import numpy as np
import pytest
import pywt

from mribench.api.errors import ParamError
from mribench.blocks.features.wavelet import (
    check_levels,
    check_wavelet,
    dwt_features,
    dwt_matrix,
    max_levels,
)


def test_unknown_wavelet_is_a_one_line_param_error() -> None:
    with pytest.raises(ParamError, match="'haar2' is not a discrete wavelet") as err:
        check_wavelet("haar2", owner="dwt-dnn")
    assert "\n" not in str(err.value) and str(err.value).startswith("dwt-dnn:")
    with pytest.raises(ParamError):
        check_wavelet("morl")  # continuous only
    assert check_wavelet("db2") == "db2"


def test_too_many_levels_is_a_param_error() -> None:
    assert max_levels((64, 64), "haar") == pywt.dwt_max_level(64, 2) == 6
    with pytest.raises(ParamError, match="at most 6 level") as err:
        check_levels(7, (64, 64), "haar")
    assert "\n" not in str(err.value)
    with pytest.raises(ParamError, match="at most"):
        dwt_features(np.zeros((16, 16)), "db4", levels=3)
    with pytest.raises(ParamError):
        check_levels(0, (64, 64), "haar")


def test_features_known_values() -> None:
    image = np.full((32, 32), 0.5)
    approx = dwt_features(image, "haar", 3, kind="approx")
    assert approx.shape == (16,)
    np.testing.assert_allclose(approx, 0.5 * 2**3)  # haar approximation gains 2 per level
    stats = dwt_features(image, "haar", 3, kind="stats")
    assert stats.shape == (3 * (1 + 3 * 3),)
    np.testing.assert_allclose(stats[3:], 0.0, atol=1e-12)  # a flat image has no details


def test_matrix_matches_per_image() -> None:
    """The transform of the whole stack equals PyWavelets run on each image alone."""
    rng = np.random.default_rng(0)
    images = [rng.random((24, 24)) for _ in range(3)]
    approx = np.stack([pywt.wavedec2(i, "db2", mode="periodization", level=2)[0].ravel()
                       for i in images])
    np.testing.assert_allclose(dwt_matrix(images, "db2", 2, kind="approx"), approx, atol=1e-12)
    stats = []
    for i in images:
        coeffs = pywt.wavedec2(i, "db2", mode="periodization", level=2)
        bands = [coeffs[0], *(b for detail in coeffs[1:] for b in detail)]
        stats.append([f(b) for b in bands for f in (lambda a: np.mean(a * a), np.mean, np.std)])
    np.testing.assert_allclose(dwt_matrix(images, "db2", 2, kind="stats"), stats, atol=1e-12)
