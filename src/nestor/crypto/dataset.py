"""The Nestor encrypted-dataset format, version 1 (docs/formats.md).

A dataset file is a fixed 120-byte header followed by chunks. Each chunk is
one AEAD encryption of ``chunk_size`` plaintext bytes (the last may be
shorter), under a key derived from the data key and the file's random salt.
The chunk index is the nonce and the whole header plus a final-chunk flag is
the associated data, which gives the STREAM properties (Hoang, Reyhanitabar,
Rogaway, Vizár, CRYPTO 2015): reordering, dropping, duplicating, truncating
or splicing chunks in from another file is detected.

The *commitment* to a file is a hash of its header and of an RFC 9162
Merkle tree over the chunk tags. The AEAD computes those tags anyway, so the
commitment costs no second pass over the data; it is binding for anyone who
does not hold the data key (the host, storage, other parties). See
docs/formats.md, "What the commitment binds", for the exact claim.

This module works on file-like objects and bytes; atomic file output and
progress bars live in the client zone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nestor.crypto.merkle import TreeBuilder
from nestor.errors import (
    ChunkError,
    CommitmentMismatchError,
    HeaderError,
    NotADatasetError,
    TrailingDataError,
    TruncatedError,
    UnsupportedFormatError,
    WrongKeyError,
)

MAGIC: Final = b"NESTORDF"
FORMAT_VERSION: Final = 1
KEY_LENGTH: Final = 32
SALT_LENGTH: Final = 32
TAG_LENGTH: Final = 16
NONCE_LENGTH: Final = 12

MIN_CHUNK_SIZE: Final = 1 << 12  # 4 KiB
MAX_CHUNK_SIZE: Final = 1 << 26  # 64 MiB
DEFAULT_CHUNK_SIZE: Final = 1 << 20  # 1 MiB: fine-grained random access, no speed lost
MAX_CHUNKS: Final = 1 << 40  # nonce space is 2**64; this bounds plaintext to 2**52+ bytes

_PREFIX = struct.Struct(">8sHHIQ32s32s")  # everything the header MAC covers
HEADER_LENGTH: Final = _PREFIX.size + 32
assert HEADER_LENGTH == 120

LABEL_CHUNK_KEY: Final = b"nestor/v1/dataset/chunk-key"
LABEL_KEY_COMMITMENT: Final = b"nestor/v1/dataset/key-commitment"
LABEL_HEADER_MAC: Final = b"nestor/v1/dataset/header-mac"
LABEL_COMMITMENT: Final = b"nestor/v1/dataset/commitment\x00"

# Trial decryptions made to explain a failed chunk (never more than this).
_MAX_DIAGNOSIS_TRIALS: Final = 4096


class AeadSuite(IntEnum):
    """The chunk cipher, as stored in the header."""

    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2

    @property
    def label(self) -> str:
        return {1: "AES-256-GCM", 2: "ChaCha20-Poly1305"}[self.value]


ProgressCallback = Callable[[int], None]


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _RandomAccess(_Readable, Protocol):
    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


class _Writable(Protocol):
    def write(self, buffer: memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class DataKey:
    """A 256-bit data key. Its repr never shows the key."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_LENGTH:
            raise WrongKeyError(f"a data key is {KEY_LENGTH} bytes, got {len(self.secret)}")

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_bytes(KEY_LENGTH))

    def __repr__(self) -> str:
        return "DataKey(<secret>)"


@dataclass(frozen=True)
class DatasetHeader:
    """The parsed 120-byte header. Parsing checks structure only; the key
    commitment and header MAC are checked by :func:`derive_file_keys`."""

    version: int
    suite: AeadSuite
    chunk_size: int
    plaintext_length: int
    salt: bytes
    key_commitment: bytes
    header_mac: bytes

    def prefix_bytes(self) -> bytes:
        return _PREFIX.pack(
            MAGIC,
            self.version,
            self.suite,
            self.chunk_size,
            self.plaintext_length,
            self.salt,
            self.key_commitment,
        )

    def to_bytes(self) -> bytes:
        return self.prefix_bytes() + self.header_mac

    @property
    def chunk_count(self) -> int:
        """Number of chunks: an empty plaintext still has one (empty) chunk,
        so even an empty dataset is authenticated."""
        return max(1, -(-self.plaintext_length // self.chunk_size))

    def chunk_plaintext_length(self, index: int) -> int:
        self._check_index(index)
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.plaintext_length - (self.chunk_count - 1) * self.chunk_size

    def chunk_offset(self, index: int) -> int:
        """Byte offset of chunk ``index`` in the file."""
        self._check_index(index)
        return HEADER_LENGTH + index * (self.chunk_size + TAG_LENGTH)

    def chunk_length(self, index: int) -> int:
        """Stored length of chunk ``index``: its plaintext length plus the tag."""
        return self.chunk_plaintext_length(index) + TAG_LENGTH

    @property
    def file_length(self) -> int:
        return HEADER_LENGTH + self.plaintext_length + self.chunk_count * TAG_LENGTH

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.chunk_count:
            raise ChunkError(
                f"chunk {index} does not exist: the file has {self.chunk_count} chunks",
                index=index,
            )

    def describe(self) -> dict[str, str | int]:
        return {
            "format": f"nestor-dataset v{self.version}",
            "suite": self.suite.label,
            "chunk_size": self.chunk_size,
            "plaintext_length": self.plaintext_length,
            "chunk_count": self.chunk_count,
            "file_length": self.file_length,
            "salt": self.salt.hex(),
            "key_commitment": self.key_commitment.hex(),
        }


def parse_header(data: bytes) -> DatasetHeader:
    """Check the structure of a header (no key needed)."""
    if len(data) == 0:
        raise NotADatasetError(
            "the file is empty (0 bytes): not a Nestor encrypted dataset",
            hint="encrypt a dataset with `nestor encrypt`; its output starts with a header",
        )
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise NotADatasetError(
            "not a Nestor encrypted dataset: the file does not start with the NESTORDF magic bytes"
        )
    if len(data) < HEADER_LENGTH:
        raise TruncatedError(
            f"the file ends inside its header: {len(data)} of {HEADER_LENGTH} header bytes"
        )
    _magic, version, suite_id, chunk_size, length, salt, commitment = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"dataset format version {version} is not supported (this release reads "
            f"version {FORMAT_VERSION})",
            hint="upgrade Nestor, or the header's version field was altered",
        )
    try:
        suite = AeadSuite(suite_id)
    except ValueError:
        raise UnsupportedFormatError(
            f"unknown chunk cipher id {suite_id} in the header "
            f"(known: 1 = AES-256-GCM, 2 = ChaCha20-Poly1305)"
        ) from None
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise HeaderError(
            f"invalid chunk size {chunk_size} in the header: it must be a power of two "
            f"from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}"
        )
    header = DatasetHeader(
        version=version,
        suite=suite,
        chunk_size=chunk_size,
        plaintext_length=length,
        salt=salt,
        key_commitment=commitment,
        header_mac=bytes(data[_PREFIX.size : HEADER_LENGTH]),
    )
    if header.chunk_count > MAX_CHUNKS:
        raise HeaderError(f"the header declares {header.chunk_count} chunks, over the limit")
    return header


class FileKeys:
    """Keys derived for one file: the AEAD for its chunks. Built only by
    :func:`derive_file_keys`, which checks the key commitment and header MAC."""

    __slots__ = ("_aead", "header", "header_bytes")

    def __init__(self, header: DatasetHeader, aead: AESGCM | ChaCha20Poly1305) -> None:
        self.header = header
        self.header_bytes = header.to_bytes()
        self._aead = aead

    def aad(self, index: int) -> bytes:
        final = 1 if index == self.header.chunk_count - 1 else 0
        return self.header_bytes + bytes([final])

    def seal_into(self, index: int, plaintext: memoryview, out: memoryview) -> None:
        self._aead.encrypt_into(_nonce(index), plaintext, self.aad(index), out)

    def open_into(self, index: int, chunk: memoryview, out: memoryview) -> None:
        """Decrypt chunk ``index`` into ``out``; raises InvalidTag on failure."""
        self._aead.decrypt_into(_nonce(index), chunk, self.aad(index), out)

    def try_open_as(self, index: int, final: bool, chunk: bytes) -> bool:
        """Whether ``chunk`` authenticates as chunk ``index`` (diagnosis only)."""
        aad = self.header_bytes + (b"\x01" if final else b"\x00")
        try:
            self._aead.decrypt(_nonce(index), chunk, aad)
        except InvalidTag:
            return False
        return True


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def _hkdf(key: DataKey, salt: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=label).derive(key.secret)


def _aead_for(suite: AeadSuite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if suite is AeadSuite.AES_256_GCM:
        return AESGCM(key)
    return ChaCha20Poly1305(key)


def new_header(
    key: DataKey,
    plaintext_length: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    suite: AeadSuite = AeadSuite.AES_256_GCM,
    salt: bytes | None = None,
) -> tuple[DatasetHeader, FileKeys]:
    """Make the header for a new file. ``salt`` is for test vectors only:
    real files always get a fresh random salt."""
    if plaintext_length < 0:
        raise HeaderError("plaintext length cannot be negative")
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise HeaderError(
            f"chunk size {chunk_size} must be a power of two from {MIN_CHUNK_SIZE} "
            f"to {MAX_CHUNK_SIZE}"
        )
    salt = secrets.token_bytes(SALT_LENGTH) if salt is None else salt
    if len(salt) != SALT_LENGTH:
        raise HeaderError(f"salt must be {SALT_LENGTH} bytes")
    draft = DatasetHeader(
        version=FORMAT_VERSION,
        suite=suite,
        chunk_size=chunk_size,
        plaintext_length=plaintext_length,
        salt=salt,
        key_commitment=_hkdf(key, salt, LABEL_KEY_COMMITMENT),
        header_mac=b"",
    )
    if draft.chunk_count > MAX_CHUNKS:
        raise HeaderError(f"{plaintext_length} bytes need more than {MAX_CHUNKS} chunks")
    mac = hmac.new(_hkdf(key, salt, LABEL_HEADER_MAC), draft.prefix_bytes(), "sha256").digest()
    header = DatasetHeader(**{**draft.__dict__, "header_mac": mac})
    return header, FileKeys(header, _aead_for(suite, _hkdf(key, salt, LABEL_CHUNK_KEY)))


def derive_file_keys(header: DatasetHeader, key: DataKey) -> FileKeys:
    """Check that ``key`` opens this file and that its header is intact."""
    expected = _hkdf(key, header.salt, LABEL_KEY_COMMITMENT)
    if not hmac.compare_digest(expected, header.key_commitment):
        raise WrongKeyError(
            "the data key does not open this file: it does not match the key commitment "
            "in the header",
            hint="use the key file written when this dataset was encrypted (or the "
            "header's salt/commitment bytes were altered)",
        )
    mac_key = _hkdf(key, header.salt, LABEL_HEADER_MAC)
    mac = hmac.new(mac_key, header.prefix_bytes(), "sha256").digest()
    if not hmac.compare_digest(mac, header.header_mac):
        raise HeaderError(
            "the file header was modified after encryption (header MAC mismatch)",
            hint="fetch the file again from its source",
        )
    return FileKeys(header, _aead_for(header.suite, _hkdf(key, header.salt, LABEL_CHUNK_KEY)))


class CommitmentBuilder:
    """Accumulates chunk tags in order and yields the file's commitment:
    ``sha256:`` + hex of SHA-256(label || header || u64 chunk count ||
    MTH(u64 index || tag, ...)). Constant memory, whatever the chunk count."""

    __slots__ = ("_header", "_tree")

    def __init__(self, header: DatasetHeader) -> None:
        self._header = header
        self._tree = TreeBuilder()

    def add(self, tag: bytes) -> None:
        self._tree.add(self._tree.count.to_bytes(8, "big") + tag)

    def commitment(self) -> str:
        if self._tree.count != self._header.chunk_count:
            raise ValueError("one tag per chunk is needed")
        h = hashlib.sha256(LABEL_COMMITMENT)
        h.update(self._header.to_bytes())
        h.update(self._tree.count.to_bytes(8, "big"))
        h.update(self._tree.root())
        return "sha256:" + h.hexdigest()


def commitment_from_tags(header: DatasetHeader, tags: list[bytes]) -> str:
    builder = CommitmentBuilder(header)
    for tag in tags:
        builder.add(tag)
    return builder.commitment()


@dataclass(frozen=True)
class DatasetSummary:
    """What encryption or a verified decryption learned about a file."""

    header: DatasetHeader
    commitment: str


def _read_exact(src: _Readable, view: memoryview) -> int:
    """Fill ``view`` from ``src``; return how many bytes arrived before EOF."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _write_all(dst: _Writable, view: memoryview) -> None:
    done = 0
    while done < len(view):
        n = dst.write(view[done:])
        if n is None:
            raise BlockingIOError("non-blocking output is not supported")
        done += n


def encrypt_stream(
    src: _Readable,
    dst: _Writable,
    key: DataKey,
    plaintext_length: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    suite: AeadSuite = AeadSuite.AES_256_GCM,
    progress: ProgressCallback | None = None,
    salt: bytes | None = None,
) -> DatasetSummary:
    """Encrypt exactly ``plaintext_length`` bytes from ``src`` into ``dst``.

    Memory use is two chunk buffers, whatever the size of the input.
    """
    header, keys = new_header(key, plaintext_length, chunk_size=chunk_size, suite=suite, salt=salt)
    _write_all(dst, memoryview(header.to_bytes()))
    plain = bytearray(chunk_size)
    sealed = bytearray(chunk_size + TAG_LENGTH)
    pv, sv = memoryview(plain), memoryview(sealed)
    commitment = CommitmentBuilder(header)
    for index in range(header.chunk_count):
        want = header.chunk_plaintext_length(index)
        got = _read_exact(src, pv[:want])
        if got != want:
            raise TruncatedError(
                f"the input ended after {index * chunk_size + got} bytes, but "
                f"{plaintext_length} were announced",
                hint="the input changed while it was being encrypted",
            )
        keys.seal_into(index, pv[:want], sv[: want + TAG_LENGTH])
        commitment.add(bytes(sv[want : want + TAG_LENGTH]))
        _write_all(dst, sv[: want + TAG_LENGTH])
        if progress is not None:
            progress(want)
    if _read_exact(src, pv[:1]):
        raise TrailingDataError(
            f"the input is longer than the {plaintext_length} bytes announced",
            hint="the input changed while it was being encrypted",
        )
    return DatasetSummary(header, commitment.commitment())


def read_header(src: _Readable) -> DatasetHeader:
    buf = bytearray(HEADER_LENGTH)
    got = _read_exact(src, memoryview(buf))
    return parse_header(bytes(buf[:got]))


def decrypt_stream(
    src: _Readable,
    dst: _Writable,
    key: DataKey,
    *,
    expected_commitment: str | None = None,
    source_length: int | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetSummary:
    """Verify and decrypt a whole file from ``src`` into ``dst``.

    Each chunk reaches ``dst`` only after it authenticates, but a later chunk
    can still fail: a caller that must never expose partial plaintext writes
    to a temporary and discards it on any error (``nestor.client.datafiles``
    does). ``source_length``, when known, sharpens the diagnosis of a missing
    or repeated chunk.
    """
    header = read_header(src)
    keys = derive_file_keys(header, key)
    stored = bytearray(header.chunk_size + TAG_LENGTH)
    plain = bytearray(header.chunk_size)
    sv, pv = memoryview(stored), memoryview(plain)
    commitment = CommitmentBuilder(header)
    for index in range(header.chunk_count):
        want = header.chunk_length(index)
        got = _read_exact(src, sv[:want])
        if got == 0:
            raise TruncatedError(
                f"the file ends at a chunk boundary after {index} of {header.chunk_count} "
                f"chunks: {header.chunk_count - index} chunk(s) missing at the end"
            )
        if got < want:
            raise TruncatedError(
                f"the file ends in the middle of chunk {index}: {got} of its {want} bytes "
                "are present"
            )
        try:
            keys.open_into(index, sv[:want], pv[: want - TAG_LENGTH])
        except InvalidTag:
            raise _diagnose(keys, index, bytes(sv[:want]), source_length) from None
        commitment.add(bytes(sv[want - TAG_LENGTH : want]))
        _write_all(dst, pv[: want - TAG_LENGTH])
        if progress is not None:
            progress(want - TAG_LENGTH)
    extra = _read_exact(src, sv[:1])
    if extra:
        raise TrailingDataError(
            "bytes follow the final chunk: a chunk was duplicated or data was appended",
            hint=f"the header declares {header.chunk_count} chunks, "
            f"{header.file_length} bytes in all",
        )
    summary = DatasetSummary(header, commitment.commitment())
    check_commitment(summary.commitment, expected_commitment)
    return summary


def check_commitment(actual: str, expected: str | None) -> None:
    if expected is not None and not hmac.compare_digest(actual.encode(), expected.encode()):
        raise CommitmentMismatchError(
            f"the ciphertext's commitment is {actual}, not the expected {expected}",
            hint="the file is not the one that was committed to (swapped or re-encrypted)",
        )


def _diagnose(keys: FileKeys, position: int, chunk: bytes, source_length: int | None) -> ChunkError:
    """Explain why the chunk at ``position`` failed, by trying it as other chunks.

    Only runs on the failure path, with the right key: it tells the key
    holder what happened to the file and gives the host no oracle.
    """
    header = keys.header
    n = header.chunk_count
    size_delta = None if source_length is None else source_length - header.file_length
    one_chunk = header.chunk_size + TAG_LENGTH
    candidates: Iterator[int] = (
        j
        for j in _nearby_first(position, n)
        if j != position and header.chunk_length(j) == len(chunk)
    )
    for trials, j in enumerate(candidates):
        if trials >= _MAX_DIAGNOSIS_TRIALS:
            break
        if keys.try_open_as(j, j == n - 1, chunk):
            if j == position + 1 and size_delta == -one_chunk:
                return ChunkError(
                    f"chunk {position} is missing: the chunk stored at position {position} "
                    f"is chunk {j} (a chunk was dropped)",
                    index=position,
                )
            if j < position and size_delta == one_chunk:
                return ChunkError(
                    f"chunk {j} is repeated: position {position} holds a second copy of it "
                    "(a chunk was duplicated)",
                    index=position,
                )
            return ChunkError(
                f"chunks are out of order: position {position} holds chunk {j} "
                "(chunks were reordered, dropped or duplicated)",
                index=position,
            )
    return ChunkError(
        f"chunk {position} failed authentication: its bytes were modified, or it was "
        "spliced in from another file or dataset",
        index=position,
        hint="fetch the file again from its source; do not trust any of its plaintext",
    )


def _nearby_first(position: int, n: int) -> Iterator[int]:
    """Chunk indexes ordered by distance from ``position``."""
    yield position
    for d in range(1, n):
        if position - d >= 0:
            yield position - d
        if position + d < n:
            yield position + d
        if position - d < 0 and position + d >= n:
            return


class DatasetReader:
    """Random access to one file's chunks: ``read_chunk(i)`` decrypts and
    authenticates chunk ``i`` alone. Used by workers that process a share."""

    def __init__(self, src: _RandomAccess, key: DataKey) -> None:
        src.seek(0)
        self._src = src
        self.header = read_header(src)
        self._keys = derive_file_keys(self.header, key)

    def read_chunk(self, index: int) -> bytes:
        header = self.header
        want = header.chunk_length(index)
        self._src.seek(header.chunk_offset(index))
        stored = bytearray(want)
        got = _read_exact(self._src, memoryview(stored))
        if got < want:
            raise TruncatedError(
                f"the file ends inside chunk {index}: {got} of its {want} bytes are present"
            )
        return open_chunk(self._keys, index, bytes(stored))

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.header.chunk_count):
            yield self.read_chunk(index)


def open_chunk(keys: FileKeys, index: int, stored: bytes) -> bytes:
    """Authenticate and decrypt one stored chunk (ciphertext || tag)."""
    if len(stored) != keys.header.chunk_length(index):
        raise ChunkError(
            f"chunk {index} is {len(stored)} bytes; the header says "
            f"{keys.header.chunk_length(index)}",
            index=index,
        )
    out = bytearray(len(stored) - TAG_LENGTH)
    try:
        keys.open_into(index, memoryview(stored), memoryview(out))
    except InvalidTag:
        raise ChunkError(
            f"chunk {index} failed authentication: it was modified, moved, or comes from "
            "another file",
            index=index,
        ) from None
    return bytes(out)


def commitment_of(src: _RandomAccess) -> DatasetSummary:
    """Compute a file's commitment without the key, reading only the header
    and each chunk's tag. Checks that the file has exactly the declared size."""
    src.seek(0)
    header = read_header(src)
    size = src.seek(0, os.SEEK_END)
    if size != header.file_length:
        raise (TruncatedError if size < header.file_length else TrailingDataError)(
            f"the file is {size} bytes but its header declares {header.file_length}"
        )
    commitment = CommitmentBuilder(header)
    for index in range(header.chunk_count):
        src.seek(header.chunk_offset(index) + header.chunk_length(index) - TAG_LENGTH)
        commitment.add(src.read(TAG_LENGTH))
    return DatasetSummary(header, commitment.commitment())
