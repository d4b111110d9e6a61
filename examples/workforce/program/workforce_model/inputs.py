"""Checking each organisation's employee records and pooling them.

One input dataset is one organisation. Rows with a missing value in a model
column are left out (and counted); anything else that does not fit the model
is refused with :class:`InvalidInput`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from workforce_model.errors import InvalidInput

EMPLOYEE = "employee"
TEAM = "team"
STRUCTURE = "team_structure"
PERFORMANCE = "performance"
TEXT_COLUMNS = (EMPLOYEE, TEAM, STRUCTURE)
OWNER = "_owner"
ORGANISATION = "_organisation"
# Ranges a covariate must respect when it is in the model; others need only be finite.
BOUNDS: Mapping[str, tuple[float | None, float | None, str]] = {
    "tenure_years": (0.0, None, "tenure must be ≥ 0"),
    "remote_share": (0.0, 1.0, "a remote share lies between 0 and 1"),
}


@dataclass(frozen=True)
class Pooled:
    """Every organisation's complete rows: ``_owner``, ``_organisation`` (the
    dataset id), employee, team, team_structure (text), performance and the
    covariates."""

    table: pd.DataFrame
    incomplete_rows: Mapping[str, int]  # dataset id → rows left out for missing values


def _numeric(table: pd.DataFrame, dataset: str, column: str) -> pd.Series:
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_numeric_dtype(series):
        raise InvalidInput(
            f"dataset {dataset!r} column {column!r} is not numeric (its type is {series.dtype})"
        )
    values = series.astype("float64")
    infinite = int(np.isinf(values.to_numpy()).sum())
    if infinite:
        raise InvalidInput(f"dataset {dataset!r} column {column!r}: {infinite} infinite values")
    low, high, rule = BOUNDS.get(column, (None, None, ""))
    if low is not None:
        below = int((values < low).sum())
        if below:
            raise InvalidInput(
                f"dataset {dataset!r} column {column!r}: {below} values below {low:g}; {rule}"
            )
    if high is not None:
        above = int((values > high).sum())
        if above:
            raise InvalidInput(
                f"dataset {dataset!r} column {column!r}: {above} values above {high:g}; {rule}"
            )
    return values


def _text(series: pd.Series) -> pd.Series:
    # A numeric structure (span of control) or numeric team ids are labels here.
    return series.map(lambda v: None if pd.isna(v) else str(v).strip() or None)


def check_dataset(
    dataset: str, table: pd.DataFrame, owner: str, covariates: tuple[str, ...]
) -> tuple[pd.DataFrame, int]:
    """One organisation's complete rows in the pooled layout, and how many
    rows were incomplete."""
    if len(table) == 0:
        raise InvalidInput(
            f"dataset {dataset!r} column {EMPLOYEE!r}: no employees (the table has no rows)"
        )
    needed = (*TEXT_COLUMNS, PERFORMANCE, *covariates)
    for column in needed:
        if column not in table.columns:
            raise InvalidInput(
                f"dataset {dataset!r} has no column {column!r} (the model needs "
                f"{', '.join(needed)})"
            )
    part = pd.DataFrame({c: _text(table[c]) for c in TEXT_COLUMNS})
    for column in (PERFORMANCE, *covariates):
        part[column] = _numeric(table, dataset, column)
    for column in needed:
        if part[column].isna().all():
            raise InvalidInput(f"dataset {dataset!r} column {column!r}: no values (all missing)")
    complete = part.notna().all(axis=1)
    part = part[complete].reset_index(drop=True)
    if len(part) == 0:
        raise InvalidInput(
            f"dataset {dataset!r}: no employee has values in every column the model needs "
            f"({', '.join(needed)})"
        )
    duplicates = int(part[EMPLOYEE].duplicated().sum())
    if duplicates:
        raise InvalidInput(
            f"dataset {dataset!r} column {EMPLOYEE!r}: {duplicates} repeated employee ids; "
            "the model needs one row per employee"
        )
    mixed = int((part.groupby(TEAM)[STRUCTURE].nunique() > 1).sum())
    if mixed:
        raise InvalidInput(
            f"dataset {dataset!r} column {STRUCTURE!r}: {mixed} team(s) with more than one "
            "structure; the structure is a property of the team"
        )
    part.insert(0, ORGANISATION, dataset)
    part.insert(0, OWNER, owner)
    return part, int((~complete).sum())


def pool_inputs(
    inputs: Mapping[str, pd.DataFrame], owners: Mapping[str, str], covariates: tuple[str, ...]
) -> Pooled:
    if not inputs:
        raise InvalidInput("no input datasets: the model needs one per organisation")
    parts = []
    incomplete: dict[str, int] = {}
    for dataset in sorted(inputs):
        owner = owners.get(dataset)
        if not owner:
            raise InvalidInput(f"dataset {dataset!r} has no owner in the run's context")
        part, incomplete[dataset] = check_dataset(dataset, inputs[dataset], owner, covariates)
        parts.append(part)
    return Pooled(pd.concat(parts, ignore_index=True), incomplete)
