"""Verifier for Azure confidential VM (SEV-SNP) vTPM evidence.

On an Azure CVM the guest cannot put its own 64 bytes into an SNP report:
the paravisor (HCL) requests the report and fills ``report_data`` with the
hash of a JSON document, the *variable data*, that holds the vTPM
attestation key ``HCLAkPub``. The guest then proves freshness and its boot
state with an ordinary TPM quote signed by that key. Trust therefore runs

    ARK → ASK → VCEK → SNP report → SHA-256(variable data) → HCLAkPub
    → TPM quote → (nonce, PCR digest) → PCR values

and every arrow is checked here (steps 1-6 of the samples README):

1. the VCEK chain to the pinned ARK, and 2. the SNP report signature and
   VCEK ↔ report match (both by :func:`nestor.attestation.sev_snp.verify_report`);
3. ``report_data[0:32] == SHA-256(variable data)`` and the rest is zero;
4. the TPM quote (TPMS_ATTEST) signature, RSASSA-PKCS1-v1_5 / SHA-256,
   with ``HCLAkPub``;
5. the quote's ``extraData`` equals the relying party's nonce;
6. the quote's ``pcrDigest`` equals SHA-256 over the selected PCR values.

The result's ``report_data`` is the nonce: for this platform, that is the
value a relying party binds (the SNP report_data is fixed by the HCL and is
kept in ``claims["snp_report_data"]``). Only PCRs the quote selects appear
in ``measurements``: an unselected PCR value in the file is not attested.

Two evidence layouts exist (trustee's ``az-snp-vtpm``): v2 (hex quote,
unpadded base64url HCL report and DER VCEK) and the older v0 (JSON byte
arrays, PEM VCEK).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from nestor.attestation import sev_snp
from nestor.attestation.result import AttestationResult, Platform
from nestor.errors import (
    EvidenceBindingError,
    EvidenceFormatError,
    EvidenceSignatureError,
    NonceMismatchError,
)

MAX_EVIDENCE_SIZE: Final = 1 << 20

HCL_HEADER_SIZE: Final = 32
HCL_MAGIC: Final = b"HCLA"
HCL_REQUEST_TYPE_REPORT: Final = 2
IGVM_OFFSET: Final = HCL_HEADER_SIZE + sev_snp.REPORT_SIZE
IGVM_HEADER_SIZE: Final = 20
IGVM_REPORT_TYPE_SNP: Final = 2
# IGVM request data hash types: the digest of the variable data in report_data.
_HASHES: Final[dict[int, tuple[str, Callable[[bytes], Any]]]] = {
    1: ("SHA-256", hashlib.sha256),
    2: ("SHA-384", hashlib.sha384),
    3: ("SHA-512", hashlib.sha512),
}

TPM_GENERATED_VALUE: Final = 0xFF544347
TPM_ST_ATTEST_QUOTE: Final = 0x8018
TPM_ALG_SHA256: Final = 0x000B
PCR_COUNT: Final = 24
_MAX_TPM2B: Final = 66  # largest TPM2B here: TPM2B_NAME (hash alg + SHA-512 digest)
_MAX_SELECTIONS: Final = 16
_MAX_SELECT_BYTES: Final = 4


@dataclass(frozen=True)
class PcrSelection:
    hash_alg: int
    pcrs: tuple[int, ...]


@dataclass(frozen=True)
class TpmQuote:
    """A TPMS_ATTEST of type quote (TPM 2.0 Part 2, 10.12.12)."""

    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes


@dataclass(frozen=True)
class HclReport:
    """The HCL report: header, SNP report, IGVM request data."""

    snp_report: bytes
    report_type: int
    hash_type: int
    variable_data: bytes


@dataclass(frozen=True)
class AzureEvidence:
    layout: str
    hcl_report: bytes
    vcek: bytes
    quote_message: bytes
    quote_signature: bytes
    pcrs: tuple[bytes, ...]


class _Reader:
    """Big-endian TPM wire reader; running out is a format error naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise EvidenceFormatError(f"TPM quote (TPMS_ATTEST) is truncated in {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def tpm2b(self, what: str) -> bytes:
        size = self.uint(2, what)
        if size > _MAX_TPM2B:
            raise EvidenceFormatError(f"TPM quote (TPMS_ATTEST): {what} size {size} is too large")
        return self.take(size, what)


def parse_tpms_attest(message: bytes) -> TpmQuote:
    """Parse a quote TPMS_ATTEST; reject another magic, type or trailing bytes."""
    r = _Reader(message)
    magic = r.uint(4, "magic")
    if magic != TPM_GENERATED_VALUE:
        raise EvidenceFormatError(
            f"TPM quote (TPMS_ATTEST): magic is {magic:#010x}, expected TPM_GENERATED_VALUE "
            f"{TPM_GENERATED_VALUE:#010x} (not made by a TPM)"
        )
    st = r.uint(2, "type")
    if st != TPM_ST_ATTEST_QUOTE:
        raise EvidenceFormatError(
            f"TPM quote (TPMS_ATTEST): type is {st:#06x}, expected TPM_ST_ATTEST_QUOTE "
            f"{TPM_ST_ATTEST_QUOTE:#06x}"
        )
    signer = r.tpm2b("qualifiedSigner")
    extra = r.tpm2b("extraData")
    clock = r.uint(8, "clockInfo.clock")
    reset_count = r.uint(4, "clockInfo.resetCount")
    restart_count = r.uint(4, "clockInfo.restartCount")
    safe = r.uint(1, "clockInfo.safe")
    if safe > 1:
        raise EvidenceFormatError(f"TPM quote (TPMS_ATTEST): clockInfo.safe is {safe}, not 0/1")
    firmware = r.uint(8, "firmwareVersion")
    count = r.uint(4, "pcrSelect.count")
    if count > _MAX_SELECTIONS:
        raise EvidenceFormatError(
            f"TPM quote (TPMS_ATTEST): pcrSelect.count is {count}, at most "
            f"{_MAX_SELECTIONS} banks exist"
        )
    selections = []
    for i in range(count):
        alg = r.uint(2, f"pcrSelect[{i}].hash")
        size = r.uint(1, f"pcrSelect[{i}].sizeofSelect")
        if size > _MAX_SELECT_BYTES:
            raise EvidenceFormatError(
                f"TPM quote (TPMS_ATTEST): pcrSelect[{i}].sizeofSelect is {size}, "
                f"at most {_MAX_SELECT_BYTES}"
            )
        bitmap = r.take(size, f"pcrSelect[{i}].pcrSelect")
        pcrs = tuple(8 * j + b for j, byte in enumerate(bitmap) for b in range(8) if byte >> b & 1)
        selections.append(PcrSelection(alg, pcrs))
    digest = r.tpm2b("pcrDigest")
    if r.pos != len(message):
        raise EvidenceFormatError(
            f"TPM quote (TPMS_ATTEST): {len(message) - r.pos} bytes follow the pcrDigest"
        )
    return TpmQuote(
        qualified_signer=signer,
        extra_data=extra,
        clock=clock,
        reset_count=reset_count,
        restart_count=restart_count,
        safe=bool(safe),
        firmware_version=firmware,
        selections=tuple(selections),
        pcr_digest=digest,
    )


def parse_hcl_report(data: bytes) -> HclReport:
    """Split the HCL report into the SNP report and the variable data.

    The HCL header and the IGVM header are not signed; only the variable
    data's hash is (in the SNP report). They are read to find the bytes, and
    checked only as far as needed to refuse what this verifier cannot read.
    """
    if len(data) < IGVM_OFFSET + IGVM_HEADER_SIZE:
        raise EvidenceFormatError(
            f"HCL report: {len(data)} bytes, shorter than header + SNP report + IGVM header "
            f"({IGVM_OFFSET + IGVM_HEADER_SIZE})"
        )
    if data[:4] != HCL_MAGIC:
        raise EvidenceFormatError(f"HCL report: magic is {data[:4].hex()}, expected 'HCLA'")
    (request_type,) = struct.unpack_from("<I", data, 12)
    if request_type != HCL_REQUEST_TYPE_REPORT:
        raise EvidenceFormatError(
            f"HCL report: request type is {request_type}, expected "
            f"{HCL_REQUEST_TYPE_REPORT} (attestation report)"
        )
    _size, _version, report_type, hash_type, var_size = struct.unpack_from("<5I", data, IGVM_OFFSET)
    if report_type != IGVM_REPORT_TYPE_SNP:
        raise EvidenceFormatError(
            f"HCL report: IGVM report type is {report_type}, expected "
            f"{IGVM_REPORT_TYPE_SNP} (SEV-SNP)"
        )
    if hash_type not in _HASHES:
        raise EvidenceFormatError(
            f"HCL report: IGVM hash type is {hash_type}, expected 1 (SHA-256), 2 or 3"
        )
    start = IGVM_OFFSET + IGVM_HEADER_SIZE
    if var_size > len(data) - start:
        raise EvidenceFormatError(
            f"HCL report: variable data size {var_size} exceeds the "
            f"{len(data) - start} bytes that follow the IGVM header"
        )
    return HclReport(
        snp_report=data[HCL_HEADER_SIZE:IGVM_OFFSET],
        report_type=report_type,
        hash_type=hash_type,
        variable_data=data[start : start + var_size],
    )


# -- evidence file ----------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise EvidenceFormatError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise EvidenceFormatError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EvidenceFormatError(f"{what} is not a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise EvidenceFormatError(f"{what} has no {key!r}")
    return obj[key]


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EvidenceFormatError(f"{what} must be a hex string of whole bytes")
    return bytes.fromhex(value)


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _B64URL.fullmatch(value):
        raise EvidenceFormatError(f"{what} must be base64url")
    body = value.rstrip("=")
    if len(body) % 4 == 1:
        raise EvidenceFormatError(f"{what} must be base64url (length {len(body)} is impossible)")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise EvidenceFormatError(f"{what} must be base64url: {exc}") from exc


def _byte_array(value: Any, what: str) -> bytes:
    if not isinstance(value, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        raise EvidenceFormatError(f"{what} must be a JSON array of byte values 0..255")
    return bytes(value)


def _pcr_list(value: Any, what: str, decode: Callable[[Any, str], bytes]) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > PCR_COUNT:
        raise EvidenceFormatError(f"{what} must be a list of at most {PCR_COUNT} PCR values")
    pcrs = tuple(decode(v, f"{what}[{i}]") for i, v in enumerate(value))
    for i, pcr in enumerate(pcrs):
        if len(pcr) != 32:
            raise EvidenceFormatError(f"{what}[{i}] is {len(pcr)} bytes, a SHA-256 PCR is 32")
    return pcrs


def parse_evidence(evidence: bytes) -> AzureEvidence:
    """Read either evidence layout into bytes (no verification)."""
    if len(evidence) > MAX_EVIDENCE_SIZE:
        raise EvidenceFormatError(
            f"Azure vTPM evidence is {len(evidence)} bytes, more than {MAX_EVIDENCE_SIZE}"
        )
    obj = _json(evidence, "Azure vTPM evidence")
    if "version" in obj:
        if obj["version"] != 2 or isinstance(obj["version"], bool):
            raise EvidenceFormatError(
                f"Azure vTPM evidence: version {obj['version']!r} is not supported (only 2, "
                "or the unversioned v0 layout)"
            )
        quote = _field(obj, "tpm_quote", "Azure vTPM evidence v2")
        if not isinstance(quote, dict):
            raise EvidenceFormatError("Azure vTPM evidence v2: tpm_quote is not an object")
        return AzureEvidence(
            layout="v2",
            hcl_report=_b64url(_field(obj, "hcl_report", "evidence v2"), "hcl_report"),
            vcek=_b64url(_field(obj, "vcek", "evidence v2"), "vcek"),
            quote_message=_hex(_field(quote, "message", "tpm_quote"), "tpm_quote.message"),
            quote_signature=_hex(_field(quote, "signature", "tpm_quote"), "tpm_quote.signature"),
            pcrs=_pcr_list(_field(quote, "pcrs", "tpm_quote"), "tpm_quote.pcrs", _hex),
        )
    if "quote" in obj and "report" in obj:
        quote = obj["quote"]
        if not isinstance(quote, dict):
            raise EvidenceFormatError("Azure vTPM evidence v0: quote is not an object")
        vcek = _field(obj, "vcek", "Azure vTPM evidence v0")
        if not isinstance(vcek, str):
            raise EvidenceFormatError("Azure vTPM evidence v0: vcek must be a PEM string")
        return AzureEvidence(
            layout="v0",
            hcl_report=_byte_array(obj["report"], "report"),
            vcek=vcek.encode("utf-8"),
            quote_message=_byte_array(_field(quote, "message", "quote"), "quote.message"),
            quote_signature=_byte_array(_field(quote, "signature", "quote"), "quote.signature"),
            pcrs=_pcr_list(_field(quote, "pcrs", "quote"), "quote.pcrs", _byte_array),
        )
    raise EvidenceFormatError(
        "not Azure vTPM evidence: expected {version: 2, tpm_quote, hcl_report, vcek} "
        "or {quote, report, vcek}"
    )


def _attestation_key(variable_data: bytes) -> tuple[rsa.RSAPublicKey, dict[str, Any]]:
    """``HCLAkPub`` from the (already hash-verified) variable data."""
    doc = _json(variable_data, "HCL variable data")
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise EvidenceFormatError("HCL variable data has no 'keys' list")
    found = [k for k in keys if isinstance(k, dict) and k.get("kid") == "HCLAkPub"]
    if len(found) != 1:
        raise EvidenceFormatError(
            f"HCL variable data must hold exactly one HCLAkPub key, found {len(found)}"
        )
    jwk = found[0]
    if jwk.get("kty") != "RSA":
        raise EvidenceFormatError("HCL variable data: HCLAkPub is not an RSA JWK")
    n = int.from_bytes(_b64url(jwk.get("n"), "HCLAkPub.n"), "big")
    e = int.from_bytes(_b64url(jwk.get("e"), "HCLAkPub.e"), "big")
    if n.bit_length() < 2048:
        raise EvidenceFormatError(
            f"HCL variable data: HCLAkPub modulus is {n.bit_length()} bits, expected >= 2048"
        )
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise EvidenceFormatError(
            f"HCL variable data: HCLAkPub is not a valid RSA key: {exc}"
        ) from exc
    return key, doc


def verify_azure_evidence(evidence: bytes, *, nonce: bytes, now: datetime) -> AttestationResult:
    """Verify Azure SNP vTPM evidence for ``nonce`` at ``now`` (see module doc).

    Errors: :class:`EvidenceFormatError` (unreadable), ``CertificateChainError``
    and ``EvidenceSignatureError`` from the SNP report, :class:`EvidenceBindingError`
    (variable data or PCR values do not match their signed digest),
    ``EvidenceSignatureError`` (TPM quote), :class:`NonceMismatchError`.
    """
    if not 1 <= len(nonce) <= 64:
        # No quote can carry it (extraData is a TPM2B_DATA of at most 64 bytes),
        # and an empty nonce would prove no freshness at all.
        raise NonceMismatchError(
            f"the nonce is {len(nonce)} bytes; a TPM quote nonce is 1 to 64 bytes"
        )
    ev = parse_evidence(evidence)
    hcl = parse_hcl_report(ev.hcl_report)
    quote = parse_tpms_attest(ev.quote_message)

    # Steps 1 and 2: chain, VCEK ↔ report, report signature.
    snp = sev_snp.verify_report(hcl.snp_report, endorsement=ev.vcek, now=now)

    # Step 3: the HCL variable data is the data the SNP report vouches for.
    hash_name, hash_fn = _HASHES[hcl.hash_type]
    digest = hash_fn(hcl.variable_data).digest()
    if snp.report_data[: len(digest)] != digest:
        raise EvidenceBindingError(
            f"the HCL variable data is not what the SNP report vouches for: "
            f"report_data[0:{len(digest)}] != {hash_name}(variable data)"
        )
    if any(snp.report_data[len(digest) :]):
        raise EvidenceBindingError(
            f"SNP report_data[{len(digest)}:64] is not zero after the {hash_name} "
            "of the variable data"
        )
    ak, runtime = _attestation_key(hcl.variable_data)

    # Step 4: the quote is signed by the attestation key the SNP report vouches for.
    try:
        ak.verify(ev.quote_signature, ev.quote_message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise EvidenceSignatureError(
            "the TPM quote signature does not verify with HCLAkPub "
            "(RSASSA-PKCS1-v1_5 / SHA-256 over TPMS_ATTEST)"
        ) from None

    # Step 5: freshness.
    if quote.extra_data != nonce:
        raise NonceMismatchError(
            f"the TPM quote was made for another nonce: extraData is "
            f"{quote.extra_data.hex()}, expected {nonce.hex()}"
        )

    # Step 6: the PCR values in the file are the ones the quote digested.
    selected: list[int] = []
    for sel in quote.selections:
        if sel.hash_alg != TPM_ALG_SHA256:
            raise EvidenceFormatError(
                f"the TPM quote selects PCR bank {sel.hash_alg:#06x}; the evidence has "
                "only SHA-256 (0x000b) PCR values"
            )
        selected.extend(sel.pcrs)
    for i in selected:
        if i >= len(ev.pcrs):
            raise EvidenceFormatError(
                f"the TPM quote selects PCR {i}, but the evidence lists {len(ev.pcrs)} values"
            )
    pcr_digest = hashlib.sha256(b"".join(ev.pcrs[i] for i in selected)).digest()
    if pcr_digest != quote.pcr_digest:
        raise EvidenceBindingError(
            "the PCR values in the evidence are not the ones the TPM quote covers: "
            f"SHA-256 of the selected PCRs is {pcr_digest.hex()}, pcrDigest is "
            f"{quote.pcr_digest.hex()}"
        )

    measurements = dict(snp.measurements)
    measurements.update({f"pcr{i}": ev.pcrs[i].hex() for i in sorted(set(selected))})
    vm_config = runtime.get("vm-configuration")
    claims = dict(snp.claims)
    claims.update(
        {
            "evidence_layout": ev.layout,
            "snp_report_data": snp.report_data.hex(),
            "hcl_ak_pub_sha256": hashlib.sha256(
                ak.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            ).hexdigest(),
            "vm_configuration": vm_config if isinstance(vm_config, dict) else None,
            "user_data": runtime.get("user-data")
            if isinstance(runtime.get("user-data"), str)
            else None,
            "tpm_clock": quote.clock,
            "tpm_reset_count": quote.reset_count,
            "tpm_restart_count": quote.restart_count,
            "tpm_firmware_version": f"{quote.firmware_version:016x}",
            "tpm_pcr_digest": quote.pcr_digest.hex(),
        }
    )
    return AttestationResult(
        platform=Platform.AZURE_SNP_VTPM,
        measurements=measurements,
        numbers=dict(snp.numbers),
        tcb_status=None,
        advisory_ids=(),
        debug=snp.debug,
        report_data=nonce,
        chain=snp.chain,
        verified_at=now,
        evidence_digest="sha256:" + hashlib.sha256(evidence).hexdigest(),
        claims=claims,
    )
