"""`nestor demo --example ehr-lstm` end to end: three hospitals, real host,
simulated enclave, sandboxed training."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

OUTPUTS = {
    "weights.csv",
    "standardisation.csv",
    "model.json",
    "training.csv",
    "performance.csv",
    "site_performance.csv",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_demo_gives_every_hospital_the_model_and_only_its_own_site_rows(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    env = {**os.environ, "NESTOR_CONFIG_DIR": str(tmp_path / "config")}
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "demo", "--example", "ehr-lstm",
        "--scale", "0.5", "--workspace", str(workspace),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")

    results = [workspace / f"party-{n}" / "results" for n in (1, 2, 3)]
    for r in results:
        assert {p.name for p in r.iterdir()} >= OUTPUTS
    # The model and the pooled figures are the same for every hospital.
    for name in ("weights.csv", "standardisation.csv", "model.json", "performance.csv"):
        assert len({(r / name).read_bytes() for r in results}) == 1, name

    # Northside (view full) sees every hospital's row; the others only their own.
    full = _rows(results[0] / "site_performance.csv")
    assert [r["dataset"] for r in full] == ["ehr-1", "ehr-2", "ehr-3"]
    owners = {r["dataset"]: r["_owner"] for r in full}
    assert len(set(owners.values())) == 3
    for n in (2, 3):
        own = _rows(results[n - 1] / "site_performance.csv")
        assert [r["dataset"] for r in own] == [f"ehr-{n}"]
        assert own[0]["_owner"] == owners[f"ehr-{n}"]
        text = (results[n - 1] / "site_performance.csv").read_text()
        for other in {"ehr-1", "ehr-2", "ehr-3"} - {f"ehr-{n}"}:
            assert other not in text
            assert owners[other] not in text

    card = json.loads((results[0] / "model.json").read_text())
    generated = workspace / "generated"
    patients = sum(
        len({row["patient"] for row in _rows(generated / f"ehr-{n}.csv")}) for n in (1, 2, 3)
    )
    assert sum(card["patients"].values()) == patients == 700
    assert int(_rows(results[0] / "performance.csv")[0]["held_out"]) == card["patients"]["held_out"]
    # 100 Lakeside patients, 30 held out: too few positives for k = 10.
    lakeside = full[2]
    assert lakeside["auroc_suppressed"] == "True"
    assert lakeside["auroc"] == lakeside["held_out_positive"] == ""
    assert "pooled held-out AUROC 0." in done.stderr
