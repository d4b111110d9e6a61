"""The encrypted-dataset test vectors in tests/vectors/dataset/.

The reference reader below is written from docs/formats.md ("Encrypted
dataset, version 1") alone, with pyca/cryptography primitives and hashlib:
it does not import ``nestor.crypto.dataset`` or ``nestor.crypto.merkle``.
Its Merkle tree hash follows RFC 9162's recursive definition and is itself
checked against the Certificate Transparency reference roots.

The tests check that

(a) the reference reader opens every vector to the plaintext its recipe
    describes and recomputes the manifest's commitment and intermediate values;
(b) Nestor's ``decrypt_stream`` and ``commitment_of`` agree with the manifest;
(c) the generator, run again in memory, gives byte-identical files;
(d) the reference reader rejects a flipped byte in every header field, in a
    chunk body and in a tag, at the step of "Reading a file" the page names
    (Nestor rejects the same files with the matching error class).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "dataset"
MANIFEST: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["vectors"]
NAMES = [entry["name"] for entry in ENTRIES]


# ---------------------------------------------------------------------------
# Reference reader, from docs/formats.md only
# ---------------------------------------------------------------------------

MAGIC = b"NESTORDF"
HEADER_LENGTH = 120
MAC_INPUT_LENGTH = 88  # header_mac = HMAC-SHA256(header_mac_key, header[0:88])
TAG_LENGTH = 16
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 67108864
AEADS: dict[int, type[AESGCM] | type[ChaCha20Poly1305]] = {1: AESGCM, 2: ChaCha20Poly1305}
INFO_CHUNK_KEY = b"nestor/v1/dataset/chunk-key"
INFO_KEY_COMMITMENT = b"nestor/v1/dataset/key-commitment"
INFO_HEADER_MAC = b"nestor/v1/dataset/header-mac"
COMMITMENT_LABEL = b"nestor/v1/dataset/commitment" + b"\x00"


class RejectedError(Exception):
    """The reader refused a file; ``step`` names the check of "Reading a file"."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


def u(data: bytes) -> int:
    return int.from_bytes(data, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


@dataclass(frozen=True)
class Header:
    raw: bytes
    version: int
    suite: int
    chunk_size: int
    plaintext_length: int
    salt: bytes
    key_commitment: bytes
    header_mac: bytes

    @property
    def chunk_count(self) -> int:
        """n = max(1, ceil(L / chunk_size))."""
        return max(1, -(-self.plaintext_length // self.chunk_size))

    def plaintext_length_of(self, index: int) -> int:
        n = self.chunk_count
        if index < n - 1:
            return self.chunk_size
        return self.plaintext_length - (n - 1) * self.chunk_size

    def chunk_start(self, index: int) -> int:
        """Chunk i starts at byte 120 + i*(chunk_size + 16)."""
        return HEADER_LENGTH + index * (self.chunk_size + TAG_LENGTH)

    @property
    def file_length(self) -> int:
        """120 + L + 16*n."""
        return HEADER_LENGTH + self.plaintext_length + TAG_LENGTH * self.chunk_count


def parse_header(data: bytes) -> Header:
    """Steps 1 and 2 (structure only, no key)."""
    if not data:
        raise RejectedError("not-a-dataset", "0 bytes")
    if data[:8] != MAGIC:
        raise RejectedError("not-a-dataset", "the first 8 bytes are not NESTORDF")
    if len(data) < HEADER_LENGTH:
        raise RejectedError("truncated-header", f"{len(data)} bytes")
    raw = data[:HEADER_LENGTH]
    header = Header(
        raw=raw,
        version=u(raw[8:10]),
        suite=u(raw[10:12]),
        chunk_size=u(raw[12:16]),
        plaintext_length=u(raw[16:24]),
        salt=raw[24:56],
        key_commitment=raw[56:88],
        header_mac=raw[88:120],
    )
    if header.version != 1:
        raise RejectedError("unsupported", f"version {header.version}")
    if header.suite not in AEADS:
        raise RejectedError("unsupported", f"suite {header.suite}")
    cs = header.chunk_size
    if not (MIN_CHUNK_SIZE <= cs <= MAX_CHUNK_SIZE) or cs & (cs - 1):
        raise RejectedError("invalid-header", f"chunk size {cs}")
    return header


def hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 Merkle Tree Hash, recursive as written there."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def commitment(header: Header, tags: list[bytes]) -> tuple[bytes, str]:
    """(root, "sha256:<hex>") from the header and the chunk tags."""
    root = mth([u64(i) + tag for i, tag in enumerate(tags)])
    digest = sha256(COMMITMENT_LABEL + header.raw + u64(len(tags)) + root)
    return root, "sha256:" + digest.hex()


@dataclass(frozen=True)
class Opened:
    header: Header
    plaintext: bytes
    chunk_key: bytes
    header_mac_key: bytes
    tags: list[bytes]
    root: bytes
    commitment: str


def read_file(data: bytes, key: bytes, expected_commitment: str | None = None) -> Opened:
    """Verify and decrypt a whole file, in the order of "Reading a file"."""
    header = parse_header(data)

    # Step 3: key commitment.
    expected_key_commitment = hkdf(key, header.salt, INFO_KEY_COMMITMENT)
    if not constant_time.bytes_eq(expected_key_commitment, header.key_commitment):
        raise RejectedError("wrong-key", "the key does not match the key commitment")

    # Step 4: header MAC.
    header_mac_key = hkdf(key, header.salt, INFO_HEADER_MAC)
    mac = crypto_hmac.HMAC(header_mac_key, hashes.SHA256())
    mac.update(header.raw[:MAC_INPUT_LENGTH])
    try:
        mac.verify(header.header_mac)
    except InvalidSignature:
        raise RejectedError("header-modified", "header MAC mismatch") from None

    # Step 5: chunks in order.
    chunk_key = hkdf(key, header.salt, INFO_CHUNK_KEY)
    aead = AEADS[header.suite](chunk_key)
    n = header.chunk_count
    position = HEADER_LENGTH
    plaintext = bytearray()
    tags = []
    for i in range(n):
        assert position == header.chunk_start(i)
        want = header.plaintext_length_of(i) + TAG_LENGTH
        stored = data[position : position + want]
        if not stored:
            raise RejectedError("chunk-boundary", f"ends after {i} of {n} chunks")
        if len(stored) < want:
            raise RejectedError("chunk-truncated", f"ends in the middle of chunk {i}")
        nonce = b"\x00\x00\x00\x00" + u64(i)
        aad = header.raw + bytes([1 if i == n - 1 else 0])
        try:
            plaintext += aead.decrypt(nonce, stored, aad)
        except InvalidTag:
            raise RejectedError("chunk-auth", f"chunk {i} failed authentication") from None
        tags.append(stored[-TAG_LENGTH:])
        position += want

    # Step 6: nothing after the final chunk.
    if len(data) != position:
        raise RejectedError("trailing", f"{len(data) - position} bytes follow the final chunk")
    assert position == header.file_length

    # Step 7: the commitment.
    root, actual = commitment(header, tags)
    if expected_commitment is not None and not constant_time.bytes_eq(
        actual.encode(), expected_commitment.encode()
    ):
        raise RejectedError("commitment", f"{actual} is not {expected_commitment}")
    return Opened(header, bytes(plaintext), chunk_key, header_mac_key, tags, root, actual)


def keyless_commitment(data: bytes) -> str:
    """The commitment from the header and the n tags only, found by the offset rule."""
    header = parse_header(data)
    if len(data) != header.file_length:
        raise RejectedError(
            "trailing" if len(data) > header.file_length else "chunk-truncated", "size"
        )
    tags = []
    for i in range(header.chunk_count):
        end = header.chunk_start(i) + header.plaintext_length_of(i) + TAG_LENGTH
        tags.append(data[end - TAG_LENGTH : end])
    return commitment(header, tags)[1]


def recipe_plaintext(recipe: dict[str, Any]) -> bytes:
    """The manifest's plaintext rule: the hex pattern repeated, cut to ``length``."""
    pattern = bytes.fromhex(recipe["repeat"])
    length: int = recipe["length"]
    return (pattern * (length // len(pattern) + 1))[:length]


def vector(name: str) -> tuple[dict[str, Any], bytes]:
    entry = next(e for e in ENTRIES if e["name"] == name)
    return entry, (VECTORS / entry["file"]).read_bytes()


# ---------------------------------------------------------------------------
# The reference reader's own building blocks
# ---------------------------------------------------------------------------

# Certificate Transparency's reference leaves and the RFC 6962 / RFC 9162
# tree heads for the first 1..8 of them (as in the google/certificate-
# transparency and transparency-dev test suites).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_reference_merkle_tree_hash_matches_rfc6962_reference_roots() -> None:
    assert mth([]).hex() == hashlib.sha256(b"").hexdigest()
    for size, root in enumerate(CT_ROOTS, start=1):
        assert mth(CT_LEAVES[:size]).hex() == root, size


def test_manifest_lists_exactly_the_files_here() -> None:
    files = {entry["file"] for entry in ENTRIES}
    assert len(files) == len(ENTRIES) == len(set(NAMES))
    assert {p.name for p in VECTORS.glob("*.nds")} == files
    assert {entry["suite"] for entry in ENTRIES} == {"AES-256-GCM", "ChaCha20-Poly1305"}
    total = sum((VECTORS / f).stat().st_size for f in files)
    assert total < 100_000


# ---------------------------------------------------------------------------
# (a) the reference reader against the manifest
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reference_reader_opens_vector(name: str) -> None:
    entry, data = vector(name)
    key = bytes.fromhex(entry["key"])
    mid = entry["intermediate"]
    assert hashlib.sha256(data).hexdigest() == entry["file_sha256"]
    assert len(data) == entry["file_length"]

    opened = read_file(data, key, expected_commitment=entry["commitment"])
    header = opened.header

    # Header fields as the manifest states them.
    assert header.raw.hex() == mid["header"]
    assert header.suite == entry["suite_id"]
    assert header.chunk_size == entry["chunk_size"]
    assert header.plaintext_length == entry["plaintext"]["length"]
    assert header.salt.hex() == entry["salt"]
    assert header.chunk_count == entry["chunk_count"]
    assert len(data) == HEADER_LENGTH + header.plaintext_length + TAG_LENGTH * header.chunk_count

    # Plaintext.
    expected = recipe_plaintext(entry["plaintext"])
    assert opened.plaintext == expected
    assert hashlib.sha256(opened.plaintext).hexdigest() == entry["plaintext_sha256"]

    # Intermediate values, each recomputed here.
    salt = bytes.fromhex(entry["salt"])
    assert opened.chunk_key.hex() == mid["chunk_key"]
    assert opened.header_mac_key.hex() == mid["header_mac_key"]
    assert hkdf(key, salt, INFO_KEY_COMMITMENT).hex() == mid["key_commitment"]
    assert header.key_commitment.hex() == mid["key_commitment"]
    recomputed_mac = crypto_hmac.HMAC(opened.header_mac_key, hashes.SHA256())
    recomputed_mac.update(header.raw[:MAC_INPUT_LENGTH])
    assert recomputed_mac.finalize().hex() == mid["header_mac"] == header.header_mac.hex()
    assert [t.hex() for t in opened.tags] == mid["tags"]
    assert opened.root.hex() == mid["merkle_root"]

    # Commitment, with the key and without it.
    assert opened.commitment == entry["commitment"]
    assert keyless_commitment(data) == entry["commitment"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_reader_reencrypts_vector(name: str) -> None:
    """Sealing the recipe's plaintext by the page's rules gives the file exactly:
    the format is fully determined by key, salt, suite, chunk size and plaintext."""
    entry, data = vector(name)
    key, salt = bytes.fromhex(entry["key"]), bytes.fromhex(entry["salt"])
    plaintext = recipe_plaintext(entry["plaintext"])
    cs, length = entry["chunk_size"], len(plaintext)
    prefix = (
        MAGIC
        + (1).to_bytes(2, "big")
        + entry["suite_id"].to_bytes(2, "big")
        + cs.to_bytes(4, "big")
        + u64(length)
        + salt
        + hkdf(key, salt, INFO_KEY_COMMITMENT)
    )
    mac = crypto_hmac.HMAC(hkdf(key, salt, INFO_HEADER_MAC), hashes.SHA256())
    mac.update(prefix)
    header = prefix + mac.finalize()
    aead = AEADS[entry["suite_id"]](hkdf(key, salt, INFO_CHUNK_KEY))
    n = max(1, -(-length // cs))
    out = bytearray(header)
    for i in range(n):
        nonce = b"\x00\x00\x00\x00" + u64(i)
        aad = header + bytes([1 if i == n - 1 else 0])
        out += aead.encrypt(nonce, plaintext[i * cs : (i + 1) * cs], aad)
    assert bytes(out) == data


# ---------------------------------------------------------------------------
# (b) Nestor against the manifest
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_nestor_agrees_with_manifest(name: str) -> None:
    from nestor.crypto.dataset import DataKey, commitment_of, decrypt_stream

    entry, data = vector(name)
    key = DataKey(bytes.fromhex(entry["key"]))
    out = io.BytesIO()
    summary = decrypt_stream(
        io.BytesIO(data),
        out,
        key,
        expected_commitment=entry["commitment"],
        source_length=len(data),
    )
    assert out.getvalue() == recipe_plaintext(entry["plaintext"])
    assert summary.commitment == entry["commitment"]
    assert summary.header.to_bytes().hex() == entry["intermediate"]["header"]
    assert summary.header.chunk_count == entry["chunk_count"]
    assert summary.header.file_length == entry["file_length"]
    assert summary.header.suite.label == entry["suite"]
    assert int(summary.header.suite) == entry["suite_id"]

    keyless = commitment_of(io.BytesIO(data))
    assert keyless.commitment == entry["commitment"]
    assert keyless.header == summary.header


# ---------------------------------------------------------------------------
# (c) the vectors are reproducible
# ---------------------------------------------------------------------------


def _load_generator() -> ModuleType:
    name = "_nestor_dataset_vector_generator"
    spec = importlib.util.spec_from_file_location(name, VECTORS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_generator_reproduces_the_files_byte_for_byte() -> None:
    generator = _load_generator()
    build: Callable[[], tuple[dict[str, bytes], str]] = generator.build
    files, manifest_text = build()
    assert manifest_text == (VECTORS / "manifest.json").read_text(encoding="utf-8")
    assert set(files) == {entry["file"] for entry in ENTRIES}
    for file_name, blob in files.items():
        assert blob == (VECTORS / file_name).read_bytes(), file_name
    again, again_manifest = build()
    assert again == files
    assert again_manifest == manifest_text
    main: Callable[[list[str]], int] = generator.main
    assert main(["--check"]) == 0


# ---------------------------------------------------------------------------
# (d) tampering is rejected
# ---------------------------------------------------------------------------

# Where a flipped byte lands in the header, how it is flipped, and the step
# of "Reading a file" that must reject it.
HEADER_FLIPS: dict[str, tuple[int, int, str]] = {
    "magic": (0, 0x01, "not-a-dataset"),
    "version": (9, 0x01, "unsupported"),
    "suite": (11, 0x01, "unsupported"),
    "chunk_size-not-a-power-of-two": (15, 0x01, "invalid-header"),
    "chunk_size-other-valid-size": (14, 0x30, "header-modified"),
    "plaintext_length-low-byte": (23, 0x01, "header-modified"),
    # Nestor refuses this one before the key checks, as declaring more than
    # 2**40 chunks (a limit the page does not state); same error class.
    "plaintext_length-high-byte": (16, 0x80, "header-modified"),
    "salt": (24, 0x01, "wrong-key"),
    "key_commitment": (87, 0x01, "wrong-key"),
    "header_mac": (119, 0x01, "header-modified"),
}

# Nestor's error class for each step (names from nestor.errors).
NESTOR_ERROR_FOR_STEP = {
    "not-a-dataset": "NotADatasetError",
    "truncated-header": "TruncatedError",
    "unsupported": "UnsupportedFormatError",
    "invalid-header": "HeaderError",
    "wrong-key": "WrongKeyError",
    "header-modified": "HeaderError",
    "chunk-boundary": "TruncatedError",
    "chunk-truncated": "TruncatedError",
    "chunk-auth": "ChunkError",
    "trailing": "TrailingDataError",
    "commitment": "CommitmentMismatchError",
}


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def assert_rejected(data: bytes, key: bytes, step: str, expected_commitment: str | None) -> None:
    with pytest.raises(RejectedError) as caught:
        read_file(data, key, expected_commitment=expected_commitment)
    assert caught.value.step == step, caught.value
    _assert_nestor_rejects(data, key, step, expected_commitment)


def _assert_nestor_rejects(
    data: bytes, key: bytes, step: str, expected_commitment: str | None
) -> None:
    import nestor.errors
    from nestor.crypto.dataset import DataKey, decrypt_stream

    error: type[Exception] = getattr(nestor.errors, NESTOR_ERROR_FOR_STEP[step])
    with pytest.raises(error):
        decrypt_stream(
            io.BytesIO(data),
            io.BytesIO(),
            DataKey(key),
            expected_commitment=expected_commitment,
            source_length=len(data),
        )


@pytest.mark.parametrize("field", list(HEADER_FLIPS))
@pytest.mark.parametrize("name", NAMES)
def test_flipped_header_byte_is_rejected(name: str, field: str) -> None:
    entry, data = vector(name)
    offset, mask, step = HEADER_FLIPS[field]
    assert_rejected(flipped(data, offset, mask), bytes.fromhex(entry["key"]), step, None)


def _chunk_spans(entry: dict[str, Any]) -> list[tuple[int, int]]:
    """(start, plaintext length) of every chunk, by the page's offset rule."""
    cs, length, n = entry["chunk_size"], entry["plaintext"]["length"], entry["chunk_count"]
    return [
        (HEADER_LENGTH + i * (cs + TAG_LENGTH), cs if i < n - 1 else length - (n - 1) * cs)
        for i in range(n)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_flipped_chunk_body_byte_is_rejected(name: str) -> None:
    entry, data = vector(name)
    key = bytes.fromhex(entry["key"])
    spans = _chunk_spans(entry)
    tested = 0
    for start, length in {spans[0], spans[-1]}:
        for offset in sorted({start, start + length - 1}):
            if length == 0:
                continue  # an empty chunk has no body, only a tag
            assert_rejected(flipped(data, offset), key, "chunk-auth", entry["commitment"])
            tested += 1
    assert tested or entry["plaintext"]["length"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_flipped_tag_byte_is_rejected(name: str) -> None:
    entry, data = vector(name)
    key = bytes.fromhex(entry["key"])
    for start, length in _chunk_spans(entry):
        for offset in (start + length, start + length + TAG_LENGTH - 1):
            mutated = flipped(data, offset)
            assert_rejected(mutated, key, "chunk-auth", entry["commitment"])
            # The commitment sees the change without the key too.
            assert keyless_commitment(mutated) != entry["commitment"]


def _swap_first_chunks(data: bytes, entry: dict[str, Any]) -> bytes:
    (a, la), (b, lb) = _chunk_spans(entry)[:2]
    assert la == lb
    size = la + TAG_LENGTH
    return data[:a] + data[b : b + size] + data[a : a + size] + data[b + size :]


def _splice_from_other_file(data: bytes, entry: dict[str, Any]) -> bytes:
    """Chunk 0 of aes256gcm-3-chunks (same length) in place of this file's chunk 0."""
    _other_entry, other = vector("aes256gcm-3-chunks")
    size = entry["chunk_size"] + TAG_LENGTH
    return data[:HEADER_LENGTH] + other[HEADER_LENGTH : HEADER_LENGTH + size] + data[120 + size :]


STRUCTURAL: dict[str, tuple[str, Callable[[bytes, dict[str, Any]], bytes], str]] = {
    "empty-file": ("aes256gcm-1-byte", lambda d, e: b"", "not-a-dataset"),
    "cut-in-header": ("aes256gcm-1-byte", lambda d, e: d[:119], "truncated-header"),
    "header-only": ("aes256gcm-empty", lambda d, e: d[:120], "chunk-boundary"),
    "last-chunk-dropped": (
        "aes256gcm-3-chunks",
        lambda d, e: d[: _chunk_spans(e)[-1][0]],
        "chunk-boundary",
    ),
    "cut-mid-chunk": ("aes256gcm-3-chunks", lambda d, e: d[:-1], "chunk-truncated"),
    "byte-appended": ("aes256gcm-3-chunks", lambda d, e: d + b"\x00", "trailing"),
    "last-chunk-repeated": (
        "aes256gcm-5-chunks",
        lambda d, e: d + d[_chunk_spans(e)[-1][0] :],
        "trailing",
    ),
    "chunks-swapped": ("aes256gcm-5-chunks", _swap_first_chunks, "chunk-auth"),
    "chunk-spliced-from-other-file": (
        "aes256gcm-5-chunks",
        _splice_from_other_file,
        "chunk-auth",
    ),
}


@pytest.mark.parametrize("case", list(STRUCTURAL))
def test_structural_damage_is_rejected(case: str) -> None:
    name, mutate, step = STRUCTURAL[case]
    entry, data = vector(name)
    assert_rejected(mutate(data, entry), bytes.fromhex(entry["key"]), step, None)


@pytest.mark.parametrize("length", [1, 5, 7])
def test_file_shorter_than_the_magic_is_rejected(length: int) -> None:
    """A file holding only the first bytes of NESTORDF. Read literally, step 1
    of the page says "not a Nestor encrypted dataset" (its first 8 bytes are
    not the magic), while Nestor reports that the file ends inside its header.
    Only the rejection itself is checked here."""
    import nestor.errors
    from nestor.crypto.dataset import DataKey, decrypt_stream

    entry, data = vector("aes256gcm-1-byte")
    key = bytes.fromhex(entry["key"])
    with pytest.raises(RejectedError):
        read_file(data[:length], key)
    with pytest.raises(nestor.errors.DatasetFormatError):
        decrypt_stream(io.BytesIO(data[:length]), io.BytesIO(), DataKey(key))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_key_and_wrong_commitment_are_rejected(name: str) -> None:
    entry, data = vector(name)
    key = bytes.fromhex(entry["key"])
    assert_rejected(data, flipped(key, 31), "wrong-key", None)
    other = next(e["commitment"] for e in ENTRIES if e["name"] != name)
    assert_rejected(data, key, "commitment", other)
