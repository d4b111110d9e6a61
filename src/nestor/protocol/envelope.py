"""One signed envelope for every Nestor message (party cards, contracts,
key grants, job requests, receipts, log entries).

JSON shape (docs/formats.md, "Signed envelopes")::

    {"payload_type": "application/vnd.nestor.<kind>+json;version=<n>",
     "signed": {...the message...},
     "signatures": [{"keyid": "sha256:<hex>", "signed_digest": "sha256:<hex>",
                     "sig": "<base64url>"}, ...]}

Each signature is Ed25519 over the DSSE v1 pre-authentication encoding
``PAE(payload_type, JCS(signed))``::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where LEN is the ASCII decimal byte length. The payload type is inside what is
signed, so a signature over one kind of message can never be replayed as
another kind. The message stays readable JSON while the signed bytes are its
RFC 8785 canonical form.

``signed_digest`` is the digest (``nestor.protocol.canonical.digest``) of the
``signed`` object the signer saw. It is not what makes a signature valid --
the Ed25519 signature is -- but it lets a verifier say *why* a signature
fails: over an older version, or over content edited after signing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nestor.crypto import signing
from nestor.errors import EnvelopeError, SignatureError
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode, b64encode

_PAYLOAD_TYPE = re.compile(r"application/vnd\.nestor\.[a-z0-9.-]+\+json;version=[0-9]+")
_KEY_ID = re.compile(r"sha256:[0-9a-f]{64}")
MAX_SIGNATURES = 1024


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


@dataclass(frozen=True)
class Signature:
    keyid: str
    signed_digest: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    signed: dict[str, Any]
    signatures: tuple[Signature, ...] = field(default=())

    @cached_property
    def canonical_signed(self) -> bytes:
        """JCS(signed), computed once: a 100-party contract is verified with
        one encoding, not one per signature. Envelopes are never mutated in
        place (every change builds a new one), so the cache cannot go stale."""
        return canonical.encode(self.signed)

    def signing_input(self) -> bytes:
        return pae(self.payload_type, self.canonical_signed)

    def digest(self) -> str:
        """Digest of the signed content: ``sha256:`` + hex of SHA-256(JCS(signed))."""
        return canonical.digest_bytes(self.canonical_signed)

    def signature_by(self, keyid: str) -> Signature | None:
        for s in self.signatures:
            if s.keyid == keyid:
                return s
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "payload_type": self.payload_type,
            "signed": self.signed,
            "signatures": [
                {"keyid": s.keyid, "signed_digest": s.signed_digest, "sig": b64encode(s.sig)}
                for s in self.signatures
            ],
        }

    @classmethod
    def from_json(cls, obj: object, *, expected_type: str | None = None) -> Envelope:
        """Check the envelope's structure (not its signatures)."""
        if not isinstance(obj, Mapping):
            raise EnvelopeError("a signed envelope must be a JSON object")
        unknown = set(obj) - {"payload_type", "signed", "signatures"}
        missing = {"payload_type", "signed", "signatures"} - set(obj)
        if missing:
            raise EnvelopeError(f"signed envelope lacks field(s): {', '.join(sorted(missing))}")
        if unknown:
            raise EnvelopeError(
                f"signed envelope has unknown field(s): {', '.join(sorted(unknown))}"
            )
        ptype = obj["payload_type"]
        if not isinstance(ptype, str) or not _PAYLOAD_TYPE.fullmatch(ptype):
            raise EnvelopeError(f"invalid payload_type {ptype!r}")
        if expected_type is not None and ptype != expected_type:
            raise EnvelopeError(f"expected a {expected_type} envelope, found {ptype}")
        signed = obj["signed"]
        if not isinstance(signed, dict):
            raise EnvelopeError("the envelope's signed part must be a JSON object")
        raw_sigs = obj["signatures"]
        if not isinstance(raw_sigs, list) or len(raw_sigs) > MAX_SIGNATURES:
            raise EnvelopeError("signatures must be a list of at most 1024 entries")
        sigs: list[Signature] = []
        for i, entry in enumerate(raw_sigs):
            if not isinstance(entry, Mapping) or set(entry) != {"keyid", "signed_digest", "sig"}:
                raise EnvelopeError(
                    f"signature {i} must have exactly the fields keyid, signed_digest and sig"
                )
            keyid, digest, sig = entry["keyid"], entry["signed_digest"], entry["sig"]
            if not isinstance(keyid, str) or not _KEY_ID.fullmatch(keyid):
                raise EnvelopeError(f"signature {i} has an invalid keyid")
            if not isinstance(digest, str) or not _KEY_ID.fullmatch(digest):
                raise EnvelopeError(f"signature {i} has an invalid signed_digest")
            sigs.append(Signature(keyid, digest, b64decode(sig, field=f"signature {i}")))
        if len({s.keyid for s in sigs}) != len(sigs):
            raise EnvelopeError("two signatures carry the same keyid")
        canonical.encode(signed)  # raises if the message cannot be signed at all
        return cls(ptype, dict(signed), tuple(sigs))


def sign_envelope(envelope: Envelope, private_key: Ed25519PrivateKey) -> Envelope:
    """Return ``envelope`` with one more signature (replacing an old one by the same key)."""
    keyid = signing.key_id(private_key.public_key())
    sig = signing.sign(private_key, envelope.signing_input())
    others = tuple(s for s in envelope.signatures if s.keyid != keyid)
    mine = Signature(keyid, envelope.digest(), sig)
    signed = Envelope(envelope.payload_type, envelope.signed, (*others, mine))
    signed.__dict__["canonical_signed"] = envelope.canonical_signed  # same content
    return signed


def verify_envelope_signature(
    envelope: Envelope, public_key: Ed25519PublicKey, *, what: str
) -> None:
    """Raise :class:`SignatureError` unless ``public_key`` signed ``envelope``."""
    keyid = signing.key_id(public_key)
    s = envelope.signature_by(keyid)
    if s is None:
        raise SignatureError(f"{what} carries no signature by key {keyid}")
    current = envelope.digest()
    if s.signed_digest != current:
        # The signer's own record of what it signed disagrees with this
        # content: refuse, and say why, instead of a bare "does not verify".
        raise SignatureError(
            f"the signature on {what} by key {keyid} was made over other content "
            f"({s.signed_digest}), not over this content ({current}): it was edited after "
            "signing",
            hint="the signer must review and sign the current content",
        )
    signing.verify(public_key, s.sig, envelope.signing_input(), what=what)
