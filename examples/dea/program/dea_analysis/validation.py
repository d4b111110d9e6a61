"""The job's parameters and the retailers' site tables, checked before any LP.

Every rejection raises :class:`InvalidInput`, whose message leaves the
enclave in the job's status: it names the parameter, dataset, column and
rule, and counts offending sites, but never quotes a value from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from dea_analysis.models import Array, Orientation, Returns

SITE = "site"
OWNER = "_owner"
PARAMETERS = ("inputs", "outputs", "returns", "orientation", "slacks", "peer_weights")
RETURNS: dict[str, tuple[Returns, ...]] = {"crs": ("crs",), "vrs": ("vrs",), "both": ("crs", "vrs")}
ORIENTATIONS: tuple[Orientation, ...] = ("input", "output")


class InvalidInput(ValueError):
    """The inputs or parameters do not fit a DEA run."""


@dataclass(frozen=True)
class Parameters:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    returns: tuple[Returns, ...]
    orientation: Orientation
    slacks: bool
    peer_weights: bool


@dataclass(frozen=True)
class Sites:
    """Every retailer's sites pooled, datasets in sorted order."""

    dataset: list[str]
    site: list[str]
    owner: list[str]
    inputs: Array  # (n, m)
    outputs: Array  # (n, s)


def _columns(parameters: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = parameters.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"parameter {name!r} must name the DEA {name} as comma-separated column names"
        )
    names = tuple(part.strip() for part in value.split(","))
    if any(not part for part in names):
        raise InvalidInput(f"parameter {name!r} has an empty column name")
    if len(set(names)) != len(names):
        raise InvalidInput(f"parameter {name!r} names a column twice")
    if SITE in names or OWNER in names:
        raise InvalidInput(f"parameter {name!r} names {SITE!r} or {OWNER!r}, which are not data")
    return names


def _flag(parameters: Mapping[str, Any], name: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name!r} must be a boolean")
    return value


def parse_parameters(parameters: Mapping[str, Any]) -> Parameters:
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMETERS)})"
        )
    inputs, outputs = _columns(parameters, "inputs"), _columns(parameters, "outputs")
    both = sorted(set(inputs) & set(outputs))
    if both:
        raise InvalidInput(f"column(s) {', '.join(both)} are named as both inputs and outputs")
    returns = parameters.get("returns", "both")
    if returns not in RETURNS:
        raise InvalidInput("parameter 'returns' must be 'crs', 'vrs' or 'both'")
    orientation = parameters.get("orientation", "input")
    if orientation not in ORIENTATIONS:
        raise InvalidInput("parameter 'orientation' must be 'input' or 'output'")
    return Parameters(
        inputs=inputs,
        outputs=outputs,
        returns=RETURNS[returns],
        orientation=orientation,
        slacks=_flag(parameters, "slacks", False),
        peer_weights=_flag(parameters, "peer_weights", True),
    )


def _quantity(table: pd.DataFrame, dataset: str, column: str, role: str) -> Array:
    if column not in table.columns:
        raise InvalidInput(f"dataset {dataset!r} has no column {column!r} (a DEA {role})")
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_numeric_dtype(series):
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} is not numeric (its type is {series.dtype}); "
            f"DEA {role}s are quantities"
        )
    values: Array = series.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = int(np.isnan(values).sum())
    if missing:
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r}: {missing} missing value(s); "
            f"every site needs every DEA {role}"
        )
    infinite = int(np.isinf(values).sum())
    if infinite:
        raise InvalidInput(f"dataset {dataset!r} column {column!r}: {infinite} infinite value(s)")
    negative = int((values < 0).sum())
    if negative:
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r}: {negative} negative value(s); "
            f"DEA {role}s must be >= 0"
        )
    if not (values > 0).any():
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} is zero for every site; a DEA {role} "
            "that is never positive was not recorded"
        )
    return values


def _site_ids(table: pd.DataFrame, dataset: str) -> list[str]:
    if SITE not in table.columns:
        raise InvalidInput(f"dataset {dataset!r} has no column {SITE!r} (the site id)")
    column = table[SITE]
    missing = int(column.isna().sum())
    if missing:
        raise InvalidInput(f"dataset {dataset!r} column {SITE!r}: {missing} missing site id(s)")
    ids = [str(v).strip() for v in column]
    if any(not v for v in ids):
        raise InvalidInput(f"dataset {dataset!r} column {SITE!r}: empty site id(s)")
    duplicates = len(ids) - len(set(ids))
    if duplicates:
        raise InvalidInput(
            f"dataset {dataset!r} column {SITE!r}: {duplicates} duplicate site id(s)"
        )
    return ids


def _semipositive(values: Array, dataset: str, columns: tuple[str, ...], role: str) -> None:
    # A site with no positive input would be a free lunch (every CRS output
    # score unbounded); one with no positive output has nothing to score.
    dead = int((~(values > 0).any(axis=1)).sum())
    if dead:
        named = ", ".join(repr(c) for c in columns)
        raise InvalidInput(
            f"dataset {dataset!r} column(s) {named}: {dead} site(s) with no positive {role}; "
            f"DEA needs at least one positive {role} per site"
        )


def pool_sites(
    inputs: Mapping[str, pd.DataFrame], parameters: Parameters, owners: Mapping[str, str]
) -> Sites:
    if not inputs:
        raise InvalidInput("no input datasets")
    datasets: list[str] = []
    sites: list[str] = []
    owner_ids: list[str] = []
    xs: list[Array] = []
    ys: list[Array] = []
    for dataset in sorted(inputs):
        table = inputs[dataset]
        if len(table) == 0:
            raise InvalidInput(f"dataset {dataset!r} has no sites (no rows)")
        owner = owners.get(dataset)
        if not owner:
            raise InvalidInput(f"dataset {dataset!r} has no owner in the run's context")
        ids = _site_ids(table, dataset)
        x = np.column_stack([_quantity(table, dataset, c, "input") for c in parameters.inputs])
        y = np.column_stack([_quantity(table, dataset, c, "output") for c in parameters.outputs])
        _semipositive(x, dataset, parameters.inputs, "input")
        _semipositive(y, dataset, parameters.outputs, "output")
        datasets += [dataset] * len(ids)
        sites += ids
        owner_ids += [owner] * len(ids)
        xs.append(x)
        ys.append(y)
    return Sites(
        dataset=datasets,
        site=sites,
        owner=owner_ids,
        inputs=np.vstack(xs),
        outputs=np.vstack(ys),
    )
