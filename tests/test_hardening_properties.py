"""Hardening (issue 14): property-based tests of the parsers that take user text or files.

Each parser either returns a valid value or raises a one-line
:class:`~mribench.api.errors.MribenchError` (DataError, ParamError); nothing else escapes.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mribench.api.errors import DataError, MribenchError, ParamError  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: Any JSON value, with the awkward numbers (NaN, inf, huge ints) Python's json accepts.
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and str(exc).strip()


# --------------------------------------------------------------------------- name[k=v]


@SETTINGS
@given(st.text(max_size=60))
def test_parse_spec_random_text_raises_only_param_errors(text):
    from mribench.api.params import parse_spec

    try:
        name, overrides = parse_spec(text)
    except MribenchError as exc:
        _one_line(exc)
    else:
        assert isinstance(name, str) and isinstance(overrides, dict)


@SETTINGS
@given(st.text(alphabet=st.sampled_from('ab=,[]{}()"\\ 1.-xyz'), max_size=40))
def test_parse_overrides_bracket_soup_raises_only_param_errors(text):
    from mribench.api.params import parse_overrides

    try:
        parse_overrides(text)
    except ParamError as exc:
        _one_line(exc)


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
keys = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
values = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
          | st.lists(st.integers(0, 100), max_size=4))


@SETTINGS
@given(names, st.dictionaries(keys, values, max_size=4))
def test_format_then_parse_spec_round_trips(name, overrides):
    from mribench.api.params import format_spec, parse_spec

    assert parse_spec(format_spec(name, overrides)) == (name, overrides)


@SETTINGS
@given(st.text(max_size=40))
def test_resolve_methods_random_text_raises_only_mribench_errors(text):
    from mribench.api.specs import resolve_methods

    try:
        resolve_methods(text)
    except MribenchError as exc:
        _one_line(exc)


# --------------------------------------------------------------------------- VIA regions


coordinates = (st.integers(-10**20, 10**20) | st.integers() | st.floats()
               | st.sampled_from(["12", "abc", "", "nan", "1e999"]) | st.none() | st.booleans())
shape_attributes = st.fixed_dictionaries(
    {"name": st.sampled_from(["polygon", "polyline", "ellipse", "circle", "rect", "point", "",
                              "POLYGON"])},
    optional={k: coordinates for k in ("cx", "cy", "rx", "ry", "r", "theta", "x", "y",
                                       "width", "height")}
    | {"all_points_x": st.lists(coordinates, max_size=6) | json_values,
       "all_points_y": st.lists(coordinates, max_size=6) | json_values})
regions = st.lists(st.fixed_dictionaries({"shape_attributes": shape_attributes})
                   | shape_attributes | json_values, max_size=4)


@SETTINGS
@given(regions, st.integers(1, 40), st.integers(1, 40))
def test_via_random_regions_raise_only_data_errors(regs, height, width):
    from mribench.data.via import rasterise

    try:
        mask = rasterise(regs, height, width, source="img.jpg")
    except DataError as exc:
        _one_line(exc)
    else:
        assert mask.shape == (height, width) and mask.dtype == bool


_TMP = Path(tempfile.mkdtemp(prefix="mribench-hardening-"))


@SETTINGS
@given(json_values | st.dictionaries(st.text(max_size=6), st.fixed_dictionaries(
    {"filename": json_values | st.text(max_size=10)}, optional={"regions": regions}),
    max_size=3))
def test_via_random_files_raise_only_data_errors(data):
    from mribench.data.via import read_via

    path = _TMP / "via.json"
    path.write_text(json.dumps(data))
    try:
        out = read_via(path)
    except DataError as exc:
        _one_line(exc)
    else:
        assert all(isinstance(k, str) and isinstance(v, list) for k, v in out.items())


# --------------------------------------------------------------------------- split manifests


FIELDS = ("dataset", "strategy", "seed", "threshold", "train", "val", "test", "dropped",
          "options", "stats", "notes", "created_with", "sha256")
ids = st.lists(st.text(max_size=4) | st.integers(0, 9), max_size=5)
manifests = st.dictionaries(st.sampled_from(FIELDS), json_values | ids | st.text(max_size=6),
                            max_size=len(FIELDS))


def _valid(manifest) -> None:
    parts = manifest.parts()
    seen: set[str] = set()
    for part_ids in parts.values():
        assert all(isinstance(i, str) for i in part_ids)
        assert not seen & set(part_ids)
        seen |= set(part_ids)
    assert isinstance(manifest.seed, int) and 0 <= manifest.threshold <= 1
    assert len(manifest.sha256) == 64


@SETTINGS
@given(manifests | json_values)
def test_manifest_random_json_is_data_error_or_valid(data):
    from mribench.split.manifest import load_manifest

    path = _TMP / "manifest.json"
    path.write_text(json.dumps(data))
    try:
        manifest = load_manifest(path)
    except DataError as exc:
        _one_line(exc)
    else:
        _valid(manifest)


@SETTINGS
@given(st.binary(max_size=60))
def test_manifest_random_bytes_is_data_error(blob):
    from mribench.split.manifest import load_manifest

    path = _TMP / "bytes.json"
    path.write_bytes(blob)
    try:
        _valid(load_manifest(path))
    except DataError as exc:
        _one_line(exc)


# --------------------------------------------------------------------------- baselines


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mribench.testing import make_fake_results

    return make_fake_results(tmp_path_factory.mktemp("results") / "run", n_test=12, size=16)


metric_entries = (json_values | st.floats(0, 1)
                  | st.fixed_dictionaries({}, optional={"value": json_values | st.floats(0, 1),
                                                        "tolerance": json_values}))
baselines = st.fixed_dictionaries({"methods": st.dictionaries(
    st.sampled_from(["glcm-svm", "unet", "missing"]) | st.text(max_size=5),
    st.dictionaries(st.sampled_from(["classify", "segment", "other"]),
                    st.dictionaries(st.sampled_from(["accuracy", "f1", "iou", "x"]),
                                    metric_entries, max_size=3) | json_values, max_size=2)
    | json_values, max_size=3)},
    optional={"tolerance": json_values | st.floats(0, 1),
              "tolerances": st.dictionaries(st.text(max_size=5), json_values) | json_values,
              "created_from": st.dictionaries(st.sampled_from(["dataset", "profile"]),
                                              json_values) | json_values})


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(baselines | json_values)
def test_baseline_random_json_is_one_line_error_or_a_check(fake_run, data):
    from mribench.report.check import check

    path = _TMP / "baseline.json"
    path.write_text(json.dumps(data))
    try:
        problems = check(fake_run, path)
    except MribenchError as exc:
        _one_line(exc)
    else:
        assert isinstance(problems, list) and all(
            isinstance(p, str) and "\n" not in p for p in problems)


# --------------------------------------------------------------------------- suite files


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


toml_scalars = (st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=10))
toml_values = toml_scalars | st.lists(toml_scalars, max_size=3)
SUITE_KEYS = ["methods", "dataset", "data_dir", "task", "profile", "device", "seed", "seeds",
              "split", "image_size", "jobs", "n_boot", "test_on", "description", "baseline",
              "executor", "other"]
suites = st.tuples(
    st.dictionaries(st.sampled_from(SUITE_KEYS), toml_values, max_size=5),
    st.none() | st.dictionaries(st.sampled_from(["glcm-knn", "unet", "nope"]), toml_values,
                                max_size=2))


def _suite_text(top: dict, params: dict | None) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    if params is not None:
        lines.append("[params]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suites | st.text(max_size=80).map(lambda t: (t, None)))
def test_suite_random_toml_raises_only_mribench_errors(suite):
    from mribench.run.config import RunConfig

    path = _TMP / "suite.toml"
    text = suite[0] if isinstance(suite[0], str) else _suite_text(*suite)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        RunConfig.from_sources({}, suite=str(path))  # read and every value checked
    except MribenchError as exc:
        _one_line(exc)


def test_numpy_is_quiet_about_far_via_coordinates():
    """skimage's casts warn on absurd coordinates; the clamp keeps them finite and quiet."""
    import warnings

    from mribench.data.via import region_mask

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = region_mask({"name": "ellipse", "cx": 1e300, "cy": -1e300, "rx": 1e300,
                            "ry": 2}, 9, 9)
    assert mask.shape == (9, 9) and np.isin(mask, (True, False)).all()
