"""Signed envelopes: DSSE pre-authentication encoding over canonical JSON."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nestor.crypto import signing
from nestor.errors import EnvelopeError, ProtocolError, SignatureError
from nestor.protocol.b64 import b64decode, b64encode
from nestor.protocol.envelope import (
    Envelope,
    pae,
    sign_envelope,
    verify_envelope_signature,
)

TYPE = "application/vnd.nestor.test+json;version=1"


def test_pae_matches_the_dsse_specification() -> None:
    # The DSSE v1 specification's worked example (protocol.md, "Test cases").
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_sign_and_verify_round_trip() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"b": 2, "a": [1, "x"]}), key)
    again = Envelope.from_json(env.to_json(), expected_type=TYPE)
    verify_envelope_signature(again, key.public_key(), what="the test message")


def test_signature_covers_canonical_form_not_key_order() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"b": 2, "a": 1}), key)
    reordered = Envelope(TYPE, {"a": 1, "b": 2}, env.signatures)
    verify_envelope_signature(reordered, key.public_key(), what="m")


def test_edited_field_after_signing_is_rejected() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"amount": 1}), key)
    edited = Envelope(TYPE, {"amount": 2}, env.signatures)
    with pytest.raises(SignatureError, match="edited after signing"):
        verify_envelope_signature(edited, key.public_key(), what="the message")


def test_forged_signature_over_current_content_is_rejected() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"amount": 1}), key)
    forged = env.to_json()
    sig = bytearray(b64decode(forged["signatures"][0]["sig"]))
    sig[0] ^= 1
    forged["signatures"][0]["sig"] = b64encode(bytes(sig))
    with pytest.raises(SignatureError, match="signature on the message does not verify"):
        verify_envelope_signature(Envelope.from_json(forged), key.public_key(), what="the message")


def test_signed_digest_hint_cannot_rescue_an_edit() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"amount": 1}), key).to_json()
    env["signed"]["amount"] = 2
    env["signatures"][0]["signed_digest"] = Envelope.from_json(env).digest()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope_signature(Envelope.from_json(env), key.public_key(), what="m")


def test_payload_type_is_signed() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"x": 1}), key)
    other = Envelope("application/vnd.nestor.other+json;version=1", env.signed, env.signatures)
    with pytest.raises(SignatureError, match="does not verify"):  # same content, other type
        verify_envelope_signature(other, key.public_key(), what="m")


def test_missing_signature_names_the_key() -> None:
    key = signing.generate_signing_key()
    stranger = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"x": 1}), key)
    with pytest.raises(SignatureError, match="carries no signature by key sha256:"):
        verify_envelope_signature(env, stranger.public_key(), what="m")


def test_resigning_replaces_own_signature_and_keeps_others() -> None:
    a, b = signing.generate_signing_key(), signing.generate_signing_key()
    env = sign_envelope(sign_envelope(sign_envelope(Envelope(TYPE, {"x": 1}), a), b), a)
    assert len(env.signatures) == 2
    verify_envelope_signature(env, a.public_key(), what="m")
    verify_envelope_signature(env, b.public_key(), what="m")


def _valid() -> dict[str, Any]:
    return sign_envelope(Envelope(TYPE, {"x": 1}), signing.generate_signing_key()).to_json()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("signatures"), "lacks field"),
        (lambda e: e.update(extra=1), "unknown field"),
        (lambda e: e.update(payload_type="text/plain"), "invalid payload_type"),
        (lambda e: e.update(signed=[1]), "must be a JSON object"),
        (lambda e: e.update(signatures={}), "must be a list"),
        (
            lambda e: e["signatures"][0].update(extra=1),
            "exactly the fields keyid, signed_digest and sig",
        ),
        (lambda e: e["signatures"][0].update(keyid="abc"), "invalid keyid"),
        (lambda e: e["signatures"][0].update(signed_digest="md5:x"), "invalid signed_digest"),
        (lambda e: e["signatures"][0].update(sig="***"), "not base64url"),
        (lambda e: e["signatures"].append(dict(e["signatures"][0])), "same keyid"),
        (lambda e: e["signed"].update(f=1.5), "float"),
    ],
)
def test_malformed_envelopes(mutate: Any, message: str) -> None:
    env = copy.deepcopy(_valid())
    mutate(env)
    with pytest.raises(ProtocolError, match=message):
        Envelope.from_json(env)


def test_wrong_payload_type_expected() -> None:
    with pytest.raises(EnvelopeError, match="expected a"):
        Envelope.from_json(_valid(), expected_type="application/vnd.nestor.x+json;version=1")


def test_truncated_signature_is_rejected() -> None:
    key = signing.generate_signing_key()
    env = sign_envelope(Envelope(TYPE, {"x": 1}), key).to_json()
    env["signatures"][0]["sig"] = env["signatures"][0]["sig"][:40]
    with pytest.raises(SignatureError, match="Ed25519 signatures are 64"):
        verify_envelope_signature(Envelope.from_json(env), key.public_key(), what="m")


@given(st.binary(max_size=64))
def test_b64_round_trip(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data


@given(st.text(max_size=12))
def test_b64decode_only_accepts_canonical_text(text: str) -> None:
    try:
        data = b64decode(text)
    except ProtocolError:
        return
    assert b64encode(data) == text
