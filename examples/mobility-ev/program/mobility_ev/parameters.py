"""The job's parameters, checked before any data is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mobility_ev.errors import InvalidInput

DEMAND_ENDS = ("destination", "origin", "both")
WEIGHTS = ("trips", "km")


@dataclass(frozen=True)
class Parameters:
    zones_dataset: str  # the input holding the zone centroids
    p: int  # sites to open, in each model
    coverage_m: int  # service distance of the maximal-covering model, in metres
    candidates: tuple[int, ...] | None  # candidate zone ids; None: every zone
    ev_vehicles: frozenset[str]  # `vehicle` labels that count as charging demand
    demand_end: str  # which end of an EV trip needs charging: destination, origin, both
    weight: str  # a trip end weighs 1 (trips) or the trip's distance_km (km)

    @property
    def coverage_km(self) -> float:
        return self.coverage_m / 1000


DEFAULTS: Mapping[str, Any] = {
    "zones_dataset": "zones",
    "p": 4,
    # Signed job parameters are integers (canonical JSON has no fractions): metres.
    "coverage_m": 10_000,
    "candidates": "all",
    "ev_vehicles": "ev",
    "demand_end": "destination",
    "weight": "trips",
}


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"parameter {name!r} must be a non-empty string")
    return value.strip()


def _choice(values: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = _text(values, name)
    if value not in allowed:
        raise InvalidInput(f"parameter {name!r} must be one of {', '.join(allowed)}")
    return value


def _candidates(values: Mapping[str, Any]) -> tuple[int, ...] | None:
    text = _text(values, "candidates")
    if text == "all":
        return None
    ids: list[int] = []
    for item in text.split(","):
        try:
            ids.append(int(item.strip()))
        except ValueError:
            raise InvalidInput(
                "parameter 'candidates' must be 'all' or comma-separated integer zone ids"
            ) from None
    if len(set(ids)) != len(ids):
        raise InvalidInput("parameter 'candidates' names a zone more than once")
    return tuple(ids)


def parse(parameters: Mapping[str, Any]) -> Parameters:
    unknown = sorted(set(parameters) - set(DEFAULTS))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(DEFAULTS))})"
        )
    values = {**DEFAULTS, **parameters}
    p = values["p"]
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise InvalidInput("parameter 'p' must be an integer ≥ 1")
    coverage = values["coverage_m"]
    if isinstance(coverage, bool) or not isinstance(coverage, int) or coverage <= 0:
        raise InvalidInput("parameter 'coverage_m' must be an integer number of metres > 0")
    vehicles = frozenset(v.strip() for v in _text(values, "ev_vehicles").split(",") if v.strip())
    return Parameters(
        zones_dataset=_text(values, "zones_dataset"),
        p=p,
        coverage_m=coverage,
        candidates=_candidates(values),
        ev_vehicles=vehicles,
        demand_end=_choice(values, "demand_end", DEMAND_ENDS),
        weight=_choice(values, "weight", WEIGHTS),
    )
