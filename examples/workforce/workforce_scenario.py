"""`nestor demo --example workforce`: three organisations pool employee
records to learn how team structure relates to performance."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import workforce_data

from nestor.cli.demo_scenario import Scenario, ScenarioDataset

PARTIES = ("Alder Logistics", "Birch Software", "Cedar Health")
TEAMS_PER_ORGANISATION = 100  # at scale 1: about 2,700 employees, a fit of about a second
# About 9,500 employees in 1,050 teams: the plain fit takes roughly half a minute here.
BENCH_SCALE: float = 3.5
MIN_GROUP_SIZE = 10
COLUMNS = (
    ("employee", "string"),
    ("team", "string"),
    ("team_structure", "string"),
    ("tenure_years", "float"),
    ("remote_share", "float"),
    ("performance", "float"),
)


def teams_for(scale: float) -> int:
    return max(6, round(TEAMS_PER_ORGANISATION * scale))


def _rows(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def describe(party_name: str, files: Mapping[str, Path]) -> list[str]:
    lines = []
    meta_file = files.get("meta.json")
    meta = json.loads(meta_file.read_text()) if meta_file else {}
    level = meta.get("confidence_percent", "?")
    # The pooled model is the same for everyone: narrate it once.
    pooled = party_name == PARTIES[0]
    for row in _rows(files.get("fixed_effects.csv")):
        if pooled and row["kind"] == "structure":
            lines.append(
                f"{row['contrast']}: {float(row['estimate']):+.2f} points "
                f"({level}% CI {float(row['ci_lower']):+.2f} to {float(row['ci_upper']):+.2f})"
            )
    shares = {
        r["component"]: float(r["share"]) for r in _rows(files.get("variance_components.csv"))
    }
    if pooled and shares:
        lines.append(
            "variance: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        )
    own = _rows(files.get("by_organisation.csv"))
    datasets = sorted({r["dataset"] for r in own})
    lines.append(
        f"by_organisation: {len(own)} rows, for {', '.join(datasets) or 'no dataset'}; "
        f"{meta.get('suppressed_structure_levels', '?')} structure level(s) suppressed"
    )
    return lines


def build(work_dir: Path, *, seed: int, scale: float) -> Scenario:
    paths = workforce_data.write_organisations(
        work_dir, len(PARTIES), teams_for(scale), seed=seed, rare_teams=2
    )
    datasets = tuple(
        ScenarioDataset(
            dataset_id=f"org-{i + 1}",
            owner=i,
            description=f"Employee records of {name}: team, structure, tenure, performance",
            fmt="csv",
            columns=COLUMNS,
            path=path,
        )
        for i, (name, path) in enumerate(zip(PARTIES, paths, strict=True))
    )
    return Scenario(
        name="workforce",
        title="Employee performance under different team structures",
        collaboration_id="workforce-demo",
        parties=PARTIES,
        datasets=datasets,
        program_id="workforce",
        bundle=Path(__file__).parent / "program",
        entry_point="workforce_model.main:run",
        program_description=(
            "Three-level linear mixed model (organisation, team, employee) of performance "
            "on team structure and tenure; pooled estimates, small structure levels suppressed"
        ),
        parameters={
            "covariates": {"type": "string", "required": False},
            "reference_structure": {"type": "string", "required": False},
            "confidence_percent": {"type": "integer", "required": False},
            "min_teams": {"type": "integer", "required": False},
        },
        job_parameters={
            "covariates": "tenure_years,remote_share",
            "reference_structure": "flat",
        },
        # Competitors: each sees the pooled model and only its own descriptive rows.
        recipients=((0, "own"), (1, "own"), (2, "own")),
        min_group_size=MIN_GROUP_SIZE,
        describe_result=describe,
    )
