"""`nestor demo --example mobility-ev`: three transport agencies pool trip
records for an origin–destination matrix and EV charging sites."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import mobility_ev_data as data

from nestor.cli.demo_scenario import Scenario, ScenarioDataset

# 2.9 million trips over 720 zones, 60 sites among 360 candidates: a plain run
# takes about 12 s on the 2-core development VM (2 GB resident), most of it
# HiGHS solving the p-median model.
BENCH_SCALE: float = 400.0
MIN_GROUP_SIZE = 10
COVERAGE_M = 3000

TRIP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trip_id", "string"),
    ("origin_zone", "integer"),
    ("destination_zone", "integer"),
    ("departure_hour", "integer"),
    ("mode", "string"),
    ("distance_km", "float"),
    ("vehicle", "string"),
)
PARAMETERS: Mapping[str, Mapping[str, object]] = {
    "zones_dataset": {"type": "string", "required": False},
    "p": {"type": "integer", "required": True},
    "coverage_m": {"type": "integer", "required": False},
    "candidates": {"type": "string", "required": False},
    "ev_vehicles": {"type": "string", "required": False},
    "demand_end": {"type": "string", "required": False},
    "weight": {"type": "string", "required": False},
}


def job_parameters(zone_ids: list[int]) -> dict[str, object]:
    """Every other zone is a candidate site (say, where the region owns land);
    about one site per dozen zones."""
    return {
        "p": max(4, len(zone_ids) // 12),
        "coverage_m": COVERAGE_M,
        "candidates": ",".join(str(z) for z in sorted(zone_ids)[::2]),
        "demand_end": "destination",
        "weight": "trips",
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def describe(party_name: str, files: Mapping[str, Path]) -> list[str]:
    lines: list[str] = []
    if "od_matrix.csv" in files:
        cells = _rows(files["od_matrix.csv"])
        shown = sum(int(r["trips"]) for r in cells)
        lines.append(f"OD matrix: {len(cells)} published cells holding {shown:,} trips")
    if "sites.csv" in files:
        sites = [r for r in _rows(files["sites.csv"]) if r["model"] == "p-median"]
        lines.append(
            "p-median sites (zone: EV trip ends served): "
            + ", ".join(f"{r['zone']}: {r['served_trip_ends'] or 'withheld'}" for r in sites[:6])
            + (" …" if len(sites) > 6 else "")
        )
    if "objectives.csv" in files:
        for r in _rows(files["objectives.csv"]):
            lines.append(f"{r['model']}: objective {r['objective']} {r['objective_unit']}")
    if "own_zone_trips.csv" in files:
        own = _rows(files["own_zone_trips.csv"])
        owners = {r["_owner"] for r in own}
        lines.append(f"own trips by zone: {len(own)} rows from {len(owners)} agency(ies)")
    return lines


def build(work_dir: Path, *, seed: int, scale: float) -> Scenario:
    paths = data.write_region(work_dir, seed=seed, scale=scale)
    zone_ids = [int(r["zone_id"]) for r in _rows(paths["zones"])]
    datasets = [
        ScenarioDataset(
            dataset_id="zones",
            owner=0,
            description="Zone system of the region: zone ids and centroids (km)",
            fmt="csv",
            columns=(("zone_id", "integer"), ("x_km", "float"), ("y_km", "float")),
            path=paths["zones"],
        )
    ]
    for number, agency in enumerate(data.AGENCIES, start=1):
        datasets.append(
            ScenarioDataset(
                dataset_id=f"trips-{number}",
                owner=number - 1,
                description=f"Trip records of {agency.name}",
                fmt="csv",
                columns=TRIP_COLUMNS,
                path=paths[f"trips-{number}"],
            )
        )
    return Scenario(
        name="mobility-ev",
        title="Regional travel flows and EV charging sites",
        collaboration_id="mobility-ev-demo",
        parties=tuple(a.name for a in data.AGENCIES),
        datasets=tuple(datasets),
        program_id="mobility-ev",
        bundle=Path(__file__).parent / "program",
        entry_point="mobility_ev.main:run",
        program_description=(
            "Pooled origin–destination matrix with small cells withheld (complementary "
            "suppression); p-median and maximal-covering choice of EV charging sites"
        ),
        parameters=PARAMETERS,
        job_parameters=job_parameters(zone_ids),
        recipients=((0, "full"), (1, "own"), (2, "own")),
        min_group_size=MIN_GROUP_SIZE,
        describe_result=describe,
    )
