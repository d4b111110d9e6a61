"""The encrypted-dataset format: round trips, random access and every attack
the format must detect, each with its own error and message."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nestor.crypto import dataset
from nestor.crypto.dataset import AeadSuite, DataKey
from nestor.errors import (
    ChunkError,
    CommitmentMismatchError,
    DatasetFormatError,
    HeaderError,
    NotADatasetError,
    TrailingDataError,
    TruncatedError,
    UnsupportedFormatError,
    WrongKeyError,
)

CS = 4096
STORED = CS + dataset.TAG_LENGTH
H = dataset.HEADER_LENGTH


def encrypt(
    plaintext: bytes,
    key: DataKey,
    *,
    chunk_size: int = CS,
    suite: AeadSuite = AeadSuite.AES_256_GCM,
) -> tuple[bytes, str]:
    dst = io.BytesIO()
    summary = dataset.encrypt_stream(
        io.BytesIO(plaintext), dst, key, len(plaintext), chunk_size=chunk_size, suite=suite
    )
    return dst.getvalue(), summary.commitment


def decrypt(data: bytes, key: DataKey, *, expected: str | None = None) -> bytes:
    out = io.BytesIO()
    dataset.decrypt_stream(
        io.BytesIO(data), out, key, expected_commitment=expected, source_length=len(data)
    )
    return out.getvalue()


def split(data: bytes) -> tuple[bytes, list[bytes]]:
    body = data[H:]
    return data[:H], [body[i : i + STORED] for i in range(0, len(body), STORED)]


@pytest.fixture(scope="module")
def key() -> DataKey:
    return DataKey.generate()


@pytest.fixture(scope="module")
def sample(key: DataKey) -> tuple[bytes, bytes, str]:
    plaintext = os.urandom(CS * 5 + 123)  # six chunks, the last one short
    data, commitment = encrypt(plaintext, key)
    return plaintext, data, commitment


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(AeadSuite))
@pytest.mark.parametrize("length", [0, 1, CS - 1, CS, CS + 1, 3 * CS])
def test_round_trip(key: DataKey, suite: AeadSuite, length: int) -> None:
    plaintext = os.urandom(length)
    data, commitment = encrypt(plaintext, key, suite=suite)
    assert len(data) == H + length + dataset.TAG_LENGTH * max(1, -(-length // CS))
    assert decrypt(data, key, expected=commitment) == plaintext
    assert dataset.commitment_of(io.BytesIO(data)).commitment == commitment


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=3 * CS + 7), log_chunk=st.integers(12, 13))
def test_round_trip_property(plaintext: bytes, log_chunk: int) -> None:
    key = DataKey(bytes(32))
    data, commitment = encrypt(plaintext, key, chunk_size=1 << log_chunk)
    assert decrypt(data, key, expected=commitment) == plaintext


def test_ciphertext_is_fresh_each_time(key: DataKey) -> None:
    a, ca = encrypt(b"same plaintext", key)
    b, cb = encrypt(b"same plaintext", key)
    assert a != b
    assert ca != cb


def test_random_access_reads_each_chunk_alone(
    key: DataKey, sample: tuple[bytes, bytes, str]
) -> None:
    plaintext, data, _ = sample
    reader = dataset.DatasetReader(io.BytesIO(data), key)
    for i in reversed(range(reader.header.chunk_count)):
        assert reader.read_chunk(i) == plaintext[i * CS : (i + 1) * CS]


def test_random_access_authenticates(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    _, data, _ = sample
    header, chunks = split(data)
    swapped = header + chunks[0] + chunks[2] + chunks[1] + b"".join(chunks[3:])
    reader = dataset.DatasetReader(io.BytesIO(swapped), key)
    assert reader.read_chunk(0)
    with pytest.raises(ChunkError, match="chunk 1 failed authentication") as info:
        reader.read_chunk(1)
    assert info.value.index == 1


def test_random_access_rejects_missing_index(
    key: DataKey, sample: tuple[bytes, bytes, str]
) -> None:
    reader = dataset.DatasetReader(io.BytesIO(sample[1]), key)
    with pytest.raises(ChunkError, match="chunk 6 does not exist: the file has 6 chunks"):
        reader.read_chunk(6)


def test_stream_needs_two_chunk_buffers_only(key: DataKey) -> None:
    """The encryptor reads in chunk-sized pieces; it never asks for more."""

    class Source(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.left = n
            self.largest = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            self.largest = max(self.largest, len(buffer))
            n = min(len(buffer), self.left)
            buffer[:n] = b"\x00" * n
            self.left -= n
            return n

    src = Source(50 * CS)
    sink = io.BytesIO()
    dataset.encrypt_stream(src, sink, key, 50 * CS, chunk_size=CS)
    assert src.largest <= CS


# -- bad input: one test per case the issue names ------------------------------------


def test_flipped_byte_in_each_header_field(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    _, data, _ = sample
    expected: list[tuple[range, type[DatasetFormatError], str]] = [
        (range(0, 8), NotADatasetError, "not a Nestor encrypted dataset"),
        (range(8, 10), UnsupportedFormatError, "format version"),
        (range(10, 12), UnsupportedFormatError, "unknown chunk cipher"),
        (range(24, 88), WrongKeyError, "does not match the key commitment"),
        (range(88, 120), HeaderError, "header was modified"),
    ]
    for positions, error, message in expected:
        for pos in positions:
            bad = bytearray(data)
            bad[pos] ^= 0x01
            with pytest.raises(error, match=message):
                decrypt(bytes(bad), key)
    # chunk size and length: either structurally invalid or caught by the MAC
    for pos in range(12, 24):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises((HeaderError, DatasetFormatError)) as info:
            decrypt(bytes(bad), key)
        assert "header" in str(info.value)


@pytest.mark.parametrize("where", ["ciphertext start", "ciphertext middle", "tag"])
def test_flipped_byte_in_chunk_or_tag(
    key: DataKey, sample: tuple[bytes, bytes, str], where: str
) -> None:
    _, data, _ = sample
    offset = {"ciphertext start": 0, "ciphertext middle": CS // 2, "tag": CS + 5}[where]
    bad = bytearray(data)
    bad[H + 2 * STORED + offset] ^= 0x80
    with pytest.raises(ChunkError, match="chunk 2 failed authentication") as info:
        decrypt(bytes(bad), key)
    assert info.value.index == 2


def test_flipped_byte_in_last_short_chunk(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    _, data, _ = sample
    bad = bytearray(data)
    bad[-1] ^= 0x01
    with pytest.raises(ChunkError, match="chunk 5 failed authentication"):
        decrypt(bytes(bad), key)


def test_truncated_at_chunk_boundary(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    _, data, _ = sample
    with pytest.raises(TruncatedError, match="chunk boundary after 4 of 6 chunks"):
        decrypt(data[: H + 4 * STORED], key)


def test_truncated_mid_chunk(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    _, data, _ = sample
    with pytest.raises(TruncatedError, match="middle of chunk 3: 100 of its 4112 bytes"):
        decrypt(data[: H + 3 * STORED + 100], key)


def test_truncated_inside_header(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(TruncatedError, match="ends inside its header: 50 of 120"):
        decrypt(sample[1][:50], key)


def test_header_only_file(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(TruncatedError, match="after 0 of 6 chunks"):
        decrypt(sample[1][:H], key)


def test_dropped_chunk(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    header, chunks = split(sample[1])
    bad = header + b"".join(chunks[:2] + chunks[3:])
    with pytest.raises(ChunkError, match="chunk 2 is missing"):
        decrypt(bad, key)


def test_duplicated_chunk(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    header, chunks = split(sample[1])
    bad = header + b"".join([*chunks[:3], chunks[2], *chunks[3:]])
    with pytest.raises(ChunkError, match="chunk 2 is repeated"):
        decrypt(bad, key)


def test_reordered_chunks(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    header, chunks = split(sample[1])
    bad = header + b"".join([chunks[0], chunks[3], chunks[2], chunks[1], *chunks[4:]])
    with pytest.raises(ChunkError, match="out of order: position 1 holds chunk 3"):
        decrypt(bad, key)


def test_final_chunk_duplicated_at_end(key: DataKey) -> None:
    data, _ = encrypt(os.urandom(3 * CS), key)
    header, chunks = split(data)
    with pytest.raises(TrailingDataError, match="bytes follow the final chunk"):
        decrypt(header + b"".join([*chunks, chunks[-1]]), key)


def test_chunk_spliced_from_another_file_same_key(
    key: DataKey, sample: tuple[bytes, bytes, str]
) -> None:
    other, _ = encrypt(os.urandom(CS * 6), key)
    header, chunks = split(sample[1])
    _, foreign = split(other)
    bad = header + b"".join([*chunks[:1], foreign[1], *chunks[2:]])
    with pytest.raises(ChunkError, match="spliced in from another file"):
        decrypt(bad, key)


def test_header_from_another_file_same_key(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    other, _ = encrypt(os.urandom(CS * 5 + 123), key)
    _, chunks = split(sample[1])
    with pytest.raises(ChunkError, match="chunk 0 failed authentication"):
        decrypt(other[:H] + b"".join(chunks), key)


def test_wrong_key(sample: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(WrongKeyError, match="data key does not open this file"):
        decrypt(sample[1], DataKey.generate())


def test_not_in_the_format(key: DataKey) -> None:
    with pytest.raises(NotADatasetError, match="does not start with the NESTORDF magic"):
        decrypt(b"patient,age\nP1,40\n" * 20, key)


def test_empty_file(key: DataKey) -> None:
    with pytest.raises(NotADatasetError, match="empty"):
        decrypt(b"", key)


def test_commitment_mismatch(key: DataKey, sample: tuple[bytes, bytes, str]) -> None:
    other, other_commitment = encrypt(sample[0], key)
    with pytest.raises(CommitmentMismatchError, match="not the expected"):
        decrypt(sample[1], key, expected=other_commitment)
    assert decrypt(other, key, expected=other_commitment) == sample[0]


def test_inspect_rejects_wrong_length(sample: tuple[bytes, bytes, str]) -> None:
    with pytest.raises(TruncatedError, match="header declares"):
        dataset.commitment_of(io.BytesIO(sample[1][:-1]))
    with pytest.raises(TrailingDataError, match="header declares"):
        dataset.commitment_of(io.BytesIO(sample[1] + b"x"))


@pytest.mark.parametrize("size", [0, 1000, 4095, 4097, 1 << 27])
def test_invalid_chunk_size(key: DataKey, size: int) -> None:
    with pytest.raises(HeaderError, match="power of two"):
        encrypt(b"x", key, chunk_size=size)


def test_input_shorter_than_announced(key: DataKey) -> None:
    with pytest.raises(TruncatedError, match="input ended after 10 bytes"):
        dataset.encrypt_stream(io.BytesIO(b"0123456789"), io.BytesIO(), key, 20, chunk_size=CS)


def test_input_longer_than_announced(key: DataKey) -> None:
    with pytest.raises(TrailingDataError, match="longer than the 5 bytes announced"):
        dataset.encrypt_stream(io.BytesIO(b"0123456789"), io.BytesIO(), key, 5, chunk_size=CS)


# -- parsers never crash ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_parse_header_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(DatasetFormatError):
        dataset.parse_header(data)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_decrypt_on_mutated_files(data: st.DataObject) -> None:
    key = DataKey(bytes(range(32)))
    plaintext = b"p" * (2 * CS + 10)
    original, _ = encrypt(plaintext, key)
    mutate: Callable[[bytes], bytes] = data.draw(
        st.sampled_from(
            [
                lambda b: b[: len(b) // 2],
                lambda b: b + b"\x00",
                lambda b: b[:H] + b[H + 1 :],
            ]
        )
    )
    pos = data.draw(st.integers(0, len(original) - 1))
    flipped = bytearray(original)
    flipped[pos] ^= data.draw(st.integers(1, 255))
    for candidate in (mutate(original), bytes(flipped)):
        with pytest.raises(DatasetFormatError):
            decrypt(candidate, key)


def test_error_messages_carry_no_key_material(
    key: DataKey, sample: tuple[bytes, bytes, str]
) -> None:
    _, data, _ = sample
    bad = bytearray(data)
    bad[H + 10] ^= 1
    for candidate in (bytes(bad), data[:200], data[:H]):
        with pytest.raises(DatasetFormatError) as info:
            decrypt(candidate, key)
        text = info.value.diagnostics() + repr(info.value)
        assert key.secret.hex() not in text
    assert key.secret.hex() not in repr(key)
