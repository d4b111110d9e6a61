"""Verifier for Intel SGX and TDX DCAP quotes, on top of dcap-qvl.

A DCAP quote is a report body (the SGX enclave's or the TD's measurements and
the 64 bytes of report data) signed by an attestation key. The Quoting
Enclave (QE) certifies that key in its own report, which the platform's PCK
(Provisioning Certification Key) signs; the PCK certificate chains to the
Intel SGX Root CA. Whether the platform behind that PCK is still trustworthy
is decided by *collateral* Intel publishes per FMSPC (CPU family and
platform): a signed TCB info (which firmware/microcode levels are
``UpToDate``, which need configuration or are out of date), a signed QE
identity, and the root CA and PCK CRLs. Collateral expires within about a
month, so a verification only means something at a stated time.

The cryptography and Intel's appraisal rules are dcap-qvl's (Phala Network's
Rust port of Intel's QVL). This module adds what Nestor needs around it:

* the trust anchor is *pinned*: the root certificate that ends every
  collateral chain must have the SHA-256 fingerprint
  :data:`nestor.attestation.roots.INTEL_SGX_ROOT_CA`, and it is that exact
  certificate dcap-qvl verifies against, so trust never rests on a root the
  library or the collateral supplier chose;
* the verification time is always explicit (``now``), never the clock;
* the quote's layout is checked before dcap-qvl sees it (truncation, unknown
  TEE type, trailing bytes), so malformed evidence fails with a precise
  message;
* every dcap-qvl failure (it raises ``ValueError`` with a message string) is
  mapped onto one :class:`~nestor.errors.AttestationError` subclass naming
  the step that failed, with dcap-qvl's own reason kept in the message;
* the outcome is normalised into an :class:`AttestationResult`.

Collateral comes from a file (:func:`load_collateral`) or a PCCS / Intel PCS
(:class:`CollateralSource`), which caches it per FMSPC, PCK CA and TEE type
and can work offline from that cache.

dcap-qvl refuses, on its own, SGX enclaves and TDs in debug mode and TDs with
non-production attributes (profiling, migration, SEPT_VE_DISABLE off, service
TDs); :data:`AttestationResult.debug` is still computed from the report, so a
later dcap-qvl that lets such quotes through cannot make appraisal miss them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import importlib
import itertools
import json
import os
import re
import struct
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nestor.attestation import roots
from nestor.attestation.result import AttestationResult, Platform
from nestor.errors import (
    AttestationError,
    CertificateChainError,
    CollateralError,
    ConfigurationError,
    EvidenceFormatError,
    EvidenceSignatureError,
    TcbError,
)

__all__ = [
    "INTEL_PCS_URL",
    "PHALA_PCCS_URL",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "CollateralSource",
    "QuoteHeader",
    "collateral_cache_key",
    "detect",
    "get_collateral",
    "load_collateral",
    "parse_quote_header",
    "verify_quote",
]

# -- dcap-qvl, typed ---------------------------------------------------------------
#
# dcap-qvl ships a .pyi but no py.typed marker, so mypy would see it as Any.
# These protocols name exactly the part of its API this module relies on.


class _Collateral(Protocol):
    def to_json(self) -> str: ...


class _CollateralClass(Protocol):
    def from_json(self, json_str: str) -> _Collateral: ...


class _VerifiedReport(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def advisory_ids(self) -> list[str]: ...

    def to_json(self) -> str: ...


class _PckExtension(Protocol):
    @property
    def cpu_svn(self) -> bytes: ...

    @property
    def pce_svn(self) -> int: ...

    @property
    def pce_id(self) -> bytes: ...

    @property
    def sgx_type(self) -> int: ...

    @property
    def fmspc(self) -> bytes: ...


class _ParsedQuote(Protocol):
    def cert_chain_pem_bytes(self) -> bytes | None: ...

    def pck_extension(self) -> _PckExtension | None: ...

    def fmspc(self) -> str: ...

    def ca(self) -> str: ...


class _DcapQvl(Protocol):
    QuoteCollateralV3: _CollateralClass

    def verify_with_root_ca(
        self, raw_quote: bytes, collateral: _Collateral, root_ca_der: bytes, now_secs: int
    ) -> _VerifiedReport: ...

    def parse_quote(self, raw_quote: bytes) -> _ParsedQuote: ...

    def get_collateral(self, pccs_url: str, raw_quote: bytes) -> Awaitable[_Collateral]: ...


_qvl = cast(_DcapQvl, importlib.import_module("dcap_qvl"))

# -- quote layout (Intel SGX/TDX DCAP quote format, versions 3 to 5) -------------------

TEE_TYPE_SGX: Final = 0x00000000
TEE_TYPE_TDX: Final = 0x00000081
HEADER_LENGTH: Final = 48
# Report body sizes: SGX enclave report; TD report 1.0 (v4, v5 type 2); TD report
# 1.5 (v5 type 3: + TEE_TCB_SVN2, MRSERVICETD); TD report 1.5ex (v5 type 4).
_BODY_SIZES: Final = {1: 384, 2: 584, 3: 648, 4: 885}
_V5_BODY_DESCRIPTOR: Final = 6  # u16 body type, u32 body size
ATTRIBUTE_DEBUG_SGX: Final = 0x02  # ATTRIBUTES.DEBUG, bit 1 of the first byte
TD_ATTRIBUTE_DEBUG: Final = 0x01  # TDATTRIBUTES.DEBUG (TUD), bit 0 of the first byte

PHALA_PCCS_URL: Final = "https://pccs.phala.network"
INTEL_PCS_URL: Final = "https://api.trustedservices.intel.com"

_COLLATERAL_FIELDS: Final = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
_ISSUER_CHAINS: Final = (
    "pck_crl_issuer_chain",
    "tcb_info_issuer_chain",
    "qe_identity_issuer_chain",
)
_PCK_CHAIN_FIELD: Final = "pck_certificate_chain"


@dataclass(frozen=True)
class QuoteHeader:
    """The fixed 48-byte quote header, plus the report body's type and size.

    ``declared_length`` is header + body + signature data as the quote's own
    length fields declare them, or ``None`` when the bytes end before those
    fields: it is what lets :func:`verify_quote` tell a truncated quote from
    one followed by zero padding.
    """

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    body_type: int
    body_size: int
    declared_length: int | None

    @property
    def platform(self) -> Platform:
        return Platform.TDX if self.tee_type == TEE_TYPE_TDX else Platform.SGX


def parse_quote_header(quote: bytes) -> QuoteHeader:
    """Parse the quote header; :class:`EvidenceFormatError` if it is not a DCAP quote.

    Only the layout is checked here (version 3 to 5, SGX or TDX TEE type, a
    known body type); whether dcap-qvl supports that combination is left to
    it, so its refusal can be reported in its words.
    """
    quote = bytes(quote)
    if len(quote) < HEADER_LENGTH:
        raise EvidenceFormatError(
            f"not an Intel DCAP quote: {len(quote)} bytes, shorter than the "
            f"{HEADER_LENGTH}-byte quote header"
        )
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", quote)
    if version not in (3, 4, 5):
        raise EvidenceFormatError(
            f"not an Intel DCAP quote: version {version} (this verifier reads versions 3 to 5)"
        )
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise EvidenceFormatError(
            f"not an Intel DCAP quote: TEE type 0x{tee_type:08x} is neither SGX "
            f"(0x{TEE_TYPE_SGX:08x}) nor TDX (0x{TEE_TYPE_TDX:08x})"
        )
    if version == 5:
        if len(quote) < HEADER_LENGTH + _V5_BODY_DESCRIPTOR:
            raise EvidenceFormatError(
                f"truncated quote: {len(quote)} bytes end inside the v5 report body descriptor"
            )
        body_type, body_size = struct.unpack_from("<HI", quote, HEADER_LENGTH)
        if _BODY_SIZES.get(body_type) != body_size:
            raise EvidenceFormatError(
                f"malformed v5 quote: report body type {body_type} with size {body_size}"
            )
        body_end = HEADER_LENGTH + _V5_BODY_DESCRIPTOR + body_size
    else:
        body_type = 1 if tee_type == TEE_TYPE_SGX else 2
        body_size = _BODY_SIZES[body_type]
        body_end = HEADER_LENGTH + body_size
    if (body_type == 1) != (tee_type == TEE_TYPE_SGX):
        raise EvidenceFormatError(
            f"malformed quote: report body type {body_type} does not fit TEE type 0x{tee_type:08x}"
        )
    declared: int | None = None
    if len(quote) >= body_end + 4:
        (signature_length,) = struct.unpack_from("<I", quote, body_end)
        declared = body_end + 4 + signature_length
    return QuoteHeader(
        version=version,
        attestation_key_type=key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=quote[12:28],
        body_type=body_type,
        body_size=body_size,
        declared_length=declared,
    )


def detect(quote: bytes) -> Platform | None:
    """``Platform.SGX`` or ``Platform.TDX`` if ``quote`` looks like a DCAP quote, else None.

    For choosing a verifier only: it reads the header, it proves nothing.
    """
    try:
        return parse_quote_header(quote).platform
    except EvidenceFormatError:
        return None


def _check_layout(quote: bytes, header: QuoteHeader) -> None:
    """Reject a quote that ends early, or that carries anything but zero padding after it.

    dcap-qvl ignores bytes after the signature data. Some producers hand out
    quotes in a zero-filled buffer (the TDX v4 sample has 70 zero bytes after
    it), so zeros are accepted; anything else would be unsigned data riding
    along with signed evidence, and is refused.
    """
    label = header.platform.value.upper()
    if header.declared_length is None:
        raise EvidenceFormatError(
            f"truncated {label} quote: its {len(quote)} bytes end before the signature data "
            f"(the {header.body_size}-byte report body needs more)"
        )
    if len(quote) < header.declared_length:
        raise EvidenceFormatError(
            f"truncated {label} quote: its length fields declare {header.declared_length} "
            f"bytes, only {len(quote)} are present"
        )
    if quote[header.declared_length :].strip(b"\x00"):
        raise EvidenceFormatError(
            f"{label} quote is followed by {len(quote) - header.declared_length} bytes that "
            "are not zero padding (unsigned data after the signature)"
        )


# -- collateral ----------------------------------------------------------------------


@dataclass(frozen=True)
class _PreparedCollateral:
    """Collateral parsed once: dcap-qvl's object, the pinned root, what the result reports."""

    collateral: _Collateral
    root: x509.Certificate
    root_der: bytes
    pck_chain_pem: str | None
    tcb_evaluation_data_number: int | None
    valid_from: datetime
    valid_until: datetime


def load_collateral(path: str | os.PathLike[str]) -> bytes:
    """Read a dcap-qvl ``QuoteCollateralV3`` JSON file and check its shape and root.

    Returns the file's bytes unchanged (the TCB info and QE identity are
    signed texts; they are never re-serialised).
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise CollateralError(
            f"cannot read the collateral file {file}: {exc.strerror or exc}",
            hint="fetch it from a PCCS or Intel PCS (CollateralSource) or pass another file",
        ) from exc
    _prepare_bytes(data)
    return data


def _prepare(collateral: bytes | Mapping[str, Any]) -> _PreparedCollateral:
    if isinstance(collateral, Mapping):
        try:
            text = json.dumps(dict(collateral))
        except (TypeError, ValueError) as exc:
            raise CollateralError(f"the collateral mapping is not JSON data: {exc}") from exc
        return _prepare_bytes(text.encode())
    if isinstance(collateral, bytes | bytearray | memoryview):
        return _prepare_bytes(bytes(collateral))
    raise CollateralError(
        f"collateral must be JSON bytes or a mapping, not {type(collateral).__name__}"
    )


@lru_cache(maxsize=16)
def _prepare_bytes(data: bytes) -> _PreparedCollateral:
    """Parse and pin-check collateral; cached because one collateral set serves
    every quote of an FMSPC for weeks."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"the collateral is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise CollateralError("the collateral must be a JSON object (dcap-qvl QuoteCollateralV3)")
    missing = [k for k in _COLLATERAL_FIELDS if not isinstance(obj.get(k), str)]
    if missing:
        raise CollateralError(
            "the collateral lacks the dcap-qvl QuoteCollateralV3 field(s) " + ", ".join(missing)
        )
    for name in ("tcb_info_signature", "qe_identity_signature"):
        if not re.fullmatch(r"[0-9a-fA-F]{128}", obj[name]):
            raise CollateralError(
                f"the collateral's {name} must be 64 bytes (raw ECDSA P-256 r||s) in hex"
            )
    pck_chain = obj.get(_PCK_CHAIN_FIELD)
    if pck_chain is not None and not isinstance(pck_chain, str):
        raise CollateralError(f"the collateral's {_PCK_CHAIN_FIELD} must be a PEM string")

    root: x509.Certificate | None = None
    for name in _ISSUER_CHAINS:
        certs = _load_pem_chain(obj[name], f"the collateral's {name}", CollateralError)
        top = certs[-1]
        _require_pinned_root(top, f"the collateral's {name}")
        root = top
    if root is None:  # pragma: no cover - _ISSUER_CHAINS is not empty
        raise CollateralError("the collateral has no issuer chain")

    tcb_info = _signed_json(obj["tcb_info"], "tcb_info")
    qe_identity = _signed_json(obj["qe_identity"], "qe_identity")
    starts = [_json_time(tcb_info, "issueDate", "tcb_info")]
    ends = [_json_time(tcb_info, "nextUpdate", "tcb_info")]
    starts.append(_json_time(qe_identity, "issueDate", "qe_identity"))
    ends.append(_json_time(qe_identity, "nextUpdate", "qe_identity"))
    for name in ("root_ca_crl", "pck_crl"):
        this_update, next_update = _crl_window(obj[name], name)
        starts.append(this_update)
        if next_update is not None:
            ends.append(next_update)
    number = tcb_info.get("tcbEvaluationDataNumber")

    try:
        native = _qvl.QuoteCollateralV3.from_json(data.decode())
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise CollateralError(f"dcap-qvl cannot read the collateral: {exc}") from exc
    return _PreparedCollateral(
        collateral=native,
        root=root,
        root_der=root.public_bytes(Encoding.DER),
        pck_chain_pem=pck_chain,
        tcb_evaluation_data_number=number if isinstance(number, int) else None,
        valid_from=max(starts),
        valid_until=min(ends),
    )


def _load_pem_chain(pem: str, what: str, error: type[AttestationError]) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise error(f"{what} is not a PEM certificate chain: {exc}") from exc
    return certs


def _require_pinned_root(cert: x509.Certificate, where: str) -> None:
    """The pin: the last certificate of a chain must be the Intel SGX Root CA itself."""
    found = roots.fingerprint(cert)
    if found != roots.INTEL_SGX_ROOT_CA:
        raise CertificateChainError(
            f"{where} ends with {_subject(cert)!r} (SHA-256 {found}), not the pinned "
            f"Intel SGX Root CA (SHA-256 {roots.INTEL_SGX_ROOT_CA})",
            hint="collateral and quotes must chain to Intel's production root; "
            "fetch the collateral again from a PCCS or Intel PCS",
        )


def _signed_json(text: str, name: str) -> dict[str, Any]:
    # Read only for dates and the evaluation data number; dcap-qvl checks the
    # signature over these exact bytes.
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"the collateral's {name} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise CollateralError(f"the collateral's {name} is not a JSON object")
    return obj


def _json_time(obj: Mapping[str, Any], key: str, name: str) -> datetime:
    value = obj.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError("missing")
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CollateralError(f"the collateral's {name} has no valid {key}") from exc
    if parsed.tzinfo is None:
        raise CollateralError(f"the collateral's {name} {key} has no time zone")
    return parsed


def _crl_window(hex_der: str, name: str) -> tuple[datetime, datetime | None]:
    try:
        crl = x509.load_der_x509_crl(bytes.fromhex(hex_der))
        return crl.last_update_utc, crl.next_update_utc
    except ValueError as exc:
        raise CollateralError(f"the collateral's {name} is not a hex-encoded DER CRL") from exc


# -- verification ---------------------------------------------------------------------


def verify_quote(
    quote: bytes, collateral: bytes | Mapping[str, Any], *, now: datetime
) -> AttestationResult:
    """Verify an SGX (v3) or TDX (v4, v5) DCAP quote with its collateral at ``now``.

    ``collateral`` is dcap-qvl ``QuoteCollateralV3`` JSON, as bytes or parsed.
    ``now`` must be timezone-aware: collateral is only valid inside a window
    of about a month, and the caller states which instant it vouches for.

    Raises an :class:`~nestor.errors.AttestationError` subclass saying which
    step failed, with dcap-qvl's reason in the message:

    * :class:`EvidenceFormatError`: not a usable quote (truncated, trailing
      data, unknown version, TEE or key type, QE vendor), or a debug /
      non-production enclave or TD, which dcap-qvl refuses outright;
    * :class:`EvidenceSignatureError`: the quote signature, the QE report
      signature or its binding of the attestation key does not verify, or the
      certifying enclave is not Intel's QE;
    * :class:`CertificateChainError`: a PCK or collateral certificate chain
      does not lead to the pinned root, or a certificate is malformed, revoked
      or not valid at ``now``;
    * :class:`CollateralError`: collateral malformed, unsigned, for another
      TEE type or FMSPC, or (TCB info, QE identity, a CRL) outside its
      validity window at ``now``;
    * :class:`TcbError`: no TCB level matches the platform, or it is revoked.

    A naive ``now`` is a programming error: ``ValueError``.
    """
    now_secs = _unix_seconds(now)
    quote = bytes(quote)
    header = parse_quote_header(quote)
    _check_layout(quote, header)
    prepared = _prepare(collateral)
    if prepared.pck_chain_pem is not None:
        _require_same_pck_chain(quote, prepared.pck_chain_pem)
    label = header.platform.value.upper()
    try:
        report = _qvl.verify_with_root_ca(quote, prepared.collateral, prepared.root_der, now_secs)
        report_json = report.to_json()
        tcb_status = report.status
        advisory_ids = tuple(report.advisory_ids)
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise _map_failure(str(exc), label) from exc
    return _normalise(quote, header, prepared, report_json, tcb_status, advisory_ids, now)


def _unix_seconds(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    seconds = int(now.timestamp())
    if seconds < 0:
        raise ValueError("now must not be before 1970-01-01T00:00:00Z")
    return seconds


def _is_library_failure(exc: BaseException) -> bool:
    """dcap-qvl raises ValueError; a Rust panic surfaces as pyo3's PanicException,
    which derives from BaseException. Both are the library's failure, not ours
    to propagate; interpreter exits and interrupts are."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _require_same_pck_chain(quote: bytes, collateral_chain: str) -> None:
    """dcap-qvl prefers a PCK chain in the collateral over the quote's own: make
    sure the two agree, so a cached chain of another machine cannot surface as
    a confusing QE report signature failure."""
    try:
        embedded = _qvl.parse_quote(quote).cert_chain_pem_bytes()
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        return  # dcap-qvl will report why the quote does not parse
    if embedded is None:
        return
    theirs = _load_pem_chain(collateral_chain, "the collateral's PCK chain", CertificateChainError)
    ours = _load_pem_chain(
        embedded.decode("latin-1"), "the quote's PCK chain", CertificateChainError
    )
    if [c.public_bytes(Encoding.DER) for c in theirs] != [
        c.public_bytes(Encoding.DER) for c in ours
    ]:
        raise CertificateChainError(
            "the collateral carries a PCK certificate chain different from the one in the quote",
            hint="collateral fetched for another machine; fetch it again for this quote",
        )


def _normalise(
    quote: bytes,
    header: QuoteHeader,
    prepared: _PreparedCollateral,
    report_json: str,
    tcb_status: str,
    advisory_ids: tuple[str, ...],
    now: datetime,
) -> AttestationResult:
    """Turn dcap-qvl's verified report into Nestor's result.

    Measurements come from dcap-qvl's serialised report, i.e. from exactly the
    body it verified; FMSPC, PCK CA and the PCK extension come from the
    (verified) leaf certificate.
    """
    label = header.platform.value.upper()
    try:
        verified = json.loads(report_json)
        ((variant, body),) = verified["report"].items()
        fields = _flatten(body)
        parsed = _qvl.parse_quote(quote)
        extension = parsed.pck_extension()
        embedded = parsed.cert_chain_pem_bytes()
        report_data = bytes.fromhex(fields["report_data"])
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise EvidenceFormatError(
            f"{label} quote verified, but its report cannot be read: {exc!r}"
        ) from exc

    pem = prepared.pck_chain_pem or (embedded.decode("latin-1") if embedded else None)
    if pem is None:
        raise CertificateChainError(f"{label} quote verified without a PCK certificate chain")
    chain, pck_ca = _pck_chain(pem, prepared.root, label)

    claims: dict[str, Any] = {
        "quote_version": header.version,
        "tee_type": f"0x{header.tee_type:08x}",
        "report_body": variant,
        "fmspc": extension.fmspc.hex() if extension is not None else None,
        "pck_ca": pck_ca,
        "qe_svn": header.qe_svn,
        "pce_svn": header.pce_svn,
        "qe_vendor_id": header.qe_vendor_id.hex(),
        "platform_tcb_status": _status_of(verified.get("platform_status")),
        "qe_tcb_status": _status_of(verified.get("qe_status")),
        "tcb_evaluation_data_number": prepared.tcb_evaluation_data_number,
        "collateral_valid_from": _iso(prepared.valid_from),
        "collateral_valid_until": _iso(prepared.valid_until),
    }
    if extension is not None:
        claims["pck_cpu_svn"] = extension.cpu_svn.hex()
        claims["pck_pce_svn"] = extension.pce_svn
        claims["pce_id"] = extension.pce_id.hex()
        claims["sgx_type"] = extension.sgx_type

    measurements: dict[str, str]
    numbers: dict[str, int]
    try:
        if header.platform is Platform.SGX:
            attributes = bytes.fromhex(fields["attributes"])
            debug = bool(attributes[0] & ATTRIBUTE_DEBUG_SGX)
            measurements = {
                "mrenclave": fields["mr_enclave"].lower(),
                "mrsigner": fields["mr_signer"].lower(),
            }
            numbers = {
                "isv_prod_id": int(fields["isv_prod_id"]),
                "isv_svn": int(fields["isv_svn"]),
            }
            claims["cpu_svn"] = fields["cpu_svn"].lower()
            claims["misc_select"] = int(fields["misc_select"])
            claims["attributes"] = attributes.hex()
        else:
            td_attributes = bytes.fromhex(fields["td_attributes"])
            debug = bool(td_attributes[0] & TD_ATTRIBUTE_DEBUG)
            measurements = {
                "mrtd": fields["mr_td"].lower(),
                "rtmr0": fields["rt_mr0"].lower(),
                "rtmr1": fields["rt_mr1"].lower(),
                "rtmr2": fields["rt_mr2"].lower(),
                "rtmr3": fields["rt_mr3"].lower(),
                "mrconfigid": fields["mr_config_id"].lower(),
                "mrowner": fields["mr_owner"].lower(),
                "mrownerconfig": fields["mr_owner_config"].lower(),
                "mrseam": fields["mr_seam"].lower(),
            }
            numbers = {}
            for key in ("tee_tcb_svn", "mr_signer_seam", "seam_attributes", "xfam"):
                claims[key] = fields[key].lower()
            claims["td_attributes"] = td_attributes.hex()
            for key in ("tee_tcb_svn2", "mr_service_td"):
                if key in fields:
                    claims[key] = fields[key].lower()
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise EvidenceFormatError(
            f"{label} quote verified, but its {variant} report lacks a field: {exc!r}"
        ) from exc

    return AttestationResult(
        platform=header.platform,
        measurements=measurements,
        numbers=numbers,
        tcb_status=tcb_status,
        advisory_ids=advisory_ids,
        debug=debug,
        report_data=report_data,
        chain=chain,
        verified_at=now,
        evidence_digest="sha256:" + hashlib.sha256(quote).hexdigest(),
        claims=claims,
    )


def _flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """dcap-qvl nests TD report 1.5 as ``{"base": <1.0 fields>, ...}`` (1.5ex one level
    deeper); flatten so field names are the same for every TD report version."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "base" and isinstance(value, Mapping):
            out.update(_flatten(value))
        else:
            out[key] = value
    return out


def _status_of(value: object) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("status"), str):
        return str(value["status"])
    return None


def _pck_chain(pem: str, root: x509.Certificate, label: str) -> tuple[tuple[str, ...], str | None]:
    """Subjects leaf first, ending with the pinned root's subject and fingerprint,
    and the PCK CA (``processor`` or ``platform``) that issued the leaf.

    dcap-qvl has verified the path leaf → PCK CA → pinned root. The chain as
    embedded must say the same thing: each certificate issued by the next,
    and a root copy, if present, byte-identical to the pinned one (dcap-qvl
    itself never looks at that copy).
    """
    what = f"the {label} quote's PCK certificate chain"
    certs = _load_pem_chain(pem, what, CertificateChainError)
    try:
        names = [(cert.subject, cert.issuer) for cert in certs]
        for (subject, issuer), (parent, _) in itertools.pairwise(names):
            if issuer != parent:
                raise CertificateChainError(
                    f"{what} is not in leaf-to-root order: {subject.rfc4514_string()!r} "
                    f"is not issued by {parent.rfc4514_string()!r}"
                )
        if names[-1][0] == names[-1][1]:
            _require_pinned_root(certs[-1], what)
            names = names[:-1]
        if not names:
            raise CertificateChainError(f"{what} has no PCK leaf")
        subjects = [subject.rfc4514_string() for subject, _ in names]
        # As dcap-qvl decides it: by the leaf issuer's name.
        leaf_issuer = names[0][1].rfc4514_string()
    except (ValueError, TypeError) as exc:
        # cryptography parses names lazily: a corrupted certificate that loaded
        # may still fail here.
        raise CertificateChainError(f"{what} holds a malformed certificate: {exc}") from exc
    pck_ca = None
    if "Processor" in leaf_issuer:
        pck_ca = "processor"
    elif "Platform" in leaf_issuer:
        pck_ca = "platform"
    return (*subjects, _subject(root), roots.INTEL_SGX_ROOT_CA), pck_ca


def _subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except (ValueError, TypeError):
        return "<malformed subject>"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- dcap-qvl failures ---------------------------------------------------------------

_Rule = tuple[re.Pattern[str], type[AttestationError], str]


def _rule(pattern: str, error: type[AttestationError], explanation: str) -> _Rule:
    return re.compile(pattern), error, explanation


# Matched in order against dcap-qvl 0.7.0's reason (context and causes joined
# by ": "). Earlier rules win: a CRL that expired is reported as collateral
# out of date even though webpki finds it while walking a certificate chain.
_RULES: Final[tuple[_Rule, ...]] = (
    # collateral outside its validity window at `now`
    _rule(
        r"TCBInfo expired|QE Identity expired",
        CollateralError,
        "the collateral has expired at the verification time",
    ),
    _rule(
        r"issue date is in the future",
        CollateralError,
        "the collateral is not yet valid at the verification time",
    ),
    _rule(
        r"CrlExpired|ExpiredRevocationList",
        CollateralError,
        "a certificate revocation list in the collateral has expired at the verification time",
    ),
    # collateral malformed, unsigned or for another platform
    _rule(
        r"Signature is invalid for (tcb_info|qe_identity)",
        CollateralError,
        "the collateral's TCB info or QE identity signature does not verify",
    ),
    _rule(
        r"Unsupported QE Identity id/version|non-(TDX|SGX) TCB info|Fmspc mismatch",
        CollateralError,
        "the collateral is for another platform (TEE type or FMSPC) than the quote",
    ),
    _rule(
        r"UnknownRevocationStatus|IssuerNotCrlSigner|InvalidCrl\w*|UnsupportedCrl\w*|"
        r"UnsupportedDeltaCrl|UnsupportedIndirectCrl|UnsupportedRevocationReason\w*|"
        r"Failed to parse (root CA |PCK )?CRL|RevocationOptionsBuilder",
        CollateralError,
        "the collateral's certificate revocation lists are invalid or do not cover the "
        "certificate chains",
    ),
    _rule(
        r"Failed to decode (TcbInfo|QeIdentity)|Failed to parse (TCB Info|QE Identity) "
        r"(issue date|next update)|component count mismatch|tdxModule|No TCB levels found|"
        r"Failed to decode TCB FMSPC|Invalid TDX module tcbDate|Invalid TCB level tcbDate|"
        r"RFC3339",
        CollateralError,
        "the collateral's TCB info or QE identity is malformed",
    ),
    # TCB appraisal
    _rule(
        r"No matching TCB level|TCB status is invalid|Unrecognized TCB status|below minimum|"
        r"TDX module|current TDX TCB",
        TcbError,
        "the platform's TCB is not supported by Intel's TCB info (or is revoked)",
    ),
    # signatures over the evidence
    _rule(
        r"ISV enclave report signature is invalid",
        EvidenceSignatureError,
        "the quote signature over the header and report body does not verify with the "
        "attestation key",
    ),
    _rule(
        r"Signature is invalid for qe_report",
        EvidenceSignatureError,
        "the Quoting Enclave report signature does not verify with the PCK certificate's key",
    ),
    _rule(
        r"QE report hash mismatch",
        EvidenceSignatureError,
        "the Quoting Enclave report does not certify the quote's attestation key",
    ),
    _rule(
        r"QE (MRSIGNER|ISVPRODID|MISCSELECT|ATTRIBUTES) mismatch|QE report validation failed",
        EvidenceSignatureError,
        "the enclave that certified the attestation key is not Intel's Quoting Enclave "
        "as the QE identity describes it",
    ),
    # certificate chains
    _rule(
        r"CertExpired|CertNotValidYet",
        CertificateChainError,
        "a certificate is not valid at the verification time",
    ),
    _rule(r"CertRevoked", CertificateChainError, "a certificate in the chain is revoked"),
    _rule(
        r"Failed to verify certificate chain|PCK certificate|Failed to parse certs|"
        r"Certificate chain is too short|leaf certificate|Failed to load root ca|"
        r"Too many intermediate certificates|Intel extension|Fmspc length|CpuSvn|PceSvn|"
        r"OID is missing|Failed to decode DER object|Failed to load sequence|"
        r"Failed to get subobject|Failed to decode certificate",
        CertificateChainError,
        "the PCK or collateral certificate chain does not verify to the pinned Intel SGX Root CA",
    ),
    # the quote itself
    _rule(
        r"Failed to decode quote|Unsupported DCAP quote version|Unknown QE vendor ID|"
        r"Unsupported TEE type|must have version|Unsupported DCAP attestation key type|"
        r"Unsupported DCAP PCK cert format|signed quote scope|Invalid QE auth data length|"
        r"Failed to decode QE report|Invalid key length|Failed to get TD10 report",
        EvidenceFormatError,
        "the quote is malformed or of a kind dcap-qvl does not verify",
    ),
    _rule(
        r"Debug mode is enabled|TD profiling is enabled|Reserved bits in TD attributes|"
        r"TD migration is enabled|SERVTD_EXT is enabled|SEPT_VE_DISABLE is not enabled|"
        r"Invalid MR service TD|TD attributes",
        EvidenceFormatError,
        "the enclave or TD is not a production one (dcap-qvl refuses debug, profiling, "
        "migratable and service-TD-bound TDs)",
    ),
)

_PREFIXES: Final = ("Verification failed: ",)
_UNIX_TIME = re.compile(r"UnixTime\((\d+)\)")
_QUOTED = re.compile(r'"[^"]*"')


def _reason(message: str) -> str:
    """One line from dcap-qvl's message: context, then each cause, joined by ': '."""
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    head, _, causes = message.partition("\n\nCaused by:\n")
    parts = [head.strip()]
    for line in causes.splitlines():
        line = re.sub(r"^\s*\d+:\s*", "", line).strip()
        if line:
            parts.append(line)
    text = ": ".join(p for p in parts if p)
    text = _UNIX_TIME.sub(
        lambda m: (
            _iso(datetime.fromtimestamp(int(m.group(1)), UTC))
            if int(m.group(1)) < 253402300800
            else m.group(1)
        ),
        text,
    )
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= 400 else text[:399] + "…"


def _map_failure(message: str, label: str) -> AttestationError:
    reason = _reason(message)
    # Match outside quoted text: dcap-qvl quotes PEM fragments in some messages,
    # and base64 can spell anything ("CRL", "Debug", ...).
    searched = _QUOTED.sub('""', reason)
    for pattern, error, explanation in _RULES:
        if pattern.search(searched):
            return error(f"{label} quote rejected: {explanation} (dcap-qvl: {reason})")
    return AttestationError(f"{label} quote rejected by dcap-qvl: {reason}")


# -- collateral from a PCCS / Intel PCS, with a cache -----------------------------------

_CACHE_NAME = re.compile(r"^(sgx|tdx)-(processor|platform)-[0-9a-f]{12}$")


def collateral_cache_key(quote: bytes) -> str:
    """``<tee>-<pck ca>-<fmspc>``, e.g. ``tdx-platform-b0c06f000000``.

    Collateral depends on exactly these: the TCB info and QE identity on the
    TEE type and the FMSPC, the PCK CRL on the CA (processor or platform)
    that issued the PCK certificate. All quotes sharing them share it.
    """
    quote = bytes(quote)
    header = parse_quote_header(quote)
    try:
        parsed = _qvl.parse_quote(quote)
        fmspc = parsed.fmspc().lower()
        ca = parsed.ca().lower()
    except BaseException as exc:
        if not _is_library_failure(exc):
            raise
        raise EvidenceFormatError(
            f"cannot read FMSPC and PCK CA from the {header.platform.value.upper()} quote's "
            f"PCK certificate: {_reason(str(exc))}"
        ) from exc
    key = f"{header.platform.value}-{ca}-{fmspc}"
    if not _CACHE_NAME.match(key):
        raise EvidenceFormatError(f"unexpected FMSPC / PCK CA in the quote: {fmspc!r} / {ca!r}")
    return key


class CollateralSource:
    """Collateral for quotes, from a PCCS or Intel PCS, through a cache directory.

    Online, a cached set is used while it is valid at the requested time and
    refetched otherwise. Offline, only the cache is used, expired or not
    (verification then says precisely what expired); a miss is a
    :class:`CollateralError`. Fetched collateral is checked (shape, pinned
    root) before it is cached, and is cached without the quote's own PCK
    chain, which belongs to one machine while the cache entry serves all
    machines of an FMSPC. Quotes that do not embed their PCK chain
    (certification data types 2 and 3) are not supported here.

    The fetch is dcap-qvl's ``get_collateral`` (reqwest; its timeout is 180 s
    and is not configurable from Python).
    """

    def __init__(self, *, pccs_url: str, cache_dir: Path, offline: bool = False) -> None:
        if not re.match(r"^https?://[^\s/]+", pccs_url):
            raise ConfigurationError(f"the PCCS URL must be http(s)://host[/...], not {pccs_url!r}")
        self.pccs_url = pccs_url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.offline = offline

    def path_for(self, quote: bytes) -> Path:
        return self.cache_dir / f"{collateral_cache_key(quote)}.json"

    def get(self, quote: bytes, *, now: datetime | None = None) -> bytes:
        """Collateral JSON bytes for ``quote``; ``now`` (default: the clock) decides
        whether an online cache entry is still fresh."""
        quote = bytes(quote)
        key = collateral_cache_key(quote)
        path = self.cache_dir / f"{key}.json"
        cached = self._read_cache(path)
        if self.offline:
            if cached is None:
                tee, ca, fmspc = key.split("-")
                raise CollateralError(
                    f"offline: no cached collateral for FMSPC {fmspc.upper()} "
                    f"({tee.upper()}, PCK CA {ca}) in {self.cache_dir}",
                    hint="run once online, or copy the collateral file there as " + path.name,
                )
            return cached
        moment = now or datetime.now(UTC)
        _unix_seconds(moment)
        if cached is not None:
            try:
                prepared = _prepare_bytes(cached)
            except AttestationError:
                prepared = None
            if prepared is not None and prepared.valid_from <= moment < prepared.valid_until:
                return cached
        data = self._fetch(quote, key)
        self._write_cache(path, data)
        return data

    def _read_cache(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CollateralError(
                f"cannot read cached collateral {path}: {exc.strerror or exc}"
            ) from exc

    def _fetch(self, quote: bytes, key: str) -> bytes:
        if _qvl.parse_quote(quote).cert_chain_pem_bytes() is None:
            raise EvidenceFormatError(
                "the quote does not embed its PCK certificate chain (certification data "
                "type 5); the collateral cache serves only such quotes"
            )
        try:
            native = _run_async(lambda: _qvl.get_collateral(self.pccs_url, quote))
            obj = json.loads(native.to_json())
        except BaseException as exc:
            if not _is_library_failure(exc):
                raise
            fmspc = key.split("-")[2].upper()
            raise CollateralError(
                f"cannot fetch collateral for FMSPC {fmspc} from {self.pccs_url}: "
                f"{_reason(str(exc))}",
                hint="check the PCCS URL and the network, or use offline mode with a cache",
            ) from exc
        if not isinstance(obj, dict):
            raise CollateralError(f"{self.pccs_url} returned collateral that is not an object")
        obj.pop(_PCK_CHAIN_FIELD, None)
        data = (json.dumps(obj, indent=2) + "\n").encode()
        _prepare_bytes(data)  # shape and pinned root, before it is trusted to the cache
        return data

    def _write_cache(self, path: Path, data: bytes) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.cache_dir)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CollateralError(
                f"cannot write the collateral cache {path}: {exc.strerror or exc}"
            ) from exc


def get_collateral(quote: bytes, *, pccs_url: str, cache_dir: Path, offline: bool) -> bytes:
    """Collateral JSON for ``quote``: see :class:`CollateralSource`."""
    return CollateralSource(pccs_url=pccs_url, cache_dir=cache_dir, offline=offline).get(quote)


def _run_async(start: Callable[[], Awaitable[_Collateral]]) -> _Collateral:
    """Run dcap-qvl's coroutine to completion from synchronous code.

    Inside a running event loop (an async caller), ``asyncio.run`` is not
    allowed, so the fetch then runs on a worker thread with its own loop.
    """

    async def main() -> _Collateral:
        return await start()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()
