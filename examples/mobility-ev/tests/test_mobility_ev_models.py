"""The siting models against exhaustive enumeration, and the program's sites
against an independent recomputation from the raw trips."""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import mobility_ev_data
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mobility_ev.facility import max_cover, p_median
from mobility_ev.main import run


@st.composite
def instances(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n_points = draw(st.integers(1, 8))
    n_sites = draw(st.integers(1, 6))
    p = draw(st.integers(1, n_sites))
    distance = draw(
        st.lists(st.integers(0, 30), min_size=n_points * n_sites, max_size=n_points * n_sites)
    )
    weight = draw(st.lists(st.integers(0, 9), min_size=n_points, max_size=n_points))
    return (
        np.array(distance, dtype=np.float64).reshape(n_points, n_sites),
        np.array(weight, dtype=np.float64),
        p,
    )


def brute_p_median(distance: np.ndarray, weight: np.ndarray, p: int) -> float:
    return min(
        float(weight @ distance[:, list(open_)].min(axis=1))
        for open_ in itertools.combinations(range(distance.shape[1]), p)
    )


def brute_max_cover(distance: np.ndarray, weight: np.ndarray, p: int, radius: float) -> float:
    return max(
        float(weight[(distance[:, list(open_)] <= radius).any(axis=1)].sum())
        for open_ in itertools.combinations(range(distance.shape[1]), p)
    )


@settings(max_examples=60, deadline=None)
@given(instances())
def test_p_median_matches_enumeration(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    distance, weight, p = case
    siting = p_median(distance, weight, p)
    assert len(siting.open) == p == len(set(siting.open.tolist()))
    assert siting.objective == pytest.approx(brute_p_median(distance, weight, p), abs=1e-7)
    # Every point is assigned to an open site at its nearest open distance.
    got = distance[np.arange(len(weight)), siting.assigned]
    assert np.allclose(got, distance[:, siting.open].min(axis=1))


@settings(max_examples=60, deadline=None)
@given(instances(), st.integers(0, 30))
def test_max_cover_matches_enumeration(
    case: tuple[np.ndarray, np.ndarray, int], radius: int
) -> None:
    distance, weight, p = case
    siting = max_cover(distance, weight, p, float(radius))
    assert len(siting.open) == p == len(set(siting.open.tolist()))
    assert siting.objective == pytest.approx(brute_max_cover(distance, weight, p, radius))
    covered = siting.assigned >= 0
    assert siting.objective == pytest.approx(weight[covered].sum())
    assert np.all(distance[covered, siting.assigned[covered]] <= radius)


@pytest.mark.parametrize(
    ("demand_end", "weight"), [("destination", "trips"), ("both", "km"), ("origin", "trips")]
)
def test_program_sites_are_optimal_for_the_pooled_demand(
    tmp_path: Path, demand_end: str, weight: str
) -> None:
    """Recompute EV demand from the generated files with pandas alone and check
    the program's sites and objectives against enumeration."""
    paths = mobility_ev_data.write_region(tmp_path, seed=3, scale=0.25)
    inputs = {name: pd.read_csv(path) for name, path in paths.items()}
    zones = inputs["zones"].set_index("zone_id").sort_index()
    candidates = zones.index.to_list()[::2]
    owners = {"zones": "A", "trips-1": "A", "trips-2": "B", "trips-3": "C"}
    context = types.SimpleNamespace(min_group_size=1, owners=owners)
    parameters = {
        "p": 3,
        "coverage_m": 6000,
        "candidates": ",".join(map(str, candidates)),
        "ev_vehicles": "ev,phev",
        "demand_end": demand_end,
        "weight": weight,
    }
    out = run(inputs, parameters, context)

    trips = pd.concat([inputs[f"trips-{i}"] for i in (1, 2, 3)])
    ev = trips[trips["vehicle"].isin(["ev", "phev"])]
    columns = {"destination": ["destination_zone"], "origin": ["origin_zone"]}.get(
        demand_end, ["origin_zone", "destination_zone"]
    )
    ends = pd.concat([pd.DataFrame({"zone": ev[c], "km": ev["distance_km"]}) for c in columns])
    per_zone = ends.groupby("zone")["km"].agg(["size", "sum"]).reindex(zones.index, fill_value=0)
    demand = per_zone["size" if weight == "trips" else "sum"]
    xy = zones[["x_km", "y_km"]].to_numpy()
    cand_xy = zones.loc[candidates, ["x_km", "y_km"]].to_numpy()
    distance = np.hypot(*(xy[:, None, :] - cand_xy[None, :, :]).transpose(2, 0, 1))
    w = demand.to_numpy(dtype=np.float64)

    table = out["objectives"]
    assert isinstance(table, pd.DataFrame)
    objectives = table.set_index("model")
    assert objectives.loc["p-median", "objective"] == pytest.approx(
        brute_p_median(distance, w, 3), abs=1e-3
    )
    assert objectives.loc["max-cover", "objective"] == pytest.approx(
        brute_max_cover(distance, w, 3, 6.0)
    )
    assert objectives.loc["p-median", "trip_ends"] == len(ends)
    sites = out["sites"]
    assert isinstance(sites, pd.DataFrame)
    chosen = sites[sites["model"] == "p-median"]
    assert set(chosen["zone"]) <= set(candidates)
    assert len(chosen) == 3
    # With k = 1 nothing is withheld: served demand adds up to all EV trip ends.
    assert chosen["served_trip_ends"].sum() == len(ends)


@pytest.mark.parametrize("k", [25, 60])
def test_site_demand_is_withheld_so_no_party_can_difference_it(tmp_path: Path, k: int) -> None:
    paths = mobility_ev_data.write_region(tmp_path, seed=11, scale=0.3)
    inputs = {name: pd.read_csv(path) for name, path in paths.items()}
    owners = {"zones": "A", "trips-1": "A", "trips-2": "B", "trips-3": "C"}
    context = types.SimpleNamespace(min_group_size=k, owners=owners)
    out = run(inputs, {"p": 8, "coverage_m": 4000}, context)
    sites, objectives = out["sites"], out["objectives"]
    assert isinstance(sites, pd.DataFrame)
    assert isinstance(objectives, pd.DataFrame)

    zones = inputs["zones"].set_index("zone_id")
    for model, radius in (("p-median", np.inf), ("max-cover", 4.0)):
        chosen = sites[sites["model"] == model].reset_index(drop=True)
        site_xy = chosen[["x_km", "y_km"]].to_numpy()
        served = np.zeros((3, len(chosen)), dtype=np.int64)  # party × site
        for party, dataset in enumerate(("trips-1", "trips-2", "trips-3")):
            trips = inputs[dataset]
            ends = trips.loc[trips["vehicle"] == "ev", "destination_zone"]
            xy = zones.loc[ends, ["x_km", "y_km"]].to_numpy()
            gap = np.hypot(*(xy[:, None, :] - site_xy[None, :, :]).transpose(2, 0, 1))
            nearest = gap.argmin(axis=1)
            reach = gap.min(axis=1) <= radius
            served[party] = np.bincount(nearest[reach], minlength=len(chosen))
        total = served.sum(axis=0)
        shown = chosen["served_trip_ends"].notna().to_numpy()
        assert np.array_equal(chosen.loc[shown, "served_trip_ends"].to_numpy(), total[shown])
        assert np.all(total[shown] >= k)
        summary = objectives.set_index("model").loc[model]
        if pd.isna(summary["trip_ends"]):
            continue
        assert summary["trip_ends"] == total.sum()
        for q in range(4):  # an outsider, then each party knowing its own
            residual = total - (served[q] if q < 3 else 0)
            assert np.all((residual[shown] == 0) | (residual[shown] >= k))
            assert int(((residual > 0) & ~shown).sum()) != 1
