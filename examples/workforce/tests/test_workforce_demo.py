"""`nestor demo --example workforce`, end to end in a subprocess: three
organisations, the real host and simulated enclave, sealed results."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

DEMO = (sys.executable, "-m", "nestor.cli.main", "demo", "--example", "workforce")


DEMO = (sys.executable, "-m", "nestor.cli.main", "demo", "--example", "workforce")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_demo_runs_and_each_organisation_sees_only_its_own_rows(tmp_path: Path) -> None:
    env = {**os.environ, "NESTOR_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    env.pop("NESTOR_PROGRAMS_DIR", None)
    workspace = tmp_path / "ws"
    proc = subprocess.run(
        [*DEMO, "--scale", "0.3", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo finished" in proc.stderr
    assert "Traceback" not in proc.stderr

    results = [workspace / f"party-{i}" / "results" for i in (1, 2, 3)]
    fixed = [rows(r / "fixed_effects.csv") for r in results]
    # The pooled model is the same for everyone.
    assert fixed[0] == fixed[1] == fixed[2]
    assert {r["contrast"] for r in fixed[0] if r["kind"] == "structure"} == {
        "hierarchical vs flat",
        "matrix vs flat",
    }
    meta = json.loads((results[1] / "meta.json").read_text())
    assert meta["suppressed_structure_levels"] == 1
    assert meta["organisations"] == 3
    components = [r["component"] for r in rows(results[2] / "variance_components.csv")]
    assert components == ["organisation", "team", "residual"]

    owners = []
    for i, result in enumerate(results, start=1):
        own = rows(result / "by_organisation.csv")
        assert own, f"party {i} received no rows of its own"
        assert {r["dataset"] for r in own} == {f"org-{i}"}
        assert len({r["_owner"] for r in own}) == 1
        assert all(int(r["employees"]) >= 10 for r in own)
        assert "holacracy" not in {r["team_structure"] for r in own}
        owners.append(own[0]["_owner"])
    assert len(set(owners)) == 3
