"""Tests for nestor.crypto.hpke.

Three layers:

* pyca/cryptography's HPKE against the official vectors in
  tests/vectors/hpke/ (RFC 9180 and draft-ietf-hpke-pq), plus a small
  reference implementation of the RFC 9180 key schedule and of both KEMs'
  shared-secret computation, itself checked against every intermediate value
  the vectors give;
* Nestor's wrapped-key format checked against that reference: a wrapped key
  built by hand from a vector's ``enc`` and ``shared_secret`` must open with
  the vector's private key, which pins the ``info`` construction, the empty
  AAD and sequence number 0;
* the failure modes: every way a wrapped key can be wrong raises
  WrappedKeyError, with a known message that never carries the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from nestor.crypto.hpke import (
    INFO_PREFIX,
    MAGIC,
    MAX_WRAPPED_PLAINTEXT,
    HpkePrivateKey,
    HybridPrivateKey,
    HybridPublicKey,
    Suite,
    WrappedKey,
    generate_private_key,
    open_key,
    public_key_from_raw,
    seal_key,
    suite_for_private_key,
    suite_for_public_key,
)
from nestor.errors import NestorError, WrappedKeyError

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "hpke"

X25519_SUITE = Suite.X25519_SHA256_AES256GCM
HYBRID_SUITE = Suite.MLKEM768X25519_SHA256_AES256GCM
ALL_SUITES = [X25519_SUITE, HYBRID_SUITE]

# The format, spelled out here rather than imported, so the tests pin it.
EXPECTED_MAGIC = b"NWK1"
EXPECTED_INFO_PREFIX = b"nestor/v1/key-wrap\x00"
HEADER_LEN = 12
TAG_LEN = 16
ENC_LEN = {X25519_SUITE: 32, HYBRID_SUITE: 1120}
# magic "NWK1" | kem_id | kdf_id | aead_id | enc_len (all big-endian u16)
HEADER = {
    X25519_SUITE: bytes.fromhex("4e574b310020000100020020"),
    HYBRID_SUITE: bytes.fromhex("4e574b31647a000100020460"),
}

# Messages (substrings) the module gives for each failure.
MSG_DOES_NOT_OPEN = "wrapped key does not open"
MSG_BAD_MAGIC = "not a Nestor wrapped key (bad magic)"
MSG_UNSUPPORTED = "unsupported HPKE suite"
MSG_ENC_LEN = "wrapped key encapsulation is"
MSG_SHORT = "shorter than its 12-byte header"
MSG_TRUNCATED = "wrapped key is truncated"
MSG_TOO_LARGE = "wrapped key is larger than any key Nestor wraps"
MSG_SUITE_MISMATCH = "but the private key is for"

Vector = dict[str, Any]
T = TypeVar("T")


# -- vector loading ---------------------------------------------------------


def _load(name: str) -> Vector:
    entries = cast(list[Vector], json.loads((VECTORS / name).read_text(encoding="utf-8")))
    assert len(entries) == 1, f"{name}: expected exactly one entry"
    return entries[0]


RFC9180 = _load("rfc9180-x25519-sha256-aes256gcm.json")
PQ = _load("mlkem768-x25519.json")


def _hex(vector: Vector | dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(cast(str, vector[name]))


def _ids(vector: Vector) -> tuple[int, int, int, int]:
    return (vector["mode"], vector["kem_id"], vector["kdf_id"], vector["aead_id"])


def _hybrid_key_from_seed(seed: bytes) -> HybridPrivateKey:
    """MLKEM768-X25519 DeriveKeyPair's expansion of the 32-byte private seed.

    SHAKE256(seed, 96) = d (32) || z (32) || sk_X25519 (32); (d, z) is the
    64-byte ML-KEM-768 seed of FIPS 203. This is X-Wing's key expansion,
    which draft-ietf-hpke-pq uses for MLKEM768-X25519.
    """
    assert len(seed) == 32
    expanded = hashlib.shake_256(seed).digest(96)
    return HybridPrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


RFC9180_SK = x25519.X25519PrivateKey.from_private_bytes(_hex(RFC9180, "skRm"))
PQ_SK = _hybrid_key_from_seed(_hex(PQ, "skRm"))


# -- a reference RFC 9180 key schedule (HKDF-SHA256 only) -------------------


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract(salt, IKM) = HMAC-Hash(salt, IKM); an empty salt is Nh zeros.
    labeled_ikm = b"HPKE-v1" + suite_id + label + ikm
    return hmac.new(salt or bytes(32), labeled_ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def _hpke_suite_id(kem_id: int, kdf_id: int, aead_id: int) -> bytes:
    return b"HPKE" + struct.pack(">HHH", kem_id, kdf_id, aead_id)


@dataclass(frozen=True)
class Schedule:
    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes
    suite_id: bytes

    def nonce(self, seq: int) -> bytes:
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq.to_bytes(12, "big"), strict=True))

    def export(self, context: bytes, length: int) -> bytes:
        return _labeled_expand(self.suite_id, self.exporter_secret, b"sec", context, length)


def _key_schedule_base(
    kem_id: int, kdf_id: int, aead_id: int, shared: bytes, info: bytes
) -> Schedule:
    """RFC 9180 section 5.1, mode_base (psk = psk_id = ""), HKDF-SHA256."""
    assert kdf_id == 0x0001
    nk = {0x0001: 16, 0x0002: 32, 0x0003: 32}[aead_id]
    sid = _hpke_suite_id(kem_id, kdf_id, aead_id)
    psk_id_hash = _labeled_extract(sid, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(sid, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(sid, shared, b"secret", b"")
    return Schedule(
        key_schedule_context=context,
        secret=secret,
        key=_labeled_expand(sid, secret, b"key", context, nk),
        base_nonce=_labeled_expand(sid, secret, b"base_nonce", context, 12),
        exporter_secret=_labeled_expand(sid, secret, b"exp", context, 32),
        suite_id=sid,
    )


def _dhkem_x25519_decap(sk: x25519.X25519PrivateKey, enc: bytes) -> bytes:
    """RFC 9180 section 4.1 Decap for DHKEM(X25519, HKDF-SHA256)."""
    kem_suite_id = b"KEM" + struct.pack(">H", 0x0020)
    dh = sk.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + sk.public_key().public_bytes_raw()
    eae_prk = _labeled_extract(kem_suite_id, b"", b"eae_prk", dh)
    return _labeled_expand(kem_suite_id, eae_prk, b"shared_secret", kem_context, 32)


def _mlkem768_x25519_decap(sk: HybridPrivateKey, enc: bytes) -> bytes:
    """MLKEM768-X25519 Decap: enc = ct_MLKEM (1088) || ct_X25519 (32).

    shared = SHA3-256(ss_M || ss_X || ct_X || pk_X || "\\.//^\\") (X-Wing).
    """
    assert len(enc) == 1120
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = sk.mlkem.decapsulate(ct_m)
    ss_x = sk.x25519.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = sk.x25519.public_key().public_bytes_raw()
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + b"\\.//^\\").digest()


def _reference_wrapped_key(
    suite: Suite, enc: bytes, shared: bytes, context: bytes, secret: bytes
) -> bytes:
    """A Nestor wrapped key built without nestor.crypto.hpke or pyca's HPKE."""
    schedule = _key_schedule_base(*suite.value, shared, EXPECTED_INFO_PREFIX + context)
    ct = AESGCM(schedule.key).encrypt(schedule.nonce(0), secret, b"")
    header = EXPECTED_MAGIC + struct.pack(">HHHH", *suite.value, len(enc))
    return header + enc + ct


# -- helpers for the failure tests ------------------------------------------


def _assert_no_secret(err: BaseException, secret: bytes) -> None:
    """No string form of ``err`` (or what it was raised from) shows ``secret``."""
    needles = {secret.hex(), secret.hex().upper(), repr(secret)[2:-1]}
    if len(secret) >= 4:
        needles.add(secret.decode("latin-1"))
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts = [str(current), repr(current), *map(str, current.args)]
        if isinstance(current, NestorError):
            texts += [current.message, current.hint or "", current.diagnostics()]
        for text in texts:
            for needle in needles:
                assert needle not in text, f"secret leaked into {type(current).__name__}: {text!r}"
        current = current.__cause__ or current.__context__


def _expect(
    fn: Callable[[], object], substring: str, *, secret: bytes | None = None
) -> WrappedKeyError:
    """``fn()`` raises exactly WrappedKeyError whose message holds ``substring``.

    Any other exception type propagates out of ``pytest.raises`` and fails
    the test.
    """
    with pytest.raises(WrappedKeyError) as info:
        fn()
    err = info.value
    assert substring in err.message, f"{err.message!r} lacks {substring!r}"
    assert str(err) == err.message
    if secret is not None:
        _assert_no_secret(err, secret)
    return err


def _open_bytes(data: bytes, key: HpkePrivateKey, context: bytes) -> bytes:
    return open_key(WrappedKey.from_bytes(data), key, context=context)


def _secret() -> bytes:
    # A recognisable 32-byte secret whose hex could not appear by accident.
    return hashlib.sha256(b"nestor test secret").digest()


@dataclass(frozen=True)
class Sealed:
    suite: Suite
    key: HpkePrivateKey
    secret: bytes
    context: bytes
    data: bytes


_SEALED: dict[Suite, Sealed] = {}


def _sealed(suite: Suite) -> Sealed:
    """One key pair and wrapped key per suite, made once per test session."""
    if suite not in _SEALED:
        key = generate_private_key(suite)
        secret, context = _secret(), b"contract:sha256:0123"
        wrapped = seal_key(secret, key.public_key(), context=context)
        _SEALED[suite] = Sealed(suite, key, secret, context, wrapped.to_bytes())
    return _SEALED[suite]


# -- the vector files -------------------------------------------------------


def test_vector_files_hold_the_expected_suites() -> None:
    assert _ids(RFC9180) == (0, 0x0020, 0x0001, 0x0002)
    # No 0x647a vector with AES-256-GCM exists in the source; see README.md.
    assert _ids(PQ) == (0, 0x647A, 0x0001, 0x0003)
    assert len(_hex(RFC9180, "enc")) == 32
    assert len(_hex(PQ, "enc")) == 1120
    assert len(_hex(PQ, "pkRm")) == 1216
    assert len(_hex(PQ, "skRm")) == 32


# -- RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM ----------


def test_rfc9180_public_key_from_skrm() -> None:
    assert RFC9180_SK.public_key().public_bytes_raw() == _hex(RFC9180, "pkRm")
    assert public_key_from_raw(X25519_SUITE, _hex(RFC9180, "pkRm")) == RFC9180_SK.public_key()


def test_rfc9180_pyca_opens_first_encryption() -> None:
    # The single-shot API covers sequence number 0 only.
    first = RFC9180["encryptions"][0]
    assert _hex(first, "nonce") == _hex(RFC9180, "base_nonce")
    pt = rust_openssl.hpke._decrypt_with_aad(
        X25519_SUITE._pyca(),
        _hex(RFC9180, "enc") + _hex(first, "ct"),
        RFC9180_SK,
        info=_hex(RFC9180, "info"),
        aad=_hex(first, "aad"),
    )
    assert pt == _hex(first, "pt")


def test_rfc9180_pyca_rejects_first_encryption_with_other_aad() -> None:
    first = RFC9180["encryptions"][0]
    with pytest.raises(InvalidTag):
        rust_openssl.hpke._decrypt_with_aad(
            X25519_SUITE._pyca(),
            _hex(RFC9180, "enc") + _hex(first, "ct"),
            RFC9180_SK,
            info=_hex(RFC9180, "info"),
            aad=b"Count-1",
        )


def test_rfc9180_reference_decap_and_key_schedule() -> None:
    shared = _dhkem_x25519_decap(RFC9180_SK, _hex(RFC9180, "enc"))
    assert shared == _hex(RFC9180, "shared_secret")
    schedule = _key_schedule_base(0x0020, 0x0001, 0x0002, shared, _hex(RFC9180, "info"))
    assert schedule.key_schedule_context == _hex(RFC9180, "key_schedule_context")
    assert schedule.secret == _hex(RFC9180, "secret")
    assert schedule.key == _hex(RFC9180, "key")
    assert schedule.base_nonce == _hex(RFC9180, "base_nonce")
    assert schedule.exporter_secret == _hex(RFC9180, "exporter_secret")
    for export in RFC9180["exports"]:
        value = schedule.export(_hex(export, "exporter_context"), export["L"])
        assert value == _hex(export, "exported_value")


def test_rfc9180_every_encryption_with_reference_schedule() -> None:
    schedule = _key_schedule_base(
        0x0020, 0x0001, 0x0002, _hex(RFC9180, "shared_secret"), _hex(RFC9180, "info")
    )
    aead = AESGCM(schedule.key)
    encryptions = RFC9180["encryptions"]
    assert len(encryptions) == 257
    for seq, enc in enumerate(encryptions):
        assert _hex(enc, "nonce") == schedule.nonce(seq), seq
        assert aead.decrypt(schedule.nonce(seq), _hex(enc, "ct"), _hex(enc, "aad")) == _hex(
            enc, "pt"
        ), seq


def test_nestor_opens_wrapped_key_built_from_rfc9180_vector() -> None:
    secret, context = _secret(), b"dataset:42"
    data = _reference_wrapped_key(
        X25519_SUITE, _hex(RFC9180, "enc"), _hex(RFC9180, "shared_secret"), context, secret
    )
    assert data[:HEADER_LEN] == HEADER[X25519_SUITE]
    wrapped = WrappedKey.from_bytes(data)
    assert wrapped.to_bytes() == data
    assert wrapped.enc == _hex(RFC9180, "enc")
    assert open_key(wrapped, RFC9180_SK, context=context) == secret
    _expect(lambda: open_key(wrapped, RFC9180_SK, context=b"dataset:43"), MSG_DOES_NOT_OPEN)


# -- draft-ietf-hpke-pq: MLKEM768-X25519 (0x647a) ----------------------------


def test_hybrid_key_from_seed_matches_pkrm_in_nestor_raw_order() -> None:
    pk_rm = _hex(PQ, "pkRm")
    public = PQ_SK.public_key()
    # Nestor's raw form: ML-KEM-768 encapsulation key (1184) || X25519 (32).
    assert public.public_bytes_raw() == pk_rm
    assert public.mlkem.public_bytes_raw() == pk_rm[:1184]
    assert public.x25519.public_bytes_raw() == pk_rm[1184:]
    parsed = HybridPublicKey.from_public_bytes(pk_rm)
    assert parsed.public_bytes_raw() == pk_rm
    decoded = public_key_from_raw(HYBRID_SUITE, pk_rm)
    assert isinstance(decoded, HybridPublicKey)
    assert decoded.public_bytes_raw() == pk_rm


def test_hybrid_pyca_opens_first_encryption() -> None:
    # The vector's AEAD is ChaCha20-Poly1305: same KEM and KDF as Nestor's
    # hybrid suite; AES-256-GCM is covered by the RFC 9180 vector above and by
    # the derived check below.
    first = PQ["encryptions"][0]
    assert _hex(first, "nonce") == _hex(PQ, "base_nonce")
    suite = pyca_hpke.Suite(
        pyca_hpke.KEM.MLKEM768_X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.CHACHA20_POLY1305
    )
    pt = rust_openssl.hpke._decrypt_with_aad(
        suite,
        _hex(PQ, "enc") + _hex(first, "ct"),
        PQ_SK._pyca(),
        info=_hex(PQ, "info"),
        aad=_hex(first, "aad"),
    )
    assert pt == _hex(first, "pt")


def test_hybrid_enc_length() -> None:
    assert pyca_hpke.KEM.MLKEM768_X25519.enc_length() == ENC_LEN[HYBRID_SUITE]
    assert pyca_hpke.KEM.X25519.enc_length() == ENC_LEN[X25519_SUITE]


def test_hybrid_reference_decap_and_key_schedule() -> None:
    shared = _mlkem768_x25519_decap(PQ_SK, _hex(PQ, "enc"))
    assert shared == _hex(PQ, "shared_secret")
    assert _hpke_suite_id(0x647A, 0x0001, 0x0003) == _hex(PQ, "suite_id")
    schedule = _key_schedule_base(0x647A, 0x0001, 0x0003, shared, _hex(PQ, "info"))
    assert schedule.key == _hex(PQ, "key")
    assert schedule.base_nonce == _hex(PQ, "base_nonce")
    assert schedule.exporter_secret == _hex(PQ, "exporter_secret")
    for export in PQ["exports"]:
        value = schedule.export(_hex(export, "exporter_context"), export["L"])
        assert value == _hex(export, "exported_value")
    aead = ChaCha20Poly1305(schedule.key)
    for seq, enc in enumerate(PQ["encryptions"]):
        assert _hex(enc, "nonce") == schedule.nonce(seq), seq
        assert aead.decrypt(schedule.nonce(seq), _hex(enc, "ct"), _hex(enc, "aad")) == _hex(
            enc, "pt"
        ), seq


def test_nestor_opens_wrapped_key_built_from_hybrid_vector() -> None:
    # The KEM output does not depend on the KDF/AEAD ids, so the vector's
    # (enc, shared_secret) pair also holds for Nestor's suite (0x647a, 1, 2).
    secret, context = _secret(), b"result:7"
    data = _reference_wrapped_key(
        HYBRID_SUITE, _hex(PQ, "enc"), _hex(PQ, "shared_secret"), context, secret
    )
    assert data[:HEADER_LEN] == HEADER[HYBRID_SUITE]
    wrapped = WrappedKey.from_bytes(data)
    assert wrapped.to_bytes() == data
    assert open_key(wrapped, PQ_SK, context=context) == secret
    _expect(lambda: open_key(wrapped, PQ_SK, context=b"result:8"), MSG_DOES_NOT_OPEN)


def test_seal_to_vector_hybrid_public_key() -> None:
    public = HybridPublicKey.from_public_bytes(_hex(PQ, "pkRm"))
    wrapped = seal_key(b"k" * 32, public, context=b"c")
    assert open_key(WrappedKey.from_bytes(wrapped.to_bytes()), PQ_SK, context=b"c") == b"k" * 32


# -- round trips --------------------------------------------------------------


def test_constants() -> None:
    assert MAGIC == EXPECTED_MAGIC
    assert INFO_PREFIX == EXPECTED_INFO_PREFIX
    assert MAX_WRAPPED_PLAINTEXT == 1024
    assert X25519_SUITE.value == (0x0020, 0x0001, 0x0002)
    assert HYBRID_SUITE.value == (0x647A, 0x0001, 0x0002)
    assert X25519_SUITE.label == "x25519"
    assert HYBRID_SUITE.label == "mlkem768-x25519"


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
@pytest.mark.parametrize("length", [0, 1, 16, 32, 64, MAX_WRAPPED_PLAINTEXT])
def test_seal_open_round_trip(suite: Suite, length: int) -> None:
    key = generate_private_key(suite)
    assert suite_for_private_key(key) is suite
    assert suite_for_public_key(key.public_key()) is suite
    secret = bytes(range(256)) * 4
    secret = secret[:length]
    context = b"contract:" + bytes(32)
    wrapped = seal_key(secret, key.public_key(), context=context, suite=suite)
    assert wrapped.suite is suite
    assert len(wrapped.enc) == ENC_LEN[suite]
    assert len(wrapped.ciphertext) == length + TAG_LEN

    data = wrapped.to_bytes()
    assert data[:HEADER_LEN] == HEADER[suite]
    assert data[HEADER_LEN : HEADER_LEN + ENC_LEN[suite]] == wrapped.enc
    assert data[HEADER_LEN + ENC_LEN[suite] :] == wrapped.ciphertext
    assert len(data) == HEADER_LEN + ENC_LEN[suite] + length + TAG_LEN

    parsed = WrappedKey.from_bytes(data)
    assert parsed == wrapped
    assert parsed.to_bytes() == data
    assert open_key(parsed, key, context=context) == secret


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
def test_seal_is_randomised(suite: Suite) -> None:
    key = generate_private_key(suite)
    first = seal_key(b"s" * 32, key.public_key(), context=b"c")
    second = seal_key(b"s" * 32, key.public_key(), context=b"c")
    assert first.enc != second.enc
    assert first.ciphertext != second.ciphertext


def test_suite_lookups() -> None:
    for suite in ALL_SUITES:
        assert Suite.from_ids(*suite.value) is suite
        assert Suite.from_label(suite.label) is suite
    err = _expect(lambda: Suite.from_label("x448"), "unknown HPKE suite 'x448'")
    assert err.hint is not None
    assert "x25519" in err.hint
    assert "mlkem768-x25519" in err.hint


# -- failures -----------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
@pytest.mark.parametrize(
    "other",
    [b"contract:sha256:0124", b"", b"contract:sha256:012", b"contract:sha256:0123\x00"],
)
def test_wrong_context(suite: Suite, other: bytes) -> None:
    s = _sealed(suite)
    _expect(lambda: _open_bytes(s.data, s.key, other), MSG_DOES_NOT_OPEN, secret=s.secret)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
def test_long_context_round_trip(suite: Suite) -> None:
    # Nestor sets no limit on the context; HKDF-SHA256 suites take any info.
    key = generate_private_key(suite)
    context = bytes(range(256)) * 400  # 102,400 bytes
    wrapped = seal_key(b"k" * 32, key.public_key(), context=context)
    assert open_key(wrapped, key, context=context) == b"k" * 32
    _expect(lambda: open_key(wrapped, key, context=context[:-1]), MSG_DOES_NOT_OPEN)


def test_empty_and_nul_contexts_differ() -> None:
    key = generate_private_key()
    wrapped = seal_key(b"k" * 32, key.public_key(), context=b"")
    assert open_key(wrapped, key, context=b"") == b"k" * 32
    _expect(lambda: open_key(wrapped, key, context=b"\x00"), MSG_DOES_NOT_OPEN)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
def test_wrong_recipient(suite: Suite) -> None:
    s = _sealed(suite)
    other = generate_private_key(suite)
    _expect(lambda: _open_bytes(s.data, other, s.context), MSG_DOES_NOT_OPEN, secret=s.secret)


@pytest.mark.parametrize(
    ("wrapped_suite", "key_suite"),
    [(X25519_SUITE, HYBRID_SUITE), (HYBRID_SUITE, X25519_SUITE)],
    ids=["x25519-key-hybrid", "hybrid-key-x25519"],
)
def test_suite_mismatch_between_wrapped_and_private_key(
    wrapped_suite: Suite, key_suite: Suite
) -> None:
    s = _sealed(wrapped_suite)
    key = generate_private_key(key_suite)
    err = _expect(
        lambda: _open_bytes(s.data, key, s.context),
        f"wrapped key uses suite {wrapped_suite.label}, {MSG_SUITE_MISMATCH} {key_suite.label}",
        secret=s.secret,
    )
    assert err.hint == "open it with the recipient's key of the matching suite"


def test_seal_suite_mismatch() -> None:
    public = generate_private_key(X25519_SUITE).public_key()
    _expect(
        lambda: seal_key(_secret(), public, context=b"c", suite=HYBRID_SUITE),
        "recipient key is for suite x25519, but mlkem768-x25519 was requested",
        secret=_secret(),
    )
    hybrid = generate_private_key(HYBRID_SUITE).public_key()
    _expect(
        lambda: seal_key(_secret(), hybrid, context=b"c", suite=X25519_SUITE),
        "recipient key is for suite mlkem768-x25519, but x25519 was requested",
        secret=_secret(),
    )


def test_seal_refuses_oversized_secret() -> None:
    public = generate_private_key().public_key()
    big = _secret() * 33  # 1056 bytes
    _expect(
        lambda: seal_key(big, public, context=b"c"),
        "refusing to wrap more than 1024 bytes",
        secret=big,
    )


def _expected_flip_message(suite: Suite, position: int) -> str:
    if position < 4:
        return MSG_BAD_MAGIC
    if position < 10:
        return MSG_UNSUPPORTED  # kem/kdf/aead ids: no single-byte change reaches the other suite
    if position < HEADER_LEN:
        return MSG_ENC_LEN
    return MSG_DOES_NOT_OPEN


def _flips(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(data)
            flipped[position] ^= mask
            yield position, mask, bytes(flipped)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
def test_every_flipped_byte_is_rejected(suite: Suite) -> None:
    # Every position, three masks each (low bit, high bit, whole byte). The
    # hybrid wrapped key is ~1.2 kB, still fast enough to cover in full.
    s = _sealed(suite)
    count = 0
    for position, mask, flipped in _flips(s.data):
        expected = _expected_flip_message(suite, position)
        with pytest.raises(WrappedKeyError) as info:
            _open_bytes(flipped, s.key, s.context)
        assert expected in info.value.message, (position, mask, info.value.message)
        _assert_no_secret(info.value, s.secret)
        count += 1
    assert count == 3 * (HEADER_LEN + ENC_LEN[suite] + len(s.secret) + TAG_LEN)


def test_flipped_enc_length_message() -> None:
    s = _sealed(X25519_SUITE)
    data = bytearray(s.data)
    data[11] ^= 0x01  # enc_len 32 -> 33
    _expect(
        lambda: WrappedKey.from_bytes(bytes(data)),
        "wrapped key encapsulation is 33 bytes; suite x25519 uses 32",
    )


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
def test_every_truncation_is_rejected(suite: Suite) -> None:
    s = _sealed(suite)
    minimum = HEADER_LEN + ENC_LEN[suite] + TAG_LEN
    for length in range(len(s.data)):
        if length < HEADER_LEN:
            expected = f"wrapped key is {length} bytes, {MSG_SHORT}"
        elif length < minimum:
            expected = MSG_TRUNCATED
        else:
            expected = MSG_DOES_NOT_OPEN
        prefix = s.data[:length]
        with pytest.raises(WrappedKeyError) as info:
            _open_bytes(prefix, s.key, s.context)
        assert expected in info.value.message, (length, info.value.message)
        _assert_no_secret(info.value, s.secret)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
@pytest.mark.parametrize("extra", [b"\x00", b"\xff" * 16], ids=["1", "16"])
def test_appended_bytes_are_rejected(suite: Suite, extra: bytes) -> None:
    s = _sealed(suite)
    _expect(
        lambda: _open_bytes(s.data + extra, s.key, s.context),
        MSG_DOES_NOT_OPEN,
        secret=s.secret,
    )


# X25519 points of small order (RFC 7748 section 6.1 and the usual
# low-order list): 0, 1, an order-8 point, and p - 1.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=["zero", "one", "order8", "p-1"])
def test_low_order_x25519_share_is_rejected(suite: Suite, point: bytes) -> None:
    # The X25519 share is the whole enc (x25519) or its last 32 bytes (hybrid).
    s = _sealed(suite)
    enc_end = HEADER_LEN + ENC_LEN[suite]
    data = s.data[: enc_end - 32] + point + s.data[enc_end:]
    _expect(lambda: _open_bytes(data, s.key, s.context), MSG_DOES_NOT_OPEN, secret=s.secret)


@pytest.mark.parametrize("magic", [b"NWK0", b"NWK2", b"nwk1", b"\x00\x00\x00\x00", b"NWK\x01"])
def test_bad_magic(magic: bytes) -> None:
    s = _sealed(X25519_SUITE)
    _expect(lambda: WrappedKey.from_bytes(magic + s.data[4:]), MSG_BAD_MAGIC, secret=s.secret)


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ((0x0021, 0x0001, 0x0002), "kem=0x0021 kdf=0x0001 aead=0x0002"),  # X448
        ((0x0010, 0x0001, 0x0002), "kem=0x0010 kdf=0x0001 aead=0x0002"),  # P-256
        ((0x0020, 0x0003, 0x0002), "kem=0x0020 kdf=0x0003 aead=0x0002"),  # HKDF-SHA512
        ((0x0020, 0x0001, 0x0001), "kem=0x0020 kdf=0x0001 aead=0x0001"),  # AES-128-GCM
        ((0x0020, 0x0001, 0x0003), "kem=0x0020 kdf=0x0001 aead=0x0003"),  # ChaCha20
        ((0x0020, 0x0001, 0xFFFF), "kem=0x0020 kdf=0x0001 aead=0xffff"),  # export-only
        ((0x647A, 0x0001, 0x0003), "kem=0x647a kdf=0x0001 aead=0x0003"),
        ((0x0000, 0x0000, 0x0000), "kem=0x0000 kdf=0x0000 aead=0x0000"),
    ],
)
def test_unknown_suite_id(ids: tuple[int, int, int], text: str) -> None:
    s = _sealed(X25519_SUITE)
    data = s.data[:4] + struct.pack(">HHH", *ids) + s.data[10:]
    err = _expect(lambda: WrappedKey.from_bytes(data), f"{MSG_UNSUPPORTED} {text}", secret=s.secret)
    assert err.hint == "this release accepts: x25519, mlkem768-x25519"


def test_suite_ids_swapped_between_suites() -> None:
    # An X25519 wrapped key relabelled as hybrid fails on its enc length.
    s = _sealed(X25519_SUITE)
    data = s.data[:4] + bytes.fromhex("647a") + s.data[6:]
    _expect(
        lambda: WrappedKey.from_bytes(data),
        "wrapped key encapsulation is 32 bytes; suite mlkem768-x25519 uses 1120",
        secret=s.secret,
    )


def test_size_limit() -> None:
    header = HEADER[X25519_SUITE]
    at_limit = header + bytes(32) + bytes(MAX_WRAPPED_PLAINTEXT + TAG_LEN)
    assert len(WrappedKey.from_bytes(at_limit).ciphertext) == MAX_WRAPPED_PLAINTEXT + TAG_LEN
    _expect(lambda: WrappedKey.from_bytes(at_limit + b"\x00"), MSG_TOO_LARGE)
    tag_only = header + bytes(32) + bytes(TAG_LEN)
    assert WrappedKey.from_bytes(tag_only).ciphertext == bytes(TAG_LEN)
    _expect(lambda: WrappedKey.from_bytes(tag_only[:-1]), MSG_TRUNCATED)


def test_public_key_decoding_errors() -> None:
    _expect(
        lambda: public_key_from_raw(X25519_SUITE, bytes(31)),
        "X25519 public key must be 32 bytes, got 31",
    )
    _expect(
        lambda: public_key_from_raw(HYBRID_SUITE, _hex(PQ, "pkRm")[:-1]),
        "ML-KEM-768+X25519 public key must be 1216 bytes, got 1215",
    )
    bad = bytearray(_hex(PQ, "pkRm"))
    bad[0:2] = b"\xff\xff"  # first 12-bit coefficient 0xfff >= q = 3329
    _expect(
        lambda: HybridPublicKey.from_public_bytes(bytes(bad)),
        "invalid ML-KEM-768+X25519 public key",
    )


# -- secrets never reach error messages -------------------------------------


def _failures(suite: Suite, secret: bytes) -> list[Callable[[], object]]:
    """Ways to fail while ``secret`` is being sealed or has been sealed."""
    key = generate_private_key(suite)
    other_suite = HYBRID_SUITE if suite is X25519_SUITE else X25519_SUITE
    data = seal_key(secret, key.public_key(), context=b"ctx").to_bytes()
    return [
        lambda: _open_bytes(data, key, b"ctx2"),
        lambda: _open_bytes(data, generate_private_key(suite), b"ctx"),
        lambda: _open_bytes(data, generate_private_key(other_suite), b"ctx"),
        lambda: _open_bytes(data[:-1], key, b"ctx"),
        lambda: _open_bytes(data[:-20], key, b"ctx"),
        lambda: _open_bytes(data[:5], key, b"ctx"),
        lambda: _open_bytes(b"XXXX" + data[4:], key, b"ctx"),
        lambda: _open_bytes(data[:-1] + bytes([data[-1] ^ 1]), key, b"ctx"),
        lambda: seal_key(secret * 40, key.public_key(), context=b"ctx"),
        lambda: seal_key(secret, key.public_key(), context=b"c", suite=other_suite),
    ]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.label)
@pytest.mark.parametrize(
    "secret",
    [_secret(), b"\x00" * 32, b"A" * 32, bytes(range(64))],
    ids=["digest", "zeros", "letters", "counting"],
)
def test_error_messages_never_contain_the_secret(suite: Suite, secret: bytes) -> None:
    failures = _failures(suite, secret)
    assert len(failures) == 10
    for fail in failures:
        with pytest.raises(WrappedKeyError) as info:
            fail()
        _assert_no_secret(info.value, secret)


# -- properties ---------------------------------------------------------------


def _attempt(fn: Callable[[], T]) -> T | WrappedKeyError:
    """``fn()``'s result, or the WrappedKeyError it raised (anything else propagates)."""
    try:
        return fn()
    except WrappedKeyError as err:
        return err


_u16 = st.integers(min_value=0, max_value=0xFFFF)
_headed = st.builds(
    lambda magic, kem, kdf, aead, enc_len, body: (
        magic + struct.pack(">HHHH", kem, kdf, aead, enc_len) + body
    ),
    st.sampled_from([EXPECTED_MAGIC, b"NWK0"]) | st.binary(min_size=4, max_size=4),
    st.sampled_from([0x0020, 0x647A]) | _u16,
    st.sampled_from([0x0001]) | _u16,
    st.sampled_from([0x0002]) | _u16,
    st.sampled_from([32, 1120]) | _u16,
    st.binary(max_size=2300),
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64) | _headed)
def test_from_bytes_returns_or_raises_wrapped_key_error(data: bytes) -> None:
    result = _attempt(lambda: WrappedKey.from_bytes(data))
    if isinstance(result, WrappedKeyError):
        assert result.message
    else:
        assert isinstance(result, WrappedKey)
        # A parse is exact: serializing gives back the input.
        assert result.to_bytes() == data


_PROPERTY_SEALED = _sealed(X25519_SUITE)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        max_size=4,
    ),
    st.integers(min_value=0, max_value=len(_PROPERTY_SEALED.data) + 8),
    st.binary(max_size=8),
)
def test_mutated_wrapped_key_opens_to_the_secret_or_raises(
    edits: list[tuple[int, int]], keep: int, tail: bytes
) -> None:
    s = _PROPERTY_SEALED
    data = bytearray(s.data)
    for index, value in edits:
        data[index % len(data)] = value
    mutated = bytes(data[:keep]) + tail
    result = _attempt(lambda: _open_bytes(mutated, s.key, s.context))
    if isinstance(result, WrappedKeyError):
        _assert_no_secret(result, s.secret)
        assert mutated != s.data
    else:
        assert mutated == s.data
        assert result == s.secret
