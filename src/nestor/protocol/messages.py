"""The pipeline's signed messages (docs/protocol.md).

Every message is a signed envelope (``nestor.protocol.envelope``) except the
receipt, which is a DSSE envelope around an in-toto Statement v1 so that
supply-chain tools can read it. All are pure data here: builders make the
``signed`` objects, parsers check their structure, verifiers check
signatures and bindings against the contract. Time is always passed in.

- enclave announcement: signed by the enclave's fresh key; binds the
  contract digest, the enclave's keys and its evidence.
- key grant: signed by the dataset's owner; binds contract, dataset,
  commitment and enclave key; carries the data key sealed with HPKE.
- job request: signed by a submitter (and co-signed by the data providers
  if the contract says so); binds contract, program, parameters, inputs and
  a nonce.
- sealed result: signed by the enclave; binds the job request digest, the
  recipient and the output digests; the outputs are sealed to the recipient.
- receipt: signed by the enclave; binds the contract, the inputs'
  commitments, the job, the program digest, the outputs, the evidence digest
  and the audit-log position.
- audit log entry: signed by the enclave; binds its index and the previous
  entry's digest.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nestor.crypto import hpke, signing
from nestor.errors import (
    MessageError,
    NestorError,
    ProtocolError,
    SignatureError,
    VerificationError,
)
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode, b64encode
from nestor.protocol.contract import Contract, Role, format_time, parse_time
from nestor.protocol.envelope import Envelope, pae, sign_envelope, verify_envelope_signature

ANNOUNCEMENT: Final = "application/vnd.nestor.enclave-announcement+json;version=1"
KEY_GRANT: Final = "application/vnd.nestor.key-grant+json;version=1"
JOB_REQUEST: Final = "application/vnd.nestor.job-request+json;version=1"
SEALED_RESULT: Final = "application/vnd.nestor.sealed-result+json;version=1"
LOG_ENTRY: Final = "application/vnd.nestor.log-entry+json;version=1"
IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT: Final = "https://in-toto.io/Statement/v1"
RECEIPT_PREDICATE: Final = "https://nestor.dev/receipt/v1"

LOG_EVENTS: Final = (
    "enclave-started",
    "key-granted",
    "job-run",
    "job-failed",
    "result-released",
    "key-destroyed",
)
GENESIS: Final = "sha256:" + "0" * 64
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def new_id() -> str:
    return secrets.token_hex(16)


def _fields(obj: Mapping[str, Any], what: str, required: Sequence[str]) -> None:
    keys = set(obj)
    if keys != set(required):
        extra, missing = sorted(keys - set(required)), sorted(set(required) - keys)
        raise MessageError(
            f"{what}: "
            + "; ".join(
                p
                for p in (
                    f"unknown field(s) {', '.join(extra)}" if extra else "",
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                )
                if p
            )
        )


def _digest_field(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise MessageError(f"{what} must be sha256: followed by 64 hex digits")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MessageError(f"{what} must be a non-empty string")
    return value


def _parse(obj: object, payload_type: str, what: str) -> Envelope:
    try:
        return Envelope.from_json(obj, expected_type=payload_type)
    except NestorError as exc:
        raise MessageError(f"not a valid {what}: {exc.message}") from exc


def _sign(payload_type: str, body: dict[str, Any], key: Ed25519PrivateKey) -> Envelope:
    return sign_envelope(Envelope(payload_type, body), key)


# -- enclave announcement -----------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    """An enclave's published keys and evidence (signature checked, evidence not yet)."""

    envelope: Envelope
    contract: str
    enclave_id: str
    signing_key: Ed25519PublicKey
    hpke_keys: Mapping[str, bytes]
    platform: str
    evidence: bytes
    collateral: bytes | None
    started_at: str

    @property
    def keyid(self) -> str:
        return signing.key_id(self.signing_key)

    def hpke_key(self, suite: hpke.Suite = hpke.DEFAULT_SUITE) -> hpke.HpkePublicKey:
        raw = self.hpke_keys.get(suite.label)
        if raw is None:
            raise MessageError(f"the enclave offers no HPKE key for suite {suite.label}")
        return hpke.public_key_from_raw(suite, raw)


def make_announcement(
    *,
    contract: str,
    enclave_id: str,
    signing_key: Ed25519PrivateKey,
    hpke_keys: Mapping[str, bytes],
    platform: str,
    evidence: bytes,
    collateral: bytes | None,
    started_at: datetime,
) -> Envelope:
    body = {
        "contract": contract,
        "enclave_id": enclave_id,
        "signing_key": b64encode(signing_key.public_key().public_bytes_raw()),
        "hpke_keys": {k: b64encode(v) for k, v in sorted(hpke_keys.items())},
        "platform": platform,
        "evidence": b64encode(evidence),
        "collateral": None if collateral is None else b64encode(collateral),
        "started_at": format_time(started_at),
    }
    return _sign(ANNOUNCEMENT, body, signing_key)


def verify_announcement(obj: object, *, contract_digest: str) -> Announcement:
    env = _parse(obj, ANNOUNCEMENT, "enclave announcement")
    s = env.signed
    _fields(
        s,
        "enclave announcement",
        (
            "contract",
            "enclave_id",
            "signing_key",
            "hpke_keys",
            "platform",
            "evidence",
            "collateral",
            "started_at",
        ),
    )
    if s["contract"] != contract_digest:
        raise VerificationError(
            f"the enclave announces contract {s['contract']}, not {contract_digest}"
        )
    try:
        key = signing.public_key_from_raw(b64decode(s["signing_key"], field="signing_key"))
        hk = s["hpke_keys"]
        if not isinstance(hk, dict) or not hk:
            raise MessageError("hpke_keys must map suite labels to keys")
        hpke_keys = {str(k): b64decode(v, field=f"hpke key {k}") for k, v in hk.items()}
        evidence = b64decode(s["evidence"], field="evidence")
        collateral = (
            None if s["collateral"] is None else b64decode(s["collateral"], field="collateral")
        )
    except NestorError as exc:
        raise MessageError(f"enclave announcement: {exc.message}") from exc
    verify_envelope_signature(env, key, what="the enclave announcement")
    return Announcement(
        env,
        s["contract"],
        _str(s["enclave_id"], "enclave_id"),
        key,
        hpke_keys,
        _str(s["platform"], "platform"),
        evidence,
        collateral,
        _str(s["started_at"], "started_at"),
    )


# -- key grants ---------------------------------------------------------------------------


def grant_context(*, contract: str, dataset: str, commitment: str, enclave: str) -> bytes:
    """HPKE info for a key grant: the wrapped key opens only for this
    contract, dataset, ciphertext commitment and enclave key."""
    return canonical.encode(
        {
            "type": "nestor/key-grant",
            "contract": contract,
            "dataset": dataset,
            "commitment": commitment,
            "enclave": enclave,
        }
    )


@dataclass(frozen=True)
class KeyGrant:
    envelope: Envelope
    contract: str
    dataset: str
    commitment: str
    enclave: str
    wrapped_key: hpke.WrappedKey
    granted_by: str

    @property
    def digest(self) -> str:
        return self.envelope.digest()


def make_key_grant(
    *,
    contract: Contract,
    dataset: str,
    commitment: str,
    announcement: Announcement,
    data_key: bytes,
    owner_key: Ed25519PrivateKey,
    granted_at: datetime,
    suite: hpke.Suite = hpke.DEFAULT_SUITE,
) -> Envelope:
    """Seal ``data_key`` to a verified, appraised enclave and sign the grant."""
    context = grant_context(
        contract=contract.digest, dataset=dataset, commitment=commitment, enclave=announcement.keyid
    )
    wrapped = hpke.seal_key(data_key, announcement.hpke_key(suite), context=context, suite=suite)
    body = {
        "contract": contract.digest,
        "dataset": dataset,
        "commitment": commitment,
        "enclave": announcement.keyid,
        "wrapped_key": b64encode(wrapped.to_bytes()),
        "granted_at": format_time(granted_at),
    }
    return _sign(KEY_GRANT, body, owner_key)


def verify_key_grant(obj: object, *, contract: Contract, enclave_keyid: str) -> KeyGrant:
    """Check a grant as the enclave does: signed by the dataset's owner, for
    this contract, for this enclave. Opening the key is the caller's step."""
    env = _parse(obj, KEY_GRANT, "key grant")
    s = env.signed
    _fields(
        s,
        "key grant",
        ("contract", "dataset", "commitment", "enclave", "wrapped_key", "granted_at"),
    )
    if s["contract"] != contract.digest:
        raise VerificationError(f"the key grant is for contract {s['contract']}, not this one")
    dataset = contract.dataset(_str(s["dataset"], "dataset"))
    if dataset is None:
        raise VerificationError(
            f"the key grant names dataset {s['dataset']!r}, not in the contract"
        )
    owner = contract.party(dataset.owner)
    assert owner is not None  # parse_contract guarantees owners are parties
    if s["enclave"] != enclave_keyid:
        raise VerificationError(
            f"the key grant for dataset {dataset.id!r} is sealed to enclave {s['enclave']}, not to "
            f"this enclave ({enclave_keyid}): a grant replayed from an earlier enclave",
            hint="the owner must verify the current enclave and grant again",
        )
    try:
        verify_envelope_signature(
            env, owner.card.signing_key, what=f"the key grant for {dataset.id!r}"
        )
    except SignatureError as exc:
        raise SignatureError(
            f"the key grant for dataset {dataset.id!r} is not signed by its owner "
            f"{owner.name!r}: {exc.message}"
        ) from exc
    try:
        wrapped = hpke.WrappedKey.from_bytes(b64decode(s["wrapped_key"], field="wrapped_key"))
    except NestorError as exc:
        raise MessageError(f"key grant: {exc.message}") from exc
    return KeyGrant(
        env,
        s["contract"],
        dataset.id,
        _digest_field(s["commitment"], "commitment"),
        s["enclave"],
        wrapped,
        owner.party_id,
    )


# -- job requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    envelope: Envelope
    contract: str
    job_id: str
    program: str
    parameters: Mapping[str, Any]
    inputs: tuple[str, ...]
    submitted_by: str

    @property
    def digest(self) -> str:
        return self.envelope.digest()


def make_job_request(
    *,
    contract: Contract,
    program: str,
    parameters: Mapping[str, Any],
    submitter_key: Ed25519PrivateKey,
    submitted_at: datetime,
    job_id: str | None = None,
) -> Envelope:
    prog = contract.program(program)
    inputs = list(prog.inputs) if prog is not None else []
    body = {
        "contract": contract.digest,
        "job_id": job_id or new_id(),
        "program": program,
        "parameters": dict(parameters),
        "inputs": inputs,
        "nonce": secrets.token_hex(16),
        "submitted_at": format_time(submitted_at),
    }
    return _sign(JOB_REQUEST, body, submitter_key)


def cosign_job_request(envelope: Envelope, key: Ed25519PrivateKey) -> Envelope:
    return sign_envelope(envelope, key)


_PARAM_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int,),
    "boolean": (bool,),
}


def verify_job_request(obj: object, *, contract: Contract) -> JobRequest:
    """Check a job request against the contract's job policy and program list."""
    env = _parse(obj, JOB_REQUEST, "job request")
    s = env.signed
    _fields(
        s,
        "job request",
        ("contract", "job_id", "program", "parameters", "inputs", "nonce", "submitted_at"),
    )
    if s["contract"] != contract.digest:
        raise VerificationError(f"the job request is for contract {s['contract']}, not this one")
    job_id = s["job_id"]
    if not isinstance(job_id, str) or not _HEX_ID.fullmatch(job_id):
        raise MessageError("job_id must be 32 hex digits")
    program = contract.program(_str(s["program"], "program"))
    if program is None:
        raise VerificationError(
            f"the job names program {s['program']!r}, which the contract does not list "
            f"(programs: {', '.join(p.id for p in contract.programs) or 'none'})"
        )
    signer = None
    for sig in env.signatures:
        p = contract.party(sig.keyid)
        if (
            p is not None
            and Role.JOB_SUBMITTER in p.roles
            and p.party_id in contract.job_policy.submitters
        ):
            signer = p
            break
    if signer is None:
        raise VerificationError(
            "the job request is not signed by a party the contract allows to submit jobs "
            f"(submitters: {_names(contract, contract.job_policy.submitters)})"
        )
    verify_envelope_signature(env, signer.card.signing_key, what="the job request")
    if contract.job_policy.require_cosign:
        for ds in program.inputs:
            dataset = contract.dataset(ds)
            assert dataset is not None
            owner = contract.party(dataset.owner)
            assert owner is not None
            try:
                verify_envelope_signature(env, owner.card.signing_key, what="the job request")
            except SignatureError as exc:
                raise VerificationError(
                    f"the contract requires every data provider to co-sign each job; "
                    f"{owner.name!r} has not: {exc.message}"
                ) from exc
    inputs = s["inputs"]
    if not isinstance(inputs, list) or inputs != list(program.inputs):
        raise VerificationError(
            f"the job's inputs {inputs!r} are not the inputs the contract gives program "
            f"{program.id!r}: {list(program.inputs)!r}"
        )
    params = s["parameters"]
    if not isinstance(params, dict):
        raise MessageError("parameters must be an object")
    declared = {p.name: p for p in program.parameters}
    for name, value in params.items():
        spec = declared.get(name)
        if spec is None:
            raise VerificationError(f"program {program.id!r} takes no parameter {name!r}")
        ok = isinstance(value, _PARAM_TYPES[spec.type]) and not (
            spec.type != "boolean" and isinstance(value, bool)
        )
        if not ok:
            raise VerificationError(f"parameter {name!r} must be of type {spec.type}")
    for spec in program.parameters:
        if spec.required and spec.name not in params:
            raise VerificationError(f"program {program.id!r} needs parameter {spec.name!r}")
    parse_time(s["submitted_at"], "submitted_at")
    return JobRequest(
        env, s["contract"], job_id, program.id, params, tuple(inputs), signer.party_id
    )


def _names(contract: Contract, party_ids: Sequence[str]) -> str:
    names = [p.name for p in (contract.party(i) for i in party_ids) if p is not None]
    return ", ".join(names) or "none"


# -- sealed results -------------------------------------------------------------------------


def result_context(*, job: str, recipient: str) -> bytes:
    return canonical.encode({"type": "nestor/result", "job": job, "recipient": recipient})


@dataclass(frozen=True)
class SealedResult:
    envelope: Envelope
    contract: str
    job: str
    recipient: str
    outputs: tuple[tuple[str, str], ...]  # (name, digest of the plaintext output)


def seal_result(
    *,
    contract: str,
    job: str,
    recipient: str,
    recipient_key: hpke.HpkePublicKey,
    outputs: Mapping[str, bytes],
    enclave_key: Ed25519PrivateKey,
) -> Envelope:
    """Seal ``outputs`` (name → bytes) for one recipient: a fresh AES-256-GCM
    key encrypts the canonical JSON of the outputs; HPKE wraps that key to
    the recipient, bound to the job and the recipient."""
    result_key = AESGCM.generate_key(256)
    body_plain = canonical.encode({name: b64encode(data) for name, data in sorted(outputs.items())})
    context = result_context(job=job, recipient=recipient)
    ciphertext = AESGCM(result_key).encrypt(b"\x00" * 12, body_plain, context)
    wrapped = hpke.seal_key(result_key, recipient_key, context=context)
    body = {
        "contract": contract,
        "job": job,
        "recipient": recipient,
        "outputs": [
            {"name": name, "digest": canonical.digest_bytes(data)}
            for name, data in sorted(outputs.items())
        ],
        "wrapped_key": b64encode(wrapped.to_bytes()),
        "ciphertext": b64encode(ciphertext),
    }
    return _sign(SEALED_RESULT, body, enclave_key)


def open_result(
    obj: object,
    *,
    enclave_key: Ed25519PublicKey,
    recipient: str,
    recipient_private: hpke.HpkePrivateKey,
) -> tuple[SealedResult, dict[str, bytes]]:
    """Verify the enclave's signature, open the result, check every output digest."""
    env = _parse(obj, SEALED_RESULT, "sealed result")
    s = env.signed
    _fields(
        s, "sealed result", ("contract", "job", "recipient", "outputs", "wrapped_key", "ciphertext")
    )
    verify_envelope_signature(env, enclave_key, what="the sealed result")
    if s["recipient"] != recipient:
        raise VerificationError(
            f"this result is sealed for {s['recipient']}, not for you ({recipient})"
        )
    context = result_context(job=_digest_field(s["job"], "job"), recipient=recipient)
    try:
        wrapped = hpke.WrappedKey.from_bytes(b64decode(s["wrapped_key"], field="wrapped_key"))
        key = hpke.open_key(wrapped, recipient_private, context=context)
        plain = AESGCM(key).decrypt(
            b"\x00" * 12, b64decode(s["ciphertext"], field="ciphertext"), context
        )
        decoded = canonical.decode(plain)
    except InvalidTag:
        raise VerificationError("the sealed result's ciphertext was modified") from None
    except NestorError as exc:
        raise VerificationError(f"the sealed result does not open: {exc.message}") from exc
    if not isinstance(decoded, dict):
        raise MessageError("sealed result: outputs must be an object")
    outputs = {name: b64decode(str(v), field=name) for name, v in decoded.items()}
    listed = {}
    for entry in s["outputs"]:
        if not isinstance(entry, dict):
            raise MessageError("sealed result: outputs entries must be objects")
        listed[entry.get("name")] = entry.get("digest")
    if set(listed) != set(outputs):
        raise VerificationError("the sealed result's outputs do not match its list")
    for name, data in outputs.items():
        if not hmac.compare_digest(str(listed[name]), canonical.digest_bytes(data)):
            raise VerificationError(f"output {name!r} does not match its digest")
    result = SealedResult(
        env,
        s["contract"],
        s["job"],
        recipient,
        tuple((str(n), str(d)) for n, d in sorted(listed.items())),
    )
    return result, outputs


# -- receipts (in-toto Statement v1 in DSSE) ----------------------------------------------------


def make_receipt(
    *,
    contract: Contract,
    job: JobRequest,
    program_digest: str,
    input_commitments: Mapping[str, str],
    outputs: Sequence[Mapping[str, str]],
    enclave_keyid: str,
    evidence_digest: str,
    platform: str,
    finished_at: datetime,
    log_index: int,
    log_head: str,
    enclave_key: Ed25519PrivateKey,
) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "_type": IN_TOTO_STATEMENT,
        "subject": [
            {"name": "contract", "digest": {"sha256": contract.digest.removeprefix("sha256:")}},
            *(
                {"name": f"dataset/{ds}", "digest": {"sha256": c.removeprefix("sha256:")}}
                for ds, c in sorted(input_commitments.items())
            ),
        ],
        "predicateType": RECEIPT_PREDICATE,
        "predicate": {
            "job_request": job.digest,
            "job_id": job.job_id,
            "program": {"id": job.program, "digest": program_digest},
            "parameters": dict(job.parameters),
            "outputs": [dict(o) for o in outputs],
            "enclave": {"keyid": enclave_keyid, "evidence": evidence_digest, "platform": platform},
            "finished_at": format_time(finished_at),
            "log": {"index": log_index, "head": log_head},
        },
    }
    payload = canonical.encode(statement)
    sig = signing.sign(enclave_key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
    # DSSE uses standard base64 with padding (not base64url) for payload and sig.
    return {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": enclave_keyid, "sig": base64.b64encode(sig).decode("ascii")}],
    }


def _std_b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MessageError(f"receipt {what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError(f"receipt {what} is not valid base64") from None


@dataclass(frozen=True)
class VerifiedReceipt:
    statement: Mapping[str, Any]
    job_request: str
    program_digest: str
    input_commitments: Mapping[str, str]
    outputs: tuple[Mapping[str, str], ...]
    log_index: int
    log_head: str


def verify_receipt(
    obj: object, *, contract: Contract, enclave_key: Ed25519PublicKey
) -> VerifiedReceipt:
    """Verify a receipt offline with the contract and the enclave's key."""
    if not isinstance(obj, dict) or set(obj) != {"payloadType", "payload", "signatures"}:
        raise MessageError("a receipt is a DSSE envelope: payloadType, payload, signatures")
    if obj["payloadType"] != IN_TOTO_PAYLOAD_TYPE:
        raise MessageError(f"receipt payloadType must be {IN_TOTO_PAYLOAD_TYPE}")
    payload = _std_b64(obj["payload"], "payload")
    keyid = signing.key_id(enclave_key)
    sigs = [s for s in obj["signatures"] if isinstance(s, dict) and s.get("keyid") == keyid]
    if not sigs:
        raise SignatureError(f"the receipt carries no signature by the enclave key {keyid}")
    signing.verify(
        enclave_key,
        _std_b64(sigs[0].get("sig", ""), "sig"),
        pae(IN_TOTO_PAYLOAD_TYPE, payload),
        what="the receipt",
    )
    try:
        decoded = canonical.decode_canonical(payload)
    except NestorError as exc:
        raise MessageError(f"receipt payload: {exc.message}") from exc
    if (
        not isinstance(decoded, dict)
        or decoded.get("_type") != IN_TOTO_STATEMENT
        or decoded.get("predicateType") != RECEIPT_PREDICATE
    ):
        raise MessageError("the receipt is not a Nestor in-toto statement")
    st: dict[str, Any] = decoded
    try:
        subjects = {str(x["name"]): str(x["digest"]["sha256"]) for x in st["subject"]}
        pred: dict[str, Any] = st["predicate"]
        program_id, program_digest = str(pred["program"]["id"]), str(pred["program"]["digest"])
        job_request = str(pred["job_request"])
        outputs = tuple(dict(o) for o in pred["outputs"])
        log_index, log_head = int(pred["log"]["index"]), str(pred["log"]["head"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"the receipt statement lacks a field: {exc}") from None
    if "sha256:" + subjects.get("contract", "") != contract.digest:
        raise VerificationError("the receipt is for another contract")
    program = contract.program(program_id)
    if program is None or program.digest != program_digest:
        raise VerificationError("the receipt names a program or program digest not in the contract")
    commitments = {
        k.removeprefix("dataset/"): "sha256:" + v
        for k, v in subjects.items()
        if k.startswith("dataset/")
    }
    return VerifiedReceipt(
        st, job_request, program_digest, commitments, outputs, log_index, log_head
    )


# -- audit log ---------------------------------------------------------------------------------


def make_log_entry(
    *,
    index: int,
    previous: str,
    event: str,
    details: Mapping[str, Any],
    at: datetime,
    enclave_key: Ed25519PrivateKey,
) -> Envelope:
    if event not in LOG_EVENTS:
        raise ProtocolError(f"unknown log event {event!r}")
    body = {
        "index": index,
        "previous": previous,
        "event": event,
        "details": dict(details),
        "at": format_time(at),
        "enclave": signing.key_id(enclave_key.public_key()),
    }
    return _sign(LOG_ENTRY, body, enclave_key)


@dataclass(frozen=True)
class LogHead:
    index: int  # index of the last entry
    digest: str  # digest of the last entry's signed content


def verify_log(
    entries: Sequence[object], *, enclave_key: Ed25519PublicKey, known_head: LogHead | None = None
) -> LogHead:
    """Verify a whole log: consecutive indexes from 0, each entry naming the
    previous entry's digest, each signed by the enclave. With ``known_head``
    (the last head this party saw), a shorter log is *truncated* and a
    different entry at that index is a *fork*."""
    previous = GENESIS
    head: LogHead | None = None
    for i, obj in enumerate(entries):
        env = _parse(obj, LOG_ENTRY, f"log entry {i}")
        s = env.signed
        _fields(s, f"log entry {i}", ("index", "previous", "event", "details", "at", "enclave"))
        if s["index"] != i:
            raise VerificationError(
                f"log entry at position {i} has index {s['index']}: entries are missing or "
                "reordered"
            )
        if s["previous"] != previous:
            raise VerificationError(
                f"log entry {i} does not follow entry {i - 1}: the chain is broken"
            )
        verify_envelope_signature(env, enclave_key, what=f"log entry {i}")
        previous = env.digest()
        head = LogHead(i, previous)
        if known_head is not None and i == known_head.index and previous != known_head.digest:
            raise VerificationError(
                f"the log forked: entry {i} is {previous}, but you saw {known_head.digest} before"
            )
    if known_head is not None and (head is None or head.index < known_head.index):
        have = -1 if head is None else head.index
        raise VerificationError(
            f"the log was truncated: it ends at entry {have}, but you saw entry "
            f"{known_head.index} before"
        )
    if head is None:
        raise VerificationError("the log is empty")
    return head


def blob_name(dataset: str, commitment: str) -> str:
    """Where a dataset's ciphertext lives on the host: the dataset id and the
    first 16 hex digits of its commitment. The name is only a locator: the
    enclave checks the full commitment of whatever it fetches."""
    return f"{dataset}-{commitment.removeprefix('sha256:')[:16]}"
