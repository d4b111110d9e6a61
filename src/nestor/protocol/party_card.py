"""Party cards: a party's public identity, signed by itself.

The card names the party, its Ed25519 signing key and its HPKE public keys
(one per suite). The party id is the fingerprint of the signing key
(``nestor.crypto.signing.key_id``), so a card cannot claim another party's
id, and the self-signature proves possession of the signing key. A card
says nothing about *who* the party is in the world: parties compare the
party id out of band (read it aloud, print it in the contract review) the way
SSH users compare host-key fingerprints.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nestor.crypto import hpke, signing
from nestor.errors import NestorError, PartyCardError, ProtocolError
from nestor.protocol.b64 import b64decode, b64encode
from nestor.protocol.envelope import Envelope, sign_envelope, verify_envelope_signature

PAYLOAD_TYPE: Final = "application/vnd.nestor.party-card+json;version=1"
MAX_NAME_LENGTH: Final = 128
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_FIELDS: Final = {"name", "party_id", "signing_key", "hpke_keys", "created"}


@dataclass(frozen=True)
class PartyCard:
    """A verified party card. Only :func:`verify_party_card` and
    :func:`make_party_card` produce one."""

    name: str
    party_id: str
    signing_key: Ed25519PublicKey
    hpke_keys: Mapping[hpke.Suite, hpke.HpkePublicKey]
    created: str
    envelope: Envelope

    def hpke_key(self, suite: hpke.Suite = hpke.DEFAULT_SUITE) -> hpke.HpkePublicKey:
        try:
            return self.hpke_keys[suite]
        except KeyError:
            raise PartyCardError(
                f"party {self.name!r} has no HPKE key for suite {suite.label}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return self.envelope.to_json()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise PartyCardError("a party name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise PartyCardError(f"a party name is at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise PartyCardError("a party name cannot contain control or format characters")
    if name != name.strip():
        raise PartyCardError("a party name cannot start or end with white space")
    return name


def make_party_card(
    name: str,
    signing_key: Ed25519PrivateKey,
    hpke_keys: Mapping[hpke.Suite, hpke.HpkePublicKey],
    *,
    created: datetime,
) -> PartyCard:
    public = signing_key.public_key()
    signed = {
        "name": check_name(name),
        "party_id": signing.key_id(public),
        "signing_key": {"alg": "ed25519", "public": b64encode(signing.raw_public_key(public))},
        "hpke_keys": [
            {"suite": suite.label, "public": b64encode(key.public_bytes_raw())}
            for suite, key in sorted(hpke_keys.items(), key=lambda kv: kv[0].label)
        ],
        "created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    envelope = sign_envelope(Envelope(PAYLOAD_TYPE, signed), signing_key)
    return verify_party_card(envelope.to_json())


def verify_party_card(obj: object) -> PartyCard:
    """Parse a card (as decoded JSON) and check its self-signature.

    Raises PartyCardError for structure problems and SignatureError when
    the self-signature does not verify.
    """
    try:
        envelope = Envelope.from_json(obj, expected_type=PAYLOAD_TYPE)
    except ProtocolError as exc:
        raise PartyCardError(f"not a valid party card: {exc.message}") from exc
    s = envelope.signed
    if set(s) != _FIELDS:
        extra, missing = set(s) - _FIELDS, _FIELDS - set(s)
        detail = "; ".join(
            part
            for part in (
                f"unknown field(s) {', '.join(sorted(extra))}" if extra else "",
                f"missing field(s) {', '.join(sorted(missing))}" if missing else "",
            )
            if part
        )
        raise PartyCardError(f"party card fields are wrong: {detail}")
    name = check_name(s["name"])
    sk = s["signing_key"]
    if not isinstance(sk, dict) or set(sk) != {"alg", "public"} or sk["alg"] != "ed25519":
        raise PartyCardError("signing_key must be {alg: ed25519, public: <base64url>}")
    try:
        public = signing.public_key_from_raw(b64decode(sk["public"], field="signing_key.public"))
    except NestorError as exc:
        raise PartyCardError(f"invalid signing key: {exc.message}") from exc
    if s["party_id"] != signing.key_id(public):
        raise PartyCardError(
            f"party_id {s['party_id']!r} is not the fingerprint of the card's signing key"
        )
    if not isinstance(s["created"], str) or not _TIME.fullmatch(s["created"]):
        raise PartyCardError("created must be a UTC time like 2026-01-31T12:00:00Z")
    keys: dict[hpke.Suite, hpke.HpkePublicKey] = {}
    entries = s["hpke_keys"]
    if not isinstance(entries, list) or not entries:
        raise PartyCardError("hpke_keys must be a non-empty list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"suite", "public"}:
            raise PartyCardError(f"hpke_keys[{i}] must have exactly the fields suite and public")
        try:
            suite = hpke.Suite.from_label(entry["suite"])
            key = hpke.public_key_from_raw(suite, b64decode(entry["public"], field="hpke key"))
        except NestorError as exc:
            raise PartyCardError(f"hpke_keys[{i}]: {exc.message}") from exc
        if suite in keys:
            raise PartyCardError(f"hpke_keys lists suite {suite.label} twice")
        keys[suite] = key
    if hpke.DEFAULT_SUITE not in keys:
        raise PartyCardError(f"a party card must carry an {hpke.DEFAULT_SUITE.label} HPKE key")
    verify_envelope_signature(envelope, public, what=f"the party card of {name!r}")
    if len(envelope.signatures) != 1:
        raise PartyCardError("a party card carries exactly one signature: its own")
    return PartyCard(name, s["party_id"], public, keys, s["created"], envelope)
