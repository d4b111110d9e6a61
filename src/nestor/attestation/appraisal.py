"""Appraisal: does a verified attestation result satisfy the contract?

The contract's enclave policy (``nestor.protocol.contract.EnclavePolicy``)
holds the accepted platforms with their reference values and the accepted
TCB statuses. Appraisal checks, and reports every failure rather than the
first one:

1. the platform is accepted by name (the simulated TEE is refused unless the
   contract lists ``simulated``);
2. the enclave is not in debug mode (never accepted, whatever the contract);
3. the measurements equal one of the reference values for that platform
   (SGX: MRENCLAVE, or MRSIGNER + ISVPRODID + minimum ISVSVN; TDX: MRTD and
   any RTMRs / MRCONFIGID listed; SEV-SNP: measurement, minimum reported
   TCB, host data if listed; Nitro: every listed PCR);
4. the TCB status is accepted (platforms that report one);
5. the report data equals the expected binding (constant-time compare);
6. where the platform's entry has ``init_data`` (TDX, SEV-SNP): the
   Confidential Containers init-data register (TDX MRCONFIGID, SNP HOSTDATA)
   equals the value of the init-data document rebuilt for the contract being
   appraised (``nestor.attestation.initdata``; constant-time compare). The
   contract cannot list this value itself, since the document holds the
   contract digest. Without ``init_data`` the register is not checked.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from nestor.attestation import initdata
from nestor.attestation.result import AttestationResult, Platform
from nestor.errors import AppraisalError, NestorError
from nestor.protocol.contract import EnclavePolicy, PlatformPolicy

_POLICY_NAME = {
    Platform.SIMULATED: "simulated",
    Platform.SGX: "sgx",
    Platform.TDX: "tdx",
    Platform.SEV_SNP: "sev-snp",
    Platform.AZURE_SNP_VTPM: "sev-snp",
    Platform.NITRO: "nitro",
}
_SNP_TCB = ("bootloader", "tee", "snp", "microcode")


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reasons: tuple[str, ...]  # why it was refused; empty when accepted
    checked: tuple[str, ...]  # what was checked and passed, for the record


def appraise(
    result: AttestationResult,
    policy: EnclavePolicy,
    *,
    expected_report_data: bytes | None,
    contract_digest: str | None = None,
) -> Decision:
    """``contract_digest`` is the digest of the contract whose ``policy`` this
    is; it is needed only to check init-data (a policy that binds init-data
    is refused without it)."""
    reasons: list[str] = []
    checked: list[str] = []
    name = _POLICY_NAME[result.platform]
    entry = next((p for p in policy.platforms if p.platform == name), None)
    if entry is None:
        accepted = ", ".join(p.platform for p in policy.platforms) or "none"
        if result.platform is Platform.SIMULATED:
            reasons.append(
                "the evidence comes from the simulated TEE, which this contract does not "
                f"accept (accepted platforms: {accepted})"
            )
        else:
            reasons.append(
                f"platform {name} is not accepted by the contract (accepted: {accepted})"
            )
    else:
        checked.append(f"platform {name} is accepted")
        _reference_values(result, entry, reasons, checked)
        _init_data(result, entry, contract_digest, reasons, checked)
    if result.debug:
        reasons.append("the enclave runs in debug mode: its memory is not protected")
    else:
        checked.append("not in debug mode")
    if result.tcb_status is not None:
        if result.tcb_status in policy.accepted_tcb_statuses:
            checked.append(f"TCB status {result.tcb_status} is accepted")
        else:
            advisories = (
                f" (advisories: {', '.join(result.advisory_ids)})" if result.advisory_ids else ""
            )
            reasons.append(
                f"TCB status {result.tcb_status}{advisories} is not accepted by the contract "
                f"(accepted: {', '.join(policy.accepted_tcb_statuses) or 'none'})"
            )
    if expected_report_data is None:
        checked.append("report data not checked (no expected binding given)")
    elif hmac.compare_digest(_pad(result.report_data), _pad(expected_report_data)):
        checked.append("report data binds the expected contract and enclave keys")
    else:
        reasons.append(
            "the report data does not bind the expected contract and enclave keys "
            f"(evidence has {result.report_data.hex()[:32]}…, expected "
            f"{expected_report_data.hex()[:32]}…)"
        )
    return Decision(not reasons, tuple(reasons), tuple(checked))


def require_accepted(
    result: AttestationResult,
    policy: EnclavePolicy,
    *,
    expected_report_data: bytes | None,
    contract_digest: str | None = None,
) -> Decision:
    decision = appraise(
        result,
        policy,
        expected_report_data=expected_report_data,
        contract_digest=contract_digest,
    )
    if not decision.accepted:
        raise AppraisalError(
            f"the {result.platform.value} evidence does not satisfy the contract's enclave policy",
            reasons=list(decision.reasons),
            hint="no key is released to this enclave",
        )
    return decision


def _pad(data: bytes) -> bytes:
    # Platforms carry 64 bytes; a shorter expected value is compared zero-padded.
    return data.ljust(64, b"\x00")


def _one_of(
    label: str, actual: str | None, allowed: object, reasons: list[str], checked: list[str]
) -> None:
    values = [str(v) for v in allowed] if isinstance(allowed, list) else [str(allowed)]
    if actual is not None and actual in values:
        checked.append(f"{label} {actual[:16]}… matches a reference value")
    else:
        shown = "missing" if actual is None else actual
        reasons.append(
            f"{label} {shown} differs from the contract's reference value(s) "
            + ", ".join(v[:16] + "…" for v in values)
        )


def _reference_values(
    result: AttestationResult, entry: PlatformPolicy, reasons: list[str], checked: list[str]
) -> None:
    v = entry.values
    m = result.measurements
    n = result.numbers
    if entry.platform == "simulated":
        _one_of("measurement", m.get("measurement"), v["measurements"], reasons, checked)
    elif entry.platform == "sgx":
        if "mrenclave" in v:
            _one_of("MRENCLAVE", m.get("mrenclave"), v["mrenclave"], reasons, checked)
        if "mrsigner" in v:
            _one_of("MRSIGNER", m.get("mrsigner"), v["mrsigner"], reasons, checked)
            if n.get("isv_prod_id") != v["isv_prod_id"]:
                reasons.append(f"ISVPRODID {n.get('isv_prod_id')} is not {v['isv_prod_id']}")
            if n.get("isv_svn", -1) < v["min_isv_svn"]:
                reasons.append(f"ISVSVN {n.get('isv_svn')} is below the minimum {v['min_isv_svn']}")
    elif entry.platform == "tdx":
        _one_of("MRTD", m.get("mrtd"), v["mrtd"], reasons, checked)
        for k in ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid"):
            if k in v:
                _one_of(k.upper(), m.get(k), v[k], reasons, checked)
    elif entry.platform == "sev-snp":
        _one_of("measurement", m.get("measurement"), v["measurements"], reasons, checked)
        for part in _SNP_TCB:
            have, need = n.get(f"tcb_{part}", -1), v["min_tcb"][part]
            if have < need:
                reasons.append(f"reported TCB {part} {have} is below the minimum {need}")
        if "host_data" in v:
            _one_of("HOST_DATA", m.get("host_data"), v["host_data"], reasons, checked)
    elif entry.platform == "nitro":
        for index, value in v["pcrs"].items():
            _one_of(f"PCR{index}", m.get(f"pcr{index}"), [value], reasons, checked)


def _init_data(
    result: AttestationResult,
    entry: PlatformPolicy,
    contract_digest: str | None,
    reasons: list[str],
    checked: list[str],
) -> None:
    spec = entry.init_data
    platform = initdata.Platform.for_policy(entry.platform)
    if spec is None or platform is None:
        return
    register = platform.register_name
    if contract_digest is None:
        reasons.append(
            f"the contract binds the pod's init-data ({register}), but no contract digest was "
            "given to rebuild it"
        )
        return
    try:
        expected = initdata.expected_initdata(contract_digest, spec).register_value(platform)
    except NestorError as exc:
        reasons.append(f"cannot rebuild the init-data for contract {contract_digest}: {exc}")
        return
    actual_hex = result.measurements.get(platform.measurement)
    try:
        actual = None if actual_hex is None else bytes.fromhex(actual_hex)
    except ValueError:
        actual = None
    if actual is None:
        reasons.append(
            f"the evidence carries no {register} value, so the pod's init-data cannot be "
            f"checked against contract {contract_digest}"
        )
    elif hmac.compare_digest(actual, expected):
        policy = spec.agent_policy_digest() or "none"
        checked.append(
            f"{register} is the init-data for this contract (algorithm {spec.algorithm}, "
            f"agent policy {policy})"
        )
    else:
        reasons.append(
            f"{register} is {actual.hex()[:32]}… but the init-data for contract "
            f"{contract_digest} (algorithm {spec.algorithm}) gives {expected.hex()[:32]}…: the "
            "pod was launched with other init-data (another contract or agent policy)"
        )
