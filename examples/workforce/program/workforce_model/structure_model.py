"""The workforce model: small structure levels out, the three-level fit, and
the tables that leave the enclave.

    performance ~ team_structure + covariates
                  + (1 | organisation) + (1 | team within organisation)

is fitted as a MixedLM with the organisation as the group, a random
intercept per organisation and a variance component for the teams nested
in it, by REML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workforce_model.errors import InvalidInput
from workforce_model.inputs import (
    EMPLOYEE,
    ORGANISATION,
    OWNER,
    PERFORMANCE,
    STRUCTURE,
    TEAM,
)
from workforce_model.mixed_fit import MixedFit, fit_mixed_model
from workforce_model.parameters import Parameters

TEAM_CODE = "_team"
STRUCTURE_TERM = f"{STRUCTURE}[T."


@dataclass(frozen=True)
class ModelData:
    table: pd.DataFrame  # the rows in the model; team_structure is categorical, reference first
    levels: tuple[str, ...]  # structure levels in the model, reference first
    suppressed_levels: int  # levels left out for having fewer than k employees


def _datasets(table: pd.DataFrame) -> str:
    return ", ".join(repr(d) for d in sorted(table[ORGANISATION].unique()))


def select_model_rows(pooled: pd.DataFrame, parameters: Parameters, k: int) -> ModelData:
    """Drops structure levels with fewer than ``k`` employees over all
    organisations, then checks that what is left can be fitted."""
    counts = pooled.groupby(STRUCTURE).size()
    kept = sorted(str(level) for level, n in counts.items() if n >= k)
    if len(kept) < 2:
        raise InvalidInput(
            f"datasets {_datasets(pooled)} column {STRUCTURE!r}: {len(kept)} structure level(s) "
            f"with at least min_group_size ({k}) employees; comparing structures needs two"
        )
    reference = parameters.reference_structure
    if reference is None:
        reference = kept[0]
    elif reference not in kept:
        raise InvalidInput(
            f"parameter 'reference_structure' names no level of column {STRUCTURE!r} with at "
            f"least min_group_size ({k}) employees"
        )
    levels = (reference, *(level for level in kept if level != reference))
    table = pooled[pooled[STRUCTURE].isin(kept)].reset_index(drop=True)

    organisations = sorted(pooled[ORGANISATION].unique())
    if len(organisations) < 2:
        raise InvalidInput(
            f"dataset {organisations[0]!r}: the model needs employees of at least two "
            "organisations (one dataset each) to estimate the organisation variance"
        )
    teams = table.groupby(ORGANISATION)[TEAM].nunique()
    for dataset in organisations:
        n = int(teams.get(dataset, 0))
        if n < parameters.min_teams:
            raise InvalidInput(
                f"dataset {dataset!r} column {TEAM!r}: {n} team(s) in the model; each "
                f"organisation needs at least {parameters.min_teams} (parameter 'min_teams')"
            )
    for column in parameters.covariates:
        if table[column].nunique() < 2:
            raise InvalidInput(
                f"datasets {_datasets(table)} column {column!r}: one value for every employee; "
                "its effect cannot be estimated"
            )

    table[STRUCTURE] = pd.Categorical(table[STRUCTURE], categories=list(levels))
    # Integer team codes keep the per-organisation design matrices cheap to build;
    # teams are nested in organisations, so equal labels in two of them stay apart.
    table[TEAM_CODE] = table.groupby([ORGANISATION, TEAM], sort=True).ngroup()
    return ModelData(table, levels, int(len(counts) - len(kept)))


def formula(covariates: tuple[str, ...]) -> str:
    return " + ".join([f"{PERFORMANCE} ~ {STRUCTURE}", *covariates])


def fit_structure_model(data: ModelData, parameters: Parameters) -> MixedFit:
    return fit_mixed_model(
        data.table,
        formula(parameters.covariates),
        groups=ORGANISATION,
        re_formula="1",
        vc_formula={"team": f"0 + C({TEAM_CODE})"},
        reml=True,
        confidence=parameters.confidence_level,
    )


def fixed_effects_table(fit: MixedFit, data: ModelData) -> pd.DataFrame:
    table = fit.fixed_effects.copy()
    reference = data.levels[0]
    kinds, contrasts = [], []
    for term in table["term"]:
        if term == "Intercept":
            kinds.append("intercept")
            contrasts.append(f"expected performance, {reference} teams, covariates at 0")
        elif term.startswith(STRUCTURE_TERM):
            kinds.append("structure")
            contrasts.append(f"{term[len(STRUCTURE_TERM) : -1]} vs {reference}")
        else:
            kinds.append("covariate")
            contrasts.append(f"per unit of {term}")
    table.insert(1, "kind", kinds)
    table.insert(2, "contrast", contrasts)
    return table


def variance_table(fit: MixedFit) -> pd.DataFrame:
    variances = {
        "organisation": float(fit.random_covariance.iloc[0, 0]),
        "team": float(fit.variance_components["team"]),
        "residual": fit.residual_variance,
    }
    total = sum(variances.values())
    return pd.DataFrame(
        {
            "component": list(variances),
            "variance": list(variances.values()),
            "std_dev": [float(np.sqrt(v)) for v in variances.values()],
            "share": [v / total for v in variances.values()],
        }
    )


def structure_levels_table(data: ModelData) -> pd.DataFrame:
    grouped = data.table.groupby(STRUCTURE, observed=True)
    table = pd.DataFrame(
        {
            "employees": grouped.size(),
            "teams": grouped[TEAM_CODE].nunique(),
            "performance_mean": grouped[PERFORMANCE].mean(),
        }
    ).reindex(list(data.levels))
    table.index.name = STRUCTURE
    table = table.reset_index()
    table.insert(1, "reference", table[STRUCTURE] == data.levels[0])
    return table


def fit_table(fit: MixedFit, data: ModelData) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["REML" if fit.reml else "ML"],
            "log_likelihood": [fit.log_likelihood],
            "converged": [fit.converged],
            "boundary": [fit.boundary],
            "optimizer": [fit.optimizer],
            "employees": [fit.observations],
            "teams": [int(data.table[TEAM_CODE].nunique())],
            "organisations": [fit.groups],
        }
    )


def by_organisation_table(data: ModelData, covariates: tuple[str, ...], k: int) -> pd.DataFrame:
    """Each organisation's own descriptive counts per structure, for ``view: own``;
    cells of fewer than ``k`` employees are dropped."""
    grouped = data.table.groupby([OWNER, ORGANISATION, STRUCTURE], observed=True, sort=True)
    table = grouped.agg(
        employees=(EMPLOYEE, "size"),
        teams=(TEAM_CODE, "nunique"),
        performance_mean=(PERFORMANCE, "mean"),
        performance_sd=(PERFORMANCE, "std"),
        **{f"{c}_mean": (c, "mean") for c in covariates},
    ).reset_index()
    table = table.rename(columns={ORGANISATION: "dataset"})
    table[STRUCTURE] = table[STRUCTURE].astype(str)
    table = table[table["employees"] >= k].sort_values(["dataset", STRUCTURE])
    return table.reset_index(drop=True)
