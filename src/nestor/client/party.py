"""A party's identity directory: its private keys and its public card.

Layout of ``DIR`` (docs/parties.md)::

    card.json                     public party card (signed envelope)
    signing.key                   Ed25519 private key, PKCS#8 PEM, mode 0600
    hpke-x25519.key               X25519 private key, PKCS#8 PEM, mode 0600
    hpke-mlkem768-x25519.key      ML-KEM-768 then X25519 private keys, two
                                  PKCS#8 PEM blocks, mode 0600
    peers/<party-id-hex>.json     cards of other parties, verified on import

With a passphrase, each private key is PEM-encrypted by pyca's best
available PKCS#8 encryption; without one, the files rely on their 0600 mode.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nestor.client.secure_files import atomic_output, read_secret_file, write_secret_file
from nestor.crypto import hpke, signing
from nestor.errors import ConfigurationError, KeyFileError, NestorError, PartyCardError
from nestor.protocol import canonical
from nestor.protocol.party_card import PartyCard, make_party_card, verify_party_card

CARD_FILE = "card.json"
SIGNING_FILE = "signing.key"
HPKE_FILES = {
    hpke.Suite.X25519_SHA256_AES256GCM: "hpke-x25519.key",
    hpke.Suite.MLKEM768X25519_SHA256_AES256GCM: "hpke-mlkem768-x25519.key",
}
PEERS_DIR = "peers"


@dataclass(frozen=True)
class Party:
    """A party with its private keys loaded."""

    card: PartyCard
    signing_key: Ed25519PrivateKey
    hpke_keys: dict[hpke.Suite, hpke.HpkePrivateKey]

    def hpke_private_key(self, suite: hpke.Suite) -> hpke.HpkePrivateKey:
        return self.hpke_keys[suite]


def _encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    if passphrase:
        return serialization.BestAvailableEncryption(passphrase)
    return serialization.NoEncryption()


def _pem(key: object, passphrase: bytes | None) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(passphrase)
    )


def init_party(
    directory: Path, name: str, *, passphrase: bytes | None = None, now: datetime | None = None
) -> Party:
    """Create a new party identity in ``directory`` (which must be empty or new)."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise ConfigurationError(
            f"{directory} is not empty; refusing to create a party identity there",
            hint="choose a new directory: an identity is never overwritten",
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    sk = signing.generate_signing_key()
    x_key = x25519.X25519PrivateKey.generate()
    pq_key = hpke.HybridPrivateKey(
        mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    )
    card = make_party_card(
        name,
        sk,
        {
            hpke.Suite.X25519_SHA256_AES256GCM: x_key.public_key(),
            hpke.Suite.MLKEM768X25519_SHA256_AES256GCM: pq_key.public_key(),
        },
        created=now or datetime.now(UTC),
    )
    write_secret_file(directory / SIGNING_FILE, _pem(sk, passphrase))
    write_secret_file(
        directory / HPKE_FILES[hpke.Suite.X25519_SHA256_AES256GCM], _pem(x_key, passphrase)
    )
    write_secret_file(
        directory / HPKE_FILES[hpke.Suite.MLKEM768X25519_SHA256_AES256GCM],
        _pem(pq_key.mlkem, passphrase) + _pem(pq_key.x25519, passphrase),
    )
    write_card(directory / CARD_FILE, card)
    return Party(
        card,
        sk,
        {
            hpke.Suite.X25519_SHA256_AES256GCM: x_key,
            hpke.Suite.MLKEM768X25519_SHA256_AES256GCM: pq_key,
        },
    )


def write_card(path: Path, card: PartyCard, *, overwrite: bool = False) -> None:
    with atomic_output(path, overwrite=overwrite) as f:
        f.write(json.dumps(card.to_json(), indent=2, ensure_ascii=False).encode() + b"\n")


def read_card(path: Path) -> PartyCard:
    """Load and verify a party card file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"party card {path} does not exist") from None
    try:
        obj = canonical.decode(data)
    except NestorError as exc:
        raise PartyCardError(f"{path} is not a party card: {exc.message}") from exc
    return verify_party_card(obj)


def _load_pem_blocks(path: Path, passphrase: bytes | None) -> list[Any]:
    data = read_secret_file(path)
    blocks = [b"-----BEGIN" + part for part in data.split(b"-----BEGIN")[1:]]
    if not blocks:
        raise KeyFileError(f"{path} holds no PEM private key")
    keys: list[Any] = []
    for block in blocks:
        encrypted = b"ENCRYPTED PRIVATE KEY" in block.split(b"\n", 1)[0]
        if encrypted and not passphrase:
            raise KeyFileError(
                f"{path} is protected by a passphrase",
                hint="pass --passphrase-file FILE or set NESTOR_PASSPHRASE",
            )
        try:
            keys.append(
                serialization.load_pem_private_key(block, passphrase if encrypted else None)
            )
        except (ValueError, TypeError) as exc:
            if encrypted:
                raise KeyFileError(f"wrong passphrase for {path}, or the file is damaged") from exc
            raise KeyFileError(f"{path} is not a valid private key file: {exc}") from exc
    return keys


def load_party(directory: Path, *, passphrase: bytes | None = None) -> Party:
    """Load a party's card and private keys, checking they belong together."""
    directory = Path(directory)
    if not (directory / CARD_FILE).exists():
        raise ConfigurationError(
            f"{directory} is not a party directory (no {CARD_FILE})",
            hint="create one with: nestor party init DIR --name NAME",
        )
    card = read_card(directory / CARD_FILE)
    (sk,) = _load_pem_blocks(directory / SIGNING_FILE, passphrase)
    if not isinstance(sk, Ed25519PrivateKey):
        raise KeyFileError(f"{directory / SIGNING_FILE} is not an Ed25519 key")
    if signing.key_id(sk.public_key()) != card.party_id:
        raise KeyFileError(f"{directory / SIGNING_FILE} does not belong to the card in {directory}")
    keys: dict[hpke.Suite, hpke.HpkePrivateKey] = {}
    for suite, filename in HPKE_FILES.items():
        path = directory / filename
        if not path.exists():
            continue
        blocks = _load_pem_blocks(path, passphrase)
        key: hpke.HpkePrivateKey
        if suite is hpke.Suite.X25519_SHA256_AES256GCM and len(blocks) == 1:
            (xk,) = blocks
            if not isinstance(xk, x25519.X25519PrivateKey):
                raise KeyFileError(f"{path} is not an X25519 key")
            key = xk
        elif len(blocks) == 2:
            mk, xk = blocks
            if not isinstance(mk, mlkem.MLKEM768PrivateKey) or not isinstance(
                xk, x25519.X25519PrivateKey
            ):
                raise KeyFileError(f"{path} must hold an ML-KEM-768 key then an X25519 key")
            key = hpke.HybridPrivateKey(mk, xk)
        else:
            raise KeyFileError(f"{path} holds {len(blocks)} keys; expected the suite's keys")
        published = card.hpke_keys.get(suite)
        if published is None or published.public_bytes_raw() != key.public_key().public_bytes_raw():
            raise KeyFileError(f"{path} does not match the HPKE key on the party card")
        keys[suite] = key
    return Party(card, sk, keys)


def import_card(directory: Path, card_path: Path) -> PartyCard:
    """Verify another party's card and keep it in ``directory/peers``."""
    card = read_card(card_path)
    peers = Path(directory) / PEERS_DIR
    peers.mkdir(mode=0o700, exist_ok=True)
    target = peers / (card.party_id.removeprefix("sha256:") + ".json")
    write_card(target, card, overwrite=True)
    return card
