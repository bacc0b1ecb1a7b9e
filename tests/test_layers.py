"""The import rules of the engine's layers, checked by reading every module's imports.

Every ``import`` and ``from ... import`` statement of every module under ``mribench/``,
``methods/`` (``mribench.methods``) and ``datasets/`` (``mribench.datasets``) is read with
:mod:`ast`, including imports inside functions and under ``if TYPE_CHECKING:`` (a lazy import
is still a dependency). Relative imports are resolved; ``from mribench import api`` counts as
importing ``mribench.api``. Nothing is imported or executed.

The layers, bottom to top (a package may import its own modules and those of the layers
*strictly below* it; packages on one line are siblings and may not import each other)::

    0  mribench.api            contracts every plugin imports
    1  mribench.blocks         shared algorithms, no plugin knowledge
    2  mribench.data           loading, image I/O, phantom (may use blocks: resizing)
    3  mribench.split  mribench.eval  mribench.model
                               manifests / pure metrics / saved models
    4  mribench.results        the results folder (reads eval's metric names)
    5  mribench.run  mribench.report
                               the runner / tables and figures (the report reads results, it
                               does not need the runner)
    6  mribench.cli            click commands: the top

``mribench`` itself (``__version__``), ``mribench.atomic`` and ``mribench.paths`` are small
foundation modules below every layer. On top of the order, the specific rules of the layout
(LAYOUT.md):

- a plugin in ``methods/`` imports from mribench only ``mribench.api`` and ``mribench.blocks``
  (never run, eval, results, report, split, data or cli: a method never reads files, splits or
  metrics);
- a plugin in ``datasets/`` imports from mribench only ``mribench.api`` and ``mribench.data``;
- ``mribench.blocks`` never imports methods, datasets, run, eval, results, report, split or
  cli;
- ``mribench.eval`` imports only the standard library, numpy, scipy, scikit-learn and
  ``mribench.api``;
- ``mribench.api`` imports from mribench only ``mribench.api``, ``mribench.atomic``,
  ``mribench.paths`` and ``mribench`` (``__version__``);
- only ``mribench.cli`` imports click;
- nothing imports ``mribench.cli`` but ``mribench.cli`` itself (the console script enters
  there);
- only ``mribench.results`` knows the results folder's layout: no other module of the engine
  names one of its files or builds a ``seed-<s>`` folder (:func:`test_only_results_knows_the_layout`,
  which reads every string constant outside docstrings);
- ``mribench.results`` returns data and never formats text: it does not import tabulate (the
  terminal, Markdown and HTML tables are ``mribench.report.tables``');
- no module of the engine reaches itself again through its imports (no import cycle, lazy
  imports included): extension points such as the executors are found through entry points,
  not by importing the module that registers them.

Each failure lists every violation as ``file:line: module imports target (rule)``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> the package its modules belong to (pyproject's package-dir).
SOURCES = {"mribench": "mribench", "methods": "mribench.methods",
           "datasets": "mribench.datasets"}

#: Layer of each engine package (see the module docstring); equal numbers are siblings.
LAYERS: dict[str, int] = {
    "mribench.api": 0,
    "mribench.blocks": 1,
    "mribench.data": 2,
    "mribench.split": 3, "mribench.eval": 3, "mribench.model": 3,
    "mribench.results": 4,
    "mribench.run": 5, "mribench.report": 5, "mribench.testing": 5,
    "mribench.cli": 6,
}
#: Modules below every layer: anyone in the engine may import them.
FOUNDATION = ("mribench", "mribench.atomic", "mribench.cpu_kernels", "mribench.paths")
#: What eval may import besides mribench.api and the standard library.
EVAL_THIRD_PARTY = ("numpy", "scipy", "sklearn")


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported and by whom."""

    importer: str   # dotted module name of the importing module
    target: str     # dotted name of the imported module
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_names() -> dict[Path, str]:
    out = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[path] = ".".join((package, *parts))
    return out


MODULES = _module_names()
KNOWN = set(MODULES.values())


def imports_of(source: str, module: str, path: Path, is_package: bool = False
               ) -> Iterator[Import]:
    """Every module ``source`` (the text of ``module``) imports, at any depth of its tree."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            for alias in node.names:
                sub = f"{parent}.{alias.name}"
                # ``from mribench import api`` imports the submodule mribench.api
                yield Import(module, sub if sub in KNOWN else parent, path, node.lineno)


def all_imports() -> list[Import]:
    out = []
    for path, module in MODULES.items():
        out.extend(imports_of(path.read_text(encoding="utf-8"), module, path,
                              is_package=path.name == "__init__.py"))
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _package(name: str) -> str | None:
    """The engine package (a key of LAYERS, or methods/datasets) ``name`` belongs to."""
    for prefix in (*LAYERS, "mribench.methods", "mribench.datasets"):
        if _within(name, prefix):
            return prefix
    return None


def _is_mribench(name: str) -> bool:
    return _within(name, "mribench")


def _is_stdlib(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


# --------------------------------------------------------------------------- the rules
# Each rule: imp -> None when allowed, else the reason.


def rule_methods(imp: Import) -> str | None:
    if (_within(imp.importer, "mribench.methods") and _is_mribench(imp.target)
            and not any(_within(imp.target, p) for p in ("mribench.api", "mribench.blocks"))):
        return "methods/ import only mribench.api and mribench.blocks"
    return None


def rule_datasets(imp: Import) -> str | None:
    if (_within(imp.importer, "mribench.datasets") and _is_mribench(imp.target)
            and not any(_within(imp.target, p) for p in ("mribench.api", "mribench.data"))):
        return "datasets/ import only mribench.api and mribench.data"
    return None


BLOCKS_NEVER = ("mribench.methods", "mribench.datasets", "mribench.run", "mribench.eval",
                "mribench.results", "mribench.report", "mribench.split", "mribench.cli")


def rule_blocks(imp: Import) -> str | None:
    if _within(imp.importer, "mribench.blocks") and any(_within(imp.target, p)
                                                         for p in BLOCKS_NEVER):
        return "mribench.blocks knows no plugin, runner, metric, split, report or CLI"
    return None


def rule_eval(imp: Import) -> str | None:
    if not _within(imp.importer, "mribench.eval"):
        return None
    if _is_mribench(imp.target):
        ok = _within(imp.target, "mribench.api") or _within(imp.target, "mribench.eval")
    else:
        ok = _is_stdlib(imp.target) or imp.target.split(".")[0] in EVAL_THIRD_PARTY
    return None if ok else "mribench.eval is numpy/scipy/scikit-learn and mribench.api only"


def rule_api(imp: Import) -> str | None:
    if (_within(imp.importer, "mribench.api") and _is_mribench(imp.target)
            and not _within(imp.target, "mribench.api") and imp.target not in FOUNDATION):
        return "mribench.api imports only mribench.api, atomic, paths and __version__"
    return None


def rule_click(imp: Import) -> str | None:
    if _within(imp.target, "click") and not _within(imp.importer, "mribench.cli"):
        return "only mribench.cli imports click"
    return None


def rule_cli(imp: Import) -> str | None:
    if _within(imp.target, "mribench.cli") and not _within(imp.importer, "mribench.cli"):
        return "nothing imports mribench.cli (the console script enters there)"
    return None


def rule_results_data(imp: Import) -> str | None:
    if _within(imp.importer, "mribench.results") and _within(imp.target, "tabulate"):
        return "mribench.results returns data; text tables are mribench.report.tables'"
    return None


def rule_layers(imp: Import) -> str | None:
    source, target = _package(imp.importer), _package(imp.target)
    if source not in LAYERS or not _is_mribench(imp.target) or imp.target in FOUNDATION:
        return None
    if target is None:
        return f"{imp.target} is in no layer (add its package to LAYERS in this test)"
    if target in ("mribench.methods", "mribench.datasets"):
        return "the engine reaches plugins through mribench.api.registry only (by name)"
    if target == source or LAYERS[target] < LAYERS[source]:
        return None
    return (f"layer {LAYERS[source]} ({source}) may not import layer {LAYERS[target]} "
            f"({target}); see the layer order in tests/test_layers.py")


RULES = [rule_methods, rule_datasets, rule_blocks, rule_eval, rule_api, rule_click, rule_cli,
         rule_results_data, rule_layers]


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (strongly
    connected components of more than one module, Tarjan's algorithm), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target in KNOWN and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def violations(imports: list[Import], rule) -> list[str]:
    out = []
    for imp in imports:
        reason = rule(imp)
        if reason:
            out.append(f"{imp.where()}: {imp.importer} imports {imp.target} ({reason})")
    return list(dict.fromkeys(out))  # ``from x import a, b``: one line, not two


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_every_module_is_read_and_every_engine_package_has_a_layer(imports) -> None:
    assert len(MODULES) > 80 and len(imports) > 500
    packages = {".".join(m.split(".")[:2]) for m in KNOWN if m.count(".") >= 1}
    subpackages = {p for p in packages if (ROOT / "mribench" / p.split(".")[1]).is_dir()}
    unplaced = sorted(subpackages - set(LAYERS) - {"mribench.methods", "mribench.datasets"})
    assert not unplaced, f"engine packages without a layer in LAYERS: {unplaced}"


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_import_rule(imports, rule) -> None:
    found = violations(imports, rule)
    if found:
        pytest.fail(f"{len(found)} import(s) break {rule.__name__}:\n" + "\n".join(found),
                    pytrace=False)


def test_no_import_cycle(imports) -> None:
    cycles = import_cycles(imports)
    assert not cycles, "modules that import each other: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    """The checker itself, on the cycle the executors had (cluster registered itself into
    executors, which imported cluster to get it registered)."""
    path = ROOT / "mribench" / "x.py"
    found = [*imports_of("from mribench.run.executors import pin_threads",
                         "mribench.run.cluster", path),
             *imports_of("def f():\n    import mribench.run.cluster", "mribench.run.executors",
                         path)]
    assert import_cycles(found) == [["mribench.run.cluster", "mribench.run.executors"]]


@pytest.mark.parametrize(("module", "source", "rule"), [
    ("mribench.eval.metrics", "import click", rule_click),
    ("mribench.eval.metrics", "def f():\n    import pandas", rule_eval),
    ("mribench.eval.metrics", "from mribench.results import read", rule_layers),
    ("mribench.blocks.crf", "from mribench.eval.metrics import mask_counts", rule_blocks),
    ("mribench.methods.unet", "from mribench.data.imageio import resize_mask", rule_methods),
    ("mribench.methods.unet", "from mribench import eval", rule_methods),
    ("mribench.datasets.br35h", "from mribench.blocks.resize import resize_image",
     rule_datasets),
    ("mribench.api.registry", "from mribench.data.load import load_dataset", rule_api),
    ("mribench.report.build", "from mribench.cli import main", rule_cli),
    ("mribench.data.load", "from ..split import manifest", rule_layers),
    ("mribench.split.manifest", "from mribench.eval import metrics", rule_layers),
    ("mribench.results.rank", "def f():\n    from tabulate import tabulate",
     rule_results_data),
])
def test_rules_catch_a_forbidden_import(module, source, rule) -> None:
    """The checker itself: each rule flags a typical forbidden import, with file:line."""
    path = ROOT / "mribench" / "x.py"
    found = violations(list(imports_of(source, module, path)), rule)
    assert len(found) == 1 and found[0].startswith("mribench/x.py:")


# --------------------------------------------------------------------------- the results folder
#: Names that belong to the results folder's layout (mribench/results/layout.py).
LAYOUT_NAMES = ("run.json", "split.json", "status.json", "metrics.json", "per_case.json",
                "predictions.npz", "test_images.npz", "history.json", "traceback.txt",
                "log.txt", "seed-", ".lock", ".submitit")


def layout_literals(source: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each string constant (f-string parts too) naming a layout file,
    docstrings excepted."""
    tree = ast.parse(source, filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            text = node.value.strip()
            # a path part: the name itself, a glob of it, or a prefix an f-string completes
            if any(text == name or text.startswith(name) and text[len(name):] in ("*", "")
                   or text.endswith("/" + name) for name in LAYOUT_NAMES):
                yield node.lineno, node.value


def test_only_results_knows_the_layout() -> None:
    """Every path of a results folder is built by mribench.results (layout, writer, reader):
    no other engine module names a file of the layout or a ``seed-<s>`` folder."""
    found = []
    for path, module in MODULES.items():
        if _within(module, "mribench.results"):
            continue
        for line, text in layout_literals(path.read_text(encoding="utf-8"), path):
            found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not found, "results-folder paths built outside mribench.results:\n" + "\n".join(found)


def test_layout_check_catches_a_path_built_elsewhere() -> None:
    source = 'def f(run, row, s):\n    """Writes run.json."""\n    return run / row / f"seed-{s}"\n'
    assert [t for _, t in layout_literals(source, Path("x.py"))] == ["seed-"]


#: Longest function the engine and the plugins may hold (lines, decorators excluded).
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_recipe() -> None:
    """Functions read like their recipe: cut into named steps past 80 lines."""
    long = []
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} "
                                f"({lines} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
