"""Suite files: a named run (``benchmarks/suites/<name>.toml``) as :class:`RunConfig` values.

A suite sets any field of :class:`~mribench.run.config.RunConfig` that a user can set on
``bench run`` (:data:`SUITE_KEYS`), plus ``[params]`` (per-method parameters, merged into the
method specs), ``[executor_options]``, a ``description`` and a ``baseline``. Values are checked
by ``RunConfig`` itself, so a suite's ``image_size = 5`` fails with the same one line as
``--image-size 5`` (prefixed with the suite's path).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mribench.api.errors import MribenchError

__all__ = ["SUITE_KEYS", "LoadedSuite", "load_suite", "suite_path"]

#: Run options a suite may set (RunConfig fields).
SUITE_KEYS = frozenset({"methods", "dataset", "data_dir", "task", "profile", "device", "seed",
                        "seeds", "split", "image_size", "jobs", "n_boot", "test_on",
                        "test_split", "executor", "folds", "threads", "corrupt",
                        "severities", "corrupt_reference"})
#: Tables and texts that are not run options.
SUITE_TABLES = frozenset({"description", "baseline", "params", "executor_options"})


@dataclass(frozen=True)
class LoadedSuite:
    """A suite file read: its path, the RunConfig values it sets, its description and
    baseline."""

    path: Path
    values: dict[str, Any]
    description: str = ""
    baseline: str | None = None


def suite_path(name: str) -> Path:
    """A suite name (``quick-synthetic``) or a TOML path -> the file."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate
    from mribench.paths import benchmarks_dir

    root = benchmarks_dir() / "suites"
    path = root / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in root.glob("*.toml"))) or "none"
        raise MribenchError(f"no suite {name!r} (looked for {path}); known suites: {known}")
    return path


def load_suite(name: str) -> LoadedSuite:
    """Read a suite file into RunConfig values (specs are parsed by RunConfig, once)."""
    path = suite_path(name)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MribenchError(f"{path}: not a readable TOML suite ({exc}); fix the file") from None
    unknown = sorted(set(data) - SUITE_KEYS - SUITE_TABLES)
    if unknown:
        raise MribenchError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(SUITE_KEYS | SUITE_TABLES))}")
    values = {k: v for k, v in data.items() if k in SUITE_KEYS}
    params = data.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise MribenchError(f"{path}: [params] maps method names to 'k=v,...' strings")
    if params:
        values["methods"] = _with_params(path, values.get("methods", "all"), params)
    options = data.get("executor_options", {})
    if not isinstance(options, dict):
        raise MribenchError(f"{path}: [executor_options] maps option names to values")
    if options:
        values["executor_options"] = dict(options)
    description = data.get("description", "")
    baseline = data.get("baseline")
    return LoadedSuite(path=path, values=values,
                       description=description if isinstance(description, str) else "",
                       baseline=baseline if isinstance(baseline, str) else None)


def _with_params(path: Path, methods: Any, params: dict[str, str]) -> tuple[Any, ...]:
    """The suite's method specs with ``[params]`` applied to the methods named without
    parameters of their own."""
    from mribench.api.params import parse_overrides
    from mribench.api.specs import parse_methods

    if not isinstance(methods, str):
        raise MribenchError(f"{path}: --method must be text ('all' or a comma list), got "
                            f"{methods!r}")
    try:
        specs = parse_methods(methods)
        return tuple(spec.with_overrides(parse_overrides(params[spec.name]))
                     if spec.name in params and not spec.overrides else spec
                     for spec in specs)
    except MribenchError as exc:
        raise MribenchError(f"{path}: {exc}") from None
