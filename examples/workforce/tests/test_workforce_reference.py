"""The fitting code path the program uses, checked against published lme4 /
statsmodels results (/work/shared/reference-data/mixed-models, README)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from workforce_model.mixed_fit import MixedFit, fit_mixed_model

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference-data"
MIXED = REFERENCE / "mixed-models"
REL = 1e-3


def dietox() -> pd.DataFrame:
    # The header names one column fewer than the rows hold: the first field is
    # R's row name, which pandas takes as the index.
    data = pd.read_csv(MIXED / "dietox_statsmodels_testdata.csv")
    assert list(data.columns[:4]) == ["Weight", "Feed", "Time", "Pig"]
    assert len(data) == 861
    return data


def sleepstudy() -> pd.DataFrame:
    data = pd.read_csv(MIXED / "sleepstudy_lme4_via_Rdatasets.csv")
    assert len(data) == 180
    return data


def estimates(fit: MixedFit, column: str) -> list[float]:
    return [float(v) for v in fit.fixed_effects[column]]


def test_sleepstudy_random_slope_reml() -> None:
    fit = fit_mixed_model(sleepstudy(), "Reaction ~ Days", groups="Subject", re_formula="1 + Days")
    assert fit.converged
    assert list(fit.fixed_effects["term"]) == ["Intercept", "Days"]
    assert estimates(fit, "estimate") == pytest.approx([251.405, 10.467], rel=REL)
    assert estimates(fit, "std_error") == pytest.approx([6.825, 1.546], rel=REL)
    cov = fit.random_covariance.to_numpy()
    assert cov[0, 0] == pytest.approx(612.10, rel=REL)
    assert cov[1, 1] == pytest.approx(35.07, rel=REL)
    # Published to three decimals: its rounding plus the relative tolerance
    # of the other checks.
    corr = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    assert corr == pytest.approx(0.066, abs=5e-4 + REL * 0.066)
    assert fit.residual_variance == pytest.approx(654.94, rel=REL)


def test_dietox_random_intercept_reml() -> None:
    fit = fit_mixed_model(dietox(), "Weight ~ Time", groups="Pig")
    assert fit.converged
    assert fit.reml
    assert estimates(fit, "estimate") == pytest.approx([15.723523, 6.942505], rel=REL)
    assert estimates(fit, "std_error") == pytest.approx([0.78805374, 0.03338727], rel=REL)
    assert float(fit.random_covariance.iloc[0, 0]) == pytest.approx(40.39395, rel=REL)
    assert fit.residual_variance == pytest.approx(11.36692, rel=REL)
    assert fit.log_likelihood == pytest.approx(-2404.775, rel=REL)
    assert fit.groups == 72
    assert fit.observations == 861


def test_dietox_random_slope_reml() -> None:
    fit = fit_mixed_model(dietox(), "Weight ~ Time", groups="Pig", re_formula="1 + Time")
    # BFGS from statsmodels' default start does not converge on this one.
    assert fit.converged
    assert estimates(fit, "estimate") == pytest.approx([15.738650, 6.939014], rel=REL)
    cov = fit.random_covariance.to_numpy()
    assert [cov[0, 0], cov[0, 1], cov[1, 1]] == pytest.approx([19.4935, 0.29383, 0.41606], rel=REL)
    assert fit.residual_variance == pytest.approx(6.03745, rel=REL)
    assert fit.log_likelihood == pytest.approx(-2217.047, rel=REL)


def test_wald_intervals_follow_estimate_and_error() -> None:
    fit = fit_mixed_model(dietox(), "Weight ~ Time", groups="Pig", confidence=0.90)
    table = fit.fixed_effects
    half = 1.6448536269514722 * table["std_error"]
    assert list(table["ci_lower"]) == pytest.approx(list(table["estimate"] - half))
    assert list(table["ci_upper"]) == pytest.approx(list(table["estimate"] + half))
    assert list(table["z"]) == pytest.approx(list(table["estimate"] / table["std_error"]))
    assert (table["p_value"] < 1e-10).all()
