"""`nestor demo`: a narrated collaboration on this machine.

This release covers the foundation: party identities, the encrypted-data
format and HPKE key wrapping. The demo walks three parties through what
exists; the contract, attestation, host and enclave steps join it as they
land (docs/roadmap.md).
"""

from __future__ import annotations

import csv
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import err, out
from nestor.client import datafiles, party
from nestor.crypto import hpke
from nestor.crypto.dataset import DataKey
from nestor.errors import DatasetFormatError

PARTIES = ("Northside Hospital", "Riverside Hospital", "Lakeside Clinic")


def _step(n: int, text: str) -> None:
    err.print(f"\n[bold cyan]{n}.[/bold cyan] [bold]{text}[/bold]")


def _say(text: str) -> None:
    err.print(f"   {text}")


def _make_visits(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - synthetic demo data, not secrets
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient", "age", "ward", "length_of_stay_days", "readmitted"])
        for i in range(rows):
            w.writerow(
                [
                    f"P{seed:02d}{i:06d}",
                    rng.randint(18, 95),
                    rng.choice(["cardiology", "oncology", "surgery", "geriatrics"]),
                    round(rng.expovariate(1 / 4.5), 1),
                    int(rng.random() < 0.12),
                ]
            )


def demo(
    workspace: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's files here instead of a temporary directory."),
    ] = None,
    rows: Annotated[int, typer.Option(help="Rows of synthetic data per party.")] = 50_000,
) -> None:
    """Run a narrated multi-party walk-through on this machine.

    Three hospitals create identities, exchange and verify party cards,
    encrypt their datasets on their own machines, and wrap each data key
    with HPKE to the key of the party that will run the analysis (the
    attested enclave's key, once the pipeline lands). It then shows that a
    tampered ciphertext is refused with no plaintext written.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nestor-demo-") as tmp:
        root = Path(workspace) if workspace else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        _run(root, rows)
    err.print(f"\n[bold green]demo finished[/bold green] in {time.perf_counter() - started:.1f} s")
    out.print("ok")


def _run(root: Path, rows: int) -> None:
    _step(1, "Each party creates its identity on its own machine")
    members: list[party.Party] = []
    for i, name in enumerate(PARTIES):
        d = root / f"party-{i + 1}"
        members.append(party.init_party(d, name))
        _say(f"{name}: party id {members[-1].card.party_id[:23]}…  (keys in {d}, mode 0600)")

    _step(2, "They exchange party cards and verify each other's self-signatures")
    for me in range(len(members)):
        for other in range(len(members)):
            if other != me:
                party.import_card(root / f"party-{me + 1}", root / f"party-{other + 1}/card.json")
    _say("every card verified: its party id is its signing key's fingerprint and it is self-signed")

    _step(3, "Each party encrypts its dataset locally; only ciphertext would leave")
    recipient = members[0]
    _say(
        f"the data keys are wrapped to {recipient.card.name}'s HPKE key here; with the "
        "pipeline they are wrapped to the attested enclave's key instead"
    )
    digests: dict[int, str] = {}
    wrapped_keys: dict[int, tuple[hpke.WrappedKey, str, Path]] = {}
    for i, member in enumerate(members):
        d = root / f"party-{i + 1}"
        plain = d / "visits.csv"
        _make_visits(plain, rows, seed=i)
        digests[i] = hashlib.sha256(plain.read_bytes()).hexdigest()
        key = DataKey.generate()
        datafiles.write_data_key(d / "visits.key", key)
        result = datafiles.encrypt_file(plain, d / "visits.nds", key, chunk_size=1 << 16)
        commitment = result.summary.commitment
        context = f"dataset=visits-{i + 1};commitment={commitment}".encode()
        suite = hpke.Suite.MLKEM768X25519_SHA256_AES256GCM if i == 2 else hpke.DEFAULT_SUITE
        wrapped = hpke.seal_key(key.secret, recipient.card.hpke_key(suite), context=context)
        wrapped_keys[i] = (wrapped, commitment, d / "visits.nds")
        _say(
            f"{member.card.name}: {plain.stat().st_size:,} bytes → "
            f"{result.summary.header.chunk_count} chunks, commitment {commitment[:23]}…, "
            f"key wrapped with HPKE ({suite.label}, {len(wrapped.to_bytes())} bytes)"
        )

    _step(4, "The key holder opens each wrapped key and verifies every chunk")
    for i, (wrapped, commitment, path) in wrapped_keys.items():
        context = f"dataset=visits-{i + 1};commitment={commitment}".encode()
        secret = hpke.open_key(
            hpke.WrappedKey.from_bytes(wrapped.to_bytes()),
            recipient.hpke_private_key(wrapped.suite),
            context=context,
        )
        outp = root / f"received-{i + 1}.csv"
        datafiles.decrypt_file(path, outp, DataKey(secret), expected_commitment=commitment)
        same = hashlib.sha256(outp.read_bytes()).hexdigest() == digests[i]
        _say(
            f"{members[i].card.name}'s dataset: commitment matches, all chunks authentic, "
            f"plaintext identical: {same}"
        )
        if not same:
            raise SystemExit("demo failed: plaintext differs")

    _step(5, "An untrusted store flips one byte: decryption refuses, nothing is written")
    wrapped, commitment, path = wrapped_keys[1]
    tampered = root / "tampered.nds"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    key = datafiles.read_data_key(root / "party-2/visits.key")
    try:
        datafiles.decrypt_file(tampered, root / "should-not-exist.csv", key)
    except DatasetFormatError as exc:
        _say(f"refused: {exc.message}")
    else:
        raise SystemExit("demo failed: a tampered file decrypted")
    _say(f"plaintext file written: {(root / 'should-not-exist.csv').exists()}")
