"""Binary values inside JSON: base64url without padding (RFC 4648 section 5).

Decoding is strict: a value decodes only from its one canonical spelling, so
two different strings never stand for the same bytes inside a signed object.
"""

from __future__ import annotations

import base64
import binascii
import re

from nestor.errors import ProtocolError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str, *, field: str = "value") -> bytes:
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ProtocolError(f"{field} is not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{field} is not valid base64url: {exc}") from exc
    if b64encode(data) != text:
        raise ProtocolError(f"{field} is not in canonical base64url form")
    return data
