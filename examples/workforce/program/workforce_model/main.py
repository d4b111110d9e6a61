"""Employee performance under different team structures.

Entry point ``workforce_model.main:run`` (docs/programs.md). Each input
dataset is one organisation's employee records (``employee``, ``team``,
``team_structure``, ``performance`` and the covariates named by the
``covariates`` parameter, ``tenure_years`` by default). The program pools
them and fits, by REML,

    performance ~ team_structure + covariates
                  + organisation random intercept + team (in organisation) variance

Outputs:

- ``fixed_effects`` (table): term, kind (intercept / structure / covariate),
  contrast, estimate, std_error, z, p_value, ci_lower, ci_upper (Wald);
- ``variance_components`` (table): organisation, team and residual variance,
  standard deviation and share of the total;
- ``structure_levels`` (table): each structure level in the model with its
  employees, teams and mean performance; the reference level is marked;
- ``model_fit`` (table): REML log-likelihood, convergence, optimizer, counts;
- ``by_organisation`` (table, ``_owner``): per organisation and structure,
  employees, teams and means, for ``view: own``;
- ``meta`` (dict): formula, levels, parameters, suppression counts.

Small groups: a structure level with fewer than ``min_group_size``
employees over all organisations is left out of the model (only the number
of such levels is reported), and ``by_organisation`` drops cells of fewer
than ``min_group_size`` employees. Nothing is published per team or per
employee.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from workforce_model.errors import InvalidInput
from workforce_model.inputs import pool_inputs
from workforce_model.parameters import parse_parameters
from workforce_model.structure_model import (
    by_organisation_table,
    fit_structure_model,
    fit_table,
    fixed_effects_table,
    formula,
    select_model_rows,
    structure_levels_table,
    variance_table,
)

__all__ = ["InvalidInput", "run"]


def run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], context: Any
) -> dict[str, pd.DataFrame | dict[str, Any]]:
    params = parse_parameters(parameters)
    k = max(1, int(context.min_group_size))
    pooled = pool_inputs(inputs, context.owners, params.covariates)
    data = select_model_rows(pooled.table, params, k)
    fit = fit_structure_model(data, params)
    meta: dict[str, Any] = {
        "formula": formula(params.covariates),
        "random_effects": "organisation intercept; team (nested in organisation) variance",
        "reference_structure": data.levels[0],
        "structure_levels": list(data.levels),
        "suppressed_structure_levels": data.suppressed_levels,
        "covariates": list(params.covariates),
        "confidence_percent": params.confidence_percent,
        "min_group_size": k,
        "min_teams": params.min_teams,
        "organisations": fit.groups,
        "employees": fit.observations,
        "converged": fit.converged,
    }
    return {
        "fixed_effects": fixed_effects_table(fit, data),
        "variance_components": variance_table(fit),
        "structure_levels": structure_levels_table(data),
        "model_fit": fit_table(fit, data),
        "by_organisation": by_organisation_table(data, params.covariates, k),
        "meta": meta,
    }
