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
from pathlib import Path
from typing import Any

from mribench.api.dataset import Dataset
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.params import format_spec, parse_spec, split_top_level

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
    """Turn ``--method`` text (``all``, a name, or a comma list of ``name[k=v]``) into a list."""
    if spec.strip() == "all":
        return [(name, {}) for name in methods()]
    resolved: list[tuple[str, dict[str, Any]]] = []
    for item in filter(None, (s.strip() for s in split_top_level(spec))):  # "a,,b": no empties
        name, overrides = parse_spec(item)
        get_method(name)
        if (name, overrides) in resolved:
            raise MribenchError(f"--method names {item!r} twice; give each method (or variant) "
                                "once")
        resolved.append((name, overrides))
    if not resolved:
        raise MribenchError("no method given; use --method all or a name from `bench list`")
    return resolved


def get_dataset(spec: str) -> tuple[type[Dataset], dict[str, Any]]:
    """Resolve ``--dataset``: a name, ``name[k=v]``, or ``folder:PATH``."""
    table = datasets()
    if ":" in spec and spec.split(":", 1)[0] in table:
        name, path = spec.split(":", 1)
        options: dict[str, Any] = {}
        # folder:PATH[k=v]: options in brackets, unless the brackets belong to an existing path
        if path.endswith("]") and "[" in path and not Path(path).exists():
            path, options = parse_spec(path)
        return table[name], {"data_dir": path, **options}
    name, overrides = parse_spec(spec)
    if name not in table:
        raise MribenchError(
            f"unknown data set {name!r}; known: {', '.join(table)}, or folder:PATH (see `bench list`)"
        )
    return table[name], overrides
