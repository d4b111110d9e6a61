"""Scores against published DEA results (/work/shared/reference-data/dea)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dea_analysis import main, models

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference-data" / "dea"
TOL = 1e-6


def _fls11() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "fls11_data_and_reference.csv")


@pytest.mark.parametrize("returns", ["crs", "vrs"])
@pytest.mark.parametrize("orientation", ["input", "output"])
@pytest.mark.parametrize("prefilter", [True, False])
def test_fls11_scores_match_the_published_ones(
    returns: models.Returns, orientation: models.Orientation, prefilter: bool
) -> None:
    data = _fls11()
    reference = data[f"ref_{ {'input': 'in', 'output': 'out'}[orientation] }_{returns}"]
    solution = models.solve(
        data[["x1", "x2"]].to_numpy(float),
        data[["y"]].to_numpy(float),
        returns=returns,
        orientation=orientation,
        slacks=True,
        prefilter=prefilter,
    )
    np.testing.assert_allclose(solution.score, reference.to_numpy(), rtol=0, atol=TOL)


def _context(owners: dict[str, str], k: int = 1) -> Any:
    return SimpleNamespace(min_group_size=k, owners=MappingProxyType(owners))


def test_fls11_through_the_program_interface_split_across_two_parties() -> None:
    data = _fls11().rename(columns={"dmu": "site"})
    inputs = {"units-a": data.iloc[:6].reset_index(drop=True), "units-b": data.iloc[6:]}
    owners = {"units-a": "party-a", "units-b": "party-b"}
    for orientation, prefix, column in (("input", "theta", "in"), ("output", "phi", "out")):
        out = main.run(
            inputs,
            {"inputs": "x1,x2", "outputs": "y", "orientation": orientation},
            _context(owners),
        )
        scores = out["scores"]
        assert isinstance(scores, pd.DataFrame)
        merged = scores.merge(data, on="site")
        assert list(merged["site"]) == list(data["site"])
        for returns in ("crs", "vrs"):
            np.testing.assert_allclose(
                merged[f"{prefix}_{returns}"], merged[f"ref_{column}_{returns}"], atol=TOL
            )
            assert list(merged[f"efficient_{returns}"]) == list(
                np.isclose(merged[f"ref_{column}_{returns}"], 1.0, atol=TOL)
            )


def test_coelli_deap_eg1_crs_input_scores_are_the_exact_fractions() -> None:
    data = pd.read_csv(REFERENCE / "coelli_deap_eg1.csv")
    x, y = data[["x1", "x2"]].to_numpy(float), data[["q"]].to_numpy(float)
    theta = models.solve(x, y, returns="crs", orientation="input").score
    np.testing.assert_allclose(theta, data["exact_te_crs_in"], atol=TOL)
    np.testing.assert_allclose(theta, [1 / 2, 1, 5 / 6, 5 / 7, 1], atol=TOL)
    np.testing.assert_allclose(theta, data["pub_te_crs_in_3dp"], atol=5e-4)
    # Under constant returns the output score is the reciprocal.
    phi = models.solve(x, y, returns="crs", orientation="output").score
    np.testing.assert_allclose(phi, 1 / data["exact_te_crs_in"], atol=TOL)


def test_coelli_deap_eg1_published_peer_sets() -> None:
    # Peer weights need not be unique in general; for this example's
    # inefficient firms the published reference sets are the only ones.
    data = pd.read_csv(REFERENCE / "coelli_deap_eg1.csv")
    x, y = data[["x1", "x2"]].to_numpy(float), data[["q"]].to_numpy(float)
    solution = models.solve(x, y, returns="crs", orientation="input")
    for i, published in enumerate(data["pub_peer_weights"]):
        expected = {
            int(f) - 1: float(w) for f, w in (pair.split(":") for pair in published.split(";"))
        }
        refs, weights = solution.peers[i]
        got = dict(zip(refs.tolist(), weights.tolist(), strict=True))
        assert set(got) == set(expected)
        for firm, weight in expected.items():
            assert got[firm] == pytest.approx(weight, abs=1e-3)


def test_cooper_seiford_tone_technical_efficiency() -> None:
    data = pd.read_csv(REFERENCE / "cst2007_cost_example.csv")
    theta = models.solve(
        data[["x1", "x2"]].to_numpy(float),
        data[["y"]].to_numpy(float),
        returns="crs",
        orientation="input",
    ).score
    np.testing.assert_allclose(theta, data["ref_ccr_in"], atol=TOL)
