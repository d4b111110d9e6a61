"""Pooled descriptive statistics by group, with small groups suppressed.

Entry point ``pooled_stats.main:run`` (docs/programs.md). Every input table
is one party's dataset; the program pools them, groups the records by the
``group_by`` column and describes the numeric ``value_column`` per group:

- ``summary`` (table): one row per group with at least ``min_group_size``
  records: ``count`` (records), ``<value>_mean``, ``<value>_std`` (sample
  standard deviation), ``<value>_min``, ``<value>_max`` over the non-missing
  values, and ``readmitted_mean`` when every input has a ``readmitted``
  column;
- ``per_owner`` (table): ``_owner`` (party id), the group and ``count``,
  one row per owner and group with at least ``min_group_size`` records, so
  that ``view: own`` gives each party its own counts;
- ``meta`` (dict): rows per dataset, groups published and suppressed,
  owner cells suppressed, rows without a group.

Groups (and owner cells) with fewer than ``min_group_size`` records are
dropped, not blanked. Error messages name datasets and columns, never values:
they leave the enclave in the job's status.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api import types as ptypes

DEFAULT_GROUP_BY = "ward"
DEFAULT_VALUE_COLUMN = "length_of_stay_days"
RATE_COLUMN = "readmitted"
OWNER = "_owner"
PARAMETERS = ("group_by", "value_column")


class InvalidInput(ValueError):
    """The inputs or parameters do not fit this program (the enclave reports
    an exception of this class name as a rejection of the inputs)."""


def _text_parameter(parameters: dict[str, Any], name: str, default: str) -> str:
    value = parameters.get(name, default)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"parameter {name!r} must be a non-empty column name (a string)")
    return value


def _check_numeric(table: pd.DataFrame, dataset: str, column: str) -> pd.Series:
    series = table[column]
    if ptypes.is_bool_dtype(series):
        return series.astype("float64")
    if not ptypes.is_numeric_dtype(series):
        raise InvalidInput(
            f"column {column!r} of dataset {dataset!r} is not numeric (its type is {series.dtype})"
        )
    return series.astype("float64")


def run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], context: Any
) -> dict[str, pd.DataFrame | dict[str, Any]]:
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMETERS)})"
        )
    group_by = _text_parameter(parameters, "group_by", DEFAULT_GROUP_BY)
    value = _text_parameter(parameters, "value_column", DEFAULT_VALUE_COLUMN)
    k = int(context.min_group_size)
    if not inputs:
        raise InvalidInput("no input datasets")
    with_rate = [ds for ds, t in inputs.items() if RATE_COLUMN in t.columns]
    use_rate = len(with_rate) == len(inputs)
    if with_rate and not use_rate:
        missing = sorted(set(inputs) - set(with_rate))
        raise InvalidInput(
            f"column {RATE_COLUMN!r} is in dataset(s) {', '.join(sorted(with_rate))} but not in "
            f"{', '.join(missing)}: every input must have it, or none"
        )

    parts: list[pd.DataFrame] = []
    rows: dict[str, int] = {}
    for dataset, table in sorted(inputs.items()):
        if len(table) == 0:
            raise InvalidInput(f"dataset {dataset!r} is empty")
        for column in (group_by, value):
            if column not in table.columns:
                raise InvalidInput(f"dataset {dataset!r} has no column {column!r}")
        owner = context.owners.get(dataset)
        if not owner:
            raise InvalidInput(f"dataset {dataset!r} has no owner in the run's context")
        # Internal column names: group_by may name the value or rate column too.
        part = pd.DataFrame(
            {
                OWNER: owner,
                "_group": table[group_by],
                "_value": _check_numeric(table, dataset, value),
            }
        )
        if use_rate:
            part["_rate"] = _check_numeric(table, dataset, RATE_COLUMN)
        parts.append(part)
        rows[dataset] = len(table)
    pooled = pd.concat(parts, ignore_index=True)
    grouped_rows = pooled[pooled["_group"].notna()]

    aggregations: dict[str, tuple[str, str]] = {
        "count": ("_value", "size"),
        f"{value}_mean": ("_value", "mean"),
        f"{value}_std": ("_value", "std"),
        f"{value}_min": ("_value", "min"),
        f"{value}_max": ("_value", "max"),
    }
    if use_rate:
        aggregations[f"{RATE_COLUMN}_mean"] = ("_rate", "mean")
    summary = grouped_rows.groupby("_group", sort=True).agg(**aggregations).reset_index()
    kept = summary[summary["count"] >= k].reset_index(drop=True)
    kept = kept.rename(columns={"_group": group_by})

    cells = grouped_rows.groupby([OWNER, "_group"], sort=True).size().reset_index(name="count")
    kept_cells = cells[cells["count"] >= k].reset_index(drop=True)
    kept_cells = kept_cells.rename(columns={"_group": group_by})

    meta: dict[str, Any] = {
        "group_by": group_by,
        "value_column": value,
        "min_group_size": k,
        "rows": rows,
        "rows_without_group": int(len(pooled) - len(grouped_rows)),
        "groups": len(kept),
        "suppressed_groups": int(len(summary) - len(kept)),
        "suppressed_owner_cells": int(len(cells) - len(kept_cells)),
    }
    return {"summary": kept, "per_owner": kept_cells, "meta": meta}
