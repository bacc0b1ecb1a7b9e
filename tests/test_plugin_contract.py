"""One contract suite run on every discovered plugin (scikit-learn's estimator checks idea)."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import re
import sys

import pytest

from mribench.api import registry
from mribench.api.errors import ParamError
from mribench.api.method import PROFILES, SegmentationMethod
from mribench.api.params import MethodParams

METHODS = registry.methods()
DATASETS = registry.datasets()


#: The pipelines mribench ships; a plugin that stops registering (abstract after a refactor,
#: its name lost) would otherwise drop out of every parametrised test below unnoticed.
SHIPPED = {"ann", "cnn", "dwt-dnn", "fcm-cnn", "glcm-knn", "multiscale-cnn", "ocsvm-immune",
           "region-growing", "svm", "two-pathway-cnn", "unet"}


def test_the_literature_is_registered():
    assert SHIPPED <= set(METHODS)
    assert {"br35h", "synthetic", "folder"} <= set(DATASETS)


@pytest.mark.parametrize("name", list(METHODS))
def test_method_declares_what_it_is(name):
    cls = METHODS[name]
    assert cls.name == name and re.fullmatch(r"[a-z0-9][a-z0-9-]*", name)
    assert cls.tasks and set(cls.tasks) <= {"classify", "segment"}
    if cls.kind == "no-skill":  # a reference row: what its task gives without learning
        assert "no-skill" in (inspect.getdoc(sys.modules[cls.__module__]) or "")
        return
    assert "classify" in cls.tasks, "every method answers classify (segmenters via mask area)"
    if "segment" in cls.tasks:
        assert issubclass(cls, SegmentationMethod) or "predict" in cls.__dict__
    assert cls.kind in ("classical", "deep")
    assert re.search(r"(19|20)\d\d", cls.reference), "reference must cite a paper with its year"
    doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
    assert re.search(r"(19|20)\d\d", doc), "the module docstring cites the paper"
    assert re.search(r"differ", doc, re.I), "the module docstring lists differences from the paper"


@pytest.mark.parametrize("name", list(METHODS))
def test_params_are_frozen_validated_plain_data(name):
    cls = METHODS[name]
    assert issubclass(cls.Params, MethodParams)
    assert cls.Params.owner == name, "Params.owner names the plugin in error messages"
    assert set(cls.profiles) <= set(PROFILES)
    for profile in PROFILES:
        params = cls.params_for(profile)
        assert params.digest() == cls.params_for(profile).digest()
        if dataclasses.fields(params):  # a no-skill row may have no parameter at all
            with pytest.raises(dataclasses.FrozenInstanceError):
                params.__setattr__(dataclasses.fields(params)[0].name, None)
            other = dataclasses.replace(params, **_another_value(params))
            assert other.digest() != params.digest(), "checkpoints are keyed by the digest"
        method = cls(profile=profile)
        assert pickle.loads(pickle.dumps(method)).params == params
    with pytest.raises(ParamError, match=name):
        cls.params_for("quick", no_such_parameter=1)
    for field_name in cls.Params.constraints:
        assert field_name in {f.name for f in dataclasses.fields(cls.Params)}


@pytest.mark.parametrize("name", list(METHODS))
def test_unfitted_method_has_no_learned_state(name):
    method = METHODS[name]()
    learned = [k for k in vars(method) if k.endswith("_") and not k.startswith("_")]
    assert learned == []


@pytest.mark.parametrize("name", list(DATASETS))
def test_dataset_declares_what_it_is(name):
    cls = DATASETS[name]
    assert cls.name == name and cls.description
    doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
    assert doc


def _another_value(params: MethodParams) -> dict:
    """One field changed to another valid value (the first numeric field, nudged)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for candidate in (value + 1, value * 1.5, value / 2):
            if isinstance(value, int) and not float(candidate).is_integer():
                continue
            candidate = type(value)(candidate)
            try:
                dataclasses.replace(params, **{f.name: candidate})
            except ParamError:
                continue
            return {f.name: candidate}
    raise AssertionError(f"{type(params).__name__} has no numeric field to vary")
