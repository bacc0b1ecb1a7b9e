"""Hardening (issue 14): manifests, splits that cannot train, and `--method` text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.api.errors import DataError, MribenchError
from mribench.api.types import Sample
from mribench.split.choose import check_parts, choose_split
from mribench.split.manifest import Manifest, apply, load_manifest


def _sample(sid: str, label: int, mask: bool | None = None) -> Sample:
    m = None if mask is None else np.full((4, 4), mask, bool)
    return Sample(id=sid, group="", label=label, image=np.zeros((4, 4), np.float32), mask=m)


def _manifest_file(tmp_path: Path, **change) -> Path:
    data = {"dataset": "synthetic", "strategy": "stratified", "seed": 0, "threshold": 0.995,
            "train": ["a", "b"], "val": ["c"], "test": ["d"]}
    data.update(change)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- manifest types


def test_manifest_test_list_as_string_names_the_key(tmp_path):
    path = _manifest_file(tmp_path, test="0")
    with pytest.raises(DataError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message and "'test' must be a list of ids" in message
    assert "in both test and test" not in message


@pytest.mark.parametrize(("change", "key"), [
    ({"train": [["a"]]}, "'train'"), ({"seed": "x"}, "'seed'"), ({"seed": 1e400}, "'seed'"),
    ({"threshold": "high"}, "'threshold'"), ({"threshold": 7}, "'threshold'"),
    ({"options": [1]}, "'options'"), ({"dataset": 3}, "'dataset'"), ({"val": None}, "'val'"),
    ({"dropped": {"a": 1}}, "'dropped'"), ({"stats": "n/a"}, "'stats'"),
])
def test_manifest_bad_types_name_file_and_key(tmp_path, change, key):
    path = _manifest_file(tmp_path, **change)
    with pytest.raises(DataError) as info:
        load_manifest(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_manifest_id_twice_in_one_part(tmp_path):
    with pytest.raises(DataError, match="'d' is listed twice in test"):
        load_manifest(_manifest_file(tmp_path, test=["d", "d"]))


def test_manifest_missing_key_is_named(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"dataset": "x", "strategy": "y", "train": [], "val": []}))
    with pytest.raises(DataError, match="no key 'test'"):
        load_manifest(path)


def test_mismatched_split_advises_the_real_split_make_syntax():
    manifest = Manifest("br35h", "leak-free", 0, 0.995, ("yes/y1",), ("yes/y2",), ("no/n1",))
    with pytest.raises(DataError) as info:
        apply(manifest, [_sample("yes/y1", 1)])
    message = str(info.value)
    assert ("`bench split make br35h --data-dir PATH --strategy leak-free --out my-split.json`"
            ", then run with `--split my-split.json`") in message
    assert "--dataset" not in message
    folder = Manifest("folder-mine", "stratified", 0, 0.995, ("a",), ("b",), ("c",))
    with pytest.raises(DataError, match=r"`bench split make folder:PATH --strategy stratified "
                                        r"--out my-split.json`"):
        apply(folder, [])


def test_stale_default_split_advice_never_overwrites_the_committed_manifest(
        tmp_path, monkeypatch, capsys):
    """Followed literally, the advice writes the user's own file; without --out, `bench split
    make` refuses to replace a committed manifest."""
    from mribench.cli import main
    from mribench.split.manifest import manifest_path

    committed = manifest_path("synthetic", "stratified")
    before = committed.read_bytes()
    with pytest.raises(SystemExit) as info:
        main(["split", "make", "synthetic", "--strategy", "stratified"])
    assert info.value.code == 2 and committed.read_bytes() == before
    assert "write yours with --out FILE" in capsys.readouterr().err
    out = tmp_path / "mine.json"
    main(["split", "make", "synthetic", "--strategy", "stratified", "--out", str(out)])
    assert out.is_file()


# --------------------------------------------------------------------------- parts at start-up


def test_empty_test_part_fails_at_start_up():
    parts = ([_sample("a", 0), _sample("b", 1)], [_sample("c", 1)], [])
    with pytest.raises(DataError) as info:
        check_parts("folder-tiny", parts)
    message = str(info.value)
    assert "'folder-tiny'" in message and "test part is empty" in message
    assert "train 2, val 1, test 0" in message


def test_empty_train_part_fails_at_start_up():
    with pytest.raises(DataError, match="train part is empty"):
        check_parts("x", ([], [_sample("c", 1)], [_sample("d", 0)]))


def test_one_class_in_train_fails_for_classification_only():
    parts = ([_sample("a", 1, True), _sample("b", 1, True)], [_sample("c", 0, False)],
             [_sample("d", 0, False), _sample("e", 1, True)])
    with pytest.raises(DataError, match="train part holds only tumour images"):
        check_parts("x", parts)
    check_parts("x", parts, tasks={"segment"})  # segmentation can still learn


def test_one_class_in_test_fails():
    parts = ([_sample("a", 1), _sample("b", 0)], [_sample("c", 0)], [_sample("d", 0)])
    with pytest.raises(DataError, match="test part holds only no-tumour images"):
        check_parts("x", parts, tasks={"classify"})


def test_all_empty_masks_fail_for_segmentation():
    parts = ([_sample("a", 1, False), _sample("b", 0, False)], [_sample("c", 0, False)],
             [_sample("d", 1, False), _sample("e", 0, False)])
    for tasks in (None, {"segment"}, {"classify", "segment"}):
        with pytest.raises(DataError, match="no train image has a tumour pixel in its mask"):
            check_parts("lgg", parts, tasks=tasks)
    check_parts("lgg", parts, tasks={"classify"})


def test_class_folders_without_masks_pass():
    parts = ([_sample("a", 1), _sample("b", 0)], [_sample("c", 0)],
             [_sample("d", 1), _sample("e", 0)])
    check_parts("x", parts)
    with pytest.raises(DataError, match="0 of 2 train images have a mask"):
        check_parts("x", parts, tasks={"segment"})


def test_three_image_folder_fails_at_start_up(tmp_path, monkeypatch):
    from mribench.data.load import load_dataset

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls, n in (("yes", 2), ("no", 1)):
        (tmp_path / "tiny" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((10, 10)) * 255).astype(np.uint8)).save(
                tmp_path / "tiny" / cls / f"{i}.png")
    dataset, samples = load_dataset(f"folder:{tmp_path / 'tiny'}", image_size=8)
    with pytest.raises(DataError) as info:
        choose_split(dataset, samples, None)
    message = str(info.value)
    assert "'folder-tiny'" in message and "part is empty" in message and "\n" not in message


def test_synthetic_split_passes_the_checks():
    from mribench.data.load import load_dataset

    dataset, samples = load_dataset("synthetic[n=20]", image_size=16, use_cache=False)
    chosen = choose_split(dataset, samples, None)
    assert all(chosen.parts)


# --------------------------------------------------------------------------- --method text


@pytest.mark.parametrize("text", ["", "  ", ",", " , ,"])
def test_empty_method_says_what_to_give(text):
    from mribench.api.specs import resolve_methods

    with pytest.raises(MribenchError) as info:
        resolve_methods(text)
    assert str(info.value) == "no method given; use --method all or a name from `bench list`"


def test_duplicate_method_is_rejected_by_name():
    from mribench.api.specs import resolve_methods

    with pytest.raises(MribenchError, match="--method names 'glcm-knn' twice"):
        resolve_methods("glcm-knn,,glcm-knn")
    with pytest.raises(MribenchError, match="twice"):
        resolve_methods("glcm-knn[k=3], glcm-knn[ k=3 ]")
    assert resolve_methods("glcm-knn,,glcm-knn[k=3]") == [("glcm-knn", {}), ("glcm-knn", {"k": 3})]


def test_empty_method_on_the_command_line_is_one_line(capsys):
    from mribench.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", "--method", "", "--dataset", "synthetic[n=20]"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    # the wording at the CLI edge belongs to `bench run` (its own check may answer first)
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "--method all" in err and "`bench list`" in err and "task None" not in err
