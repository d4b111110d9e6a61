"""Verifier for AMD SEV-SNP attestation reports.

A report is 1184 bytes the AMD Secure Processor signs with a per-chip,
per-TCB key: the VCEK (derived from a chip secret and the firmware versions)
or, in a cloud that registered with AMD, the VLEK (one key per provider and
TCB). AMD certifies that key in an X.509 certificate chain that ends at the
AMD Root Key (ARK) of the processor generation: VCEK → ASK → ARK, or
VLEK → ASVK → ARK. Only the ARKs are trust anchors; their SHA-256
fingerprints are pinned in :mod:`nestor.attestation.roots`.

:func:`verify_report` walks that chain, checks that the certificate belongs
to the report (same signing-key kind, chip id and TCB), checks the report
signature and returns the normalised :class:`AttestationResult`. It decides
nothing about what the guest *should* be (measurement, debug, minimum TCB):
that is appraisal, against the contract's enclave policy.

Not checked here: AMD's certificate revocation lists (the KDS CRLs are not
part of the evidence); a deployment that needs revocation must add them as
collateral.

Layout reference: AMD SEV-SNP ABI specification (56860), table
"ATTESTATION_REPORT structure"; VCEK extensions: AMD "Versioned Chip
Endorsement Key (VCEK) Certificate and KDS Interface Specification" (57230).
"""

from __future__ import annotations

import hashlib
import re
import struct
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from nestor.attestation import roots
from nestor.attestation.result import AttestationResult, Platform
from nestor.errors import CertificateChainError, EvidenceFormatError, EvidenceSignatureError

REPORT_SIZE: Final = 0x4A0
SIGNED_LENGTH: Final = 0x2A0
MIN_VERSION: Final = 2
MAX_VERSION: Final = 5
SIGNATURE_ALGO_ECDSA_P384_SHA384: Final = 1

SIGNING_KEY_VCEK: Final = 0
SIGNING_KEY_VLEK: Final = 1
SIGNING_KEY_NONE: Final = 7
_SIGNING_KEY_NAMES: Final = {SIGNING_KEY_VCEK: "VCEK", SIGNING_KEY_VLEK: "VLEK"}

PRODUCTS: Final = ("Milan", "Genoa", "Turin")

# Guest policy bits (ABI spec, "GUEST_POLICY").
POLICY_SMT: Final = 1 << 16
POLICY_MIGRATE_MA: Final = 1 << 18
POLICY_DEBUG: Final = 1 << 19
POLICY_SINGLE_SOCKET: Final = 1 << 20

# VCEK/VLEK certificate extensions (AMD 57230).
_OID_PREFIX: Final = "1.3.6.1.4.1.3704.1."
OID_PRODUCT_NAME: Final = x509.ObjectIdentifier(_OID_PREFIX + "2")
OID_BL_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.1")
OID_TEE_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.2")
OID_SNP_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.3")
OID_UCODE_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.8")
OID_FMC_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.9")
OID_HWID: Final = x509.ObjectIdentifier(_OID_PREFIX + "4")
OID_CSP_ID: Final = x509.ObjectIdentifier(_OID_PREFIX + "5")

# AMD signs every certificate of the chain with RSASSA-PSS, SHA-384, MGF1-SHA-384,
# salt 48. Verifying with these fixed parameters (rather than the ones the
# certificate declares) enforces that profile.
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_P384_ORDER: Final = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION: the security patch levels of the firmware components.

    The 8 bytes are laid out differently per generation: Milan and Genoa put
    bootloader, TEE, 4 reserved bytes, SNP, microcode; Turin (family 0x1A)
    adds an FMC level in front: FMC, bootloader, TEE, SNP, 3 reserved,
    microcode. ``fmc`` is ``None`` for the older layout.
    """

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw8: bytes, *, turin: bool) -> TcbVersion:
        raw = int.from_bytes(raw8, "little")
        if turin:
            return cls(
                raw, bootloader=raw8[1], tee=raw8[2], snp=raw8[3], microcode=raw8[7], fmc=raw8[0]
            )
        return cls(raw, bootloader=raw8[0], tee=raw8[1], snp=raw8[6], microcode=raw8[7])

    def to_json(self) -> dict[str, int]:
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


@dataclass(frozen=True)
class SnpReport:
    """The fields of an SEV-SNP ATTESTATION_REPORT (versions 2 to 5).

    Parsing does not authenticate anything: only :func:`verify_report` says
    whether the AMD Secure Processor signed these bytes.
    """

    raw: bytes = field(repr=False)
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_family: int | None
    cpuid_model: int | None
    cpuid_stepping: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: tuple[int, int, int]
    committed_version: tuple[int, int, int]
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    @property
    def signed_bytes(self) -> bytes:
        """``report[0:0x2A0]``: everything before the signature is signed."""
        return self.raw[:SIGNED_LENGTH]

    @property
    def signing_key(self) -> int:
        """Flags bits 2-4: 0 = VCEK, 1 = VLEK, 7 = unsigned."""
        return (self.flags >> 2) & 7

    @property
    def author_key_en(self) -> bool:
        return bool(self.flags & 1)

    @property
    def mask_chip_key(self) -> bool:
        """Set when the host masked the chip key: the report is then unsigned."""
        return bool(self.flags & 2)

    @property
    def debug(self) -> bool:
        """Guest policy bit 19: the hypervisor may decrypt and inspect the guest."""
        return bool(self.policy & POLICY_DEBUG)

    @property
    def cpuid_product(self) -> str | None:
        """The product the report's CPUID names (version 3+), if known."""
        if self.cpuid_family is None or self.cpuid_model is None:
            return None
        return product_from_cpuid(self.cpuid_family, self.cpuid_model)


def product_from_cpuid(family: int, model: int) -> str | None:
    """AMD EPYC generation for a CPUID family/model, ``None`` if unknown.

    Family 0x19: Milan (models 0x00-0x0F), Genoa (0x10-0x1F and 0xA0-0xAF,
    which includes Bergamo and Siena); family 0x1A models 0x00-0x11: Turin.
    Other generations (Venice, ...) have no pinned root here, so naming them
    would not help.
    """
    if family == 0x19:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
    if family == 0x1A and model <= 0x11:
        return "Turin"
    return None


def parse_report(data: bytes) -> SnpReport:
    """Split a raw 1184-byte report into its fields.

    Rejects, with :class:`EvidenceFormatError` naming the field, anything the
    verifier could not interpret safely: another size, a version outside 2..5,
    a signature algorithm other than ECDSA P-384/SHA-384, a reserved signing
    key selector. Reserved bytes are not checked: they are covered by the
    signature, and newer firmware gives some of them meaning.
    """
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise EvidenceFormatError(
            f"SEV-SNP report: size is {len(data)} bytes, expected {REPORT_SIZE} (0x4A0)"
        )
    (version,) = struct.unpack_from("<I", data, 0x00)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise EvidenceFormatError(
            f"SEV-SNP report: field version is {version}, supported are "
            f"{MIN_VERSION} to {MAX_VERSION}"
        )
    (sig_algo,) = struct.unpack_from("<I", data, 0x34)
    if sig_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise EvidenceFormatError(
            f"SEV-SNP report: field signature_algo is {sig_algo}, only "
            f"{SIGNATURE_ALGO_ECDSA_P384_SHA384} (ECDSA P-384 with SHA-384) is defined"
        )
    (flags,) = struct.unpack_from("<I", data, 0x48)
    selector = (flags >> 2) & 7
    if selector not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, SIGNING_KEY_NONE):
        raise EvidenceFormatError(
            f"SEV-SNP report: field flags has signing key selector {selector} "
            "(bits 2-4), which is reserved (0 = VCEK, 1 = VLEK, 7 = none)"
        )
    if version >= 3:
        family, model, stepping = data[0x188], data[0x189], data[0x18A]
        cpuid: tuple[int | None, int | None, int | None] = (family, model, stepping)
    else:
        cpuid = (None, None, None)
    # The TCB layout depends on the generation; only v3+ reports say which.
    turin = cpuid[0] == 0x1A

    def tcb(offset: int) -> TcbVersion:
        return TcbVersion.decode(data[offset : offset + 8], turin=turin)

    def u64(offset: int) -> int:
        return int.from_bytes(data[offset : offset + 8], "little")

    return SnpReport(
        raw=data,
        version=version,
        guest_svn=int.from_bytes(data[0x04:0x08], "little"),
        policy=u64(0x08),
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=int.from_bytes(data[0x30:0x34], "little"),
        signature_algo=sig_algo,
        current_tcb=tcb(0x38),
        platform_info=u64(0x40),
        flags=flags,
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcb(0x180),
        cpuid_family=cpuid[0],
        cpuid_model=cpuid[1],
        cpuid_stepping=cpuid[2],
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0),
        current_version=(data[0x1EA], data[0x1E9], data[0x1E8]),
        committed_version=(data[0x1EE], data[0x1ED], data[0x1EC]),
        launch_tcb=tcb(0x1F0),
        launch_mit_vector=u64(0x1F8) if version >= 5 else None,
        current_mit_vector=u64(0x200) if version >= 5 else None,
        signature_r=int.from_bytes(data[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(data[0x2E8:0x330], "little"),
    )


# -- certificates -----------------------------------------------------------------


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    """Load one certificate, PEM or DER; unreadable → CertificateChainError.

    A certificate that cannot be read cannot lead to a pinned root, hence the
    chain error rather than a format error.
    """
    with warnings.catch_warnings():
        # AMD issues VCEK/VLEK certificates with serial number 0, which RFC 5280
        # forbids; cryptography 50 accepts them with a CryptographyDeprecationWarning
        # (a later release may refuse them). Nothing here uses the serial number:
        # trust comes from the signatures up to the pinned ARK. Silence only that
        # warning, only while loading. (catch_warnings swaps process-global state,
        # so a concurrent thread may briefly see the filter too; it only hides
        # this one warning.)
        warnings.filterwarnings(
            "ignore", category=CryptographyDeprecationWarning, message=".*serial number.*"
        )
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CertificateChainError(
                f"the {what} certificate cannot be parsed as X.509 (DER or PEM): {exc}"
            ) from exc


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_validity(cert: x509.Certificate, what: str, now: datetime) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise CertificateChainError(
            f"the {what} certificate is not yet valid at {_when(now)}: "
            f"valid {_when(start)} .. {_when(end)}"
        )
    if now > end:
        raise CertificateChainError(
            f"the {what} certificate has expired at {_when(now)}: "
            f"valid {_when(start)} .. {_when(end)}"
        )


def _check_signed_by(
    child: x509.Certificate, child_name: str, parent: x509.Certificate, parent_name: str
) -> None:
    """``child`` names ``parent`` as issuer and carries its RSA-PSS signature."""
    if child.issuer != parent.subject:
        raise CertificateChainError(
            f"the {child_name} certificate is issued by {child.issuer.rfc4514_string()!r}, "
            f"not by the {parent_name} ({parent.subject.rfc4514_string()!r})"
        )
    if child.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS or not isinstance(
        child.signature_hash_algorithm, hashes.SHA384
    ):
        raise CertificateChainError(
            f"the {child_name} certificate is not signed with RSASSA-PSS / SHA-384 "
            f"(signature algorithm {child.signature_algorithm_oid.dotted_string})"
        )
    if not _signature_algorithms_agree(child):
        raise CertificateChainError(
            f"the {child_name} certificate's outer signatureAlgorithm differs from the "
            "signed one in its TBSCertificate (RFC 5280, 4.1.1.2)"
        )
    key = parent.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateChainError(f"the {parent_name} certificate does not hold an RSA key")
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise CertificateChainError(
            f"the {child_name} certificate's signature does not verify with the "
            f"{parent_name} key (RSASSA-PSS, SHA-384, salt 48)"
        ) from None


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER element")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER element")
    return tag, pos, pos + length


def _signature_algorithms_agree(cert: x509.Certificate) -> bool:
    """The unsigned outer AlgorithmIdentifier repeats the signed one in the TBS.

    cryptography reports the outer one, which no signature covers; a verifier
    that only checked it would accept certificates whose PSS parameters were
    edited after signing. (cryptography already parsed the structure, so
    walking it by position is enough.)
    """
    der = cert.public_bytes(Encoding.DER)
    _, body, _ = _der_element(der, 0)  # Certificate
    _, pos, tbs_end = _der_element(der, body)  # TBSCertificate
    tag, _, end = _der_element(der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    _, _, pos = _der_element(der, pos)  # serialNumber
    _, _, inner_end = _der_element(der, pos)  # signature AlgorithmIdentifier
    _, _, outer_end = _der_element(der, tbs_end)
    return der[pos:inner_end] == der[tbs_end:outer_end]


def _require_ca(cert: x509.Certificate, what: str) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CertificateChainError(f"the {what} certificate is not a CA certificate")


def verify_amd_chain(
    vek: x509.Certificate,
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    *,
    product: str,
    now: datetime,
) -> tuple[str, ...]:
    """Check VEK → ASK/ASVK → ARK at ``now``; return the chain for the result.

    The ARK must have the pinned fingerprint of ``product`` (checked here
    again, so a caller cannot substitute a home-made root), sign itself and
    the intermediate; the intermediate must sign the VCEK/VLEK. Each of the
    three certificates must be valid at ``now``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    try:
        return _verify_amd_chain(vek, intermediate, ark, product, now)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography parses extensions and keys lazily: a corrupted certificate
        # that loaded may still fail here.
        raise CertificateChainError(f"a certificate of the AMD chain is malformed: {exc}") from exc


def _verify_amd_chain(
    vek: x509.Certificate,
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    product: str,
    now: datetime,
) -> tuple[str, ...]:
    pinned = roots.AMD_ARKS.get(product)
    if pinned is None:
        raise CertificateChainError(f"no pinned AMD root (ARK) for product {product!r}")
    ark_name = f"ARK-{product}"
    ark_fp = roots.fingerprint(ark)
    if ark_fp != pinned:
        raise CertificateChainError(
            f"the root certificate ({ark.subject.rfc4514_string()!r}, SHA-256 {ark_fp}) "
            f"is not the pinned AMD {ark_name} ({pinned})"
        )
    _check_signed_by(ark, ark_name, ark, ark_name)
    _check_validity(ark, ark_name, now)
    _require_ca(ark, ark_name)

    mid_name = _cn(intermediate.subject) or "intermediate"
    mid_name = f"{'ASVK' if 'VLEK' in mid_name else 'ASK'} ({mid_name})"
    _check_signed_by(intermediate, mid_name, ark, ark_name)
    _check_validity(intermediate, mid_name, now)
    _require_ca(intermediate, mid_name)

    vek_name = _cn(vek.subject) or "VCEK/VLEK"
    _check_signed_by(vek, vek_name, intermediate, mid_name)
    _check_validity(vek, vek_name, now)
    return (
        vek.subject.rfc4514_string(),
        intermediate.subject.rfc4514_string(),
        ark.subject.rfc4514_string(),
        ark_fp,
    )


def _ext_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    return None


def _der_small_uint(data: bytes, what: str) -> int:
    """A DER INTEGER from 0 to 255 (AMD's SPL extensions)."""
    if len(data) < 3 or data[0] != 0x02 or data[1] != len(data) - 2 or data[1] > 2:
        raise CertificateChainError(f"the {what} extension is not a small DER INTEGER")
    body = data[2:]
    if body[0] & 0x80 or (len(body) == 2 and (body[0] != 0 or body[1] < 0x80)):
        raise CertificateChainError(f"the {what} extension is not a DER INTEGER from 0 to 255")
    return body[-1]


def _der_ia5(data: bytes | None) -> str | None:
    if data is None or len(data) < 2 or data[0] != 0x16 or data[1] != len(data) - 2:
        return None
    try:
        return data[2:].decode("ascii")
    except UnicodeDecodeError:
        return None


def _hwid(data: bytes) -> bytes:
    """The VCEK hwID: raw 64 bytes (older VCEKs) or a DER OCTET STRING of 64."""
    if len(data) == 64:
        return data
    if len(data) == 66 and data[:2] == b"\x04\x40":
        return data[2:]
    raise CertificateChainError(
        "the VCEK hwID extension (1.3.6.1.4.1.3704.1.4) is neither 64 raw bytes nor "
        "a DER OCTET STRING of 64 bytes"
    )


def _product_from_certificate(vek: x509.Certificate) -> str | None:
    issuer = _cn(vek.issuer)
    m = re.fullmatch(r"SEV-(?:VLEK-)?([A-Za-z]+)", issuer)
    if m and m.group(1) in PRODUCTS:
        return m.group(1)
    name = _der_ia5(_ext_bytes(vek, OID_PRODUCT_NAME))
    if name:
        base = name.split("-", 1)[0]
        if base in PRODUCTS:
            return base
    return None


def _resolve_product(report: SnpReport, vek: x509.Certificate, product: str | None) -> str:
    """The generation whose chain applies: argument, else certificate, else CPUID.

    Whatever decides it, a report whose CPUID names another known generation
    is refused: its signer cannot be certified by this chain.
    """
    from_cpuid = report.cpuid_product
    chosen = product or _product_from_certificate(vek) or from_cpuid
    if chosen is None:
        raise CertificateChainError(
            "cannot tell the AMD product (Milan, Genoa, Turin): the certificate names "
            "none and the report has no known CPUID; pass product="
        )
    if chosen not in PRODUCTS:
        raise CertificateChainError(f"no pinned AMD root (ARK) for product {chosen!r}")
    if from_cpuid is not None and from_cpuid != chosen:
        raise CertificateChainError(
            f"the report's CPUID (family {report.cpuid_family:#04x}, model "
            f"{report.cpuid_model:#04x}) is {from_cpuid}, but the certificate chain is {chosen}"
        )
    return chosen


def _chain_for(product: str, kind: int) -> tuple[x509.Certificate, x509.Certificate]:
    if kind == SIGNING_KEY_VLEK:
        if product != "Milan":
            raise CertificateChainError(
                f"no VLEK chain for {product}: only the Milan ASVK (SEV-VLEK-Milan) is bundled"
            )
        return roots.amd_asvk_chain_milan()
    return roots.amd_chain(product)


def _match_certificate(report: SnpReport, vek: x509.Certificate, kind: int, product: str) -> None:
    """The certificate is for this chip (VCEK hwID) and this TCB (SPL extensions).

    AMD derives a VCEK from the chip secret *and* the TCB, so a VCEK for other
    firmware levels (or another chip) must not vouch for the report even if a
    signature were to verify.
    """
    name = _SIGNING_KEY_NAMES[kind]
    if kind == SIGNING_KEY_VCEK and any(report.chip_id):
        raw = _ext_bytes(vek, OID_HWID)
        if raw is None:
            raise CertificateChainError(
                "the VCEK has no hwID extension (1.3.6.1.4.1.3704.1.4) to match the chip id"
            )
        if _hwid(raw) != report.chip_id:
            raise CertificateChainError(
                "the VCEK does not match the report's chip id: the certificate's hwID is "
                f"{_hwid(raw).hex()[:16]}..., the report's chip_id {report.chip_id.hex()[:16]}..."
            )
    spl = [
        ("bootloader", OID_BL_SPL, report.reported_tcb.bootloader),
        ("tee", OID_TEE_SPL, report.reported_tcb.tee),
        ("snp", OID_SNP_SPL, report.reported_tcb.snp),
        ("microcode", OID_UCODE_SPL, report.reported_tcb.microcode),
    ]
    if product == "Turin":
        if report.reported_tcb.fmc is None:
            raise CertificateChainError(
                "a Turin VCEK needs a report of version 3 or later whose CPUID names "
                "family 0x1A (the Turin TCB layout)"
            )
        spl.append(("fmc", OID_FMC_SPL, report.reported_tcb.fmc))
    mismatched = []
    for label, oid, reported in spl:
        raw = _ext_bytes(vek, oid)
        if raw is None:
            raise CertificateChainError(
                f"the {name} has no {label} TCB extension ({oid.dotted_string})"
            )
        certified = _der_small_uint(raw, f"{name} {label} TCB")
        if certified != reported:
            mismatched.append(f"{label} {certified} != {reported}")
    if mismatched:
        raise CertificateChainError(
            f"the {name} does not match the report's reported TCB "
            f"(certificate != report: {', '.join(mismatched)})"
        )


def _verify_signature(report: SnpReport, key: ec.EllipticCurvePublicKey, name: str) -> None:
    r, s = report.signature_r, report.signature_s
    if not (0 < r < _P384_ORDER and 0 < s < _P384_ORDER):
        raise EvidenceSignatureError(
            "the SEV-SNP report signature is malformed: r or s is outside 1 .. n-1 of P-384"
        )
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise EvidenceSignatureError(
            f"the SEV-SNP report signature does not verify with the {name} key "
            "(ECDSA P-384 / SHA-384 over report[0:0x2A0])"
        ) from None


def verify_report(
    report: bytes, *, endorsement: bytes, now: datetime, product: str | None = None
) -> AttestationResult:
    """Verify an SEV-SNP report and the VCEK/VLEK certificate that endorses it.

    ``endorsement`` is the VCEK or VLEK certificate (DER or PEM); ASK, ASVK and
    ARK are the bundled, pinned ones. ``product`` (Milan, Genoa, Turin) picks
    the chain; without it the certificate's issuer or product name, else the
    report's CPUID, decides. ``now`` is the verification time (timezone-aware):
    each certificate must be valid then.

    Order: parse; certificate kind; chain to the pinned ARK; certificate ↔
    report (chip id, TCB); report signature. The certificate is matched
    before the signature so that "a valid VCEK of another chip" and "a VCEK
    for other firmware" get their own message instead of a bare signature
    failure.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    parsed = parse_report(report)
    kind = parsed.signing_key
    if kind == SIGNING_KEY_NONE:
        raise EvidenceSignatureError(
            "the SEV-SNP report is unsigned (signing key selector 7 in field flags)"
        )
    if parsed.mask_chip_key:
        raise EvidenceSignatureError(
            "the SEV-SNP report is unsigned: field flags has MASK_CHIP_KEY set"
        )
    name = _SIGNING_KEY_NAMES[kind]
    vek = load_certificate(endorsement, name)
    try:
        return _verify_with_certificate(parsed, vek, kind, name, now, product)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Lazily parsed parts of a damaged certificate (extensions, key).
        raise CertificateChainError(f"the {name} certificate is malformed: {exc}") from exc


def _verify_with_certificate(
    parsed: SnpReport,
    vek: x509.Certificate,
    kind: int,
    name: str,
    now: datetime,
    product: str | None,
) -> AttestationResult:
    subject_cn = _cn(vek.subject)
    cert_kind = {"SEV-VCEK": SIGNING_KEY_VCEK, "SEV-VLEK": SIGNING_KEY_VLEK}.get(subject_cn)
    if cert_kind != kind:
        raise CertificateChainError(
            f"the report is signed by the {name} (field flags), but the endorsement "
            f"certificate is {subject_cn!r}, not SEV-{name}"
        )
    chosen = _resolve_product(parsed, vek, product)
    intermediate, ark = _chain_for(chosen, kind)
    chain = verify_amd_chain(vek, intermediate, ark, product=chosen, now=now)
    key = vek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise CertificateChainError(f"the {name} certificate does not hold a P-384 ECDSA key")
    _match_certificate(parsed, vek, kind, chosen)
    _verify_signature(parsed, key, name)
    return _result(parsed, vek, name, chosen, chain, now)


def _result(
    r: SnpReport,
    vek: x509.Certificate,
    name: str,
    product: str,
    chain: tuple[str, ...],
    now: datetime,
) -> AttestationResult:
    tcb = r.reported_tcb
    numbers = {
        "version": r.version,
        "guest_svn": r.guest_svn,
        "vmpl": r.vmpl,
        "policy": r.policy,
        "tcb_bootloader": tcb.bootloader,
        "tcb_tee": tcb.tee,
        "tcb_snp": tcb.snp,
        "tcb_microcode": tcb.microcode,
    }
    if tcb.fmc is not None:
        numbers["tcb_fmc"] = tcb.fmc
    claims: dict[str, Any] = {
        "product": product,
        "signing_key": name,
        "smt": bool(r.policy & POLICY_SMT),
        "migrate_ma": bool(r.policy & POLICY_MIGRATE_MA),
        "single_socket": bool(r.policy & POLICY_SINGLE_SOCKET),
        "abi_minimum": f"{(r.policy >> 8) & 0xFF}.{r.policy & 0xFF}",
        "author_key_en": r.author_key_en,
        "platform_info": r.platform_info,
        "family_id": r.family_id.hex(),
        "image_id": r.image_id.hex(),
        "author_key_digest": r.author_key_digest.hex(),
        "report_id_ma": r.report_id_ma.hex(),
        "reported_tcb": tcb.to_json(),
        "current_tcb": r.current_tcb.to_json(),
        "committed_tcb": r.committed_tcb.to_json(),
        "launch_tcb": r.launch_tcb.to_json(),
        "current_firmware": "{}.{}.{}".format(*r.current_version),
        "committed_firmware": "{}.{}.{}".format(*r.committed_version),
    }
    if name == "VCEK":
        # MASK_CHIP_ID hosts zero the chip id; the VCEK signature still binds the chip.
        claims["chip_id_masked"] = not any(r.chip_id)
    if r.cpuid_family is not None:
        claims["cpuid"] = f"{r.cpuid_family:02x} {r.cpuid_model:02x} {r.cpuid_stepping:02x}"
    if r.launch_mit_vector is not None:
        claims["launch_mit_vector"] = r.launch_mit_vector
        claims["current_mit_vector"] = r.current_mit_vector
    product_name = _der_ia5(_ext_bytes(vek, OID_PRODUCT_NAME))
    if product_name is not None:
        claims["certificate_product_name"] = product_name
    csp = _der_ia5(_ext_bytes(vek, OID_CSP_ID))
    if csp is not None:
        claims["csp_id"] = csp
    return AttestationResult(
        platform=Platform.SEV_SNP,
        measurements={
            "measurement": r.measurement.hex(),
            "host_data": r.host_data.hex(),
            "chip_id": r.chip_id.hex(),
            "report_id": r.report_id.hex(),
            "id_key_digest": r.id_key_digest.hex(),
        },
        numbers=numbers,
        tcb_status=None,
        advisory_ids=(),
        debug=r.debug,
        report_data=r.report_data,
        chain=chain,
        verified_at=now,
        evidence_digest="sha256:" + hashlib.sha256(r.raw).hexdigest(),
        claims=claims,
    )
