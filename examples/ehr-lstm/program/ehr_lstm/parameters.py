"""The job's parameters, checked and with their defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ehr_lstm.errors import InvalidInput

DEFAULT_VARIABLES = (
    "heart_rate",
    "sbp",
    "resp_rate",
    "temperature",
    "spo2",
    "lactate",
    "creatinine",
    "wbc",
)


@dataclass(frozen=True)
class Settings:
    variables: tuple[str, ...] = DEFAULT_VARIABLES
    hidden_size: int = 32
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 128
    learning_rate: float = 0.003
    test_fraction: float = 0.3
    validation_fraction: float = 0.2
    seed: int = 0


# name → (kind, lower bound, upper bound); bounds are inclusive.
_BOUNDS: dict[str, tuple[type, float, float]] = {
    "hidden_size": (int, 2, 512),
    "max_epochs": (int, 1, 1000),
    "patience": (int, 1, 1000),
    "batch_size": (int, 1, 65536),
    "learning_rate": (float, 1e-6, 1.0),
    "test_fraction": (float, 0.05, 0.9),
    "validation_fraction": (float, 0.05, 0.9),
    "seed": (int, 0, 2**31 - 1),
}
KNOWN = ("variables", *_BOUNDS)


def _number(name: str, value: Any, kind: type, low: float, high: float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"parameter {name!r} must be a number")
    number: int | float
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidInput(f"parameter {name!r} must be a whole number")
        number = int(value)
    else:
        number = float(value)
    if not low <= number <= high:
        raise InvalidInput(f"parameter {name!r} must be between {low:g} and {high:g}")
    return number


def _variables(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise InvalidInput("parameter 'variables' must be a comma-separated list of column names")
    names = tuple(v.strip() for v in value.split(","))
    if not names or any(not v for v in names):
        raise InvalidInput("parameter 'variables' has an empty column name")
    if len(set(names)) != len(names):
        raise InvalidInput("parameter 'variables' names a column twice")
    reserved = {"patient", "hour", "target"} & set(names)
    if reserved:
        raise InvalidInput(
            f"parameter 'variables' names {', '.join(sorted(reserved))}, which are not measurements"
        )
    return names


def parse(parameters: Mapping[str, Any]) -> Settings:
    unknown = sorted(set(parameters) - set(KNOWN))
    if unknown:
        raise InvalidInput(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    values: dict[str, Any] = {}
    if "variables" in parameters:
        values["variables"] = _variables(parameters["variables"])
    for name, (kind, low, high) in _BOUNDS.items():
        if name in parameters:
            values[name] = _number(name, parameters[name], kind, low, high)
    return Settings(**values)
