"""Saved models: every shipped method survives save_model -> load_model and predicts the same
labels, scores, masks and variants; foreign objects in a model folder are refused."""

from __future__ import annotations

import collections
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from mribench.api import Context
from mribench.api.registry import methods
from mribench.model import ModelError, load_model, read_info, save_model
from mribench.model.state import check_version, load_skops, load_state_dict

#: The tiniest parameters that still exercise every kind of learned state (a KNN's tree, an
#: MLP's optimiser, the immune search's best pipeline, a cascade of two networks, a CRF).
TINY: dict[str, dict] = {
    "glcm-knn": {"work_size": 32, "levels": 8, "distances": (1,), "k_grid": (1, 3)},
    "svm": {"work_size": 32, "C_grid": (1.0,), "gamma_grid": ("scale",)},
    "ann": {"work_size": 32, "hidden_grid": (4,), "alpha_grid": (1e-3,), "max_iter": 30},
    "ocsvm-immune": {"work_size": 32, "population": 3, "generations": 1, "folds": 2},
    "dwt-dnn": {"image_size": 32, "levels": 2, "pca_components": 6, "hidden": (8,),
                "epochs": 2, "patience": None},
    "cnn": {"image_size": 32, "filters": 3, "filters2": 3, "epochs": 2, "patience": None},
    "fcm-cnn": {"map_size": 32, "filters": 3, "epochs": 2, "patience": None},
    "region-growing": {"work_size": None, "seed_k_grid": (1.5,), "tolerance_grid": (0.5,),
                       "max_search": None},
    "unet": {"image_size": 32, "base_width": 2, "depth": 2, "epochs": 2, "batch_size": 8,
             "max_minutes": None},
    "two-pathway-cnn": {"work_size": None, "local_maps": 2, "global_maps": 2,
                        "cascade": "input", "phase1_epochs": 1, "phase2_epochs": 1,
                        "patches_per_epoch": 128, "batch_size": 64, "max_minutes": None,
                        "crf_max_images": 3, "val_slices": 4},
    "multiscale-cnn": {"work_size": None, "channels": (2, 2, 2), "features": 4,
                       "hidden": (4,), "epochs": 1, "patches_per_epoch": 128,
                       "batch_size": 64, "max_minutes": None, "crf_max_images": 3,
                       "val_slices": 4},
    # the no-skill reference rows
    "always-tumour": {}, "majority-class": {}, "size-only": {"n_trees": 5},
    "predict-nothing": {}, "whole-brain": {}, "mean-mask": {},
}

INFO = {"image_size": 48, "dataset": "synthetic[n=20]", "dataset_fingerprint": "abc",
        "split_hash": "0" * 64, "seed": 0}


def fit_tiny(name: str, samples, workdir: Path):
    """A method fitted with its :data:`TINY` params on the first 14 samples (val: next 6)."""
    method = methods()[name](profile="quick", **TINY[name])
    ctx = Context(workdir=workdir, seed=0, method_name=name)
    method.fit(samples[:14], samples[14:], ctx)
    return method


def assert_same_prediction(a, b) -> None:
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.labels, b.labels)
    for field in ("scores", "masks", "prob_maps"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=field)
    assert sorted(a.variants) == sorted(b.variants)
    for key in a.variants:
        assert_same_prediction(a.variants[key], b.variants[key])


def test_tiny_params_cover_every_method() -> None:
    assert set(TINY) == set(methods())


@pytest.mark.parametrize("name", sorted(TINY))
def test_round_trip_predicts_identically(name, tiny_samples, tmp_path, torch_one_thread) -> None:
    samples = tiny_samples(n=20, size=48, seed=3)
    method = fit_tiny(name, samples, tmp_path / "work")
    before = method.predict(samples, Context(workdir=tmp_path / "a", method_name=name))
    save_model(method, tmp_path / "row" / "model", info=INFO)
    folder = tmp_path / "row" / "model"
    assert {"params.json", "state.json", "info.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pickle"))
    loaded = load_model(folder)
    assert type(loaded) is type(method) and loaded.params == method.params
    after = loaded.predict(samples, Context(workdir=tmp_path / "b", method_name=name))
    assert_same_prediction(before, after)
    meta = read_info(folder)
    assert meta["info"] == INFO and meta["method"] == name


def test_layout_and_formats(tiny_samples, tmp_path, torch_one_thread) -> None:
    samples = tiny_samples(n=20, size=48, seed=3)
    method = fit_tiny("dwt-dnn", samples, tmp_path / "work")
    save_model(method, tmp_path / "model", info=INFO)
    folder = tmp_path / "model"
    params = json.loads((folder / "params.json").read_text())
    assert params["method"] == "dwt-dnn" and params["profile"] == "quick"
    assert params["params"]["pca_components"] == 6
    state = json.loads((folder / "state.json").read_text())["attributes"]
    assert state["model_"]["type"] == "torch" and state["pca_"]["type"] == "sklearn"
    assert state["scale_"]["type"] == "value"
    assert state["train_result_"]["class"] == "mribench.blocks.nn.train.TrainResult"
    assert (folder / "torch" / "model_.pt").is_file()
    assert (folder / "sklearn" / "pca_.skops").is_file()
    # saving again replaces the folder atomically
    save_model(method, folder, info={**INFO, "seed": 1})
    assert read_info(folder)["info"]["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unexpected_skops_type_is_refused(tmp_path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    sio.dump(FunctionTransformer(func=os.getcwd), path)  # would call a function on load/use
    with pytest.raises(ModelError, match="unexpected object type.*posix.getcwd"):
        load_skops(path)
    sio.dump(collections.Counter("aab"), path)
    with pytest.raises(ModelError, match="unexpected object type.*collections.Counter"):
        load_skops(path)
    sio.dump({"not": "an estimator"}, path)
    with pytest.raises(ModelError, match="not a scikit-learn estimator"):
        load_skops(path)


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path) -> None:
    import torch

    path = tmp_path / "net.pt"
    torch.save(torch.nn.Linear(2, 1), path)  # a whole module: needs unpickling code
    with pytest.raises(ModelError, match="not a plain state_dict"):
        load_state_dict(path)
    torch.save({"weight": torch.zeros(2), "epoch": 3}, path)
    with pytest.raises(ModelError, match="not a plain state_dict"):
        load_state_dict(path)
    torch.save({"weight": torch.zeros(2)}, path)
    assert set(load_state_dict(path)) == {"weight"}


def test_tampered_or_foreign_model_is_refused(tiny_samples, tmp_path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    samples = tiny_samples(n=20, size=48, seed=3)
    method = fit_tiny("glcm-knn", samples, tmp_path / "work")
    folder = tmp_path / "model"
    save_model(method, folder, info=INFO)
    # a skops file swapped for one holding a function: refused by its hash, and by its types
    sio.dump(FunctionTransformer(func=os.getcwd), folder / "sklearn" / "model_.skops")
    with pytest.raises(ModelError, match="changed since the model was saved"):
        load_model(folder)
    info = json.loads((folder / "info.json").read_text())
    from mribench.model.state import _sha256

    info["files"]["sklearn/model_.skops"] = _sha256(folder / "sklearn" / "model_.skops")
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="unexpected object type"):
        load_model(folder)
    # a plain-data node naming a class outside the allow-list
    save_model(method, folder, info=INFO)
    state = json.loads((folder / "state.json").read_text())
    state["attributes"]["k_"] = {"type": "object", "class": "os.system", "state": {}}
    (folder / "state.json").write_text(json.dumps(state))
    info = json.loads((folder / "info.json").read_text())
    info["files"]["state.json"] = _sha256(folder / "state.json")
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="unexpected object type 'os.system'"):
        load_model(folder)
    with pytest.raises(ModelError, match="not a model folder"):
        load_model(tmp_path)


def test_unsaveable_attribute_is_a_one_line_error(tmp_path) -> None:
    method = methods()["glcm-knn"](profile="quick")
    method.model_ = lambda x: x  # a function cannot be stored without pickle
    with pytest.raises(ModelError, match="model_: cannot save a builtins.function"):
        save_model(method, tmp_path / "model", info=INFO)
    assert not (tmp_path / "model").exists() and not list(tmp_path.iterdir())


def test_version_check() -> None:
    check_version("0.1.0", "0.1.7")
    with pytest.warns(UserWarning, match="another minor version"):
        check_version("0.1.0", "0.2.0")
    with pytest.raises(ModelError, match="another major version"):
        check_version("1.0.0", "2.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_version("2.3.0+local", "2.3.1")
