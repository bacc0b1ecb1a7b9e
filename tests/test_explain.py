"""Explanation maps: occlusion on a toy classifier peaks where its evidence is, Grad-CAM's hooks
work on the shipped CNNs, and the attribution scores match hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_model import INFO, fit_tiny

from mribench.api import Context
from mribench.cli import cli
from mribench.model import save_model
from mribench.model.explain import (
    attribution_summary,
    bootstrap_ci,
    explain_samples,
    grad_cam,
    occlusion_map,
    placements,
    pointing_score,
    positive_share,
)

SQUARE = (slice(20, 36), slice(24, 40))  # rows 20..35, columns 24..39 of a 64 x 64 slice


def square_mean(images: np.ndarray) -> np.ndarray:
    """A toy 'classifier': the mean intensity of a known square."""
    return images[:, SQUARE[0], SQUARE[1]].mean(axis=(1, 2))


def test_placements_cover_the_border() -> None:
    assert placements(64, 8, 4)[-1] == 56 and placements(64, 8, 4)[:3] == [0, 4, 8]
    assert placements(10, 4, 4) == [0, 4, 6]
    assert placements(8, 32, 16) == [0]


def test_occlusion_of_toy_classifier_peaks_in_its_square() -> None:
    image = np.zeros((64, 64), np.float32)
    image[SQUARE] = 1.0
    calls = []

    def score(stack: np.ndarray) -> np.ndarray:
        calls.append(len(stack))
        return square_mean(stack)

    m = occlusion_map(score, image, patch=8, stride=4, fill=0.0)
    assert calls == [1 + 15 * 15]  # the slice and all its occluded copies, in one call
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert 20 <= y < 36 and 24 <= x < 40
    # hand-computed: every placement covering (28, 32) lies inside the 16 x 16 square and
    # blanks 64 of its 256 pixels: a drop of 0.25
    assert m[28, 32] == pytest.approx(0.25)
    assert m[2, 2] == 0.0 and m[60, 5] == 0.0
    assert positive_share(m, np.pad(np.ones((16, 16), bool), ((20, 28), (24, 24)))) > 0.5


def test_occlusion_with_a_uniform_image_is_flat() -> None:
    m = occlusion_map(square_mean, np.full((32, 32), 0.5, np.float32), patch=8, stride=8)
    assert np.all(m == 0)


def test_attribution_scores_by_hand() -> None:
    a = np.array([[1.0, -1.0], [2.0, 0.0]])
    mask = np.array([[True, False], [False, False]])
    assert positive_share(a, mask) == pytest.approx(1 / 3)
    assert np.isnan(positive_share(-np.abs(a), mask))
    assert pointing_score(a, mask) == 0.0  # the max (2) is outside
    assert pointing_score(a, ~mask) == 1.0
    assert pointing_score(np.array([[1.0, 1.0], [0.0, 0.0]]), mask) == 0.5  # tied maxima
    assert pointing_score(np.zeros((2, 2)), mask) == 0.25  # flat: the mask's area fraction
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, low, high = bootstrap_ci([0.0, 1.0] * 20, n_boot=500, seed=1)
    assert mean == 0.5 and 0.3 < low < 0.5 < high < 0.7
    maps = np.stack([a, a, a])
    masks = np.stack([mask, ~mask, np.zeros((2, 2), bool)])  # the empty mask is left out
    s = attribution_summary(maps, masks, n_boot=200)
    assert s["n_slices"] == 2
    assert s["positive_share"]["mean"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert s["pointing"]["mean"] == pytest.approx(0.5)
    assert s["random_baseline"]["mean"] == pytest.approx((0.25 + 0.75) / 2)


def test_grad_cam_of_a_toy_network_peaks_on_the_bright_square() -> None:
    import torch
    from torch import nn

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=False)
            self.act = nn.ReLU(inplace=True)
            with torch.no_grad():
                self.conv.weight[:] = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv(x))[:, :1].mean(dim=(2, 3))

    image = torch.zeros(1, 1, 32, 32)
    image[0, 0, 8:16, 10:20] = 1.0
    cam = grad_cam(Toy(), image)
    assert cam.shape == (1, 32, 32) and cam.max() == pytest.approx(1.0)
    assert cam[0, 8:16, 10:20].min() > 0.99 and cam[0, :6].max() < 1e-6


@pytest.mark.parametrize("name", ["cnn", "fcm-cnn", "unet"])
def test_grad_cam_of_shipped_cnns(name, tiny_samples, tmp_path, torch_one_thread) -> None:
    samples = tiny_samples(n=20, size=48, seed=3)
    method = fit_tiny(name, samples, tmp_path)
    flags = [getattr(m, "inplace", None) for m in method.model_.modules()]
    before = method.predict(samples[:4], Context())
    result = explain_samples(method, samples[:4], Context(), kinds=("gradcam",), n_boot=50)
    maps = result.maps["gradcam"]
    assert maps.shape == (4, 48, 48) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    # the hooks leave the network as it was: in-place flags restored, same predictions
    assert [getattr(m, "inplace", None) for m in method.model_.modules()] == flags
    np.testing.assert_array_equal(method.predict(samples[:4], Context()).scores, before.scores)


def test_explain_cli_scores_maps_against_masks(tmp_path, tiny_samples) -> None:
    method = fit_tiny("glcm-knn", tiny_samples(n=20, size=48, seed=3), tmp_path / "work")
    save_model(method, tmp_path / "model", info={**INFO, "image_size": 48})
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, s in enumerate(tiny_samples(n=4, size=48, seed=11)):
        Image.fromarray(np.round(s.image * 255).astype(np.uint8)).save(images / f"s{i}.png")
        if s.mask is not None and s.mask.any():
            Image.fromarray(s.mask.astype(np.uint8) * 255).save(masks / f"s{i}_mask.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["explain", str(tmp_path / "model"), "--images",
                                      str(images), "--masks", str(masks), "--out", str(out),
                                      "--patch", "16", "--stride", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "attribution.json").read_text())
    assert report["kinds"] == ["occlusion"]  # no Grad-CAM for a KNN
    scores = report["scores"]["occlusion"]
    assert scores["n_slices"] == report["n_with_mask"] >= 1
    assert set(scores["random_baseline"]) == {"mean", "ci_low", "ci_high"}
    assert (out / "montage-occlusion.png").is_file()
    with np.load(out / "maps.npz") as maps:
        assert maps["occlusion"].shape == (4, 48, 48)


def test_no_skill_maps_are_scored_beside_the_method():
    """The image itself and a centre prior are scored like a method's map: here the tumour is
    the brightest region (intensity points at it) and sits off-centre (the prior misses)."""
    from mribench.model.explain import baseline_maps, centre_prior

    images = np.full((2, 20, 20), 0.2)
    masks = np.zeros((2, 20, 20), bool)
    masks[:, 2:6, 2:6] = True
    images[masks] = 0.9
    flat = np.zeros((2, 20, 20))
    s = attribution_summary(flat, masks, n_boot=50, images=images)
    assert s["baselines"]["intensity"]["pointing"]["mean"] == 1.0
    assert s["baselines"]["centre"]["pointing"]["mean"] == 0.0
    assert s["baselines"]["random"]["pointing"]["mean"] == pytest.approx(16 / 400)
    prior = centre_prior((21, 21))
    assert prior.argmax() == 10 * 21 + 10 and baseline_maps(images)["centre"].shape == images.shape
