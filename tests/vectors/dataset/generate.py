"""Regenerate the encrypted-dataset test vectors in this folder (see README.md).

Every input is fixed: data keys, salts, chunk sizes and plaintexts (each
plaintext is a short hex pattern repeated and cut to a length), so running
this twice gives byte-identical files. The ciphertexts are made by Nestor's
own ``nestor.crypto.dataset.encrypt_stream``; the manifest adds the values an
implementer needs to debug a reader step by step (derived keys, header, tags,
Merkle root)::

    .venv/bin/python tests/vectors/dataset/generate.py          # rewrite the files
    .venv/bin/python tests/vectors/dataset/generate.py --check  # compare only

``--check`` compares instead of writing and exits 1 on any difference.
``tests/crypto/test_dataset_vectors.py`` checks the files with a reader
written from docs/formats.md alone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nestor.crypto.dataset import (
    LABEL_CHUNK_KEY,
    LABEL_HEADER_MAC,
    LABEL_KEY_COMMITMENT,
    TAG_LENGTH,
    AeadSuite,
    DataKey,
    commitment_of,
    decrypt_stream,
    encrypt_stream,
)
from nestor.crypto.merkle import tree_hash

HERE = Path(__file__).resolve().parent
MANIFEST = "manifest.json"

# An ASCII pattern whose length (20) does not divide 4096, so no two chunks
# of one file hold the same plaintext.
TEXT = b"Nestor test vector.\n".hex()


@dataclass(frozen=True)
class Spec:
    """One vector's fixed inputs."""

    name: str
    description: str
    suite: AeadSuite
    chunk_size: int
    key: bytes
    salt: bytes
    repeat: str  # hex pattern
    length: int


def _run(start: int) -> bytes:
    """32 consecutive byte values from ``start`` (mod 256)."""
    return bytes((start + i) % 256 for i in range(32))


SPECS: tuple[Spec, ...] = (
    Spec(
        "aes256gcm-empty",
        "empty plaintext: one chunk holding only a tag",
        AeadSuite.AES_256_GCM,
        4096,
        _run(0),
        _run(32),
        TEXT,
        0,
    ),
    Spec(
        "aes256gcm-1-byte",
        'the single byte "a"; same data key as aes256gcm-empty, other salt, '
        "so every derived value differs",
        AeadSuite.AES_256_GCM,
        4096,
        _run(0),
        _run(64),
        "61",
        1,
    ),
    Spec(
        "aes256gcm-1-full-chunk",
        "exactly one full chunk (L = chunk_size): one chunk, no empty second chunk",
        AeadSuite.AES_256_GCM,
        4096,
        _run(96),
        _run(128),
        "000102fdfeff",
        4096,
    ),
    Spec(
        "aes256gcm-3-chunks",
        "two full chunks and a 100-byte final chunk",
        AeadSuite.AES_256_GCM,
        4096,
        _run(160),
        _run(192),
        TEXT,
        2 * 4096 + 100,
    ),
    Spec(
        "chacha20poly1305-2-chunks",
        "ChaCha20-Poly1305: one full chunk and a 1-byte final chunk",
        AeadSuite.CHACHA20_POLY1305,
        4096,
        _run(224),
        _run(16),
        TEXT,
        4096 + 1,
    ),
    Spec(
        "aes256gcm-5-chunks",
        "five chunks: an unbalanced Merkle tree (RFC 9162 splits 5 leaves as 4 + 1)",
        AeadSuite.AES_256_GCM,
        4096,
        _run(48),
        _run(80),
        TEXT,
        4 * 4096 + 5,
    ),
    Spec(
        "aes256gcm-8192-chunk-size",
        "chunk_size 8192: one full chunk and a 1-byte final chunk",
        AeadSuite.AES_256_GCM,
        8192,
        _run(112),
        _run(144),
        TEXT,
        8192 + 1,
    ),
)


def plaintext(repeat: str, length: int) -> bytes:
    """The plaintext rule of the manifest: the hex pattern repeated, cut to ``length``."""
    pattern = bytes.fromhex(repeat)
    if not pattern:
        raise ValueError("the repeat pattern must not be empty")
    return (pattern * (length // len(pattern) + 1))[:length]


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_one(spec: Spec) -> tuple[bytes, dict[str, Any]]:
    """Encrypt one vector; return the file's bytes and its manifest entry."""
    data = plaintext(spec.repeat, spec.length)
    key = DataKey(spec.key)
    out = io.BytesIO()
    summary = encrypt_stream(
        io.BytesIO(data),
        out,
        key,
        len(data),
        chunk_size=spec.chunk_size,
        suite=spec.suite,
        salt=spec.salt,
    )
    blob = out.getvalue()
    header = summary.header

    # Consistency of what Nestor wrote (a failure here is a Nestor bug).
    check = io.BytesIO()
    assert decrypt_stream(io.BytesIO(blob), check, key).commitment == summary.commitment
    assert check.getvalue() == data
    assert commitment_of(io.BytesIO(blob)).commitment == summary.commitment
    assert len(blob) == header.file_length
    assert header.key_commitment == _hkdf(spec.key, spec.salt, LABEL_KEY_COMMITMENT)

    tags = []
    for index in range(header.chunk_count):
        end = header.chunk_offset(index) + header.chunk_length(index)
        tags.append(blob[end - TAG_LENGTH : end])
    root = tree_hash([index.to_bytes(8, "big") + tag for index, tag in enumerate(tags)])

    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "file": f"{spec.name}.nds",
        "suite": spec.suite.label,
        "suite_id": int(spec.suite),
        "chunk_size": spec.chunk_size,
        "key": spec.key.hex(),
        "salt": spec.salt.hex(),
        "plaintext": {"repeat": spec.repeat, "length": spec.length},
        "plaintext_sha256": _sha256(data),
        "chunk_count": header.chunk_count,
        "file_length": len(blob),
        "file_sha256": _sha256(blob),
        "commitment": summary.commitment,
        "intermediate": {
            "chunk_key": _hkdf(spec.key, spec.salt, LABEL_CHUNK_KEY).hex(),
            "key_commitment": header.key_commitment.hex(),
            "header_mac_key": _hkdf(spec.key, spec.salt, LABEL_HEADER_MAC).hex(),
            "header_mac": header.header_mac.hex(),
            "header": header.to_bytes().hex(),
            "tags": [tag.hex() for tag in tags],
            "merkle_root": root.hex(),
        },
    }
    return blob, entry


def build() -> tuple[dict[str, bytes], str]:
    """Every vector in memory: file name -> bytes, and the manifest's text."""
    files: dict[str, bytes] = {}
    entries = []
    for spec in SPECS:
        blob, entry = build_one(spec)
        files[entry["file"]] = blob
        entries.append(entry)
    manifest = {
        "format": "Nestor encrypted dataset, version 1 (docs/formats.md)",
        "generator": "tests/vectors/dataset/generate.py",
        "plaintext_rule": (
            "plaintext = bytes.fromhex(repeat) repeated and cut to its first `length` bytes"
        ),
        "vectors": entries,
    }
    return files, json.dumps(manifest, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a diff")
    args = parser.parse_args(argv)
    files, manifest = build()
    wanted = {**files, MANIFEST: manifest.encode()}
    if args.check:
        stale = [
            name
            for name, blob in wanted.items()
            if not (HERE / name).is_file() or (HERE / name).read_bytes() != blob
        ]
        extra = sorted({p.name for p in HERE.glob("*.nds")} - set(files))
        for name in stale:
            print(f"differs or missing: {name}", file=sys.stderr)
        for name in extra:
            print(f"not produced by the generator: {name}", file=sys.stderr)
        return 1 if stale or extra else 0
    for name, blob in wanted.items():
        (HERE / name).write_bytes(blob)
    total = sum(len(blob) for blob in wanted.values())
    print(f"wrote {len(wanted)} files ({total} bytes) to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
