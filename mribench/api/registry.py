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

from mribench.api.dataset import Dataset
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.params import format_spec, parse_spec

__all__ = ["datasets", "format_spec", "get_method", "methods", "parse_spec"]


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
