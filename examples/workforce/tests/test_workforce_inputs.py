"""Bad inputs and parameters are refused with InvalidInput, naming the
dataset (or parameter) and the column, never a value from the data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import workforce_data as wd
from workforce_model.main import InvalidInput, run
from workforce_model.parameters import parse_parameters

MARKER = "Zq7-secret-label"


@dataclass(frozen=True)
class Context:
    min_group_size: int
    owners: Mapping[str, str] = field(default_factory=dict)
    program: str = "workforce"


def valid_inputs() -> dict[str, pd.DataFrame]:
    tables = wd.organisation_tables(3, 8, seed=3)
    return {f"org-{i + 1}": t for i, t in enumerate(tables)}


def run_with(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any] | None = None, k: int = 10
) -> dict[str, Any]:
    return run(inputs, parameters or {}, Context(k, {ds: f"sha256:{ds}" for ds in inputs}))


def test_valid_inputs_fit() -> None:
    out = run_with(valid_inputs())
    assert len(out["fixed_effects"]) == 4


Mutation = Callable[[pd.DataFrame], pd.DataFrame]


def drop(column: str) -> Mutation:
    return lambda t: t.drop(columns=[column])


def text_values(column: str) -> Mutation:
    def mutate(t: pd.DataFrame) -> pd.DataFrame:
        t = t.astype({column: object})
        t.loc[t.index[:3], column] = MARKER
        return t

    return mutate


def set_rows(column: str, value: Any, rows: int = 2) -> Mutation:
    def mutate(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy()
        t.loc[t.index[:rows], column] = value
        return t

    return mutate


def one_structure(t: pd.DataFrame) -> pd.DataFrame:
    return t.assign(team_structure="flat")


def keep_teams(n: int) -> Mutation:
    return lambda t: t[t["team"].isin(sorted(t["team"].unique())[:n])].reset_index(drop=True)


def repeat_employee(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    t.loc[t.index[1], "employee"] = t.loc[t.index[0], "employee"]
    return t


def mixed_team(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    first = t["team"] == t["team"].iloc[0]
    other = "matrix" if t.loc[first, "team_structure"].iloc[0] != "matrix" else "flat"
    t.loc[t.index[first][:1], "team_structure"] = other
    return t


def no_rows(t: pd.DataFrame) -> pd.DataFrame:
    return t.iloc[0:0]


def no_columns(t: pd.DataFrame) -> pd.DataFrame:
    # What a CSV file with no header line at all arrives as.
    return pd.DataFrame()


def all_missing(t: pd.DataFrame) -> pd.DataFrame:
    return t.assign(performance=np.nan)


CASES: list[tuple[str, Mutation, dict[str, Any], str]] = [
    ("missing tenure column", drop("tenure_years"), {}, "'tenure_years'"),
    ("missing team column", drop("team"), {}, "'team'"),
    ("missing performance column", drop("performance"), {}, "'performance'"),
    (
        "missing optional covariate",
        drop("remote_share"),
        {"covariates": "tenure_years,remote_share"},
        "'remote_share'",
    ),
    ("text performance", text_values("performance"), {}, "'performance'"),
    ("text tenure", text_values("tenure_years"), {}, "'tenure_years'"),
    ("boolean performance", lambda t: t.assign(performance=True), {}, "'performance'"),
    ("infinite performance", set_rows("performance", np.inf), {}, "'performance'"),
    ("negative tenure", set_rows("tenure_years", -1.0), {}, "'tenure_years'"),
    (
        "remote share above one",
        set_rows("remote_share", 1.5),
        {"covariates": "tenure_years,remote_share"},
        "'remote_share'",
    ),
    ("no employees", no_rows, {}, "'employee'"),
    ("no header at all", no_columns, {}, "'employee'"),
    ("no complete row", all_missing, {}, "'performance'"),
    ("too few teams", keep_teams(2), {}, "'team'"),
    ("repeated employee id", repeat_employee, {}, "'employee'"),
    ("team with two structures", mixed_team, {}, "'team_structure'"),
]


@pytest.mark.parametrize(
    ("mutate", "parameters", "column"),
    [pytest.param(m, p, c, id=name) for name, m, p, c in CASES],
)
def test_bad_dataset_is_rejected(mutate: Mutation, parameters: dict[str, Any], column: str) -> None:
    inputs = valid_inputs()
    inputs["org-2"] = mutate(inputs["org-2"])
    with pytest.raises(InvalidInput) as info:
        run_with(inputs, parameters)
    message = str(info.value)
    assert "'org-2'" in message
    assert column in message
    assert MARKER not in message
    assert "inf" not in message.replace("infinite", "")


def test_single_structure_level_has_no_contrast() -> None:
    inputs = {ds: one_structure(t) for ds, t in valid_inputs().items()}
    with pytest.raises(InvalidInput, match=r"'team_structure'") as info:
        run_with(inputs)
    assert "'org-1', 'org-2', 'org-3'" in str(info.value)


def test_single_level_left_after_suppression() -> None:
    inputs = valid_inputs()
    sizes = pd.concat(inputs.values()).groupby("team_structure").size()
    # k above every level but the largest: one level is left, no contrast.
    k = int(sizes.sort_values().iloc[-2]) + 1
    with pytest.raises(InvalidInput, match=r"'team_structure'.*min_group_size"):
        run_with(inputs, k=k)


def test_one_organisation_cannot_give_an_organisation_variance() -> None:
    inputs = {"org-1": valid_inputs()["org-1"]}
    with pytest.raises(InvalidInput, match=r"'org-1'.*two organisations"):
        run_with(inputs)


def test_constant_covariate_is_rejected() -> None:
    inputs = {ds: t.assign(remote_share=0.5) for ds, t in valid_inputs().items()}
    with pytest.raises(InvalidInput, match=r"'remote_share'"):
        run_with(inputs, {"covariates": "tenure_years,remote_share"})


def test_min_teams_parameter_is_applied() -> None:
    inputs = valid_inputs()
    teams = min(t["team"].nunique() for t in inputs.values())
    run_with(inputs, {"min_teams": teams})
    with pytest.raises(InvalidInput, match=r"column 'team'.*'min_teams'"):
        run_with(inputs, {"min_teams": teams + 1})


def test_missing_values_leave_rows_out() -> None:
    inputs = valid_inputs()
    complete = run_with(inputs)
    inputs["org-2"] = set_rows("tenure_years", np.nan, rows=5)(inputs["org-2"])
    out = run_with(inputs)
    assert out["meta"]["employees"] == complete["meta"]["employees"] - 5


def test_numeric_structure_is_a_category() -> None:
    spans = {"flat": 12, "hierarchical": 5, "matrix": 8}
    inputs = {ds: t.replace({"team_structure": spans}) for ds, t in valid_inputs().items()}
    out = run_with(inputs)
    assert out["meta"]["structure_levels"] == ["12", "5", "8"]


@pytest.mark.parametrize(
    ("parameters", "name"),
    [
        ({"colour": "red"}, "'colour'"),
        ({"covariates": "__import__('os').getcwd()"}, "'covariates'"),
        ({"covariates": "team"}, "'covariates'"),
        ({"covariates": "tenure_years,tenure_years"}, "'covariates'"),
        ({"covariates": 3}, "'covariates'"),
        ({"confidence_percent": 100}, "'confidence_percent'"),
        ({"confidence_percent": True}, "'confidence_percent'"),
        ({"min_teams": 1}, "'min_teams'"),
        ({"reference_structure": ""}, "'reference_structure'"),
    ],
)
def test_bad_parameters_are_rejected(parameters: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidInput, match=name):
        parse_parameters(parameters)


def test_unknown_reference_structure_is_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"'reference_structure'.*'team_structure'"):
        run_with(valid_inputs(), {"reference_structure": MARKER})


def test_empty_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"no input datasets"):
        run_with({})
