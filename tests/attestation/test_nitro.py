"""AWS Nitro attestation documents: the two real samples, every tampering the
verifier must catch (each with its own error), AWS's syntactic rules, and
fuzzing that shows only AttestationError subclasses ever come out.

Real documents come from ``../shared/attestation-samples/aws-nitro`` (see its
README for the expected values); tests that need them skip if it is missing.
Tests of rules the real documents cannot exercise build documents with a
self-made P-384 PKI and temporarily trust its root in place of AWS's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestor.attestation import nitro
from nestor.attestation.nitro import verify_document
from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.roots import AWS_NITRO_ROOT_G1
from nestor.errors import (
    AttestationError,
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT.parent / "shared" / "attestation-samples" / "aws-nitro"

# Expected values, from the samples' README.
PROD_MODULE_ID = "i-0a22e5c5f24d22174-enc0191cceb4289903f"
PROD_TIMESTAMP = 1725719859545
PCR0 = (
    "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9"
    "f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
)
PCR1 = (
    "0343b056cd8485ca7890ddd833476d78460aed2aa161548e"
    "4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa"
)
PCR2 = (
    "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c5"
    "08882639c9090642669106a062a3e24ee2805a3024b9b75c"
)
PCR4 = (
    "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f"
    "6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"
)
ZERO = "00" * 48
DEBUG_MODULE_ID = "i-0a22e5c5f24d22174-enc0191ccebaf8feaba"
DEBUG_TIMESTAMP = 1725719886508
# Inside every certificate's window for the production document
# (leaf 2024-09-07T14:37:36Z .. 17:37:39Z).
INSIDE_WINDOW = datetime(2024, 9, 7, 16, 0, tzinfo=UTC)
REAL_CLOCK = datetime(2026, 11, 26, tzinfo=UTC)

ES384 = cbor2.dumps({1: -35})


def _sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"attestation sample {path} is not available")
    return path.read_bytes()


@pytest.fixture(scope="module")
def prod_b64() -> bytes:
    return _sample("nitro_attestation.b64")


@pytest.fixture(scope="module")
def prod_raw(prod_b64: bytes) -> bytes:
    return base64.b64decode(prod_b64)


@pytest.fixture(scope="module")
def debug_b64() -> bytes:
    return _sample("nitro_attestation_debug.b64")


def _split(raw: bytes) -> tuple[bytes, dict[Any, Any], bytes, bytes]:
    protected, unprotected, payload, signature = cbor2.loads(raw)
    return protected, unprotected, payload, signature


def _fields(raw: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = cbor2.loads(_split(raw)[2])
    return fields


def _cose(protected: bytes, payload: bytes, signature: bytes, unprotected: Any = None) -> bytes:
    return cbor2.dumps([protected, {} if unprotected is None else unprotected, payload, signature])


def _sign(key: ec.EllipticCurvePrivateKey, payload: bytes, protected: bytes = ES384) -> bytes:
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# -- a self-made PKI ------------------------------------------------------------------

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP384R1())


def _cert(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    not_before: datetime,
    not_after: datetime,
    basic_constraints: bool = True,
    key_usage: bool = True,
    digest: hashes.SHA256 | hashes.SHA384 | None = None,
    critical_unknown: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if critical_unknown:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
            critical=True,
        )
    return builder.sign(issuer_key, digest or hashes.SHA384())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass
class Pki:
    """Root -> intermediate -> leaf, shaped like AWS's (P-384, ecdsa-with-SHA384)."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    def fields(self, **overrides: Any) -> dict[str, Any]:
        """A payload like AWS's; an override of ``DROP`` removes the field."""
        fields: dict[str, Any] = {
            "module_id": "i-0123456789abcdef0-enc0123456789abcdef",
            "digest": "SHA384",
            "timestamp": T0_MS,
            "pcrs": {i: bytes([i + 1]) * 48 for i in range(16)},
            "certificate": _der(self.leaf),
            "cabundle": [_der(self.root), _der(self.inter)],
            "public_key": b"\x02" * 91,
            "user_data": b"\x03" * 64,
            "nonce": b"\x04" * 32,
        }
        for name, value in overrides.items():
            if value is DROP:
                fields.pop(name, None)
            else:
                fields[name] = value
        return fields

    def document(self, fields: dict[str, Any] | None = None, *, protected: bytes = ES384) -> bytes:
        payload = cbor2.dumps(self.fields() if fields is None else fields)
        return _cose(protected, payload, _sign(self.leaf_key, payload, protected))


DROP = object()


def make_pki(
    *,
    root_subject: x509.Name | None = None,
    root_path_length: int | None = None,
    inter_ca: bool = True,
    inter_window: tuple[datetime, datetime] = (T0 - timedelta(days=10), T0 + timedelta(days=10)),
    leaf_window: tuple[datetime, datetime] = (T0 - timedelta(hours=1), T0 + timedelta(hours=2)),
    leaf_ca: bool = False,
    leaf_curve: ec.EllipticCurve | None = None,
    leaf_digest: hashes.SHA256 | hashes.SHA384 | None = None,
    leaf_issuer: x509.Name | None = None,
    leaf_key_usage: bool = True,
    leaf_critical_unknown: bool = False,
) -> Pki:
    root_key, inter_key, leaf_key = _key(), _key(), _key(leaf_curve)
    root_name = root_subject or _name("fake.nitro-enclaves")
    root = _cert(
        root_name,
        root_key.public_key(),
        root_name,
        root_key,
        ca=True,
        path_length=root_path_length,
        not_before=T0 - timedelta(days=365),
        not_after=T0 + timedelta(days=3650),
    )
    inter_name = _name("zonal.fake.nitro-enclaves")
    inter = _cert(
        inter_name,
        inter_key.public_key(),
        root_name,
        root_key,
        ca=inter_ca,
        basic_constraints=inter_ca,
        not_before=inter_window[0],
        not_after=inter_window[1],
    )
    leaf = _cert(
        _name("i-0123456789abcdef0-enc0123456789abcdef.fake"),
        leaf_key.public_key(),
        leaf_issuer or inter_name,
        inter_key,
        ca=leaf_ca,
        not_before=leaf_window[0],
        not_after=leaf_window[1],
        digest=leaf_digest,
        key_usage=leaf_key_usage,
        critical_unknown=leaf_critical_unknown,
    )
    return Pki(root_key, root, inter_key, inter, leaf_key, leaf)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@contextmanager
def trusting(root: x509.Certificate) -> Iterator[None]:
    """Let the verifier accept ``root`` in place of the pinned AWS root."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nitro, "aws_nitro_root", lambda: root)
        yield


def verify_fake(pki: Pki, document: bytes, now: datetime | None = None) -> AttestationResult:
    with trusting(pki.root):
        return verify_document(document, now=now)


# -- the real documents ------------------------------------------------------------


def _check_production(result: AttestationResult) -> None:
    assert result.platform is Platform.NITRO
    assert result.claims["module_id"] == PROD_MODULE_ID
    assert result.claims["timestamp"] == "2024-09-07T14:37:39.545Z"
    assert result.claims["digest"] == "SHA384"
    m = result.measurements
    assert list(m) == [f"pcr{i}" for i in range(16)]
    assert (m["pcr0"], m["pcr1"], m["pcr2"], m["pcr4"]) == (PCR0, PCR1, PCR2, PCR4)
    assert m["pcr3"] == ZERO
    assert m["pcr8"] == ZERO
    assert result.report_data == b"\x01" * 1024
    assert result.claims["nonce"] == "01" * 1024
    assert result.claims["public_key"] == "01" * 1024
    assert result.debug is False
    assert result.numbers == {}
    assert result.tcb_status is None
    assert result.advisory_ids == ()
    assert len(result.chain) == 6
    assert PROD_MODULE_ID in result.chain[0]
    assert result.chain[4] == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert result.chain[5] == AWS_NITRO_ROOT_G1


def test_production_document_is_valid_at_its_own_timestamp(
    prod_b64: bytes, prod_raw: bytes
) -> None:
    result = verify_document(prod_b64)
    _check_production(result)
    assert result.verified_at == datetime(2024, 9, 7, 14, 37, 39, 545000, tzinfo=UTC)
    assert result.evidence_digest == "sha256:" + hashlib.sha256(prod_raw).hexdigest()
    assert result.to_json()["platform"] == "nitro"


def test_production_document_is_valid_at_a_fixed_time_inside_the_window(prod_b64: bytes) -> None:
    result = verify_document(prod_b64, now=INSIDE_WINDOW)
    _check_production(result)
    assert result.verified_at == INSIDE_WINDOW


def test_raw_base64_wrapped_and_tagged_forms_agree(prod_b64: bytes, prod_raw: bytes) -> None:
    from_text = verify_document(prod_b64)
    from_raw = verify_document(prod_raw)
    wrapped = b"\n".join(prod_b64[i : i + 76] for i in range(0, len(prod_b64), 76)) + b"\n"
    from_wrapped = verify_document(wrapped)
    # Tag 18 is outside the Sig_structure, so the signature still verifies.
    from_tagged = verify_document(b"\xd2" + prod_raw)
    assert from_text == from_raw == from_wrapped
    assert from_tagged.measurements == from_raw.measurements
    assert from_tagged.evidence_digest != from_raw.evidence_digest


def test_debug_document_has_a_valid_signature_but_is_flagged_debug(
    debug_b64: bytes,
) -> None:
    result = verify_document(debug_b64)
    assert result.debug is True
    m = result.measurements
    assert m["pcr0"] == m["pcr1"] == m["pcr2"] == m["pcr3"] == m["pcr8"] == ZERO
    assert m["pcr4"] == PCR4
    assert result.claims["module_id"] == DEBUG_MODULE_ID
    assert result.claims["timestamp"] == "2024-09-07T14:38:06.508Z"
    assert result.report_data == b"\x01" * 1024
    assert result.chain[-1] == AWS_NITRO_ROOT_G1


def test_with_the_real_clock_the_chain_has_expired(prod_b64: bytes) -> None:
    with pytest.raises(CertificateChainError, match=r"expired at 2026-11-26T00:00:00Z: valid"):
        verify_document(prod_b64, now=REAL_CLOCK)


def test_before_the_leaf_window_the_leaf_is_not_yet_valid(prod_b64: bytes) -> None:
    with pytest.raises(
        CertificateChainError,
        match=r"leaf certificate .* is not yet valid at 2024-09-07T14:00:00Z: "
        r"valid 2024-09-07T14:37:36Z \.\. 2024-09-07T17:37:39Z",
    ):
        verify_document(prod_b64, now=datetime(2024, 9, 7, 14, 0, tzinfo=UTC))


def test_naive_verification_time_is_a_programming_error(prod_b64: bytes) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_document(prod_b64, now=datetime(2024, 9, 7, 16, 0))


# -- tampering ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 47, 48, 95])
def test_flipped_signature_byte_fails_the_signature(prod_raw: bytes, offset: int) -> None:
    # The signature is the last 96 bytes of the document.
    with pytest.raises(EvidenceSignatureError, match="signature does not verify"):
        verify_document(_flip(prod_raw, len(prod_raw) - 96 + offset))


def test_flipped_pcr_byte_fails_the_signature(prod_raw: bytes) -> None:
    at = prod_raw.index(bytes.fromhex(PCR0))
    with pytest.raises(EvidenceSignatureError):
        verify_document(_flip(prod_raw, at + 20))


def test_flipped_user_data_byte_fails_the_signature(prod_raw: bytes) -> None:
    # "user_data" as a CBOR text key, then the 1024-byte bstr header 59 04 00.
    at = prod_raw.index(b"\x69user_data\x59\x04\x00") + 13
    tampered = _flip(prod_raw, at + 500)
    assert _fields(tampered)["user_data"] != b"\x01" * 1024
    with pytest.raises(EvidenceSignatureError):
        verify_document(tampered)


def test_flipped_byte_in_the_module_id_fails_the_signature(prod_raw: bytes) -> None:
    at = prod_raw.index(b"\x78\x27" + PROD_MODULE_ID.encode())
    with pytest.raises(EvidenceSignatureError):
        verify_document(_flip(prod_raw, at + 10))


@pytest.mark.parametrize("where", ["subject", "public key", "signature"])
def test_flipped_byte_in_the_leaf_certificate_breaks_the_chain(prod_raw: bytes, where: str) -> None:
    leaf = _fields(prod_raw)["certificate"]
    start = prod_raw.index(leaf)
    if where == "subject":
        at = start + leaf.index(b"enc0191cceb4289903f.us-east-1.aws") + 5
    elif where == "public key":
        point = x509.load_der_x509_certificate(leaf).public_key()
        at = start + leaf.index(point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        at += 30
    else:
        at = start + len(leaf) - 1  # last byte of the ECDSA signature value
    with pytest.raises(CertificateChainError, match=r"leaf certificate .* does not carry a valid"):
        verify_document(_flip(prod_raw, at))


def test_unparseable_leaf_certificate_is_a_format_error(prod_raw: bytes) -> None:
    leaf = _fields(prod_raw)["certificate"]
    # The version field [0] { INTEGER 2 } (v3): make it 9, which no X.509 version is.
    at = prod_raw.index(leaf) + leaf.index(b"\xa0\x03\x02\x01\x02") + 4
    tampered = prod_raw[:at] + b"\x09" + prod_raw[at + 1 :]
    with pytest.raises(EvidenceFormatError, match=r"certificate is not a DER X\.509 certificate"):
        verify_document(tampered)


def test_flipped_byte_in_an_intermediate_breaks_the_chain(prod_raw: bytes) -> None:
    inter = _fields(prod_raw)["cabundle"][2]
    at = prod_raw.index(inter) + inter.index(b"68a8a693dd2153f6") + 3
    with pytest.raises(CertificateChainError, match=r"cabundle\[2\] .* does not carry a valid"):
        verify_document(_flip(prod_raw, at))


def test_self_made_root_is_not_the_pinned_aws_root() -> None:
    # A forger's complete chain, named like AWS's, with a valid document signature.
    fake = make_pki(root_subject=_name("aws.nitro-enclaves"))
    document = fake.document()
    with trusting(fake.root):
        assert verify_document(document, now=T0).debug is False  # it is otherwise perfect
    with pytest.raises(CertificateChainError, match="is not the pinned AWS Nitro root") as info:
        verify_document(document, now=T0)
    assert AWS_NITRO_ROOT_G1 in info.value.message


def test_self_made_root_in_front_of_the_real_intermediates(prod_raw: bytes, pki: Pki) -> None:
    fields = _fields(prod_raw)
    fields["cabundle"][0] = _der(pki.root)
    payload = cbor2.dumps(fields)
    document = _cose(ES384, payload, _split(prod_raw)[3])
    with pytest.raises(CertificateChainError, match="is not the pinned AWS Nitro root"):
        verify_document(document)


def test_self_made_leaf_under_the_real_aws_chain_is_refused(prod_raw: bytes) -> None:
    # Real root and intermediates; a leaf that names the last intermediate as
    # issuer but is signed by a forger's key; the document is re-signed with
    # the forged leaf key, so only the chain check can catch it.
    fields = _fields(prod_raw)
    last = x509.load_der_x509_certificate(fields["cabundle"][-1])
    forger, leaf_key = _key(), _key()
    when = datetime(2024, 9, 7, 14, 37, 39, tzinfo=UTC)
    leaf = _cert(
        _name("forged"),
        leaf_key.public_key(),
        last.subject,
        forger,
        ca=False,
        not_before=when - timedelta(hours=1),
        not_after=when + timedelta(hours=2),
    )
    fields["certificate"] = _der(leaf)
    payload = cbor2.dumps(fields)
    document = _cose(ES384, payload, _sign(leaf_key, payload))
    with pytest.raises(
        CertificateChainError, match=r"leaf certificate \(CN=forged.*does not carry a valid"
    ):
        verify_document(document)


def test_reordered_cabundle_is_refused(prod_raw: bytes) -> None:
    fields = _fields(prod_raw)
    fields["cabundle"] = list(reversed(fields["cabundle"]))
    payload = cbor2.dumps(fields)
    with pytest.raises(CertificateChainError, match="not the pinned AWS Nitro root"):
        verify_document(_cose(ES384, payload, _split(prod_raw)[3]))


def test_cabundle_missing_an_intermediate_is_refused(prod_raw: bytes) -> None:
    fields = _fields(prod_raw)
    del fields["cabundle"][2]
    payload = cbor2.dumps(fields)
    with pytest.raises(CertificateChainError, match=r"cabundle\[2\] is issued by"):
        verify_document(_cose(ES384, payload, _split(prod_raw)[3]))


# -- COSE structure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("protected", "message"),
    [
        (cbor2.dumps({1: -7}), r"algorithm is -7, expected -35 \(ES384\)"),
        (cbor2.dumps({1: -36}), "algorithm is -36"),
        (cbor2.dumps({1: "ES384"}), "algorithm is 'ES384'"),
        (cbor2.dumps({1: -35.0}), "algorithm is -35.0"),
        (cbor2.dumps({True: -35}), "no algorithm"),
        (cbor2.dumps({}), "no algorithm"),
        (cbor2.dumps({1: -35, 4: b"kid"}), r"exactly \{1: -35\}, also has 4"),
        (b"", "protected header is not valid strict CBOR"),
        (cbor2.dumps({1: -35}) + b"\x00", "protected header has 1 trailing bytes"),
        (cbor2.dumps([1, -35]), "protected header must encode a map"),
    ],
)
def test_protected_header_must_be_exactly_es384(pki: Pki, protected: bytes, message: str) -> None:
    # Signed correctly over the odd header, so only the header check can refuse it.
    with pytest.raises(EvidenceFormatError, match=message):
        verify_fake(pki, pki.document(protected=protected), now=T0)


def test_protected_header_must_be_a_byte_string(pki: Pki) -> None:
    payload = cbor2.dumps(pki.fields())
    document = cbor2.dumps([{1: -35}, {}, payload, _sign(pki.leaf_key, payload)])
    with pytest.raises(EvidenceFormatError, match="protected header must be a byte string"):
        verify_fake(pki, document)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c[:3], "must be an array .* got an array of 3"),
        (lambda c: [*c, b""], "got an array of 5"),
        (lambda c: {"a": 1}, "got dict"),
        (lambda c: [c[0], [], c[2], c[3]], "unprotected header must be a map"),
        (lambda c: [c[0], {1: -35}, c[2], c[3]], "unprotected header repeats the algorithm"),
        (lambda c: [c[0], c[1], cbor2.loads(c[2]), c[3]], "payload must be a byte string"),
        (lambda c: [c[0], c[1], b"", c[3]], "payload must be a byte string of 1..16384"),
        (lambda c: [c[0], c[1], c[2], c[3][:64]], "signature must be 96 bytes"),
        (lambda c: [c[0], c[1], c[2], c[3] + b"\x00"], "signature must be 96 bytes"),
        (lambda c: [c[0], c[1], c[2], None], "signature must be 96 bytes .* got null"),
    ],
)
def test_cose_sign1_structure_is_checked(
    pki: Pki, mutate: Callable[[list[Any]], Any], message: str
) -> None:
    cose = cbor2.loads(pki.document())
    document = cbor2.dumps(mutate(cose))
    with pytest.raises(EvidenceFormatError, match=message):
        verify_fake(pki, document, now=T0)


def test_unprotected_header_content_is_ignored(pki: Pki) -> None:
    protected, _, payload, signature = _split(pki.document())
    document = _cose(protected, payload, signature, unprotected={4: b"key id"})
    assert verify_fake(pki, document).claims["digest"] == "SHA384"


def test_trailing_bytes_after_the_document_are_refused(pki: Pki, prod_raw: bytes) -> None:
    with pytest.raises(EvidenceFormatError, match="COSE_Sign1 has 1 trailing bytes"):
        verify_document(prod_raw + b"\x00")
    protected, _, payload, _ = _split(pki.document())
    padded = payload + b"\x00"
    with pytest.raises(EvidenceFormatError, match="payload has 1 trailing bytes"):
        verify_fake(pki, _cose(protected, padded, _sign(pki.leaf_key, padded)))


def _signed(pki: Pki, payload: bytes) -> bytes:
    return _cose(ES384, payload, _sign(pki.leaf_key, payload))


def test_duplicate_payload_keys_are_refused(pki: Pki) -> None:
    fields = pki.fields()
    body = b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in fields.items())
    duplicate = cbor2.dumps("module_id") + cbor2.dumps("i-other")
    payload = bytes([0xA0 + len(fields) + 1]) + body + duplicate
    with pytest.raises(EvidenceFormatError, match="Duplicate map key"):
        verify_fake(pki, _signed(pki, payload))


def test_indefinite_length_payload_is_refused(pki: Pki) -> None:
    payload = cbor2.dumps(pki.fields(), indefinite_containers=True)
    with pytest.raises(EvidenceFormatError, match="indefinite"):
        verify_fake(pki, _signed(pki, payload))


@pytest.mark.parametrize(
    "value",
    [
        cbor2.CBORTag(2, T0_MS.to_bytes(8, "big")),  # bignum: an int to a lax parser
        cbor2.CBORTag(1, T0_MS // 1000),  # epoch date-time
        cbor2.CBORTag(55555, T0_MS),  # unknown tag
    ],
)
def test_tags_inside_the_payload_are_refused(pki: Pki, value: cbor2.CBORTag) -> None:
    payload = cbor2.dumps(pki.fields(timestamp=value))
    with pytest.raises(EvidenceFormatError, match="tag"):
        verify_fake(pki, _signed(pki, payload))


def test_deeply_nested_values_are_refused(pki: Pki) -> None:
    nested: Any = b"x"
    for _ in range(10):
        nested = [nested]
    payload = cbor2.dumps(pki.fields(module_id=nested))
    with pytest.raises(EvidenceFormatError, match="depth"):
        verify_fake(pki, _signed(pki, payload))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"", "is empty"),
        (b"hello, world!", "neither binary COSE_Sign1 CBOR .* nor base64 text"),
        (b"AAAA", r"does not decode to a COSE_Sign1 array \(first byte 0x00"),
        (b"====", "neither binary COSE_Sign1 CBOR"),
        (b"\xa0", r"must be an array \[protected, unprotected, payload, signature\], got dict"),
        (b"\xd2\xa0", "must be an array .* got dict"),
        (b"A" * 70000, "more than a document"),
        (b"\x84" + b"\x00" * 20000, "more than the 17408 bytes"),
    ],
)
def test_input_form(document: bytes, message: str) -> None:
    with pytest.raises(EvidenceFormatError, match=message):
        verify_document(document)


# -- AWS's syntactic rules for the payload --------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        *(
            ({name: DROP}, f"missing {name}")
            for name in ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
        ),
        ({"extra": 1}, "fields AWS does not define: 'extra'"),
        ({"module_id": ""}, "module_id must be a non-empty text string"),
        ({"module_id": b"i-0"}, "module_id must be a non-empty text string, got bytes"),
        ({"module_id": None}, "module_id must be .* got null"),
        ({"digest": "SHA256"}, "digest must be \"SHA384\", got 'SHA256'"),
        ({"digest": b"SHA384"}, 'digest must be "SHA384"'),
        ({"timestamp": 0}, "timestamp must be a positive"),
        ({"timestamp": -1}, "timestamp must be a positive"),
        ({"timestamp": True}, "timestamp must be a positive"),
        ({"timestamp": float(T0_MS)}, "timestamp must be a positive"),
        ({"timestamp": str(T0_MS)}, "timestamp must be a positive"),
        ({"timestamp": 2**63}, "beyond the year 9999"),
        ({"pcrs": {}}, "pcrs must be a map of 1..32 entries"),
        ({"pcrs": [b"\x00" * 48]}, "pcrs must be a map"),
        ({"pcrs": {i: b"\x00" * 48 for i in range(33)}}, "pcrs must be a map of 1..32"),
        ({"pcrs": {32: b"\x00" * 48}}, "pcrs has index 32"),
        ({"pcrs": {-1: b"\x00" * 48}}, "pcrs has index -1"),
        ({"pcrs": {"0": b"\x00" * 48}}, "pcrs has index '0'"),
        (
            {"pcrs": {0: b"\x00" * 32}},
            r"pcrs\[0\] must be 48 bytes \(SHA384\), got bytes of length 32",
        ),
        ({"pcrs": {0: b"\x00" * 64}}, r"pcrs\[0\] must be 48 bytes"),
        ({"pcrs": {3: None}}, r"pcrs\[3\] must be 48 bytes .* got null"),
        ({"certificate": b""}, "certificate must be a DER certificate of 1..1024 bytes"),
        ({"certificate": b"\x30" * 1025}, "certificate must be .* length 1025"),
        ({"certificate": None}, "certificate must be"),
        ({"certificate": b"\x30\x03\x02\x01\x01"}, "certificate is not a DER X.509"),
        ({"cabundle": []}, "cabundle must be a non-empty array"),
        ({"cabundle": b"\x30"}, "cabundle must be a non-empty array"),
        ({"cabundle": ["MIIB"]}, r"cabundle\[0\] must be a DER certificate"),
        ({"cabundle": [b"\x30\x00"]}, r"cabundle\[0\] is not a DER X.509"),
        ({"public_key": b""}, "public_key must be a byte string of 1..1024 bytes or null"),
        ({"public_key": b"\x01" * 1025}, "public_key must be .* length 1025"),
        ({"public_key": "key"}, "public_key must be"),
        ({"user_data": b"\x01" * 1025}, "user_data must be a byte string of 0..1024"),
        ({"user_data": 7}, "user_data must be .* got int"),
        ({"nonce": b"\x01" * 1025}, "nonce must be a byte string of 0..1024"),
        ({"nonce": False}, "nonce must be .* got bool"),
    ],
)
def test_payload_syntax_is_checked(pki: Pki, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(EvidenceFormatError, match=message):
        verify_fake(pki, pki.document(pki.fields(**overrides)), now=T0)


def test_absent_or_null_optional_fields_are_accepted(pki: Pki) -> None:
    absent = verify_fake(pki, pki.document(pki.fields(public_key=DROP, user_data=DROP, nonce=DROP)))
    null = verify_fake(pki, pki.document(pki.fields(public_key=None, user_data=None, nonce=None)))
    for result in (absent, null):
        assert result.report_data == b""
        assert result.claims["nonce"] is None
        assert result.claims["public_key"] is None


def test_limits_are_inclusive(pki: Pki) -> None:
    fields = pki.fields(
        public_key=b"\x05" * 1024,
        user_data=b"",
        nonce=b"\x06" * 1024,
        pcrs={31: b"\x07" * 48, 0: b"\x08" * 48},
        timestamp=T0_MS,
    )
    result = verify_fake(pki, pki.document(fields))
    assert list(result.measurements) == ["pcr0", "pcr31"]  # sorted by index
    assert result.report_data == b""
    assert result.claims["nonce"] == "06" * 1024


def test_fake_pki_result_is_normalised(pki: Pki) -> None:
    document = pki.document()
    result = verify_fake(pki, document)
    assert result.verified_at == T0
    assert result.claims["timestamp"] == "2030-01-01T12:00:00.000Z"
    assert result.report_data == b"\x03" * 64
    assert result.debug is False
    assert result.chain == (
        pki.leaf.subject.rfc4514_string(),
        pki.inter.subject.rfc4514_string(),
        pki.root.subject.rfc4514_string(),
        hashlib.sha256(_der(pki.root)).hexdigest(),
    )
    assert result.evidence_digest == "sha256:" + hashlib.sha256(document).hexdigest()


@pytest.mark.parametrize(
    ("pcrs", "debug"),
    [
        ({0: b"\x00" * 48, 1: b"\x01" * 48}, True),
        ({1: b"\x01" * 48, 2: b"\x02" * 48}, True),  # no PCR0: nothing shows a measured image
        ({0: b"\x00" * 47 + b"\x01"}, False),
    ],
)
def test_debug_follows_pcr0(pki: Pki, pcrs: dict[int, bytes], debug: bool) -> None:
    assert verify_fake(pki, pki.document(pki.fields(pcrs=pcrs))).debug is debug


# -- chain rules the real documents cannot show ----------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"inter_ca": False}, r"cabundle\[1\] has no basicConstraints, so it is not a CA"),
        (
            {"root_path_length": 0},
            "AWS Nitro root allows 0 CA certificates below it, but the chain has 1",
        ),
        ({"leaf_ca": True}, "leaf certificate is a CA certificate"),
        (
            {"leaf_curve": ec.SECP256R1()},
            "leaf certificate does not have an ECDSA P-384 public key",
        ),
        ({"leaf_digest": hashes.SHA256()}, "leaf certificate is signed with 1.2.840.10045.4.3.2"),
        ({"leaf_issuer": _name("someone else")}, "leaf certificate is issued by 'CN=someone else"),
        ({"leaf_key_usage": False}, "leaf certificate has no keyUsage"),
        ({"leaf_critical_unknown": True}, "unrecognised critical extension 1.3.6.1.4.1.55555.1"),
        (
            {"inter_window": (T0 - timedelta(days=10), T0 - timedelta(days=1))},
            r"cabundle\[1\] \(CN=zonal.fake.nitro-enclaves.*\) is expired at 2030-01-01T12:00:00Z: "
            r"valid 2029-12-22T12:00:00Z \.\. 2029-12-31T12:00:00Z",
        ),
    ],
)
def test_chain_rules(options: dict[str, Any], message: str) -> None:
    fake = make_pki(**options)
    with pytest.raises(CertificateChainError, match=message):
        verify_fake(fake, fake.document())


def test_document_timestamp_must_fall_in_the_leaf_window(pki: Pki) -> None:
    late = T0_MS + 3 * 3600 * 1000  # after the leaf expired
    document = pki.document(pki.fields(timestamp=late))
    with pytest.raises(CertificateChainError, match="expired at 2030-01-01T15:00:00Z"):
        verify_fake(pki, document)
    with pytest.raises(CertificateChainError, match=r"document timestamp .* outside the leaf"):
        verify_fake(pki, document, now=T0)


# -- nothing but AttestationError ------------------------------------------------------


def test_truncations_are_format_errors(prod_raw: bytes, prod_b64: bytes) -> None:
    n = len(prod_raw)
    for length in sorted(
        {
            0,
            1,
            2,
            3,
            4,
            5,
            8,
            16,
            64,
            100,
            500,
            1000,
            4000,
            n // 2,
            n - 200,
            n - 97,
            n - 96,
            n - 95,
            n - 2,
            n - 1,
        }
    ):
        with pytest.raises(EvidenceFormatError):
            verify_document(prod_raw[:length])
    for length in (1, 4, 100, len(prod_b64) // 2, len(prod_b64) - 8, len(prod_b64) - 1):
        with pytest.raises(EvidenceFormatError):
            verify_document(prod_b64[:length])


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        verify_document(data)


@_FUZZ
@given(
    st.sampled_from([b"\x84", b"\xd2\x84", b"\x84\x44\xa1\x01\x38\x22\xa0\x59"]),
    st.binary(max_size=1024),
)
def test_random_bytes_after_a_cose_prefix_raise_only_attestation_errors(
    prefix: bytes, data: bytes
) -> None:
    with pytest.raises(AttestationError):
        verify_document(prefix + data)


# cryptography only warns on some malformed certificates (a country name of the
# wrong length, a negative serial); the verifier still refuses those documents.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@_FUZZ
@given(st.data())
def test_mutated_documents_raise_only_attestation_errors(
    prod_raw: bytes, data: st.DataObject
) -> None:
    n = len(prod_raw)
    kind = data.draw(st.sampled_from(["flip", "delete", "insert"]))
    if kind == "flip":
        positions = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8, unique=True))
        mutated = bytearray(prod_raw)
        for p in positions:
            mutated[p] ^= data.draw(st.integers(1, 255))
        document = bytes(mutated)
    elif kind == "delete":
        start = data.draw(st.integers(0, n - 1))
        end = data.draw(st.integers(start + 1, min(n, start + 64)))
        document = prod_raw[:start] + prod_raw[end:]
    else:
        at = data.draw(st.integers(0, n))
        document = prod_raw[:at] + data.draw(st.binary(min_size=1, max_size=16)) + prod_raw[at:]
    with pytest.raises(AttestationError):
        verify_document(document, now=INSIDE_WINDOW)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@_FUZZ
@given(st.data())
def test_any_change_to_the_leaf_certificate_is_caught_before_the_signature(
    prod_raw: bytes, data: st.DataObject
) -> None:
    leaf = _fields(prod_raw)["certificate"]
    start = prod_raw.index(leaf)
    at = data.draw(st.integers(start, start + len(leaf) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = prod_raw[:at] + bytes([prod_raw[at] ^ mask]) + prod_raw[at + 1 :]
    with pytest.raises(
        (CertificateChainError, EvidenceFormatError, EvidenceSignatureError)
    ) as info:
        verify_document(tampered, now=INSIDE_WINDOW)
    if isinstance(info.value, EvidenceSignatureError):
        # Only a change the certificate's meaning ignores may get this far:
        # the unused-bits byte of its signature BIT STRING, which the X.509
        # parser tolerates (same TBS, same signature). The document's own
        # signature covers the certificate's bytes and refuses it.
        cert = x509.load_der_x509_certificate(_fields(tampered)["certificate"])
        original = x509.load_der_x509_certificate(leaf)
        assert cert.tbs_certificate_bytes == original.tbs_certificate_bytes
        assert cert.signature == original.signature


_CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64) + 1, 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=80)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-2, 40) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
_FIELD_NAMES = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
    "unknown",
]


@_FUZZ
@given(st.sampled_from(_FIELD_NAMES), _CBOR_VALUES)
def test_re_signed_payload_with_any_field_value_is_result_or_attestation_error(
    pki: Pki, name: str, value: Any
) -> None:
    # Signed correctly and trusted, so the value reaches every later check.
    document = pki.document(pki.fields(**{name: value}))
    try:
        result = verify_fake(pki, document)
    except AttestationError:
        return
    assert isinstance(result, AttestationResult)
    assert result.platform is Platform.NITRO
