"""Encrypting and decrypting dataset files on a party's machine.

Thin, file-shaped wrappers over ``nestor.crypto.dataset``: data key files,
atomic outputs (a failed decryption leaves no plaintext file behind) and a
progress callback for the CLI's progress bar.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nestor.client.secure_files import atomic_output, read_secret_file, write_secret_file
from nestor.crypto import dataset
from nestor.crypto.dataset import AeadSuite, DataKey, DatasetSummary, ProgressCallback
from nestor.errors import ConfigurationError, KeyFileError, NestorError
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode, b64encode

KEY_FILE_TYPE = "nestor/data-key"


def write_data_key(path: Path, key: DataKey, *, overwrite: bool = False) -> None:
    body = {"type": KEY_FILE_TYPE, "version": 1, "key": b64encode(key.secret)}
    write_secret_file(Path(path), json.dumps(body).encode() + b"\n", overwrite=overwrite)


def read_data_key(path: Path) -> DataKey:
    data = read_secret_file(Path(path))
    try:
        obj = canonical.decode(data.strip())
    except NestorError:
        raise KeyFileError(f"{path} is not a Nestor data key file (not JSON)") from None
    if not isinstance(obj, dict) or obj.get("type") != KEY_FILE_TYPE:
        raise KeyFileError(f"{path} is not a Nestor data key file")
    if obj.get("version") != 1 or set(obj) != {"type", "version", "key"}:
        raise KeyFileError(f"{path}: unsupported data key file version or fields")
    try:
        encoded = obj["key"]
        if not isinstance(encoded, str):
            raise KeyFileError(f"{path}: the key must be a base64url string")
        secret = b64decode(encoded, field="key")
        return DataKey(secret)
    except NestorError as exc:
        raise KeyFileError(f"{path} holds no valid data key: {exc.message}") from None


@dataclass(frozen=True)
class FileResult:
    summary: DatasetSummary
    output: Path


def encrypt_file(
    source: Path,
    destination: Path,
    key: DataKey,
    *,
    chunk_size: int = dataset.DEFAULT_CHUNK_SIZE,
    suite: AeadSuite = AeadSuite.AES_256_GCM,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> FileResult:
    source = Path(source)
    try:
        src = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ConfigurationError(f"input file {source} does not exist") from None
    with src:
        length = os.fstat(src.fileno()).st_size
        with atomic_output(Path(destination), overwrite=overwrite) as dst:
            summary = dataset.encrypt_stream(
                src, dst, key, length, chunk_size=chunk_size, suite=suite, progress=progress
            )
    return FileResult(summary, Path(destination))


def decrypt_file(
    source: Path,
    destination: Path,
    key: DataKey,
    *,
    expected_commitment: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> FileResult:
    """Verify and decrypt ``source``; ``destination`` appears only if every
    chunk, the chunk count and (if given) the commitment check out."""
    source = Path(source)
    try:
        src = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ConfigurationError(f"encrypted file {source} does not exist") from None
    with src:
        length = os.fstat(src.fileno()).st_size
        with atomic_output(Path(destination), overwrite=overwrite, mode=0o600) as dst:
            summary = dataset.decrypt_stream(
                src,
                dst,
                key,
                expected_commitment=expected_commitment,
                source_length=length,
                progress=progress,
            )
    return FileResult(summary, Path(destination))


def inspect_file(source: Path) -> DatasetSummary:
    """Header and commitment of an encrypted file; needs no key."""
    try:
        with open(source, "rb") as src:
            return dataset.commitment_of(src)
    except FileNotFoundError:
        raise ConfigurationError(f"encrypted file {source} does not exist") from None


def plaintext_size(source: Path) -> int:
    """Plaintext length declared by an encrypted file's header."""
    with open(source, "rb") as src:
        return dataset.read_header(src).plaintext_length
