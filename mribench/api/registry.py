"""Find the plugins: every module of ``mribench.methods`` / ``mribench.datasets``, plus
third-party ones registered under the entry-point groups ``mribench.methods`` and
``mribench.datasets``. Adding a pipeline never means editing a list (benchopt's convention).

Modules whose name starts with ``_`` or ``template_`` are skipped.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from mribench.api.dataset import Dataset
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.params import format_spec, parse_spec

if TYPE_CHECKING:
    from mribench.api.specs import DatasetSpec

__all__ = ["datasets", "format_spec", "get_dataset", "get_method", "methods", "parse_spec",
           "resolve_methods"]


def _discover(package_name: str, base: type, group: str) -> dict[str, type]:
    found: dict[str, type] = {}
    package = importlib.import_module(package_name)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith(("_", "template_")):
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, base) and obj.__module__ == module.__name__
                    and not inspect.isabstract(obj) and getattr(obj, "name", "")):
                found[obj.name] = obj
    for ep in entry_points(group=group):
        obj = ep.load()
        if inspect.isclass(obj) and issubclass(obj, base) and obj.name:
            found.setdefault(obj.name, obj)
    return dict(sorted(found.items()))


@cache
def methods() -> dict[str, type[Method]]:
    """All registered method classes by name."""
    return _discover("mribench.methods", Method, "mribench.methods")


@cache
def datasets() -> dict[str, type[Dataset]]:
    """All registered data-set classes by name."""
    return _discover("mribench.datasets", Dataset, "mribench.datasets")


def get_method(name: str) -> type[Method]:
    table = methods()
    if name not in table:
        raise MribenchError(
            f"unknown method {name!r}; known methods: {', '.join(table)} (see `bench list`)"
        )
    return table[name]


def resolve_methods(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """Turn ``--method`` text (``all``, a name, or a comma list of ``name[k=v]``) into a list
    of (name, overrides); see :func:`mribench.api.specs.parse_methods`."""
    from mribench.api.specs import parse_methods

    return [(m.name, m.override_dict) for m in parse_methods(spec)]


def get_dataset(spec: str | DatasetSpec) -> tuple[type[Dataset], dict[str, Any]]:
    """The plugin class of a ``--dataset`` spec and its options (with ``data_dir`` for
    ``name:PATH`` and ``image_size`` when the spec sets them)."""
    from mribench.api.specs import DatasetSpec

    parsed = DatasetSpec.parse(spec, tuple(datasets()))
    options = parsed.option_dict
    if parsed.data_dir is not None:
        options["data_dir"] = parsed.data_dir
    if parsed.image_size is not None:
        options["image_size"] = parsed.image_size
    return datasets()[parsed.name], options
