"""Intel SGX/TDX DCAP quotes through dcap-qvl: the real samples in
../shared/attestation-samples at the fixed times their READMEs give, every
kind of tampering the verifier must catch (each with its own error type and
message), malformed and random input, and the collateral cache with a local
PCS-style server (no network)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import string
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestor.attestation import intel, roots
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

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "attestation-samples"
if not (SAMPLES / "intel-tdx").is_dir() or not (SAMPLES / "intel-sgx").is_dir():
    pytest.skip(
        f"the real attestation samples are not at {SAMPLES} (they live in shared/ beside "
        "the repository)",
        allow_module_level=True,
    )

TDX_QUOTE = (SAMPLES / "intel-tdx" / "tdx_quote").read_bytes()
TDX_COLLATERAL = (SAMPLES / "intel-tdx" / "tdx_quote_collateral.json").read_bytes()
TDX5_QUOTE = (SAMPLES / "intel-tdx" / "tdx_quote_outdated").read_bytes()
TDX5_COLLATERAL = (SAMPLES / "intel-tdx" / "tdx_quote_outdated_collateral.json").read_bytes()
SGX_QUOTE = (SAMPLES / "intel-sgx" / "sgx_quote").read_bytes()
SGX_COLLATERAL = (SAMPLES / "intel-sgx" / "sgx_quote_collateral.json").read_bytes()


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# Fixed times and windows from the READMEs.
TDX_NOW = at(1751328000)  # 2025-07-01T00:00:00Z
TDX_WINDOW = (1750329147, 1752919235)
TDX5_NOW = at(1772668800)  # 2026-03-05T00:00:00Z
SGX_NOW = at(1751328000)
SGX_WINDOW = (1750330571, 1752919278)
DAY = timedelta(days=1)

# Offsets in the quotes (48-byte header; SGX body 384 bytes, TD report 1.0 584
# bytes; then u32 signature data length, the 64-byte quote signature, the
# 64-byte attestation key).
HEADER = 48
SGX_BODY = HEADER
TDX_BODY = HEADER
SGX_SIG = HEADER + 384 + 4
TDX_SIG = HEADER + 584 + 4

ZERO48 = "00" * 48
INTEL_ROOT_SUBJECT = "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX Root CA"


def verify_tdx(quote: bytes = TDX_QUOTE, *, now: datetime = TDX_NOW) -> AttestationResult:
    return intel.verify_quote(quote, TDX_COLLATERAL, now=now)


def verify_sgx(quote: bytes = SGX_QUOTE, *, now: datetime = SGX_NOW) -> AttestationResult:
    return intel.verify_quote(quote, SGX_COLLATERAL, now=now)


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


# -- the samples verify as their READMEs say ------------------------------------------


def test_tdx_v4_sample_is_valid_and_up_to_date() -> None:
    r = verify_tdx()
    assert r.platform is Platform.TDX
    assert r.tcb_status == "UpToDate"
    assert r.advisory_ids == ()
    assert r.debug is False
    m = r.measurements
    assert m["mrtd"] == (
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
        "de03ae6dc5f87f27428b2538873118b7"
    )
    assert m["rtmr0"] == (
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c"
        "48aca29b220b80b6a540cf994b9bc9c0"
    )
    assert m["rtmr1"] == (
        "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7"
        "aea8c323c173019b3093d54e579e9378"
    )
    assert m["rtmr2"] == (
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3"
        "ba80b70870d7330733642e01d48c3132"
    )
    assert m["rtmr3"] == ZERO48
    assert m["mrseam"] == (
        "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c43"
        "6489d6c8e4f92f160b7cad34207b00c1"
    )
    assert m["mrconfigid"] == m["mrowner"] == m["mrownerconfig"] == ZERO48
    assert set(m) == {
        "mrtd",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "mrconfigid",
        "mrowner",
        "mrownerconfig",
        "mrseam",
    }
    assert r.report_data == bytes.fromhex(
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
        "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    )
    assert r.numbers == {}
    assert r.verified_at == TDX_NOW
    assert r.evidence_digest == (
        "sha256:c42f9164325024bca2757bc8819b11879a0a369132ea4e2b7c85df4805ea72db"
    )
    c = r.claims
    assert c["fmspc"] == "b0c06f000000"
    assert c["pck_ca"] == "platform"
    assert c["quote_version"] == 4
    assert c["report_body"] == "TD10"
    assert c["tee_tcb_svn"] == "06010300000000000000000000000000"
    assert c["td_attributes"] == "0000001000000000"
    assert c["xfam"] == "e702060000000000"
    assert c["tcb_evaluation_data_number"] == 17
    assert c["collateral_valid_from"] == "2025-06-19T10:32:27Z"
    assert c["collateral_valid_until"] == "2025-07-19T10:00:35Z"
    assert r.chain == (
        "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX PCK Certificate",
        "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX PCK Platform CA",
        INTEL_ROOT_SUBJECT,
        roots.INTEL_SGX_ROOT_CA,
    )
    json.dumps(r.to_json())  # the result is serialisable as a whole


def test_tdx_v5_outdated_sample_has_no_matching_tcb_level() -> None:
    with pytest.raises(TcbError, match="No matching TCB level") as info:
        intel.verify_quote(TDX5_QUOTE, TDX5_COLLATERAL, now=TDX5_NOW)
    assert "TDX quote rejected" in info.value.message


def test_sgx_sample_is_valid_with_configuration_and_sw_hardening_needed() -> None:
    r = verify_sgx()
    assert r.platform is Platform.SGX
    assert r.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert r.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert r.measurements == {
        "mrenclave": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        "mrsigner": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
    }
    assert r.numbers == {"isv_prod_id": 0, "isv_svn": 0}
    assert r.report_data == b"Hello, world!" + bytes(51)
    assert r.debug is False
    assert r.claims["attributes"] == "0500000000000000e700000000000000"
    assert r.claims["cpu_svn"] == "0b0b1a18ffff04000000000000000000"
    assert r.claims["fmspc"] == "00a067110000"
    assert r.claims["pck_ca"] == "processor"
    assert r.claims["platform_tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert r.claims["qe_tcb_status"] == "UpToDate"
    assert r.claims["collateral_valid_from"] == "2025-06-19T10:56:11Z"
    assert r.claims["collateral_valid_until"] == "2025-07-19T10:01:18Z"
    assert r.chain[1].endswith("CN=Intel SGX PCK Processor CA")
    assert r.chain[-2:] == (INTEL_ROOT_SUBJECT, roots.INTEL_SGX_ROOT_CA)
    assert r.evidence_digest == (
        "sha256:f8b81014b6e443609746822194910f5dc1c92c322fa0584298d1e33e505ca3b5"
    )


def test_collateral_may_be_given_parsed() -> None:
    parsed = json.loads(TDX_COLLATERAL)
    assert intel.verify_quote(TDX_QUOTE, parsed, now=TDX_NOW) == verify_tdx()


def test_load_collateral_returns_the_file_unchanged(tmp_path: Path) -> None:
    assert intel.load_collateral(SAMPLES / "intel-sgx" / "sgx_quote_collateral.json") == (
        SGX_COLLATERAL
    )
    with pytest.raises(CollateralError, match="cannot read the collateral file"):
        intel.load_collateral(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(CollateralError, match="JSON object"):
        intel.load_collateral(bad)


def test_verification_time_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        intel.verify_quote(TDX_QUOTE, TDX_COLLATERAL, now=datetime(2025, 7, 1))


# -- platform detection and the header ----------------------------------------------


def test_detect_and_parse_header() -> None:
    assert intel.detect(TDX_QUOTE) is Platform.TDX
    assert intel.detect(TDX5_QUOTE) is Platform.TDX
    assert intel.detect(SGX_QUOTE) is Platform.SGX
    assert intel.detect(b"") is None
    assert intel.detect(b"\x00" * 47) is None
    assert intel.detect(b"\x02\x00" + SGX_QUOTE[2:]) is None  # version 2
    assert intel.detect(TDX_QUOTE[:4] + b"\x82\x00\x00\x00" + TDX_QUOTE[8:]) is None

    h = intel.parse_quote_header(TDX_QUOTE)
    assert (h.version, h.tee_type, h.attestation_key_type) == (4, intel.TEE_TYPE_TDX, 2)
    assert h.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert (h.body_type, h.body_size) == (2, 584)
    assert h.declared_length == 4936  # the sample carries 70 bytes of zero padding
    h5 = intel.parse_quote_header(TDX5_QUOTE)
    assert (h5.version, h5.body_type, h5.body_size, h5.declared_length) == (5, 3, 648, 5006)
    hs = intel.parse_quote_header(SGX_QUOTE)
    assert (hs.version, hs.tee_type, hs.qe_svn, hs.pce_svn) == (3, intel.TEE_TYPE_SGX, 10, 15)
    assert hs.declared_length == len(SGX_QUOTE)


def test_v5_body_descriptor_must_be_consistent() -> None:
    bad = TDX5_QUOTE[:48] + struct.pack("<HI", 3, 584) + TDX5_QUOTE[54:]
    with pytest.raises(EvidenceFormatError, match="body type 3 with size 584"):
        intel.parse_quote_header(bad)
    sgx_body_in_tdx = TDX5_QUOTE[:48] + struct.pack("<HI", 1, 384) + TDX5_QUOTE[54:]
    with pytest.raises(EvidenceFormatError, match="does not fit TEE type"):
        intel.parse_quote_header(sgx_body_in_tdx)


# -- tampering with the quote --------------------------------------------------------

SIGNATURE_CASES = [
    # (quote, offset, what, expected dcap-qvl reason)
    ("tdx", TDX_BODY + 200, "report body (MRTD)", "ISV enclave report signature is invalid"),
    ("tdx", TDX_BODY + 584 - 1, "report_data", "ISV enclave report signature is invalid"),
    ("tdx", 8, "header (QE SVN)", "ISV enclave report signature is invalid"),
    ("tdx", TDX_SIG + 10, "quote signature", "ISV enclave report signature is invalid"),
    ("tdx", TDX_SIG + 64 + 5, "attestation key", "QE report hash mismatch"),
    ("tdx", TDX_SIG + 128 + 6 + 100, "QE report", "Signature is invalid for qe_report"),
    ("tdx", TDX_SIG + 128 + 6 + 384 + 3, "QE report signature", "invalid for qe_report"),
    ("sgx", SGX_BODY + 64, "report body (MRENCLAVE)", "ISV enclave report signature is invalid"),
    ("sgx", SGX_BODY + 320, "report_data", "ISV enclave report signature is invalid"),
    ("sgx", SGX_SIG + 63, "quote signature", "ISV enclave report signature is invalid"),
    ("sgx", SGX_SIG + 64 + 63, "attestation key", "QE report hash mismatch"),
]


@pytest.mark.parametrize(
    ("which", "offset", "what", "reason"), SIGNATURE_CASES, ids=[c[2] for c in SIGNATURE_CASES]
)
def test_a_flipped_byte_in_signed_data_breaks_a_signature(
    which: str, offset: int, what: str, reason: str
) -> None:
    verify = verify_tdx if which == "tdx" else verify_sgx
    quote = TDX_QUOTE if which == "tdx" else SGX_QUOTE
    with pytest.raises(EvidenceSignatureError, match=reason):
        verify(flip(quote, offset))


def test_every_byte_of_the_sgx_report_body_is_covered_by_the_signature() -> None:
    for offset in range(SGX_BODY, SGX_BODY + 384):
        with pytest.raises(EvidenceSignatureError, match="ISV enclave report signature"):
            verify_sgx(flip(SGX_QUOTE, offset, 0x80))


@pytest.mark.parametrize(
    ("offset", "error", "reason"),
    [
        (0, EvidenceFormatError, "version"),
        (2, EvidenceFormatError, "attestation key type"),
        (12, EvidenceFormatError, "Unknown QE vendor ID"),
    ],
)
def test_header_fields_dcap_qvl_refuses(
    offset: int, error: type[AttestationError], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        verify_tdx(flip(TDX_QUOTE, offset, 0x04))


B64 = string.ascii_letters + string.digits + "+/"


def _pem_blocks(quote: bytes) -> list[tuple[int, int]]:
    """(start of base64 body, start of END line) of each PEM certificate in the quote."""
    begin, end = b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----"
    blocks, pos = [], 0
    while (start := quote.find(begin, pos)) != -1:
        stop = quote.index(end, start)
        blocks.append((start + len(begin), stop))
        pos = stop
    return blocks


def _swap_b64(quote: bytes, offset: int) -> bytes:
    """Replace one base64 character: the PEM stays well-formed, one DER byte changes."""
    char = chr(quote[offset])
    assert char in B64, (offset, char)
    out = bytearray(quote)
    out[offset] = ord("A" if char != "A" else "B")
    return bytes(out)


@pytest.mark.parametrize(
    ("which", "position", "reason"),
    [
        ("tdx", -60, "InvalidSignatureForPublicKey"),  # in the leaf's signature
        ("tdx", 400, "InvalidSignatureForPublicKey"),  # in the leaf's to-be-signed part
        ("tdx", 128, "UnknownIssuer"),  # in the leaf's issuer name
        ("sgx", -60, "InvalidSignatureForPublicKey"),
    ],
)
def test_a_flipped_byte_in_the_pck_certificate_breaks_the_chain(
    which: str, position: int, reason: str
) -> None:
    quote = TDX_QUOTE if which == "tdx" else SGX_QUOTE
    body, end = _pem_blocks(quote)[0]
    offset = end + position if position < 0 else body + position
    verify = verify_tdx if which == "tdx" else verify_sgx
    with pytest.raises(CertificateChainError, match=reason) as info:
        verify(_swap_b64(quote, offset))
    assert "certificate chain does not verify" in info.value.message


def test_a_broken_pem_in_the_quote_is_a_chain_error() -> None:
    body, _ = _pem_blocks(TDX_QUOTE)[0]
    broken = bytearray(TDX_QUOTE)
    broken[body + 10] = ord("*")
    with pytest.raises(CertificateChainError, match="Failed to extract PCK certificates"):
        verify_tdx(bytes(broken))


def test_the_root_copy_in_the_quote_must_be_the_pinned_root() -> None:
    """dcap-qvl ignores the root certificate the quote carries (the anchor is the
    pinned one); Nestor still refuses a quote whose copy is not that root."""
    _, end = _pem_blocks(TDX_QUOTE)[2]
    with pytest.raises(CertificateChainError, match=roots.INTEL_SGX_ROOT_CA):
        verify_tdx(_swap_b64(TDX_QUOTE, end - 60))


# -- the pinned root ---------------------------------------------------------------


def _self_made_root() -> tuple[str, str]:
    """A P-256 CA with the Intel root's name: (PEM, SHA-256 fingerprint)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2018, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2049, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), roots.fingerprint(cert)


def _replace_root(chain: str, new_root: str) -> str:
    marker = "-----BEGIN CERTIFICATE-----"
    return chain[: chain.rindex(marker)] + new_root


@pytest.mark.parametrize(
    "fields",
    [
        ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"),
        ("tcb_info_issuer_chain",),
        ("qe_identity_issuer_chain",),
    ],
)
def test_a_self_made_root_in_the_collateral_is_refused(fields: tuple[str, ...]) -> None:
    root_pem, fake = _self_made_root()
    collateral = json.loads(TDX_COLLATERAL)
    for name in fields:
        collateral[name] = _replace_root(collateral[name], root_pem)
    with pytest.raises(CertificateChainError) as info:
        intel.verify_quote(TDX_QUOTE, collateral, now=TDX_NOW)
    message = info.value.message
    assert roots.INTEL_SGX_ROOT_CA in message
    assert fake in message
    assert fields[0] in message


def test_an_altered_intel_root_in_the_collateral_is_refused() -> None:
    collateral = json.loads(SGX_COLLATERAL)
    chain = collateral["tcb_info_issuer_chain"]
    root = x509.load_pem_x509_certificates(chain.encode())[-1]
    der = bytearray(root.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature: still parses, another fingerprint
    altered = x509.load_der_x509_certificate(bytes(der))
    collateral["tcb_info_issuer_chain"] = _replace_root(
        chain, altered.public_bytes(serialization.Encoding.PEM).decode()
    )
    with pytest.raises(CertificateChainError, match="not the pinned Intel SGX Root CA") as info:
        intel.verify_quote(SGX_QUOTE, collateral, now=SGX_NOW)
    assert roots.fingerprint(altered) in info.value.message


# -- time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "now", "reason"),
    [
        ("tdx", at(TDX_WINDOW[1]) + DAY, "TCBInfo expired"),
        ("tdx", at(TDX_WINDOW[0]) - DAY, "TCBInfo issue date is in the future"),
        ("tdx", at(TDX_WINDOW[0]) - timedelta(seconds=1), "QE Identity issue date"),
        ("tdx", at(TDX_WINDOW[1]), "CrlExpired"),  # the window's end is exclusive
        ("tdx", datetime(2026, 11, 1, tzinfo=UTC), "CrlExpired"),  # "the real clock"
        ("sgx", at(SGX_WINDOW[1]) + DAY, "TCBInfo expired"),
        ("sgx", at(SGX_WINDOW[1] + 1), "QE Identity expired"),
        ("sgx", at(SGX_WINDOW[0]) - DAY, "TCBInfo issue date is in the future"),
    ],
)
def test_outside_the_collateral_window_is_a_collateral_error(
    which: str, now: datetime, reason: str
) -> None:
    verify = verify_tdx if which == "tdx" else verify_sgx
    with pytest.raises(CollateralError, match=reason):
        verify(now=now)


def test_the_window_start_is_inclusive() -> None:
    assert verify_tdx(now=at(TDX_WINDOW[0])).tcb_status == "UpToDate"
    assert verify_sgx(now=at(SGX_WINDOW[0])).tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verify_sgx(now=at(SGX_WINDOW[1])).tcb_status == "ConfigurationAndSWHardeningNeeded"


# -- collateral that does not fit ----------------------------------------------------


def test_sgx_collateral_does_not_verify_a_tdx_quote_nor_the_reverse() -> None:
    with pytest.raises(CollateralError, match="QE version 2 \\(expected TD_QE"):
        intel.verify_quote(TDX_QUOTE, SGX_COLLATERAL, now=TDX_NOW)
    with pytest.raises(CollateralError, match="TD_QE version 2 \\(expected QE"):
        intel.verify_quote(SGX_QUOTE, TDX_COLLATERAL, now=SGX_NOW)


def test_collateral_of_another_fmspc_is_refused() -> None:
    with pytest.raises(CollateralError, match="Fmspc mismatch"):
        intel.verify_quote(TDX_QUOTE, TDX5_COLLATERAL, now=TDX5_NOW)


@pytest.mark.parametrize(
    ("field", "edit", "reason"),
    [
        (
            "tcb_info",
            lambda v: v.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'),
            "Signature is invalid for tcb_info",
        ),
        (
            "qe_identity",
            lambda v: v.replace('"isvprodid":2', '"isvprodid":3'),
            "Signature is invalid for qe_identity",
        ),
        (
            "tcb_info_signature",
            lambda v: ("1" if v[0] == "0" else "0") + v[1:],
            "Signature is invalid for tcb_info",
        ),
        ("tcb_info_signature", lambda v: v[:-2], "64 bytes"),
        ("pck_crl", lambda v: json.loads(SGX_COLLATERAL)["pck_crl"], "UnknownRevocationStatus"),
        ("root_ca_crl", lambda v: v[:-2] + ("00" if v[-2:] != "00" else "01"), "InvalidCrl"),
        ("root_ca_crl", lambda v: "zz" + v, "hex-encoded DER CRL"),
        ("tcb_info", lambda v: "{", "tcb_info is not JSON"),
        ("tcb_info", lambda v: v.replace('"nextUpdate"', '"nextUpdat"'), "no valid nextUpdate"),
        ("pck_crl_issuer_chain", lambda v: "not pem", "not a PEM certificate chain"),
    ],
)
def test_tampered_or_malformed_collateral_is_a_collateral_error(
    field: str, edit: Any, reason: str
) -> None:
    collateral = json.loads(TDX_COLLATERAL)
    collateral[field] = edit(collateral[field])
    assert collateral != json.loads(TDX_COLLATERAL)
    with pytest.raises(CollateralError, match=reason):
        intel.verify_quote(TDX_QUOTE, collateral, now=TDX_NOW)


@pytest.mark.parametrize(
    ("collateral", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "lacks the dcap-qvl QuoteCollateralV3 field"),
        (b"[" * 100_000, "not JSON"),
        ({"tcb_info": object()}, "not JSON data"),
    ],
)
def test_collateral_that_is_not_collateral(collateral: Any, reason: str) -> None:
    with pytest.raises(CollateralError, match=reason):
        intel.verify_quote(TDX_QUOTE, collateral, now=TDX_NOW)


def test_a_pck_chain_in_the_collateral_must_be_the_quotes_own() -> None:
    body, _ = _pem_blocks(TDX_QUOTE)[0]
    own = TDX_QUOTE[body - 28 : intel.parse_quote_header(TDX_QUOTE).declared_length].rstrip(b"\x00")
    collateral = json.loads(TDX_COLLATERAL)
    collateral["pck_certificate_chain"] = own.decode()
    assert intel.verify_quote(TDX_QUOTE, collateral, now=TDX_NOW).tcb_status == "UpToDate"

    sgx_body, _ = _pem_blocks(SGX_QUOTE)[0]
    collateral["pck_certificate_chain"] = SGX_QUOTE[sgx_body - 28 :].decode().rstrip("\x00")
    with pytest.raises(CertificateChainError, match="different from the one in the quote"):
        intel.verify_quote(TDX_QUOTE, collateral, now=TDX_NOW)


# -- truncation, padding, random and mutated input ------------------------------------


@pytest.mark.parametrize("which", ["tdx", "tdx5", "sgx"])
def test_every_truncation_is_a_format_error(which: str) -> None:
    quote, collateral, now = {
        "tdx": (TDX_QUOTE, TDX_COLLATERAL, TDX_NOW),
        "tdx5": (TDX5_QUOTE, TDX5_COLLATERAL, TDX5_NOW),
        "sgx": (SGX_QUOTE, SGX_COLLATERAL, SGX_NOW),
    }[which]
    end = intel.parse_quote_header(quote).declared_length
    assert end is not None
    for length in range(end):
        with pytest.raises(EvidenceFormatError):
            intel.verify_quote(quote[:length], collateral, now=now)


def test_zero_padding_after_the_quote_is_accepted_other_trailing_bytes_are_not() -> None:
    end = intel.parse_quote_header(TDX_QUOTE).declared_length
    assert end == 4936
    assert not TDX_QUOTE[end:].strip(b"\x00")
    assert verify_tdx(TDX_QUOTE[:end]).measurements == verify_tdx().measurements
    assert verify_sgx(SGX_QUOTE + bytes(100)).tcb_status == "ConfigurationAndSWHardeningNeeded"
    with pytest.raises(EvidenceFormatError, match="not zero padding"):
        verify_sgx(SGX_QUOTE + b"\x00\x01")
    with pytest.raises(EvidenceFormatError, match="not zero padding"):
        verify_tdx(flip(TDX_QUOTE, len(TDX_QUOTE) - 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_random_bytes_are_refused_as_evidence(data: bytes) -> None:
    with pytest.raises(AttestationError):
        intel.verify_quote(data, TDX_COLLATERAL, now=TDX_NOW)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([TDX_QUOTE[:48], TDX5_QUOTE[:54], SGX_QUOTE[:48]]),
    st.binary(max_size=6000),
)
def test_random_bytes_behind_a_valid_header_are_refused(header: bytes, rest: bytes) -> None:
    with pytest.raises(AttestationError):
        intel.verify_quote(header + rest, TDX_COLLATERAL, now=TDX_NOW)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    which = draw(st.sampled_from(["tdx", "sgx"]))
    quote = bytearray(TDX_QUOTE if which == "tdx" else SGX_QUOTE)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        pos = draw(st.integers(0, len(quote) - 1))
        if kind == "replace":
            quote[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            quote[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del quote[pos : pos + draw(st.integers(1, 8))]
    return which, bytes(quote)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_quotes_fail_only_with_attestation_errors(case: tuple[str, bytes]) -> None:
    which, quote = case
    verify = verify_tdx if which == "tdx" else verify_sgx
    try:
        result = verify(quote)
    except AttestationError:
        return
    # A mutation can land in bytes nothing relies on (padding, a PEM line break);
    # then the verified content must be the original's.
    original = verify()
    assert result.measurements == original.measurements
    assert result.report_data == original.report_data
    assert result.tcb_status == original.tcb_status


@pytest.mark.parametrize("which", ["tdx", "sgx"])
def test_single_bit_flips_map_to_a_specific_error(which: str) -> None:
    """Every dcap-qvl failure a one-bit change provokes is mapped to a step-specific
    subclass, never the generic AttestationError (an unmapped dcap-qvl message)."""
    quote = TDX_QUOTE if which == "tdx" else SGX_QUOTE
    verify = verify_tdx if which == "tdx" else verify_sgx
    original = verify()
    seen: dict[type[AttestationError], int] = {}
    unmapped: list[tuple[int, str]] = []
    for offset in range(0, len(quote), 3):
        try:
            result = verify(flip(quote, offset))
        except AttestationError as exc:
            seen[type(exc)] = seen.get(type(exc), 0) + 1
            if type(exc) is AttestationError:
                unmapped.append((offset, exc.message))
        else:
            assert result.measurements == original.measurements, offset
            assert result.report_data == original.report_data, offset
    assert unmapped == []
    assert {EvidenceFormatError, EvidenceSignatureError, CertificateChainError} <= set(seen)


# -- dcap-qvl failures are always typed ------------------------------------------------


class _PanicException(BaseException):
    """Stands in for pyo3's PanicException (a BaseException, raised on a Rust panic)."""


_PanicException.__name__ = "PanicException"


class _Exploding:
    def __init__(self, real: Any, exc: BaseException) -> None:
        self._real, self._exc = real, exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def verify_with_root_ca(self, *args: Any) -> Any:
        raise self._exc


@pytest.mark.parametrize(
    "exc", [_PanicException("index out of bounds"), TypeError("boom"), OverflowError("big")]
)
def test_any_dcap_qvl_failure_becomes_an_attestation_error(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    monkeypatch.setattr(intel, "_qvl", _Exploding(intel._qvl, exc))
    with pytest.raises(AttestationError, match="TDX quote rejected by dcap-qvl"):
        verify_tdx()


def test_interrupts_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intel, "_qvl", _Exploding(intel._qvl, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        verify_tdx()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Verification failed: TCBInfo expired", CollateralError),
        ("Verification failed: QE Identity issue date is in the future", CollateralError),
        ("Verification failed: TCB status is invalid: Revoked", TcbError),
        (
            "Verification failed: QE ISVSVN 3 is below minimum required 4 from QE Identity",
            TcbError,
        ),
        (
            "Verification failed: TDX module TCB level check\n\nCaused by:\n    TDX module "
            "ISVSVN 1 is below minimum required from TDX module TCB levels",
            TcbError,
        ),
        ("Verification failed: QE MRSIGNER mismatch: expected AA, got BB", EvidenceSignatureError),
        ("Verification failed: Debug mode is enabled", EvidenceFormatError),
        ("Verification failed: SEPT_VE_DISABLE is not enabled", EvidenceFormatError),
        (
            "Verification failed: Failed to verify certificate chain\n\nCaused by:\n    "
            "CertRevoked",
            CertificateChainError,
        ),
        (
            "Verification failed: Failed to verify certificate chain\n\nCaused by:\n    "
            "CertExpired { time: UnixTime(1751328000), not_after: UnixTime(1751327000) }",
            CertificateChainError,
        ),
        (
            "Verification failed: Failed to extract PCK certificates from quote\n\nCaused by:"
            '\n    0: Failed to parse certs\n    1: mismatching BEGIN ("CRL Debug") and END '
            '("CERTIFICATE") tags',
            CertificateChainError,
        ),
    ],
)
def test_dcap_qvl_reasons_map_to_the_failed_step(
    message: str, error: type[AttestationError]
) -> None:
    mapped = intel._map_failure(message, "TDX")
    assert type(mapped) is error
    assert "\n" not in mapped.message
    assert "Verification failed" not in mapped.message


def test_unix_times_in_dcap_qvl_reasons_are_shown_as_dates() -> None:
    mapped = intel._map_failure(
        "Verification failed: CrlExpired { time: UnixTime(1790000000), next_update: "
        "UnixTime(1775215317) }",
        "TDX",
    )
    assert isinstance(mapped, CollateralError)
    assert "next_update: 2026-04-03T11:21:57Z" in mapped.message


def test_td_report_15_fields_are_flattened() -> None:
    body = {"base": {"mr_td": "aa", "report_data": "bb"}, "tee_tcb_svn2": "cc"}
    assert intel._flatten(body) == {"mr_td": "aa", "report_data": "bb", "tee_tcb_svn2": "cc"}
    nested = {"base": body, "vmid": 0}
    assert intel._flatten(nested)["tee_tcb_svn2"] == "cc"


# -- collateral source: cache, offline mode, a local PCS ------------------------------


def test_cache_key_is_tee_ca_and_fmspc() -> None:
    assert intel.collateral_cache_key(TDX_QUOTE) == "tdx-platform-b0c06f000000"
    assert intel.collateral_cache_key(TDX5_QUOTE) == "tdx-platform-90c06f000000"
    assert intel.collateral_cache_key(SGX_QUOTE) == "sgx-processor-00a067110000"
    with pytest.raises(EvidenceFormatError):
        intel.collateral_cache_key(b"\x00" * 10)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """dcap-qvl's HTTP client honours proxy variables; these tests talk to 127.0.0.1 only."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def unreachable() -> str:
    """A URL on 127.0.0.1 where nothing listens: any fetch fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_offline_cache_hit_returns_the_cached_bytes(tmp_path: Path, unreachable: str) -> None:
    (tmp_path / "tdx-platform-b0c06f000000.json").write_bytes(TDX_COLLATERAL)
    got = intel.get_collateral(TDX_QUOTE, pccs_url=unreachable, cache_dir=tmp_path, offline=True)
    assert got == TDX_COLLATERAL
    assert verify_tdx().tcb_status == intel.verify_quote(TDX_QUOTE, got, now=TDX_NOW).tcb_status


def test_offline_cache_miss_names_the_fmspc(tmp_path: Path, unreachable: str) -> None:
    (tmp_path / "tdx-platform-b0c06f000000.json").write_bytes(TDX_COLLATERAL)
    with pytest.raises(
        CollateralError, match="offline: no cached collateral for FMSPC 00A067110000"
    ):
        intel.get_collateral(SGX_QUOTE, pccs_url=unreachable, cache_dir=tmp_path, offline=True)


def test_online_a_fresh_cache_entry_is_used_without_fetching(
    tmp_path: Path, unreachable: str
) -> None:
    (tmp_path / "sgx-processor-00a067110000.json").write_bytes(SGX_COLLATERAL)
    source = intel.CollateralSource(pccs_url=unreachable, cache_dir=tmp_path)
    assert source.get(SGX_QUOTE, now=SGX_NOW) == SGX_COLLATERAL
    with pytest.raises(CollateralError, match="cannot fetch collateral for FMSPC 00A067110000"):
        source.get(SGX_QUOTE, now=SGX_NOW + 30 * DAY)  # stale: refetch, which fails here


def test_a_pccs_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        intel.CollateralSource(pccs_url="file:///etc/passwd", cache_dir=tmp_path)


class _Pcs:
    """A PCS/PCCS v4 look-alike serving one sample's collateral, on 127.0.0.1."""

    def __init__(self, collateral: bytes) -> None:
        self.collateral: dict[str, str] = json.loads(collateral)
        self.requests: list[str] = []
        self.fail = False
        pcs = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pcs.requests.append(self.path)
                status, headers, body = pcs.respond(urllib.parse.urlsplit(self.path).path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        c, quote = self.collateral, urllib.parse.quote
        if self.fail:
            return 503, {}, b"unavailable"
        if path == "/sgx/certification/v4/pckcrl":
            headers = {"SGX-PCK-CRL-Issuer-Chain": quote(c["pck_crl_issuer_chain"])}
            return 200, headers, bytes.fromhex(c["pck_crl"])
        if path.endswith("/certification/v4/tcb"):
            body = f'{{"tcbInfo":{c["tcb_info"]},"signature":"{c["tcb_info_signature"]}"}}'
            return 200, {"TCB-Info-Issuer-Chain": quote(c["tcb_info_issuer_chain"])}, body.encode()
        if path.endswith("/certification/v4/qe/identity"):
            body = (
                f'{{"enclaveIdentity":{c["qe_identity"]},'
                f'"signature":"{c["qe_identity_signature"]}"}}'
            )
            headers = {"SGX-Enclave-Identity-Issuer-Chain": quote(c["qe_identity_issuer_chain"])}
            return 200, headers, body.encode()
        if path == "/sgx/certification/v4/rootcacrl":
            return 200, {}, c["root_ca_crl"].encode()  # PCCS serves it hex-encoded
        return 404, {}, b"not found"


@pytest.fixture
def pcs() -> Iterator[_Pcs]:
    server = _Pcs(TDX_COLLATERAL)
    thread = threading.Thread(
        target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


def test_fetch_from_a_local_pcs_then_serve_from_the_cache(pcs: _Pcs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fetched = intel.get_collateral(TDX_QUOTE, pccs_url=pcs.url, cache_dir=cache, offline=False)
    assert sorted(p.split("?")[0] for p in pcs.requests) == [
        "/sgx/certification/v4/pckcrl",
        "/sgx/certification/v4/rootcacrl",
        "/tdx/certification/v4/qe/identity",
        "/tdx/certification/v4/tcb",
    ]
    assert any("fmspc=B0C06F000000" in p for p in pcs.requests)
    assert any("ca=platform" in p for p in pcs.requests)
    stored = json.loads(fetched)
    expected = json.loads(TDX_COLLATERAL)
    assert "pck_certificate_chain" not in stored  # one machine's chain is not cached per FMSPC
    assert stored == expected
    assert (cache / "tdx-platform-b0c06f000000.json").read_bytes() == fetched
    assert intel.verify_quote(TDX_QUOTE, fetched, now=TDX_NOW) == verify_tdx()

    pcs.requests.clear()
    again = intel.get_collateral(TDX_QUOTE, pccs_url=pcs.url, cache_dir=cache, offline=True)
    assert again == fetched
    assert pcs.requests == []


def test_online_a_stale_cache_entry_is_refetched(pcs: _Pcs, tmp_path: Path) -> None:
    path = tmp_path / "tdx-platform-b0c06f000000.json"
    path.write_bytes(TDX_COLLATERAL)
    source = intel.CollateralSource(pccs_url=pcs.url + "/", cache_dir=tmp_path)
    assert source.get(TDX_QUOTE, now=TDX_NOW) == TDX_COLLATERAL
    assert pcs.requests == []
    refreshed = source.get(TDX_QUOTE)  # the clock: long after the sample's window
    assert len(pcs.requests) == 4
    assert json.loads(refreshed) == json.loads(TDX_COLLATERAL)


def test_a_failing_pcs_is_a_collateral_error_and_leaves_no_cache(pcs: _Pcs, tmp_path: Path) -> None:
    pcs.fail = True
    with pytest.raises(CollateralError, match="HTTP 503") as info:
        intel.get_collateral(TDX_QUOTE, pccs_url=pcs.url, cache_dir=tmp_path, offline=False)
    assert "FMSPC B0C06F000000" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_collateral_with_a_foreign_root_is_not_cached(pcs: _Pcs, tmp_path: Path) -> None:
    root_pem, _ = _self_made_root()
    pcs.collateral["qe_identity_issuer_chain"] = _replace_root(
        pcs.collateral["qe_identity_issuer_chain"], root_pem
    )
    with pytest.raises(CertificateChainError, match="qe_identity_issuer_chain"):
        intel.get_collateral(TDX_QUOTE, pccs_url=pcs.url, cache_dir=tmp_path, offline=False)
    assert list(tmp_path.iterdir()) == []


def test_fetching_works_from_inside_an_event_loop(pcs: _Pcs, tmp_path: Path) -> None:
    async def inside() -> bytes:
        return intel.get_collateral(TDX_QUOTE, pccs_url=pcs.url, cache_dir=tmp_path, offline=False)

    assert json.loads(asyncio.run(inside())) == json.loads(TDX_COLLATERAL)


def test_sample_checksums_match_the_readme() -> None:
    """The expectations above are the READMEs'; make sure the files are theirs too."""
    digests = {
        "intel-tdx/tdx_quote": "c42f9164325024bca2757bc8819b11879a0a369132ea4e2b7c85df4805ea72db",
        "intel-tdx/tdx_quote_collateral.json": (
            "b0a5f5fd620a8881b1eda45261fdf30dd930b49aff93231556645c81fcb4c0bc"
        ),
        "intel-tdx/tdx_quote_outdated": (
            "4c453ea417a7863ed67c215fe4735d91e26f359c760e5984a277866d8d5758e9"
        ),
        "intel-tdx/tdx_quote_outdated_collateral.json": (
            "05e91466e56352166c15a73654147c3d95d6f4ffa62bd150c3c8cbb1d75c3b15"
        ),
        "intel-sgx/sgx_quote": "f8b81014b6e443609746822194910f5dc1c92c322fa0584298d1e33e505ca3b5",
        "intel-sgx/sgx_quote_collateral.json": (
            "bdd694bbe50f3a2a1cfe12f9e2bd83125921107a368edcf10780a5523b8501ce"
        ),
    }
    for name, digest in digests.items():
        assert hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest() == digest, name
