"""Hyper-parameters: declared per kind, parsed from the API's ``map<string, string>``.

Each kind declares its parameters with a type, a range and a default. A *tunable* parameter has
no fixed default (``default=None``): when the caller leaves it out, the kind picks it by
cross-validation. Parsed values go back to strings with `format_value`, so the effective
parameters recorded on a head's card are themselves valid input for training the same head again.

Hand-written rather than a pydantic model per kind: the specs are also what the compute budget
reads (ranges, defaults) and what the errors quote (``params[lr]``, the range, the value given;
an unknown name with the kind's known ones), from string values whose spelling is checked
(``"1e-3"`` yes, ``"nan"`` no); pydantic would coerce them with messages of its own, and mapping
those back to the API's field names would take as much code as this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from heads.errors import InvalidParams, cut, shown

#: A parsed parameter value; None only for a tunable parameter the caller did not give.
ParamValue = float | int | str | None


def int_value(params: Mapping[str, ParamValue], name: str) -> int:
    """A parsed `IntParam`'s value (given or its default), typed as what its spec parses to."""
    value = params[name]
    if not isinstance(value, int):
        raise TypeError(f"parameter {name} is {value!r}, not an integer")
    return value


def float_value(params: Mapping[str, ParamValue], name: str) -> float:
    """A parsed `FloatParam`'s value (given or its default), typed as what its spec parses to."""
    value = params[name]
    if not isinstance(value, int | float):
        raise TypeError(f"parameter {name} is {value!r}, not a number")
    return float(value)


@dataclass(frozen=True)
class FloatParam:
    """A float parameter, bounded below (exclusive ``gt`` or inclusive ``ge``) and above (``le``).

    Bounds left as None do not apply.
    """

    description: str
    default: float | None = None
    gt: float | None = None
    le: float | None = None
    ge: float | None = None

    def parse(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {shown(raw)}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {shown(raw)}")
        if self.gt is not None and not value > self.gt:
            raise ValueError(f"must be > {self.gt:g}, got {value:g}")
        if self.ge is not None and not value >= self.ge:
            raise ValueError(f"must be >= {self.ge:g}, got {value:g}")
        if self.le is not None and not value <= self.le:
            raise ValueError(f"must be <= {self.le:g}, got {value:g}")
        return value


@dataclass(frozen=True)
class IntParam:
    """An integer parameter in the inclusive range [``ge``, ``le``].

    A tunable one has ``default=None``: the kind chooses it when the caller leaves it out.
    """

    description: str
    default: int | None
    ge: int
    le: int

    def parse(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {shown(raw)}") from None
        if not self.ge <= value <= self.le:
            raise ValueError(f"must be in [{self.ge}, {self.le}], got {value}")
        return value


@dataclass(frozen=True)
class ChoiceParam:
    """A parameter taking one of a few lower-case words (matched case-insensitively)."""

    description: str
    default: str
    choices: tuple[str, ...]

    def parse(self, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {shown(raw)}")
        return value


ParamSpec = FloatParam | IntParam | ChoiceParam


def parse_params(specs: Mapping[str, ParamSpec], raw: Mapping[str, str]) -> dict[str, ParamValue]:
    """Parses and validates the caller's parameters against a kind's declarations.

    Args:
        specs: The kind's parameter declarations, by name.
        raw: The caller's parameters, as strings.

    Returns:
        A value for every declared parameter: the caller's, else the default; None for a tunable
        parameter the caller left out.

    Raises:
        InvalidParams: With field ``params[<key>]`` for an unknown key or a malformed or
            out-of-range value.
    """
    for key in raw:
        if key not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise InvalidParams(
                f"params[{cut(key)}]", f"unknown parameter; this kind takes: {known}"
            )
    values: dict[str, ParamValue] = {}
    for name, spec in specs.items():
        if name not in raw:
            values[name] = spec.default
            continue
        text = raw[name]
        if not isinstance(text, str):
            raise InvalidParams(f"params[{cut(name)}]", "value must be a string")
        try:
            values[name] = spec.parse(text)
        except ValueError as exc:
            raise InvalidParams(f"params[{name}]", str(exc)) from None
    return values


def format_value(value: float | int | str) -> str:
    """Formats a parameter value so that `parse` of its spec gives the same value back."""
    if isinstance(value, float):
        # float() first: numpy 2 scalars repr as "np.float64(...)". repr is the shortest string
        # that round-trips exactly.
        return repr(float(value))
    return str(value)
