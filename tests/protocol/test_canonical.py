"""Tests for nestor.protocol.canonical.

Four kinds of evidence: properties over generated I-JSON values (hypothesis),
RFC 8785 known answers kept as files in tests/vectors/canonical/, every
rejection the module promises, and the digest string format.
"""

from __future__ import annotations

import enum
import hashlib
import json
import random
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nestor.errors import CanonicalEncodingError, ProtocolError
from nestor.protocol.canonical import (
    DIGEST_PREFIX,
    MAX_DEPTH,
    MAX_ENCODED_BYTES,
    MAX_SAFE_INTEGER,
    JsonValue,
    decode,
    decode_canonical,
    digest,
    digest_bytes,
    encode,
    parse_digest,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "canonical"

JsonPath = tuple[str | int, ...]


# -- helpers --------------------------------------------------------------------


def encode_any(value: object) -> bytes:
    """Call encode with a value the type checker would (rightly) refuse."""
    return encode(cast(JsonValue, value))


def same(left: object, right: object) -> bool:
    """Equality that also compares types, so True is not 1 and 1 is not 1.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return left == right


def utf16_code_units(text: str) -> list[int]:
    """UTF-16 code units worked out by hand: the order RFC 8785 §3.2.3 sorts keys by."""
    units: list[int] = []
    for char in text:
        code_point = ord(char)
        if code_point >= 0x10000:
            offset = code_point - 0x10000
            units += [0xD800 + (offset >> 10), 0xDC00 + (offset & 0x3FF)]
        else:
            units.append(code_point)
    return units


def reorder(value: JsonValue, rnd: random.Random) -> JsonValue:
    """The same value with every object's insertion order shuffled."""
    if isinstance(value, list):
        return [reorder(item, rnd) for item in value]
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: reorder(item, rnd) for key, item in items}
    return value


def nodes(value: JsonValue, path: JsonPath = ()) -> list[tuple[JsonPath, JsonValue]]:
    """Every node of a value (itself included) with its path."""
    found: list[tuple[JsonPath, JsonValue]] = [(path, value)]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += nodes(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            found += nodes(item, (*path, key))
    return found


def replace_at(value: JsonValue, path: JsonPath, new: JsonValue) -> JsonValue:
    """A copy of ``value`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list) and isinstance(head, int):
        items = list(value)
        items[head] = replace_at(value[head], rest, new)
        return items
    if isinstance(value, dict) and isinstance(head, str):
        members = dict(value)
        members[head] = replace_at(value[head], rest, new)
        return members
    raise AssertionError(f"path {path!r} does not fit the value")


def load_cases(name: str) -> list[Any]:
    cases: list[dict[str, Any]] = json.loads((VECTORS / name).read_text("utf-8"))["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


def case_input(case: dict[str, Any]) -> bytes:
    if "input_hex" in case:
        return bytes.fromhex(case["input_hex"])
    text: str = case["input"]
    return text.encode("utf-8")


VECTOR_NAMES = sorted(path.name for path in (VECTORS / "input").glob("*.json"))


# -- strategies -----------------------------------------------------------------

NONCHARACTERS = [chr(cp) for cp in range(0xFDD0, 0xFDF0)] + [
    chr((plane << 16) | low) for plane in range(17) for low in (0xFFFE, 0xFFFF)
]
# Characters that stress escaping and UTF-16 ordering, mixed into arbitrary text.
AWKWARD = ['"', "\\", "/", "\x00", "\b", "\n", "\x1f", "\x7f", "\x80", "\u2028", "é", "\u0301"]
AWKWARD += ["\ue000", "\ufb33", "\ufffd", "\U00010000", "\U0001f600", "\U0010fffd"]
CHARS = st.characters(codec="utf-8", exclude_characters=NONCHARACTERS)  # no surrogates
TEXT = st.text(alphabet=CHARS | st.sampled_from(AWKWARD), max_size=10)
INTEGERS = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.sampled_from(
    [0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]
)
SCALARS: st.SearchStrategy[JsonValue] = st.none() | st.booleans() | INTEGERS | TEXT


def _extend(children: st.SearchStrategy[JsonValue]) -> st.SearchStrategy[JsonValue]:
    return st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)


JSON_VALUES: st.SearchStrategy[JsonValue] = st.recursive(SCALARS, _extend, max_leaves=20)

# Bytes that look like JSON often enough to reach the parser's corners,
# including a lone surrogate (encoded with surrogatepass, i.e. invalid UTF-8).
JSONISH_BYTES = st.text(
    alphabet=st.sampled_from(list('{}[]:,"\\ \n-+.0123456789eEtrufalsnNI/ux\ud800é\ufeff')),
    max_size=40,
).map(lambda text: text.encode("utf-8", "surrogatepass"))


# -- properties -----------------------------------------------------------------


@settings(deadline=None)
@given(st.dictionaries(TEXT, JSON_VALUES, max_size=8), st.data())
def test_key_insertion_order_does_not_change_the_encoding(
    members: dict[str, JsonValue], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(list(members.items())))
    assert encode(dict(shuffled)) == encode(members)


@settings(deadline=None)
@given(JSON_VALUES, st.randoms(use_true_random=False))
def test_equal_values_encode_identically_at_any_depth(value: JsonValue, rnd: random.Random) -> None:
    other = reorder(value, rnd)
    assert same(other, value)
    assert encode(other) == encode(value)
    assert digest(other) == digest(value)


@settings(deadline=None)
@given(JSON_VALUES)
def test_decode_inverts_encode(value: JsonValue) -> None:
    encoded = encode(value)
    assert same(decode(encoded), value)
    assert same(decode_canonical(encoded), value)
    assert encode(decode(encoded)) == encoded


@settings(deadline=None)
@given(JSON_VALUES)
def test_encoding_is_json_with_keys_in_utf16_order(value: JsonValue) -> None:
    """An independent parser (the stdlib) reads the same value, keys sorted."""

    def check_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        assert keys == sorted(keys, key=utf16_code_units)
        return dict(pairs)

    encoded = encode(value)
    assert same(json.loads(encoded, object_pairs_hook=check_order), value)
    assert b"\n" not in encoded.replace(b"\\n", b"")  # no insignificant whitespace
    encoded.decode("utf-8")  # strict UTF-8


@settings(deadline=None)
@given(JSON_VALUES, st.data())
def test_any_change_changes_the_digest(value: JsonValue, data: st.DataObject) -> None:
    path, node = data.draw(st.sampled_from(nodes(value)), label="node")
    new: JsonValue
    kinds = ["replace"]
    if isinstance(node, dict):
        kinds += ["add key", "remove key"] if node else ["add key"]
    if isinstance(node, list):
        kinds += ["insert item", "remove item"] if node else ["insert item"]
        if len({encode(item) for item in node}) > 1:
            kinds.append("reorder")
    kind = data.draw(st.sampled_from(kinds), label="change")

    if kind == "replace":
        new = data.draw(JSON_VALUES.filter(lambda candidate: not same(candidate, node)))
    elif isinstance(node, dict):
        members: dict[str, JsonValue] = node
        if kind == "add key":
            key = data.draw(TEXT.filter(lambda k: k not in members))
            new = {**members, key: data.draw(JSON_VALUES)}
        else:
            key = data.draw(st.sampled_from(sorted(members)))
            new = {k: v for k, v in members.items() if k != key}
    else:
        assert isinstance(node, list)
        items: list[JsonValue] = node
        if kind == "insert item":
            index = data.draw(st.integers(0, len(items)))
            new = [*items[:index], data.draw(JSON_VALUES), *items[index:]]
        elif kind == "remove item":
            index = data.draw(st.integers(0, len(items) - 1))
            new = items[:index] + items[index + 1 :]
        else:
            # Swap two elements that differ, so the order really changes.
            encoded = [encode(item) for item in items]
            pairs = [
                (i, j)
                for i in range(len(items))
                for j in range(i + 1, len(items))
                if encoded[i] != encoded[j]
            ]
            i, j = data.draw(st.sampled_from(pairs))
            new = list(items)
            new[i], new[j] = new[j], new[i]

    changed = replace_at(value, path, new)
    assert not same(changed, value)
    assert encode(changed) != encode(value)
    assert digest(changed) != digest(value)


def _decode_outcome(data: bytes) -> None:
    """decode and decode_canonical return a value or raise CanonicalEncodingError, only."""
    try:
        value = decode(data)
    except CanonicalEncodingError:
        pass
    else:
        # Whatever decode accepts, encode accepts, and its canonical form round-trips.
        canonical = encode(value)
        assert same(decode_canonical(canonical), value)
    try:
        value = decode_canonical(data)
    except CanonicalEncodingError:
        pass
    else:
        assert encode(value) == data


@settings(deadline=None)
@given(st.binary(max_size=256))
def test_decode_arbitrary_bytes_only_raises_canonical_encoding_error(data: bytes) -> None:
    _decode_outcome(data)


@settings(deadline=None)
@given(JSONISH_BYTES)
def test_decode_json_like_bytes_only_raises_canonical_encoding_error(data: bytes) -> None:
    _decode_outcome(data)


@settings(deadline=None)
@given(JSON_VALUES, st.data())
def test_decode_damaged_encodings_only_raises_canonical_encoding_error(
    value: JsonValue, data: st.DataObject
) -> None:
    encoded = bytearray(encode(value))
    index = data.draw(st.integers(0, len(encoded)))
    action = data.draw(st.sampled_from(["insert", "replace", "delete"]))
    byte = data.draw(st.integers(0, 255))
    if action == "insert":
        encoded.insert(index, byte)
    elif index < len(encoded):
        if action == "replace":
            encoded[index] = byte
        else:
            del encoded[index]
    _decode_outcome(bytes(encoded))


@given(JSON_VALUES)
def test_digest_is_sha256_of_the_canonical_encoding(value: JsonValue) -> None:
    encoded = encode(value)
    assert digest(value) == digest_bytes(encoded)
    assert parse_digest(digest(value)) == hashlib.sha256(encoded).digest()


# -- RFC 8785 known answers (tests/vectors/canonical) ----------------------------


def test_vector_files_are_present() -> None:
    assert "rfc8785-3.2.3-sorting.json" in VECTOR_NAMES
    assert len(VECTOR_NAMES) >= 8
    assert sorted(path.name for path in (VECTORS / "output").glob("*.json")) == VECTOR_NAMES


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_input_encodes_to_expected_output(name: str) -> None:
    source = (VECTORS / "input" / name).read_bytes()
    expected = (VECTORS / "output" / name).read_bytes()
    assert encode(decode(source)) == expected


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_output_is_accepted_as_canonical(name: str) -> None:
    source = (VECTORS / "input" / name).read_bytes()
    expected = (VECTORS / "output" / name).read_bytes()
    value = decode_canonical(expected)
    assert same(value, decode(source))
    assert encode(value) == expected
    assert digest(value) == digest_bytes(expected)
    with pytest.raises(CanonicalEncodingError, match="not in canonical form"):
        decode_canonical(source)  # every input file is written non-canonically


def test_rfc8785_sorting_example_from_python_values() -> None:
    """RFC 8785 §3.2.3: keys sort by UTF-16 code units, not by code points."""
    value: dict[str, JsonValue] = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (VECTORS / "output" / "rfc8785-3.2.3-sorting.json").read_bytes()
    assert encode(value) == expected
    # The example discriminates: code-point (and UTF-8 byte) order would put
    # U+FB33 before U+1F600.
    assert sorted(value)[-2:] == ["\ufb33", "\U0001f600"]
    order = [key for key, _ in json.loads(expected, object_pairs_hook=lambda pairs: pairs)]
    assert order[-2:] == ["\U0001f600", "\ufb33"]


def test_rfc8785_string_escaping_from_python_values() -> None:
    """RFC 8785 §3.2.2.2: only ", \\ and C0 controls are escaped, short forms first."""
    assert encode('\u20ac$\x0f\nA\'B"\\\\"/') == b'"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'
    assert encode("\b\t\n\f\r") == b'"\\b\\t\\n\\f\\r"'
    assert encode("\x00\x1f\x7f") == b'"\\u0000\\u001f\x7f"'
    assert encode("\u2028</script>") == b'"\xe2\x80\xa8</script>"'


def test_rfc8785_integers() -> None:
    assert encode([0, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[0,-1,9007199254740991,-9007199254740991]"
    )
    assert encode({"t": True, "f": False, "n": None}) == b'{"f":false,"n":null,"t":true}'


@pytest.mark.parametrize("case", load_cases("rejected.json"))
def test_decode_rejects_vector(case: dict[str, Any]) -> None:
    with pytest.raises(CanonicalEncodingError) as raised:
        decode(case_input(case))
    assert case["error"] in raised.value.message


@pytest.mark.parametrize("case", load_cases("noncanonical.json"))
def test_decode_canonical_rejects_vector(case: dict[str, Any]) -> None:
    data = case_input(case)
    decode(data)  # valid JSON ...
    with pytest.raises(CanonicalEncodingError, match="not in canonical form") as raised:
        decode_canonical(data)  # ... but not the canonical bytes
    assert f"first difference at byte offset {case['first_difference']} " in raised.value.message


# -- encode rejections ------------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Names(list[str]):
    pass


ENCODE_REJECTIONS = [
    pytest.param({1: "x"}, "encode $: object key of type int is not a string", id="int-key"),
    pytest.param({"a": {None: 1}}, "$.a: object key of type NoneType", id="none-key"),
    pytest.param({(1, 2): 1}, "object key of type tuple", id="tuple-key"),
    pytest.param(MAX_SAFE_INTEGER + 1, "outside the I-JSON range", id="int-above"),
    pytest.param(-MAX_SAFE_INTEGER - 1, "outside the I-JSON range", id="int-below"),
    pytest.param({"n": [2**64]}, "$.n[0]: integer is outside", id="int-path"),
    pytest.param(float("nan"), "float is not allowed", id="nan"),
    pytest.param(float("inf"), "float is not allowed", id="infinity"),
    pytest.param(float("-inf"), "float is not allowed", id="negative-infinity"),
    pytest.param(1.5, "float is not allowed", id="float"),
    pytest.param(1.0, "float is not allowed", id="integral-float"),
    pytest.param(-0.0, "float is not allowed", id="negative-zero"),
    pytest.param({"ratio": 0.5}, "$.ratio: float is not allowed", id="float-path"),
    pytest.param(b"x", "bytes is not a JSON value", id="bytes"),
    pytest.param(bytearray(b"x"), "bytearray is not a JSON value", id="bytearray"),
    pytest.param(memoryview(b"x"), "memoryview is not a JSON value", id="memoryview"),
    pytest.param((1, 2), "tuple is not a JSON value", id="tuple"),
    pytest.param({1, 2}, "set is not a JSON value", id="set"),
    pytest.param(frozenset(), "frozenset is not a JSON value", id="frozenset"),
    pytest.param(object(), "object is not a JSON value", id="object"),
    pytest.param(Decimal("1.5"), "Decimal is not a JSON value", id="decimal"),
    pytest.param(1j, "complex is not a JSON value", id="complex"),
    pytest.param(Colour.RED, "Colour is a subclass of str", id="str-enum"),
    pytest.param(Level.HIGH, "Level is a subclass of int", id="int-enum"),
    pytest.param(OrderedDict(a=1), "OrderedDict is a subclass of dict", id="ordered-dict"),
    pytest.param(Names(["a"]), "Names is a subclass of list", id="list-subclass"),
    pytest.param("\ud800", "surrogate code point U+D800 at character 0", id="lone-surrogate"),
    pytest.param("ab\udfff", "U+DFFF at character 2", id="lone-low-surrogate"),
    pytest.param("\ud83d\ude00", "surrogate code point U+D83D", id="unjoined-pair"),
    pytest.param({"\udc00": 1}, 'encode $["\\udc00"]: object key contains surrogate', id="key"),
    pytest.param("\ufffe", "Unicode noncharacter U+FFFE", id="noncharacter"),
    pytest.param("\ufdd0", "Unicode noncharacter U+FDD0", id="noncharacter-fdd0"),
    pytest.param(["\U0010ffff"], "$[0]: string contains Unicode noncharacter U+10FFFF", id="nc"),
    pytest.param(
        {"parties": [{"name": "a"}, {"name": "b"}, {"name": b"c"}]},
        "cannot canonically encode $.parties[2].name: bytes",
        id="path-example",
    ),
    pytest.param({"a b": {"\u00fcber": 1.0}}, '$["a b"]["\\u00fcber"]: float', id="quoted-path"),
    pytest.param({"k" * 60: None, "x": {"k" * 60: [set()]}}, '$.x["kkkk', id="long-key-path"),
]


@pytest.mark.parametrize(("value", "expected"), ENCODE_REJECTIONS)
def test_encode_rejects(value: object, expected: str) -> None:
    with pytest.raises(CanonicalEncodingError) as raised:
        encode_any(value)
    assert expected in raised.value.message
    with pytest.raises(CanonicalEncodingError):
        digest(cast(JsonValue, value))


def test_encode_hints_say_what_to_do() -> None:
    with pytest.raises(CanonicalEncodingError) as raised:
        encode_any({"key": b"\x00"})
    assert raised.value.hint is not None
    assert "base64url" in raised.value.hint
    with pytest.raises(CanonicalEncodingError) as raised:
        encode_any({"fraction": 0.25})
    assert raised.value.hint is not None
    assert "decimal string" in raised.value.hint


def test_errors_are_protocol_errors_and_do_not_echo_string_contents() -> None:
    with pytest.raises(ProtocolError) as raised:
        encode_any({"token": "hunter2\ud800"})
    assert "hunter2" not in raised.value.diagnostics()
    with pytest.raises(ProtocolError) as raised:
        decode(b'{"token":"hunter2\\ud800"}')
    assert "hunter2" not in raised.value.diagnostics()


def test_encode_keeps_bool_and_int_apart() -> None:
    assert encode(True) == b"true"
    assert encode(1) == b"1"
    assert encode(False) == b"false"
    assert encode(0) == b"0"
    assert digest({"a": True}) != digest({"a": 1})


def nested_lists(depth: int) -> JsonValue:
    value: JsonValue = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_objects(depth: int) -> JsonValue:
    value: JsonValue = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_encode_depth_limit() -> None:
    assert encode(nested_lists(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert decode(encode(nested_objects(MAX_DEPTH))) == nested_objects(MAX_DEPTH)
    for too_deep in (nested_lists(MAX_DEPTH + 1), nested_objects(MAX_DEPTH + 1)):
        with pytest.raises(CanonicalEncodingError, match="nesting is deeper than 64 levels"):
            encode(too_deep)


def test_encode_cycle_is_an_error_not_a_crash() -> None:
    cycle: list[JsonValue] = []
    cycle.append(cycle)
    with pytest.raises(CanonicalEncodingError, match="or cyclic"):
        encode(cycle)
    members: dict[str, JsonValue] = {}
    members["self"] = members
    with pytest.raises(CanonicalEncodingError, match="or cyclic"):
        encode(members)


def test_encode_size_limit() -> None:
    assert len(encode("x" * (MAX_ENCODED_BYTES - 2))) == MAX_ENCODED_BYTES
    with pytest.raises(CanonicalEncodingError, match="more than the limit"):
        encode("x" * (MAX_ENCODED_BYTES - 1))


# -- decode rejections and limits -------------------------------------------------


def test_decode_depth_limit() -> None:
    assert decode(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == nested_lists(MAX_DEPTH)
    with pytest.raises(CanonicalEncodingError, match="deeper than 64 levels") as raised:
        decode(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert "at byte offset 64" in raised.value.message
    with pytest.raises(CanonicalEncodingError, match="deeper than 64 levels"):
        decode(b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1))


def test_decode_far_too_deep_is_a_protocol_error_not_recursion_error() -> None:
    with pytest.raises(CanonicalEncodingError, match="deeper than"):
        decode(b"[" * 200_000)


def test_decode_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 100 + '\\"' + "{" * 100
    assert decode(json.dumps([text]).encode()) == [text]


def test_decode_size_limit() -> None:
    assert decode(b"0" + b" " * (MAX_ENCODED_BYTES - 1)) == 0
    with pytest.raises(CanonicalEncodingError, match="too large"):
        decode(b" " * (MAX_ENCODED_BYTES + 1))


def test_decode_huge_integer_literal_is_a_protocol_error() -> None:
    # Over Python's int-conversion digit limit: must not surface as ValueError.
    with pytest.raises(CanonicalEncodingError, match="outside the range"):
        decode(b"1" + b"0" * 10_000)
    with pytest.raises(CanonicalEncodingError, match="fraction or exponent"):
        decode(b"1." + b"0" * 10_000)


def test_decode_integer_boundaries() -> None:
    assert decode(b"9007199254740991") == MAX_SAFE_INTEGER
    assert decode(b"-9007199254740991") == -MAX_SAFE_INTEGER
    assert decode(b"-0") == 0


def test_decode_reports_byte_offsets_not_character_offsets() -> None:
    with pytest.raises(CanonicalEncodingError, match="byte offset 7") as raised:
        decode('["é", x]'.encode())  # x is character 6, byte 7
    assert "not valid JSON" in raised.value.message
    expected = "trailing data after the value at byte offset 9"
    with pytest.raises(CanonicalEncodingError, match=expected):
        decode('{"é":1} x'.encode())


def test_decode_accepts_bytes_like_and_refuses_text() -> None:
    assert decode(cast(bytes, bytearray(b"[1]"))) == [1]
    assert decode(cast(bytes, memoryview(b'{"a":null}'))) == {"a": None}
    with pytest.raises(CanonicalEncodingError, match="decode expects bytes, not str") as raised:
        decode(cast(bytes, "{}"))
    assert raised.value.hint == "encode text as UTF-8 first"
    with pytest.raises(CanonicalEncodingError, match="expects bytes, not NoneType"):
        decode_canonical(cast(bytes, None))


def test_decode_returns_plain_builtin_types() -> None:
    value = decode(b'{"d":{"l":[1,"s",true,null]}}')
    assert type(value) is dict
    assert value == {"d": {"l": [1, "s", True, None]}}


# -- decode_canonical ---------------------------------------------------------------


def test_decode_canonical_describes_the_differing_bytes() -> None:
    with pytest.raises(CanonicalEncodingError) as raised:
        decode_canonical(b'{"b":1,"a":2}')
    assert raised.value.message == (
        "not in canonical form: first difference at byte offset 2 "
        "(found 0x62, canonical form has 0x61)"
    )
    with pytest.raises(CanonicalEncodingError, match="found 0x0a, canonical form has end of data"):
        decode_canonical(b"[]\n")


def test_decode_canonical_finds_differences_far_into_the_input() -> None:
    padding = "x" * 10_000
    with pytest.raises(CanonicalEncodingError, match="byte offset 10006 "):
        decode_canonical(('{"k":"' + padding + '\\/"}').encode())
    canonical = encode({"k": padding})
    with pytest.raises(CanonicalEncodingError, match=f"byte offset {len(canonical)} "):
        decode_canonical(canonical + b" ")


def test_decode_canonical_applies_decode_rules_first() -> None:
    with pytest.raises(CanonicalEncodingError, match="duplicate object key"):
        decode_canonical(b'{"a":1,"a":1}')
    with pytest.raises(CanonicalEncodingError, match="fraction or exponent"):
        decode_canonical(b"1.5")


# -- digests ----------------------------------------------------------------------


def test_digest_known_answers() -> None:
    # SHA-256("{}") and SHA-256(""), the standard test values.
    assert digest({}) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert digest_bytes(b"") == empty
    assert digest({"b": 1, "a": 2}) == digest_bytes(b'{"a":2,"b":1}')
    assert DIGEST_PREFIX == "sha256:"


def test_parse_digest_round_trip() -> None:
    text = digest(["x"])
    raw = parse_digest(text)
    assert len(raw) == 32
    assert DIGEST_PREFIX + raw.hex() == text


VALID_HEX = "ab" * 32

PARSE_DIGEST_REJECTIONS = [
    pytest.param("", id="empty"),
    pytest.param("sha256:", id="prefix-only"),
    pytest.param(VALID_HEX, id="no-prefix"),
    pytest.param("sha256:" + VALID_HEX.upper(), id="uppercase-hex"),
    pytest.param("SHA256:" + VALID_HEX, id="uppercase-label"),
    pytest.param("sha512:" + VALID_HEX, id="other-algorithm"),
    pytest.param("sha256-" + VALID_HEX, id="wrong-separator"),
    pytest.param("sha256:" + VALID_HEX[:-1], id="63-digits"),
    pytest.param("sha256:" + VALID_HEX + "0", id="65-digits"),
    pytest.param("sha256:" + VALID_HEX + "\n", id="trailing-newline"),
    pytest.param(" sha256:" + VALID_HEX, id="leading-space"),
    pytest.param("sha256: " + VALID_HEX[:-1], id="inner-space"),
    pytest.param("sha256:" + "g" * 64, id="not-hex"),
    pytest.param("sha256:" + "\uff10" * 64, id="fullwidth-digits"),
    pytest.param("sha256:" + "\u0660" * 64, id="arabic-indic-digits"),
]


@pytest.mark.parametrize("text", PARSE_DIGEST_REJECTIONS)
def test_parse_digest_rejects(text: str) -> None:
    with pytest.raises(CanonicalEncodingError, match="malformed digest"):
        parse_digest(text)


def test_parse_digest_rejects_non_strings() -> None:
    with pytest.raises(CanonicalEncodingError, match="malformed digest"):
        parse_digest(cast(str, ("sha256:" + VALID_HEX).encode()))
    with pytest.raises(CanonicalEncodingError, match="malformed digest"):
        parse_digest(cast(str, None))


def test_digest_bytes_refuses_text() -> None:
    with pytest.raises(CanonicalEncodingError, match="digest_bytes expects bytes, not str"):
        digest_bytes(cast(bytes, "{}"))
