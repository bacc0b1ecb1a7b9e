"""``bench export`` (ONNX / TorchScript + spec.json) and ``bench predict --engine onnx``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_hardening_models import _bench as bench
from test_model import INFO, fit_tiny
from test_predict import SIZE, as_samples, write_pngs

from mribench.api import Context, SegmentationMethod
from mribench.model import save_model
from mribench.results.layout import JobKey, RunLayout
from mribench.results.write import RunWriter

pytest.importorskip("onnxruntime")

DEEP = ["cnn", "dwt-dnn", "fcm-cnn", "multiscale-cnn", "two-pathway-cnn", "unet"]


def one_line_error(code: int, err: str, status: int = 2) -> str:
    assert code == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(name)``: a results folder row of ``name`` fitted on tiny synthetic data
    (fitted once per module), with the run's test slices in test_images.npz."""
    from conftest import make_samples

    from mribench.blocks.nn.train import torch_threads

    root = tmp_path_factory.mktemp("export-runs")
    samples = make_samples(n=20, size=SIZE, seed=3)
    test = make_samples(n=6, size=SIZE, seed=11)
    rows: dict[str, tuple[Path, object]] = {}

    def get(name: str):
        if name not in rows:
            with torch_threads(1):
                method = fit_tiny(name, samples, root / "work" / name)
            layout = RunLayout(root / name)
            save_model(method, layout.model_dir(JobKey(name, 0)),
                       info={**INFO, "image_size": SIZE})
            RunWriter(layout).write_test_images([s.id for s in test],
                                                np.stack([s.image for s in test]),
                                                np.stack([s.mask_or_empty() for s in test]),
                                                [s.label for s in test])
            rows[name] = (layout.row_dir(name), method)
        return rows[name]

    return get


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_unet_onnx_predicts_the_same_csv_as_torch(trained, tmp_path, tiny_samples, capsys,
                                                   torch_one_thread) -> None:
    row, _ = trained("unet")
    code, out, err = bench(["export", str(row), "--format", "onnx", "--out",
                            str(tmp_path / "unet-onnx")], capsys)
    assert code == 0, err
    assert "max |logit difference|" in out and "test_images.npz" in out
    spec = read(tmp_path / "unet-onnx" / "spec.json")
    check = spec["verification"]
    assert check["images"] == 6 and "test_images.npz" in check["images_from"]
    assert check["max_abs_diff_logits"] <= 1e-4 and check["labels_identical"]
    images = tmp_path / "images"
    write_pngs(images, tiny_samples(n=8, size=64, seed=21))
    code, _, err = bench(["predict", str(row), "--images", str(images), "--out",
                          str(tmp_path / "torch"), "--quiet"], capsys)
    assert code == 0, err
    code, _, err = bench(["predict", str(tmp_path / "unet-onnx"), "--engine", "onnx",
                          "--images", str(images), "--out", str(tmp_path / "onnx"), "--quiet"],
                         capsys)
    assert code == 0, err
    torch_csv = (tmp_path / "torch" / "predictions.csv").read_text()
    assert torch_csv == (tmp_path / "onnx" / "predictions.csv").read_text()
    assert len(torch_csv.splitlines()) == 9
    for mask in sorted((tmp_path / "torch" / "masks").rglob("*.png")):
        twin = tmp_path / "onnx" / "masks" / mask.relative_to(tmp_path / "torch" / "masks")
        assert mask.read_bytes() == twin.read_bytes()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", DEEP)
def test_every_deep_method_exports_and_verifies(name, fmt, trained, tmp_path,
                                                torch_one_thread) -> None:
    from mribench.model.export import export_model
    from mribench.model.predict import predict_or_fail
    from mribench.results.read import find_model, row_test_images

    row, method = trained(name)
    images, where = row_test_images(row)
    result = export_model(find_model(row), tmp_path / "out", fmt, images=images,
                          images_from=where)
    spec = result.spec
    assert spec["method"] == name and spec["engine"] == fmt and spec["image"]["image_size"] == SIZE
    assert result.max_abs_diff <= 1e-4 and spec["verification"]["network_calls"] >= 1
    assert spec["outside_graph"] and spec["preprocess"][0]["step"] == "load"
    for entry in spec["networks"]:
        assert (tmp_path / "out" / entry["file"]).is_file()
        assert entry["input"]["shape"][0] == "batch"
    if isinstance(method, SegmentationMethod):  # its label comes from the mask's area
        assert spec["postprocess"][-1] == {
            "step": "area_threshold", "threshold": method.area_threshold_.threshold_,
            "how": spec["postprocess"][-1]["how"]}
    # the exported folder, run as bench predict runs it, gives the torch model's prediction
    from mribench.model.engines import open_model

    loaded = open_model(tmp_path / "out", fmt)
    got = predict_or_fail(loaded.method, images, Context())
    expected = method.predict(images, Context())
    np.testing.assert_array_equal(got.labels, expected.labels)
    if expected.masks is not None:
        np.testing.assert_array_equal(got.masks, expected.masks)


def test_variant_row_exports_its_crf_step(trained, tmp_path, capsys, torch_one_thread) -> None:
    row, method = trained("two-pathway-cnn")
    layout = RunLayout(row.parent)
    RunWriter(layout).write_status(JobKey("two-pathway-cnn+crf", 0), "done",
                                   method="two-pathway-cnn", variant="crf",
                                   job="two-pathway-cnn/seed-0")
    code, _, err = bench(["export", str(layout.row_dir("two-pathway-cnn+crf")), "--out",
                          str(tmp_path / "crf")], capsys)
    assert code == 0, err
    spec = read(tmp_path / "crf" / "spec.json")
    assert spec["row"] == "two-pathway-cnn+crf" and len(spec["networks"]) == 2
    steps = [s["step"] for s in spec["postprocess"]]
    assert steps[-2:] == ["dense_crf", "area_threshold"] and "cascade" in steps
    assert spec["postprocess"][-2]["params"] == method.crf_.params_.as_dict()
    assert spec["postprocess"][-1]["threshold"] == \
        method.variant_thresholds_["crf"].threshold_


def test_unet_spec_is_enough_outside_mribench(trained, tmp_path, torch_one_thread) -> None:
    """onnxruntime, numpy, torch's interpolate and the spec alone reproduce the row's labels
    and masks."""
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    from mribench.model.export import export_model
    from mribench.results.read import find_model, row_test_images

    row, method = trained("unet")
    images, where = row_test_images(row)
    export_model(find_model(row), tmp_path / "out", images=images, images_from=where)
    spec = read(tmp_path / "out" / "spec.json")
    steps = {s["step"]: s for s in spec["postprocess"]}
    session = ort.InferenceSession(str(tmp_path / "out" / spec["networks"][0]["file"]))
    side = spec["preprocess"][1]["size"]
    loaded = torch.from_numpy(np.stack([s.image for s in images])[:, None].astype(np.float32))
    x = F.interpolate(loaded, size=(side, side), mode="bilinear", align_corners=False,
                      antialias=side < loaded.shape[-1]).numpy()

    def probability(batch: np.ndarray) -> np.ndarray:
        logits = session.run(None, {"input": batch})[0]
        return 1 / (1 + np.exp(-(logits - steps["sigmoid"]["logit_offset"])))

    p = probability(x)
    if "tta_flip" in steps:
        p = 0.5 * (p + probability(np.ascontiguousarray(x[..., ::-1]))[..., ::-1])
    p = F.interpolate(torch.from_numpy(np.ascontiguousarray(p)), size=loaded.shape[-2:],
                      mode="bilinear", align_corners=False).numpy()
    masks = p[:, 0] >= steps["resize_back"]["threshold"]
    labels = (masks.reshape(len(masks), -1).mean(1) > steps["area_threshold"]["threshold"])
    expected = method.predict(images, Context())
    np.testing.assert_array_equal(masks, expected.masks)
    np.testing.assert_array_equal(labels.astype(int), expected.labels)


def test_dwt_dnn_arrays_reproduce_the_network_input(trained, tmp_path,
                                                    torch_one_thread) -> None:
    from mribench.model.export import export_model
    from mribench.results.read import find_model, row_test_images

    row, method = trained("dwt-dnn")
    images, where = row_test_images(row)
    export_model(find_model(row), tmp_path / "out", images=images, images_from=where)
    spec = read(tmp_path / "out" / "spec.json")
    step = next(s for s in spec["preprocess"] if s["step"] == "standardise_and_project")
    with np.load(tmp_path / "out" / "preprocess.npz") as a:
        features = method._features(images, Context())
        z = ((features - a["scaler_mean"]) / a["scaler_scale"] - a["pca_mean"]) \
            @ a["pca_components"].T / step["pca_scale"]
    np.testing.assert_allclose(z.astype(np.float32), method._reduce(features).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert spec["networks"][0]["input"]["shape"] == ["batch", z.shape[1]]


def test_a_mismatch_fails_the_export_and_writes_nothing(trained, tmp_path, monkeypatch,
                                                         capsys, torch_one_thread) -> None:
    row, _ = trained("cnn")
    monkeypatch.setattr("mribench.model.export.TOLERANCE", -1.0)
    code, _, err = bench(["export", str(row), "--out", str(tmp_path / "out")], capsys)
    line = one_line_error(code, err, status=1)
    assert "does not reproduce torch" in line and "nothing written" in line
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_classical_row_is_refused_in_one_line(tmp_path, tiny_samples, capsys) -> None:
    method = fit_tiny("glcm-knn", tiny_samples(n=20, size=SIZE, seed=3), tmp_path / "work")
    save_model(method, tmp_path / "model", info={**INFO, "image_size": SIZE})
    code, _, err = bench(["export", str(tmp_path / "model"), "--out", str(tmp_path / "out")],
                         capsys)
    line = one_line_error(code, err)
    assert "classical pipeline" in line and "not ONNX operators" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def exported(trained, tmp_path, tiny_samples, torch_one_thread):
    """(an exported cnn folder, a folder of images)."""
    from mribench.model.export import export_model
    from mribench.results.read import find_model

    row, _ = trained("cnn")
    export_model(find_model(row), tmp_path / "cnn-onnx")
    images = tmp_path / "images"
    write_pngs(images, tiny_samples(n=4, size=SIZE, seed=5))
    return tmp_path / "cnn-onnx", images


def _predict(folder: Path, images: Path, capsys, engine: str = "onnx") -> tuple[int, str]:
    code, _, err = bench(["predict", str(folder), "--engine", engine, "--images", str(images),
                          "--out", str(folder.parent / "preds"), "--quiet"], capsys)
    return code, err


def _edit_spec(folder: Path, change) -> None:
    spec = read(folder / "spec.json")
    change(spec)
    (folder / "spec.json").write_text(json.dumps(spec))


def test_truncated_onnx_is_one_line(exported, capsys) -> None:
    folder, images = exported
    data = (folder / "network.onnx").read_bytes()
    (folder / "network.onnx").write_bytes(data[: len(data) // 2])
    line = one_line_error(*_predict(folder, images, capsys))
    assert "network.onnx" in line and "export the row again" in line


def test_foreign_onnx_file_is_one_line(exported, capsys) -> None:
    import hashlib

    folder, images = exported
    junk = np.random.default_rng(0).bytes(4000)
    (folder / "network.onnx").write_bytes(junk)
    _edit_spec(folder, lambda s: s["networks"][0].update(
        sha256=hashlib.sha256(junk).hexdigest()))
    line = one_line_error(*_predict(folder, images, capsys))
    assert "network.onnx: not a readable ONNX model" in line and "bench export" in line


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["networks"][0]["input"].update(shape=["batch", 1, 99, 99]),
     "the spec and the network do not match"),
    (lambda s: s.update(method="unet"), "names method 'unet'"),
    (lambda s: s.update(format_version=99), "not a mribench export spec"),
    (lambda s: s.update(engine="torchscript"), "pass --engine torchscript"),
    (lambda s: s["networks"].append(dict(s["networks"][0])), "network entry 0 is not"),
    (lambda s: s["networks"][0].update(input=[1, 2]), "network entry 0 is not"),
    (lambda s: s.update(networks={"a": 1}), "'networks' must be a non-empty list"),
])
def test_spec_that_does_not_match_is_one_line(exported, capsys, change, expected) -> None:
    folder, images = exported
    _edit_spec(folder, change)
    line = one_line_error(*_predict(folder, images, capsys))
    assert expected in line and "spec.json" in line


def test_wrong_engine_for_the_folder_is_one_line(exported, trained, capsys) -> None:
    folder, images = exported
    line = one_line_error(*_predict(folder, images, capsys, engine="torch"))
    assert "an exported model" in line and "--engine onnx" in line
    row, _ = trained("cnn")
    model = RunLayout(row.parent).model_dir(JobKey("cnn", 0))
    line = one_line_error(*_predict(model, images, capsys))
    assert "not an exported model" in line and "bench export" in line


def test_onnx_engine_matches_torch_on_files(exported, trained, capsys) -> None:
    """The CSV of an image classifier through the onnx engine is the torch row's."""
    folder, images = exported
    row, method = trained("cnn")
    assert _predict(folder, images, capsys)[0] == 0
    rows = (folder.parent / "preds" / "predictions.csv").read_text().splitlines()[1:]
    paths = sorted(p for p in images.rglob("*.png"))
    expected = method.predict(as_samples(paths, images), Context())
    got = {r.split(",")[0]: float(r.split(",")[2]) for r in rows}
    for i, p in enumerate(paths):
        assert got[p.relative_to(images).as_posix()] == pytest.approx(expected.scores[i],
                                                                      abs=1e-6)


def test_out_is_checked_and_an_earlier_export_replaced(exported, trained, tmp_path,
                                                       capsys) -> None:
    folder, _ = exported
    assert read(folder / "spec.json")["verification"]["images_from"] == "synthetic slices"
    row, _ = trained("cnn")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    line = one_line_error(*bench(["export", str(row), "--out", str(busy)], capsys)[::2])
    assert f"--out {busy}: exists and is not an exported model" in line
    assert (busy / "notes.txt").read_text() == "mine"
    code, _, err = bench(["export", str(row), "--format", "torchscript", "--out", str(folder),
                          "--synthetic"], capsys)
    assert code == 0, err
    spec = read(folder / "spec.json")
    assert spec["engine"] == "torchscript"
    assert spec["verification"]["images_from"] == "synthetic slices"
    assert not (folder / "network.onnx").exists()


def test_every_deep_plugin_has_an_export_recipe() -> None:
    from mribench.api import Method
    from mribench.api.registry import methods

    deep = sorted(n for n, cls in methods().items() if cls.kind == "deep")
    assert deep == DEEP
    for name in deep:
        assert methods()[name].export_recipe is not Method.export_recipe, name
