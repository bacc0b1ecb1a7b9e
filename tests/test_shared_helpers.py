"""The helpers that exist once (issue 10): pixel overlap, resizing, seeding, the ``name[k=v]``
syntax and the deep plugins' training parameters."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from mribench.api import ParamError, registry
from mribench.api.overlap import dice_from_counts, iou_from_counts, pooled_dice
from mribench.api.params import format_spec, parse_overrides, parse_spec, split_top_level
from mribench.api.seeding import seed_everything
from mribench.api.specs import resolve_methods
from mribench.blocks.nn.patches import PatchCNNParams, dice_optimal_offset
from mribench.blocks.nn.train import TRAINING_RULES, TrainParams
from mribench.blocks.resize import mask_cover, resize_image, resize_mask
from mribench.eval.metrics import metrics_from_counts

# --------------------------------------------------------------------------- overlap


def test_dice_and_iou_by_hand_and_the_empty_value() -> None:
    assert dice_from_counts(8, 2, 5, empty=0.0) == pytest.approx(16 / 23)
    assert iou_from_counts(8, 2, 5, empty=0.0) == pytest.approx(8 / 15)
    assert dice_from_counts(0, 0, 0, empty=0.0) == 0.0
    assert dice_from_counts(0, 0, 0, empty=1.0) == 1.0
    assert dice_from_counts(0, 3, 0, empty=1.0) == 0.0
    arr = dice_from_counts(np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), empty=1.0)
    np.testing.assert_allclose(arr, [1.0, 2 / 3])
    m = metrics_from_counts(8, 2, 85, 5)  # the metrics' F1 and IoU are the same functions
    assert m["f1"] == dice_from_counts(8, 2, 5, empty=0.0)
    assert m["iou"] == iou_from_counts(8, 2, 5, empty=0.0)


def test_pooled_dice_pools_all_pixels() -> None:
    pred = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], bool)
    truth = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], bool)
    assert pooled_dice(pred, truth, empty=1.0) == pytest.approx(2 / 3)
    assert pooled_dice(pred[1], truth[1], empty=1.0) == 1.0


def test_dice_optimal_offset_is_the_best_cut() -> None:
    rng = np.random.default_rng(3)
    z = torch.from_numpy(np.round(rng.normal(size=300), 1)).float()  # with ties
    y = torch.from_numpy((rng.random(300) < 0.3).astype(np.float32))
    offset, dice = dice_optimal_offset(z, y)
    cuts = sorted(set(z.tolist()))
    brute = max(pooled_dice(z.numpy() >= c, y.numpy() >= 0.5, empty=1.0) for c in cuts)
    assert dice == pytest.approx(brute, rel=1e-6)
    assert pooled_dice(z.numpy() > offset, y.numpy() >= 0.5, empty=1.0) == pytest.approx(brute)


# --------------------------------------------------------------------------- resize


def test_mask_filters_box_and_bilinear() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :1] = True  # half of the top-left 2x2 block
    assert resize_mask(mask, 2).tolist() == [[True, False], [False, False]]  # area 1/2
    assert mask_cover(mask, 2)[0, 0] == pytest.approx(0.5)
    up = resize_mask(np.eye(2, dtype=bool), (3, 5), filter="bilinear")
    assert up.shape == (3, 5) and up[0, 0] and up[-1, -1] and not up[0, -1]
    same = np.ones((3, 3), bool)
    out = resize_mask(same, 3)
    assert out is not same and out.all()


def test_resize_image_clips_unless_told() -> None:
    image = np.full((8, 8), 1.5, np.float32)
    assert resize_image(image, 4).max() == 1.0
    assert resize_image(image, 4, clip=False).max() == pytest.approx(1.5)
    assert resize_image(image, (2, 6)).shape == (2, 6)


# --------------------------------------------------------------------------- seeding


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(torch.rand(1))


def test_seed_everything_seeds_all_three_and_tolerates_no_torch(monkeypatch) -> None:
    seed_everything(7)
    first = _draws()
    seed_everything(np.int64(7))
    assert _draws() == first
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    seed_everything(7)
    assert random.random() == first[0]


# --------------------------------------------------------------------------- name[k=v]


def test_spec_syntax_round_trips_lists_and_strings() -> None:
    assert split_top_level('a[x=[1,2]],b,c[s="p,q"]') == ["a[x=[1,2]]", "b", 'c[s="p,q"]']
    overrides = {"hidden": [32, 16], "loss": "dice+bce", "patience": None, "lr": 0.001}
    spec = format_spec("unet", overrides)
    assert parse_spec(spec) == ("unet", overrides)
    assert parse_spec("svm") == ("svm", {})
    assert parse_overrides("epochs=5, augment=false") == {"epochs": 5, "augment": False}
    assert resolve_methods("unet[hidden=[32,16],epochs=2],svm") == [
        ("unet", {"hidden": [32, 16], "epochs": 2}), ("svm", {})]


def test_split_option_is_added_through_the_spec() -> None:
    from mribench.api.specs import DatasetSpec

    def with_threshold(text: str) -> str:
        return DatasetSpec.parse(text).with_options(threshold=0.9).text

    assert with_threshold("br35h") == "br35h[threshold=0.9]"
    assert with_threshold("br35h[threshold=0.5]") == "br35h[threshold=0.9]"
    assert with_threshold("folder:/data/x[positive=t]") == (
        'folder:/data/x[positive="t",threshold=0.9]')
    assert DatasetSpec.parse(with_threshold("folder:/data/x[positive=t]")).option_dict == {
        "positive": "t", "threshold": 0.9}


# --------------------------------------------------------------------------- TrainParams

DEEP = ("cnn", "fcm-cnn", "dwt-dnn", "unet", "two-pathway-cnn", "multiscale-cnn")


@pytest.mark.parametrize("name", DEEP)
def test_deep_plugins_share_the_training_rules(name) -> None:
    cls = registry.methods()[name]
    assert issubclass(cls.Params, TrainParams)
    rules = cls.Params.rules()
    fields = set(cls.Params().as_dict())
    for knob in set(TRAINING_RULES) & fields:
        assert knob in rules
    with pytest.raises(ParamError, match=f"{name}: parameter 'lr'"):
        cls.params_for("quick", lr=0)
    with pytest.raises(ParamError, match="'batch_size'"):
        cls.params_for("quick", batch_size=0)


def test_patch_params_take_no_early_stopping() -> None:
    assert PatchCNNParams(patience=None).patience is None
