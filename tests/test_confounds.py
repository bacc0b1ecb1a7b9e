"""The shortcut audit: metadata that tracks the label is caught, metadata that does not is not."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mribench.api.types import UNLABELLED, Sample
from mribench.split.shortcuts import (
    ACQUISITION_FEATURES,
    SHORTCUT_MARGIN,
    acquisition_features,
    shortcut_audit,
    size_features,
)


def _samples(n: int, seed: int, *, size_by_label: bool = False,
             padding_by_label: bool = False) -> list[Sample]:
    """``n`` tiny noise images, labels alternating; sizes and padding optionally follow them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        image = rng.uniform(0.2, 0.8, (32, 32)).astype(np.float32)
        if padding_by_label and label:
            image[:6] = 0.0
            image[-6:] = 0.0
        if size_by_label:  # two sources: small landscape vs large square images
            h, w = ((int(rng.integers(500, 700)),) * 2 if label
                    else (int(rng.integers(200, 300)), int(rng.integers(250, 350))))
        else:
            h = w = int(rng.integers(200, 700))
        out.append(Sample(f"s{i}", f"s{i}", label, image, original_size=(h, w)))
    return out


def test_size_shortcut_is_detected() -> None:
    samples = _samples(200, seed=1, size_by_label=True)
    audit = shortcut_audit(samples[:140], samples[140:])
    assert audit["size_only"]["accuracy"] >= 0.97 and audit["size_only"]["auc"] >= 0.97
    assert audit["majority"] == pytest.approx(0.5)
    assert audit["n_train"] == 140 and audit["n_test"] == 60
    assert audit["flagged"] == ["size_only"]  # the noise images carry no cue
    assert audit["size_only"]["p_value"] < 1e-6 and "original size" in audit["warning"]
    json.dumps(audit)  # JSON-ready


def test_no_shortcut_stays_near_chance() -> None:
    samples = _samples(600, seed=2)
    audit = shortcut_audit(samples[:400], samples[400:])
    for probe in ("size_only", "acquisition", "content"):
        assert abs(audit[probe]["accuracy"] - 0.5) < SHORTCUT_MARGIN
        assert abs(audit[probe]["auc"] - 0.5) < 0.15
    assert audit["flagged"] == [] and audit["warning"] == ""


def test_padding_shortcut_is_detected_by_the_acquisition_probe() -> None:
    samples = _samples(120, seed=3, padding_by_label=True)
    audit = shortcut_audit(samples[:80], samples[80:])
    assert audit["acquisition"]["accuracy"] == 1.0
    # the padding rows are exact zeros outside the head: the content probe sees them too
    assert audit["flagged"] == ["acquisition", "content"]


def test_features_known_values_and_size_invariance() -> None:
    image = np.zeros((256, 256), np.float32)
    image[64:192, 64:192] = 1.0  # bright centre, black background
    small = image.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    big, reduced = acquisition_features([Sample("a", "a", 1, image),
                                         Sample("b", "b", 1, small)])
    assert dict(zip(ACQUISITION_FEATURES, big, strict=True)) == pytest.approx(
        {"black_fraction": 0.75, "border_mean": 0.0, "border_std": 0.0,
         "border_black_fraction": 1.0})
    np.testing.assert_allclose(big, reduced)
    sizes = size_features([Sample("a", "a", 1, image, original_size=(200, 100)),
                           Sample("b", "b", 1, image)])
    np.testing.assert_allclose(sizes, [[200, 100, math.log(2)], [0, 0, 0]])


def test_degenerate_parts_give_nan_not_errors() -> None:
    samples = _samples(20, seed=4)
    one_class = [s for s in samples if s.label == 1]
    audit = shortcut_audit(one_class, samples)
    assert math.isnan(audit["size_only"]["accuracy"]) and audit["flagged"] == []
    assert audit["majority"] == 0.5 and audit["majority_label"] == 1
    empty = shortcut_audit(samples, [replace(s, label=UNLABELLED) for s in samples])
    assert empty["n_test"] == 0 and math.isnan(empty["majority"])


def test_split_record_and_report_show_the_audit(tmp_path: Path) -> None:
    from mribench.datasets.synthetic import Synthetic
    from mribench.report.build import build_report
    from mribench.split.choose import choose_split
    from mribench.testing import make_fake_results

    dataset = Synthetic(image_size=32, n=60)
    record = choose_split(dataset, dataset.load(), None).describe()
    assert record["shortcuts"]["n_test"] == record["counts"]["test"]
    assert record["shortcuts"]["flagged"] == []  # one source: every size is 32 x 32

    samples = _samples(200, seed=1, size_by_label=True)
    run_dir = make_fake_results(tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    run["split"]["shortcuts"] = shortcut_audit(samples[:140], samples[140:])
    (run_dir / "run.json").write_text(json.dumps(run))
    index = build_report(run_dir, tmp_path / "report")
    page, md = index.read_text(), (index.parent / "report.md").read_text()
    assert "Shortcut audit" in page and "never looks at the tumour" in page
    assert "Shortcut warning" in md and "original size" in md


def test_br35h_size_alone_predicts_the_label(br35h_samples) -> None:
    """Measured: size-only accuracy 0.921 (majority 0.508) on the leak-free test part."""
    from mribench.split import manifest as splits

    dataset, samples = br35h_samples
    manifest, _ = splits.split_for(dataset.split_name, samples, "leak-free",
                                   official_parts=dataset.official_parts(),
                                   options=dataset.options)
    train, _, test = splits.apply(manifest, samples)
    audit = shortcut_audit(train, test)
    assert audit["majority"] < 0.55
    assert audit["size_only"]["accuracy"] > 0.85 and audit["size_only"]["auc"] > 0.9
    assert "size_only" in audit["flagged"]
