"""The classical plugins (glcm-knn, svm, ann, ocsvm-immune, region-growing) learn: they beat
chance on the synthetic phantom and do well on easy, controlled data; parameters are
validated; svm and ann share one feature computation.

Sizes are small (64 px) so the module runs in well under a minute. On the phantom the
handcrafted pipelines are far from perfect (small and weakly enhancing tumours defeat the
outlier-seeded candidate), so its thresholds are "clearly above chance" on 90 test slices;
the controlled sets check that each plugin learns what it is built to see.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mribench.api.context import Context
from mribench.api.errors import ParamError
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import Method
from mribench.api.registry import methods
from mribench.api.types import Prediction, Sample

Parts = tuple[list[Sample], list[Sample], list[Sample]]
CLASSICAL = ("glcm-knn", "svm", "ann", "ocsvm-immune", "region-growing")
#: Smaller grids keep the tests fast; the search logic is the same.
FAST = {"ann": {"hidden_grid": (32,), "alpha_grid": (1e-3, 1e-1), "max_iter": 300},
        "svm": {"C_grid": (1.0, 10.0), "gamma_grid": ("scale", 0.01)},
        "ocsvm-immune": {"population": 6, "generations": 4}}


def _by_index(samples: Sequence[Sample]) -> Parts:
    """50% train, 20% val, 30% test by index (labels alternate, so each part is balanced)."""
    parts: Parts = ([], [], [])
    for i, s in enumerate(samples):
        parts[0 if i % 10 < 5 else 1 if i % 10 < 7 else 2].append(s)
    return parts


def _heads(n: int, seed: int, lesion: str) -> list[Sample]:
    """64 px noisy head discs; odd slices get a lesion: a bright disc or a rough texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = []
    for i in range(n):
        head = (yy - 32) ** 2 + ((xx - 32) / 0.85) ** 2 <= 27 ** 2
        image = np.where(head, 0.45, 0.0) + 0.03 * rng.standard_normal((64, 64))
        mask = np.zeros((64, 64), bool)
        if i % 2:
            r = rng.uniform(5, 9)
            cy, cx = rng.uniform(24, 40, 2)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if lesion == "bright":
                image[mask] = 0.85 + 0.03 * rng.standard_normal(int(mask.sum()))
            else:
                image[mask] = rng.uniform(0.1, 0.8, int(mask.sum()))
        out.append(Sample(id=f"{lesion}/{i:03d}", group=f"{lesion}/{i:03d}", label=i % 2,
                          image=np.clip(image, 0, 1).astype(np.float32), mask=mask))
    return out


@pytest.fixture(scope="module")
def phantom_parts() -> Parts:
    from mribench.datasets.synthetic import Synthetic

    samples = Synthetic(image_size=64, n=300, seed=1, duplicates=0.0).load()
    return _by_index(samples)


@pytest.fixture(scope="module")
def phantom_cache() -> FeatureCache:
    """One feature cache for the phantom tests, as in a run (features computed once)."""
    return FeatureCache(None)


def _run(name: str, parts: Parts, cache: FeatureCache | None = None, **overrides: object
         ) -> tuple[Method, Prediction, Context]:
    train, val, test = parts
    method = methods()[name](profile="quick", **{**FAST.get(name, {}), **overrides})
    ctx = Context(cache=cache or FeatureCache(None), method_name=name)
    method.fit(train, val, ctx)
    prediction = method.predict(test, ctx)
    assert prediction.ids == [s.id for s in test]
    assert prediction.labels.shape == (len(test),) and prediction.scores is not None
    return method, prediction, ctx


def _accuracy_auc(prediction: Prediction, test: Sequence[Sample]) -> tuple[float, float]:
    y = np.array([s.label for s in test])
    return float((prediction.labels == y).mean()), float(roc_auc_score(y, prediction.scores))


def _pooled_dice(masks: np.ndarray, test: Sequence[Sample]) -> float:
    truth = np.stack([s.mask_or_empty() for s in test])
    return float(2 * (masks & truth).sum() / (masks.sum() + truth.sum()))


def test_all_classical_plugins_are_registered() -> None:
    found = methods()
    for name in CLASSICAL:
        assert name in found
        cls = found[name]
        assert cls.kind == "classical" and cls.reference and cls.__doc__
        assert set(cls.profiles) == {"quick", "paper"}
        cls(profile="paper")  # the paper profile validates too


@pytest.mark.parametrize("name", ["svm", "ann", "ocsvm-immune"])
def test_handcrafted_classifiers_learn_bright_lesions(name: str) -> None:
    parts = _by_index(_heads(120, seed=0, lesion="bright"))
    _, prediction, _ = _run(name, parts)
    accuracy, auc = _accuracy_auc(prediction, parts[2])
    assert accuracy >= 0.85 and auc >= 0.9


@pytest.mark.parametrize("name", ["svm", "ann"])
def test_handcrafted_classifiers_beat_chance_on_the_phantom(
        name: str, phantom_parts: Parts, phantom_cache: FeatureCache) -> None:
    _, prediction, _ = _run(name, phantom_parts, phantom_cache)
    accuracy, auc = _accuracy_auc(prediction, phantom_parts[2])
    assert accuracy >= 0.6 and auc >= 0.62   # 90 test slices: chance is 0.5 +- 0.05


def test_ocsvm_immune_beats_chance_on_the_phantom_and_records_generations(
        phantom_parts: Parts, phantom_cache: FeatureCache) -> None:
    method, prediction, ctx = _run("ocsvm-immune", phantom_parts, phantom_cache)
    _, auc = _accuracy_auc(prediction, phantom_parts[2])
    assert auc >= 0.6
    curve = [row["best_affinity"] for row in ctx.history if "generation" in row]
    assert [row["generation"] for row in ctx.history] == list(range(5))
    assert np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(method.cv_auc_)
    assert 0 < method.nu_ <= 1 and method.gamma_ > 0


def test_glcm_knn_learns_texture() -> None:
    parts = _by_index(_heads(120, seed=1, lesion="texture"))
    method, prediction, ctx = _run("glcm-knn", parts)
    accuracy, auc = _accuracy_auc(prediction, parts[2])
    assert accuracy >= 0.85 and auc >= 0.85
    assert method.k_ in method.params.k_grid
    assert {row["k"] for row in ctx.history} == set(method.params.k_grid)


def test_region_growing_segments_better_than_trivial_masks(phantom_parts: Parts) -> None:
    from mribench.blocks.preprocess import brain_mask

    test = phantom_parts[2]
    method, prediction, ctx = _run("region-growing", phantom_parts)
    assert prediction.masks is not None and prediction.masks.shape == (len(test), 64, 64)
    dice = _pooled_dice(prediction.masks, test)
    whole_brain = _pooled_dice(np.stack([brain_mask(s.image) for s in test]), test)
    assert dice > 0.2 and dice > 2 * whole_brain
    assert method.seed_k_ in method.params.seed_k_grid
    assert len(ctx.history) == len(method.params.seed_k_grid) * len(method.params.tolerance_grid)

    easy = _by_index(_heads(60, seed=2, lesion="bright"))
    _, easy_prediction, _ = _run("region-growing", easy)
    assert easy_prediction.masks is not None
    assert _pooled_dice(easy_prediction.masks, easy[2]) > 0.8
    accuracy, _ = _accuracy_auc(easy_prediction, easy[2])
    assert accuracy >= 0.85   # the area threshold learnt on val


def test_svm_and_ann_share_one_feature_computation() -> None:
    parts = _by_index(_heads(40, seed=3, lesion="bright"))
    cache = FeatureCache(None)
    _run("svm", parts, cache)
    misses = cache.misses
    assert misses == 40          # every slice described once
    _run("ann", parts, cache)
    _run("ocsvm-immune", parts, cache)
    assert cache.misses == misses and cache.hits >= 80


@pytest.mark.parametrize("value", [0, 0.0, 1.5, -0.1])
def test_ocsvm_nu_outside_unit_interval_is_a_param_error(value: float) -> None:
    with pytest.raises(ParamError) as info:
        methods()["ocsvm-immune"](nu=value)
    message = str(info.value)
    assert "\n" not in message and "ocsvm-immune" in message and "'nu'" in message
    assert "(0, 1]" in message
    methods()["ocsvm-immune"](nu=1.0)  # the closed end is allowed


@pytest.mark.parametrize("name, overrides, parameter", [
    ("glcm-knn", {"k_grid": [0, 3]}, "k_grid"),
    ("glcm-knn", {"levels": 1}, "levels"),
    ("svm", {"C_grid": []}, "C_grid"),
    ("ann", {"hidden_grid": [8.5]}, "hidden_grid"),
    ("region-growing", {"tolerance_grid": [-1]}, "tolerance_grid"),
    ("region-growing", {"equalise": "n4"}, "equalise"),
    ("ocsvm-immune", {"nu_bounds": (0.5, 0.1)}, "nu_bounds"),
])
def test_bad_parameters_name_the_plugin(name: str, overrides: dict, parameter: str) -> None:
    with pytest.raises(ParamError, match=f"{name}: parameter '{parameter}'"):
        methods()[name](**overrides)
