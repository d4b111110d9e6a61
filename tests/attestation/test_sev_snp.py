"""AMD SEV-SNP report verification against real reports and AMD chains.

Samples: /work/shared/attestation-samples/amd-sev-snp (see its README for
provenance and expected values). Every verification uses a fixed time: the
short-lived VLEK expired on 2025-12-10.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestor.attestation import roots, sev_snp
from nestor.attestation.result import Platform
from nestor.errors import (
    AttestationError,
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "attestation-samples"
SNP = SAMPLES / "amd-sev-snp"
AZURE = SAMPLES / "azure-vtpm"

pytestmark = pytest.mark.skipif(
    not SNP.is_dir(), reason=f"real attestation samples not available at {SNP}"
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)  # inside every sample's validity window
AFTER_VLEK_EXPIRY = datetime(2026, 11, 26, tzinfo=UTC)

MILAN_MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
    "6bdf8a9ece31a5a608eb0cf2e4872b01"
)
MILAN_CHIP_ID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
MILAN_REPORT_ID = "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"
VLEK_REPORT_DATA = (
    "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd5"
    "4e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca"
)
VLEK_MEASUREMENT = (
    "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4"
    "e8c9af857f5ceeb5a493df2a570d7bf0"
)
VLEK_REPORT_ID = "62e04fba700afd93b3a0cc0649b633ee36587fa8a8c2eb5d9b7cd7bc5f4bb057"
GENOA_MEASUREMENT = (
    "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3"
    "706faf814c9e61065768a6ff917c89ae"
)


def read(name: str) -> bytes:
    return (SNP / name).read_bytes()


def vcek_report() -> bytes:
    return read("milan_vcek_report.bin")


def vcek_der() -> bytes:
    return read("milan_vcek.der")


def vlek_report() -> bytes:
    return read("milan_vlek_report.bin")


def vlek_der() -> bytes:
    return read("milan_vlek.der")


def azure_evidence(name: str) -> dict[str, object]:
    path = AZURE / name
    if not path.is_file():
        pytest.skip(f"Azure vTPM sample {path} not available")
    obj = json.loads(path.read_bytes())
    assert isinstance(obj, dict)
    return obj


def genoa_report_and_vcek() -> tuple[bytes, bytes]:
    """The Genoa SNP report is bytes 32..1216 of the HCL report in the Azure file."""
    ev = azure_evidence("az_snp_vtpm_evidence_genoa.json")
    hcl = ev["report"]
    vcek = ev["vcek"]
    assert isinstance(hcl, list)
    assert isinstance(vcek, str)
    return bytes(hcl)[32:1216], vcek.encode()


def azure_milan_vcek() -> bytes:
    ev = azure_evidence("az_snp_vtpm_evidence_v2_milan.json")
    vcek = ev["vcek"]
    assert isinstance(vcek, str)
    import base64

    return base64.urlsafe_b64decode(vcek + "=" * (-len(vcek) % 4))


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def load(der: bytes) -> x509.Certificate:
    return sev_snp.load_certificate(der, "test")


# -- valid samples ---------------------------------------------------------------------


def test_milan_vcek_sample_is_valid_with_every_readme_field() -> None:
    result = sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW)
    assert result.platform is Platform.SEV_SNP
    assert result.measurements["measurement"] == MILAN_MEASUREMENT
    assert result.measurements["chip_id"] == MILAN_CHIP_ID
    assert result.measurements["report_id"] == MILAN_REPORT_ID
    assert result.measurements["host_data"] == "00" * 32
    assert result.measurements["id_key_digest"] == "00" * 48
    assert result.report_data == bytes.fromhex("0102030405") + bytes(59)
    assert result.numbers == {
        "version": 2,
        "guest_svn": 0,
        "vmpl": 0,
        "policy": 0xB0000,
        "tcb_bootloader": 2,
        "tcb_tee": 0,
        "tcb_snp": 5,
        "tcb_microcode": 68,
    }
    assert result.debug is True  # policy bit 19: a no-debug policy must reject this guest
    assert result.tcb_status is None
    assert result.claims["signing_key"] == "VCEK"
    assert result.claims["product"] == "Milan"
    assert result.claims["certificate_product_name"] == "Milan-B0"
    assert result.claims["smt"] is True
    assert result.claims["migrate_ma"] is False
    assert result.claims["current_firmware"] == "1.49.3"
    assert result.claims["platform_info"] == 1
    assert result.claims["family_id"] == "00" * 16
    assert result.claims["image_id"] == "00" * 16
    assert result.chain[0].startswith("CN=SEV-VCEK,")
    assert result.chain[1].startswith("CN=SEV-Milan,")
    assert result.chain[2].startswith("CN=ARK-Milan,")
    assert result.chain[-1] == roots.AMD_ARK_MILAN
    assert result.evidence_digest == (
        "sha256:377e6241d3b373ab1df80c0f96978594e7e21f4797dd6ea95e2957e1c1e26060"
    )
    json.dumps(result.to_json())  # claims are JSON values


def test_vcek_as_pem_and_explicit_product_give_the_same_result() -> None:
    pem = load(vcek_der()).public_bytes(Encoding.PEM)
    a = sev_snp.verify_report(vcek_report(), endorsement=pem, now=NOW, product="Milan")
    b = sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW)
    assert a == b


def test_loading_a_serial_zero_certificate_emits_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW)


def test_milan_vlek_sample_is_valid_inside_its_validity() -> None:
    result = sev_snp.verify_report(vlek_report(), endorsement=vlek_der(), now=NOW)
    assert result.measurements["measurement"] == VLEK_MEASUREMENT
    assert result.measurements["report_id"] == VLEK_REPORT_ID
    assert result.measurements["chip_id"] == "00" * 64  # VLEK reports carry no chip id
    assert result.report_data.hex() == VLEK_REPORT_DATA
    assert result.numbers["version"] == 3
    assert result.numbers["vmpl"] == 1
    assert result.numbers["policy"] == 0x30000
    assert (
        result.numbers["tcb_bootloader"],
        result.numbers["tcb_tee"],
        result.numbers["tcb_snp"],
        result.numbers["tcb_microcode"],
    ) == (4, 0, 24, 217)
    assert result.debug is False
    assert result.claims["signing_key"] == "VLEK"
    assert result.claims["cpuid"] == "19 01 01"
    assert result.claims["current_firmware"] == "1.55.29"
    assert result.claims["platform_info"] == 0x27
    assert result.chain[1].startswith("CN=SEV-VLEK-Milan,")
    assert result.chain[-1] == roots.AMD_ARK_MILAN


def test_milan_vlek_is_rejected_once_the_vlek_has_expired() -> None:
    with pytest.raises(CertificateChainError, match=r"SEV-VLEK certificate has expired") as e:
        sev_snp.verify_report(vlek_report(), endorsement=vlek_der(), now=AFTER_VLEK_EXPIRY)
    assert "2025-12-10" in e.value.message


def test_genoa_report_verifies_against_the_genoa_chain() -> None:
    report, vcek = genoa_report_and_vcek()
    result = sev_snp.verify_report(report, endorsement=vcek, now=NOW)
    assert result.claims["product"] == "Genoa"
    assert result.claims["cpuid"] == "19 11 01"
    assert result.chain[1].startswith("CN=SEV-Genoa,")
    assert result.chain[-1] == roots.AMD_ARK_GENOA
    assert result.measurements["measurement"] == GENOA_MEASUREMENT
    assert (result.numbers["tcb_bootloader"], result.numbers["tcb_snp"]) == (10, 23)
    assert result.numbers["tcb_microcode"] == 84
    assert result.numbers["policy"] == 0x3001F
    assert sev_snp.verify_report(report, endorsement=vcek, now=NOW, product="Genoa") == result


def test_genoa_report_with_the_milan_chain_is_refused_by_cpuid() -> None:
    report, vcek = genoa_report_and_vcek()
    with pytest.raises(CertificateChainError, match=r"CPUID .* is Genoa.* chain is Milan"):
        sev_snp.verify_report(report, endorsement=vcek, now=NOW, product="Milan")


# -- chains and pinning ----------------------------------------------------------------


def test_turin_ark_is_pinned_self_signed_and_signs_its_ask() -> None:
    ask, ark = roots.amd_chain("Turin")
    assert roots.fingerprint(ark) == roots.AMD_ARK_TURIN
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    for cert in (ark, ask):
        key = ark.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, pss, hashes.SHA384())


def test_milan_vcek_does_not_verify_against_the_turin_chain() -> None:
    with pytest.raises(CertificateChainError, match="not by the ASK"):
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW, product="Turin")
    turin_ask, turin_ark = roots.amd_chain("Turin")
    with pytest.raises(CertificateChainError):
        sev_snp.verify_amd_chain(load(vcek_der()), turin_ask, turin_ark, product="Turin", now=NOW)


def test_milan_chain_is_not_accepted_as_the_turin_root() -> None:
    ask, ark = roots.amd_chain("Milan")
    with pytest.raises(CertificateChainError, match="not the pinned AMD ARK-Turin"):
        sev_snp.verify_amd_chain(load(vcek_der()), ask, ark, product="Turin", now=NOW)


def test_genoa_chain_for_a_milan_vcek_is_refused() -> None:
    with pytest.raises(CertificateChainError, match=r"SEV-Milan.*not by the ASK"):
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW, product="Genoa")


def test_unknown_product_and_non_milan_vlek_are_refused() -> None:
    with pytest.raises(CertificateChainError, match="no pinned AMD root"):
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=NOW, product="Venice")
    # A version 2 header hides the CPUID, so the chain choice itself is what refuses.
    v2 = bytearray(vlek_report())
    v2[0:4] = (2).to_bytes(4, "little")
    with pytest.raises(CertificateChainError, match="only the Milan ASVK"):
        sev_snp.verify_report(bytes(v2), endorsement=vlek_der(), now=NOW, product="Genoa")


@pytest.mark.parametrize(
    ("when", "pattern"),
    [
        (datetime(2022, 1, 1, tzinfo=UTC), r"SEV-VCEK certificate is not yet valid"),
        (datetime(2030, 1, 1, tzinfo=UTC), r"SEV-VCEK certificate has expired"),
        (datetime(2046, 1, 1, tzinfo=UTC), r"ARK-Milan certificate has expired"),
        (datetime(2020, 1, 1, tzinfo=UTC), r"ARK-Milan certificate is not yet valid"),
    ],
)
def test_certificates_outside_their_validity_are_refused(when: datetime, pattern: str) -> None:
    with pytest.raises(CertificateChainError, match=pattern):
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=when)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=datetime(2025, 6, 1))


# -- a self-made chain: everything right except the root ----------------------------


class ForgedChain:
    """An ARK/ASK/VCEK chain with AMD's names and extensions but our own keys,
    and the Milan VCEK report re-signed with the forged VCEK key."""

    def __init__(self) -> None:
        real_ask, real_ark = roots.amd_chain("Milan")
        real_vcek = load(vcek_der())
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
        start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        ca = x509.BasicConstraints(ca=True, path_length=None)

        def builder(subject: x509.Name, issuer: x509.Name, key: object) -> x509.CertificateBuilder:
            assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
            return (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
            )

        self.ark = (
            builder(real_ark.subject, real_ark.subject, ark_key.public_key())
            .add_extension(ca, critical=True)
            .sign(ark_key, hashes.SHA384(), rsa_padding=pss)
        )
        self.ask = (
            builder(real_ask.subject, real_ark.subject, ask_key.public_key())
            .add_extension(ca, critical=True)
            .sign(ark_key, hashes.SHA384(), rsa_padding=pss)
        )
        vcek = builder(real_vcek.subject, real_ask.subject, self.vcek_key.public_key())
        for ext in real_vcek.extensions:
            vcek = vcek.add_extension(ext.value, critical=ext.critical)
        self.vcek = vcek.sign(ask_key, hashes.SHA384(), rsa_padding=pss)
        self.vcek_der = self.vcek.public_bytes(Encoding.DER)

        report = bytearray(vcek_report())
        der_sig = self.vcek_key.sign(bytes(report[:0x2A0]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der_sig)
        report[0x2A0:0x2E8] = r.to_bytes(72, "little")
        report[0x2E8:0x330] = s.to_bytes(72, "little")
        self.report = bytes(report)


@pytest.fixture(scope="module")
def forged() -> ForgedChain:
    return ForgedChain()


def test_forged_chain_is_well_formed_and_only_the_pin_stops_it(
    forged: ForgedChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Control: with the forged ARK pinned, the forgery verifies ...
    monkeypatch.setitem(roots.AMD_ARKS, "Milan", roots.fingerprint(forged.ark))
    monkeypatch.setattr(roots, "amd_chain", lambda product: (forged.ask, forged.ark))
    ok = sev_snp.verify_report(forged.report, endorsement=forged.vcek_der, now=NOW)
    assert ok.measurements["measurement"] == MILAN_MEASUREMENT
    monkeypatch.undo()
    # ... and against the real pinned roots it does not.
    with pytest.raises(CertificateChainError, match="does not verify with the ASK"):
        sev_snp.verify_report(forged.report, endorsement=forged.vcek_der, now=NOW)


def test_forged_root_is_not_the_pinned_ark(forged: ForgedChain) -> None:
    with pytest.raises(CertificateChainError, match="is not the pinned AMD ARK-Milan"):
        sev_snp.verify_amd_chain(forged.vcek, forged.ask, forged.ark, product="Milan", now=NOW)


def test_real_vcek_report_does_not_verify_with_the_forged_vcek(forged: ForgedChain) -> None:
    with pytest.raises(CertificateChainError):
        sev_snp.verify_report(vcek_report(), endorsement=forged.vcek_der, now=NOW)


# -- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "field"),
    [
        (0x2A0, "signature r"),
        (0x2E7, "signature r, last byte"),
        (0x2E8, "signature s"),
        (0x90, "measurement"),
        (0xBF, "measurement, last byte"),
        (0x50, "report_data"),
        (0x8F, "report_data, last byte"),
        (0x08, "policy (ABI minor)"),
        (0x0A, "policy (SMT bit)"),
        (0x0A, "policy (debug bit)"),
        (0x30, "vmpl"),
        (0xC0, "host_data"),
        (0x140, "report_id"),
        (0x1F0, "launch_tcb"),
    ],
)
def test_flipped_signed_byte_breaks_the_report_signature(offset: int, field: str) -> None:
    mask = 0x08 if field == "policy (debug bit)" else 0x01
    # (Flipping r's top byte pushes r above the P-384 order: "malformed", same class.)
    with pytest.raises(EvidenceSignatureError, match="SEV-SNP report signature"):
        sev_snp.verify_report(flip(vcek_report(), offset, mask), endorsement=vcek_der(), now=NOW)


def test_flipped_vlek_report_byte_breaks_its_signature() -> None:
    with pytest.raises(EvidenceSignatureError, match="VLEK key"):
        sev_snp.verify_report(flip(vlek_report(), 0x90), endorsement=vlek_der(), now=NOW)


def test_out_of_range_signature_is_refused_as_malformed() -> None:
    report = bytearray(vcek_report())
    report[0x2A0:0x2E8] = b"\xff" * 72
    with pytest.raises(EvidenceSignatureError, match=r"outside 1 .. n-1"):
        sev_snp.verify_report(bytes(report), endorsement=vcek_der(), now=NOW)


def test_unsigned_reports_are_refused() -> None:
    unsigned = flip(vcek_report(), 0x48, 7 << 2)  # signing key selector 7
    with pytest.raises(EvidenceSignatureError, match="selector 7"):
        sev_snp.verify_report(unsigned, endorsement=vcek_der(), now=NOW)
    masked = flip(vcek_report(), 0x48, 0x02)  # MASK_CHIP_KEY
    with pytest.raises(EvidenceSignatureError, match="MASK_CHIP_KEY"):
        sev_snp.verify_report(masked, endorsement=vcek_der(), now=NOW)


@pytest.mark.parametrize(
    ("offset", "what"),
    [
        (848, "signature value"),
        (1359, "signature value, last byte"),
        (707, "TBS: hwID extension"),
        (392 + 10, "TBS: public key"),
        (200, "TBS: subject"),
    ],
)
def test_flipped_vcek_certificate_byte_breaks_the_chain(offset: int, what: str) -> None:
    with pytest.raises(CertificateChainError):
        sev_snp.verify_report(vcek_report(), endorsement=flip(vcek_der(), offset), now=NOW)


def test_edited_unsigned_pss_parameters_are_refused() -> None:
    # Byte 837 is the salt length in the certificate's outer (unsigned) AlgorithmIdentifier.
    assert vcek_der()[835:838] == bytes.fromhex("020130")
    with pytest.raises(CertificateChainError, match="outer signatureAlgorithm differs"):
        sev_snp.verify_report(vcek_report(), endorsement=flip(vcek_der(), 837, 0x02), now=NOW)


def test_flipped_vcek_signature_names_the_ask() -> None:
    with pytest.raises(CertificateChainError, match="SEV-VCEK certificate's signature does not"):
        sev_snp.verify_report(vcek_report(), endorsement=flip(vcek_der(), 900), now=NOW)


def test_garbage_endorsement_is_a_chain_error() -> None:
    with pytest.raises(CertificateChainError, match="cannot be parsed"):
        sev_snp.verify_report(vcek_report(), endorsement=b"not a certificate", now=NOW)


# -- certificate ↔ report -------------------------------------------------------------


def test_vcek_of_another_chip_is_refused_by_chip_id() -> None:
    other = azure_milan_vcek()  # a real Milan VCEK, valid chain, another chip and TCB
    with pytest.raises(CertificateChainError, match="VCEK does not match the report's chip id"):
        sev_snp.verify_report(vcek_report(), endorsement=other, now=NOW)


def test_modified_chip_id_is_refused_before_the_signature() -> None:
    with pytest.raises(CertificateChainError, match="chip id"):
        sev_snp.verify_report(flip(vcek_report(), 0x1A0), endorsement=vcek_der(), now=NOW)


@pytest.mark.parametrize(
    ("offset", "component"),
    [(0x180, "bootloader"), (0x181, "tee"), (0x186, "snp"), (0x187, "microcode")],
)
def test_modified_reported_tcb_is_refused_with_the_component(offset: int, component: str) -> None:
    report = flip(vcek_report(), offset)
    with pytest.raises(CertificateChainError, match=rf"reported TCB .*{component}") as e:
        sev_snp.verify_report(report, endorsement=vcek_der(), now=NOW)
    assert "VCEK does not match" in e.value.message


def test_vlek_certificate_with_a_vcek_report_is_refused() -> None:
    with pytest.raises(CertificateChainError, match=r"signed by the VCEK .* 'SEV-VLEK'"):
        sev_snp.verify_report(vcek_report(), endorsement=vlek_der(), now=NOW)
    with pytest.raises(CertificateChainError, match=r"signed by the VLEK .* 'SEV-VCEK'"):
        sev_snp.verify_report(vlek_report(), endorsement=vcek_der(), now=NOW)


def test_vlek_tcb_mismatch_is_refused() -> None:
    with pytest.raises(CertificateChainError, match="VLEK does not match the report's reported"):
        sev_snp.verify_report(flip(vlek_report(), 0x186), endorsement=vlek_der(), now=NOW)


# -- parsing --------------------------------------------------------------------------------


def test_parse_report_fields_v2_and_v3() -> None:
    v2 = sev_snp.parse_report(vcek_report())
    assert v2.version == 2
    assert v2.cpuid_family is None
    assert v2.signing_key == sev_snp.SIGNING_KEY_VCEK
    assert v2.reported_tcb.fmc is None
    assert (v2.reported_tcb.bootloader, v2.reported_tcb.snp) == (2, 5)
    assert v2.signature_algo == 1
    assert v2.current_version == (1, 49, 3)
    assert v2.launch_mit_vector is None
    v3 = sev_snp.parse_report(vlek_report())
    assert (v3.cpuid_family, v3.cpuid_model, v3.cpuid_stepping) == (0x19, 0x01, 0x01)
    assert v3.cpuid_product == "Milan"
    assert v3.signing_key == sev_snp.SIGNING_KEY_VLEK
    assert v3.flags == 0x4
    assert v3.signed_bytes == vlek_report()[:0x2A0]


def test_parse_report_v5_mitigation_vectors_and_turin_tcb_layout() -> None:
    data = bytearray(vlek_report())
    data[0:4] = (5).to_bytes(4, "little")
    data[0x188] = 0x1A  # Turin family: FMC, bootloader, TEE, SNP, 3 reserved, microcode
    data[0x180:0x188] = bytes([7, 4, 1, 24, 0, 0, 0, 219])
    data[0x1F8:0x200] = (0x11).to_bytes(8, "little")
    data[0x200:0x208] = (0x13).to_bytes(8, "little")
    parsed = sev_snp.parse_report(bytes(data))
    assert parsed.cpuid_product == "Turin"
    assert parsed.reported_tcb == sev_snp.TcbVersion(
        raw=int.from_bytes(bytes([7, 4, 1, 24, 0, 0, 0, 219]), "little"),
        bootloader=4,
        tee=1,
        snp=24,
        microcode=219,
        fmc=7,
    )
    assert (parsed.launch_mit_vector, parsed.current_mit_vector) == (0x11, 0x13)


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, "Milan"),
        (0x19, 0x11, "Genoa"),
        (0x19, 0xA0, "Genoa"),
        (0x1A, 0x02, "Turin"),
        (0x1A, 0x11, "Turin"),
        (0x19, 0x30, None),
        (0x17, 0x31, None),
    ],
)
def test_product_from_cpuid(family: int, model: int, product: str | None) -> None:
    assert sev_snp.product_from_cpuid(family, model) == product


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0x00, 1, "version"),
        (0x00, 6, "version"),
        (0x34, 2, "signature_algo"),
        (0x34, 0, "signature_algo"),
        (0x48, 3 << 2, "signing key selector 3"),
    ],
)
def test_parse_report_rejects_what_it_cannot_interpret(offset: int, value: int, field: str) -> None:
    data = bytearray(vcek_report())
    data[offset : offset + 4] = value.to_bytes(4, "little")
    with pytest.raises(EvidenceFormatError, match=field):
        sev_snp.parse_report(bytes(data))


def test_every_truncation_and_extension_of_the_report_is_a_format_error() -> None:
    report = vcek_report()
    for n in range(len(report)):
        with pytest.raises(EvidenceFormatError, match=rf"size is {n} bytes"):
            sev_snp.verify_report(report[:n], endorsement=vcek_der(), now=NOW)
    with pytest.raises(EvidenceFormatError, match="size is 1185 bytes"):
        sev_snp.verify_report(report + b"\0", endorsement=vcek_der(), now=NOW)


def test_every_truncation_of_the_vcek_is_a_chain_error() -> None:
    der = vcek_der()
    for n in range(len(der)):
        with pytest.raises(CertificateChainError):
            sev_snp.verify_report(vcek_report(), endorsement=der[:n], now=NOW)


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.binary(max_size=1300))
def test_random_reports_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        sev_snp.verify_report(data, endorsement=vcek_der(), now=NOW)


@_SETTINGS
@given(st.binary(min_size=1184, max_size=1184))
def test_random_full_size_reports_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        sev_snp.verify_report(data, endorsement=vcek_der(), now=NOW)


@_SETTINGS
@given(
    st.dictionaries(st.integers(0, 0x32F), st.integers(1, 255), min_size=1, max_size=8),
    st.booleans(),
)
def test_mutated_signed_reports_raise_only_attestation_errors(
    edits: dict[int, int], vlek: bool
) -> None:
    report = bytearray(vlek_report() if vlek else vcek_report())
    for offset, mask in edits.items():
        report[offset] ^= mask
    cert = vlek_der() if vlek else vcek_der()
    # Every mutation lies in the signed bytes or the signature: all must fail.
    with pytest.raises(AttestationError):
        sev_snp.verify_report(bytes(report), endorsement=cert, now=NOW)


# cryptography warns (UserWarning) about malformed name attributes in damaged certificates.
@pytest.mark.filterwarnings("ignore:Attribute's length")
@_SETTINGS
@given(st.dictionaries(st.integers(0, 1359), st.integers(1, 255), min_size=1, max_size=4))
def test_mutated_vcek_certificates_raise_only_attestation_errors(edits: dict[int, int]) -> None:
    der = bytearray(vcek_der())
    for offset, mask in edits.items():
        der[offset] ^= mask
    # TBS and signature are signed; the outer AlgorithmIdentifier must repeat the signed one.
    with pytest.raises(CertificateChainError):
        sev_snp.verify_report(vcek_report(), endorsement=bytes(der), now=NOW)


@_SETTINGS
@given(st.binary(max_size=2000))
def test_random_endorsements_raise_only_chain_errors(data: bytes) -> None:
    with pytest.raises(CertificateChainError):
        sev_snp.verify_report(vcek_report(), endorsement=data, now=NOW)


def test_time_window_edges_are_inclusive() -> None:
    vcek = load(vcek_der())
    start = vcek.not_valid_before_utc
    sev_snp.verify_report(vcek_report(), endorsement=vcek_der(), now=start)
    with pytest.raises(CertificateChainError, match="not yet valid"):
        sev_snp.verify_report(
            vcek_report(), endorsement=vcek_der(), now=start - timedelta(seconds=1)
        )
