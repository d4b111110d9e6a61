"""Properties every radial DEA score must have, and recovery of a known frontier."""

from __future__ import annotations

import dea_data
import numpy as np
import pytest
from dea_analysis import models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

TOL = 1e-6


@st.composite
def units(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Strictly positive data; values over three orders of magnitude."""
    n = draw(st.integers(2, 14))
    m = draw(st.integers(1, 3))
    s = draw(st.integers(1, 2))
    values = st.floats(0.1, 100.0, allow_nan=False, allow_infinity=False)
    x = draw(hnp.arrays(np.float64, (n, m), elements=values))
    y = draw(hnp.arrays(np.float64, (n, s), elements=values))
    return x, y


PROPERTIES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(units())
def test_scores_are_in_range_and_ordered(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    crs_in = models.solve(x, y, returns="crs", orientation="input").score
    vrs_in = models.solve(x, y, returns="vrs", orientation="input").score
    crs_out = models.solve(x, y, returns="crs", orientation="output").score
    vrs_out = models.solve(x, y, returns="vrs", orientation="output").score
    assert np.all(crs_in > 0)
    assert np.all(crs_in <= 1)
    assert np.all(vrs_in > 0)
    assert np.all(vrs_in <= 1)
    assert np.all(crs_out >= 1)
    assert np.all(vrs_out >= 1)
    # A larger technology (CRS contains VRS) can only lower the score.
    assert np.all(crs_in <= vrs_in + TOL)
    assert np.all(crs_out >= vrs_out - TOL * crs_out)
    # Under constant returns the two orientations are reciprocal.
    np.testing.assert_allclose(crs_in, 1 / crs_out, rtol=1e-6)


@PROPERTIES
@given(units(), st.floats(1e-3, 1e3), st.sampled_from(["crs", "vrs"]))
def test_scores_do_not_depend_on_units(
    data: tuple[np.ndarray, np.ndarray], factor: float, returns: models.Returns
) -> None:
    x, y = data
    base = models.solve(x, y, returns=returns, orientation="input").score
    # One factor on every input, then a different unit for each column.
    scaled = models.solve(x * factor, y, returns=returns, orientation="input").score
    columns = np.geomspace(1e-3, 1e4, x.shape[1] + y.shape[1])
    rescaled = models.solve(
        x * columns[: x.shape[1]], y * columns[x.shape[1] :], returns=returns, orientation="input"
    ).score
    np.testing.assert_allclose(scaled, base, atol=TOL)
    np.testing.assert_allclose(rescaled, base, atol=TOL)


@PROPERTIES
@given(units())
def test_units_known_to_be_on_the_frontier_score_one(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    # The best ratio of summed outputs to summed inputs is a feasible set of
    # CCR multipliers under which that unit scores 1.
    best_ratio = int(np.argmax(y.sum(axis=1) / x.sum(axis=1)))
    crs = models.solve(x, y, returns="crs", orientation="input")
    assert crs.score[best_ratio] == pytest.approx(1.0, abs=TOL)
    # No convex combination uses less of input 1 than its smallest user, nor
    # makes more of output 1 than its largest producer.
    vrs_in = models.solve(x, y, returns="vrs", orientation="input").score
    assert vrs_in[int(np.argmin(x[:, 0]))] == pytest.approx(1.0, abs=TOL)
    vrs_out = models.solve(x, y, returns="vrs", orientation="output").score
    assert vrs_out[int(np.argmax(y[:, 0]))] == pytest.approx(1.0, abs=TOL)


@PROPERTIES
@given(units(), st.sampled_from(["crs", "vrs"]), st.sampled_from(["input", "output"]))
def test_slacks_and_weights_reproduce_the_target(
    data: tuple[np.ndarray, np.ndarray], returns: models.Returns, orientation: models.Orientation
) -> None:
    x, y = data
    sol = models.solve(x, y, returns=returns, orientation=orientation, slacks=True)
    assert sol.input_slack is not None
    assert sol.output_slack is not None
    assert np.all(sol.input_slack >= 0)
    assert np.all(sol.output_slack >= 0)
    for o, (refs, weights) in enumerate(sol.peers):
        radial = sol.score[o]
        target_x = (radial if orientation == "input" else 1.0) * x[o] - sol.input_slack[o]
        target_y = (radial if orientation == "output" else 1.0) * y[o] + sol.output_slack[o]
        np.testing.assert_allclose(weights @ x[refs], target_x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(weights @ y[refs], target_y, rtol=1e-5, atol=1e-5)
        if returns == "vrs":
            assert weights.sum() == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["crs", "vrs"]),
    st.sampled_from(["input", "output"]),
)
def test_block_prefilter_gives_the_same_scores_and_slacks(
    seed: int, returns: models.Returns, orientation: models.Orientation
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0, 0.6, (40, 2))
    y = rng.lognormal(0, 0.6, (40, 2)) * x.mean(axis=1, keepdims=True)
    full = models.solve(
        x, y, returns=returns, orientation=orientation, slacks=True, prefilter=False
    )
    block_size = models.BLOCK_SIZE
    models.BLOCK_SIZE = 6
    try:
        blocks = models.solve(x, y, returns=returns, orientation=orientation, slacks=True)
    finally:
        models.BLOCK_SIZE = block_size
    assert blocks.reference_size < len(x)
    np.testing.assert_allclose(blocks.score, full.score, atol=TOL)
    assert full.input_slack is not None
    assert blocks.input_slack is not None
    # Total slack (in column-mean units) is the stage-two optimum, so unique.
    scale = np.concatenate([x.mean(axis=0), y.mean(axis=0)])
    assert full.output_slack is not None
    assert blocks.output_slack is not None
    total_full = np.hstack([full.input_slack, full.output_slack]) / scale
    total_blocks = np.hstack([blocks.input_slack, blocks.output_slack]) / scale
    np.testing.assert_allclose(total_blocks.sum(axis=1), total_full.sum(axis=1), atol=1e-5)


def test_zero_in_some_inputs_and_outputs_is_handled() -> None:
    x = np.array([[1.0, 0.0], [2.0, 1.0], [1.0, 2.0], [3.0, 3.0]])
    y = np.array([[1.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    for returns in ("crs", "vrs"):
        for orientation in ("input", "output"):
            sol = models.solve(x, y, returns=returns, orientation=orientation)
            assert np.all(np.isfinite(sol.score))
            assert np.all(sol.efficiency > 0)
            assert np.all(sol.efficiency <= 1)


def test_estimates_recover_the_true_efficiency_of_synthetic_sites() -> None:
    table, true_eff = dea_data.generate_sites(400, seed=7, sigma=0.3)
    x = table[list(dea_data.INPUTS)].to_numpy(float)
    y = table[list(dea_data.OUTPUTS)].to_numpy(float)
    theta = models.solve(x, y, returns="crs", orientation="input").score
    phi = models.solve(x, y, returns="crs", orientation="output").score
    assert np.corrcoef(theta, true_eff)[0, 1] > 0.95
    # DEA's frontier lies inside the true (convex) one: it never understates
    # efficiency (allowing for the generator's rounding).
    assert np.all(theta >= true_eff - 2e-3)
    assert np.mean(theta - true_eff) < 0.05
    np.testing.assert_allclose(1 / phi, theta, atol=1e-6)


def test_sites_all_on_the_frontier_all_score_one() -> None:
    table, true_eff = dea_data.generate_sites(150, seed=3, sigma=0.0)
    assert np.all(true_eff == 1.0)
    theta = models.solve(
        table[list(dea_data.INPUTS)].to_numpy(float),
        table[list(dea_data.OUTPUTS)].to_numpy(float),
        returns="crs",
        orientation="input",
    ).score
    assert np.all(theta >= 1 - 2e-3)
