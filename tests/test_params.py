"""Parameter constraints: every plugin's start-up check rests on these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from mribench.api.errors import ParamError
from mribench.api.params import FLAG, Interval, MethodParams, OrNone, parse_overrides


@dataclass(frozen=True)
class _Params(MethodParams):
    owner: ClassVar[str] = "demo"
    constraints: ClassVar = {"patience": OrNone(Interval(1, None, integer=True)), "augment": FLAG}

    patience: int | None = 3
    augment: bool = True


@pytest.mark.parametrize("patience", [None, 1, 50])
def test_or_none_accepts_none_and_what_the_inner_constraint_accepts(patience) -> None:
    assert _Params(patience=patience).patience == patience


@pytest.mark.parametrize("patience", [0, -2, 2.5, 3.0, True, "3"])
def test_or_none_rejects_the_rest_with_a_readable_message(patience) -> None:
    with pytest.raises(ParamError, match=r"demo: parameter 'patience' must be None or an integer "
                                         r"in \[1, inf\], got"):
        _Params(patience=patience)


@pytest.mark.parametrize("augment", [0, 1, "yes", None])
def test_flag_takes_only_booleans(augment) -> None:
    with pytest.raises(ParamError, match="must be true or false"):
        _Params(augment=augment)


def test_overrides_parse_to_values_the_constraints_accept() -> None:
    values = parse_overrides("patience=null,augment=false")
    assert _Params(**values) == _Params(patience=None, augment=False)
