"""Checks each hospital's long-format table and stacks them into one cohort.

A dataset has one row per patient and hour: ``patient`` (an id, unique
within the dataset), ``hour`` (0..23), one numeric column per variable
(missing when not measured) and ``target`` (0 or 1, the same on every row
of a patient). Hours without a row count as hours where nothing was
measured. Rejections name the dataset and the column, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ehr_lstm.errors import InvalidInput

HOURS = 24
PATIENT, HOUR, TARGET = "patient", "hour", "target"


@dataclass(frozen=True)
class Cohort:
    """All patients of all datasets, in dataset order then sorted patient id."""

    datasets: tuple[str, ...]
    site: np.ndarray  # (n,) index into datasets
    patients: tuple[str, ...]
    values: np.ndarray  # (n, HOURS, variables) float64, NaN where not measured
    target: np.ndarray  # (n,) int64, 0 or 1
    variables: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.patients)


def _reject(dataset: str, column: str, rule: str) -> InvalidInput:
    return InvalidInput(f"dataset {dataset!r} column {column!r}: {rule}")


def _integral(table: pd.DataFrame, dataset: str, column: str) -> np.ndarray:
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_numeric_dtype(series):
        raise _reject(dataset, column, "must hold whole numbers (it is not numeric)")
    values: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = int(np.isnan(values).sum())
    if missing:
        raise _reject(dataset, column, f"{missing} missing value(s); every row needs one")
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise _reject(dataset, column, "must hold whole numbers")
    return values.astype(np.int64)


def _measurements(table: pd.DataFrame, dataset: str, column: str) -> np.ndarray:
    series = table[column]
    if ptypes.is_bool_dtype(series) or not ptypes.is_numeric_dtype(series):
        raise _reject(
            dataset, column, "is not numeric; measurements are numbers or empty when not measured"
        )
    values: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = int(np.isinf(values).sum())
    if infinite:
        raise _reject(dataset, column, f"{infinite} infinite value(s)")
    return values


def check_dataset(
    dataset: str, table: pd.DataFrame, variables: tuple[str, ...]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """One dataset's sorted patient ids, values (patients, HOURS, variables)
    and per-patient targets."""
    if len(table) == 0:
        raise _reject(dataset, PATIENT, "no patients (the dataset has no rows)")
    needed = (PATIENT, HOUR, *variables, TARGET)
    missing_columns = [c for c in needed if c not in table.columns]
    if missing_columns:
        names = ", ".join(repr(c) for c in missing_columns)
        raise InvalidInput(
            f"dataset {dataset!r} has no column {names} (needed: {', '.join(needed)})"
        )
    ids = table[PATIENT]
    n_missing = int(ids.isna().sum())
    if n_missing:
        raise _reject(dataset, PATIENT, f"{n_missing} row(s) without a patient id")
    hour = _integral(table, dataset, HOUR)
    if np.any((hour < 0) | (hour >= HOURS)):
        raise _reject(dataset, HOUR, f"hours must be 0..{HOURS - 1}")
    target = _integral(table, dataset, TARGET)
    if np.any((target != 0) & (target != 1)):
        raise _reject(dataset, TARGET, "labels must be 0 or 1")
    columns = [_measurements(table, dataset, v) for v in variables]

    codes, uniques = pd.factorize(ids.astype(str), sort=True)
    n = len(uniques)
    codes = np.asarray(codes, dtype=np.int64)
    slot = codes * HOURS + hour
    if len(np.unique(slot)) != len(slot):
        raise _reject(dataset, HOUR, "a patient has two rows for the same hour")
    per_patient = np.full(n, -1, dtype=np.int64)
    per_patient[codes] = target
    if np.any(per_patient[codes] != target):
        raise _reject(dataset, TARGET, "a patient has conflicting labels on different rows")

    values = np.full((n * HOURS, len(variables)), np.nan)
    if variables:
        values[slot] = np.column_stack(columns)
    patients = tuple(str(u) for u in uniques)
    return patients, values.reshape(n, HOURS, len(variables)), per_patient


def build_cohort(inputs: Mapping[str, pd.DataFrame], variables: tuple[str, ...]) -> Cohort:
    if not inputs:
        raise InvalidInput("no input datasets")
    datasets = tuple(sorted(inputs))
    patients: list[str] = []
    values, targets, sites = [], [], []
    for i, dataset in enumerate(datasets):
        ids, v, y = check_dataset(dataset, inputs[dataset], variables)
        patients.extend(ids)
        values.append(v)
        targets.append(y)
        sites.append(np.full(len(ids), i, dtype=np.int64))
    stacked = np.concatenate(values)
    for j, variable in enumerate(variables):
        if np.all(np.isnan(stacked[:, :, j])):
            raise InvalidInput(
                f"column {variable!r} has no measurement in any dataset; drop it from "
                "parameter 'variables'"
            )
    return Cohort(
        datasets=datasets,
        site=np.concatenate(sites),
        patients=tuple(patients),
        values=stacked,
        target=np.concatenate(targets),
        variables=variables,
    )
