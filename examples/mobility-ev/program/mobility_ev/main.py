"""Origin–destination flows and EV charging sites from several agencies' trips.

Entry point ``mobility_ev.main:run`` (docs/programs.md). One input (by
default ``zones``) is the zone table (``zone_id``, ``x_km``, ``y_km``); every
other input is one agency's trips (``trip_id``, ``origin_zone``,
``destination_zone``, ``departure_hour``, ``mode``, ``distance_km``,
``vehicle``). Outputs:

- ``od_matrix`` (table): pooled trips per origin and destination zone, only
  the cells that may be published;
- ``od_totals`` (table): trips from and to each zone, blank where withheld;
- ``sites`` (table): the sites each model opens, the EV trip ends each
  serves and their mean straight-line access distance (blank where withheld);
- ``objectives`` (table): each model's objective value;
- ``own_zone_trips`` (table, ``_owner``): each agency's own trips from and to
  each zone;
- ``meta`` (dict): sizes, parameters and how many cells were withheld.

Withholding rules: :mod:`mobility_ev.suppression`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mobility_ev import od_matrix, siting
from mobility_ev.errors import InvalidInput
from mobility_ev.inputs import read_trips, read_zones
from mobility_ev.parameters import parse

__all__ = ["InvalidInput", "run"]


def run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], context: Any
) -> dict[str, pd.DataFrame | dict[str, Any]]:
    params = parse(parameters)
    k = int(context.min_group_size)
    if params.zones_dataset not in inputs:
        raise InvalidInput(
            f"there is no input dataset {params.zones_dataset!r} "
            "(parameter 'zones_dataset' names the zone table)"
        )
    zones = read_zones(inputs[params.zones_dataset], params.zones_dataset)
    trip_tables = {ds: t for ds, t in inputs.items() if ds != params.zones_dataset}
    trips = read_trips(trip_tables, context.owners, zones)
    siting.candidate_indices(zones, params)  # parameter errors before any solving

    od = od_matrix.release(trips, zones, k)
    sites, objectives = siting.choose_sites(trips, zones, params, k)
    meta: dict[str, Any] = {
        "min_group_size": k,
        "zones": len(zones.ids),
        "agencies": len(trips.agencies),
        "od_total_trips": od.grand_total,
        "od_cells_published": len(od.matrix),
        "od_cells_withheld_primary": od.primary_cells,
        "od_cells_withheld_complementary": od.complementary_cells,
        "p": params.p,
        "demand_end": params.demand_end,
        "weight": params.weight,
        "ev_vehicles": sorted(params.ev_vehicles),
        "distance": "straight line between zone centroids (km)",
    }
    return {
        "od_matrix": od.matrix,
        "od_totals": od.totals,
        "sites": sites,
        "objectives": objectives,
        "own_zone_trips": od_matrix.own_counts(trips, zones, k, od.totals),
        "meta": meta,
    }
