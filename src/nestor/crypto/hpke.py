"""HPKE (RFC 9180) key wrapping for key grants and sealed results.

A *wrapped key* is a short secret (a data key, a result key) sealed with
HPKE base mode to one recipient public key. Every wrapped key names its
suite, so formats can evolve and a recipient never guesses.

Byte layout of a wrapped key (docs/formats.md, "Wrapped keys")::

    magic    4  b"NWK1"
    kem_id   2  big-endian RFC 9180 / IANA HPKE KEM identifier
    kdf_id   2  big-endian HPKE KDF identifier
    aead_id  2  big-endian HPKE AEAD identifier
    enc_len  2  big-endian length of ``enc``
    enc      enc_len bytes: the KEM encapsulation
    ct       the rest: the HPKE ciphertext (plaintext length + 16-byte tag)

The HPKE ``info`` is ``b"nestor/v1/key-wrap\\x00" + context``: the caller's
context (contract digest, dataset id, commitment, ...) is bound into the key
schedule, so a wrapped key opened under any other context fails.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from nestor.errors import WrappedKeyError

MAGIC: Final = b"NWK1"
INFO_PREFIX: Final = b"nestor/v1/key-wrap\x00"
_FIXED = struct.Struct(">4sHHHH")
MAX_WRAPPED_PLAINTEXT: Final = 1024  # wrapped keys are keys, not payloads


class Suite(Enum):
    """The HPKE suites Nestor accepts, named by their RFC 9180 identifiers."""

    # DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the default.
    X25519_SHA256_AES256GCM = (0x0020, 0x0001, 0x0002)
    # Hybrid post-quantum KEM ML-KEM-768 + X25519 (draft-ietf-hpke-pq), for
    # data that must stay secret for decades.
    MLKEM768X25519_SHA256_AES256GCM = (0x647A, 0x0001, 0x0002)

    @property
    def kem_id(self) -> int:
        return self.value[0]

    @property
    def kdf_id(self) -> int:
        return self.value[1]

    @property
    def aead_id(self) -> int:
        return self.value[2]

    @property
    def label(self) -> str:
        """Short name used in party cards and on the command line."""
        return _LABELS[self]

    @classmethod
    def from_ids(cls, kem_id: int, kdf_id: int, aead_id: int) -> Suite:
        for suite in cls:
            if suite.value == (kem_id, kdf_id, aead_id):
                return suite
        raise WrappedKeyError(
            f"unsupported HPKE suite kem=0x{kem_id:04x} kdf=0x{kdf_id:04x} aead=0x{aead_id:04x}",
            hint="this release accepts: " + ", ".join(s.label for s in cls),
        )

    @classmethod
    def from_label(cls, label: str) -> Suite:
        for suite, name in _LABELS.items():
            if name == label:
                return suite
        raise WrappedKeyError(
            f"unknown HPKE suite {label!r}",
            hint="choose one of: " + ", ".join(_LABELS.values()),
        )

    def _pyca(self) -> hpke.Suite:
        kem = {0x0020: hpke.KEM.X25519, 0x647A: hpke.KEM.MLKEM768_X25519}[self.kem_id]
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


_LABELS: Final = {
    Suite.X25519_SHA256_AES256GCM: "x25519",
    Suite.MLKEM768X25519_SHA256_AES256GCM: "mlkem768-x25519",
}

DEFAULT_SUITE: Final = Suite.X25519_SHA256_AES256GCM

MLKEM768_PUBLIC_LENGTH: Final = 1184
X25519_LENGTH: Final = 32


@dataclass(frozen=True)
class HybridPublicKey:
    """An ML-KEM-768 + X25519 public key.

    Raw form: the ML-KEM-768 encapsulation key (1184 bytes) followed by the
    X25519 public key (32 bytes), the order draft-ietf-hpke-pq uses.
    """

    mlkem: mlkem.MLKEM768PublicKey
    x25519: x25519.X25519PublicKey

    def public_bytes_raw(self) -> bytes:
        return self.mlkem.public_bytes_raw() + self.x25519.public_bytes_raw()

    @classmethod
    def from_public_bytes(cls, data: bytes) -> HybridPublicKey:
        if len(data) != MLKEM768_PUBLIC_LENGTH + X25519_LENGTH:
            raise WrappedKeyError(
                f"ML-KEM-768+X25519 public key must be "
                f"{MLKEM768_PUBLIC_LENGTH + X25519_LENGTH} bytes, got {len(data)}"
            )
        try:
            return cls(
                mlkem.MLKEM768PublicKey.from_public_bytes(data[:MLKEM768_PUBLIC_LENGTH]),
                x25519.X25519PublicKey.from_public_bytes(data[MLKEM768_PUBLIC_LENGTH:]),
            )
        except ValueError as exc:
            raise WrappedKeyError(f"invalid ML-KEM-768+X25519 public key: {exc}") from exc

    def _pyca(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(self.mlkem, self.x25519)


@dataclass(frozen=True)
class HybridPrivateKey:
    """An ML-KEM-768 + X25519 private key, kept as its two components so it
    can be stored (pyca's combined type does not serialize)."""

    mlkem: mlkem.MLKEM768PrivateKey
    x25519: x25519.X25519PrivateKey

    def public_key(self) -> HybridPublicKey:
        return HybridPublicKey(self.mlkem.public_key(), self.x25519.public_key())

    def _pyca(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(self.mlkem, self.x25519)


HpkePublicKey = x25519.X25519PublicKey | HybridPublicKey
HpkePrivateKey = x25519.X25519PrivateKey | HybridPrivateKey


def public_key_from_raw(suite: Suite, data: bytes) -> HpkePublicKey:
    """Decode a recipient public key of ``suite`` from its raw form."""
    if suite is Suite.X25519_SHA256_AES256GCM:
        if len(data) != X25519_LENGTH:
            raise WrappedKeyError(f"X25519 public key must be 32 bytes, got {len(data)}")
        return x25519.X25519PublicKey.from_public_bytes(data)
    return HybridPublicKey.from_public_bytes(data)


def suite_for_public_key(key: HpkePublicKey) -> Suite:
    if isinstance(key, x25519.X25519PublicKey):
        return Suite.X25519_SHA256_AES256GCM
    return Suite.MLKEM768X25519_SHA256_AES256GCM


def suite_for_private_key(key: HpkePrivateKey) -> Suite:
    if isinstance(key, x25519.X25519PrivateKey):
        return Suite.X25519_SHA256_AES256GCM
    return Suite.MLKEM768X25519_SHA256_AES256GCM


@dataclass(frozen=True)
class WrappedKey:
    """A secret sealed to one recipient with HPKE; see the module docstring."""

    suite: Suite
    enc: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        return (
            _FIXED.pack(
                MAGIC, self.suite.kem_id, self.suite.kdf_id, self.suite.aead_id, len(self.enc)
            )
            + self.enc
            + self.ciphertext
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedKey:
        if len(data) < _FIXED.size:
            raise WrappedKeyError(
                f"wrapped key is {len(data)} bytes, shorter than its {_FIXED.size}-byte header"
            )
        magic, kem_id, kdf_id, aead_id, enc_len = _FIXED.unpack_from(data)
        if magic != MAGIC:
            raise WrappedKeyError("not a Nestor wrapped key (bad magic)")
        suite = Suite.from_ids(kem_id, kdf_id, aead_id)
        expected_enc = _enc_length(suite)
        if enc_len != expected_enc:
            raise WrappedKeyError(
                f"wrapped key encapsulation is {enc_len} bytes; suite {suite.label} uses "
                f"{expected_enc}"
            )
        body = data[_FIXED.size :]
        if len(body) < enc_len + 16:
            raise WrappedKeyError("wrapped key is truncated")
        enc, ciphertext = body[:enc_len], body[enc_len:]
        if len(ciphertext) - 16 > MAX_WRAPPED_PLAINTEXT:
            raise WrappedKeyError("wrapped key is larger than any key Nestor wraps")
        return cls(suite=suite, enc=bytes(enc), ciphertext=bytes(ciphertext))


def _enc_length(suite: Suite) -> int:
    return {0x0020: 32, 0x647A: 1120}[suite.kem_id]


def seal_key(
    secret: bytes,
    recipient: HpkePublicKey,
    *,
    context: bytes,
    suite: Suite | None = None,
) -> WrappedKey:
    """Seal ``secret`` to ``recipient``, bound to ``context``.

    The suite follows from the recipient's key type; passing ``suite``
    asserts it (a mismatch is an error, never a silent downgrade).
    """
    actual = suite_for_public_key(recipient)
    if suite is not None and suite is not actual:
        raise WrappedKeyError(
            f"recipient key is for suite {actual.label}, but {suite.label} was requested"
        )
    if len(secret) > MAX_WRAPPED_PLAINTEXT:
        raise WrappedKeyError("refusing to wrap more than 1024 bytes: wrap a key, not data")
    pyca_key = recipient if isinstance(recipient, x25519.X25519PublicKey) else recipient._pyca()
    sealed = actual._pyca().encrypt(secret, pyca_key, info=INFO_PREFIX + context)
    enc_len = _enc_length(actual)
    return WrappedKey(suite=actual, enc=sealed[:enc_len], ciphertext=sealed[enc_len:])


def open_key(wrapped: WrappedKey, recipient: HpkePrivateKey, *, context: bytes) -> bytes:
    """Open a wrapped key with the recipient's private key under ``context``.

    Raises :class:`WrappedKeyError` with one message for every failure
    (wrong recipient, wrong context, modified bytes): HPKE cannot tell them
    apart, and a finer answer would be an oracle.
    """
    actual = suite_for_private_key(recipient)
    if wrapped.suite is not actual:
        raise WrappedKeyError(
            f"wrapped key uses suite {wrapped.suite.label}, but the private key is for "
            f"{actual.label}",
            hint="open it with the recipient's key of the matching suite",
        )
    pyca_key = recipient if isinstance(recipient, x25519.X25519PrivateKey) else recipient._pyca()
    try:
        return wrapped.suite._pyca().decrypt(
            wrapped.enc + wrapped.ciphertext, pyca_key, info=INFO_PREFIX + context
        )
    except (InvalidTag, ValueError) as exc:
        raise WrappedKeyError(
            "wrapped key does not open: it is for another recipient or another context, "
            "or it was modified"
        ) from exc


def generate_private_key(suite: Suite = DEFAULT_SUITE) -> HpkePrivateKey:
    if suite is Suite.X25519_SHA256_AES256GCM:
        return x25519.X25519PrivateKey.generate()
    return HybridPrivateKey(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())
