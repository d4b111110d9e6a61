"""A party's side of the pipeline (docs/protocol.md, brief §3 steps 4-8).

Pure orchestration: each step is one function that takes the host client,
the party, the contract it verified and an explicit ``now``; it verifies
everything it fetches from the untrusted host with ``nestor.protocol`` and
``nestor.attestation``, and raises on the first thing that does not hold.
A step that raises has released nothing: no key grant is posted to an
enclave that failed appraisal, no output is written from a result or
receipt that failed verification.

State a party keeps in its own directory ``DIR`` (beside its keys)::

    keys/<dataset>.key        the dataset's data key (0600), for re-granting
    keys/<dataset>.json       upload record: commitment, blob name, earlier commitments
    enclaves/<keyid>.json     announcements of enclaves this party verified and appraised
    log-heads.json            the last audit-log head seen, per enclave key
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nestor.attestation.appraisal import Decision, require_accepted
from nestor.attestation.binding import report_data_for
from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.verify import verify_evidence
from nestor.client.datafiles import encrypt_file, read_data_key, write_data_key
from nestor.client.host_api import (
    HostClient,
    HostNotFoundError,
    HostProtocolError,
    JobStatus,
    ProgressCallback,
    check_job_id,
)
from nestor.client.party import Party
from nestor.client.secure_files import atomic_output
from nestor.crypto import hpke
from nestor.crypto.dataset import DEFAULT_CHUNK_SIZE, AeadSuite, DataKey
from nestor.errors import (
    ConfigurationError,
    MessageError,
    NestorError,
    VerificationError,
)
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode
from nestor.protocol.canonical import MAX_SAFE_INTEGER
from nestor.protocol.contract import (
    Contract,
    Dataset,
    Program,
    Role,
    VerifiedContract,
    format_time,
    parse_time,
    verify_contract,
)
from nestor.protocol.envelope import Envelope, verify_envelope_signature
from nestor.protocol.messages import (
    JOB_REQUEST,
    KEY_GRANT,
    Announcement,
    JobRequest,
    LogHead,
    VerifiedReceipt,
    blob_name,
    cosign_job_request,
    make_job_request,
    make_key_grant,
    open_result,
    verify_announcement,
    verify_job_request,
    verify_log,
    verify_receipt,
)

KEYS_DIR: Final = "keys"
ENCLAVES_DIR: Final = "enclaves"
LOG_STATE_FILE: Final = "log-heads.json"
RECEIPT_FILE: Final = "receipt.json"
ANNOUNCEMENT_FILE: Final = "announcement.json"
MAX_REMEMBERED_COMMITMENTS: Final = 100

UPLOAD_RECORD_TYPE: Final = "nestor/upload-record"
ENCLAVE_RECORD_TYPE: Final = "nestor/enclave-record"
LOG_STATE_TYPE: Final = "nestor/log-heads"

_OUTPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE: Final = ("true", "yes", "on", "1")
_FALSE: Final = ("false", "no", "off", "0")

PhaseProgress: TypeAlias = Callable[[str, int], AbstractContextManager[ProgressCallback]]
"""``progress(description, total_bytes)`` → a context manager yielding a byte
callback; ``nestor.cli.console.byte_progress`` has this shape."""


# -- errors -------------------------------------------------------------------------------


class NoEnclaveError(NestorError):
    """No enclave has announced itself for the contract on this host."""


class JobFailedError(NestorError):
    """The job failed; the message carries the reason the host reports."""


class JobTimeoutError(NestorError):
    """A job did not finish in the time allowed."""


class JobNotFinishedError(NestorError):
    """Results were asked for a job that has no receipt yet."""


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _silent(_description: str, _total: int) -> Iterator[ProgressCallback]:
    yield lambda _n: None


def _read_json_file(path: Path, what: str) -> Any:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return canonical.decode(data)
    except NestorError as exc:
        raise ConfigurationError(f"{path} is not a valid {what}: {exc.message}") from exc


def _write_json_file(path: Path, value: object, *, mode: int = 0o600) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True, mode=mode) as f:
        f.write(json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")


def _sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- step 4: verify the enclave -------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedEnclave:
    """An announcement whose evidence verified and passed the contract's
    enclave policy, with the report data binding the announced keys."""

    announcement: Announcement
    result: AttestationResult
    decision: Decision

    @property
    def keyid(self) -> str:
        return self.announcement.keyid

    @property
    def signing_key(self) -> Ed25519PublicKey:
        return self.announcement.signing_key


EnclaveRef: TypeAlias = VerifiedEnclave | Announcement
"""An enclave this party verified: now (:class:`VerifiedEnclave`), or earlier
(an :class:`Announcement` from its enclave records)."""


def _announcement(enclave: EnclaveRef) -> Announcement:
    return enclave.announcement if isinstance(enclave, VerifiedEnclave) else enclave


def appraise_announcement(
    obj: object,
    contract: Contract,
    *,
    now: datetime,
    simulated_vendor_keys: Sequence[Ed25519PublicKey] = (),
    collateral: bytes | None = None,
) -> VerifiedEnclave:
    """Verify an announcement (JSON) for ``contract`` without any network.

    1. the announcement is for this contract and signed by the key it announces;
    2. its evidence verifies at ``now`` on the announced platform (with the
       announced collateral, or ``collateral`` when given);
    3. the appraisal against the contract's enclave policy accepts it (with
       the pod's init-data, where the policy binds it), and the evidence's
       report data is ``report_data_for(contract digest, enclave signing
       key, enclave HPKE keys)``: those keys live in that enclave.
    """
    announcement = verify_announcement(obj, contract_digest=contract.digest)
    try:
        platform = Platform(announcement.platform)
    except ValueError:
        raise MessageError(
            f"the enclave announces unknown platform {announcement.platform!r}"
        ) from None
    result = verify_evidence(
        announcement.evidence,
        now=now,
        platform=platform,
        collateral=collateral if collateral is not None else announcement.collateral,
        simulated_vendor_keys=simulated_vendor_keys,
    )
    expected = report_data_for(
        contract.digest,
        announcement.signing_key.public_bytes_raw(),
        announcement.hpke_keys,
    )
    decision = require_accepted(
        result,
        contract.enclave_policy,
        expected_report_data=expected,
        contract_digest=contract.digest,
    )
    return VerifiedEnclave(announcement, result, decision)


def verify_enclave(
    host: HostClient,
    contract: VerifiedContract,
    *,
    now: datetime,
    simulated_vendor_keys: Sequence[Ed25519PublicKey] = (),
    collateral: bytes | None = None,
) -> VerifiedEnclave:
    """Fetch the latest announcement for the contract and appraise it
    (:func:`appraise_announcement`). Raises if any check fails."""
    digest = contract.contract.digest
    try:
        obj = host.latest_announcement(digest)
    except HostNotFoundError as exc:
        raise NoEnclaveError(
            f"no enclave has announced itself for contract {digest} on {host.base_url}",
            hint="start one: nestor enclave run --contract CONTRACT --host URL",
        ) from exc
    return appraise_announcement(
        obj,
        contract.contract,
        now=now,
        simulated_vendor_keys=simulated_vendor_keys,
        collateral=collateral,
    )


def _check_enclave_for(enclave: EnclaveRef, contract: Contract) -> Announcement:
    ann = _announcement(enclave)
    if ann.contract != contract.digest:
        raise VerificationError(
            f"enclave {ann.keyid} serves contract {ann.contract}, not {contract.digest}"
        )
    return ann


# -- enclave records ----------------------------------------------------------------------


def _keyid_file(keyid: str) -> str:
    return keyid.removeprefix("sha256:") + ".json"


def save_enclave_record(party_dir: Path, enclave: VerifiedEnclave) -> Path:
    """Remember an enclave this party verified, so results it sealed, receipts
    it signed and its audit log can be checked after it is gone."""
    ann = enclave.announcement
    path = Path(party_dir) / ENCLAVES_DIR / _keyid_file(ann.keyid)
    _write_json_file(
        path,
        {
            "type": ENCLAVE_RECORD_TYPE,
            "version": 1,
            "contract": ann.contract,
            "keyid": ann.keyid,
            "verified_at": format_time(enclave.result.verified_at),
            "platform": enclave.result.platform.value,
            "measurements": dict(enclave.result.measurements),
            "checked": list(enclave.decision.checked),
            "announcement": ann.envelope.to_json(),
        },
        mode=0o644,
    )
    return path


def load_enclave_record(path: Path, contract: Contract) -> Announcement:
    """An enclave record's announcement, re-checked (signature, contract)."""
    obj = _read_json_file(path, "enclave record")
    if not isinstance(obj, dict) or obj.get("type") != ENCLAVE_RECORD_TYPE:
        raise ConfigurationError(f"{path} is not a Nestor enclave record")
    return verify_announcement(obj.get("announcement"), contract_digest=contract.digest)


def enclave_records(party_dir: Path, contract: Contract) -> dict[str, Announcement]:
    """Every remembered enclave of ``contract``, by key id (others are skipped)."""
    found: dict[str, Announcement] = {}
    directory = Path(party_dir) / ENCLAVES_DIR
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        obj = _read_json_file(path, "enclave record")
        if not isinstance(obj, dict) or obj.get("contract") != contract.digest:
            continue
        ann = load_enclave_record(path, contract)
        found[ann.keyid] = ann
    return found


# -- step 5: upload and grant ---------------------------------------------------------------


@dataclass(frozen=True)
class UploadReceipt:
    """What a party keeps from an upload or a re-grant."""

    dataset: str
    commitment: str
    blob: str
    grant: str  # digest of the key grant's signed content (the host's grant id)
    enclave: str  # key id of the enclave the key was granted to


@dataclass(frozen=True)
class DatasetRecord:
    """``DIR/keys/<dataset>.json``: the last upload of a dataset (no secret)."""

    dataset: str
    contract: str
    commitment: str
    blob: str
    uploaded_at: str
    previous: tuple[str, ...]  # earlier commitments of this dataset, newest first

    @property
    def commitments(self) -> tuple[str, ...]:
        return (self.commitment, *self.previous)


def key_path(party_dir: Path, dataset_id: str) -> Path:
    return Path(party_dir) / KEYS_DIR / f"{dataset_id}.key"


def record_path(party_dir: Path, dataset_id: str) -> Path:
    return Path(party_dir) / KEYS_DIR / f"{dataset_id}.json"


def read_dataset_record(party_dir: Path, dataset_id: str) -> DatasetRecord:
    path = record_path(party_dir, dataset_id)
    if not path.exists():
        raise ConfigurationError(
            f"no upload record for dataset {dataset_id!r} in {Path(party_dir) / KEYS_DIR}",
            hint="a dataset can be re-granted only if it was uploaded from this party "
            "directory with its key kept; otherwise upload it again",
        )
    obj = _read_json_file(path, "upload record")
    fields = {"type", "version", "dataset", "contract", "commitment", "blob", "uploaded_at"}
    if not isinstance(obj, dict) or obj.get("type") != UPLOAD_RECORD_TYPE or not fields <= set(obj):
        raise ConfigurationError(f"{path} is not a Nestor upload record")
    previous = obj.get("previous", [])
    if obj["dataset"] != dataset_id or not isinstance(previous, list):
        raise ConfigurationError(f"{path} is not the upload record of dataset {dataset_id!r}")
    return DatasetRecord(
        str(obj["dataset"]),
        str(obj["contract"]),
        str(obj["commitment"]),
        str(obj["blob"]),
        str(obj["uploaded_at"]),
        tuple(str(c) for c in previous),
    )


def _store_upload(
    party_dir: Path,
    contract: Contract,
    dataset_id: str,
    key: DataKey,
    commitment: str,
    now: datetime,
) -> None:
    keys = Path(party_dir) / KEYS_DIR
    keys.mkdir(mode=0o700, exist_ok=True)
    previous: list[str] = []
    if record_path(party_dir, dataset_id).exists():
        with contextlib.suppress(ConfigurationError):
            old = read_dataset_record(party_dir, dataset_id)
            previous = [c for c in old.commitments if c != commitment]
    write_data_key(key_path(party_dir, dataset_id), key, overwrite=True)
    _write_json_file(
        record_path(party_dir, dataset_id),
        {
            "type": UPLOAD_RECORD_TYPE,
            "version": 1,
            "dataset": dataset_id,
            "contract": contract.digest,
            "commitment": commitment,
            "blob": blob_name(dataset_id, commitment),
            "uploaded_at": format_time(now),
            "previous": previous[:MAX_REMEMBERED_COMMITMENTS],
        },
    )


def stored_datasets(party_dir: Path, contract: Contract, party: Party) -> list[str]:
    """Datasets of ``party`` in ``contract`` whose key this directory keeps."""
    return [
        d.id
        for d in contract.datasets
        if d.owner == party.card.party_id
        and key_path(party_dir, d.id).exists()
        and record_path(party_dir, d.id).exists()
    ]


def known_commitments(
    party_dir: Path, contract: Contract, party: Party
) -> dict[str, tuple[str, ...]]:
    """Commitments this party uploaded for its own datasets of ``contract``."""
    out: dict[str, tuple[str, ...]] = {}
    for d in contract.datasets:
        if d.owner == party.card.party_id and record_path(party_dir, d.id).exists():
            out[d.id] = read_dataset_record(party_dir, d.id).commitments
    return out


def check_owner(contract: Contract, party: Party, dataset_id: str) -> Dataset:
    """The dataset, if ``party`` owns it in ``contract``; raise otherwise."""
    me = contract.party(party.card.party_id)
    if me is None:
        raise ConfigurationError(
            f"{party.card.name!r} ({party.card.party_id}) is not a party of contract "
            f"{contract.name!r}"
        )
    dataset = contract.dataset(dataset_id)
    if dataset is None:
        raise ConfigurationError(
            f"the contract lists no dataset {dataset_id!r}",
            hint="datasets: " + (", ".join(d.id for d in contract.datasets) or "none"),
        )
    if dataset.owner != me.party_id:
        owner = contract.party(dataset.owner)
        raise ConfigurationError(
            f"dataset {dataset_id!r} belongs to {owner.name if owner else dataset.owner!r}, "
            f"not to you ({me.name!r}): only its owner uploads it and grants its key",
            hint="yours: "
            + (", ".join(d.id for d in contract.datasets if d.owner == me.party_id) or "none"),
        )
    return dataset


def _grant(
    host: HostClient,
    party: Party,
    contract: Contract,
    dataset_id: str,
    commitment: str,
    announcement: Announcement,
    key: DataKey,
    now: datetime,
    suite: hpke.Suite,
) -> str:
    envelope = make_key_grant(
        contract=contract,
        dataset=dataset_id,
        commitment=commitment,
        announcement=announcement,
        data_key=key.secret,
        owner_key=party.signing_key,
        granted_at=now,
        suite=suite,
    )
    host.post_grant(envelope.to_json())
    return envelope.digest()


def upload_dataset(
    host: HostClient,
    party: Party,
    contract: VerifiedContract,
    dataset_id: str,
    source_path: Path,
    *,
    now: datetime,
    enclave: VerifiedEnclave,
    work_dir: Path,
    progress: PhaseProgress | None = None,
    party_dir: Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cipher: AeadSuite = AeadSuite.AES_256_GCM,
    suite: hpke.Suite = hpke.DEFAULT_SUITE,
) -> UploadReceipt:
    """Encrypt ``source_path`` under a fresh data key, upload the ciphertext,
    and grant the key to the verified ``enclave``.

    The ciphertext is written to a temporary file in ``work_dir`` and removed
    after the upload. With ``party_dir``, the data key (0600) and an upload
    record are kept in ``party_dir/keys`` (written once the blob is on the
    host, before the grant) so the key can be granted again to a restarted
    enclave; without it the key lives only in memory and is gone on return.
    """
    c = contract.contract
    check_owner(c, party, dataset_id)  # before anything touches the network or the disk
    announcement = _check_enclave_for(enclave, c)
    source = Path(source_path)
    if not source.is_file():
        raise ConfigurationError(f"input file {source} does not exist or is not a file")
    work = Path(work_dir)
    if not work.is_dir():
        raise ConfigurationError(f"work directory {work} does not exist")
    phase = progress or _silent
    key = DataKey.generate()
    encrypted = work / f".nestor-{dataset_id}-{secrets.token_hex(8)}.nds"
    try:
        with phase("encrypting", source.stat().st_size) as advance:
            result = encrypt_file(
                source, encrypted, key, chunk_size=chunk_size, suite=cipher, progress=advance
            )
        commitment = result.summary.commitment
        name = blob_name(dataset_id, commitment)
        with phase("uploading", encrypted.stat().st_size) as advance:
            host.put_blob(name, encrypted, progress=advance)
    finally:
        encrypted.unlink(missing_ok=True)
    if party_dir is not None:
        _store_upload(party_dir, c, dataset_id, key, commitment, now)
    grant = _grant(host, party, c, dataset_id, commitment, announcement, key, now, suite)
    return UploadReceipt(dataset_id, commitment, name, grant, announcement.keyid)


def _existing_grant(
    host: HostClient, party: Party, contract: Contract, record: DatasetRecord, enclave_keyid: str
) -> str | None:
    """A grant this party already posted for this enclave and ciphertext."""
    for obj in host.list_grants(enclave_keyid):
        try:
            env = Envelope.from_json(obj, expected_type=KEY_GRANT)
            s = env.signed
            if (
                s.get("contract") == contract.digest
                and s.get("dataset") == record.dataset
                and s.get("commitment") == record.commitment
                and s.get("enclave") == enclave_keyid
            ):
                verify_envelope_signature(env, party.card.signing_key, what="a key grant")
                return env.digest()
        except NestorError:
            continue
    return None


def regrant(
    host: HostClient,
    party: Party,
    contract: VerifiedContract,
    dataset_id: str,
    *,
    now: datetime,
    enclave: VerifiedEnclave,
    party_dir: Path,
    suite: hpke.Suite = hpke.DEFAULT_SUITE,
) -> UploadReceipt:
    """Grant a kept data key again, to a restarted (re-verified) enclave.

    An enclave makes fresh keys at every start and keeps data keys only in
    memory, so after a restart its old grants are useless to it (they are
    sealed to, and name, the old enclave key). The ciphertext on the host
    is unchanged: the owner verifies the new enclave and grants the same
    key for the same commitment. Idempotent: a grant this party already
    posted to this enclave for this ciphertext is not posted twice.
    """
    c = contract.contract
    check_owner(c, party, dataset_id)
    announcement = _check_enclave_for(enclave, c)
    record = read_dataset_record(party_dir, dataset_id)
    key = read_data_key(key_path(party_dir, dataset_id))
    existing = _existing_grant(host, party, c, record, announcement.keyid)
    grant = existing or _grant(
        host, party, c, dataset_id, record.commitment, announcement, key, now, suite
    )
    return UploadReceipt(dataset_id, record.commitment, record.blob, grant, announcement.keyid)


# -- step 6: jobs -------------------------------------------------------------------------------


def _describe_parameters(program: Program) -> str:
    if not program.parameters:
        return f"program {program.id!r} takes no parameters"
    return "its parameters: " + ", ".join(
        f"{p.name} ({p.type}{', required' if p.required else ''})" for p in program.parameters
    )


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _convert(program: Program, name: str, kind: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind in ("integer", "number"):
        value = text.strip()
        if not _INTEGER.fullmatch(value):
            extra = (
                " (numbers in signed messages are integers: canonical JSON has no fractions; "
                "scale the value, e.g. per mille)"
                if kind == "number"
                else ""
            )
            raise ConfigurationError(
                f"parameter {name!r} of program {program.id!r} is {_article(kind)} {kind}; "
                f"{text!r} is not an integer{extra}"
            )
        number = int(value)
        if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            raise ConfigurationError(f"parameter {name!r} is outside ±(2**53-1)")
        return number
    if kind == "boolean":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigurationError(
            f"parameter {name!r} of program {program.id!r} is a boolean; give true or false, "
            f"not {text!r}"
        )
    raise ConfigurationError(f"parameter {name!r} has unknown type {kind!r}")  # pragma: no cover


def parse_parameters(program: Program, items: Sequence[str]) -> dict[str, Any]:
    """``name=value`` strings → typed parameters, by the program's declared types.

    ``string`` keeps the text as is (everything after the first ``=``);
    ``integer`` and ``number`` take decimal integers (signed messages carry
    no fractions); ``boolean`` takes true/false, yes/no, on/off, 1/0.
    Unknown, repeated and missing required parameters are refused.
    """
    declared = {p.name: p for p in program.parameters}
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigurationError(
                f"--param {item!r} is not NAME=VALUE", hint=_describe_parameters(program)
            )
        spec = declared.get(name)
        if spec is None:
            raise ConfigurationError(
                f"program {program.id!r} takes no parameter {name!r}",
                hint=_describe_parameters(program),
            )
        if name in params:
            raise ConfigurationError(f"parameter {name!r} is given twice")
        params[name] = _convert(program, name, spec.type, text)
    check_parameters(program, params)
    return params


def check_parameters(program: Program, params: Mapping[str, Any]) -> None:
    """The rules the enclave applies to a job's parameters, checked before signing."""
    declared = {p.name: p for p in program.parameters}
    for name, value in params.items():
        spec = declared.get(name)
        if spec is None:
            raise ConfigurationError(
                f"program {program.id!r} takes no parameter {name!r}",
                hint=_describe_parameters(program),
            )
        if spec.type == "boolean":
            ok = isinstance(value, bool)
        elif spec.type == "string":
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise ConfigurationError(f"parameter {name!r} must be of type {spec.type}")
    missing = [p.name for p in program.parameters if p.required and p.name not in params]
    if missing:
        raise ConfigurationError(
            f"program {program.id!r} needs parameter(s) {', '.join(missing)}",
            hint="add --param NAME=VALUE; " + _describe_parameters(program),
        )


def _program(contract: Contract, program_id: str) -> Program:
    program = contract.program(program_id)
    if program is None:
        raise ConfigurationError(
            f"the contract lists no program {program_id!r}",
            hint="programs: " + (", ".join(p.id for p in contract.programs) or "none"),
        )
    return program


def check_submitter(contract: Contract, party: Party) -> None:
    me = contract.party(party.card.party_id)
    if (
        me is None
        or Role.JOB_SUBMITTER not in me.roles
        or (me.party_id not in contract.job_policy.submitters)
    ):
        names = [p.name for p in contract.parties if p.party_id in contract.job_policy.submitters]
        raise ConfigurationError(
            f"{party.card.name!r} may not submit jobs under this contract",
            hint="submitters: " + (", ".join(names) or "none"),
        )


def draft_job(
    party: Party,
    contract: VerifiedContract,
    program_id: str,
    parameters: Mapping[str, Any],
    *,
    now: datetime,
    job_id: str | None = None,
) -> Envelope:
    """A job request signed by ``party`` as submitter (not yet co-signed)."""
    c = contract.contract
    program = _program(c, program_id)
    check_submitter(c, party)
    check_parameters(program, parameters)
    return make_job_request(
        contract=c,
        program=program_id,
        parameters=dict(parameters),
        submitter_key=party.signing_key,
        submitted_at=now,
        job_id=None if job_id is None else check_job_id(job_id),
    )


def read_job_request(obj: object) -> Envelope:
    try:
        return Envelope.from_json(obj, expected_type=JOB_REQUEST)
    except NestorError as exc:
        raise MessageError(f"not a job request: {exc.message}") from exc


def cosign_job(request: object, party: Party, contract: VerifiedContract) -> Envelope:
    """Check a drafted job request as a data provider, then co-sign it.

    Checks: it is for this contract, names a program of the contract with
    that program's inputs and valid parameters, reads at least one dataset
    ``party`` owns, and carries a valid signature of an allowed submitter.
    Co-signatures are collected out of band: pass the file from provider to
    provider (each adds its signature), or merge separately co-signed
    copies with :func:`merge_cosignatures`.
    """
    c = contract.contract
    env = read_job_request(request)
    s = env.signed
    if s.get("contract") != c.digest:
        raise VerificationError(
            f"the job request is for contract {s.get('contract')}, not this one"
        )
    program = _program(c, str(s.get("program")))
    if s.get("inputs") != list(program.inputs):
        raise VerificationError(
            f"the job's inputs {s.get('inputs')!r} are not program {program.id!r}'s inputs"
        )
    params = s.get("parameters")
    if not isinstance(params, dict):
        raise MessageError("the job request's parameters must be an object")
    check_parameters(program, params)
    mine = [
        ds
        for ds in program.inputs
        if (d := c.dataset(ds)) is not None and d.owner == party.card.party_id
    ]
    if not mine:
        raise ConfigurationError(
            f"program {program.id!r} reads none of your datasets: your co-signature is not needed"
        )
    submitted = False
    for pid in c.job_policy.submitters:
        p = c.party(pid)
        if p is None or env.signature_by(pid) is None:
            continue
        verify_envelope_signature(env, p.card.signing_key, what="the job request")
        submitted = True
    if not submitted:
        raise VerificationError("the job request carries no signature of a party allowed to submit")
    return cosign_job_request(env, party.signing_key)


def merge_cosignatures(request: Envelope, *others: Envelope) -> Envelope:
    """One envelope with the signatures of several copies of the same request."""
    sigs = {s.keyid: s for s in request.signatures}
    for other in others:
        if other.payload_type != request.payload_type or other.digest() != request.digest():
            raise VerificationError(
                "a co-signed copy is of another job request (its content differs)"
            )
        for s in other.signatures:
            sigs.setdefault(s.keyid, s)
    return Envelope(request.payload_type, request.signed, tuple(sigs.values()))


def submit_signed_job(host: HostClient, contract: VerifiedContract, request: Envelope) -> str:
    """Check a (co-)signed request exactly as the enclave will, then queue it."""
    c = contract.contract
    try:
        job = verify_job_request(request.to_json(), contract=c)
    except VerificationError as exc:
        hint = exc.hint
        if c.job_policy.require_cosign and "co-sign" in exc.message:
            hint = (
                "collect the co-signatures first: `nestor job draft ... --out REQ.json`, each "
                "data provider runs `nestor job cosign REQ.json`, then `nestor job submit "
                "--request REQ.json`"
            )
        raise VerificationError(exc.message, hint=hint) from exc
    job_id = host.submit_job(request.to_json())
    if job_id != job.job_id:
        raise HostProtocolError(
            f"the host queued job {job_id}, but the request is job {job.job_id}",
            url=host.url("/v1/jobs"),
        )
    return job_id


def submit_job(
    host: HostClient,
    party: Party,
    contract: VerifiedContract,
    program: str,
    parameters: Mapping[str, Any],
    *,
    now: datetime,
) -> str:
    """Sign and queue a job request; returns its job id. When the contract
    requires co-signatures of other providers, use :func:`draft_job`,
    :func:`cosign_job` and :func:`submit_signed_job` instead."""
    request = draft_job(party, contract, program, parameters, now=now)
    return submit_signed_job(host, contract, request)


def wait_job(
    host: HostClient,
    job_id: str,
    *,
    timeout: float,
    poll: float = 0.2,
    on_change: Callable[[JobStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobStatus:
    """Poll until the job is ``done``; raise :class:`JobFailedError` with the
    job's error if it failed, :class:`JobTimeoutError` after ``timeout`` s."""
    check_job_id(job_id)
    deadline = clock() + timeout
    last: str | None = None
    while True:
        status = host.job_status(job_id)
        if status.status != last and on_change is not None:
            on_change(status)
        last = status.status
        if status.status == "done":
            return status
        if status.status == "failed":
            raise JobFailedError(
                f"job {job_id} failed: {status.error or 'no reason given'}",
                hint="the reason comes from the enclave, through the host",
            )
        remaining = deadline - clock()
        if remaining <= 0:
            raise JobTimeoutError(
                f"job {job_id} is still {status.status} after {timeout:g} s",
                hint="wait longer (--timeout), and check an enclave is running",
            )
        sleep(min(poll, remaining))


# -- step 7: results and receipts ---------------------------------------------------------


def _predicate(receipt: VerifiedReceipt) -> dict[str, Any]:
    pred = receipt.statement.get("predicate")
    if not isinstance(pred, dict):
        raise MessageError("the receipt statement has no predicate")
    return pred


def receipt_outputs(receipt: VerifiedReceipt, recipient: str) -> dict[str, str]:
    """The outputs (name → digest) the receipt says were released to ``recipient``."""
    out: dict[str, str] = {}
    for o in receipt.outputs:
        if o.get("recipient") == recipient:
            name, digest = o.get("name"), o.get("digest")
            if not isinstance(name, str) or not isinstance(digest, str) or name in out:
                raise MessageError("the receipt lists a malformed or repeated output")
            out[name] = digest
    return out


def check_receipt(
    receipt: object,
    *,
    contract: Contract,
    enclave: EnclaveRef,
    job: JobRequest | None = None,
    known_commitments: Mapping[str, Collection[str]] | None = None,
    recipient: str | None = None,
    outputs: Mapping[str, str] | None = None,
) -> VerifiedReceipt:
    """Verify a receipt offline and check what it binds.

    - signed by the enclave's key, for this contract, naming a program and
      program digest of the contract (``verify_receipt``);
    - names this enclave's key and the digest of its announced evidence;
    - with ``job``: its job request digest, job id and input datasets;
    - with ``known_commitments`` (dataset → commitments the party uploaded):
      each of those datasets that the receipt lists has one of them;
    - with ``recipient`` and ``outputs`` (name → digest): exactly those
      outputs were released to that recipient.
    """
    ann = _check_enclave_for(enclave, contract)
    signers = receipt.get("signatures") if isinstance(receipt, dict) else None
    keyids = (
        [s.get("keyid") for s in signers if isinstance(s, dict)]
        if isinstance(signers, list)
        else []
    )
    if keyids and ann.keyid not in keyids:
        raise VerificationError(
            f"the receipt is signed by enclave {', '.join(map(str, keyids))}, not by enclave "
            f"{ann.keyid}",
            hint="the job ran on another enclave (e.g. before a restart): check it with that "
            "enclave's announcement",
        )
    verified = verify_receipt(receipt, contract=contract, enclave_key=ann.signing_key)
    pred = _predicate(verified)
    try:
        keyid, evidence = str(pred["enclave"]["keyid"]), str(pred["enclave"]["evidence"])
        job_id = str(pred["job_id"])
    except (KeyError, TypeError):
        raise MessageError("the receipt lacks its enclave or job id") from None
    if keyid != ann.keyid:
        raise VerificationError(f"the receipt names enclave {keyid}, not {ann.keyid}")
    if evidence != _sha256_digest(ann.evidence):
        raise VerificationError(
            "the receipt names other evidence than the enclave announced "
            f"({evidence}, announced {_sha256_digest(ann.evidence)})"
        )
    if job is not None:
        if verified.job_request != job.digest or job_id != job.job_id:
            raise VerificationError(
                f"the receipt is for job request {verified.job_request} (job {job_id}), not "
                f"{job.digest} (job {job.job_id})"
            )
        if set(verified.input_commitments) != set(job.inputs):
            raise VerificationError(
                f"the receipt lists inputs {sorted(verified.input_commitments)}, but the job "
                f"reads {sorted(job.inputs)}"
            )
    for ds, commitments in (known_commitments or {}).items():
        actual = verified.input_commitments.get(ds)
        if actual is not None and actual not in commitments:
            raise VerificationError(
                f"the receipt says dataset {ds!r} had commitment {actual}, which is not a "
                "ciphertext you uploaded",
                hint="the job ran on another ciphertext of your dataset than the ones this "
                "party directory remembers",
            )
    if recipient is not None and outputs is not None:
        listed = receipt_outputs(verified, recipient)
        if listed != dict(outputs):
            raise VerificationError(
                "the receipt's outputs for you do not match the results you opened "
                f"(receipt: {_show(listed)}; results: {_show(outputs)})"
            )
    return verified


def _show(outputs: Mapping[str, str]) -> str:
    return ", ".join(f"{n}={d[:19]}…" for n, d in sorted(outputs.items())) or "none"


def _result_suite(obj: object) -> hpke.Suite:
    try:
        signed = obj["signed"]  # type: ignore[index]
        return hpke.WrappedKey.from_bytes(b64decode(signed["wrapped_key"])).suite
    except (KeyError, TypeError, NestorError):
        return hpke.DEFAULT_SUITE  # open_result then reports what is wrong


def _open_matching(
    results: Sequence[object],
    *,
    party: Party,
    contract: Contract,
    job: JobRequest,
    enclave_key: Ed25519PublicKey,
    expected: Mapping[str, str],
) -> dict[str, bytes]:
    problems: list[str] = []
    me = party.card.party_id
    for i, obj in enumerate(results):
        try:
            suite = _result_suite(obj)
            if suite not in party.hpke_keys:
                raise VerificationError(
                    f"the result is sealed to your {suite.label} key, which is not loaded"
                )
            sealed, data = open_result(
                obj,
                enclave_key=enclave_key,
                recipient=me,
                recipient_private=party.hpke_private_key(suite),
            )
            if sealed.contract != contract.digest or sealed.job != job.digest:
                raise VerificationError("the result is for another contract or job")
            if dict(sealed.outputs) != dict(expected):
                raise VerificationError("the result's outputs are not the ones the receipt lists")
            return data
        except NestorError as exc:
            problems.append(f"result {i}: {exc.message}")
    raise VerificationError(
        "no sealed result from the host opens and matches the receipt"
        + ("" if problems else ": the host holds none for you")
        + "".join(f"\n  - {p}" for p in problems),
        hint="the host withheld or altered your result; nothing was written",
    )


def _output_path(out_dir: Path, name: str) -> Path:
    if not _OUTPUT_NAME.fullmatch(name) or name in (RECEIPT_FILE, ANNOUNCEMENT_FILE):
        raise VerificationError(f"the result has an output named {name!r}, unsafe as a file name")
    return out_dir / name


def fetch_results(
    host: HostClient,
    party: Party,
    contract: VerifiedContract,
    job_id: str,
    *,
    enclave: EnclaveRef,
    out_dir: Path,
    known_commitments: Mapping[str, Collection[str]] | None = None,
    overwrite: bool = False,
    log_state: Path | None = None,
) -> dict[str, Path]:
    """Fetch, verify and open this party's result of a finished job.

    1. the job request (from the job's status) verifies against the contract,
       and this party is a recipient of its program;
    2. the receipt verifies (:func:`check_receipt`) for that job request, with
       the commitments the party knows for its own datasets;
    3. a sealed result for (job digest, this party) verifies (enclave
       signature), opens (HPKE + AEAD, bound to the job and the recipient),
       and its output digests are the receipt's;
    4. only then are the outputs written to ``out_dir`` (0600, atomic), with
       the receipt (``receipt.json``) and the enclave's announcement
       (``announcement.json``) beside them for offline checks.

    ``enclave`` is the enclave that ran the job: the current verified one, or
    one from the party's enclave records if the enclave restarted since.
    With ``log_state``, the receipt's audit-log position is remembered as a
    head the log must keep (:func:`remember_log_head`). Returns output name →
    path.
    """
    c = contract.contract
    check_job_id(job_id)
    ann = _check_enclave_for(enclave, c)
    out = Path(out_dir)
    status = host.job_status(job_id)
    job = verify_job_request(status.request, contract=c)
    if job.job_id != job_id:
        raise VerificationError(f"the host returned the request of job {job.job_id}, not {job_id}")
    program = c.program(job.program)
    assert program is not None  # verify_job_request checked it
    me = party.card.party_id
    if all(r.party != me for r in program.outputs.recipients):
        raise ConfigurationError(
            f"you ({party.card.name!r}) are not a recipient of program {program.id!r}'s results"
        )
    if status.status == "failed":
        raise JobFailedError(f"job {job_id} failed: {status.error or 'no reason given'}")
    try:
        receipt_obj = host.get_receipt(job_id)
    except HostNotFoundError as exc:
        raise JobNotFinishedError(
            f"job {job_id} has no receipt yet (status: {status.status})",
            hint=f"wait for it: nestor job wait {job_id}",
        ) from exc
    receipt = check_receipt(
        receipt_obj, contract=c, enclave=ann, job=job, known_commitments=known_commitments
    )
    expected = receipt_outputs(receipt, me)
    if not expected:
        raise VerificationError("the receipt lists no output released to you")
    data = _open_matching(
        host.get_results(job.digest, me),
        party=party,
        contract=c,
        job=job,
        enclave_key=ann.signing_key,
        expected=expected,
    )
    if not out.is_dir():
        out.mkdir(mode=0o700, parents=True)
    targets = {name: _output_path(out, name) for name in data}
    extra = [out / RECEIPT_FILE, out / ANNOUNCEMENT_FILE]
    if not overwrite:
        clash = [str(p) for p in (*targets.values(), *extra) if p.exists()]
        if clash:
            raise ConfigurationError(
                f"{', '.join(clash)} already exist(s)",
                hint="choose another --out directory, or pass --force",
            )
    for name, path in targets.items():
        with atomic_output(path, overwrite=True, mode=0o600) as f:
            f.write(data[name])
    _write_json_file(out / RECEIPT_FILE, receipt_obj, mode=0o600)
    _write_json_file(out / ANNOUNCEMENT_FILE, ann.envelope.to_json(), mode=0o644)
    if log_state is not None:
        remember_log_head(log_state, party, ann.keyid, LogHead(receipt.log_index, receipt.log_head))
    return targets


@dataclass(frozen=True)
class OfflineReceipt:
    receipt: VerifiedReceipt
    announcement: Announcement
    at: datetime  # the time the contract and the evidence were checked at
    enclave: VerifiedEnclave | None  # None when attestation was skipped


def receipt_time(receipt: VerifiedReceipt) -> datetime:
    return parse_time(_predicate(receipt).get("finished_at"), "the receipt's finished_at")


def verify_receipt_offline(
    receipt: object,
    *,
    contract: Contract,
    announcement: object,
    at: datetime | None = None,
    attest: bool = True,
    simulated_vendor_keys: Sequence[Ed25519PublicKey] = (),
    collateral: bytes | None = None,
) -> OfflineReceipt:
    """Verify a receipt with only the contract and the enclave's announcement.

    The receipt must be signed by the announced enclave key and name its
    evidence; the contract must be in effect, and (with ``attest``) the
    evidence must verify and pass the contract's enclave policy, at ``at``
    (default: the receipt's ``finished_at``, so an old receipt still checks).
    """
    ann = verify_announcement(announcement, contract_digest=contract.digest)
    verified = check_receipt(receipt, contract=contract, enclave=ann)
    when = at or receipt_time(verified)
    verify_contract(contract, now=when)
    appraised = None
    if attest:
        appraised = appraise_announcement(
            ann.envelope.to_json(),
            contract,
            now=when,
            simulated_vendor_keys=simulated_vendor_keys,
            collateral=collateral,
        )
    return OfflineReceipt(verified, ann, when, appraised)


# -- step 8: the audit log ------------------------------------------------------------------


def read_log_heads(state_file: Path, party: Party) -> dict[str, LogHead]:
    """The log heads this party saw, per enclave key id (empty if no file yet)."""
    path = Path(state_file)
    if not path.exists():
        return {}
    obj = _read_json_file(path, "log state file")
    if not isinstance(obj, dict) or obj.get("type") != LOG_STATE_TYPE:
        raise ConfigurationError(f"{path} is not a Nestor log state file")
    if obj.get("party") != party.card.party_id:
        raise ConfigurationError(f"{path} holds the log heads of another party")
    heads = obj.get("heads")
    if not isinstance(heads, dict):
        raise ConfigurationError(f"{path}: heads must be an object")
    out: dict[str, LogHead] = {}
    for keyid, h in heads.items():
        if (
            not isinstance(h, dict)
            or not isinstance(h.get("index"), int)
            or not isinstance(h.get("digest"), str)
        ):
            raise ConfigurationError(f"{path}: the head for {keyid} is malformed")
        out[keyid] = LogHead(h["index"], h["digest"])
    return out


def _write_log_heads(state_file: Path, party: Party, heads: Mapping[str, LogHead]) -> None:
    _write_json_file(
        Path(state_file),
        {
            "type": LOG_STATE_TYPE,
            "version": 1,
            "party": party.card.party_id,
            "heads": {k: {"index": h.index, "digest": h.digest} for k, h in sorted(heads.items())},
        },
    )


def remember_log_head(state_file: Path, party: Party, enclave_keyid: str, head: LogHead) -> None:
    """Keep ``head`` (e.g. a receipt's log position) unless a later one is known."""
    heads = read_log_heads(state_file, party)
    known = heads.get(enclave_keyid)
    if known is None or head.index > known.index:
        heads[enclave_keyid] = head
        _write_log_heads(state_file, party, heads)


def verify_audit_log(
    host: HostClient, party: Party, enclave: EnclaveRef, *, state_file: Path
) -> LogHead:
    """Fetch the enclave's audit log, verify the whole chain against the head
    remembered in ``state_file`` (a shorter log is truncated, another entry
    at that index is a fork), then remember the new head."""
    ann = _announcement(enclave)
    heads = read_log_heads(state_file, party)
    entries = host.get_log(ann.keyid)
    head = verify_log(entries, enclave_key=ann.signing_key, known_head=heads.get(ann.keyid))
    first = entries[0].get("signed", {})
    if first.get("event") == "enclave-started":
        details = first.get("details")
        if isinstance(details, dict) and details.get("contract") != ann.contract:
            raise VerificationError(
                f"the audit log of enclave {ann.keyid} starts for contract "
                f"{details.get('contract')}, not {ann.contract}"
            )
    heads[ann.keyid] = head
    _write_log_heads(state_file, party, heads)
    return head


__all__ = [
    "ANNOUNCEMENT_FILE",
    "LOG_STATE_FILE",
    "RECEIPT_FILE",
    "DatasetRecord",
    "EnclaveRef",
    "JobFailedError",
    "JobNotFinishedError",
    "JobTimeoutError",
    "NoEnclaveError",
    "OfflineReceipt",
    "PhaseProgress",
    "UploadReceipt",
    "VerifiedEnclave",
    "appraise_announcement",
    "check_owner",
    "check_parameters",
    "check_receipt",
    "check_submitter",
    "cosign_job",
    "draft_job",
    "enclave_records",
    "fetch_results",
    "known_commitments",
    "merge_cosignatures",
    "parse_parameters",
    "read_dataset_record",
    "read_job_request",
    "read_log_heads",
    "receipt_outputs",
    "receipt_time",
    "regrant",
    "remember_log_head",
    "save_enclave_record",
    "stored_datasets",
    "submit_job",
    "submit_signed_job",
    "upload_dataset",
    "verify_audit_log",
    "verify_enclave",
    "verify_receipt_offline",
    "wait_job",
]
