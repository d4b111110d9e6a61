"""A change to the contract changes the init-data digest in the rendered
enclave pod: two real, signed contracts (version 1 and its amendment) are
rendered into the coco-tdx profile by `nestor deploy render`, a real
subprocess running `kubectl kustomize` on a copy of deploy/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from nestor.attestation.initdata import ANNOTATION, CONTRACT_ANNOTATION, Platform, decode_annotation
from nestor.attestation.initdata import parse_initdata as parse_document
from nestor.client import contracts as drafting
from nestor.client.party import init_party

NESTOR = Path(sys.executable).parent / "nestor"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
T0 = datetime(2027, 1, 1, tzinfo=UTC)
T1 = datetime(2028, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Contracts:
    v1: Path
    v2: Path
    v1_digest: str
    v2_digest: str


@pytest.fixture(scope="module")
def contracts(tmp_path_factory: pytest.TempPathFactory) -> Contracts:
    """Alice and Bob sign version 1; the amendment changes max_runs and is signed again."""
    root = tmp_path_factory.mktemp("binding")
    alice = init_party(root / "alice", "Alice Hospital", now=T0)
    bob = init_party(root / "bob", "Bob Clinic", now=T0)
    bundle = root / "bundle"
    (bundle / "stats").mkdir(parents=True)
    (bundle / "stats" / "__init__.py").write_text("")
    (bundle / "stats" / "main.py").write_text("def run(inputs, params):\n    return {}\n")
    c = drafting.new_contract("Pooled statistics", "pooled-2027", not_before=T0, not_after=T1)
    c = drafting.add_party(c, alice.card, ["data-provider", "result-recipient", "job-submitter"])
    c = drafting.add_party(c, bob.card, ["data-provider", "result-recipient"])
    c = drafting.add_dataset(
        c, dataset_id="visits", owner="Alice Hospital", description="Visits", fmt="csv",
        columns=[("age", "integer")],
    )  # fmt: skip
    c = drafting.add_program(
        c, program_id="stats", bundle=bundle, entry_point="stats.main:run",
        description="Pooled statistics", inputs=["visits"],
        recipients=[("Alice Hospital", "full"), ("Bob Clinic", "full")],
        min_group_size=5, parameters={},
    )  # fmt: skip
    c = drafting.set_policy(
        c, platforms=[{"platform": "simulated", "measurements": ["ab" * 32]}], max_runs=10
    )
    v1 = drafting.sign(drafting.sign(c, alice), bob)
    v2 = drafting.set_policy(drafting.amend(v1), max_runs=20)
    v2 = drafting.sign(drafting.sign(v2, alice), bob)
    drafting.save_contract(root / "v1.json", v1)
    drafting.save_contract(root / "v2.json", v2)
    assert v1.digest != v2.digest
    return Contracts(root / "v1.json", root / "v2.json", v1.digest, v2.digest)


def render(profile: str, contract: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(NESTOR), "deploy", "render", "--profile", profile, "--contract", str(contract),
         "--deploy-dir", str(DEPLOY)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def enclave_annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    (template,) = [o for o in objects if o["kind"] == "PodTemplate"]
    annotations: dict[str, str] = template["template"]["metadata"]["annotations"]
    return annotations


def test_a_new_contract_version_changes_the_bound_digest(contracts: Contracts) -> None:
    before = overlay_files()
    a1 = enclave_annotations(render("coco-tdx", contracts.v1))
    a2 = enclave_annotations(render("coco-tdx", contracts.v2))
    assert overlay_files() == before, "render must not modify the checkout"

    d1, d2 = (parse_document(decode_annotation(a[ANNOTATION])) for a in (a1, a2))
    assert d1.contract_digest == contracts.v1_digest == a1[CONTRACT_ANNOTATION]
    assert d2.contract_digest == contracts.v2_digest == a2[CONTRACT_ANNOTATION]
    for d, digest in ((d1, contracts.v1_digest), (d2, contracts.v2_digest)):
        entry = tomllib.loads(tomllib.loads(d.document)["data"]["nestor.toml"])
        assert entry == {"contract_digest": digest}
    assert d1.digest() != d2.digest()
    assert d1.register_value(Platform.tdx) != d2.register_value(Platform.tdx)
    assert d1.register_value(Platform.snp) != d2.register_value(Platform.snp)

    # Rendering the same contract again gives the same bytes.
    assert enclave_annotations(render("coco-tdx", contracts.v1)) == a1


def test_init_data_summary_matches_what_the_pod_carries(contracts: Contracts) -> None:
    """`nestor deploy init-data --json` prints the values a verifier expects."""
    proc = subprocess.run(
        [str(NESTOR), "deploy", "init-data", "--contract", str(contracts.v2), "--json",
         "--out", str(copy_overlay(contracts.v2.parent / "deploy", "coco-snp"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    pod = parse_document(
        decode_annotation(enclave_annotations(render("coco-snp", contracts.v2))[ANNOTATION])
    )
    assert facts["contract_digest"] == contracts.v2_digest
    assert facts["init_data_digest"] == pod.digest().hex()
    assert facts["snp_hostdata"] == pod.register_value(Platform.snp).hex()
    assert facts["tdx_mrconfigid"] == pod.register_value(Platform.tdx).hex()


def copy_overlay(root: Path, profile: str) -> Path:
    for part in ("base", "components", "overlays"):
        if not (root / part).exists():
            shutil.copytree(DEPLOY / part, root / part)
    return root / "overlays" / profile


def overlay_files() -> dict[str, bytes]:
    return {
        str(p.relative_to(DEPLOY)): p.read_bytes()
        for p in sorted((DEPLOY / "overlays").rglob("*"))
        if p.is_file()
    }
