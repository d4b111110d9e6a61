"""Canonical JSON: the one byte form of everything Nestor signs or hashes.

A signature or a digest covers bytes, but parties reason about values. Two
honest implementations must therefore turn the same value into the same bytes,
and a verifier must be able to tell, from the bytes alone, that nothing hides in
them (a second ``"amount"`` key, an ``1e2`` that one parser reads as 100 and
another as 100.0, a lone surrogate that one library replaces and another keeps).
This module is that single choke point; see ``docs/adr/0001-canonical-encoding.md``.

* :func:`encode` writes RFC 8785 (JSON Canonicalization Scheme, JCS) bytes,
  using the ``rfc8785`` package for the serialisation itself, after checking
  that the value lies inside the subset of I-JSON (RFC 7493) that Nestor allows:
  no floats at all, integers within ±(2**53-1), string keys, valid Unicode
  without noncharacters, bounded nesting and size.
* :func:`decode` parses strictly: UTF-8 only, no byte order mark, no duplicate
  keys, no floats or NaN/Infinity, nothing after the value, the same limits.
  Whatever it returns, :func:`encode` accepts.
* :func:`decode_canonical` additionally demands that the bytes are exactly
  what :func:`encode` would have written, so a signed document has one and
  only one byte form.
* :func:`digest`, :func:`digest_bytes` and :func:`parse_digest` fix the textual
  form of a content digest: ``"sha256:"`` followed by 64 lowercase hex digits.

Pure: no file, network or clock access. Errors are
:class:`~nestor.errors.CanonicalEncodingError`; messages name a JSON path such
as ``$.parties[2].name`` or a byte offset, and never echo the contents of
string values (keys, numbers and offsets are shown; values may be confidential).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final, NoReturn, TypeAlias

import rfc8785

from nestor.errors import CanonicalEncodingError

__all__ = [
    "DIGEST_PREFIX",
    "MAX_DEPTH",
    "MAX_ENCODED_BYTES",
    "MAX_SAFE_INTEGER",
    "JsonValue",
    "decode",
    "decode_canonical",
    "digest",
    "digest_bytes",
    "encode",
    "parse_digest",
]

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None
"""A value Nestor can sign: JSON without floats (see the ADR for why).

``float`` is deliberately absent, so the type checker flags a float headed for
a signature before the runtime check in :func:`encode` has to.
"""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer magnitude I-JSON allows (RFC 7493 §2.2).

Beyond it an IEEE 754 double, which is what JavaScript and many JSON
libraries parse numbers into, silently rounds, and two verifiers would hash
different numbers.
"""

MAX_DEPTH: Final = 64
"""Most arrays/objects that may enclose one another.

Protocol objects are a few levels deep; the bound keeps recursive code (here
and in every other implementation) far from stack limits and turns a cyclic
Python structure into an error instead of a crash.
"""

MAX_ENCODED_BYTES: Final = 16 * 1024 * 1024
"""Largest document, in bytes, that :func:`decode` accepts and :func:`encode` writes.

Signed protocol objects are metadata, not data sets: 16 MiB is generous and
bounds the memory an untrusted peer can make a verifier spend.
"""

DIGEST_PREFIX: Final = "sha256:"
"""Algorithm label in front of every digest, so a later algorithm can coexist."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_UTF8_BOM: Final = b"\xef\xbb\xbf"

# Code points I-JSON (RFC 7493 §2.1) forbids in strings: surrogates (a Python
# str can hold them, UTF-8 cannot) and the 66 Unicode noncharacters.
_NONCHARACTERS: Final = "".join(
    [chr(cp) for cp in range(0xFDD0, 0xFDF0)]
    + [chr((plane << 16) | low) for plane in range(17) for low in (0xFFFE, 0xFFFF)]
)
_FORBIDDEN_CODE_POINT = re.compile(f"[{chr(0xD800)}-{chr(0xDFFF)}{_NONCHARACTERS}]")

# For the nesting pre-scan in decode: a string literal (possibly unterminated,
# then it runs to the end and the parser reports the real error) or a bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_KEY_IN_PATH: Final = 40

_PathSegment: TypeAlias = str | int
_ALLOWED_TYPES: Final = frozenset({type(None), bool, int, str, list, dict})


# -- encoding -------------------------------------------------------------------


def encode(value: JsonValue) -> bytes:
    """Return the RFC 8785 canonical bytes of ``value``.

    The value is checked first, in full, against the allowed subset: ``None``,
    ``bool``, ``int`` within :data:`MAX_SAFE_INTEGER`, ``str``, ``list`` and
    ``dict`` with ``str`` keys, each of exactly that built-in type. Exact types,
    not subclasses, because a subclass (an ``Enum`` member, say) can render
    differently in another implementation or a later Python; convert it
    explicitly. Checking before serialising means nothing is half-written, and
    the error can name the JSON path of the offending value.

    Raises:
        CanonicalEncodingError: the value is outside the subset, nests deeper
            than :data:`MAX_DEPTH`, or encodes to more than
            :data:`MAX_ENCODED_BYTES`.
    """
    _check_value(value, [], 0)
    try:
        encoded = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:  # pragma: no cover
        # Unreachable after _check_value; kept so a library change cannot leak
        # a foreign exception type to callers.
        raise CanonicalEncodingError(f"cannot canonically encode value: {exc}") from exc
    if len(encoded) > MAX_ENCODED_BYTES:
        raise CanonicalEncodingError(
            f"canonical encoding is {len(encoded)} bytes, more than the limit of "
            f"{MAX_ENCODED_BYTES} bytes (MAX_ENCODED_BYTES)",
            hint="signed protocol objects carry metadata; reference large data by digest",
        )
    return encoded


def _check_value(value: object, path: list[_PathSegment], depth: int) -> None:
    """Raise unless ``value`` (at ``path``, inside ``depth`` containers) is encodable."""
    if type(value) not in _ALLOWED_TYPES:
        _fail_unsupported(value, path)
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            _fail(
                path,
                "integer is outside the I-JSON range ±(2**53-1)",
                hint="carry larger integers as decimal strings",
            )
        return
    if isinstance(value, str):
        _check_text(value, path, "string")
        return
    if depth >= MAX_DEPTH:
        _fail(path, f"nesting is deeper than {MAX_DEPTH} levels (MAX_DEPTH), or cyclic")
    if isinstance(value, list):
        for index, item in enumerate(value):
            path.append(index)
            _check_value(item, path, depth + 1)
            path.pop()
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                _fail(
                    path,
                    f"object key of type {type(key).__name__} is not a string",
                    hint="JSON object keys are strings; convert keys explicitly",
                )
            path.append(key)
            _check_text(key, path, "object key")
            _check_value(item, path, depth + 1)
            path.pop()


def _check_text(text: str, path: list[_PathSegment], what: str) -> None:
    problem = _forbidden_code_point(text)
    if problem is not None:
        _fail(path, f"{what} contains {problem}, which I-JSON forbids")


def _forbidden_code_point(text: str) -> str | None:
    """Describe the first surrogate or noncharacter in ``text`` (I-JSON §2.1), if any.

    A Python ``str`` can hold surrogates, which UTF-8 cannot encode and other
    languages' strings cannot hold; noncharacters are valid UTF-8 but I-JSON
    forbids them as not meant for interchange.
    """
    bad = _FORBIDDEN_CODE_POINT.search(text)
    if bad is None:
        return None
    code_point = ord(bad.group())
    kind = "surrogate code point" if 0xD800 <= code_point <= 0xDFFF else "Unicode noncharacter"
    return f"{kind} U+{code_point:04X} at character {bad.start()}"


def _fail_unsupported(value: object, path: list[_PathSegment]) -> NoReturn:
    """Raise for a value whose Python type has no place in canonical JSON."""
    kind = type(value)
    name = kind.__name__
    if isinstance(value, float):
        _fail(
            path,
            f"{name} is not allowed: canonical protocol objects contain no floats",
            hint="use an integer in a fixed unit, or a decimal string",
        )
    if isinstance(value, bytes | bytearray | memoryview):
        _fail(
            path,
            f"{name} is not a JSON value",
            hint="carry bytes as a base64url string without padding",
        )
    if isinstance(value, tuple):
        _fail(path, f"{name} is not a JSON value", hint="use a list")
    if isinstance(value, set | frozenset):
        _fail(path, f"{name} is not a JSON value", hint="use a list in a defined order")
    for base in (bool, int, str, list, dict):
        if isinstance(value, base):
            _fail(
                path,
                f"{name} is a subclass of {base.__name__}; only the exact built-in "
                "type is accepted",
                hint=f"convert explicitly, e.g. {base.__name__}(value) or value.value",
            )
    _fail(path, f"{name} is not a JSON value")


def _fail(path: list[_PathSegment], reason: str, *, hint: str | None = None) -> NoReturn:
    raise CanonicalEncodingError(
        f"cannot canonically encode {_format_path(path)}: {reason}", hint=hint
    )


def _format_path(path: list[_PathSegment] | tuple[_PathSegment, ...]) -> str:
    """Render a path as JSONPath-like text: ``$``, ``$.parties[2].name``, ``$["a b"]``.

    Keys that are not identifiers are quoted with JSON escapes (ASCII only),
    and long keys are shortened, so the result is always safe to print.
    """
    parts = ["$"]
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _IDENTIFIER.fullmatch(segment) and len(segment) <= _MAX_KEY_IN_PATH:
            parts.append(f".{segment}")
        else:
            parts.append(f"[{_show_key(segment)}]")
    return "".join(parts)


def _show_key(key: str) -> str:
    """A key as an ASCII-only JSON string literal, shortened if long."""
    if len(key) <= _MAX_KEY_IN_PATH:
        return json.dumps(key)
    return json.dumps(key[:_MAX_KEY_IN_PATH])[:-1] + '..."'


# -- decoding -------------------------------------------------------------------


def decode(data: bytes) -> JsonValue:
    """Parse ``data`` as strict I-JSON, within Nestor's subset.

    Accepts insignificant whitespace and any key order (use
    :func:`decode_canonical` to forbid them). Rejects, with a message naming
    the byte offset or JSON path where practical: input over
    :data:`MAX_ENCODED_BYTES`, a UTF-8 byte order mark, invalid UTF-8
    (including encoded surrogates), nesting deeper than :data:`MAX_DEPTH`,
    duplicate object keys (also when spelled with different escapes),
    ``NaN``/``Infinity``, any number with a fraction or exponent, integers
    outside ±(2**53-1), escaped lone surrogates and noncharacters, and anything
    after the value.

    Every rejection is a :class:`CanonicalEncodingError`; no other exception
    type escapes for any input bytes.
    """
    raw = _require_bytes(data, "decode")
    if len(raw) > MAX_ENCODED_BYTES:
        raise CanonicalEncodingError(
            f"input is {len(raw)} bytes, more than the limit of {MAX_ENCODED_BYTES} "
            "bytes (MAX_ENCODED_BYTES): too large"
        )
    if not raw.strip(b" \t\r\n"):
        raise CanonicalEncodingError("not valid JSON: empty input")
    if raw.startswith(_UTF8_BOM):
        raise CanonicalEncodingError(
            "not valid JSON: input starts with a UTF-8 byte order mark",
            hint="write JSON as UTF-8 without a BOM (RFC 8259 §8.1)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalEncodingError(
            f"not valid UTF-8: {exc.reason} at byte offset {exc.start}"
        ) from None
    _check_nesting(text)
    try:
        value: JsonValue = json.loads(
            text,
            object_pairs_hook=_unique_keys_object,
            parse_int=_parse_int,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        offset = _byte_offset(text, exc.pos)
        if exc.msg == "Extra data":
            message = f"not valid JSON: trailing data after the value at byte offset {offset}"
        else:
            # json's own messages sometimes end in "at" before its line/column suffix.
            reason = exc.msg.removesuffix(" at")
            message = f"not valid JSON: {reason} at byte offset {offset}"
        raise CanonicalEncodingError(message) from None
    _check_decoded_strings(value, [])
    return value


def decode_canonical(data: bytes) -> JsonValue:
    """Parse ``data`` like :func:`decode` and require it to be exactly canonical.

    Use this for anything that is signed or hashed: accepting only the one
    canonical byte form means a document cannot be re-serialised (reordered,
    re-spaced, re-escaped) into a different byte string that still carries the
    same signature, and a verifier never hashes bytes other than those shown.
    The message gives the offset of the first byte that differs from the
    canonical encoding.
    """
    raw = _require_bytes(data, "decode_canonical")
    value = decode(raw)
    expected = encode(value)
    if expected != raw:
        offset = _first_difference(raw, expected)
        raise CanonicalEncodingError(
            f"not in canonical form: first difference at byte offset {offset} "
            f"(found {_describe_byte(raw, offset)}, canonical form has "
            f"{_describe_byte(expected, offset)})",
            hint="produce signed bytes with nestor.protocol.canonical.encode, unmodified",
        )
    return value


def _require_bytes(data: object, caller: str) -> bytes:
    """Accept ``bytes`` (and bytes-like buffers); refuse text with a useful error."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    hint = "encode text as UTF-8 first" if isinstance(data, str) else None
    raise CanonicalEncodingError(f"{caller} expects bytes, not {type(data).__name__}", hint=hint)


def _check_nesting(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive parser sees it.

    Python's parser recurses per level and would raise RecursionError (not a
    protocol error) a thousand or so levels down; brackets inside string
    literals are skipped.
    """
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        char = text[match.start()]
        if char == "[" or char == "{":
            depth += 1
            if depth > MAX_DEPTH:
                raise CanonicalEncodingError(
                    f"nesting is deeper than {MAX_DEPTH} levels (MAX_DEPTH) "
                    f"at byte offset {_byte_offset(text, match.start())}"
                )
        elif char == "]" or char == "}":
            depth -= 1


def _unique_keys_object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    """Build an object, refusing a repeated key (I-JSON §2.3).

    Parsers disagree on which duplicate wins, so a document with two values
    for one key means different things to different verifiers. Keys are
    compared after unescaping: ``"a"`` and ``"\\u0061"`` are the same key.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CanonicalEncodingError(
                    f"not valid I-JSON: duplicate object key {_show_key(key)}"
                )
            seen.add(key)
    return obj


def _parse_int(literal: str) -> int:
    """Parse an integer literal, refusing magnitudes beyond ±(2**53-1).

    The digit count is checked before conversion, so a megabyte of digits
    neither costs quadratic time nor trips Python's int-conversion limit.
    """
    digits = len(literal) - literal.startswith("-")
    if digits <= len(str(MAX_SAFE_INTEGER)):
        number = int(literal)
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return number
    shown = literal if len(literal) <= 24 else literal[:20] + "..."
    raise CanonicalEncodingError(
        f"not valid I-JSON: integer {shown} is outside the range ±(2**53-1)",
        hint="carry larger integers as decimal strings",
    )


def _reject_float(literal: str) -> NoReturn:
    shown = literal if len(literal) <= 24 else literal[:20] + "..."
    raise CanonicalEncodingError(
        f"not allowed: number {shown} has a fraction or exponent, and canonical protocol "
        "objects contain no floats",
        hint="use an integer in a fixed unit, or a decimal string",
    )


def _reject_constant(literal: str) -> NoReturn:
    raise CanonicalEncodingError(f"not valid JSON: non-finite number literal {literal}")


def _check_decoded_strings(value: JsonValue, path: list[_PathSegment]) -> None:
    """Reject escaped surrogates and noncharacters, which the parser lets through.

    Strict UTF-8 decoding already refuses encoded surrogates; this catches
    ``"\\ud800"``-style escapes and noncharacters, naming the JSON path.
    """
    if isinstance(value, str):
        _check_decoded_text(value, path, "string")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path.append(index)
            _check_decoded_strings(item, path)
            path.pop()
    elif isinstance(value, dict):
        for key, item in value.items():
            path.append(key)
            _check_decoded_text(key, path, "object key")
            _check_decoded_strings(item, path)
            path.pop()


def _check_decoded_text(text: str, path: list[_PathSegment], what: str) -> None:
    problem = _forbidden_code_point(text)
    if problem is not None:
        raise CanonicalEncodingError(
            f"not valid I-JSON: {what} at {_format_path(path)} contains {problem}"
        )


def _byte_offset(text: str, char_index: int) -> int:
    """Convert a character index in decoded text back to a byte offset in the input."""
    return len(text[:char_index].encode("utf-8"))


def _first_difference(left: bytes, right: bytes) -> int:
    """Offset of the first differing byte, or the shorter length if one is a prefix."""
    limit = min(len(left), len(right))
    block = 4096
    start = 0
    while start < limit and left[start : start + block] == right[start : start + block]:
        start += block
    for index in range(start, min(start + block, limit)):
        if left[index] != right[index]:
            return index
    return limit


def _describe_byte(data: bytes, offset: int) -> str:
    return f"0x{data[offset]:02x}" if offset < len(data) else "end of data"


# -- digests --------------------------------------------------------------------


def digest(value: JsonValue) -> str:
    """``"sha256:<hex>"`` of the canonical encoding of ``value``.

    Hashing the canonical bytes makes the digest a function of the value, so
    parties that built the same object independently agree on its digest.
    """
    return digest_bytes(encode(value))


def digest_bytes(data: bytes) -> str:
    """``"sha256:<hex>"`` of raw bytes (ciphertexts, files, already-canonical documents).

    The algorithm label travels with the hash so a reader never has to guess
    it, and a later algorithm can be introduced without ambiguity.
    """
    raw = _require_bytes(data, "digest_bytes")
    return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def parse_digest(text: str) -> bytes:
    """Return the 32 hash bytes of a ``"sha256:"`` + 64 lowercase hex digest string.

    Exactly one spelling is accepted (lowercase, no whitespace, no other
    algorithm) so that digests compare correctly as strings, too.
    """
    if not isinstance(text, str) or _DIGEST.fullmatch(text) is None:
        shown = repr(text) if len(repr(text)) <= 90 else repr(text)[:80] + "..."
        raise CanonicalEncodingError(
            f"malformed digest {shown}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return bytes.fromhex(text[len(DIGEST_PREFIX) :])
