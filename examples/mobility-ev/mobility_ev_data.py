"""Synthetic trips for the mobility-ev example: a region, its zones and three
agencies' trip records.

The region is 60 km × 40 km with a city and three towns. Zones are points
(centroids) scattered around those centres; each has a population and an
attraction (jobs, shops). Trips follow a gravity model: an origin drawn by
population, a destination by attraction × exp(−distance / 8 km). Each agency
sees a different slice of travel (transit riders, a car-share fleet, a
household survey), with its own mode mix and share of electric vehicles.

    python examples/mobility-ev/mobility_ev_data.py OUT_DIR [--seed 0] [--scale 1]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

WIDTH_KM, HEIGHT_KM = 60.0, 40.0
# (x, y, spread in km, share of zones)
CENTRES = (
    (30.0, 20.0, 6.0, 0.5),
    (10.0, 30.0, 3.0, 0.17),
    (50.0, 8.0, 3.0, 0.17),
    (48.0, 33.0, 3.0, 0.16),
)
GRAVITY_KM = 8.0
BASE_ZONES = 36
BASE_TRIPS = 3000  # per agency at scale 1


@dataclass(frozen=True)
class Agency:
    name: str
    prefix: str  # of trip ids
    modes: tuple[tuple[str, float], ...]
    ev_share: float  # of car and van trips
    phev_share: float
    city_bias: float  # > 0: origins drawn towards the city centre
    volume: float  # trips relative to BASE_TRIPS


AGENCIES = (
    Agency(
        "Metro Transit Authority", "MTA",
        (("bus", 0.45), ("rail", 0.3), ("car", 0.15), ("bike", 0.1)), 0.15, 0.05, 1.0, 1.0,
    ),
    Agency(
        "Coastal Car-Share Co-op", "CCS", (("car", 0.88), ("van", 0.12)), 0.5, 0.1, 0.3, 0.6,
    ),
    Agency(
        "Valley Household Travel Survey", "VTS",
        (("car", 0.6), ("bus", 0.1), ("bike", 0.1), ("walk", 0.2)), 0.2, 0.08, 0.0, 0.8,
    ),
)  # fmt: skip
TRIP_COLUMNS = (
    "trip_id",
    "origin_zone",
    "destination_zone",
    "departure_hour",
    "mode",
    "distance_km",
    "vehicle",
)


def zone_count(scale: float) -> int:
    # Zone counts grow with the square root of the trips: finer zones, busier cells.
    return max(8, round(BASE_ZONES * math.sqrt(scale)))


def make_zones(n_zones: int, seed: int) -> pd.DataFrame:
    """Zone ids (not 0-based, not contiguous: ids are labels) and centroids."""
    rng = np.random.default_rng(seed)
    shares = np.array([c[3] for c in CENTRES])
    centre = rng.choice(len(CENTRES), size=n_zones, p=shares / shares.sum())
    centre[: len(CENTRES)] = np.arange(len(CENTRES))  # every centre has a zone
    xy = np.array([CENTRES[c][:2] for c in centre]) + rng.normal(size=(n_zones, 2)) * np.array(
        [[CENTRES[c][2]] for c in centre]
    )
    xy[:, 0] = np.clip(xy[:, 0], 0.5, WIDTH_KM - 0.5)
    xy[:, 1] = np.clip(xy[:, 1], 0.5, HEIGHT_KM - 0.5)
    ids = 100 + np.sort(rng.choice(np.arange(1, 5 * n_zones), size=n_zones, replace=False))
    return pd.DataFrame({"zone_id": ids, "x_km": xy[:, 0].round(3), "y_km": xy[:, 1].round(3)})


def _zone_weights(zones: pd.DataFrame, seed: int) -> tuple[npt.NDArray[np.float64], ...]:
    rng = np.random.default_rng(seed + 7919)
    xy = zones[["x_km", "y_km"]].to_numpy()
    to_city = np.hypot(xy[:, 0] - CENTRES[0][0], xy[:, 1] - CENTRES[0][1])
    population = rng.lognormal(0.0, 0.5, len(zones))
    attraction = rng.lognormal(0.0, 0.7, len(zones)) * (1 + 3 * np.exp(-to_city / 5))
    return population, attraction, to_city


def make_trips(zones: pd.DataFrame, agency: Agency, n_trips: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    population, attraction, to_city = _zone_weights(zones, seed=0)
    xy = zones[["x_km", "y_km"]].to_numpy()
    ids = zones["zone_id"].to_numpy()
    start = population * np.exp(-agency.city_bias * to_city / 10)
    origin = rng.choice(len(zones), size=n_trips, p=start / start.sum())
    between = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    pull = attraction[None, :] * np.exp(-between / GRAVITY_KM)
    cumulative = np.cumsum(pull / pull.sum(axis=1, keepdims=True), axis=1)
    draw = rng.random(n_trips)
    destination = np.empty(n_trips, dtype=np.int64)
    for zone in range(len(zones)):  # inverse CDF of each origin's destinations
        mine = origin == zone
        destination[mine] = np.searchsorted(cumulative[zone], draw[mine], side="right")
    destination = np.minimum(destination, len(zones) - 1)
    length = between[origin, destination] * rng.uniform(1.15, 1.45, n_trips)
    inside = origin == destination
    length[inside] = rng.uniform(0.5, 3.0, int(inside.sum()))
    names = [m for m, _ in agency.modes]
    weights = np.array([w for _, w in agency.modes])
    mode = np.asarray(names, dtype=object)[
        rng.choice(len(names), size=n_trips, p=weights / weights.sum())
    ]
    motor = np.isin(mode, ["car", "van"])
    u = rng.random(n_trips)
    vehicle = np.where(
        motor,
        np.where(
            u < agency.ev_share,
            "ev",
            np.where(u < agency.ev_share + agency.phev_share, "phev", "ice"),
        ),
        "none",
    )
    peak = rng.choice([8, 17, 12], size=n_trips, p=[0.4, 0.4, 0.2])
    hour = np.clip(np.rint(peak + rng.normal(0, 2.0, n_trips)), 0, 23).astype(np.int64)
    return pd.DataFrame(
        {
            "trip_id": [f"{agency.prefix}-{seed % 1000:03d}-{i:07d}" for i in range(n_trips)],
            "origin_zone": ids[origin],
            "destination_zone": ids[destination],
            "departure_hour": hour,
            "mode": mode,
            "distance_km": length.round(2),
            "vehicle": vehicle,
        }
    )


def write_region(out_dir: Path, *, seed: int, scale: float) -> dict[str, Path]:
    """Writes ``zones.csv`` and ``trips-1.csv`` … (one per agency); returns the
    paths by dataset id."""
    out_dir.mkdir(parents=True, exist_ok=True)
    zones = make_zones(zone_count(scale), seed)
    paths = {"zones": out_dir / "zones.csv"}
    zones.to_csv(paths["zones"], index=False)
    for number, agency in enumerate(AGENCIES, start=1):
        n_trips = max(50, round(BASE_TRIPS * agency.volume * scale))
        trips = make_trips(zones, agency, n_trips, seed=seed * 100 + number)
        paths[f"trips-{number}"] = out_dir / f"trips-{number}.csv"
        trips.to_csv(paths[f"trips-{number}"], index=False)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    for dataset, path in write_region(args.out_dir, seed=args.seed, scale=args.scale).items():
        print(f"{dataset}: {path}")


if __name__ == "__main__":
    main()
