"""Inputs and parameters the program refuses, and how it says so: the
message names the dataset and column (or the parameter), never a value."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mobility_ev.errors import InvalidInput
from mobility_ev.main import run

OWNERS = {"zones": "p1", "trips-1": "p1", "trips-2": "p2"}


def good_inputs() -> dict[str, pd.DataFrame]:
    zones = pd.DataFrame({"zone_id": [11, 12, 13, 14], "x_km": [0.0, 3, 6, 9], "y_km": 0.0})
    rng = np.random.default_rng(1)

    def trips(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "trip_id": [f"t{i}" for i in range(n)],
                "origin_zone": rng.choice([11, 12, 13, 14], n),
                "destination_zone": rng.choice([11, 12, 13, 14], n),
                "departure_hour": rng.integers(0, 24, n),
                "mode": "car",
                "distance_km": rng.uniform(0, 12, n).round(2),
                "vehicle": rng.choice(["ev", "ice"], n),
            }
        )

    return {"zones": zones, "trips-1": trips(80), "trips-2": trips(60)}


def run_with(inputs: dict[str, pd.DataFrame], **parameters: Any) -> dict[str, Any]:
    context = types.SimpleNamespace(min_group_size=5, owners=OWNERS)
    return run(inputs, {"p": 2, **parameters}, context)


def test_good_inputs_run() -> None:
    out = run_with(good_inputs())
    assert set(out) == {"od_matrix", "od_totals", "sites", "objectives", "own_zone_trips", "meta"}


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda t: t.drop(columns=[column])


def _set(column: str, value: Any, rows: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table = table.copy()
        if rows == 0:
            table[column] = value
        else:
            table[column] = table[column].astype(object)
            table.loc[table.index[:rows], column] = value
            table[column] = table[column].infer_objects()
        return table

    return change


CASES = [
    ("trips-2", _drop("destination_zone"), "destination_zone", "has no column"),
    ("trips-1", _drop("vehicle"), "vehicle", "has no column"),
    ("zones", _drop("x_km"), "x_km", "has no column"),
    ("trips-2", _set("origin_zone", 11.5), "origin_zone", "must hold integers"),
    ("trips-2", _set("origin_zone", "north"), "origin_zone", "must hold integers"),
    ("trips-1", _set("destination_zone", np.nan), "destination_zone", "missing values"),
    ("trips-1", _set("distance_km", -1.0), "distance_km", "negative"),
    ("trips-1", _set("distance_km", "far"), "distance_km", "must be numeric"),
    ("trips-1", _set("distance_km", np.inf), "distance_km", "infinite"),
    ("trips-2", _set("origin_zone", 99), "origin_zone", "not a zone_id"),
    ("trips-2", _set("destination_zone", -12), "destination_zone", "not a zone_id"),
    ("trips-1", _set("departure_hour", 24), "departure_hour", "outside 0–23"),
    ("trips-1", _set("vehicle", None), "vehicle", "missing values"),
    ("trips-1", _set("vehicle", 1.5, rows=0), "vehicle", "text labels"),
    ("zones", _set("zone_id", 11, rows=2), "zone_id", "unique"),
    ("zones", _set("y_km", "high"), "y_km", "must be numeric"),
]


@pytest.mark.parametrize(("dataset", "change", "column", "rule"), CASES)
def test_bad_column_is_refused_by_name(
    dataset: str, change: Callable[[pd.DataFrame], pd.DataFrame], column: str, rule: str
) -> None:
    inputs = good_inputs()
    inputs[dataset] = change(inputs[dataset])
    with pytest.raises(InvalidInput) as caught:
        run_with(inputs)
    message = str(caught.value)
    assert f"dataset {dataset!r}" in message
    assert repr(column) in message
    assert rule in message


@pytest.mark.parametrize("dataset", ["trips-1", "trips-2", "zones"])
def test_empty_dataset_is_refused(dataset: str) -> None:
    inputs = good_inputs()
    inputs[dataset] = inputs[dataset].iloc[:0]
    with pytest.raises(InvalidInput, match=f"dataset '{dataset}' is empty"):
        run_with(inputs)


def test_headerless_file_is_refused_as_empty() -> None:
    inputs = good_inputs()
    inputs["trips-2"] = pd.DataFrame()
    with pytest.raises(InvalidInput, match="dataset 'trips-2' is empty"):
        run_with(inputs)


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        ({"p": 5}, "parameter 'p'"),  # four zones, all candidates
        ({"p": 3, "candidates": "11,12"}, "parameter 'p'"),
        ({"p": 0}, "parameter 'p'"),
        ({"p": True}, "parameter 'p'"),
        ({"candidates": "11,77"}, "parameter 'candidates'"),
        ({"candidates": "11,x"}, "parameter 'candidates'"),
        ({"candidates": "11,11,12"}, "parameter 'candidates'"),
        ({"coverage_m": 0}, "parameter 'coverage_m'"),
        ({"coverage_m": 2.5}, "parameter 'coverage_m'"),
        ({"demand_end": "middle"}, "parameter 'demand_end'"),
        ({"weight": "kg"}, "parameter 'weight'"),
        ({"zones_dataset": "regions"}, "parameter 'zones_dataset'"),
        ({"colour": "red"}, "unknown parameter(s) colour"),
    ],
)
def test_bad_parameter_is_refused_by_name(parameters: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        run_with(good_inputs(), **parameters)
    assert needle in str(caught.value)


def test_p_larger_than_candidates_names_both_parameters() -> None:
    with pytest.raises(InvalidInput) as caught:
        run_with(good_inputs(), p=3, candidates="12,14")
    assert "parameter 'p'" in str(caught.value)
    assert "'candidates'" in str(caught.value)


def test_messages_carry_no_values() -> None:
    inputs = good_inputs()
    inputs["trips-1"] = _set("origin_zone", 4242)(inputs["trips-1"])
    with pytest.raises(InvalidInput) as caught:
        run_with(inputs)
    assert "4242" not in str(caught.value)
