"""Bad inputs and parameters are rejected with InvalidInput, naming the dataset
and the column (or parameter) and never a value."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType, SimpleNamespace
from typing import Any

import ehr_lstm_data
import numpy as np
import pandas as pd
import pytest
from ehr_lstm import main
from ehr_lstm.errors import InvalidInput
from ehr_lstm.inputs import HOURS, build_cohort
from ehr_lstm.parameters import DEFAULT_VARIABLES, Settings, parse

OWNERS = MappingProxyType({f"ehr-{i}": f"sha256:{i}" for i in (1, 2, 3)})


def _inputs(scale: float = 0.1, seed: int = 1) -> dict[str, pd.DataFrame]:
    sites = ehr_lstm_data.generate(seed=seed, scale=scale)
    return {f"ehr-{i + 1}": s.table.copy() for i, s in enumerate(sites)}


def _run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any] | None = None, k: int = 5
) -> dict[str, Any]:
    context = SimpleNamespace(min_group_size=k, owners=OWNERS)
    return main.run(inputs, parameters or {}, context)


def _as_text(table: pd.DataFrame, column: str) -> None:
    table[column] = table[column].astype(object)


def _drop_column(t: pd.DataFrame) -> pd.DataFrame:
    return t.drop(columns=["spo2"])


def _text_in_vital(t: pd.DataFrame) -> pd.DataFrame:
    _as_text(t, "heart_rate")
    t.loc[5, "heart_rate"] = "tachy"
    return t


def _bool_vital(t: pd.DataFrame) -> pd.DataFrame:
    t["sbp"] = t["sbp"] > 120
    return t


def _infinite_lab(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[3, "lactate"] = np.inf
    return t


def _hour_too_large(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[t["hour"] == 23, "hour"] = 24
    return t


def _negative_hour(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[0, "hour"] = -1
    return t


def _fractional_hour(t: pd.DataFrame) -> pd.DataFrame:
    t["hour"] = t["hour"].astype(float)
    t.loc[4, "hour"] = 3.5
    return t


def _missing_hour(t: pd.DataFrame) -> pd.DataFrame:
    t["hour"] = t["hour"].astype(float)
    t.loc[4, "hour"] = np.nan
    return t


def _duplicate_hour(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[1, "hour"] = 0
    return t


def _label_two(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[t["patient"] == t["patient"].iloc[0], "target"] = 2
    return t


def _label_missing(t: pd.DataFrame) -> pd.DataFrame:
    t["target"] = t["target"].astype(float)
    t.loc[7, "target"] = np.nan
    return t


def _conflicting_labels(t: pd.DataFrame) -> pd.DataFrame:
    first = t["patient"].iloc[0]
    t.loc[(t["patient"] == first) & (t["hour"] == 12), "target"] = 1 - t.loc[0, "target"]
    return t


def _missing_patient(t: pd.DataFrame) -> pd.DataFrame:
    t.loc[2, "patient"] = None
    return t


def _no_rows(t: pd.DataFrame) -> pd.DataFrame:
    # What pandas makes of a CSV file with only its header line.
    return pd.DataFrame({c: pd.Series(dtype=object) for c in t.columns})


def _no_header(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame()


CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str, str]] = [
    ("missing column", _drop_column, "spo2", "no column"),
    ("non-numeric vital", _text_in_vital, "heart_rate", "not numeric"),
    ("boolean vital", _bool_vital, "sbp", "not numeric"),
    ("infinite lab", _infinite_lab, "lactate", "infinite"),
    ("hour 24", _hour_too_large, "hour", "0..23"),
    ("hour -1", _negative_hour, "hour", "0..23"),
    ("fractional hour", _fractional_hour, "hour", "whole numbers"),
    ("missing hour", _missing_hour, "hour", "missing"),
    ("two rows for one hour", _duplicate_hour, "hour", "same hour"),
    ("label 2", _label_two, "target", "0 or 1"),
    ("missing label", _label_missing, "target", "missing"),
    ("conflicting labels", _conflicting_labels, "target", "conflicting"),
    ("missing patient id", _missing_patient, "patient", "without a patient id"),
    ("site with no patients", _no_rows, "patient", "no patients"),
    ("empty file", _no_header, "patient", "no patients"),
]


@pytest.mark.parametrize(("case", "corrupt", "column", "rule"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_naming_dataset_and_column(
    case: str, corrupt: Callable[[pd.DataFrame], pd.DataFrame], column: str, rule: str
) -> None:
    inputs = _inputs()
    inputs["ehr-2"] = corrupt(inputs["ehr-2"])
    with pytest.raises(InvalidInput) as raised:
        _run(inputs)
    message = str(raised.value)
    assert "'ehr-2'" in message, case
    assert f"'{column}'" in message, case
    assert rule in message, case
    assert "tachy" not in message
    assert "RS-0" not in message  # no patient id leaves the enclave


def test_a_variable_never_measured_anywhere_is_rejected() -> None:
    inputs = _inputs()
    for table in inputs.values():
        table["wbc"] = np.nan
    with pytest.raises(InvalidInput, match="column 'wbc' has no measurement in any dataset"):
        _run(inputs)


def test_a_variable_missing_at_one_site_only_is_fine() -> None:
    # Lakeside (ehr-3) measures no lactate at all: that is a site difference.
    inputs = _inputs(scale=0.3)
    assert inputs["ehr-3"]["lactate"].isna().all()
    cohort = build_cohort(inputs, DEFAULT_VARIABLES)
    assert np.isnan(cohort.values[cohort.site == 2][:, :, DEFAULT_VARIABLES.index("lactate")]).all()


def test_too_few_positive_patients_for_training_is_rejected() -> None:
    inputs = _inputs()
    with pytest.raises(InvalidInput) as raised:
        _run(inputs, k=40)
    message = str(raised.value)
    assert "column 'target'" in message
    assert "fewer than 40 positive patients" in message


def test_missing_hours_count_as_unmeasured_and_row_order_does_not_matter() -> None:
    inputs = _inputs()
    table = inputs["ehr-1"]
    shuffled = table.sample(frac=1.0, random_state=0)
    gappy = shuffled[shuffled["hour"] != 5]
    cohort = build_cohort({"ehr-1": table}, DEFAULT_VARIABLES)
    other = build_cohort({"ehr-1": gappy}, DEFAULT_VARIABLES)
    assert cohort.patients == other.patients
    assert np.isnan(other.values[:, 5, :]).all()
    keep = [h for h in range(HOURS) if h != 5]
    np.testing.assert_array_equal(cohort.values[:, keep], other.values[:, keep])
    np.testing.assert_array_equal(cohort.target, other.target)


def test_numeric_patient_ids_are_accepted() -> None:
    inputs = _inputs()
    table = inputs["ehr-1"]
    table["patient"] = table["patient"].str.slice(3).astype(int)
    cohort = build_cohort({"ehr-1": table}, DEFAULT_VARIABLES)
    assert cohort.patients[0] == "1"


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"hidden": 3}, "unknown parameter(s) hidden"),
        ({"hidden_size": "big"}, "'hidden_size' must be a number"),
        ({"hidden_size": True}, "'hidden_size' must be a number"),
        ({"hidden_size": 1}, "'hidden_size' must be between 2 and 512"),
        ({"max_epochs": 2.5}, "'max_epochs' must be a whole number"),
        ({"learning_rate": 0.0}, "'learning_rate' must be between"),
        ({"test_fraction": 0.95}, "'test_fraction' must be between 0.05 and 0.9"),
        ({"variables": 5}, "'variables' must be a comma-separated list"),
        ({"variables": "heart_rate,,sbp"}, "empty column name"),
        ({"variables": "sbp,sbp"}, "names a column twice"),
        ({"variables": "sbp,target"}, "names target"),
    ],
)
def test_bad_parameters_are_rejected_by_name(parameters: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(parameters)
    assert fragment in str(raised.value)


def test_parameters_keep_their_defaults_and_accept_whole_floats() -> None:
    assert parse({}) == Settings()
    settings = parse({"hidden_size": 16.0, "variables": " sbp , spo2 ", "learning_rate": 1})
    assert settings.hidden_size == 16
    assert settings.variables == ("sbp", "spo2")
    assert settings.learning_rate == 1.0


def test_a_subset_of_variables_ignores_other_columns() -> None:
    inputs = {ds: t.drop(columns=["wbc"]) for ds, t in _inputs().items()}
    cohort = build_cohort(inputs, ("heart_rate", "sbp"))
    assert cohort.values.shape[2] == 2
