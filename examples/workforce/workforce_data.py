"""Synthetic employee records for the workforce example, with known effects.

Each organisation's file holds one row per employee: ``employee``, ``team``,
``team_structure`` (a team-level attribute: ``flat``, ``hierarchical`` or
``matrix``), ``tenure_years``, ``remote_share`` (0-1) and ``performance``.
Performance follows the three-level model the program fits::

    performance = intercept + structure effect + tenure_slope * tenure_years
                  + remote_slope * remote_share
                  + u_org + u_team + e,
    u_org ~ N(0, org_var), u_team ~ N(0, team_var), e ~ N(0, residual_var)

so tests can check that the fit recovers :data:`TRUTH`. With ``rare_teams``
an organisation also gets a few small teams of a rare structure
(``holacracy``), fewer employees than any sensible *k*, so the program has
something to suppress.

    python examples/workforce/workforce_data.py OUT_DIR [--organisations 3] [--teams 60]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("employee", "team", "team_structure", "tenure_years", "remote_share", "performance")
STRUCTURES = ("flat", "hierarchical", "matrix")
RARE_STRUCTURE = "holacracy"


@dataclass(frozen=True)
class Truth:
    """The generating model's parameters (structure effects relative to ``flat``)."""

    intercept: float = 62.0
    structure_effects: Mapping[str, float] = field(
        default_factory=lambda: {"flat": 0.0, "hierarchical": -2.5, "matrix": 1.5}
    )
    tenure_slope: float = 0.6
    remote_slope: float = 3.0
    org_var: float = 4.0
    team_var: float = 6.25
    residual_var: float = 36.0


TRUTH = Truth()


def organisation_table(
    org: int,
    *,
    teams: int,
    rng: np.random.Generator,
    org_effect: float,
    truth: Truth = TRUTH,
    mean_team_size: float = 9.0,
    structure_weights: tuple[float, ...] = (0.4, 0.35, 0.25),
    rare_teams: int = 0,
) -> pd.DataFrame:
    """One organisation's employees; team sizes are 3 + Poisson."""
    probs = np.asarray(structure_weights, dtype=float)
    structures = list(rng.choice(STRUCTURES, size=teams, p=probs / probs.sum()))
    # Every organisation gets every structure, so the contrast exists within each.
    for i, s in enumerate(STRUCTURES[: min(teams, len(STRUCTURES))]):
        structures[i] = s
    structures += [RARE_STRUCTURE] * rare_teams
    effects = {**truth.structure_effects, RARE_STRUCTURE: 0.0}
    parts = []
    for t, structure in enumerate(structures):
        size = 3 if structure == RARE_STRUCTURE else 3 + int(rng.poisson(mean_team_size - 3))
        team_effect = rng.normal(0.0, np.sqrt(truth.team_var))
        tenure = np.round(rng.gamma(2.0, 2.5, size=size), 1)
        remote = np.round(rng.beta(2.0, 3.0, size=size), 2)
        noise = rng.normal(0.0, np.sqrt(truth.residual_var), size=size)
        performance = (
            truth.intercept
            + effects[structure]
            + truth.tenure_slope * tenure
            + truth.remote_slope * remote
            + org_effect
            + team_effect
            + noise
        )
        parts.append(
            pd.DataFrame(
                {
                    "team": f"O{org:02d}-T{t + 1:04d}",
                    "team_structure": structure,
                    "tenure_years": tenure,
                    "remote_share": remote,
                    "performance": np.round(performance, 2),
                }
            )
        )
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "employee", [f"O{org:02d}-E{i + 1:06d}" for i in range(len(table))])
    return table


def organisation_tables(
    organisations: int,
    teams: int,
    *,
    seed: int,
    truth: Truth = TRUTH,
    rare_teams: int = 0,
) -> list[pd.DataFrame]:
    """``organisations`` tables of ``teams`` teams each; the first gets ``rare_teams``."""
    rng = np.random.default_rng(seed)
    org_effects = rng.normal(0.0, np.sqrt(truth.org_var), size=organisations)
    return [
        organisation_table(
            i + 1,
            teams=teams,
            rng=rng,
            org_effect=float(org_effects[i]),
            truth=truth,
            rare_teams=rare_teams if i == 0 else 0,
        )
        for i in range(organisations)
    ]


def write_organisations(
    out_dir: Path, organisations: int, teams: int, *, seed: int, rare_teams: int = 2
) -> list[Path]:
    """Writes ``org-1.csv`` … and returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    tables = organisation_tables(organisations, teams, seed=seed, rare_teams=rare_teams)
    for i, table in enumerate(tables):
        path = out_dir / f"org-{i + 1}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--organisations", type=int, default=3)
    parser.add_argument("--teams", type=int, default=60, help="teams per organisation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rare-teams", type=int, default=2)
    args = parser.parse_args()
    for path in write_organisations(
        args.out_dir, args.organisations, args.teams, seed=args.seed, rare_teams=args.rare_teams
    ):
        print(path)


if __name__ == "__main__":
    main()
