"""EV charging sites: demand per zone, the two siting models, and what of
their results may leave the enclave."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobility_ev import facility, suppression
from mobility_ev.errors import InvalidInput
from mobility_ev.inputs import FloatArray, IntArray, Trips, Zones
from mobility_ev.parameters import Parameters


@dataclass(frozen=True)
class Demand:
    """EV trip ends per zone (all agencies, and per agency) and their weight."""

    ends: IntArray  # per zone
    ends_by_party: list[IntArray]
    weight: FloatArray  # per zone: trip ends, or the EV km of those trips


def demand(trips: Trips, zones: Zones, params: Parameters) -> Demand:
    ev = np.isin(trips.vehicle, sorted(params.ev_vehicles))
    ends = {
        "destination": [trips.destination],
        "origin": [trips.origin],
        "both": [trips.origin, trips.destination],
    }[params.demand_end]
    zone = np.concatenate([z[ev] for z in ends])
    km = np.concatenate([trips.distance_km[ev]] * len(ends))
    n = len(zones.ids)
    count = np.bincount(zone, minlength=n).astype(np.int64)
    weight = (
        count.astype(np.float64)
        if params.weight == "trips"
        else np.bincount(zone, weights=km, minlength=n).astype(np.float64)
    )
    mine_all = trips.parties()
    by_party = [
        np.bincount(zone[np.concatenate([mine[ev]] * len(ends))], minlength=n).astype(np.int64)
        for _party, mine in mine_all
    ]
    return Demand(ends=count, ends_by_party=by_party, weight=weight)


def candidate_indices(zones: Zones, params: Parameters) -> IntArray:
    if params.candidates is None:
        chosen = np.arange(len(zones.ids), dtype=np.int64)
    else:
        wanted = np.asarray(params.candidates, dtype=np.int64)
        chosen = np.minimum(zones.index(wanted), len(zones.ids) - 1)
        if np.any(zones.ids[chosen] != wanted):
            raise InvalidInput(
                f"parameter 'candidates' names zones that are not in the zone table "
                f"(dataset {params.zones_dataset!r} column 'zone_id')"
            )
    if params.p > len(chosen):
        raise InvalidInput(
            f"parameter 'p' ({params.p}) is larger than the number of candidate sites "
            f"({len(chosen)}, parameter 'candidates')"
        )
    return chosen


def distances(zones: Zones, candidates: IntArray) -> FloatArray:
    """Straight-line km between zone centroids (demand zones × candidates)."""
    delta = zones.xy[:, None, :] - zones.xy[None, candidates, :]
    return np.asarray(np.sqrt((delta**2).sum(axis=2)), dtype=np.float64)


def _release(
    model: str,
    solution: facility.Siting,
    dist: FloatArray,
    need: Demand,
    zones: Zones,
    candidates: IntArray,
    params: Parameters,
    k: int,
) -> tuple[pd.DataFrame, dict[str, object]]:
    n_sites = len(solution.open)
    served = np.zeros(n_sites, dtype=np.int64)
    served_own = [np.zeros(n_sites, dtype=np.int64) for _ in need.ends_by_party]
    access = np.zeros(n_sites, dtype=np.float64)
    for s, site in enumerate(solution.open):
        mine = solution.assigned == site
        served[s] = need.ends[mine].sum()
        for a, ends in enumerate(need.ends_by_party):
            served_own[a][s] = ends[mine].sum()
        access[s] = (need.ends[mine] * dist[mine, site]).sum()
    total = int(served.sum())
    total_own = [int(part.sum()) for part in served_own]
    first = suppression.primary(served, served_own, k)
    total_first = bool(
        suppression.primary(np.array([total]), [np.array([t]) for t in total_own], k)[0]
    )
    withheld, total_withheld = suppression.protect_line(served, served_own, first, total_first)
    site_zone = candidates[solution.open]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_access = np.where(served > 0, access / np.maximum(served, 1), np.nan)
    table = pd.DataFrame(
        {
            "model": model,
            "zone": zones.ids[site_zone],
            "x_km": zones.xy[site_zone, 0],
            "y_km": zones.xy[site_zone, 1],
            "served_trip_ends": pd.array(served, dtype="Int64"),
            "mean_access_km": np.round(mean_access, 3),
        }
    )
    table.loc[withheld, "served_trip_ends"] = pd.NA
    table.loc[withheld, "mean_access_km"] = np.nan
    unit = {
        ("p-median", "trips"): "trip-end km",
        ("p-median", "km"): "EV-km × km",
        ("max-cover", "trips"): "trip ends covered",
        ("max-cover", "km"): "EV-km covered",
    }[model, params.weight]
    objective: dict[str, object] = {
        "model": model,
        "p": params.p,
        "candidates": len(candidates),
        "coverage_km": params.coverage_km if model == "max-cover" else np.nan,
        # The objective is a function of the same trip ends as the total.
        "objective": np.nan if total_withheld else round(solution.objective, 3),
        "objective_unit": unit,
        "trip_ends": pd.NA if total_withheld else total,
    }
    return table, objective


def choose_sites(
    trips: Trips, zones: Zones, params: Parameters, k: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chosen sites of both models (``sites``) and their objectives."""
    candidates = candidate_indices(zones, params)
    need = demand(trips, zones, params)
    dist = distances(zones, candidates)
    # Sites are candidate indices inside the models; ``assigned`` refers to them.
    median = facility.p_median(dist, need.weight, params.p)
    cover = facility.max_cover(dist, need.weight, params.p, params.coverage_km)
    tables, objectives = [], []
    for model, solution in (("p-median", median), ("max-cover", cover)):
        table, objective = _release(model, solution, dist, need, zones, candidates, params, k)
        tables.append(table)
        objectives.append(objective)
    summary = pd.DataFrame(objectives)
    summary["trip_ends"] = pd.array(summary["trip_ends"], dtype="Int64")
    return pd.concat(tables, ignore_index=True), summary
