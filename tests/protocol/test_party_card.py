"""Party cards: structure, fingerprint binding, self-signature."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from nestor.crypto import hpke, signing
from nestor.errors import PartyCardError, SignatureError
from nestor.protocol.envelope import Envelope, sign_envelope
from nestor.protocol.party_card import make_party_card, verify_party_card

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _card_json(name: str = "Northside Hospital") -> tuple[dict[str, Any], Any]:
    sk = signing.generate_signing_key()
    keys = {
        hpke.Suite.X25519_SHA256_AES256GCM: hpke.generate_private_key().public_key(),
    }
    return make_party_card(name, sk, keys, created=NOW).to_json(), sk


def test_card_round_trip() -> None:
    obj, sk = _card_json()
    card = verify_party_card(obj)
    assert card.name == "Northside Hospital"
    assert card.party_id == signing.key_id(sk.public_key())
    assert card.created == "2026-11-26T12:00:00Z"
    assert set(card.hpke_keys) == {hpke.Suite.X25519_SHA256_AES256GCM}


def test_card_with_post_quantum_key() -> None:
    sk = signing.generate_signing_key()
    pq = hpke.generate_private_key(hpke.Suite.MLKEM768X25519_SHA256_AES256GCM)
    x = hpke.generate_private_key()
    card = make_party_card(
        "Lakeside",
        sk,
        {
            hpke.Suite.X25519_SHA256_AES256GCM: x.public_key(),
            hpke.Suite.MLKEM768X25519_SHA256_AES256GCM: pq.public_key(),
        },
        created=NOW,
    )
    again = verify_party_card(card.to_json())
    wrapped = hpke.seal_key(
        b"k" * 32, again.hpke_key(hpke.Suite.MLKEM768X25519_SHA256_AES256GCM), context=b"c"
    )
    assert hpke.open_key(wrapped, pq, context=b"c") == b"k" * 32


def test_edited_name_breaks_the_self_signature() -> None:
    obj, _ = _card_json()
    obj["signed"]["name"] = "Someone Else"
    with pytest.raises(SignatureError, match="party card of 'Someone Else'"):
        verify_party_card(obj)


def test_swapped_hpke_key_breaks_the_self_signature() -> None:
    obj, _ = _card_json()
    other, _ = _card_json()
    obj["signed"]["hpke_keys"] = other["signed"]["hpke_keys"]
    with pytest.raises(SignatureError, match="edited after signing"):
        verify_party_card(obj)


def test_party_id_must_be_the_signing_key_fingerprint() -> None:
    obj, sk = _card_json()
    other, _ = _card_json()
    obj["signed"]["party_id"] = other["signed"]["party_id"]
    resigned = sign_envelope(Envelope.from_json({**obj, "signatures": []}), sk)
    with pytest.raises(PartyCardError, match="not the fingerprint"):
        verify_party_card(resigned.to_json())


def test_card_signed_by_another_key() -> None:
    obj, _ = _card_json()
    intruder = signing.generate_signing_key()
    resigned = sign_envelope(Envelope.from_json({**obj, "signatures": []}), intruder)
    with pytest.raises(SignatureError, match="carries no signature by key"):
        verify_party_card(resigned.to_json())


def test_card_without_signature() -> None:
    obj, _ = _card_json()
    obj["signatures"] = []
    with pytest.raises(SignatureError, match="no signature"):
        verify_party_card(obj)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(extra="x"), "unknown field"),
        (lambda s: s.pop("created"), "missing field"),
        (lambda s: s.update(name=""), "non-empty"),
        (lambda s: s.update(name="a\x07b"), "control"),
        (lambda s: s.update(name=" padded"), "white space"),
        (lambda s: s.update(name="x" * 129), "at most 128"),
        (lambda s: s.update(created="yesterday"), "UTC time"),
        (lambda s: s.update(hpke_keys=[]), "non-empty list"),
        (lambda s: s["hpke_keys"][0].update(suite="rsa"), "unknown HPKE suite"),
        (lambda s: s["hpke_keys"][0].update(public="AAAA"), "must be 32 bytes"),
        (lambda s: s["signing_key"].update(alg="rsa"), "ed25519"),
        (lambda s: s["hpke_keys"].append(dict(s["hpke_keys"][0])), "twice"),
    ],
)
def test_malformed_cards(mutate: Any, message: str) -> None:
    obj, _sk = _card_json()
    mutate(obj["signed"])
    with pytest.raises(PartyCardError, match=message):
        verify_party_card(obj)


def test_not_a_card() -> None:
    with pytest.raises(PartyCardError, match="not a valid party card"):
        verify_party_card({"payload_type": "x"})
    obj, _ = _card_json()
    wrong = copy.deepcopy(obj)
    wrong["payload_type"] = "application/vnd.nestor.contract+json;version=1"
    with pytest.raises(PartyCardError, match="expected a"):
        verify_party_card(wrong)
