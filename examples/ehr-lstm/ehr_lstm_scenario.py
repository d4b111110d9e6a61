"""`nestor demo --example ehr-lstm`: three hospitals train one early-warning model.

Each hospital uploads a day of hourly vitals and labs of its ICU patients
with their outcome; the enclave trains an LSTM on the pooled patients and
releases the weights and the pooled held-out AUROC to every hospital. The
coordinating hospital (view ``full``) also sees every hospital's held-out
AUROC; the others (view ``own``) only their own.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import ehr_lstm_data

from nestor.cli.demo_scenario import Scenario, ScenarioDataset

# 1,400 patients at scale 1 (about 2 s in the sandbox, 1 s of it training).
# At 80: 112,000 patients, 2.7M hourly rows, 109 MB of CSV; about 20 s on one
# core, plain or sandboxed, 1.8 GB resident.
BENCH_SCALE: float = 80.0
MIN_GROUP_SIZE = 10

COLUMN_TYPES = (
    ("patient", "string"),
    ("hour", "integer"),
    *((v, "float") for v in ehr_lstm_data.VARIABLES),
    ("target", "integer"),
)
PARAMETERS: dict[str, dict[str, object]] = {
    "variables": {
        "type": "string",
        "required": False,
        "description": "comma-separated measurement columns (default: all eight)",
    },
    "hidden_size": {"type": "integer", "required": False, "description": "LSTM hidden units"},
    "max_epochs": {"type": "integer", "required": False, "description": "epochs at most"},
    "patience": {
        "type": "integer",
        "required": False,
        "description": "stop after this many epochs without a better validation loss",
    },
    "batch_size": {"type": "integer", "required": False, "description": "mini-batch size"},
    "learning_rate": {"type": "number", "required": False, "description": "Adam step size"},
    "test_fraction": {
        "type": "number",
        "required": False,
        "description": "share of each hospital's patients held out for the AUROC",
    },
    "validation_fraction": {
        "type": "number",
        "required": False,
        "description": "share of the training patients used for early stopping",
    },
    "seed": {"type": "integer", "required": False, "description": "split and training seed"},
}
JOB_PARAMETERS: dict[str, object] = {"hidden_size": 32, "max_epochs": 30, "seed": 1}


def _rows(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _auroc(row: Mapping[str, str]) -> str:
    if row.get("auroc_suppressed") == "True":
        return "suppressed (fewer than k held-out positives or negatives)"
    return f"{float(row['auroc']):.3f}"


def describe(party_name: str, files: Mapping[str, Path]) -> list[str]:
    lines = []
    card_path = files.get("model.json")
    if card_path is not None:
        card = json.loads(card_path.read_text())
        lines.append(
            f"model: LSTM, {card['hidden_size']} hidden units, {card['weights']:,} weights, "
            f"best of {card['epochs_run']} epochs = {card['best_epoch']}; trained on "
            f"{card['patients']['train']:,} patients"
        )
    for row in _rows(files.get("performance.csv")):
        lines.append(f"pooled held-out AUROC {_auroc(row)} ({row['held_out']} patients)")
    for row in _rows(files.get("site_performance.csv")):
        lines.append(
            f"{row['dataset']}: {row['patients']} patients, held-out AUROC {_auroc(row)} "
            f"({row['held_out']} held out)"
        )
    return lines


def build(work_dir: Path, *, seed: int, scale: float) -> Scenario:
    paths = ehr_lstm_data.write_sites(work_dir, seed=seed, scale=scale)
    hospitals = ehr_lstm_data.HOSPITALS
    datasets = tuple(
        ScenarioDataset(
            dataset_id=f"ehr-{i + 1}",
            owner=i,
            description=f"First 24 hours of hourly vitals and labs of {h.name}'s ICU patients",
            fmt="csv",
            columns=COLUMN_TYPES,
            path=path,
        )
        for i, (h, path) in enumerate(zip(hospitals, paths, strict=True))
    )
    return Scenario(
        name="ehr-lstm",
        title="Early-warning model for ICU deterioration trained across hospitals (LSTM)",
        collaboration_id="ehr-lstm-demo",
        parties=tuple(h.name for h in hospitals),
        datasets=datasets,
        program_id="ehr-lstm",
        bundle=Path(__file__).parent / "program",
        entry_point="ehr_lstm.main:run",
        program_description=(
            "LSTM over the first 24 hours of vitals and labs, trained on the pooled patients; "
            "weights and pooled held-out AUROC to all, each hospital's AUROC to itself "
            "(and to the coordinating hospital), small cells suppressed"
        ),
        parameters=PARAMETERS,
        job_parameters=JOB_PARAMETERS,
        # Northside coordinates the study and sees every hospital's performance.
        recipients=((0, "full"), (1, "own"), (2, "own")),
        min_group_size=MIN_GROUP_SIZE,
        describe_result=describe,
    )
