"""Azure confidential VM (SEV-SNP) vTPM evidence: both real evidence layouts,
and each broken link of the trust chain failing with its own error.

Samples: /work/shared/attestation-samples/azure-vtpm (README: nonces, PCR0,
measurements). The ASK/ARK are the bundled, pinned ones.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestor.attestation import azure_vtpm, roots
from nestor.attestation.result import Platform
from nestor.errors import (
    AttestationError,
    CertificateChainError,
    EvidenceBindingError,
    EvidenceFormatError,
    EvidenceSignatureError,
    NonceMismatchError,
)

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO.parent / "shared" / "attestation-samples" / "azure-vtpm"

pytestmark = pytest.mark.skipif(
    not AZURE.is_dir(), reason=f"real attestation samples not available at {AZURE}"
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)  # inside both VCEKs' validity (2025-01 .. 2032-01)

V2 = "az_snp_vtpm_evidence_v2_milan.json"
GENOA = "az_snp_vtpm_evidence_genoa.json"
NONCE = {
    V2: bytes.fromhex(
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9a"
        "a398f647caa2338748cd0fd9f5f819ef"
    ),
    GENOA: bytes.fromhex(
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938c"
        "a05475f8b46094de6b64270ea35d950f"
    ),
}
EXPECTED: dict[str, dict[str, Any]] = {
    V2: {
        "product": "Milan",
        "cpuid": "19 01 01",
        "tcb": (4, 0, 24, 219),
        "measurement": "5b0ce64ad1c1f6375dbda5f760b98526ca1bcf91b8195091afc28e7b024251d6"
        "8fe32e05af34048d6607678cd23283ff",
        "snp_report_data": "cf7cc0731c50f64876804b3943b2bfbd93dba69f5928e3df223e78ff34dd46ee",
        "pcr0": "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7",
        "pcr_digest": "2304510eb15046d5c940e957b6ac93bc805e3ffcadb38e0a1b95442e552cb004",
        "ark": roots.AMD_ARK_MILAN,
        "layout": "v2",
    },
    GENOA: {
        "product": "Genoa",
        "cpuid": "19 11 01",
        "tcb": (10, 0, 23, 84),
        "measurement": "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3"
        "706faf814c9e61065768a6ff917c89ae",
        "snp_report_data": "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f",
        "pcr0": "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338",
        "pcr_digest": "2b30a66d715a7801b86d7912b710838bd3bd8d9aeec7c7135563f938cf8b3399",
        "ark": roots.AMD_ARK_GENOA,
        "layout": "v0",
    },
}
VARIABLE_DATA_OFFSET = 32 + 1184 + 20


def raw(name: str) -> bytes:
    return (AZURE / name).read_bytes()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def edit(
    name: str,
    *,
    hcl: int | None = None,
    sig: int | None = None,
    msg: int | None = None,
    pcr: tuple[int, int] | None = None,
) -> bytes:
    """The evidence file with one byte flipped in the HCL report, the quote
    signature, the quote message, or PCR ``pcr[0]`` byte ``pcr[1]``."""
    obj = json.loads(raw(name))

    def flip(b: bytes, i: int) -> bytes:
        out = bytearray(b)
        out[i] ^= 0x01
        return bytes(out)

    if name == V2:
        q = obj["tpm_quote"]
        if hcl is not None:
            obj["hcl_report"] = b64url_encode(flip(b64url_decode(obj["hcl_report"]), hcl))
        if sig is not None:
            q["signature"] = flip(bytes.fromhex(q["signature"]), sig).hex()
        if msg is not None:
            q["message"] = flip(bytes.fromhex(q["message"]), msg).hex()
        if pcr is not None:
            q["pcrs"][pcr[0]] = flip(bytes.fromhex(q["pcrs"][pcr[0]]), pcr[1]).hex()
    else:
        q = obj["quote"]
        if hcl is not None:
            obj["report"] = list(flip(bytes(obj["report"]), hcl))
        if sig is not None:
            q["signature"] = list(flip(bytes(q["signature"]), sig))
        if msg is not None:
            q["message"] = list(flip(bytes(q["message"]), msg))
        if pcr is not None:
            q["pcrs"][pcr[0]] = list(flip(bytes(q["pcrs"][pcr[0]]), pcr[1]))
    return json.dumps(obj).encode()


BOTH = pytest.mark.parametrize("name", [V2, GENOA])


@BOTH
def test_real_evidence_is_valid_with_the_readme_values(name: str) -> None:
    exp = EXPECTED[name]
    result = azure_vtpm.verify_azure_evidence(raw(name), nonce=NONCE[name], now=NOW)
    assert result.platform is Platform.AZURE_SNP_VTPM
    assert result.report_data == NONCE[name]
    assert result.measurements["measurement"] == exp["measurement"]
    assert result.measurements["pcr0"] == exp["pcr0"]
    assert {f"pcr{i}" for i in range(24)} <= set(result.measurements)
    assert result.claims["tpm_pcr_digest"] == exp["pcr_digest"]
    assert result.claims["snp_report_data"] == exp["snp_report_data"] + "00" * 32
    assert result.claims["product"] == exp["product"]
    assert result.claims["cpuid"] == exp["cpuid"]
    assert result.claims["evidence_layout"] == exp["layout"]
    assert result.claims["signing_key"] == "VCEK"
    assert result.numbers["version"] == 3
    assert result.numbers["vmpl"] == 0
    assert result.numbers["policy"] == 0x3001F
    assert (
        result.numbers["tcb_bootloader"],
        result.numbers["tcb_tee"],
        result.numbers["tcb_snp"],
        result.numbers["tcb_microcode"],
    ) == exp["tcb"]
    assert result.debug is False
    assert result.tcb_status is None
    assert result.chain[-1] == exp["ark"]
    assert result.evidence_digest == "sha256:" + hashlib.sha256(raw(name)).hexdigest()
    config = result.claims["vm_configuration"]
    assert config["secure-boot"] is True
    assert config["tpm-enabled"] is True
    json.dumps(result.to_json())


def test_v2_runtime_claims() -> None:
    result = azure_vtpm.verify_azure_evidence(raw(V2), nonce=NONCE[V2], now=NOW)
    assert result.claims["vm_configuration"]["vmUniqueId"] == "7DF7B373-B947-4AAA-96E5-C358F2A03D20"
    assert result.claims["vm_configuration"]["console-enabled"] is True
    # trustee's v2 check: user-data is the nonce followed by 16 zero bytes
    assert result.claims["user_data"].lower() == NONCE[V2].hex() + "00" * 16


def test_genoa_runtime_claims() -> None:
    result = azure_vtpm.verify_azure_evidence(raw(GENOA), nonce=NONCE[GENOA], now=NOW)
    config = result.claims["vm_configuration"]
    assert config["root-cert-thumbprint"] == "6nZZnYaJc4KqUZ_yvA-mucFdYNouvlPnITnNMXsHl-0"
    assert result.claims["user_data"] == "0" * 128


# -- each link broken ---------------------------------------------------------------------


@BOTH
def test_wrong_nonce_is_refused(name: str) -> None:
    other = bytes(48)
    with pytest.raises(NonceMismatchError, match="another nonce"):
        azure_vtpm.verify_azure_evidence(raw(name), nonce=other, now=NOW)
    with pytest.raises(NonceMismatchError):  # the other file's nonce
        azure_vtpm.verify_azure_evidence(
            raw(name), nonce=NONCE[GENOA if name == V2 else V2], now=NOW
        )
    with pytest.raises(NonceMismatchError):  # a prefix of the right nonce
        azure_vtpm.verify_azure_evidence(raw(name), nonce=NONCE[name][:32], now=NOW)


@BOTH
@pytest.mark.parametrize("offset", [0, 10, 200, 1000])
def test_flipped_variable_data_byte_breaks_the_snp_binding(name: str, offset: int) -> None:
    evidence = edit(name, hcl=VARIABLE_DATA_OFFSET + offset)
    with pytest.raises(EvidenceBindingError, match=r"report_data\[0:32\] != SHA-256"):
        azure_vtpm.verify_azure_evidence(evidence, nonce=NONCE[name], now=NOW)


@BOTH
@pytest.mark.parametrize("offset", [0, 128, 255])
def test_flipped_tpm_signature_byte_breaks_the_quote_signature(name: str, offset: int) -> None:
    with pytest.raises(EvidenceSignatureError, match="TPM quote signature") as e:
        azure_vtpm.verify_azure_evidence(edit(name, sig=offset), nonce=NONCE[name], now=NOW)
    assert type(e.value) is EvidenceSignatureError


@BOTH
def test_flipped_quote_message_byte_breaks_the_quote_signature(name: str) -> None:
    # byte 40: inside extraData; checked by signature before it is compared with the nonce
    with pytest.raises(EvidenceSignatureError, match="TPM quote signature"):
        azure_vtpm.verify_azure_evidence(edit(name, msg=40), nonce=NONCE[name], now=NOW)


@BOTH
@pytest.mark.parametrize("index", [0, 7, 23])
def test_flipped_pcr_value_breaks_the_pcr_digest(name: str, index: int) -> None:
    evidence = edit(name, pcr=(index, 5))
    with pytest.raises(EvidenceBindingError, match="not the ones the TPM quote covers"):
        azure_vtpm.verify_azure_evidence(evidence, nonce=NONCE[name], now=NOW)


@BOTH
@pytest.mark.parametrize("offset", [32 + 0x90, 32 + 0x50, 32 + 0x2A0])
def test_flipped_snp_report_byte_breaks_the_report_signature(name: str, offset: int) -> None:
    with pytest.raises(EvidenceSignatureError, match="SEV-SNP report signature"):
        azure_vtpm.verify_azure_evidence(edit(name, hcl=offset), nonce=NONCE[name], now=NOW)


@BOTH
def test_vcek_outside_its_validity_is_refused(name: str) -> None:
    with pytest.raises(CertificateChainError, match="not yet valid"):
        azure_vtpm.verify_azure_evidence(
            raw(name), nonce=NONCE[name], now=datetime(2024, 6, 1, tzinfo=UTC)
        )


def test_swapped_vcek_is_refused() -> None:
    v2 = json.loads(raw(V2))
    genoa = json.loads(raw(GENOA))
    v2["vcek"] = b64url_encode(base64.b64decode("".join(genoa["vcek"].strip().splitlines()[1:-1])))
    with pytest.raises(CertificateChainError):
        azure_vtpm.verify_azure_evidence(json.dumps(v2).encode(), nonce=NONCE[V2], now=NOW)


# -- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("evidence", "pattern"),
    [
        (b"", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "not Azure vTPM evidence"),
        (b'{"version": 3}', "version 3 is not supported"),
        (b'{"version": true}', "version True is not supported"),
        (b'{"version": 2}', "has no 'tpm_quote'"),
        (b'{"a": 1, "a": 2}', "duplicate JSON key"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_evidence_is_a_format_error(evidence: bytes, pattern: str) -> None:
    with pytest.raises(EvidenceFormatError, match=pattern):
        azure_vtpm.verify_azure_evidence(evidence, nonce=b"n", now=NOW)


def test_bad_encodings_are_format_errors() -> None:
    obj = json.loads(raw(V2))
    obj["tpm_quote"]["message"] = obj["tpm_quote"]["message"] + "0"
    with pytest.raises(EvidenceFormatError, match="hex string"):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[V2], now=NOW)
    obj = json.loads(raw(V2))
    obj["hcl_report"] = obj["hcl_report"][:-3] + "+/="
    with pytest.raises(EvidenceFormatError, match="base64url"):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[V2], now=NOW)
    obj = json.loads(raw(GENOA))
    obj["report"][0] = 256
    with pytest.raises(EvidenceFormatError, match="byte values"):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[GENOA], now=NOW)
    obj = json.loads(raw(V2))
    obj["tpm_quote"]["pcrs"][3] = "00"
    with pytest.raises(EvidenceFormatError, match=r"pcrs\[3\] is 1 bytes"):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[V2], now=NOW)


def test_missing_pcr_values_are_a_format_error() -> None:
    obj = json.loads(raw(V2))
    obj["tpm_quote"]["pcrs"] = obj["tpm_quote"]["pcrs"][:23]
    with pytest.raises(EvidenceFormatError, match="selects PCR 23"):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[V2], now=NOW)


def test_hcl_header_checks() -> None:
    hcl = b64url_decode(json.loads(raw(V2))["hcl_report"])
    parsed = azure_vtpm.parse_hcl_report(hcl)
    assert parsed.snp_report == hcl[32:1216]
    assert parsed.hash_type == 1
    assert json.loads(parsed.variable_data)["keys"][0]["kid"] == "HCLAkPub"
    with pytest.raises(EvidenceFormatError, match="magic"):
        azure_vtpm.parse_hcl_report(b"XCLA" + hcl[4:])
    with pytest.raises(EvidenceFormatError, match="variable data size"):
        azure_vtpm.parse_hcl_report(hcl[: VARIABLE_DATA_OFFSET + 10])
    for n in range(VARIABLE_DATA_OFFSET):
        with pytest.raises(EvidenceFormatError):
            azure_vtpm.parse_hcl_report(hcl[:n])


def test_tpms_attest_fields() -> None:
    message = bytes.fromhex(json.loads(raw(V2))["tpm_quote"]["message"])
    quote = azure_vtpm.parse_tpms_attest(message)
    assert quote.extra_data == NONCE[V2]
    assert quote.selections == (azure_vtpm.PcrSelection(0x000B, tuple(range(24))),)
    assert quote.pcr_digest.hex() == EXPECTED[V2]["pcr_digest"]
    assert quote.qualified_signer[:2] == b"\x00\x0b"
    assert quote.safe is True
    assert quote.reset_count == 2


def test_tpms_attest_rejects_bad_magic_type_truncation_and_trailing_bytes() -> None:
    message = bytes.fromhex(json.loads(raw(V2))["tpm_quote"]["message"])
    with pytest.raises(EvidenceFormatError, match="magic"):
        azure_vtpm.parse_tpms_attest(b"\0" + message[1:])
    with pytest.raises(EvidenceFormatError, match="type is 0x8017"):
        azure_vtpm.parse_tpms_attest(message[:4] + b"\x80\x17" + message[6:])
    with pytest.raises(EvidenceFormatError, match="follow the pcrDigest"):
        azure_vtpm.parse_tpms_attest(message + b"\0")
    for n in range(len(message)):
        with pytest.raises(EvidenceFormatError, match="truncated"):
            azure_vtpm.parse_tpms_attest(message[:n])


def test_every_truncation_of_the_evidence_is_an_attestation_error() -> None:
    data = raw(V2).rstrip()  # (dropping only trailing whitespace leaves valid JSON)
    for n in range(len(data)):
        with pytest.raises(AttestationError):
            azure_vtpm.verify_azure_evidence(data[:n], nonce=NONCE[V2], now=NOW)


@pytest.mark.parametrize("nonce", [b"", bytes(65)])
def test_impossible_nonce_lengths_are_refused(nonce: bytes) -> None:
    with pytest.raises(NonceMismatchError, match="1 to 64 bytes"):
        azure_vtpm.verify_azure_evidence(raw(V2), nonce=nonce, now=NOW)


_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.binary(max_size=4000))
def test_random_bytes_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        azure_vtpm.verify_azure_evidence(data, nonce=NONCE[V2], now=NOW)


@_SETTINGS
@given(st.sampled_from([V2, GENOA]), st.data())
def test_mutated_evidence_text_raises_only_attestation_errors(
    name: str, data: st.DataObject
) -> None:
    text = bytearray(raw(name))
    edits = data.draw(
        st.dictionaries(st.integers(0, len(text) - 1), st.integers(1, 127), min_size=1, max_size=3)
    )
    for offset, mask in edits.items():
        text[offset] ^= mask
    # A change to JSON whitespace or to an unsigned, unused field may still verify.
    with contextlib.suppress(AttestationError):
        azure_vtpm.verify_azure_evidence(bytes(text), nonce=NONCE[name], now=NOW)


@_SETTINGS
@given(st.sampled_from([V2, GENOA]), st.integers(0, 2599), st.integers(1, 255))
def test_mutated_hcl_report_bytes_raise_only_attestation_errors(
    name: str, offset: int, mask: int
) -> None:
    obj = json.loads(raw(name))
    if name == V2:
        hcl = bytearray(b64url_decode(obj["hcl_report"]))
        hcl[offset] ^= mask
        obj["hcl_report"] = b64url_encode(bytes(hcl))
    else:
        obj["report"][offset] ^= mask
    # The HCL header and the padding after the variable data are not signed: those may verify.
    with contextlib.suppress(AttestationError):
        azure_vtpm.verify_azure_evidence(json.dumps(obj).encode(), nonce=NONCE[name], now=NOW)
