"""`nestor demo`: a narrated collaboration on this machine.

The demo walks three parties through what exists today: identities, the
signed contract, the encrypted-data format and HPKE key wrapping. The
attestation, host and enclave steps join it as they land.
"""

from __future__ import annotations

import csv
import hashlib
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import err, out
from nestor.client import contracts, datafiles, party
from nestor.crypto import hpke
from nestor.crypto.dataset import DataKey
from nestor.errors import DatasetFormatError
from nestor.protocol.contract import verify_contract

PROGRAM_SOURCE = '''"""Pooled descriptive statistics by group, small groups suppressed."""


def run(inputs, parameters):
    raise NotImplementedError("runs inside the enclave once the pipeline lands")
'''
# The simulated TEE's reference value arrives with the attestation work; until
# then the demo's policy names a placeholder measurement that nothing matches.
PLACEHOLDER_MEASUREMENT = "00" * 32

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

    _step(3, f"{PARTIES[0]} drafts the contract; every party reviews and signs it")
    now = datetime.now(UTC).replace(microsecond=0)
    bundle = root / "pooled-stats"
    (bundle / "pooled_stats").mkdir(parents=True)
    (bundle / "pooled_stats" / "main.py").write_text(PROGRAM_SOURCE)
    draft = contracts.new_contract(
        "Readmissions after cardiac surgery",
        "readmissions-demo",
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=90),
    )
    for i, member in enumerate(members):
        roles = ["data-provider", "result-recipient"] + (["job-submitter"] if i == 0 else [])
        draft = contracts.add_party(draft, member.card, roles)
    for i, member in enumerate(members):
        draft = contracts.add_dataset(
            draft,
            dataset_id=f"visits-{i + 1}",
            owner=member.card.party_id,
            description=f"Hospital visits of {member.card.name}",
            fmt="csv",
            columns=[
                ("patient", "string"),
                ("age", "integer"),
                ("ward", "string"),
                ("length_of_stay_days", "float"),
                ("readmitted", "integer"),
            ],
        )
    draft = contracts.add_program(
        draft,
        program_id="pooled-stats",
        bundle=bundle,
        entry_point="pooled_stats.main:run",
        description="Readmission rate and length of stay by ward, pooled",
        inputs=[f"visits-{i + 1}" for i in range(len(members))],
        recipients=[(m.card.party_id, "full") for m in members],
        min_group_size=10,
        parameters={},
    )
    draft = contracts.set_policy(
        draft,
        platforms=[{"platform": "simulated", "measurements": [PLACEHOLDER_MEASUREMENT]}],
        submitters=[members[0].card.party_id],
        max_runs=3,
    )
    contract_path = root / "contract.json"
    contracts.save_contract(contract_path, draft)
    _say(f"contract digest {draft.digest[:23]}…: 3 parties, 3 datasets, 1 program")
    signed = contracts.load_contract(contract_path)
    for member in members:
        # each party reads the same file, checks the digest it reviewed, and signs
        signed = contracts.sign(signed, member)
        _say(f"{member.card.name} signed after reviewing digest {signed.digest[:23]}…")
    contracts.save_contract(contract_path, signed)
    verified = verify_contract(contracts.load_contract(contract_path), now=datetime.now(UTC))
    _say(f"the contract is in effect: signed by all {len(verified.contract.parties)} parties")

    _step(4, "Each party encrypts its dataset locally; only ciphertext would leave")
    recipient = members[0]
    _say(
        f"the data keys are wrapped to {recipient.card.name}'s HPKE key here; with the "
        "pipeline they are wrapped to the attested enclave's key instead, bound to the "
        "contract digest, the dataset id and the ciphertext commitment"
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
        context = _grant_context(signed.digest, f"visits-{i + 1}", commitment)
        suite = hpke.Suite.MLKEM768X25519_SHA256_AES256GCM if i == 2 else hpke.DEFAULT_SUITE
        wrapped = hpke.seal_key(key.secret, recipient.card.hpke_key(suite), context=context)
        wrapped_keys[i] = (wrapped, commitment, d / "visits.nds")
        _say(
            f"{member.card.name}: {plain.stat().st_size:,} bytes → "
            f"{result.summary.header.chunk_count} chunks, commitment {commitment[:23]}…, "
            f"key wrapped with HPKE ({suite.label}, {len(wrapped.to_bytes())} bytes)"
        )

    _step(5, "The key holder opens each wrapped key and verifies every chunk")
    for i, (wrapped, commitment, path) in wrapped_keys.items():
        context = _grant_context(signed.digest, f"visits-{i + 1}", commitment)
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

    _step(6, "An untrusted store flips one byte: decryption refuses, nothing is written")
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


def _grant_context(contract_digest: str, dataset_id: str, commitment: str) -> bytes:
    return f"contract={contract_digest};dataset={dataset_id};commitment={commitment}".encode()
