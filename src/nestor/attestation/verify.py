"""One entry point: detect the platform of some evidence and verify it.

Detection only picks which verifier to run; each verifier checks the
structure itself, so a wrong guess ends in that verifier's format error.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.simulated import looks_simulated, verify_simulated
from nestor.errors import CollateralError, EvidenceFormatError

SNP_REPORT_LENGTH = 1184


def detect_platform(evidence: bytes) -> Platform:
    """Guess the platform from the first bytes of the evidence."""
    if not evidence:
        raise EvidenceFormatError("the evidence is empty")
    head = evidence[:4096].lstrip()
    if looks_simulated(evidence):
        return Platform.SIMULATED
    if head.startswith(b"{") and any(
        k in head for k in (b'"tpm_quote"', b'"hcl_report"', b'"quote"')
    ):
        return Platform.AZURE_SNP_VTPM
    if evidence[:1] in (b"\x84", b"\xd2"):
        return Platform.NITRO
    if _looks_base64_cose(evidence):
        return Platform.NITRO
    if len(evidence) == SNP_REPORT_LENGTH and 2 <= int.from_bytes(evidence[:4], "little") <= 5:
        return Platform.SEV_SNP
    if len(evidence) >= 48:
        version, _key_type, tee_type = struct.unpack_from("<HHI", evidence)
        if version in (3, 4, 5) and tee_type == 0x00000000:
            return Platform.SGX
        if version in (4, 5) and tee_type == 0x00000081:
            return Platform.TDX
    raise EvidenceFormatError(
        "cannot tell which TEE produced this evidence",
        hint="pass --platform (simulated, sgx, tdx, sev-snp, nitro, azure-snp-vtpm)",
    )


def _looks_base64_cose(evidence: bytes) -> bool:
    try:
        raw = base64.b64decode(evidence.strip()[:64] + b"==", validate=False)
    except (binascii.Error, ValueError):
        return False
    return raw[:1] in (b"\x84", b"\xd2")


def verify_evidence(
    evidence: bytes,
    *,
    now: datetime,
    platform: Platform | None = None,
    collateral: bytes | None = None,
    nonce: bytes | None = None,
    simulated_vendor_keys: Sequence[Ed25519PublicKey] = (),
) -> AttestationResult:
    """Verify ``evidence`` at ``now``.

    ``collateral`` means: for SGX/TDX the DCAP collateral JSON; for SEV-SNP
    the VCEK or VLEK certificate. ``nonce`` is the Azure vTPM quote's nonce.
    """
    platform = platform or detect_platform(evidence)
    if platform is Platform.SIMULATED:
        return verify_simulated(evidence, vendor_keys=simulated_vendor_keys, now=now)
    if platform in (Platform.SGX, Platform.TDX):
        from nestor.attestation import intel

        if collateral is None:
            raise CollateralError(
                f"{platform.value} quotes need DCAP collateral",
                hint="pass --collateral FILE (dcap-qvl QuoteCollateralV3 JSON), fetched "
                "from a PCCS or Intel PCS",
            )
        result = intel.verify_quote(evidence, collateral, now=now)
        if result.platform is not platform:
            raise EvidenceFormatError(
                f"the quote is a {result.platform.value} quote, not {platform.value}"
            )
        return result
    if platform is Platform.SEV_SNP:
        from nestor.attestation import sev_snp

        if collateral is None:
            raise CollateralError(
                "SEV-SNP reports need the VCEK or VLEK certificate that signed them",
                hint="pass --collateral VCEK.der (from AMD KDS or the host's certificate table)",
            )
        return sev_snp.verify_report(evidence, endorsement=collateral, now=now)
    if platform is Platform.AZURE_SNP_VTPM:
        from nestor.attestation import azure_vtpm

        if nonce is None:
            raise EvidenceFormatError(
                "Azure vTPM evidence is checked against the nonce the relying party chose",
                hint="pass --nonce HEX",
            )
        return azure_vtpm.verify_azure_evidence(evidence, nonce=nonce, now=now)
    from nestor.attestation import nitro

    return nitro.verify_document(evidence, now=now)
