"""Hardening II (issue 24): a model folder is validated input; ``bench predict`` and ``bench
explain`` check their outputs before any work and say what they did; a full disk during the
model save fails the job.

The property-based tests fit two real models (glcm-knn, scikit-learn parts in skops files;
``cnn[epochs=1]``, a torch ``state_dict``), save them with ``save_model``, mutate copies of
their folders (JSON values, keys, truncated and flipped binaries, files swapped for ones that
would run code) with their hashes updated, and run ``bench predict`` on each: it works or ends
in one line (exit 2), never a traceback, never runs the planted code, and the process' memory
stays bounded.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_model import INFO, TINY

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mribench.api import Context, registry  # noqa: E402
from mribench.api.errors import MribenchError  # noqa: E402
from mribench.api.registry import methods  # noqa: E402
from mribench.cli import main  # noqa: E402
from mribench.model import ModelError, load_model, save_model  # noqa: E402
from mribench.model.state import _sha256  # noqa: E402

SIZE = 48
ONE_GB_KB = 1 << 20  # ru_maxrss is in KiB on Linux


# --------------------------------------------------------------------------- fixtures


#: Set when planted code ran (it never may).
RAN: list[str] = []


def _canary(*args, **kwargs):
    """Planted code: a crafted model file that made it run would record it here."""
    RAN.append("ran")
    return args[0] if args else None


class _Evil:
    """A pickle that calls :func:`_canary` when loaded."""

    def __reduce__(self):
        return (_canary, ("unpickled",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """Real model folders ``glcm-knn`` and ``cnn`` (one epoch), and ``images/`` (3 PNGs)."""
    from conftest import make_samples

    from mribench.blocks.nn.train import torch_threads

    root = tmp_path_factory.mktemp("models")
    samples = make_samples(n=20, size=SIZE, seed=3)
    with torch_threads(1):
        for name, params in (("glcm-knn", TINY["glcm-knn"]),
                             ("cnn", {**TINY["cnn"], "epochs": 1})):
            method = methods()[name](profile="quick", **params)
            method.fit(samples[:14], samples[14:],
                       Context(workdir=root / "work", seed=0, method_name=name))
            save_model(method, root / name, info={**INFO, "image_size": SIZE})
    images = root / "images"
    images.mkdir()
    for i, s in enumerate(samples[:3]):
        Image.fromarray(np.round(s.image * 255).astype(np.uint8)).save(images / f"s{i}.png")
    return root


def _copy(saved: Path, name: str, dest: Path) -> Path:
    shutil.copytree(saved / name, dest)
    return dest


def _rehash(folder: Path) -> None:
    """Update info.json's hashes to the files as they are now (what a tamperer would do)."""
    try:
        info = json.loads((folder / "info.json").read_text())
        files = info["files"]
        for rel in list(files):
            if (folder / rel).is_file():
                files[rel] = _sha256(folder / rel)
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return
    (folder / "info.json").write_text(json.dumps(info))


def _edit_json(folder: Path, name: str, edit) -> None:
    data = json.loads((folder / name).read_text())
    edit(data)
    (folder / name).write_text(json.dumps(data))
    _rehash(folder)


def _bench(args: list[str], capsys) -> tuple[int, str, str]:
    """``bench ARGS`` in this process: (exit status, stdout, stderr); an exception that is not
    a MribenchError escapes (with its traceback) and fails the test."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err


def _predict(folder: Path, saved: Path, out: Path, capsys) -> tuple[int, str, str]:
    return _bench(["predict", str(folder), "--images", str(saved / "images"), "--out",
                   str(out), "--quiet", "--gallery-max", "1"], capsys)


# --------------------------------------------------------------------------- the cases of the issue


def test_info_json_files_a_list_is_one_line(saved, tmp_path, capsys):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    _edit_json(folder, "info.json", lambda d: d.update(files=list(d["files"])))
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    _one_line_error(code, err)
    assert "info.json: 'files' must be an object" in err
    assert not (tmp_path / "out").exists()


def test_info_json_image_size_huge_is_one_line(saved, tmp_path, capsys):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    _edit_json(folder, "info.json", lambda d: d["info"].update(image_size="huge"))
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    _one_line_error(code, err)
    assert "info.image_size must be an integer from 8 to 1024" in err and '"huge"' in err


@pytest.mark.parametrize("name", ["__class__", "__dict__", "__init__", "predict", "name",
                                  "params", "_private_", "a__b_"])
def test_state_json_attribute_named_dunder_or_not_learned_is_refused(saved, tmp_path, name,
                                                                      capsys):
    """``__dict__`` once replaced the whole object past its parameter checks; no name outside
    the learned attributes (nor one the class defines) is set now."""
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    node = {"type": "dict", "items": {"params": {"type": "value", "value": 1}}}
    _edit_json(folder, "state.json", lambda d: d["attributes"].update({name: node}))
    with pytest.raises(ModelError, match="state.json") as info:
        load_model(folder)
    assert "\n" not in str(info.value)
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    _one_line_error(code, err)


def test_plain_object_fields_are_restricted_and_checked(saved, tmp_path):
    folder = _copy(saved, "cnn", tmp_path / "m")

    def dunder(d):
        d["attributes"]["train_result_"]["state"]["__dict__"] = {"type": "value", "value": 1}

    _edit_json(folder, "state.json", dunder)
    with pytest.raises(ModelError, match='"__dict__" is not a learned attribute'):
        load_model(folder)
    folder = _copy(saved, "cnn", tmp_path / "m2")
    _edit_json(folder, "state.json",
               lambda d: d["attributes"]["train_result_"]["state"].pop("best_epoch"))
    with pytest.raises(ModelError, match="TrainResult lacks best_epoch"):
        load_model(folder)


def test_truncated_pt_with_its_hash_updated_is_one_line(saved, tmp_path, capsys):
    folder = _copy(saved, "cnn", tmp_path / "m")
    pt = folder / "torch" / "model_.pt"
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    _rehash(folder)
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    _one_line_error(code, err)
    assert "model_.pt: not a readable torch checkpoint (truncated" in err


def test_image_size_100000_ends_in_one_line_within_a_second(saved, tmp_path, capsys):
    """It once made `bench predict` allocate until the kernel killed it at 20.7 GB."""
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    _edit_json(folder, "info.json", lambda d: d["info"].update(image_size=100000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    assert time.perf_counter() - start < 1.0
    _one_line_error(code, err)
    assert "info.image_size must be an integer from 8 to 1024" in err and "100000" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < ONE_GB_KB
    # the real command, in its own process: one line, exit 2, under 1 GB at its peak. The
    # peak is the process's own VmHWM, read as it exits: a child's ru_maxrss (wait4) starts
    # from the forking test process's resident size, which grows over a full test session.
    peak_file = tmp_path / "peak.txt"
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, str(peak_file), "predict", str(folder),
         "--images", str(saved / "images"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert int(peak_file.read_text()) < ONE_GB_KB


#: Runs the CLI with argv[2:] and writes the process's peak resident set (VmHWM, kB) to
#: argv[1] when it exits.
_PEAK_WRAPPER = """
import atexit, re, sys
from pathlib import Path

def _peak():
    status = Path("/proc/self/status").read_text()
    Path(sys.argv[1]).write_text(re.search(r"VmHWM:\\s*(\\d+)", status).group(1))

atexit.register(_peak)
from mribench.cli import main
main(sys.argv[2:])
"""


def test_network_over_the_weight_bound_is_refused_before_it_is_built(saved, tmp_path):
    """``hidden`` is unbounded in cnn's constraints: a billion hidden units would be 50+ GB of
    weights. The network is built on torch's meta device first and refused."""
    folder = _copy(saved, "cnn", tmp_path / "m")
    _edit_json(folder, "params.json", lambda d: d["params"].update(hidden=10**9))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelError, match="more than the .* a model may; refused"):
        load_model(folder)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < ONE_GB_KB
    folder = _copy(saved, "cnn", tmp_path / "m2")
    _edit_json(folder, "params.json", lambda d: d["params"].update(filters=5))
    with pytest.raises(ModelError, match="weights do not fit the rebuilt network"):
        load_model(folder)


def test_working_size_over_the_bound_is_refused(saved, tmp_path):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    _edit_json(folder, "params.json", lambda d: d["params"].update(work_size=100000))
    with pytest.raises(ModelError, match="work_size=100000 asks for a working side over 2048"):
        load_model(folder)


def test_npz_header_claiming_a_huge_array_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    from numpy.lib import format as npy

    from mribench.model.schema import check_npz

    def member(descr: str, shape: tuple) -> bytes:
        buffer = io.BytesIO()
        npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                            "shape": shape})
        return buffer.getvalue() + bytes(32)

    path = tmp_path / "arrays.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a0.npy", member("<f8", (10**13,)))  # 80 TB claimed, 32 bytes held
    with pytest.raises(ModelError, match="claims 80000000000000 bytes but holds"):
        check_npz(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a0.npy", member("|O", (4,)))
    with pytest.raises(ModelError, match="holds Python objects"):
        check_npz(path)


def test_a_linked_file_or_an_unknown_name_is_refused(saved, tmp_path):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    (folder / "sklearn" / "model_.skops").unlink()
    (folder / "sklearn" / "model_.skops").symlink_to(saved / "glcm-knn" / "sklearn" /
                                                     "model_.skops")
    with pytest.raises(ModelError, match="a link"):
        load_model(folder)
    folder = _copy(saved, "glcm-knn", tmp_path / "m2")
    _edit_json(folder, "info.json", lambda d: d["files"].update({"../../etc/passwd": "0" * 64}))
    with pytest.raises(ModelError, match="not a file of a model folder"):
        load_model(folder)


def test_a_swapped_estimator_of_another_class_is_refused(saved, tmp_path):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    shutil.copy(folder / "sklearn" / "scaler_.skops", folder / "sklearn" / "model_.skops")
    _rehash(folder)
    with pytest.raises(ModelError, match="holds a .*StandardScaler, state.json says"):
        load_model(folder)


def test_a_restored_method_that_fails_to_predict_is_one_line(saved, tmp_path, capsys):
    folder = _copy(saved, "glcm-knn", tmp_path / "m")
    _edit_json(folder, "state.json", lambda d: d["attributes"].update(
        model_={"type": "value", "value": "not a model"}))
    code, _, err = _predict(folder, saved, tmp_path / "out", capsys)
    _one_line_error(code, err)
    assert "glcm-knn (model " in err and "predict failed (AttributeError" in err


# --------------------------------------------------------------------------- properties

PROPERTY = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
           | st.sampled_from([0, -1, 1, 7, 100000, 2**40, "huge", "__class__"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
evil_values = st.sampled_from([
    {"type": "object", "class": f"{_canary.__module__}._canary", "state": {}},
    {"type": "object", "class": "os.system", "state": {}},
    {"type": "object", "class": "mribench.api.thresholds.AreaThreshold",
     "state": {"__class__": {"type": "value", "value": 1}}},
    {"type": "torch", "file": "torch/model_.pt", "index": 0, "class": "builtins.object"},
    {"type": "sklearn", "file": "sklearn/../../x.skops", "class": "x"},
    {"type": "ndarray", "key": "a0"},
    {"type": "value", "value": "a string"},
    {"type": "list", "items": [{"type": "value", "value": 1}]},
    json.loads("[" * 200 + "]" * 200),
])
keys = st.sampled_from(["__class__", "__dict__", "predict", "fit_", "model_", "image_size",
                        "files", "type", "class", "state", "items", "attributes", "params",
                        "method", "profile", "format", "hidden", "work_size", "k_"]) \
    | st.text(max_size=6)


def _walk(data, steps):
    """(container, key) reached from ``data`` by ``steps`` (indices into sorted keys)."""
    container, key = None, None
    node = data
    for step in steps:
        if isinstance(node, dict) and node:
            container, key = node, sorted(node)[step % len(node)]
        elif isinstance(node, list) and node:
            container, key = node, step % len(node)
        else:
            break
        node = container[key]
    return container, key


def _mutate_json(folder: Path, name: str, steps, action: str, key, value) -> None:
    data = json.loads((folder / name).read_text())
    container, at = _walk(data, steps)
    if container is None:
        data = value if action == "replace" else data
    elif action == "replace":
        container[at] = value
    elif action == "delete":
        del container[at]
    elif isinstance(container[at], dict):
        container[at][key] = value
    else:
        container[at] = {key: value}
    (folder / name).write_text(json.dumps(data))


def _check_clean(code: int, err: str, baseline_kb: int) -> None:
    """Works (exit 0) or one line (exit 2); no planted code ran; memory bounded."""
    assert code in (0, 2), err
    if code == 2:
        _one_line_error(code, err)
    hypothesis.event(f"exit {code}" + (": " + err.split(": ")[2][:40] if code == 2 else ""))
    assert not RAN, "a crafted model file ran code"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb < ONE_GB_KB


@pytest.fixture(scope="module")
def baseline_kb(saved) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize("model", ["glcm-knn", "cnn"])
@PROPERTY
@given(st.sampled_from(["info.json", "params.json", "state.json"]),
       st.lists(st.integers(0, 50), max_size=6),
       st.sampled_from(["replace", "delete", "add"]), keys, json_values | evil_values,
       st.sampled_from([True, True, True, False]))
def test_mutated_model_json_is_one_line_or_works(saved, baseline_kb, capsys, model, name,
                                                 steps, action, key, value, rehash):
    work = Path(tempfile.mkdtemp(dir=saved))
    try:
        folder = _copy(saved, model, work / "m")
        _mutate_json(folder, name, steps, action, key, value)
        if rehash:
            _rehash(folder)
        code, _, err = _predict(folder, saved, work / "out", capsys)
        _check_clean(code, err, baseline_kb)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _plant(path: Path) -> None:
    """Replace a binary model file with one that would run :func:`_canary` if trusted."""
    if path.suffix == ".pt":
        import torch

        torch.save({"weight": _Evil()}, path)
    elif path.suffix == ".skops":
        import skops.io as sio
        from sklearn.preprocessing import FunctionTransformer

        sio.dump(FunctionTransformer(func=_canary), path)
    else:
        np.savez(path, a0=np.array([_Evil()], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("model", ["glcm-knn", "cnn"])
@PROPERTY
@given(st.integers(0, 10), st.sampled_from(["truncate", "flip", "plant"]),
       st.floats(0, 1), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_mutated_model_binaries_are_one_line_or_work(saved, baseline_kb, capsys, model, pick,
                                                     action, fraction, flips):
    work = Path(tempfile.mkdtemp(dir=saved))
    try:
        folder = _copy(saved, model, work / "m")
        binaries = sorted(p for p in folder.rglob("*") if p.suffix in (".pt", ".skops", ".npz"))
        path = binaries[pick % len(binaries)]
        blob = bytearray(path.read_bytes())
        if action == "truncate":
            path.write_bytes(blob[: int(len(blob) * fraction)])
        elif action == "flip":
            for where, byte in flips:
                blob[min(int(len(blob) * where), len(blob) - 1)] = byte
            path.write_bytes(blob)
        else:
            _plant(path)
        _rehash(folder)
        code, _, err = _predict(folder, saved, work / "out", capsys)
        _check_clean(code, err, baseline_kb)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- outputs first


def _no_work(monkeypatch) -> None:
    """Fail the test if any prediction or map is computed."""
    def refuse(*args, **kwargs):
        raise AssertionError("computed before the output was checked")

    monkeypatch.setattr("mribench.model.predict.run_method", refuse)
    monkeypatch.setattr("mribench.model.explain.occlusion_maps", refuse)
    monkeypatch.setattr("mribench.model.explain.gradcam_maps", refuse)


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_out_in_proc_is_one_line_before_any_work(saved, command, monkeypatch, capsys):
    _no_work(monkeypatch)
    code, _, err = _bench([command, str(saved / "glcm-knn"), "--images", str(saved / "images"),
                           "--out", "/proc/mribench-x/y"], capsys)
    _one_line_error(code, err)
    assert "--out /proc/mribench-x/y: cannot write there" in err


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_out_on_a_read_only_folder_is_one_line_before_any_work(saved, tmp_path, command,
                                                               monkeypatch, capsys):
    _no_work(monkeypatch)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("mribench.model.predict.tempfile.mkstemp", read_only)
    code, _, err = _bench([command, str(saved / "glcm-knn"), "--images", str(saved / "images"),
                           "--out", str(tmp_path / "out")], capsys)
    _one_line_error(code, err)
    assert "cannot write there: Read-only file system; pass --out a folder you can" in err


def test_explain_kind_gradcam_on_glcm_knn_is_refused_up_front(saved, tmp_path, monkeypatch,
                                                              capsys):
    """It once did nothing and still said a montage was written."""
    _no_work(monkeypatch)
    code, _, err = _bench(["explain", str(saved / "glcm-knn"), "--images",
                           str(saved / "images"), "--out", str(tmp_path / "out"),
                           "--kind", "gradcam"], capsys)
    _one_line_error(code, err)
    assert "--kind gradcam: glcm-knn has no Grad-CAM map" in err and "--kind occlusion" in err
    assert not (tmp_path / "out").exists()


def test_explain_says_which_files_it_wrote(saved, tmp_path, capsys):
    code, out, _ = _bench(["explain", str(saved / "glcm-knn"), "--images",
                           str(saved / "images"), "--out", str(tmp_path / "out"), "--patch",
                           "24", "--stride", "24", "--quiet", "--n-boot", "20"], capsys)
    assert code == 0
    written = out.strip().splitlines()[-1]
    assert written.startswith("written: ") and "montage-occlusion.png" in written
    assert "gradcam" not in out
    for name in written[len("written: "):].split(", "):
        assert Path(name).is_file()


def test_explain_masks_where_nothing_matches_is_one_line_with_counts(saved, tmp_path,
                                                                     monkeypatch, capsys):
    _no_work(monkeypatch)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "other_mask.png")
    code, _, err = _bench(["explain", str(saved / "glcm-knn"), "--images",
                           str(saved / "images"), "--masks", str(masks), "--out",
                           str(tmp_path / "out")], capsys)
    _one_line_error(code, err)
    assert "no mask matches any of the 3 image(s) (0 matched, 3 unmatched; 1 mask file(s) " \
           "found; e.g. other_mask.png)" in err


def test_explain_masks_partly_matching_are_counted(saved, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[10:30, 10:30] = 255
    Image.fromarray(square).save(masks / "s0_mask.png")
    code, out, err = _bench(["explain", str(saved / "glcm-knn"), "--images",
                             str(saved / "images"), "--masks", str(masks), "--out",
                             str(tmp_path / "out"), "--patch", "24", "--stride", "24",
                             "--n-boot", "20", "--quiet"], capsys)
    assert code == 0, err
    assert f"masks: 1 of 3 images matched a mask in {masks} (2 unmatched)" in err
    report = json.loads((tmp_path / "out" / "attribution.json").read_text())
    assert report["masks"]["matched"] == 1 and report["masks"]["unmatched"] == 2
    assert report["masks"]["unmatched_examples"] == ["s1.png", "s2.png"]


def test_a_nan_share_inside_carries_its_reason(saved, tmp_path, monkeypatch, capsys):
    """An occlusion map without a positive value (the score never drops) has no share inside:
    the printed line and the saved JSON and CSV say why."""
    masks = tmp_path / "masks"
    masks.mkdir()
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[10:30, 10:30] = 255
    for i in range(3):
        Image.fromarray(square).save(masks / f"s{i}.png")
    monkeypatch.setattr("mribench.model.explain.occlusion_maps",
                        lambda method, samples, ctx, **kw: np.zeros((len(samples), SIZE, SIZE),
                                                                    np.float32))
    code, out, err = _bench(["explain", str(saved / "glcm-knn"), "--images",
                             str(saved / "images"), "--masks", str(masks), "--out",
                             str(tmp_path / "out"), "--n-boot", "20", "--quiet"], capsys)
    assert code == 0, err
    reason = "3 of 3 slices not scored: map has no positive value"
    assert f"share inside nan ({reason})" in out
    report = json.loads((tmp_path / "out" / "attribution.json").read_text())
    assert report["scores"]["occlusion"]["positive_share"]["reason"] == reason
    assert "map has no positive value" in (tmp_path / "out" / "attribution.csv").read_text()


def test_nan_reasons_by_hand():
    from mribench.model.explain import attribution_summary, nan_reason

    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    good = np.zeros((4, 4))
    good[0, 0] = 1.0
    flat, broken = np.zeros((4, 4)), np.full((4, 4), np.nan)
    assert nan_reason(good) is None and nan_reason(flat) == "map has no positive value"
    assert nan_reason(broken) == "map has values that are not finite"
    s = attribution_summary(np.stack([good, flat, broken]), np.stack([mask] * 3), n_boot=20)
    assert s["positive_share"]["mean"] == 1.0
    assert s["positive_share"]["reason"] == ("2 of 3 slices not scored: map has no positive "
                                             "value (1); map has values that are not finite (1)")
    assert s["pointing"]["reason"] == "1 of 3 slices not scored: map has values that are not " \
                                      "finite"
    assert [r["reason"] for r in s["per_slice"]] == [None, "map has no positive value",
                                                     "map has values that are not finite"]
    assert "reason" not in s["random_baseline"]


# --------------------------------------------------------------------------- the model save


@pytest.fixture
def fake_registry(monkeypatch):
    from test_runner import Bright

    class Unsaveable(Bright):
        name = "unsaveable"

        def fit(self, train, val, ctx):
            super().fit(train, val, ctx)
            self.transform_ = lambda x: x  # a function: only pickle could store it
            return self

    table = {"bright": Bright, "unsaveable": Unsaveable}
    monkeypatch.setattr(registry, "methods", lambda: table)
    return table


def _config(tmp_path, **kw):
    from mribench.run.config import RunConfig

    base = dict(methods="bright", dataset="synthetic[n=40]", image_size=48, n_boot=20,
                out=tmp_path / "run", results_root=tmp_path)
    base.update(kw)
    return RunConfig(**base)


def test_a_disk_filling_during_the_model_save_fails_the_job_and_resume_reruns_it(
        tmp_path, fake_registry, monkeypatch):
    """It once left the row "done" without its model (and --resume kept it so)."""
    import mribench.model
    from mribench.results.layout import JobKey, RunLayout
    from mribench.results.read import job_status
    from mribench.run.runner import run_benchmark

    real = mribench.model.save_model

    def full(method, folder, *, info):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(mribench.model, "save_model", full)
    with pytest.raises(MribenchError, match="No space left on device.*rerun with --resume"):
        run_benchmark(_config(tmp_path))
    layout, key = RunLayout(tmp_path / "run"), JobKey("bright", 0)
    status, reason = job_status(layout.job_dir(key))
    assert status == "failed" and "model not saved (No space left on device)" in reason
    assert json.loads(layout.run_file.read_text())["status"] == "failed"
    monkeypatch.setattr(mribench.model, "save_model", real)  # space freed
    outcome = run_benchmark(_config(tmp_path, resume=True))
    assert [r.status for r in outcome.rows] == ["done"]
    assert load_model(layout.model_dir(key)).threshold_ > 0


def test_a_model_that_cannot_be_saved_still_only_logs(tmp_path, fake_registry):
    from mribench.results.layout import JobKey, RunLayout
    from mribench.results.read import job_status
    from mribench.run.runner import run_benchmark

    outcome = run_benchmark(_config(tmp_path, methods="unsaveable"))
    assert [r.status for r in outcome.rows] == ["done"]
    layout, key = RunLayout(tmp_path / "run"), JobKey("unsaveable", 0)
    assert job_status(layout.job_dir(key))[0] == "done"
    assert not layout.model_dir(key).exists()
    assert "model not saved: ModelError: transform_: cannot save a builtins.function" in \
        layout.log_file(key).read_text()
