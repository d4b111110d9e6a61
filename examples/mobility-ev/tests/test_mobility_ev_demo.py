"""`nestor demo --example mobility-ev` end to end, at a small scale: real host,
simulated enclave, sandbox, sealed results per recipient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mobility_ev_scenario
import pandas as pd

K = mobility_ev_scenario.MIN_GROUP_SIZE


def test_demo_runs_and_each_agency_gets_what_its_view_allows(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    env = {**os.environ, "NESTOR_CONFIG_DIR": str(tmp_path / "config")}
    command = [
        sys.executable, "-m", "nestor.cli.main", "demo", "--example", "mobility-ev",
        "--scale", "0.3", "--workspace", str(workspace),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")

    results = [workspace / f"party-{i}" / "results" for i in (1, 2, 3)]
    own = [pd.read_csv(r / "own_zone_trips.csv") for r in results]
    # Party 1 has the full view: every agency's rows. Parties 2 and 3 have
    # view "own": their own rows only, never party 1's or each other's.
    owners = [set(table["_owner"]) for table in own]
    assert len(owners[0]) == 3
    assert len(owners[1]) == 1
    assert len(owners[2]) == 1
    assert owners[1] != owners[2]
    assert (owners[1] | owners[2]) < owners[0]
    assert len(own[1]) < len(own[0])

    # Aggregates reach everyone alike, and no published cell is small.
    for name in ("od_matrix.csv", "od_totals.csv", "sites.csv", "objectives.csv"):
        texts = {(r / name).read_text() for r in results}
        assert len(texts) == 1, name
    od = pd.read_csv(results[1] / "od_matrix.csv")
    assert len(od) > 0
    assert (od["trips"] >= K).all()
    totals = pd.read_csv(results[1] / "od_totals.csv")
    assert (totals[["trips_from", "trips_to"]].stack().dropna() >= K).all()
    for table in own:
        assert (table[["trips_from", "trips_to"]].stack().dropna() >= K).all()
    sites = pd.read_csv(results[2] / "sites.csv")
    p = mobility_ev_scenario.job_parameters(list(range(12)))["p"]
    assert sorted(sites["model"].value_counts().tolist()) == [p, p]
    generated = pd.read_csv(workspace / "generated" / "zones.csv")
    assert set(sites["zone"]) <= set(generated["zone_id"])
