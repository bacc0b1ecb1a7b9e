"""RunConfig owns the run's configuration: one parse of the specs, one set of checks, the
same one-line message from the command line, a suite file and Python."""

from __future__ import annotations

import json

import pytest

from mribench.api.errors import MribenchError
from mribench.api.specs import DEFAULT_IMAGE_SIZE, IMAGE_SIZE_RANGE, DatasetSpec, MethodSpec
from mribench.cli import main
from mribench.run.config import RunConfig
from mribench.run.suite import load_suite


def _cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["run", *args, "--out", "/nonexistent/never-made", "--no-report", "--quiet"])
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0].removeprefix("error: ")


def _suite_error(tmp_path, text: str, capsys) -> tuple[str, str]:
    suite = tmp_path / "bad.toml"
    suite.write_text(text, encoding="utf-8")
    return str(suite), _cli_error(["--suite", str(suite)], capsys)


@pytest.mark.parametrize(("option", "value", "toml"), [
    ("--image-size", "5", "image_size = 5"),
    ("--image-size", "2000", "image_size = 2000"),
    ("--seeds", "a", 'seeds = "a"'),
    ("--jobs", "0", "jobs = 0"),
    ("--n-boot", "-1", "n_boot = -1"),
    ("--profile", "fast", 'profile = "fast"'),
    ("--device", "tpu", 'device = "tpu"'),
    ("--task", "detect", 'task = "detect"'),
    ("--seed", "-3", "seed = -3"),
])
def test_a_bad_value_gives_the_same_line_from_the_cli_and_from_a_suite(
        tmp_path, capsys, option, value, toml):
    from_cli = _cli_error(["--method", "glcm-knn", option, value], capsys)
    path, from_suite = _suite_error(tmp_path, f'methods = "glcm-knn"\n{toml}\n', capsys)
    assert from_suite == f"{path}: {from_cli}"
    assert option in from_cli


def test_image_size_message_names_the_one_range(capsys):
    lo, hi = IMAGE_SIZE_RANGE
    assert _cli_error(["--image-size", "5"], capsys) == (
        f"--image-size must be an integer from {lo} to {hi}, got 5")


def test_image_size_has_one_default_and_one_rule():
    assert RunConfig().image_size == DEFAULT_IMAGE_SIZE == 256
    assert RunConfig(image_size=64).image_size == 64
    # the data set's own image_size= is the run's size, recorded as such
    config = RunConfig(dataset="synthetic[n=20,image_size=128]")
    assert config.image_size == 128 and config.dataset.image_size == 128
    assert RunConfig(dataset="synthetic[image_size=128]", image_size=128).image_size == 128
    with pytest.raises(MribenchError, match="sets image_size=128 but --image-size is 64"):
        RunConfig(dataset="synthetic[image_size=128]", image_size=64)


def test_run_json_records_the_image_size_used(tmp_path):
    from mribench.run.runner import run_benchmark

    out = tmp_path / "run"
    run_benchmark(RunConfig(methods="glcm-knn", dataset="synthetic[n=30,image_size=40]",
                            n_boot=10, out=out))
    run = json.loads((out / "run.json").read_text())
    assert run["image_size"] == run["identity"]["image_size"] == 40
    assert run["config"]["image_size"] == 40


def test_specs_are_parsed_once_into_typed_values():
    config = RunConfig(methods="glcm-knn[levels=8],svm", dataset="synthetic[n=20]",
                       test_on="folder:/data/x[positive=t,negative=h],lgg:/data/lgg",
                       seeds="0-2")
    assert config.methods == (MethodSpec("glcm-knn", (("levels", 8),)), MethodSpec("svm"))
    assert config.dataset == DatasetSpec("synthetic[n=20]", "synthetic", (("n", 20),))
    folder, lgg = config.test_on
    assert (folder.name, folder.data_dir, folder.option_dict) == (
        "folder", "/data/x", {"positive": "t", "negative": "h"})
    assert (lgg.name, lgg.data_dir, lgg.label) == ("lgg", "/data/lgg", "lgg")
    assert config.seeds == (0, 1, 2) and config.seed == 0
    # the same from Python with typed values
    again = RunConfig(methods=config.methods, dataset=config.dataset, test_on=config.test_on,
                      seeds=[0, 1, 2])
    assert again.as_record() == config.as_record()


def test_unknown_names_are_one_line():
    with pytest.raises(MribenchError, match="unknown method 'nope'"):
        RunConfig(methods="nope")
    with pytest.raises(MribenchError, match="unknown data set 'nope'"):
        RunConfig(dataset="nope")
    with pytest.raises(MribenchError, match="names a data set twice"):
        RunConfig(test_on="lgg:/a,lgg:/a")


def test_suite_params_merge_into_the_method_specs(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('methods = "glcm-knn,svm"\ndataset = "synthetic[n=20]"\n'
                     '[params]\nglcm-knn = "levels=8"\n', encoding="utf-8")
    loaded = load_suite(str(suite))
    config = RunConfig(**loaded.values)
    assert config.methods[0] == MethodSpec("glcm-knn", (("levels", 8),))
    assert config.methods[1] == MethodSpec("svm")


def test_explicit_options_win_over_a_suite(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('methods = "glcm-knn"\nimage_size = 64\nprofile = "paper"\n',
                     encoding="utf-8")
    config = RunConfig.from_sources({"image_size": "48", "profile": "quick"}, suite=str(suite),
                                    explicit={"image_size"})
    assert config.image_size == 48 and config.profile == "paper"


def test_folder_positive_dotdot_is_refused_not_read_as_the_parent(tmp_path):
    from mribench.data.load import load_dataset

    (tmp_path / "data" / "no").mkdir(parents=True)
    with pytest.raises(MribenchError, match=r"option 'positive' must be a folder name inside"):
        load_dataset(f"folder:{tmp_path / 'data'}[positive=..]", image_size=16)


def test_test_on_missing_path_blames_the_spec_not_data_dir():
    from mribench.data.load import load_dataset

    with pytest.raises(MribenchError) as info:
        load_dataset("lgg:/nonexistent/kaggle_3m", image_size=16)
    assert str(info.value).startswith("lgg:/nonexistent/kaggle_3m: no lgg data there")
    assert "--data-dir" not in str(info.value)


def test_run_json_methods_as_text_is_read_as_row_names(tmp_path):
    from mribench.results.read import run_rows

    assert run_rows({"methods": "glcm-knn"}) == ["glcm-knn"]
    assert run_rows({"methods": "glcm-knn, svm"}) == ["glcm-knn", "svm"]
    assert run_rows({"methods": ["a", 3, "b"]}) == ["a", "b"]
    assert run_rows({"methods": 7}) == []


def test_seeds_over_the_cap_name_the_cap():
    with pytest.raises(MribenchError, match="at most 1000"):
        RunConfig(seeds="0-100000")


def test_harmonisation_travels_with_the_model(tmp_path):
    """Any data set can be harmonised; a model trained harmonised is scored on external sets
    harmonised the same way (and a raw one on raw pixels), recorded in the identity."""
    import numpy as np

    from mribench.data.load import load_dataset

    ds, raw = load_dataset("synthetic[n=12]", image_size=32)
    hds, harmonised = load_dataset("synthetic[n=12,harmonise=true]", image_size=32)
    assert hds.split_name == ds.split_name and [s.id for s in raw] == [s.id for s in harmonised]
    assert [s.group for s in raw] == [s.group for s in harmonised]
    assert not np.allclose(raw[0].image, harmonised[0].image)
    config = RunConfig(dataset="synthetic[harmonise=true]", test_on="synthetic[n=30,seed=9]")
    assert config.test_on[0].harmonised
    assert "harmonise" in config.identity({}, "", "", "")["test_on"][0]
    assert not RunConfig(dataset="synthetic", test_on="synthetic[harmonise=true]"
                         ).test_on[0].harmonised
    with pytest.raises(MribenchError, match="option 'harmonise' must be true or false"):
        load_dataset("synthetic[n=12,harmonise=3]", image_size=32)
