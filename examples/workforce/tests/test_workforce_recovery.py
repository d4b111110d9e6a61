"""The workforce model recovers the effects the generator put in, and its
outputs keep the small-group rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import workforce_data as wd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workforce_model.main import run

TRUTH = wd.TRUTH
STRUCTURE_TERMS = {
    "team_structure[T.hierarchical]": TRUTH.structure_effects["hierarchical"],
    "team_structure[T.matrix]": TRUTH.structure_effects["matrix"],
}


@dataclass(frozen=True)
class Context:
    min_group_size: int
    owners: Mapping[str, str] = field(default_factory=dict)
    program: str = "workforce"


def inputs_for(tables: list[pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {f"org-{i + 1:02d}": t for i, t in enumerate(tables)}


def context(inputs: Mapping[str, pd.DataFrame], k: int = 10) -> Context:
    return Context(k, {ds: f"sha256:{ds}" for ds in inputs})


def run_model(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any] | None = None, k: int = 10
) -> dict[str, Any]:
    return run(inputs, parameters or {}, context(inputs, k))


def test_recovers_known_effects_and_variances() -> None:
    # 30 organisations of 30 teams (about 8,000 employees). Seed 5 is one
    # where every known value sits within its sampling error; the coverage
    # test below checks the intervals over many seeds.
    inputs = inputs_for(wd.organisation_tables(30, 30, seed=5))
    out = run_model(inputs, {"covariates": "tenure_years,remote_share"})
    fe = out["fixed_effects"].set_index("term")
    truth = {
        "Intercept": TRUTH.intercept,
        **STRUCTURE_TERMS,
        "tenure_years": TRUTH.tenure_slope,
        "remote_share": TRUTH.remote_slope,
    }
    assert sorted(fe.index) == sorted(truth)
    for term, value in truth.items():
        assert fe.loc[term, "ci_lower"] <= value <= fe.loc[term, "ci_upper"], term
    variance = out["variance_components"].set_index("component")["variance"]
    # About two standard errors of each estimate at this size.
    assert variance["organisation"] == pytest.approx(TRUTH.org_var, rel=0.5)
    assert variance["team"] == pytest.approx(TRUTH.team_var, rel=0.2)
    assert variance["residual"] == pytest.approx(TRUTH.residual_var, rel=0.05)
    fit = out["model_fit"].iloc[0]
    assert bool(fit["converged"])
    assert int(fit["organisations"]) == 30
    assert int(fit["teams"]) == 900


def test_structure_intervals_cover_the_truth_across_seeds() -> None:
    replicates = 30
    hits = 0
    estimates = []
    for seed in range(100, 100 + replicates):
        out = run_model(inputs_for(wd.organisation_tables(8, 10, seed=seed)))
        fe = out["fixed_effects"].set_index("term")
        for term, value in STRUCTURE_TERMS.items():
            hits += int(fe.loc[term, "ci_lower"] <= value <= fe.loc[term, "ci_upper"])
        estimates.append([fe.loc[term, "estimate"] for term in STRUCTURE_TERMS])
    coverage = hits / (2 * replicates)
    # Nominal 95 %; Wald intervals over 80 teams undercover a little, and 60
    # intervals vary by about 3 points.
    assert coverage >= 0.85
    spread = np.std(estimates, axis=0, ddof=1)
    bias = np.mean(estimates, axis=0) - list(STRUCTURE_TERMS.values())
    assert (np.abs(bias) < 3 * spread / np.sqrt(replicates)).all()


def small_inputs(seed: int = 7) -> dict[str, pd.DataFrame]:
    return inputs_for(wd.organisation_tables(3, 15, seed=seed, rare_teams=2))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shift=st.floats(-50, 50), order_seed=st.integers(0, 2**16))
def test_shift_and_row_order_change_only_the_intercept(shift: float, order_seed: int) -> None:
    base = inputs_for(wd.organisation_tables(8, 8, seed=11))
    moved = {
        ds: t.assign(performance=t["performance"] + shift)
        .sample(frac=1.0, random_state=order_seed)
        .reset_index(drop=True)
        for ds, t in base.items()
    }
    a = run_model(base)
    b = run_model(moved)
    fa, fb = (o["fixed_effects"].set_index("term") for o in (a, b))
    # Equal up to the optimizer's tolerance (summation order differs), which
    # is a small fraction of each standard error.
    tolerance = 0.02 * fa["std_error"]
    expected = fa["estimate"] + np.where(fa.index == "Intercept", shift, 0.0)
    assert (abs(fb["estimate"] - expected) <= tolerance).all()
    va, vb = (o["variance_components"]["variance"] for o in (a, b))
    assert list(vb) == pytest.approx(list(va), rel=0.02)


def test_reference_level_is_a_reparametrisation() -> None:
    inputs = small_inputs()
    flat = run_model(inputs)["fixed_effects"].set_index("contrast")["estimate"]
    matrix = run_model(inputs, {"reference_structure": "matrix"})
    fe = matrix["fixed_effects"].set_index("contrast")["estimate"]
    assert fe["flat vs matrix"] == pytest.approx(-flat["matrix vs flat"], abs=1e-3)
    assert fe["hierarchical vs matrix"] == pytest.approx(
        flat["hierarchical vs flat"] - flat["matrix vs flat"], abs=1e-3
    )
    assert matrix["meta"]["structure_levels"][0] == "matrix"
    assert bool(matrix["structure_levels"].set_index("team_structure").loc["matrix", "reference"])


def no_floats(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and no_floats(v) for k, v in value.items())
    if isinstance(value, list):
        return all(no_floats(v) for v in value)
    return value is None or isinstance(value, str | int | bool)


@pytest.mark.parametrize("k", [5, 10, 60])
def test_small_groups_are_left_out(k: int) -> None:
    inputs = small_inputs()  # org-01 has a rare structure of 2 teams x 3 employees
    out = run_model(inputs, k=k)
    meta = out["meta"]
    assert no_floats(meta)
    rare_in_model = k <= 6
    assert ("holacracy" in meta["structure_levels"]) is rare_in_model
    assert meta["suppressed_structure_levels"] == (0 if rare_in_model else 1)
    levels = out["structure_levels"]
    assert (levels["employees"] >= k).all()
    owned = out["by_organisation"]
    assert (owned["employees"] >= k).all()
    assert set(owned["_owner"]) <= {f"sha256:{ds}" for ds in inputs}
    # Every published cell really is the count of those employees.
    pooled = pd.concat([t.assign(dataset=ds) for ds, t in inputs.items()])
    sizes = pooled.groupby(["dataset", "team_structure"]).size()
    for row in owned.itertuples():
        assert sizes[(row.dataset, row.team_structure)] == row.employees
    hidden = sizes[sizes < k]
    shown = set(zip(owned["dataset"], owned["team_structure"], strict=True))
    assert not shown & set(hidden.index)
    assert int(out["model_fit"]["employees"].iloc[0]) == int(levels["employees"].sum())
