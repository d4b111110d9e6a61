"""`nestor demo --example dea`: three retailers benchmark their sites together.

Each retailer uploads its own sites' inputs and outputs; the enclave runs DEA
on the pooled sites and each retailer (view ``own``) receives its own sites'
scores and anonymous peers plus the suppressed pooled distribution.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import dea_data

from nestor.cli.demo_scenario import Scenario, ScenarioDataset

# 120 sites at scale 1; at 15, 1,800 sites and 10,800 LPs (both models, slacks):
# about 25-40 s on one core of the development VM.
BENCH_SCALE: float = 15.0
MIN_GROUP_SIZE = 5

COLUMN_TYPES = (
    ("site", "string"),
    ("staff_hours", "float"),
    ("floor_area_m2", "float"),
    ("opex", "float"),
    ("transactions", "integer"),
    ("revenue", "float"),
)
PARAMETERS = {
    "inputs": {"type": "string", "required": True, "description": "comma-separated input columns"},
    "outputs": {
        "type": "string",
        "required": True,
        "description": "comma-separated output columns",
    },
    "returns": {"type": "string", "required": False, "description": "crs, vrs or both"},
    "orientation": {"type": "string", "required": False, "description": "input or output"},
    "slacks": {"type": "boolean", "required": False, "description": "second-stage slacks"},
    "peer_weights": {
        "type": "boolean",
        "required": False,
        "description": "release peer weights (lambda) with the anonymous peers",
    },
}
JOB_PARAMETERS = {
    "inputs": ",".join(dea_data.INPUTS),
    "outputs": ",".join(dea_data.OUTPUTS),
    "returns": "both",
    "orientation": "input",
    "slacks": True,
    "peer_weights": True,
}


def _rows(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def describe(party_name: str, files: Mapping[str, Path]) -> list[str]:
    scores = _rows(files.get("scores.csv"))
    peers = _rows(files.get("peers.csv"))
    distribution = _rows(files.get("distribution.csv"))
    lines = []
    if scores:
        theta = sorted(float(r["theta_crs"]) for r in scores if r.get("theta_crs"))
        efficient = sum(r.get("efficient_crs") == "True" for r in scores)
        median = theta[len(theta) // 2] if theta else float("nan")
        lines.append(
            f"scores: {len(scores)} own sites, {efficient} CRS-efficient, "
            f"median theta_crs {median:.3f}"
        )
    labels = {r["peer"] for r in peers if r["peer_own"] == "False"}
    lines.append(
        f"peers: {len(peers)} rows; {len(labels)} competitor sites appear only as labels "
        f"({', '.join(sorted(labels)[:3])}…)"
        if labels
        else f"peers: {len(peers)} rows, all own sites"
    )
    crs_bins = [f"{r['bin']}: {r['sites']}" for r in distribution if r["model"] == "crs"]
    lines.append("all sites, CRS efficiency: " + "; ".join(crs_bins))
    return lines


def build(work_dir: Path, *, seed: int, scale: float) -> Scenario:
    paths = dea_data.write_retailers(work_dir, seed=seed, scale=scale)
    datasets = tuple(
        ScenarioDataset(
            dataset_id=f"sites-{i + 1}",
            owner=i,
            description=f"Yearly inputs and outputs of {retailer.name}'s sites",
            fmt="csv",
            columns=COLUMN_TYPES,
            path=path,
        )
        for i, (retailer, path) in enumerate(zip(dea_data.RETAILERS, paths, strict=True))
    )
    return Scenario(
        name="dea",
        title="Efficiency benchmarking of retail sites (DEA)",
        collaboration_id="retail-dea-demo",
        parties=tuple(r.name for r in dea_data.RETAILERS),
        datasets=datasets,
        program_id="dea",
        bundle=Path(__file__).parent / "program",
        entry_point="dea_analysis.main:run",
        program_description=(
            "CCR and BCC data envelopment analysis of the pooled sites; each retailer gets "
            "its own sites' scores and anonymous peers and the k-suppressed distribution"
        ),
        parameters=PARAMETERS,
        job_parameters=JOB_PARAMETERS,
        recipients=tuple((i, "own") for i in range(len(dea_data.RETAILERS))),
        min_group_size=MIN_GROUP_SIZE,
        describe_result=describe,
    )
