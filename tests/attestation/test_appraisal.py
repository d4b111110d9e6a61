"""Appraisal of verified evidence against a contract's enclave policy.

Simulated evidence is produced and verified for real; the hardware cases use
results from the real samples in ../shared/attestation-samples when their
verifiers are present (see test_samples_appraisal.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nestor.attestation.appraisal import appraise, require_accepted
from nestor.attestation.binding import report_data_for
from nestor.attestation.initdata import DEFAULT_AGENT_POLICY, build_initdata, expected_initdata
from nestor.attestation.initdata import Platform as InitPlatform
from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.verify import verify_evidence
from nestor.errors import AppraisalError
from nestor.protocol.contract import EnclavePolicy, InitDataPolicy, PlatformPolicy
from nestor.simtee import vendor
from nestor.simtee.measure import measure_enclave

NOW = datetime(2027, 1, 1, tzinfo=UTC)
CONTRACT = "sha256:" + "ab" * 32
SIGNING = bytes(32)
HPKE = {"x25519": bytes(range(32))}
BINDING = report_data_for(CONTRACT, SIGNING, HPKE)


def policy(*platforms: dict[str, Any], statuses: tuple[str, ...] = ("UpToDate",)) -> EnclavePolicy:
    return EnclavePolicy(tuple(PlatformPolicy(p["platform"], p) for p in platforms), statuses)


SIM_OK = {"platform": "simulated", "measurements": [measure_enclave()]}


@pytest.fixture
def simulated(tmp_path: Path) -> AttestationResult:
    key = vendor.load_or_create_vendor_key(tmp_path)
    ev = vendor.issue_evidence(
        key, measurement=measure_enclave(), report_data=BINDING, issued_at=NOW
    )
    return verify_evidence(ev, now=NOW, simulated_vendor_keys=[key.public_key()])


def test_binding_is_64_bytes_and_depends_on_every_input() -> None:
    assert len(BINDING) == 64
    assert report_data_for("sha256:" + "cd" * 32, SIGNING, HPKE) != BINDING
    assert report_data_for(CONTRACT, b"\x01" * 32, HPKE) != BINDING
    assert report_data_for(CONTRACT, SIGNING, {"x25519": bytes(32)}) != BINDING
    assert report_data_for(CONTRACT, SIGNING, dict(HPKE)) == BINDING


def test_simulated_accepted_when_the_contract_accepts_it(simulated: AttestationResult) -> None:
    decision = require_accepted(simulated, policy(SIM_OK), expected_report_data=BINDING)
    assert decision.accepted
    assert any("report data binds" in c for c in decision.checked)


def test_simulated_refused_unless_contract_accepts_it(simulated: AttestationResult) -> None:
    sgx = {"platform": "sgx", "mrenclave": ["00" * 32]}
    with pytest.raises(AppraisalError) as info:
        require_accepted(simulated, policy(sgx), expected_report_data=BINDING)
    assert "simulated TEE, which this contract does not accept" in info.value.reasons[0]
    assert "no key is released" in info.value.diagnostics()


def test_wrong_measurement_is_refused(simulated: AttestationResult) -> None:
    other = {"platform": "simulated", "measurements": ["11" * 32]}
    decision = appraise(simulated, policy(other), expected_report_data=BINDING)
    assert not decision.accepted
    assert decision.reasons[0].startswith(f"measurement {measure_enclave()} differs")


def test_wrong_report_data_is_refused(simulated: AttestationResult) -> None:
    other = report_data_for("sha256:" + "00" * 32, SIGNING, HPKE)
    decision = appraise(simulated, policy(SIM_OK), expected_report_data=other)
    assert decision.reasons == (decision.reasons[0],)
    assert "does not bind the expected contract" in decision.reasons[0]


def test_debug_is_refused_whatever_the_contract(tmp_path: Path) -> None:
    key = vendor.load_or_create_vendor_key(tmp_path)
    ev = vendor.issue_evidence(
        key, measurement=measure_enclave(), report_data=BINDING, issued_at=NOW, debug=True
    )
    result = verify_evidence(ev, now=NOW, simulated_vendor_keys=[key.public_key()])
    decision = appraise(result, policy(SIM_OK), expected_report_data=BINDING)
    assert decision.reasons == ("the enclave runs in debug mode: its memory is not protected",)


def test_every_reason_is_reported(simulated: AttestationResult) -> None:
    other = {"platform": "simulated", "measurements": ["11" * 32]}
    decision = appraise(simulated, policy(other), expected_report_data=bytes(64))
    assert len(decision.reasons) == 2


def _result(platform: Platform, **kw: Any) -> AttestationResult:
    base: dict[str, Any] = {
        "platform": platform,
        "measurements": {},
        "numbers": {},
        "tcb_status": None,
        "advisory_ids": (),
        "debug": False,
        "report_data": BINDING,
        "chain": (),
        "verified_at": NOW,
        "evidence_digest": "sha256:" + "00" * 32,
    }
    base.update(kw)
    return AttestationResult(**base)


def test_sgx_mrsigner_rules() -> None:
    pol = policy(
        {"platform": "sgx", "mrsigner": "aa" * 32, "isv_prod_id": 7, "min_isv_svn": 3},
        statuses=("UpToDate",),
    )
    good = _result(
        Platform.SGX,
        measurements={"mrenclave": "bb" * 32, "mrsigner": "aa" * 32},
        numbers={"isv_prod_id": 7, "isv_svn": 3},
        tcb_status="UpToDate",
    )
    assert appraise(good, pol, expected_report_data=BINDING).accepted
    old = _result(
        Platform.SGX,
        measurements={"mrenclave": "bb" * 32, "mrsigner": "aa" * 32},
        numbers={"isv_prod_id": 8, "isv_svn": 2},
        tcb_status="OutOfDate",
        advisory_ids=("INTEL-SA-00615",),
    )
    reasons = appraise(old, pol, expected_report_data=BINDING).reasons
    assert any("ISVPRODID 8 is not 7" in r for r in reasons)
    assert any("ISVSVN 2 is below the minimum 3" in r for r in reasons)
    assert any(
        "TCB status OutOfDate (advisories: INTEL-SA-00615) is not accepted" in r for r in reasons
    )


def test_snp_minimum_tcb() -> None:
    pol = policy(
        {
            "platform": "sev-snp",
            "measurements": ["cc" * 48],
            "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        }
    )
    low = _result(
        Platform.SEV_SNP,
        measurements={"measurement": "cc" * 48},
        numbers={"tcb_bootloader": 3, "tcb_tee": 0, "tcb_snp": 5, "tcb_microcode": 115},
    )
    assert appraise(low, pol, expected_report_data=BINDING).reasons == (
        "reported TCB snp 5 is below the minimum 8",
    )


def test_nitro_pcrs() -> None:
    pol = policy({"platform": "nitro", "pcrs": {"0": "11" * 48, "8": "22" * 48}})
    ok = _result(Platform.NITRO, measurements={"pcr0": "11" * 48, "pcr8": "22" * 48})
    assert appraise(ok, pol, expected_report_data=BINDING).accepted
    bad = _result(Platform.NITRO, measurements={"pcr0": "11" * 48, "pcr8": "00" * 48})
    assert "PCR8" in appraise(bad, pol, expected_report_data=BINDING).reasons[0]


def test_platform_not_accepted() -> None:
    pol = policy({"platform": "tdx", "mrtd": ["aa" * 48]})
    r = _result(Platform.NITRO)
    assert (
        "platform nitro is not accepted" in appraise(r, pol, expected_report_data=None).reasons[0]
    )


# -- init-data (Confidential Containers): TDX MRCONFIGID, SEV-SNP HOSTDATA -----------------

TDX_BASE = {"platform": "tdx", "mrtd": ["aa" * 48]}
SNP_BASE = {
    "platform": "sev-snp",
    "measurements": ["cc" * 48],
    "min_tcb": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0},
}
SNP_NUMBERS = {"tcb_bootloader": 0, "tcb_tee": 0, "tcb_snp": 0, "tcb_microcode": 0}


def _spec(
    algorithm: str = "sha256", agent_policy: str | None = DEFAULT_AGENT_POLICY
) -> dict[str, Any]:
    return {"algorithm": algorithm, "agent_policy": agent_policy}


def _register(platform: InitPlatform, algorithm: str = "sha256") -> str:
    """What the pod's evidence shows when launched as `nestor deploy init-data` writes it."""
    built = build_initdata(CONTRACT, algorithm=algorithm, agent_policy=DEFAULT_AGENT_POLICY)
    return built.register_value(platform).hex()


def _tdx(mrconfigid: str | None) -> AttestationResult:
    m = {"mrtd": "aa" * 48}
    if mrconfigid is not None:
        m["mrconfigid"] = mrconfigid
    return _result(Platform.TDX, measurements=m, tcb_status="UpToDate")


def _snp(host_data: str | None) -> AttestationResult:
    m = {"measurement": "cc" * 48}
    if host_data is not None:
        m["host_data"] = host_data
    return _result(Platform.SEV_SNP, measurements=m, numbers=SNP_NUMBERS)


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_init_data_that_matches_the_contract_is_accepted(algorithm: str) -> None:
    tdx = policy({**TDX_BASE, "init_data": _spec(algorithm)})
    ok = appraise(
        _tdx(_register(InitPlatform.tdx, algorithm)),
        tdx,
        expected_report_data=BINDING,
        contract_digest=CONTRACT,
    )
    assert ok.accepted, ok.reasons
    assert any(c.startswith("MRCONFIGID is the init-data for this contract") for c in ok.checked)
    snp = policy({**SNP_BASE, "init_data": _spec(algorithm)})
    ok = appraise(
        _snp(_register(InitPlatform.snp, algorithm)),
        snp,
        expected_report_data=BINDING,
        contract_digest=CONTRACT,
    )
    assert ok.accepted, ok.reasons
    assert any(c.startswith("HOSTDATA is the init-data for this contract") for c in ok.checked)


def test_init_data_of_another_contract_or_policy_is_refused() -> None:
    pol = policy({**TDX_BASE, "init_data": _spec()})
    other_contract = build_initdata("sha256:" + "cd" * 32).register_value(InitPlatform.tdx)
    decision = appraise(
        _tdx(other_contract.hex()), pol, expected_report_data=BINDING, contract_digest=CONTRACT
    )
    expected = _register(InitPlatform.tdx)
    assert decision.reasons == (
        f"MRCONFIGID is {other_contract.hex()[:32]}… but the init-data for contract {CONTRACT} "
        f"(algorithm sha256) gives {expected[:32]}…: the pod was launched with other init-data "
        "(another contract or agent policy)",
    )
    # An agent policy that lets the host exec into the enclave.
    lax = DEFAULT_AGENT_POLICY.replace("ExecProcessRequest := false", "ExecProcessRequest := true")
    lax_value = build_initdata(CONTRACT, agent_policy=lax).register_value(InitPlatform.tdx)
    (reason,) = appraise(
        _tdx(lax_value.hex()), pol, expected_report_data=BINDING, contract_digest=CONTRACT
    ).reasons
    assert reason.startswith(f"MRCONFIGID is {lax_value.hex()[:32]}…")
    snp = policy({**SNP_BASE, "init_data": _spec(agent_policy=None)})
    (reason,) = appraise(
        _snp(_register(InitPlatform.snp)),
        snp,
        expected_report_data=BINDING,
        contract_digest=CONTRACT,
    ).reasons
    assert reason.startswith("HOSTDATA is ")
    assert reason.endswith(
        "the pod was launched with other init-data (another contract or agent policy)"
    )


def test_init_data_with_another_algorithm_is_refused() -> None:
    pol = policy({**TDX_BASE, "init_data": _spec("sha384")})
    (reason,) = appraise(
        _tdx(_register(InitPlatform.tdx, "sha256")),
        pol,
        expected_report_data=BINDING,
        contract_digest=CONTRACT,
    ).reasons
    assert f"the init-data for contract {CONTRACT} (algorithm sha384) gives" in reason


def test_missing_register_or_contract_digest_fails_closed() -> None:
    pol = policy({**TDX_BASE, "init_data": _spec()})
    (reason,) = appraise(
        _tdx(None), pol, expected_report_data=BINDING, contract_digest=CONTRACT
    ).reasons
    assert reason == (
        f"the evidence carries no MRCONFIGID value, so the pod's init-data cannot be checked "
        f"against contract {CONTRACT}"
    )
    (reason,) = appraise(
        _tdx(_register(InitPlatform.tdx)), pol, expected_report_data=BINDING
    ).reasons
    assert "no contract digest was given" in reason
    with pytest.raises(AppraisalError):
        require_accepted(
            _snp(None),
            policy({**SNP_BASE, "init_data": _spec()}),
            expected_report_data=BINDING,
            contract_digest=CONTRACT,
        )


def test_without_init_data_in_the_policy_the_register_is_not_checked() -> None:
    for result, entry in ((_tdx("11" * 48), TDX_BASE), (_snp("22" * 32), SNP_BASE)):
        decision = appraise(
            result, policy(entry), expected_report_data=BINDING, contract_digest=CONTRACT
        )
        assert decision.accepted, decision.reasons
        assert not any("init-data" in c for c in decision.checked)


def test_init_data_parameters_from_the_contract_model() -> None:
    entry = PlatformPolicy("tdx", {**TDX_BASE, "init_data": _spec("sha512", None)})
    assert entry.init_data == InitDataPolicy("sha512", None)
    assert PlatformPolicy("tdx", TDX_BASE).init_data is None
    spec = InitDataPolicy("sha256", DEFAULT_AGENT_POLICY)
    assert expected_initdata(CONTRACT, spec) == build_initdata(CONTRACT)
    assert spec.agent_policy_digest() == (
        "sha256:" + hashlib.sha256(DEFAULT_AGENT_POLICY.encode()).hexdigest()
    )
