"""`nestor demo --example dea` end to end: three retailers, real host, simulated enclave."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_demo_gives_each_retailer_only_its_own_sites(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    env = {**os.environ, "NESTOR_CONFIG_DIR": str(tmp_path / "config")}
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "demo", "--example", "dea",
        "--scale", "0.5", "--workspace", str(workspace),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")

    prefixes = ("AUR", "BIR", "COB")
    distributions = []
    for n, prefix in enumerate(prefixes, start=1):
        results = workspace / f"party-{n}" / "results"
        names = {p.name for p in results.iterdir()}
        assert {"scores.csv", "peers.csv", "distribution.csv", "summary.csv", "meta.json"} <= names
        scores = _rows(results / "scores.csv")
        generated = _rows(workspace / "generated" / f"sites-{n}.csv")
        # Exactly its own sites, and nothing of the other retailers'.
        assert sorted(r["site"] for r in scores) == sorted(r["site"] for r in generated)
        assert {r["dataset"] for r in scores} == {f"sites-{n}"}
        assert len({r["_owner"] for r in scores}) == 1
        others = [p for p in prefixes if p != prefix]
        for name in ("scores.csv", "peers.csv", "distribution.csv", "summary.csv", "meta.json"):
            text = (results / name).read_text()
            assert not any(re.search(rf"{p}-\d{{4}}", text) for p in others), name
        peers = _rows(results / "peers.csv")
        assert all(
            r["peer"].startswith(f"{prefix}-") if r["peer_own"] == "True" else r["peer"][0] == "C"
            for r in peers
        )
        for r in scores:
            assert 0 < float(r["theta_crs"]) <= float(r["theta_vrs"]) + 1e-9 <= 1 + 1e-9
        distributions.append((results / "distribution.csv").read_text())
        meta = json.loads((results / "meta.json").read_text())
        assert meta["sites"] == 60
        assert meta["min_group_size"] == 5
    # The pooled tables are the same for everyone.
    assert distributions[0] == distributions[1] == distributions[2]
    assert "competitor sites appear only as labels" in done.stderr
