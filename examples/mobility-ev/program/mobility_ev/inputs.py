"""Checking the zone table and each agency's trips, and pooling the trips.

Anything that does not fit is refused with :class:`InvalidInput`; messages
name the dataset, the column and the rule, and at most how many rows broke
it, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from mobility_ev.errors import InvalidInput

ZONE_COLUMNS = ("zone_id", "x_km", "y_km")
TRIP_COLUMNS = (
    "trip_id",
    "origin_zone",
    "destination_zone",
    "departure_hour",
    "mode",
    "distance_km",
    "vehicle",
)
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Zones:
    ids: IntArray  # sorted zone ids; a zone's index is its position here
    xy: FloatArray  # centroid coordinates in km, one row per zone

    def index(self, zone_ids: IntArray) -> IntArray:
        return np.searchsorted(self.ids, zone_ids).astype(np.int64)


@dataclass(frozen=True)
class Trips:
    """Every agency's trips, zones as indices into :class:`Zones`."""

    owner: IntArray  # index into ``agencies``
    origin: IntArray
    destination: IntArray
    distance_km: FloatArray
    vehicle: npt.NDArray[np.object_]
    agencies: tuple[tuple[str, str], ...]  # (dataset id, owner party id), sorted by dataset

    def parties(self) -> list[tuple[str, npt.NDArray[np.bool_]]]:
        """Each owner party (sorted) and its trips: a party that gave several
        datasets knows all of them, so disclosure is judged per party."""
        owners = sorted({owner for _dataset, owner in self.agencies})
        return [
            (
                owner,
                np.isin(self.owner, [a for a, (_ds, o) in enumerate(self.agencies) if o == owner]),
            )
            for owner in owners
        ]


def _require(table: pd.DataFrame, dataset: str, columns: tuple[str, ...]) -> None:
    if len(table) == 0:
        raise InvalidInput(f"dataset {dataset!r} is empty (no rows)")
    for column in columns:
        if column not in table.columns:
            raise InvalidInput(f"dataset {dataset!r} has no column {column!r}")


def _no_missing(table: pd.DataFrame, dataset: str, column: str) -> None:
    missing = int(table[column].isna().sum())
    if missing:
        raise InvalidInput(f"dataset {dataset!r} column {column!r}: {missing} missing values")


def _integers(table: pd.DataFrame, dataset: str, column: str) -> IntArray:
    _no_missing(table, dataset, column)
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_integer_dtype(series):
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} must hold integers (its type is {series.dtype})"
        )
    return np.asarray(series.to_numpy(dtype=np.int64), dtype=np.int64)


def _numbers(table: pd.DataFrame, dataset: str, column: str) -> FloatArray:
    _no_missing(table, dataset, column)
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_numeric_dtype(series):
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} must be numeric (its type is {series.dtype})"
        )
    values = np.asarray(series.to_numpy(dtype=np.float64), dtype=np.float64)
    infinite = int((~np.isfinite(values)).sum())
    if infinite:
        raise InvalidInput(f"dataset {dataset!r} column {column!r}: {infinite} infinite values")
    return values


def _labels(table: pd.DataFrame, dataset: str, column: str) -> npt.NDArray[np.object_]:
    _no_missing(table, dataset, column)
    series = table[column]
    if not (ptypes.is_string_dtype(series) or ptypes.is_object_dtype(series)):
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} must hold text labels "
            f"(its type is {series.dtype})"
        )
    return np.asarray(series.astype(str).str.strip().to_numpy(dtype=object), dtype=object)


def read_zones(table: pd.DataFrame, dataset: str) -> Zones:
    _require(table, dataset, ZONE_COLUMNS)
    ids = _integers(table, dataset, "zone_id")
    if len(np.unique(ids)) != len(ids):
        raise InvalidInput(f"dataset {dataset!r} column 'zone_id': zone ids must be unique")
    xy = np.column_stack([_numbers(table, dataset, c) for c in ("x_km", "y_km")])
    order = np.argsort(ids, kind="stable")
    return Zones(ids=ids[order], xy=xy[order])


def _zone_indices(table: pd.DataFrame, dataset: str, column: str, zones: Zones) -> IntArray:
    values = _integers(table, dataset, column)
    index = np.minimum(zones.index(values), len(zones.ids) - 1)
    unknown = int((zones.ids[index] != values).sum())
    if unknown:
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r}: {unknown} values are not a zone_id "
            f"of the zone table"
        )
    return index


def read_trips(
    tables: Mapping[str, pd.DataFrame], owners: Mapping[str, str], zones: Zones
) -> Trips:
    if not tables:
        raise InvalidInput("no trip datasets: the job needs at least one agency's trips")
    parts: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("owner", "origin", "destination", "distance", "vehicle")
    }
    agencies: list[tuple[str, str]] = []
    for number, (dataset, table) in enumerate(sorted(tables.items())):
        _require(table, dataset, TRIP_COLUMNS)
        owner = owners.get(dataset)
        if not owner:
            raise InvalidInput(f"dataset {dataset!r} has no owner in the run's context")
        origin = _zone_indices(table, dataset, "origin_zone", zones)
        destination = _zone_indices(table, dataset, "destination_zone", zones)
        hour = _integers(table, dataset, "departure_hour")
        outside = int(((hour < 0) | (hour > 23)).sum())
        if outside:
            raise InvalidInput(
                f"dataset {dataset!r} column 'departure_hour': {outside} values outside 0–23"
            )
        distance = _numbers(table, dataset, "distance_km")
        negative = int((distance < 0).sum())
        if negative:
            raise InvalidInput(
                f"dataset {dataset!r} column 'distance_km': {negative} negative values; "
                "distances must be ≥ 0"
            )
        _labels(table, dataset, "mode")
        _no_missing(table, dataset, "trip_id")
        parts["owner"].append(np.full(len(table), number, dtype=np.int64))
        parts["origin"].append(origin)
        parts["destination"].append(destination)
        parts["distance"].append(distance)
        parts["vehicle"].append(_labels(table, dataset, "vehicle"))
        agencies.append((dataset, owner))
    return Trips(
        owner=np.concatenate(parts["owner"]).astype(np.int64),
        origin=np.concatenate(parts["origin"]).astype(np.int64),
        destination=np.concatenate(parts["destination"]).astype(np.int64),
        distance_km=np.concatenate(parts["distance"]).astype(np.float64),
        vehicle=np.concatenate(parts["vehicle"]).astype(object),
        agencies=tuple(agencies),
    )
