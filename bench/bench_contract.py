"""Benchmark of contract encoding, signing and verification for many parties.

Usage::

    .venv/bin/python bench/bench_contract.py [--parties 100] [--repeat 5]
        [--profile] [--profile-top 15] [--check]

Builds, in memory, a contract with ``--parties`` parties (each with a real
party card: an Ed25519 signing key and HPKE keys for both suites, x25519 and
mlkem768-x25519), one dataset per party with a five-column schema, two
programs that read every dataset and send results to every party, and an
enclave policy listing reference values for all five platforms. Then, for
``--repeat`` rounds, it times:

- the canonical encoding (RFC 8785) of the contract's ``signed`` object;
- signing by every party, one after another (``sign_envelope``), as each
  party does when it runs ``nestor contract sign``; reported in total and
  per signature;
- full verification: ``parse_contract`` on the decoded JSON (structure,
  references and every party card's self-signature) followed by
  ``verify_contract`` (every party's contract signature, validity window);
  reported in total and per party, and split into its two steps;
- reading the file's bytes (``canonical.decode``), which ``nestor contract
  verify`` does before the above;
- an illustration, not Nestor's verifier: the same per-party checks with
  the body encoded once (``encode_once_verification``), to show how much of
  full verification is repeated canonical encoding;
- a baseline from the same run: 2N raw Ed25519 verifications (what full
  verification must do at least: N card self-signatures and N contract
  signatures), each over the contract's signing input (``PAE(payload_type,
  JCS(signed))``, the canonical body behind a short prefix).

Best and median over the rounds are printed, with the file size (the
``indent=2`` JSON that ``nestor contract`` writes, and the canonical body),
and the target "full verification of a 100-party contract under 1 s" with
PASS or FAIL. ``--profile`` runs cProfile over one extra full verification
and prints the top functions by internal and cumulative time. ``--check``
exits 1 when the target is missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import cryptography
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nestor.crypto import hpke, signing
from nestor.crypto.signing import generate_signing_key
from nestor.programs.bundle import BundleManifest
from nestor.protocol import canonical
from nestor.protocol.contract import (
    PAYLOAD_TYPE,
    Contract,
    contract_from_envelope,
    format_time,
    parse_contract,
    verify_contract,
)
from nestor.protocol.envelope import Envelope, pae, sign_envelope
from nestor.protocol.party_card import PartyCard, make_party_card

TARGET_PARTIES: Final = 100
TARGET_SECONDS: Final = 1.0

NOT_BEFORE: Final = datetime(2027, 1, 1, tzinfo=UTC)
NOT_AFTER: Final = datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)
CHECK_AT: Final = datetime(2027, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Member:
    signing_key: Ed25519PrivateKey
    card: PartyCard


# --------------------------------------------------------------------------
# Building the contract
# --------------------------------------------------------------------------


def make_members(n: int) -> list[Member]:
    created = datetime(2026, 12, 1, tzinfo=UTC)
    members: list[Member] = []
    for i in range(n):
        sk = generate_signing_key()
        hpke_keys = {
            suite: hpke.generate_private_key(suite).public_key()
            for suite in (
                hpke.Suite.X25519_SHA256_AES256GCM,
                hpke.Suite.MLKEM768X25519_SHA256_AES256GCM,
            )
        }
        card = make_party_card(f"Party {i + 1:04d}", sk, hpke_keys, created=created)
        members.append(Member(sk, card))
    return members


def _hex(label: str, nbytes: int) -> str:
    """Deterministic lowercase hex of ``nbytes`` bytes (a stand-in reference value)."""
    out = b""
    counter = 0
    while len(out) < nbytes:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:nbytes].hex()


def _program_digest(name: str) -> str:
    """A real bundle digest, of an in-memory manifest (nestor.programs.bundle)."""
    files: list[dict[str, canonical.JsonValue]] = []
    for path in (f"{name}/__init__.py", f"{name}/main.py"):
        content = f"# {path}\n".encode()
        files.append(
            {
                "path": path,
                "executable": False,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
    return BundleManifest(tuple(files)).digest


def contract_body(members: list[Member]) -> dict[str, Any]:
    ids = [m.card.party_id for m in members]
    parties = []
    for i, m in enumerate(members):
        roles = ["data-provider", "result-recipient"]
        if i < 3:
            roles.append("job-submitter")
        if i == 0:
            roles.append("auditor")
        parties.append({"card": m.card.to_json(), "roles": roles})
    datasets = [
        {
            "id": f"visits-{i + 1:04d}",
            "owner": pid,
            "description": f"Hospital visits contributed by party {i + 1}",
            "format": "csv",
            "schema": {
                "columns": [
                    {"name": "patient", "type": "string"},
                    {"name": "age", "type": "integer"},
                    {"name": "ward", "type": "string"},
                    {"name": "length_of_stay_days", "type": "float"},
                    {"name": "readmitted", "type": "boolean"},
                ]
            },
        }
        for i, pid in enumerate(ids)
    ]
    inputs = [d["id"] for d in datasets]
    programs = [
        {
            "id": name,
            "description": f"{name}: pooled statistics over every dataset",
            "digest": _program_digest(name.replace("-", "_")),
            "entry_point": f"{name.replace('-', '_')}.main:run",
            "parameters": {
                "year": {"type": "integer", "required": True},
                "ward": {"type": "string", "required": False, "description": "filter"},
            },
            "inputs": inputs,
            "outputs": {
                "recipients": [
                    {"party": pid, "view": "full" if i % 2 == 0 else "own"}
                    for i, pid in enumerate(ids)
                ],
                "min_group_size": 10,
            },
        }
        for name in ("pooled-stats", "readmission-model")
    ]
    platforms = [
        {"platform": "simulated", "measurements": [_hex("sim", 32)]},
        {
            "platform": "sgx",
            "mrenclave": [_hex("mrenclave", 32)],
            "mrsigner": _hex("mrsigner", 32),
            "isv_prod_id": 1,
            "min_isv_svn": 2,
        },
        {"platform": "tdx", "mrtd": [_hex("mrtd", 48)], "rtmr0": [_hex("rtmr0", 48)]},
        {
            "platform": "sev-snp",
            "measurements": [_hex("snp", 48)],
            "min_tcb": {"bootloader": 3, "tee": 0, "snp": 14, "microcode": 209},
        },
        {"platform": "nitro", "pcrs": {"0": _hex("pcr0", 48), "8": _hex("pcr8", 48)}},
    ]
    return {
        "name": f"Pooled readmission statistics, {len(members)} parties",
        "collaboration_id": "bench-contract",
        "version": 1,
        "previous": None,
        "validity": {"not_before": format_time(NOT_BEFORE), "not_after": format_time(NOT_AFTER)},
        "parties": parties,
        "datasets": datasets,
        "programs": programs,
        "enclave_policy": {
            "platforms": platforms,
            "accepted_tcb_statuses": ["UpToDate", "SWHardeningNeeded"],
        },
        "job_policy": {"submitters": ids[:3], "require_cosign": True, "max_runs": 50},
        "retention": {"destroy_keys": "after-runs", "runs": 50},
    }


# --------------------------------------------------------------------------
# The timed operations
# --------------------------------------------------------------------------


def sign_all(envelope: Envelope, members: list[Member]) -> Envelope:
    for m in members:
        envelope = sign_envelope(envelope, m.signing_key)
    return envelope


def full_verification(obj: object) -> Contract:
    contract = parse_contract(obj)
    verify_contract(contract, now=CHECK_AT)
    return contract


def encode_once_verification(obj: object) -> Contract:
    """Illustration only, not Nestor's verifier: ``parse_contract``, then the
    same per-party signature checks as ``verify_contract`` with the body
    encoded once (``verify_contract`` re-encodes the whole body several times
    per party). Shows what verification costs when encoding is not repeated."""
    contract = parse_contract(obj)
    envelope = contract.envelope
    body = canonical.encode(envelope.signed)
    digest = canonical.digest_bytes(body)
    message = pae(envelope.payload_type, body)
    for p in contract.parties:
        sig = envelope.signature_by(p.party_id)
        if sig is None or sig.signed_digest != digest:
            raise RuntimeError(f"{p.name}: signature missing or over other content")
        signing.verify(p.card.signing_key, sig.sig, message, what="the contract")
    if not contract.not_before <= CHECK_AT <= contract.not_after:
        raise RuntimeError("outside the validity window")
    return contract


@dataclass
class Round:
    encode: float
    sign_all: float
    decode: float
    parse: float
    verify: float
    full: float
    encode_once: float
    baseline: float


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_round(
    body: dict[str, Any],
    members: list[Member],
    file_bytes: bytes,
    baseline_items: list[tuple[Ed25519PublicKey, bytes]],
    message: bytes,
) -> Round:
    encode_s = _timed(lambda: canonical.encode(body))
    unsigned = Envelope(PAYLOAD_TYPE, body)
    sign_s = _timed(lambda: sign_all(unsigned, members))

    start = time.perf_counter()
    obj = canonical.decode(file_bytes)
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    contract = parse_contract(obj)
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    verify_contract(contract, now=CHECK_AT)
    verify_s = time.perf_counter() - start

    # The figure the target is about, timed as one call on fresh input.
    obj = canonical.decode(file_bytes)
    full_s = _timed(lambda: full_verification(obj))
    obj = canonical.decode(file_bytes)
    encode_once_s = _timed(lambda: encode_once_verification(obj))

    def baseline() -> None:
        for public, sig in baseline_items:
            public.verify(sig, message)

    baseline_s = _timed(baseline)
    return Round(encode_s, sign_s, decode_s, parse_s, verify_s, full_s, encode_once_s, baseline_s)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.2f} ms"


def _line(label: str, values: list[float], per: int | None = None, unit: str = "") -> str:
    best, median = min(values), statistics.median(values)
    text = f"  {label:<46} best {_ms(best)}   median {_ms(median)}"
    if per:
        text += f"   ({best / per * 1e3:.3f} ms best per {unit})"
    return text


def profile_once(file_bytes: bytes, top: int) -> str:
    obj = canonical.decode(file_bytes)
    profiler = cProfile.Profile()
    profiler.enable()
    full_verification(obj)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    stream.write("\n")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    return stream.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--parties", type=int, default=TARGET_PARTIES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one extra full verification"
    )
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    n: int = args.parties
    if n < 1 or args.repeat < 1:
        parser.error("--parties and --repeat must be at least 1")

    print(
        f"nestor contract benchmark: {n} parties, {args.repeat} rounds; "
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()} {platform.system()}"
    )

    start = time.perf_counter()
    members = make_members(n)
    body = contract_body(members)
    contract_from_envelope(Envelope(PAYLOAD_TYPE, body))  # the body is a valid contract
    signed = sign_all(Envelope(PAYLOAD_TYPE, body), members)
    file_bytes = (json.dumps(signed.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    canonical_body = canonical.encode(body)
    verified = full_verification(canonical.decode(file_bytes))
    if len(verified.parties) != n or len(verified.envelope.signatures) != n:
        raise RuntimeError("the benchmark contract did not verify with every signature")
    message = signed.signing_input()
    # 2N raw signatures over the same signing input: each party's key twice,
    # standing for its card self-signature and its contract signature.
    baseline_items = [
        (m.signing_key.public_key(), m.signing_key.sign(message)) for m in members
    ] * 2
    setup_s = time.perf_counter() - start

    card_bytes = len(canonical.encode(members[0].card.to_json()))
    print(
        f"contract: {n} parties, {len(body['datasets'])} datasets, "
        f"{len(body['programs'])} programs, {len(body['enclave_policy']['platforms'])} "
        f"platforms; built and signed in {setup_s:.1f} s (untimed setup)"
    )
    print(
        f"size: file {len(file_bytes):,} bytes (indent=2 JSON, as `nestor contract` writes "
        f"it), canonical body {len(canonical_body):,} bytes, one party card "
        f"{card_bytes:,} bytes canonical ({card_bytes * n / len(canonical_body):.0%} of the "
        "body is party cards)"
    )

    rounds = [
        run_round(body, members, file_bytes, baseline_items, message) for _ in range(args.repeat)
    ]

    def col(name: str) -> list[float]:
        return [getattr(r, name) for r in rounds]

    print("\ntimings (best and median of the rounds):")
    print(_line("canonical encoding of the body", col("encode")))
    print(_line(f"signing by all {n} parties", col("sign_all"), n, "signature"))
    print(_line("read the file (canonical.decode)", col("decode")))
    print(_line("  parse_contract (structure + card sigs)", col("parse"), n, "party"))
    print(_line("  verify_contract (contract sigs)", col("verify"), n, "party"))
    print(_line("full verification (parse + verify)", col("full"), n, "party"))
    print(_line(f"baseline: {2 * n} raw Ed25519 verifications", col("baseline"), 2 * n, "sig"))
    print(_line("illustration: same checks, body encoded once", col("encode_once"), n, "party"))

    full_best, full_median = min(col("full")), statistics.median(col("full"))
    base_best, base_median = min(col("baseline")), statistics.median(col("baseline"))
    print(
        f"\nfull verification / raw-signature baseline: {full_best / base_best:.1f}x (best), "
        f"{full_median / base_median:.1f}x (median)"
    )
    once_best = min(col("encode_once"))
    print(
        f"illustration (not Nestor's verifier) / baseline: {once_best / base_best:.1f}x (best); "
        "see the docstring of encode_once_verification"
    )
    verdict = "PASS" if full_best < TARGET_SECONDS else "FAIL"
    scope = "" if n == TARGET_PARTIES else f" (measured with {n} parties, not 100: indicative)"
    print(
        f"target: full verification of a {TARGET_PARTIES}-party contract under "
        f"{TARGET_SECONDS:.0f} s: {verdict} (best {full_best:.3f} s, median "
        f"{full_median:.3f} s){scope}"
    )

    if args.profile:
        print(f"\ncProfile of one full verification (top {args.profile_top}):")
        print(profile_once(file_bytes, args.profile_top))
    return 1 if args.check and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
