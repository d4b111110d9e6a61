"""`nestor attest verify` and `nestor measure` on the real samples, as a user
runs them: real subprocesses, fixed verification times, real contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nestor.client import contracts, party

NESTOR = Path(sys.executable).parent / "nestor"
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "attestation-samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"no samples at {SAMPLES}")

TDX = SAMPLES / "intel-tdx"
SGX = SAMPLES / "intel-sgx"
SNP = SAMPLES / "amd-sev-snp"
NITRO = SAMPLES / "aws-nitro"
TDX_RD = (
    "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
    "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
)
MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)


def run(tmp: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NESTOR), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        env={**os.environ, "NESTOR_CONFIG_DIR": str(tmp / "config"), "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def contract_with(tmp: Path, platforms: list[dict[str, Any]], statuses: list[str]) -> Path:
    p = party.init_party(tmp / "p", "P")
    c = contracts.new_contract(
        "attest test",
        "attest-test",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
    )
    c = contracts.add_party(c, p.card, ["auditor"])
    c = contracts.set_policy(c, platforms=platforms, tcb_statuses=statuses)
    path = tmp / "contract.json"
    contracts.save_contract(path, c)
    return path


def test_tdx_sample_verifies(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "attest",
        "verify",
        TDX / "tdx_quote",
        "--collateral",
        TDX / "tdx_quote_collateral.json",
        "--at",
        "2025-07-01T00:00:00Z",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["platform"] == "tdx"
    assert result["tcb_status"] == "UpToDate"
    assert result["measurements"]["mrtd"] == MRTD
    assert result["report_data"] == TDX_RD


def test_tdx_with_real_clock_is_refused(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "attest",
        "verify",
        TDX / "tdx_quote",
        "--collateral",
        TDX / "tdx_quote_collateral.json",
    )
    assert proc.returncode == 1
    assert "expired" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_outdated_tdx_is_refused(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "attest",
        "verify",
        TDX / "tdx_quote_outdated",
        "--collateral",
        TDX / "tdx_quote_outdated_collateral.json",
        "--at",
        "2026-03-05T00:00:00Z",
    )
    assert proc.returncode == 1
    assert "No matching TCB level" in proc.stderr


def test_tdx_appraised_against_contract(tmp_path: Path) -> None:
    contract = contract_with(tmp_path, [{"platform": "tdx", "mrtd": [MRTD]}], ["UpToDate"])
    args: list[str | Path] = [
        "attest",
        "verify",
        TDX / "tdx_quote",
        "--collateral",
        TDX / "tdx_quote_collateral.json",
        "--at",
        "2025-07-01T00:00:00Z",
        "--contract",
        contract,
    ]
    ok = run(tmp_path, *args, "--report-data", TDX_RD)
    assert ok.returncode == 0, ok.stderr
    assert "decision: ACCEPTED" in ok.stdout
    wrong = run(tmp_path, *args, "--report-data", "00" * 64)
    assert wrong.returncode == 1
    assert "report data does not bind" in wrong.stderr


def test_tdx_with_other_measurement_is_refused(tmp_path: Path) -> None:
    contract = contract_with(tmp_path, [{"platform": "tdx", "mrtd": ["11" * 48]}], ["UpToDate"])
    proc = run(
        tmp_path,
        "attest",
        "verify",
        TDX / "tdx_quote",
        "--collateral",
        TDX / "tdx_quote_collateral.json",
        "--at",
        "2025-07-01T00:00:00Z",
        "--contract",
        contract,
    )
    assert proc.returncode == 1
    assert "MRTD" in proc.stderr
    assert "differs from the contract" in proc.stderr


def test_sgx_tcb_status_not_accepted(tmp_path: Path) -> None:
    mrenclave = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    contract = contract_with(
        tmp_path, [{"platform": "sgx", "mrenclave": [mrenclave]}], ["UpToDate"]
    )
    proc = run(
        tmp_path,
        "attest",
        "verify",
        SGX / "sgx_quote",
        "--collateral",
        SGX / "sgx_quote_collateral.json",
        "--at",
        "2025-07-01T00:00:00Z",
        "--contract",
        contract,
    )
    assert proc.returncode == 1
    assert "TCB status ConfigurationAndSWHardeningNeeded" in proc.stderr
    assert "INTEL-SA-00615" in proc.stderr


def test_snp_debug_guest_is_refused(tmp_path: Path) -> None:
    measurement = (
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
        "6bdf8a9ece31a5a608eb0cf2e4872b01"
    )
    contract = contract_with(
        tmp_path,
        [
            {
                "platform": "sev-snp",
                "measurements": [measurement],
                "min_tcb": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0},
            }
        ],
        ["UpToDate"],
    )
    proc = run(
        tmp_path,
        "attest",
        "verify",
        SNP / "milan_vcek_report.bin",
        "--collateral",
        SNP / "milan_vcek.der",
        "--at",
        "2025-06-01T00:00:00Z",
        "--contract",
        contract,
    )
    assert proc.returncode == 1
    assert "debug mode" in proc.stderr


def test_nitro_debug_document_fails_pcr_policy(tmp_path: Path) -> None:
    pcr0 = (
        "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2"
        "d65710a27aa94ae3949dd54e7c9fe86a"
    )
    contract = contract_with(tmp_path, [{"platform": "nitro", "pcrs": {"0": pcr0}}], [])
    good = run(
        tmp_path,
        "attest",
        "verify",
        NITRO / "nitro_attestation.b64",
        "--at",
        "2024-09-07T15:00:00Z",
        "--contract",
        contract,
    )
    assert good.returncode == 0, good.stderr
    debug = run(
        tmp_path,
        "attest",
        "verify",
        NITRO / "nitro_attestation_debug.b64",
        "--at",
        "2024-09-07T15:00:00Z",
        "--contract",
        contract,
    )
    assert debug.returncode == 1
    assert "PCR0" in debug.stderr
    assert "debug mode" in debug.stderr


def test_simulated_refused_without_simulated_platform(tmp_path: Path) -> None:
    measured = run(tmp_path, "measure", "--show-vendor")
    assert measured.returncode == 0, measured.stderr
    measurement = measured.stdout.strip()
    assert len(measurement) == 64
    from nestor.simtee import vendor

    key = vendor.load_or_create_vendor_key(tmp_path / "config")
    evidence = tmp_path / "sim.json"
    evidence.write_bytes(
        vendor.issue_evidence(
            key, measurement=measurement, report_data=bytes(64), issued_at=datetime.now(UTC)
        )
    )
    accepting = contract_with(
        tmp_path, [{"platform": "simulated", "measurements": [measurement]}], []
    )
    ok = run(tmp_path, "attest", "verify", evidence, "--contract", accepting)
    assert ok.returncode == 0, ok.stderr
    assert "SIMULATED" in ok.stderr
    (tmp_path / "p").rename(tmp_path / "p-old")
    refusing = contract_with(tmp_path, [{"platform": "tdx", "mrtd": [MRTD]}], ["UpToDate"])
    no = run(tmp_path, "attest", "verify", evidence, "--contract", refusing)
    assert no.returncode == 1
    assert "simulated TEE, which this contract does not accept" in no.stderr


def test_garbage_evidence(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"hello world, not evidence")
    proc = run(tmp_path, "attest", "verify", "junk")
    assert proc.returncode == 1
    assert "cannot tell which TEE" in proc.stderr


def test_enclave_evidence_then_verify(tmp_path: Path) -> None:
    """The enclave side produces simulated evidence; a party verifies it."""
    rd = "ab" * 64
    made = run(
        tmp_path, "enclave", "evidence", "--tee", "sim", "--report-data", rd, "--out", "ev.json"
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "simulated"
    checked = run(tmp_path, "attest", "verify", "ev.json", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["result"]["report_data"] == rd
    bad = run(tmp_path, "enclave", "evidence", "--tee", "tsm", "--report-data", rd, "--out", "x")
    assert bad.returncode == 2
    assert "configfs-tsm is not available" in bad.stderr


def test_offline_collateral_from_cache(tmp_path: Path) -> None:
    """Offline verification uses only the collateral cache; a miss says so."""
    args: list[str | Path] = [
        "attest",
        "verify",
        SGX / "sgx_quote",
        "--offline",
        "--at",
        "2025-07-01T00:00:00Z",
        "--collateral-cache",
        tmp_path / "cache",
    ]
    miss = run(tmp_path, *args)
    assert miss.returncode == 1
    assert "offline: no cached collateral for FMSPC 00A067110000" in miss.stderr
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "sgx-processor-00a067110000.json").write_bytes(
        (SGX / "sgx_quote_collateral.json").read_bytes()
    )
    hit = run(tmp_path, *args)
    assert hit.returncode == 0, hit.stderr
    assert "platform      sgx" in hit.stdout
