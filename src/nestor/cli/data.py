"""`nestor encrypt`, `nestor decrypt`, `nestor inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import byte_progress, out
from nestor.client import datafiles
from nestor.crypto.dataset import AeadSuite, DataKey
from nestor.errors import ConfigurationError

_SUITES = {"aes-256-gcm": AeadSuite.AES_256_GCM, "chacha20-poly1305": AeadSuite.CHACHA20_POLY1305}


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t)
    except ValueError:
        raise ConfigurationError(f"cannot read chunk size {text!r}; try 1MiB or 65536") from None


def encrypt(
    source: Annotated[Path, typer.Argument(help="Plaintext file to encrypt (any size).")],
    destination: Annotated[Path, typer.Argument(help="Where to write the encrypted dataset.")],
    key_out: Annotated[
        Path | None,
        typer.Option("--key-out", help="Write a fresh data key here (mode 0600)."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Encrypt under an existing data key file instead."),
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(help="Plaintext bytes per chunk: a power of two from 4KiB to 64MiB.")
    ] = "1MiB",
    cipher: Annotated[
        str, typer.Option(help="Chunk cipher: aes-256-gcm or chacha20-poly1305.")
    ] = "aes-256-gcm",
    force: Annotated[bool, typer.Option(help="Replace DESTINATION if it exists.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal.")] = True,
) -> None:
    """Encrypt a file into the chunked Nestor dataset format.

    The data key never leaves your machine except sealed to an attested
    enclave. The printed commitment names this exact ciphertext: key grants
    and receipts refer to it.

    Example: nestor encrypt visits.csv visits.nds --key-out visits.key
    """
    if (key_out is None) == (key is None):
        raise ConfigurationError(
            "give exactly one of --key-out (new key) or --key (existing key)",
            hint="nestor encrypt IN OUT --key-out KEY",
        )
    if cipher not in _SUITES:
        raise ConfigurationError(f"unknown cipher {cipher!r}; choose {', '.join(_SUITES)}")
    if key_out is not None:
        data_key = DataKey.generate()
        datafiles.write_data_key(key_out, data_key)
    else:
        assert key is not None
        data_key = datafiles.read_data_key(key)
    if not source.is_file():
        raise ConfigurationError(f"input file {source} does not exist or is not a file")
    total = source.stat().st_size
    with byte_progress("encrypting", total, enabled=progress) as advance:
        result = datafiles.encrypt_file(
            source,
            destination,
            data_key,
            chunk_size=_parse_size(chunk_size),
            suite=_SUITES[cipher],
            overwrite=force,
            progress=advance,
        )
    out.print(f"encrypted {total} bytes into {result.summary.header.chunk_count} chunks")
    out.print(f"commitment {result.summary.commitment}")


def decrypt(
    source: Annotated[Path, typer.Argument(help="Encrypted dataset file.")],
    destination: Annotated[Path, typer.Argument(help="Where to write the plaintext.")],
    key: Annotated[Path, typer.Option("--key", help="The data key file.")],
    commitment: Annotated[
        str | None,
        typer.Option(help="Refuse the file unless its commitment is exactly this value."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace DESTINATION if it exists.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal.")] = True,
) -> None:
    """Verify and decrypt a Nestor dataset.

    Every chunk is authenticated, in order, and the file must end exactly
    where its header says. DESTINATION is created only when everything
    checks out: on any error no plaintext is left behind.
    """
    data_key = datafiles.read_data_key(key)
    if not source.is_file():
        raise ConfigurationError(f"encrypted file {source} does not exist or is not a file")
    with byte_progress("decrypting", source.stat().st_size, enabled=progress) as advance:
        result = datafiles.decrypt_file(
            source,
            destination,
            data_key,
            expected_commitment=commitment,
            overwrite=force,
            progress=advance,
        )
    out.print(f"decrypted {result.summary.header.plaintext_length} bytes; all chunks verified")
    out.print(f"commitment {result.summary.commitment}")


def inspect(
    source: Annotated[Path, typer.Argument(help="Encrypted dataset file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print an encrypted dataset's header and ciphertext commitment (no key needed)."""
    summary = datafiles.inspect_file(source)
    info: dict[str, str | int] = {**summary.header.describe(), "commitment": summary.commitment}
    if as_json:
        out.print(json.dumps(info, indent=2))
        return
    width = max(len(k) for k in info)
    for k, v in info.items():
        out.print(f"{k.replace('_', ' '):<{width}}  {v}")
