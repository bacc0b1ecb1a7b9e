"""Method parameters as plain, frozen data, validated once at construction.

A plugin declares ``@dataclass(frozen=True) class Params(MethodParams)`` with defaults and a
class-level ``constraints`` table (scikit-learn's ``_parameter_constraints`` idea). Profiles
(``quick`` for CPU/CI, ``paper`` for the published settings) are dicts of overrides.
Every error names the plugin, the parameter, what is allowed and what was received.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mribench.api.errors import ParamError


@dataclass(frozen=True)
class Interval:
    """A numeric range; ``closed`` says which ends are included: "both", "left", "right", "neither"."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False

    def check(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        lo_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        hi_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return lo_ok and hi_ok

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        kind = "integer" if self.integer else "number"
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"a{'n' if kind == 'integer' else ''} {kind} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class OneOf:
    """A value from a fixed set of choices."""

    choices: Sequence[Any]

    def check(self, value: Any) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class Check:
    """A free-form test with a description, e.g. 'a wavelet name PyWavelets knows'."""

    test: Callable[[Any], bool]
    description: str

    def check(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except Exception:
            return False

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class OrNone:
    """``None`` (off, no limit, all) or a value the ``inner`` constraint accepts."""

    inner: Interval | OneOf | Check

    def check(self, value: Any) -> bool:
        return value is None or self.inner.check(value)

    def __str__(self) -> str:
        return f"None or {self.inner}"


#: A boolean switch (``OneOf((True, False))`` would also take 0 and 1).
FLAG = Check(lambda v: isinstance(v, bool), "true or false")

#: A non-empty list of integers >= 1 (distances, layer widths, a grid of k).
POSITIVE_INTS = Check(lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                      and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v),
                      "a non-empty list of integers >= 1")

Constraint = Interval | OneOf | Check | OrNone


@dataclass(frozen=True)
class MethodParams:
    """Base of every plugin's ``Params``. Subclasses add fields and a ``constraints`` table."""

    constraints: ClassVar[dict[str, Constraint | Sequence[Constraint]]] = {}
    owner: ClassVar[str] = "method"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, rule in self.constraints.items():
            value = getattr(self, name)
            rules = rule if isinstance(rule, (list, tuple)) else [rule]
            for r in rules:
                if not r.check(value):
                    raise ParamError(
                        f"{self.owner}: parameter {name!r} must be {r}, got {value!r}"
                    )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> MethodParams:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ParamError(
                f"{self.owner}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)

    def digest(self) -> str:
        """A short hash of the values, for cache keys and result records."""
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def parse_overrides(text: str) -> dict[str, Any]:
    """Parse ``"k=v,k2=v2"`` (the ``name[k=v]`` syntax) into typed values (JSON where possible)."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ParamError(f"parameter override {part!r} must look like name=value")
        key, raw = (s.strip() for s in part.split("=", 1))
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
