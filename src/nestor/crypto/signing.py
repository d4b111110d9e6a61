"""Ed25519 signing keys and the identifiers derived from them.

A key id is ``sha256:`` + hex of SHA-256 over the key's DER
SubjectPublicKeyInfo, the same fingerprint ``openssl pkey -pubin -outform DER
| sha256sum`` prints, so a party can check it with standard tools.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nestor.errors import SignatureError

SIGNATURE_LENGTH = 64
PUBLIC_KEY_LENGTH = 32


def key_id(public_key: Ed25519PublicKey) -> str:
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def public_key_from_raw(data: bytes) -> Ed25519PublicKey:
    if len(data) != PUBLIC_KEY_LENGTH:
        raise SignatureError(f"an Ed25519 public key is 32 bytes, got {len(data)}")
    return Ed25519PublicKey.from_public_bytes(data)


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def sign(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    return private_key.sign(message)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes, *, what: str) -> None:
    """Raise :class:`SignatureError` naming ``what`` unless the signature verifies."""
    if len(signature) != SIGNATURE_LENGTH:
        raise SignatureError(
            f"the signature on {what} is {len(signature)} bytes; Ed25519 signatures are 64"
        )
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise SignatureError(
            f"the signature on {what} does not verify with key {key_id(public_key)}",
            hint="the signed content was changed after signing, or another key signed it",
        ) from None
