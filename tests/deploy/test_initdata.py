"""Init-data for Confidential Containers pods: the document, its digest and the
values TDX MRCONFIGID / SNP HOSTDATA bind, and the annotation encoding.

The digest vectors were computed with coreutils (sha256sum, sha384sum,
sha512sum) over the documents written out below, independently of this code.
The register rule (cut or zero-pad to 48 bytes for TDX, 32 for SNP) is Kata's
``adjust_digest`` in its initdata module.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import subprocess
import tomllib

import pytest

from nestor.attestation.initdata import (
    ALGORITHMS,
    ANNOTATION,
    CONTRACT_ANNOTATION,
    DEFAULT_AGENT_POLICY,
    MAX_DOCUMENT_BYTES,
    NESTOR_ENTRY,
    POLICY_ENTRY,
    Platform,
    build_initdata,
    decode_annotation,
    encode_annotation,
    fit_to_register,
    parse_initdata,
    render_document,
)
from nestor.errors import ConfigurationError, ProtocolError

ZERO = "sha256:" + "0" * 64
OTHER = "sha256:" + "ab" * 32


def vector_document(algorithm: str) -> str:
    return (
        f'algorithm = "{algorithm}"\n'
        'version = "0.1.0"\n'
        "\n"
        "[data]\n"
        "\"nestor.toml\" = '''\n"
        f'contract_digest = "{ZERO}"\n'
        "'''\n"
    )


VECTORS = {
    "sha256": "afc69b9d2aa1fb7d994eed09f5bb3bc3c6f1be45350390314e8c987d68c5a5c9",
    "sha384": "b75b2bc2b7f365723186190aa8a0a31a4029bced34fbd32e"
    "7223bf1872ad8a1e87aabfc4cd4466442f9b5d4171329cda",
    "sha512": "505385d4cf3a0a88ee87f823f9f0b4271863c540793c5b04d933e344d92b5cb8"
    "fe4a5a42fc883208f702557481b022ed61724a099691e130ef1e48854bd555c3",
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_document_layout_and_digest_vectors(algorithm: str) -> None:
    initdata = build_initdata(ZERO, algorithm=algorithm, agent_policy=None)
    assert initdata.document == vector_document(algorithm)
    digest = bytes.fromhex(VECTORS[algorithm])
    assert initdata.digest() == digest
    # TDX: 48 bytes; sha256 is zero-padded, sha384 fits, sha512 is cut.
    tdx = initdata.register_value(Platform.tdx)
    assert len(tdx) == 48
    assert tdx == (digest + bytes(48))[:48]
    # SNP: 32 bytes; anything longer than sha256 is cut.
    assert initdata.register_value(Platform.snp) == digest[:32]


def test_sha256_mrconfigid_is_digest_then_sixteen_zero_bytes() -> None:
    tdx = build_initdata(ZERO, agent_policy=None).register_value(Platform.tdx)
    assert tdx.hex() == VECTORS["sha256"] + "00" * 16


def test_fit_to_register_follows_kata() -> None:
    assert fit_to_register(b"\xaa" * 64, 48) == b"\xaa" * 48
    assert fit_to_register(b"\xbb" * 32, 64) == b"\xbb" * 32 + bytes(32)
    assert fit_to_register(b"\xcc" * 32, 32) == b"\xcc" * 32


def test_annotation_round_trip_and_content() -> None:
    initdata = build_initdata(OTHER)
    value = initdata.annotation()
    assert value.isascii()
    document = decode_annotation(value)
    assert document == initdata.document
    parsed = parse_initdata(document)
    assert parsed.contract_digest == OTHER
    assert parsed.algorithm == "sha256"
    assert parsed.entries == initdata.entries
    assert parsed.digest() == initdata.digest()
    # The document is plain TOML a guest parses: Nestor's entry and the policy.
    top = tomllib.loads(document)
    assert top["version"] == "0.1.0"
    assert tomllib.loads(top["data"][NESTOR_ENTRY]) == {"contract_digest": OTHER}
    assert top["data"][POLICY_ENTRY] == DEFAULT_AGENT_POLICY
    assert initdata.pod_annotations() == {ANNOTATION: value, CONTRACT_ANNOTATION: OTHER}


def test_annotation_is_standard_gzip_that_system_tools_read() -> None:
    gunzip = shutil.which("gzip")
    assert gunzip, "gzip is not installed"
    initdata = build_initdata(OTHER)
    raw = base64.b64decode(initdata.annotation(), validate=True)
    proc = subprocess.run([gunzip, "-dc"], input=raw, capture_output=True, check=True)
    assert proc.stdout.decode() == initdata.document


def test_output_is_deterministic() -> None:
    a, b = build_initdata(OTHER), build_initdata(OTHER)
    assert a.document == b.document
    assert a.annotation() == b.annotation()
    # gzip mtime is zero: nothing time-dependent in the header.
    assert base64.b64decode(a.annotation())[4:8] == b"\0\0\0\0"


def test_each_input_changes_the_digest() -> None:
    base = build_initdata(ZERO)
    assert build_initdata(OTHER).digest() != base.digest()
    assert build_initdata(ZERO, agent_policy=None).digest() != base.digest()
    assert build_initdata(ZERO, algorithm="sha384").digest()[:32] != base.digest()
    policy = DEFAULT_AGENT_POLICY.replace(
        "ExecProcessRequest := false", "ExecProcessRequest := true"
    )
    assert build_initdata(ZERO, agent_policy=policy).digest() != base.digest()


def test_whitespace_in_annotation_is_ignored_like_kata() -> None:
    value = build_initdata(OTHER).annotation()
    wrapped = "\n".join(value[i : i + 60] for i in range(0, len(value), 60))
    assert decode_annotation(wrapped + "\n") == decode_annotation(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not base64!", "not standard base64"),
        (base64.b64encode(b"plain text, not gzip").decode(), "not gzip"),
        (base64.b64encode(gzip.compress(b"x" * 1000)[:-12]).decode(), "truncated"),
        (base64.b64encode(gzip.compress(b"\xff\xfe")).decode(), "not UTF-8"),
        (
            base64.b64encode(gzip.compress(b" " * (MAX_DOCUMENT_BYTES + 1))).decode(),
            "larger than",
        ),
    ],
)
def test_bad_annotations_are_refused(value: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        decode_annotation(value)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("algorithm = ", "not TOML"),
        ('algorithm = "sha256"\nversion = "0.2.0"\n[data]\n', "version"),
        ('algorithm = "md5"\nversion = "0.1.0"\n[data]\n', "algorithm"),
        ('algorithm = "sha256"\nversion = "0.1.0"\nextra = 1\n[data]\n', "unknown fields"),
        ('algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"aa.toml" = "x"\n', "no 'nestor.toml'"),
        ('algorithm = "sha256"\nversion = "0.1.0"\n[data]\nk = 1\n', "map names to strings"),
        (
            'algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"nestor.toml" = "digest = 1"\n',
            "no valid contract_digest",
        ),
    ],
)
def test_bad_documents_are_refused(document: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        parse_initdata(document)


def test_builder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ConfigurationError, match="not a contract digest"):
        build_initdata("sha256:ABC")
    with pytest.raises(ConfigurationError, match="not supported"):
        build_initdata(ZERO, algorithm="md5")
    with pytest.raises(ConfigurationError, match="cannot hold"):
        build_initdata(ZERO, agent_policy="package x\n'''\n")
    with pytest.raises(ConfigurationError, match="plain file name"):
        render_document("sha256", {"../x": "y\n"})
    with pytest.raises(ConfigurationError, match="limited to"):
        encode_annotation("x" * (MAX_DOCUMENT_BYTES + 1))
