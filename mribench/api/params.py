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

    @classmethod
    def rules(cls) -> dict[str, Constraint | Sequence[Constraint]]:
        """The table :meth:`validate` checks: ``constraints``, plus whatever a base class
        shares with its subclasses (e.g. the deep plugins' training knobs)."""
        return dict(cls.constraints)

    def validate(self) -> None:
        for name, rule in self.rules().items():
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


def int_from_text(value: Any) -> Any:
    """``value`` as an int when it is the text of one (``"-3"`` -> -3), else unchanged: the
    CLI hands numbers over as it received them, and the library checks them once."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and text.count("-") <= 1 and not text.endswith("-"):
            return int(text)
    return value


# --------------------------------------------------------------------------- name[k=v] syntax
# The one parser and formatter of the variant syntax (benchopt's): ``name[k=v,k2=v2]`` selects
# a plugin with overrides, on the command line, in config files and in result records.

_OPEN, _CLOSE = "[({", "])}"


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` on ``sep`` outside brackets (``[] () {}``) and double quotes.

    >>> split_top_level('unet[epochs=5,hidden=[32,16]],svm')
    ['unet[epochs=5,hidden=[32,16]]', 'svm']
    """
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for ch in text:
        if quoted and escaped:  # the character after a backslash inside quotes ("a\\" ends)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in _OPEN:
            depth += 1
        elif not quoted and ch in _CLOSE:
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_overrides(text: str) -> dict[str, Any]:
    """Parse ``"k=v,k2=v2"`` (the inside of ``name[...]``) into typed values: JSON where it
    parses (numbers, true/false, null, lists, quoted strings), else the text itself. Commas
    inside brackets or quotes belong to the value (``hidden=[32,16]``)."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in split_top_level(text):
        if not part.strip():
            continue
        if "=" not in part:
            raise ParamError(f"parameter override {part.strip()!r} must look like name=value")
        key, raw = (s.strip() for s in part.split("=", 1))
        if not key:
            raise ParamError(f"parameter override {part.strip()!r} has no name; write "
                             "name=value")
        try:
            out[key] = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON (or absurdly long/deep): the text
            out[key] = raw
    return out


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name[k=v,k2=v2]`` into the name and typed overrides (:func:`parse_overrides`);
    a spec without brackets has none."""
    spec = spec.strip()
    if "[" in spec and spec.endswith("]"):
        name, rest = spec.split("[", 1)
        return name.strip(), parse_overrides(rest[:-1])
    return spec, {}


def format_spec(name: str, overrides: dict[str, Any]) -> str:
    """The inverse of :func:`parse_spec`: ``name[k=v,...]`` (values as JSON); ``name`` alone
    without overrides."""
    if not overrides:
        return name
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
    return f"{name}[{inner}]"
