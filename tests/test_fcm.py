"""Fuzzy c-means against scikit-fuzzy's update equations, and on an image with known regions."""

from __future__ import annotations

import numpy as np
import pytest

from mribench.api.errors import ParamError
from mribench.blocks.fcm import fcm_image, fuzzy_cmeans

skfuzzy = pytest.importorskip("skfuzzy")


@pytest.mark.parametrize(("c", "m", "dims"), [(2, 2.0, 1), (3, 2.0, 1), (3, 1.7, 2), (4, 2.5, 1)])
def test_matches_scikit_fuzzy(c: int, m: float, dims: int) -> None:
    rng = np.random.default_rng(c + dims)
    x = np.concatenate([rng.normal(mu, 0.05, (40, dims)) for mu in np.linspace(0, 1, c)])
    u0 = rng.random((c, x.shape[0]))
    u0 /= u0.sum(axis=0)
    for steps in (1, 3, 50):  # same start, same number of updates -> same answer
        cntr, u, *_ = skfuzzy.cluster.cmeans(x.T, c, m, error=0.0, maxiter=steps, init=u0)
        ours = fuzzy_cmeans(x, c=c, m=m, tol=0.0, max_iter=steps, init=u0)
        order = np.argsort(cntr[:, 0], kind="stable")
        np.testing.assert_allclose(ours.centers, cntr[order], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.memberships, u[order], rtol=1e-10, atol=1e-12)
        assert ours.n_iter == steps
    # with a tolerance both stop after the same number of steps
    *_, p, _ = skfuzzy.cluster.cmeans(x.T, c, m, error=1e-6, maxiter=200, init=u0)
    assert fuzzy_cmeans(x, c=c, m=m, tol=1e-6, max_iter=200, init=u0).n_iter == p


def test_default_start_finds_the_clusters() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(mu, 0.02, 200) for mu in (0.1, 0.5, 0.9)])
    result = fuzzy_cmeans(x, c=3)
    np.testing.assert_allclose(result.centers[:, 0], [0.1, 0.5, 0.9], atol=0.01)
    np.testing.assert_allclose(result.memberships.sum(axis=0), 1.0)
    assert (result.labels == np.repeat([0, 1, 2], 200)).all()


def test_image_maps_and_mask() -> None:
    image = np.zeros((20, 20))
    image[:, 10:] = 0.5
    image[5:9, 12:16] = 1.0
    mask = np.ones((20, 20), bool)
    mask[:2] = False
    maps, centers = fcm_image(image, mask, c=3)
    assert maps.shape == (3, 20, 20) and (maps[:, :2] == 0).all()
    np.testing.assert_allclose(maps[:, mask].sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(centers, [0.0, 0.5, 1.0], atol=1e-3)
    assert (maps[2] > 0.5).sum() == 16 and (maps[2][5:9, 12:16] > 0.99).all()


def test_bad_parameters() -> None:
    with pytest.raises(ParamError, match="fuzzifier"):
        fuzzy_cmeans(np.arange(10.0), c=2, m=1.0)
    with pytest.raises(ParamError, match="c must be"):
        fuzzy_cmeans(np.arange(10.0), c=1)
