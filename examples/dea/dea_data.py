"""Synthetic retail sites with a known efficient frontier, for the dea example.

    python examples/dea/dea_data.py OUT_DIR [--scale 1.0] [--seed 0] [--truth]

writes OUT_DIR/sites-1.csv … (one per retailer) with the columns site,
staff_hours, floor_area_m2, opex (inputs), transactions, revenue (outputs);
``--truth`` also writes truth-N.csv with each site's true efficiency (never
part of a party's upload).

The technology is known, so tests can check recovery. A site's frontier
output level is Cobb-Douglas in its inputs with constant returns,
``f(x) = prod_i (x_i / base_i) ** beta_i`` with ``sum(beta) = rts`` (1 by
default); its two outputs sit on the quarter circle ``|y*| = f(x)`` at a
random mix angle, scaled to transactions and revenue; observed outputs are
``y = u * y*`` with ``u = exp(-|N(0, sigma)|)`` (half-normal inefficiency,
``sigma`` per retailer). The technology set is convex and has free
disposal, so with ``rts = 1`` the true radial efficiency of a site is ``u``
in either orientation and DEA's CRS estimate can only be at or above it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

INPUTS = ("staff_hours", "floor_area_m2", "opex")
OUTPUTS = ("transactions", "revenue")
COLUMNS = ("site", *INPUTS, *OUTPUTS)
# Typical yearly values of a mid-sized store: the unit of each column.
INPUT_BASE = (30_000.0, 1_800.0, 1_200_000.0)
OUTPUT_BASE = (400_000.0, 12_000_000.0)
BETA = (0.4, 0.25, 0.35)
DECIMALS = {"staff_hours": 0, "floor_area_m2": 1, "opex": 2, "transactions": 0, "revenue": 2}


@dataclass(frozen=True)
class Retailer:
    name: str
    prefix: str  # site ids look like AUR-0001
    sites: int  # at scale 1
    sigma: float  # half-normal inefficiency spread


RETAILERS = (
    Retailer("Aurora Markets", "AUR", 50, 0.15),
    Retailer("Birch & Co", "BIR", 40, 0.25),
    Retailer("Cobalt Stores", "COB", 30, 0.35),
)


def generate_sites(
    n: int, *, seed: int, sigma: float, prefix: str = "S", rts: float = 1.0
) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` sites (a table with COLUMNS) and each site's true efficiency ``u``."""
    rng = np.random.default_rng(seed)
    size = rng.lognormal(0.0, 0.5, n)
    mix = rng.lognormal(0.0, 0.25, (n, len(INPUTS)))
    x = size[:, None] * mix * np.asarray(INPUT_BASE)
    frontier = np.prod((x / np.asarray(INPUT_BASE)) ** (np.asarray(BETA) * rts), axis=1)
    angle = rng.uniform(0.2, np.pi / 2 - 0.2, n)
    y_star = frontier[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    u = np.exp(-np.abs(rng.normal(0.0, sigma, n))) if sigma > 0 else np.ones(n)
    y = u[:, None] * y_star * np.asarray(OUTPUT_BASE)
    table = pd.DataFrame({"site": [f"{prefix}-{i + 1:04d}" for i in range(n)]})
    for j, column in enumerate(INPUTS):
        table[column] = np.round(x[:, j], DECIMALS[column])
    for j, column in enumerate(OUTPUTS):
        table[column] = np.round(y[:, j], DECIMALS[column])
    table["transactions"] = table["transactions"].astype(np.int64)
    return table, u


def site_count(retailer: Retailer, scale: float) -> int:
    return max(1, round(retailer.sites * scale))


def write_retailers(
    out_dir: Path, *, seed: int = 0, scale: float = 1.0, truth: bool = False
) -> list[Path]:
    """One CSV per retailer (sites-1.csv …); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, retailer in enumerate(RETAILERS):
        table, u = generate_sites(
            site_count(retailer, scale),
            seed=seed * 1000 + i + 1,
            sigma=retailer.sigma,
            prefix=retailer.prefix,
        )
        path = out_dir / f"sites-{i + 1}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
        if truth:
            pd.DataFrame({"site": table["site"], "true_efficiency": u}).to_csv(
                out_dir / f"truth-{i + 1}.csv", index=False
            )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth", action="store_true", help="also write true efficiencies")
    args = parser.parse_args()
    for path in write_retailers(args.out_dir, seed=args.seed, scale=args.scale, truth=args.truth):
        print(path)


if __name__ == "__main__":
    main()
