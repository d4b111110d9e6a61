"""Verifier for simulated-TEE evidence (``nestor.simtee``).

The trust anchor is the installation's simulated vendor public key, passed in
explicitly: a relying party decides which simulated vendor it trusts. A
result from here always has ``platform = simulated``, and appraisal refuses
it unless the contract accepts that platform by name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nestor.attestation.result import AttestationResult, Platform
from nestor.crypto import signing
from nestor.errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    NestorError,
    SignatureError,
)
from nestor.protocol import canonical
from nestor.protocol.contract import parse_time
from nestor.protocol.envelope import Envelope, verify_envelope_signature

EVIDENCE_TYPE = "application/vnd.nestor.simulated-evidence+json;version=1"
_FIELDS = {"platform", "warning", "measurement", "report_data", "debug", "issued_at", "vendor"}
MAX_CLOCK_SKEW = timedelta(minutes=5)


def looks_simulated(evidence: bytes) -> bool:
    return EVIDENCE_TYPE.encode() in evidence[:4096]


def verify_simulated(
    evidence: bytes, *, vendor_keys: Sequence[Ed25519PublicKey], now: datetime
) -> AttestationResult:
    try:
        obj = canonical.decode(evidence)
        env = Envelope.from_json(obj, expected_type=EVIDENCE_TYPE)
    except NestorError as exc:
        raise EvidenceFormatError(f"not simulated-TEE evidence: {exc.message}") from exc
    s = env.signed
    if set(s) != _FIELDS or s.get("platform") != "simulated":
        raise EvidenceFormatError("simulated evidence must have exactly the documented fields")
    measurement, report_data, issued = s["measurement"], s["report_data"], s["issued_at"]
    if not isinstance(measurement, str) or not re.fullmatch(r"[0-9a-f]{64}", measurement):
        raise EvidenceFormatError("simulated evidence: measurement must be 64 hex digits")
    if not isinstance(report_data, str) or not re.fullmatch(r"[0-9a-f]{128}", report_data):
        raise EvidenceFormatError("simulated evidence: report_data must be 128 hex digits")
    if not isinstance(s["debug"], bool):
        raise EvidenceFormatError("simulated evidence: debug must be true or false")
    try:
        issued_at = parse_time(issued, "issued_at")
    except NestorError as exc:
        raise EvidenceFormatError(f"simulated evidence: {exc.message}") from exc
    if len(env.signatures) != 1:
        raise EvidenceFormatError("simulated evidence carries exactly one vendor signature")
    trusted = {signing.key_id(k): k for k in vendor_keys}
    keyid = env.signatures[0].keyid
    if keyid not in trusted or s["vendor"] != keyid:
        raise CertificateChainError(
            f"simulated evidence is signed by vendor key {keyid}, which is not a trusted "
            "simulated vendor root",
            hint="simulated evidence verifies only on the installation whose vendor root "
            "signed it (see NESTOR_CONFIG_DIR)",
        )
    try:
        verify_envelope_signature(env, trusted[keyid], what="the simulated evidence")
    except SignatureError as exc:
        raise EvidenceSignatureError(exc.message) from exc
    if issued_at > now + MAX_CLOCK_SKEW:
        raise EvidenceFormatError(f"simulated evidence is issued in the future ({issued})")
    return AttestationResult(
        platform=Platform.SIMULATED,
        measurements={"measurement": measurement},
        numbers={},
        tcb_status=None,
        advisory_ids=(),
        debug=s["debug"],
        report_data=bytes.fromhex(report_data),
        chain=(f"simulated vendor {keyid}",),
        verified_at=now,
        evidence_digest="sha256:" + hashlib.sha256(evidence).hexdigest(),
        claims={"warning": s["warning"], "issued_at": issued},
    )
