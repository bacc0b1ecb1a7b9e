"""``bench predict``: a saved model applied to a folder of image files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_model import INFO, fit_tiny

from mribench.api import Context
from mribench.api.types import Sample
from mribench.cli import cli
from mribench.data.imageio import load_image
from mribench.model import ModelError, save_model
from mribench.model.predict import ModelRef, resolve_model_dir
from mribench.results.layout import JobKey, RunLayout
from mribench.results.read import find_model
from mribench.results.write import RunWriter

SIZE = 48


def write_pngs(folder: Path, samples) -> list[Path]:
    """The samples' images as 8-bit PNGs, some in a subfolder, one with an awkward name."""
    paths = []
    for i, s in enumerate(samples):
        sub = folder / ("sub" if i % 3 == 0 else "")
        name = "a<b>&c.png" if i == 1 else f"slice{i:02d}.png"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(s.image * 255).astype(np.uint8)).save(sub / name)
        paths.append(sub / name)
    return paths


def as_samples(paths: list[Path], root: Path) -> list[Sample]:
    out = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        loaded = load_image(p, SIZE, draft=True)
        out.append(Sample(id=rel, group=rel, label=-1, image=loaded.image,
                          original_size=loaded.original_size))
    return out


def read_csv(path: Path) -> dict[str, tuple[int, float | None]]:
    with open(path, newline="") as handle:
        return {r["file"]: (int(r["label"]), float(r["score"]) if r["score"] else None)
                for r in csv.DictReader(handle)}


@pytest.fixture
def row(tmp_path, tiny_samples):
    """A result row folder holding a saved glcm-knn model (trained at 48 px)."""
    train = tiny_samples(n=20, size=SIZE, seed=3)
    method = fit_tiny("glcm-knn", train, tmp_path / "work")
    folder = tmp_path / "results" / "run" / "glcm-knn"
    save_model(method, folder / "model", info={**INFO, "image_size": SIZE})
    return folder, method


def test_predict_folder_writes_everything(row, tmp_path, tiny_samples) -> None:
    folder, method = row
    images = tmp_path / "images"
    paths = write_pngs(images, tiny_samples(n=20, size=64, seed=11))  # resized to 48 px
    (images / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(folder), "--images", str(images),
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "sub/broken.png" in result.output and "20 images predicted" in result.output
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == 20 and "sub/broken.png" not in rows
    assert len(list((out / "overlays").rglob("*.png"))) == 20
    assert not (out / "masks").exists()  # glcm-knn does not segment
    assert "sub/broken.png" in (out / "skipped.csv").read_text()
    page = (out / "index.html").read_text()
    assert "a&lt;b&gt;&amp;c.png" in page and "a<b>&c" not in page
    assert page.count("data:image/png;base64,") == 20 and "Skipped (1)" in page
    # the predictions are the fitted method's own on the same pixels
    expected = method.predict(as_samples(paths, images), Context())
    for i, p in enumerate(paths):
        label, score = rows[p.relative_to(images).as_posix()]
        assert label == expected.labels[i] and score == expected.scores[i]


def test_predict_segmenter_writes_masks_at_original_size(tmp_path, tiny_samples,
                                                         torch_one_thread) -> None:
    method = fit_tiny("unet", tiny_samples(n=20, size=SIZE, seed=3), tmp_path / "work")
    save_model(method, tmp_path / "model", info={**INFO, "image_size": SIZE})
    images = tmp_path / "images"
    paths = write_pngs(images, tiny_samples(n=6, size=64, seed=11))
    from mribench.model.predict import predict_folder

    result = predict_folder(tmp_path / "model", images, tmp_path / "out")
    assert not result.skipped and len(result.labels) == 6
    masks = sorted((tmp_path / "out" / "masks").rglob("*.png"))
    assert len(masks) == 6
    assert all(Image.open(m).size == (64, 64) for m in masks)
    expected = method.predict(as_samples(paths, images), Context())
    for i, p in enumerate(paths):
        assert result.labels[p.relative_to(images).as_posix()] == expected.labels[i]


def test_variant_row_predicts_through_its_base_model(tmp_path, tiny_samples,
                                                     torch_one_thread) -> None:
    train = tiny_samples(n=20, size=SIZE, seed=3)
    method = fit_tiny("multiscale-cnn", train, tmp_path / "work")
    run = tmp_path / "results" / "run"
    layout = RunLayout(run)
    save_model(method, layout.model_dir(JobKey("multiscale-cnn", 0)),
               info={**INFO, "image_size": SIZE})
    RunWriter(layout).write_status(JobKey("multiscale-cnn+crf", 0), "done",
                                   method="multiscale-cnn", variant="crf",
                                   job="multiscale-cnn/seed-0")
    variant_row = layout.row_dir("multiscale-cnn+crf")
    assert find_model(variant_row) == ModelRef(layout.model_dir(JobKey("multiscale-cnn", 0)),
                                               "crf")
    images = tmp_path / "images"
    paths = write_pngs(images, tiny_samples(n=4, size=SIZE, seed=11))
    from mribench.model.predict import predict_folder

    result = predict_folder(find_model(variant_row), images, tmp_path / "out")
    expected = method.predict(as_samples(paths, images), Context()).variants["crf"]
    for i, p in enumerate(paths):
        assert result.labels[p.relative_to(images).as_posix()] == expected.labels[i]
        assert result.scores[p.relative_to(images).as_posix()] == expected.scores[i]


def test_model_dir_errors_are_one_line(tmp_path) -> None:
    (tmp_path / "unet+crf" / "seed-0").mkdir(parents=True)
    with pytest.raises(ModelError, match="variant row 'unet\\+crf' has no model"):
        find_model(tmp_path / "unet+crf")
    with pytest.raises(ModelError, match="no saved model"):
        find_model(tmp_path)
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model_dir(tmp_path)


def test_predict_and_explain_help() -> None:
    for command in ("predict", "explain"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "MODEL_DIR" in result.output


def test_bench_run_then_predict_gives_the_runs_own_predictions(tmp_path, tiny_samples) -> None:
    """A row of `bench run` saves its model; `bench predict` on the run's own test files gives
    exactly the predictions the run saved (labels and scores), for a classifier and a
    segmenter."""
    from mribench.results.read import load_results

    data = tmp_path / "data"
    for i, s in enumerate(tiny_samples(n=48, size=64, seed=5)):
        folder = data / ("yes" if s.label == 1 else "no")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(s.image * 255).astype(np.uint8)).save(folder / f"s{i:02d}.png")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [
        "run", "--method", "glcm-knn,region-growing", "--dataset", f"folder:{data}",
        "--image-size", "48", "--n-boot", "20", "--out", str(out), "--no-report", "--quiet"])
    assert res.exit_code == 0, res.output
    results = load_results(out)
    for row in ("glcm-knn", "region-growing"):
        saved = results.rows[row].predictions
        test_ids = [str(i) for i in saved["ids"]]
        images = tmp_path / f"test-{row}"
        for sid in test_ids:
            src = next(data.glob(f"*/{Path(sid).name}.png"))
            (images / src.parent.name).mkdir(parents=True, exist_ok=True)
            (images / src.parent.name / src.name).write_bytes(src.read_bytes())
        res = CliRunner().invoke(cli, ["predict", str(out / row), "--images", str(images),
                                       "--out", str(tmp_path / f"pred-{row}")])
        assert res.exit_code == 0, res.output
        csv_rows = read_csv(tmp_path / f"pred-{row}" / "predictions.csv")
        by_stem = {Path(f).stem: v for f, v in csv_rows.items()}
        for sid, label, score in zip(test_ids, saved["labels"], saved["scores"], strict=True):
            got_label, got_score = by_stem[Path(sid).name]
            assert got_label == int(label)
            assert got_score == pytest.approx(float(score), rel=1e-6, abs=1e-9)
