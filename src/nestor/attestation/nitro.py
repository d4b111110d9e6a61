"""Verifier for AWS Nitro Enclaves attestation documents.

A Nitro attestation document is an untagged (or tag-18) ``COSE_Sign1`` CBOR
array ``[protected, unprotected, payload, signature]`` whose payload names the
enclave's PCRs and carries the certificate that signed it plus the CA bundle
leading to AWS's root. This module follows AWS's documented validation
("Verifying the root of trust", Nitro Enclaves user guide, and
``aws-nitro-enclaves-nsm-api/docs/attestation_process.md``):

1. decode the COSE_Sign1 structure and the payload strictly (no tags, no
   indefinite lengths, no duplicate map keys, no trailing bytes, only the
   documented fields, each with its documented type and size), so the bytes
   we verify and the values we report cannot differ between parsers;
2. check that ``cabundle[0]`` is the pinned AWS Nitro Enclaves Root-G1 and
   that every certificate is issued by the one before it and is valid at the
   verification time;
3. check the ECDSA P-384 / SHA-384 signature of the leaf over the COSE
   ``Sig_structure``;
4. normalise the result into an :class:`AttestationResult`.

The chain is checked before the document signature, as AWS's flow does: a
signature by a key nobody vouches for means nothing, so an untrusted chain is
reported as such even when its key did sign the payload.

Every malformed input raises :class:`EvidenceFormatError` naming the field;
nothing from ``cbor2`` or ``cryptography`` escapes as a raw exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import SignatureAlgorithmOID

from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.roots import aws_nitro_root, fingerprint
from nestor.errors import CertificateChainError, EvidenceFormatError, EvidenceSignatureError

__all__ = ["verify_document"]

#: COSE algorithm identifier for ECDSA P-384 with SHA-384 (RFC 9053).
COSE_ALG_ES384: Final = -35
#: CBOR tag number of a tagged COSE_Sign1 (RFC 9052).
COSE_SIGN1_TAG: Final = 18
_TAG18: Final = 0xC0 | COSE_SIGN1_TAG  # 0xD2: the tag's one-byte CBOR head
_ARRAY4: Final = 0x84  # the CBOR head of a 4-element array

# Sizes from AWS's attestation document specification.
MAX_PAYLOAD: Final = 16384
SIGNATURE_LENGTH: Final = 96  # r || s, 48 bytes each, for P-384
PCR_LENGTH: Final = 48  # digest "SHA384"
MAX_PCR_INDEX: Final = 31
MAX_PCRS: Final = 32
MAX_CERT: Final = 1024
# user_data and nonce: AWS's CDDL says ``bytes .size (0..1024)`` (its older prose
# said 512); the real samples carry 1024 bytes, so 1024 it is.
MAX_USER_DATA: Final = 1024
MAX_PUBLIC_KEY: Final = 1024

# A whole document is a payload plus a few hundred bytes of COSE framing;
# anything far larger is refused before it is decoded.
MAX_DOCUMENT: Final = MAX_PAYLOAD + 1024
_MAX_DEPTH: Final = 4  # the deepest legitimate nesting is 2 (payload -> pcrs -> bstr)

_REQUIRED: Final = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL: Final = ("public_key", "user_data", "nonce")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO_PCR: Final = bytes(PCR_LENGTH)
_WS: Final = b" \t\r\n"


class _RejectAllTags(Mapping[int, Callable[[Any, bool], Any]]):
    """A ``semantic_decoders`` table that maps every tag to a rejecting decoder.

    cbor2 decodes many semantic tags by default (bignums, dates, shared
    references, sets, ...). A bignum-tagged timestamp or a shared-reference
    PCR would then look like a plain value, so the bytes AWS signed and the
    value we report could be read differently by another parser. Nitro
    documents use no tags inside, so every tag is refused.
    """

    def __getitem__(self, tag: int) -> Callable[[Any, bool], Any]:
        return self._reject

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0

    @staticmethod
    def _reject(value: Any, immutable: bool) -> NoReturn:
        raise ValueError("CBOR tags are not allowed here")


_NO_TAGS: Final = _RejectAllTags()
# Exceptions a strict cbor2 decode can raise on hostile input.
_DECODE_ERRORS: Final = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    EOFError,
    LookupError,
)


@dataclass(frozen=True)
class _Document:
    """The decoded, syntactically valid parts of a document (nothing verified yet)."""

    protected: bytes
    payload: bytes
    signature: bytes
    module_id: str
    timestamp: datetime
    digest: str
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None


def verify_document(document: bytes, *, now: datetime | None = None) -> AttestationResult:
    """Verify an AWS Nitro Enclaves attestation document and normalise it.

    ``document`` is the raw COSE_Sign1 CBOR (what the NSM returns) or its
    base64 text (how it usually travels). Base64 text is ASCII, while a
    COSE_Sign1 starts with 0x84 (a 4-element array) or 0xD2 (tag 18), so a
    first byte of 0x80 or above means binary CBOR, and anything else is read
    as base64.

    ``now`` is the verification time for the certificate validity checks and
    must be timezone-aware. It defaults to the document's own ``timestamp``
    because the leaf certificate lives only about three hours: verifying
    with the wall clock would reject every stored document, while the
    document's timestamp answers "was this genuine when it was made?".
    That default says nothing about freshness: a relying party that needs a
    live enclave must pass ``now`` or check a nonce/``user_data`` it chose.

    Raises :class:`EvidenceFormatError` for malformed input,
    :class:`CertificateChainError` when the chain does not lead to the
    pinned AWS root or a certificate is not valid at the verification time,
    and :class:`EvidenceSignatureError` when the document signature fails.
    A naive ``now`` raises :class:`ValueError`: that is a caller's bug, not
    bad evidence. The result's ``verified_at`` is the time actually used.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    raw = _raw_cose(document)
    doc = _parse(raw)
    at = doc.timestamp if now is None else now.astimezone(UTC)
    chain = _verify_chain(doc, at)
    _verify_signature(doc, chain[0])
    return _normalise(raw, doc, chain, at)


# -- input form ----------------------------------------------------------------


def _raw_cose(document: bytes) -> bytes:
    """Return the raw COSE bytes, base64-decoding the text form if needed."""
    data = bytes(document)
    if not data:
        raise EvidenceFormatError("Nitro attestation document is empty")
    if data[0] >= 0x80:  # not ASCII, so not base64 text: binary CBOR
        raw = data
    else:
        text = data.translate(None, _WS)
        if len(text) > 2 * MAX_DOCUMENT:
            raise EvidenceFormatError(
                f"Nitro attestation document text is {len(text)} bytes, more than a "
                f"document of at most {MAX_DOCUMENT} bytes can need"
            )
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EvidenceFormatError(
                "Nitro attestation document is neither binary COSE_Sign1 CBOR (first byte "
                f"0x84 or 0xd2) nor base64 text: {exc}"
            ) from exc
        if not raw or raw[0] not in (_ARRAY4, _TAG18):
            first = f"0x{raw[0]:02x}" if raw else "nothing"
            raise EvidenceFormatError(
                "Nitro attestation document base64 does not decode to a COSE_Sign1 array "
                f"(first byte {first}, expected 0x84 or 0xd2)"
            )
    if len(raw) > MAX_DOCUMENT:
        raise EvidenceFormatError(
            f"Nitro attestation document is {len(raw)} bytes, more than the {MAX_DOCUMENT} "
            "bytes a document with a payload of at most 16384 bytes can take"
        )
    return raw


# -- strict CBOR ---------------------------------------------------------------


def _decode(data: bytes, what: str) -> Any:
    """Decode exactly one CBOR item from ``data``, strictly.

    Indefinite lengths, duplicate map keys, tags and trailing bytes are all
    refused: each lets two parsers see different values in the same signed
    bytes, and AWS's encoder produces none of them.
    """
    fp = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            fp,
            semantic_decoders=_NO_TAGS,
            max_depth=_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            str_errors="strict",
        )
        value = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise EvidenceFormatError(f"{what} is not valid strict CBOR: {_short(exc)}") from exc
    if fp.tell() != len(data):
        raise EvidenceFormatError(
            f"{what} has {len(data) - fp.tell()} trailing bytes after its CBOR item"
        )
    return value


def _short(exc: BaseException) -> str:
    """An exception's text, cut short: decoder messages can quote attacker bytes."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# -- COSE_Sign1 and payload ------------------------------------------------------


def _parse(raw: bytes) -> _Document:
    """Decode the COSE_Sign1 structure and check the payload per AWS's rules."""
    body = raw[1:] if raw[0] == _TAG18 else raw  # untagging; nested tags are refused
    cose = _decode(body, "COSE_Sign1")
    if not isinstance(cose, list) or len(cose) != 4:
        n = f"an array of {len(cose)}" if isinstance(cose, list) else type(cose).__name__
        raise EvidenceFormatError(
            f"COSE_Sign1 must be an array [protected, unprotected, payload, signature], got {n}"
        )
    protected, unprotected, payload, signature = cose
    _check_protected(protected)
    if not isinstance(unprotected, dict):
        raise EvidenceFormatError(
            f"COSE_Sign1 unprotected header must be a map, got {_kind(unprotected)}"
        )
    if 1 in unprotected:
        raise EvidenceFormatError(
            "COSE_Sign1 unprotected header repeats the algorithm (label 1); it must be protected"
        )
    if not isinstance(payload, bytes) or not 1 <= len(payload) <= MAX_PAYLOAD:
        raise EvidenceFormatError(
            f"COSE_Sign1 payload must be a byte string of 1..{MAX_PAYLOAD} bytes, "
            f"got {_kind(payload)}"
        )
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise EvidenceFormatError(
            f"COSE_Sign1 signature must be {SIGNATURE_LENGTH} bytes (ES384 r||s), "
            f"got {_kind(signature)}"
        )
    fields = _decode(payload, "attestation document payload")
    return _check_payload(fields, protected, payload, signature)


def _check_protected(protected: object) -> None:
    """The protected header must be exactly ``{1: -35}`` (alg ES384).

    The algorithm comes from the signed header, never from the verifier's
    assumptions, so a document that claims anything else is refused rather
    than verified with ES384 anyway.
    """
    if not isinstance(protected, bytes):
        raise EvidenceFormatError(
            f"COSE_Sign1 protected header must be a byte string, got {_kind(protected)}"
        )
    header = _decode(protected, "COSE_Sign1 protected header")
    if not isinstance(header, dict):
        raise EvidenceFormatError(
            f"COSE_Sign1 protected header must encode a map, got {_kind(header)}"
        )
    algs = [value for label, value in header.items() if _is_int(label) and label == 1]
    if not algs:
        raise EvidenceFormatError("COSE_Sign1 protected header has no algorithm (label 1)")
    alg = algs[0]
    if not _is_int(alg) or alg != COSE_ALG_ES384:
        raise EvidenceFormatError(
            f"COSE_Sign1 protected header algorithm is {alg!r}, expected {COSE_ALG_ES384} (ES384)"
        )
    if len(header) != 1:
        extra = sorted(repr(k) for k in header if not (_is_int(k) and k == 1))
        raise EvidenceFormatError(
            f"COSE_Sign1 protected header must be exactly {{1: -35}}, also has {', '.join(extra)}"
        )


def _check_payload(fields: object, protected: bytes, payload: bytes, signature: bytes) -> _Document:
    """Apply AWS's syntactic rules: required fields, types, sizes, PCR indexes."""
    if not isinstance(fields, dict):
        raise EvidenceFormatError(
            f"attestation document payload must be a map, got {_kind(fields)}"
        )
    unknown = [k for k in fields if k not in _REQUIRED and k not in _OPTIONAL]
    if unknown:
        raise EvidenceFormatError(
            "attestation document has fields AWS does not define: "
            + ", ".join(sorted(repr(k)[:40] for k in unknown))
        )
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise EvidenceFormatError(f"attestation document is missing {', '.join(missing)}")

    module_id = fields["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise EvidenceFormatError(
            f"module_id must be a non-empty text string, got {_kind(module_id)}"
        )
    digest = fields["digest"]
    if not isinstance(digest, str) or digest != "SHA384":
        raise EvidenceFormatError(f'digest must be "SHA384", got {_show(digest)}')
    timestamp_ms = fields["timestamp"]
    if not _is_int(timestamp_ms) or not 0 < timestamp_ms < 2**64:
        raise EvidenceFormatError(
            f"timestamp must be a positive 64-bit count of milliseconds, got {_show(timestamp_ms)}"
        )
    try:
        timestamp = _EPOCH + timedelta(milliseconds=timestamp_ms)
    except OverflowError as exc:
        raise EvidenceFormatError(f"timestamp {timestamp_ms} ms is beyond the year 9999") from exc

    pcrs = fields["pcrs"]
    if not isinstance(pcrs, dict) or not 1 <= len(pcrs) <= MAX_PCRS:
        raise EvidenceFormatError(f"pcrs must be a map of 1..{MAX_PCRS} entries, got {_kind(pcrs)}")
    for index, value in pcrs.items():
        if not _is_int(index) or not 0 <= index <= MAX_PCR_INDEX:
            raise EvidenceFormatError(
                f"pcrs has index {_show(index)}; indexes are integers 0..{MAX_PCR_INDEX}"
            )
        if not isinstance(value, bytes) or len(value) != PCR_LENGTH:
            raise EvidenceFormatError(
                f"pcrs[{index}] must be {PCR_LENGTH} bytes (SHA384), got {_kind(value)}"
            )

    certificate = fields["certificate"]
    _check_cert_bytes(certificate, "certificate")
    cabundle = fields["cabundle"]
    if not isinstance(cabundle, list) or not cabundle:
        raise EvidenceFormatError(
            f"cabundle must be a non-empty array of certificates, got {_kind(cabundle)}"
        )
    for i, entry in enumerate(cabundle):
        _check_cert_bytes(entry, f"cabundle[{i}]")

    public_key = _optional_bytes(fields, "public_key", 1, MAX_PUBLIC_KEY)
    user_data = _optional_bytes(fields, "user_data", 0, MAX_USER_DATA)
    nonce = _optional_bytes(fields, "nonce", 0, MAX_USER_DATA)
    return _Document(
        protected=protected,
        payload=payload,
        signature=signature,
        module_id=module_id,
        timestamp=timestamp,
        digest=digest,
        pcrs=dict(sorted(pcrs.items())),
        certificate=certificate,
        cabundle=tuple(cabundle),
        public_key=public_key,
        user_data=user_data,
        nonce=nonce,
    )


def _check_cert_bytes(value: object, field: str) -> None:
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_CERT:
        raise EvidenceFormatError(
            f"{field} must be a DER certificate of 1..{MAX_CERT} bytes, got {_kind(value)}"
        )


def _optional_bytes(fields: Mapping[Any, Any], name: str, low: int, high: int) -> bytes | None:
    """An optional byte-string field; CBOR null means absent.

    AWS's text says no field may be null, but the NSM encodes an optional
    field it was not given as null, so null is read as "not present".
    """
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise EvidenceFormatError(
            f"{name} must be a byte string of {low}..{high} bytes or null, got {_kind(value)}"
        )
    return value


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; CBOR true/false are not integers.
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if isinstance(value, bytes | str | list | dict):
        return f"{type(value).__name__} of length {len(value)}"
    return "null" if value is None else type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- certificate chain -----------------------------------------------------------


def _load_cert(der: bytes, field: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise EvidenceFormatError(f"{field} is not a DER X.509 certificate: {_short(exc)}") from exc


def _subject(cert: x509.Certificate, field: str) -> str:
    try:
        return cert.subject.rfc4514_string()
    except (ValueError, TypeError) as exc:
        raise EvidenceFormatError(f"{field} has a malformed subject: {_short(exc)}") from exc


def _verify_chain(doc: _Document, at: datetime) -> list[x509.Certificate]:
    """Check cabundle[0] is the pinned root and each certificate issues the next.

    Returns the certificates leaf first, root last. AWS orders the bundle
    root first, so the path is ``cabundle[0] -> ... -> cabundle[-1] ->
    certificate``; a bundle in any other order fails here.
    """
    root = aws_nitro_root()
    bundle = [_load_cert(der, f"cabundle[{i}]") for i, der in enumerate(doc.cabundle)]
    leaf = _load_cert(doc.certificate, "certificate")
    if fingerprint(bundle[0]) != fingerprint(root):
        raise CertificateChainError(
            f"cabundle[0] ({_subject(bundle[0], 'cabundle[0]')}, sha256 "
            f"{fingerprint(bundle[0])}) is not the pinned AWS Nitro root "
            f"(sha256 {fingerprint(root)})",
            hint="Nitro documents verify only against AWS Nitro Enclaves Root-G1",
        )
    path: list[tuple[str, x509.Certificate]] = [("AWS Nitro root", root)]
    path += [(f"cabundle[{i}]", cert) for i, cert in enumerate(bundle) if i > 0]
    path.append(("leaf certificate", leaf))

    for position, (field, cert) in enumerate(path):
        _check_validity(cert, field, at)
        if position > 0:
            _check_issued_by(cert, field, path[position - 1])
        cas_below = len(path) - 2 - position  # intermediate CAs between this one and the leaf
        if position < len(path) - 1:
            _check_ca(cert, field, cas_below)
        else:
            _check_leaf(cert, field)
    if not _within(leaf, doc.timestamp):
        raise CertificateChainError(
            f"document timestamp {_iso(doc.timestamp)} is outside the leaf certificate's "
            f"validity {_window(leaf)}: the leaf cannot have signed it"
        )
    return [cert for _, cert in reversed(path)]


def _within(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _window(cert: x509.Certificate) -> str:
    return f"{_iso(cert.not_valid_before_utc)} .. {_iso(cert.not_valid_after_utc)}"


def _check_validity(cert: x509.Certificate, field: str, at: datetime) -> None:
    if not _within(cert, at):
        state = "not yet valid" if at < cert.not_valid_before_utc else "expired"
        raise CertificateChainError(
            f"{field} ({_subject(cert, field)}) is {state} at {_iso(at)}: valid {_window(cert)}",
            hint="pass a verification time inside the window, or fetch a fresh document",
        )


def _check_issued_by(
    cert: x509.Certificate, field: str, issuer: tuple[str, x509.Certificate]
) -> None:
    """``cert`` must name ``issuer`` as its issuer and carry its ECDSA P-384 signature."""
    issuer_field, issuer_cert = issuer
    try:
        names_match = cert.issuer == issuer_cert.subject
        named, actual = cert.issuer.rfc4514_string(), issuer_cert.subject.rfc4514_string()
    except (ValueError, TypeError) as exc:
        raise EvidenceFormatError(f"{field} has a malformed issuer name: {_short(exc)}") from exc
    if not names_match:
        raise CertificateChainError(
            f"{field} is issued by {named!r}, but the certificate before it "
            f"({issuer_field}) is {actual!r}"
        )
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        raise CertificateChainError(
            f"{field} is signed with {cert.signature_algorithm_oid.dotted_string}, "
            "not ecdsa-with-SHA384"
        )
    key = _p384_key(issuer_cert, issuer_field)
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise CertificateChainError(
            f"{field} ({_subject(cert, field)}) does not carry a valid signature by {issuer_field}"
        ) from exc


def _p384_key(cert: x509.Certificate, field: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateChainError(f"{field} has an unusable public key: {_short(exc)}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise CertificateChainError(f"{field} does not have an ECDSA P-384 public key")
    return key


def _extensions(cert: x509.Certificate, field: str) -> x509.Extensions:
    try:
        extensions = cert.extensions
    except (ValueError, TypeError) as exc:
        raise CertificateChainError(f"{field} has malformed extensions: {_short(exc)}") from exc
    for ext in extensions:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise CertificateChainError(
                f"{field} has an unrecognised critical extension {ext.oid.dotted_string}"
            )
    return extensions


def _check_ca(cert: x509.Certificate, field: str, cas_below: int) -> None:
    """A CA must say so (critical basicConstraints, keyCertSign) and allow the path below it."""
    extensions = _extensions(cert, field)
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as exc:
        raise CertificateChainError(f"{field} has no basicConstraints, so it is not a CA") from exc
    if not bc.critical or not bc.value.ca:
        raise CertificateChainError(
            f"{field} is not a CA (basicConstraints must be critical with cA true)"
        )
    if bc.value.path_length is not None and bc.value.path_length < cas_below:
        raise CertificateChainError(
            f"{field} allows {bc.value.path_length} CA certificates below it, but the "
            f"chain has {cas_below}"
        )
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateChainError(f"{field} has no keyUsage extension") from exc
    if not usage.key_cert_sign:
        raise CertificateChainError(f"{field} may not sign certificates (no keyCertSign)")


def _check_leaf(cert: x509.Certificate, field: str) -> None:
    """The leaf signs documents, not certificates: not a CA, digitalSignature set."""
    extensions = _extensions(cert, field)
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if bc.ca or bc.path_length is not None:
            raise CertificateChainError(f"{field} is a CA certificate, not an end entity")
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateChainError(f"{field} has no keyUsage extension") from exc
    if not usage.digital_signature:
        raise CertificateChainError(f"{field} may not make signatures (no digitalSignature)")
    _p384_key(cert, field)


# -- document signature ------------------------------------------------------------


def _verify_signature(doc: _Document, leaf: x509.Certificate) -> None:
    """ES384 over the COSE ``Sig_structure`` ["Signature1", protected, b"", payload].

    COSE carries ECDSA signatures as raw r||s; cryptography wants DER, hence
    the re-encoding.
    """
    key = _p384_key(leaf, "leaf certificate")
    to_be_signed = cbor2.dumps(["Signature1", doc.protected, b"", doc.payload])
    r = int.from_bytes(doc.signature[:48], "big")
    s = int.from_bytes(doc.signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise EvidenceSignatureError(
            f"Nitro attestation document signature does not verify with the key of the "
            f"leaf certificate ({_subject(leaf, 'certificate')})"
        ) from exc


# -- normalisation -----------------------------------------------------------------


def _normalise(
    raw: bytes, doc: _Document, chain: Sequence[x509.Certificate], at: datetime
) -> AttestationResult:
    """Map verified fields onto :class:`AttestationResult`.

    ``debug`` is PCR0 being all zero: an enclave started in debug mode has
    its console readable by the parent instance, and the Nitro hypervisor
    reports PCRs 0-2 as zeros for it, so no policy can match its image. A
    document without PCR0 is treated as debug too: nothing then shows a
    measured image.
    """
    pcr0 = doc.pcrs.get(0)
    return AttestationResult(
        platform=Platform.NITRO,
        measurements={f"pcr{i}": value.hex() for i, value in doc.pcrs.items()},
        numbers={},
        tcb_status=None,
        advisory_ids=(),
        debug=pcr0 is None or pcr0 == _ZERO_PCR,
        report_data=doc.user_data or b"",
        chain=(*(_subject(c, "certificate") for c in chain), fingerprint(chain[-1])),
        verified_at=at,
        evidence_digest="sha256:" + hashlib.sha256(raw).hexdigest(),
        claims={
            "module_id": doc.module_id,
            "timestamp": _iso(doc.timestamp, millis=True),
            "digest": doc.digest,
            "nonce": None if doc.nonce is None else doc.nonce.hex(),
            "public_key": None if doc.public_key is None else doc.public_key.hex(),
        },
    )


def _iso(when: datetime, *, millis: bool = False) -> str:
    text = when.astimezone(UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")
