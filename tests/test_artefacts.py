"""The artefact axis: the corruptions themselves, their cache, the runner's evaluation sets, the
tables and the report section (``bench run --corrupt``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from mribench.api import registry
from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.types import Prediction, Sample
from mribench.blocks.artefacts import (
    ARTEFACTS,
    MAX_SEVERITY,
    corrupt,
    parse_artefacts,
    parse_severities,
)
from mribench.data.corrupted import corrupted_samples


def _slice(size: int = 64) -> np.ndarray:
    """A head-like slice: a bright disc with a darker core, an edge and fine texture."""
    y, x = np.mgrid[:size, :size] / size - 0.5
    r = np.hypot(x, y)
    image = np.where(r < 0.4, 0.55, 0.05) + np.where(r < 0.15, -0.2, 0.0)
    image += 0.05 * np.sin(40 * x) * np.cos(40 * y) * (r < 0.4)
    return np.clip(image, 0, 1).astype(np.float32)


def _high_frequency(image: np.ndarray) -> float:
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2
    size = image.shape[0]
    y, x = np.mgrid[:size, :size] - size // 2
    return float(spectrum[np.hypot(x, y) > size / 8].sum())


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_severity_zero_is_the_identity(artefact) -> None:
    image = _slice()
    out = corrupt(image, artefact, 0, "a")
    assert out.dtype == np.float32 and np.array_equal(out, image)


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_every_artefact_moves_further_from_clean_with_severity(artefact) -> None:
    image = _slice()
    outs = [corrupt(image, artefact, s, "id-7") for s in range(MAX_SEVERITY + 1)]
    distance = [float(np.abs(o - image).mean()) for o in outs]
    assert distance[0] == 0 and all(b > a for a, b in zip(distance, distance[1:], strict=False))
    assert all(o.shape == image.shape and o.min() >= 0 and o.max() <= 1 for o in outs)


def test_severities_are_monotone_on_their_own_statistic() -> None:
    image = np.full((64, 64), 0.5, dtype=np.float32)
    noise_sd = [float((corrupt(image, "noise", s, "n") - image).std()) for s in range(1, 6)]
    assert noise_sd == sorted(noise_sd) and abs(noise_sd[0] - 0.04) < 0.01
    texture = _slice()
    bias_range = [float(np.ptp(np.log(corrupt(texture, "bias", s, "b")[texture > 0.3]
                                      / texture[texture > 0.3]))) for s in range(1, 6)]
    assert bias_range == sorted(bias_range) and bias_range[0] > 0
    energy = [_high_frequency(corrupt(texture, "blur", s, "c")) for s in range(0, 6)]
    assert all(b < a for a, b in zip(energy, energy[1:], strict=False))
    means = [float(corrupt(texture, "gamma", s, "g").mean()) for s in range(0, 6)]
    assert all(b < a for a, b in zip(means, means[1:], strict=False))


def test_the_same_image_gets_the_same_pixels_in_another_process() -> None:
    image = _slice()
    here = {a: hashlib.sha256(corrupt(image, a, 3, "yes/y12").tobytes()).hexdigest()
            for a in ARTEFACTS}
    folder = str(Path(__file__).parent)
    code = (f"import hashlib, sys; sys.path.insert(0, {folder!r}); "
            "from test_artefacts import _slice; "
            "from mribench.blocks.artefacts import ARTEFACTS, corrupt; "
            "print(' '.join(hashlib.sha256(corrupt(_slice(), a, 3, 'yes/y12').tobytes())"
            ".hexdigest() for a in ARTEFACTS))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "123"}
                           ).stdout.split()
    assert other == [here[a] for a in ARTEFACTS]
    # another id draws another pattern
    assert not np.array_equal(corrupt(image, "noise", 3, "yes/y12"),
                              corrupt(image, "noise", 3, "yes/y13"))


def test_corrupted_samples_keep_masks_labels_and_are_cached(tmp_path, tiny_samples) -> None:
    samples = tiny_samples(n=6, size=32)
    folder = tmp_path / "store"
    first = corrupted_samples(samples, "ghosting", 2, folder)
    assert [s.id for s in first] == [s.id for s in samples]
    for clean, bad in zip(samples, first, strict=True):
        assert bad.label == clean.label and bad.group == clean.group
        assert (bad.mask is None) == (clean.mask is None)
        if clean.mask is not None:
            assert np.array_equal(bad.mask, clean.mask)
        assert np.array_equal(bad.image, corrupt(clean.image, "ghosting", 2, clean.id))
        assert not np.array_equal(bad.image, clean.image)
    written = (folder / "images.bin").stat().st_mtime_ns
    corrupted_samples(samples, "ghosting", 2, folder)
    assert (folder / "images.bin").stat().st_mtime_ns == written  # made once


def test_a_corrupted_image_never_shares_a_feature_cache_entry_with_its_clean_one(
        tiny_samples) -> None:
    from mribench.api.feature_cache import _image_key

    sample = next(s for s in tiny_samples(n=4, size=64) if s.label == 1)
    keys = {_image_key(sample)}
    for artefact in ARTEFACTS:
        bad = Sample(id=sample.id, group=sample.group, label=sample.label,
                     image=corrupt(sample.image, artefact, 1, sample.id), mask=sample.mask)
        keys.add(_image_key(bad))
    assert len(keys) == 1 + len(ARTEFACTS)  # same id, other pixels: another entry


def test_options_name_the_allowed_values() -> None:
    assert parse_artefacts("all") == ARTEFACTS
    assert parse_artefacts("noise,bias") == ("bias", "noise")
    assert parse_severities("1-5") == (1, 2, 3, 4, 5) and parse_severities("5,1,3") == (1, 3, 5)
    with pytest.raises(MribenchError, match="allowed: all, none, bias, motion"):
        parse_artefacts("bias,rain")
    for bad in ("0", "6", "1-7", "x", "3-1"):
        with pytest.raises(MribenchError, match="integers from 1 to 5"):
            parse_severities(bad)


@pytest.mark.parametrize("args, needle", [
    (["--corrupt", "fog"], "unknown artefact 'fog'; allowed: all, none, bias"),
    (["--corrupt", "bias", "--severities", "0,7"], "--severities must be integers from 1 to 5"),
])
def test_cli_refuses_an_unknown_artefact_or_severity(tmp_path, capsys, args, needle) -> None:
    from mribench.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", "--method", "glcm-knn", "--dataset", "synthetic[n=20]", "--out",
              str(tmp_path / "r"), "--quiet", *args])
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "r").exists()


class Spy(Method):
    """Thresholds the mean intensity; records every image ``fit`` receives."""

    name = "spy"
    reference = "test fixture"
    fitted: ClassVar[list[bytes]] = []

    def fit(self, train: Sequence[Sample], val: Sequence[Sample], ctx: Context) -> Spy:
        type(self).fitted = [s.image.tobytes() for s in [*train, *val]]
        v = np.array([s.image.mean() for s in train])
        self.threshold_ = float(np.median(v))
        return self

    def predict(self, samples: Sequence[Sample], ctx: Context) -> Prediction:
        v = np.array([s.image.mean() for s in samples])
        return Prediction([s.id for s in samples], (v > self.threshold_).astype(int), v)


def test_corrupted_images_never_reach_fit_and_every_job_reads_one_cache(tmp_path,
                                                                        monkeypatch) -> None:
    from mribench.results.artefacts import artefact_data
    from mribench.results.read import load_results
    from mribench.run.runner import RunConfig, run_benchmark

    monkeypatch.setattr(registry, "methods", lambda: {"spy": Spy})
    config = RunConfig(methods="spy", dataset="synthetic[n=40]", image_size=32, n_boot=20,
                       seeds="0,1", corrupt="noise,blur", severities="1,5",
                       out=tmp_path / "run", results_root=tmp_path)
    outcome = run_benchmark(config)
    assert not outcome.failed
    stores = sorted((tmp_path / "run" / ".cache" / "artefacts").iterdir())
    assert len(stores) == 4  # one per (artefact, severity), shared by both seeds' jobs
    corrupted = _stored_images(stores)
    assert Spy.fitted and not corrupted & set(Spy.fitted)
    results = load_results(tmp_path / "run")
    data = artefact_data(results, "classify", "accuracy")
    assert data is not None and set(data.cells["artefact"]) == {"noise", "blur"}
    assert set(data.cells["severity"]) == {1, 5}
    assert results.on("test~blur@5").rows["spy"].done


def _stored_images(stores) -> set[bytes]:
    from mribench.data.store import SampleStore

    return {s.image.tobytes() for folder in stores for s in SampleStore(folder).samples()}


def test_reference_must_be_a_row_and_the_axis_is_part_of_the_identity(tmp_path,
                                                                      monkeypatch) -> None:
    from mribench.run.runner import RunConfig, run_benchmark

    monkeypatch.setattr(registry, "methods", lambda: {"spy": Spy})
    base = dict(methods="spy", dataset="synthetic[n=24]", image_size=32, n_boot=0,
                out=tmp_path / "run", results_root=tmp_path)
    with pytest.raises(MribenchError, match="--corrupt-reference 'nope' is not a row"):
        run_benchmark(RunConfig(**base, corrupt="noise", corrupt_reference="nope"))
    run_benchmark(RunConfig(**base, corrupt="noise", severities="2"))
    with pytest.raises(MribenchError, match="severities"):
        run_benchmark(RunConfig(**base, corrupt="noise", severities="3", resume=True))
    plain = RunConfig(methods="spy").identity({}, "x", "y", "0")
    assert "corrupt" not in plain  # runs without the axis keep their identity


def test_external_sets_are_scored_corrupted_too(tmp_path, monkeypatch) -> None:
    from mribench.report.artefacts import artefact_text
    from mribench.results.read import load_results
    from mribench.run.runner import RunConfig, run_benchmark

    monkeypatch.setattr(registry, "methods", lambda: {"spy": Spy})
    run_benchmark(RunConfig(methods="spy", dataset="synthetic[n=24]", image_size=32, n_boot=0,
                            test_on="synthetic[n=16,seed=3]", corrupt="spike", severities="4",
                            out=tmp_path / "run", results_root=tmp_path))
    results = load_results(tmp_path / "run")
    (external,) = results.eval_sets
    assert results.on(f"{external}~spike@4").rows["spy"].done
    text = artefact_text(results, "accuracy")
    assert "test part" in text and f"external set {external}" in text


def test_unet_mri_augmentation_is_seeded_and_leaves_masks(torch_one_thread) -> None:
    import torch

    from mribench.blocks.nn.data import Augment

    x = torch.from_numpy(np.stack([_slice(32)] * 4))[:, None]
    y = (x > 0.5).float()
    augment = Augment(hflip=0, artefacts=1.0)
    torch.manual_seed(3)
    a, ya = augment(x, y)
    torch.manual_seed(3)
    b, _ = augment(x, y)
    assert torch.equal(a, b) and torch.equal(ya, y) and not torch.equal(a, x)
    assert Augment(hflip=0)(x, y)[0].equal(x)  # the default rows draw no artefact


@pytest.mark.slow
def test_end_to_end_run_prints_the_table_and_the_report_has_the_section(tmp_path) -> None:
    from mribench.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "run", "--method", "glcm-knn,region-growing,cnn[epochs=1]",
        "--dataset", "synthetic[n=60,image_size=64]", "--corrupt", "bias,noise",
        "--severities", "1,3,5", "--profile", "quick", "--n-boot", "50", "--out", str(out),
        "--quiet"])
    assert result.exit_code == 0, result.output
    assert "under artefacts (classify" in result.output
    assert "under artefacts (segment" in result.output
    for name in ("test~bias@1", "test~noise@5"):
        assert (out / "glcm-knn" / "seed-0" / "eval" / name / "metrics.json").is_file()
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Under artefacts" in page
    for figure in ("artefact_examples", "artefact_heatmap_classify",
                   "artefact_curves_classify"):
        assert (out / "report" / "figures" / f"{figure}.png").is_file()
    assert page.count("data:image/png;base64") >= 5
