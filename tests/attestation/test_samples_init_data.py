"""The init-data registers of the real TDX and SEV-SNP samples
(../shared/attestation-samples, at the fixed times their READMEs give): the
verifiers report them, and a contract that binds init-data refuses evidence
whose register holds anything else (here: zeros, as no Confidential
Containers runtime launched these guests)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nestor.attestation import intel, sev_snp
from nestor.attestation.appraisal import appraise
from nestor.attestation.initdata import Platform as InitPlatform
from nestor.attestation.initdata import build_initdata
from nestor.attestation.result import AttestationResult
from nestor.protocol.contract import EnclavePolicy, PlatformPolicy

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "attestation-samples"
TDX = SAMPLES / "intel-tdx"
SNP = SAMPLES / "amd-sev-snp"
pytestmark = pytest.mark.skipif(
    not TDX.is_dir() or not SNP.is_dir(), reason=f"real attestation samples not at {SAMPLES}"
)

TDX_NOW = datetime(2025, 7, 1, tzinfo=UTC)
SNP_NOW = datetime(2025, 6, 1, tzinfo=UTC)
CONTRACT = "sha256:" + "ab" * 32
INIT_DATA = {"algorithm": "sha256", "agent_policy": None}


def tdx_result() -> AttestationResult:
    quote = (TDX / "tdx_quote").read_bytes()
    collateral = (TDX / "tdx_quote_collateral.json").read_bytes()
    return intel.verify_quote(quote, collateral, now=TDX_NOW)


def snp_result() -> AttestationResult:
    report = (SNP / "milan_vcek_report.bin").read_bytes()
    return sev_snp.verify_report(
        report, endorsement=(SNP / "milan_vcek.der").read_bytes(), now=SNP_NOW
    )


def _policy(entry: dict[str, Any]) -> EnclavePolicy:
    return EnclavePolicy((PlatformPolicy(entry["platform"], entry),), ("UpToDate",))


def _mismatch(register: str, actual: str, platform: InitPlatform) -> str:
    expected = build_initdata(CONTRACT, agent_policy=None).register_value(platform).hex()
    return (
        f"{register} is {actual[:32]}… but the init-data for contract {CONTRACT} (algorithm "
        f"sha256) gives {expected[:32]}…: the pod was launched with other init-data (another "
        "contract or agent policy)"
    )


def test_tdx_sample_reports_mrconfigid_and_is_refused_under_init_data() -> None:
    result = tdx_result()
    assert result.measurements["mrconfigid"] == "00" * 48
    entry = {"platform": "tdx", "mrtd": [result.measurements["mrtd"]]}
    plain = appraise(result, _policy(entry), expected_report_data=None, contract_digest=CONTRACT)
    assert plain.accepted, plain.reasons
    bound = appraise(
        result,
        _policy({**entry, "init_data": INIT_DATA}),
        expected_report_data=None,
        contract_digest=CONTRACT,
    )
    assert bound.reasons == (_mismatch("MRCONFIGID", "00" * 48, InitPlatform.tdx),)


def test_snp_sample_reports_host_data_and_is_refused_under_init_data() -> None:
    result = snp_result()
    assert result.measurements["host_data"] == "00" * 32
    n = result.numbers
    entry = {
        "platform": "sev-snp",
        "measurements": [result.measurements["measurement"]],
        "min_tcb": {k: n[f"tcb_{k}"] for k in ("bootloader", "tee", "snp", "microcode")},
        "init_data": INIT_DATA,
    }
    decision = appraise(result, _policy(entry), expected_report_data=None, contract_digest=CONTRACT)
    # The sample guest also runs with debug allowed, which is refused on its own.
    assert decision.reasons == (
        _mismatch("HOSTDATA", "00" * 32, InitPlatform.snp),
        "the enclave runs in debug mode: its memory is not protected",
    )
