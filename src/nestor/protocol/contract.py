"""The collaboration contract: what every party agrees to and signs.

A contract is a signed envelope (``nestor.protocol.envelope``) of payload type
``application/vnd.nestor.contract+json;version=1`` whose ``signed`` object is
described field by field in docs/contract.md. Every listed party signs the
same canonical bytes; the contract takes effect only when all have signed.
Its *contract digest* is the digest of the canonical ``signed`` object.

Two steps, as in the rest of the protocol:

- :func:`parse_contract` checks structure and internal consistency (roles,
  owners, recipients, references between sections) and the party cards'
  self-signatures. It raises :class:`ContractError` on the first problem.
- :func:`verify_contract` checks that the contract is *in effect* at a given
  time: every party's signature present and valid over this exact version,
  no signature by a stranger, inside the validity window, program bundles
  matching their digests. It lists every problem at once.

Pure: callers pass ``now`` and any bundle digests in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from nestor.errors import (
    ConfigurationError,
    ContractError,
    ContractVerificationError,
    NestorError,
    SignatureError,
)
from nestor.protocol import canonical
from nestor.protocol.envelope import Envelope, verify_envelope_signature
from nestor.protocol.party_card import PartyCard, verify_party_card

PAYLOAD_TYPE: Final = "application/vnd.nestor.contract+json;version=1"
MAX_PARTIES: Final = 1000
MAX_ITEMS: Final = 1000
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"

_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ENTRY_POINT = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)
_HEX = re.compile(r"[0-9a-f]+")

TOP_FIELDS: Final = (
    "name",
    "collaboration_id",
    "version",
    "previous",
    "validity",
    "parties",
    "datasets",
    "programs",
    "enclave_policy",
    "job_policy",
    "retention",
)


class Role(StrEnum):
    DATA_PROVIDER = "data-provider"
    RESULT_RECIPIENT = "result-recipient"
    JOB_SUBMITTER = "job-submitter"
    AUDITOR = "auditor"


class View(StrEnum):
    """What a result recipient may see of a program's outputs."""

    FULL = "full"  # every row of every output
    OWN = "own"  # only rows that derive from the recipient's own datasets


DATASET_FORMATS: Final = ("csv", "parquet", "jsonl", "arrow", "bytes")
COLUMN_TYPES: Final = ("string", "integer", "float", "boolean", "date", "timestamp")
PARAMETER_TYPES: Final = ("string", "integer", "number", "boolean")
TCB_STATUSES: Final = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
)
RETENTION_RULES: Final = ("after-each-job", "after-runs", "at-date", "at-expiry")
INIT_DATA_ALGORITHMS: Final = ("sha256", "sha384", "sha512")
INIT_DATA_PLATFORMS: Final = ("tdx", "sev-snp")
# Kubernetes caps a pod's annotations at 256 KiB in all, so a longer policy
# could never reach the pod the contract describes.
MAX_AGENT_POLICY_CHARS: Final = 256 * 1024


# -- the parsed model -------------------------------------------------------------------


@dataclass(frozen=True)
class ContractParty:
    card: PartyCard
    roles: frozenset[Role]

    @property
    def party_id(self) -> str:
        return self.card.party_id

    @property
    def name(self) -> str:
        return self.card.name


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Dataset:
    id: str
    owner: str
    description: str
    format: str
    schema: tuple[Column, ...] | None


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class Recipient:
    party: str
    view: View


@dataclass(frozen=True)
class OutputPolicy:
    recipients: tuple[Recipient, ...]
    min_group_size: int


@dataclass(frozen=True)
class Program:
    id: str
    description: str
    digest: str
    entry_point: str
    parameters: tuple[Parameter, ...]
    inputs: tuple[str, ...]
    outputs: OutputPolicy


@dataclass(frozen=True)
class InitDataPolicy:
    """How to rebuild the Confidential Containers init-data of a pod serving
    this contract (``nestor.attestation.initdata``): the document's digest
    algorithm and the exact Kata agent policy text, or ``None`` for none."""

    algorithm: str
    agent_policy: str | None

    def agent_policy_digest(self) -> str | None:
        if self.agent_policy is None:
            return None
        return "sha256:" + hashlib.sha256(self.agent_policy.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PlatformPolicy:
    """Reference values for one accepted TEE platform (docs/contract.md)."""

    platform: str
    values: Mapping[str, Any]

    @property
    def init_data(self) -> InitDataPolicy | None:
        """The init-data parameters (TDX and SEV-SNP only), when the contract binds them."""
        raw = self.values.get("init_data")
        if not isinstance(raw, Mapping):
            return None
        return InitDataPolicy(str(raw["algorithm"]), raw["agent_policy"])


@dataclass(frozen=True)
class EnclavePolicy:
    platforms: tuple[PlatformPolicy, ...]
    accepted_tcb_statuses: tuple[str, ...]

    def accepts(self, platform: str) -> bool:
        return any(p.platform == platform for p in self.platforms)


@dataclass(frozen=True)
class JobPolicy:
    submitters: tuple[str, ...]
    require_cosign: bool
    max_runs: int | None


@dataclass(frozen=True)
class Retention:
    destroy_keys: str
    runs: int | None
    date: str | None


@dataclass(frozen=True)
class Contract:
    """A structurally valid contract (signatures not yet checked)."""

    envelope: Envelope
    name: str
    collaboration_id: str
    version: int
    previous: str | None
    not_before: datetime
    not_after: datetime
    parties: tuple[ContractParty, ...]
    datasets: tuple[Dataset, ...]
    programs: tuple[Program, ...]
    enclave_policy: EnclavePolicy
    job_policy: JobPolicy
    retention: Retention

    @property
    def digest(self) -> str:
        return self.envelope.digest()

    def party(self, party_id: str) -> ContractParty | None:
        for p in self.parties:
            if p.party_id == party_id:
                return p
        return None

    def program(self, program_id: str) -> Program | None:
        for p in self.programs:
            if p.id == program_id:
                return p
        return None

    def dataset(self, dataset_id: str) -> Dataset | None:
        for d in self.datasets:
            if d.id == dataset_id:
                return d
        return None


@dataclass(frozen=True)
class VerifiedContract:
    """A contract in effect at ``checked_at``: only :func:`verify_contract` makes one."""

    contract: Contract
    checked_at: datetime


# -- parsing ------------------------------------------------------------------------------


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: object, where: str) -> datetime:
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise ContractError(f"{where} must be a UTC time like 2027-01-31T00:00:00Z")
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ContractError(f"{where} is not a real date and time: {text}") from None


def _obj(
    value: object, where: str, fields: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where} must be a JSON object")
    unknown = sorted(set(value) - set(fields) - set(optional))
    if unknown:
        raise ContractError(f"{where} has unknown field(s): {', '.join(unknown)}")
    missing = [f for f in fields if f not in value]
    if missing:
        raise ContractError(f"{where} lacks field(s): {', '.join(missing)}")
    return value


def _list(value: object, where: str, *, limit: int = MAX_ITEMS) -> list[Any]:
    if not isinstance(value, list):
        raise ContractError(f"{where} must be a list")
    if len(value) > limit:
        raise ContractError(f"{where} has {len(value)} entries; at most {limit} are allowed")
    return value


def _text(value: object, where: str, *, max_length: int = 2000, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise ContractError(f"{where} must be a non-empty string")
    if len(value) > max_length:
        raise ContractError(f"{where} is longer than {max_length} characters")
    return value


def _slug(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ContractError(
            f"{where} must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a "
            f"letter or digit (got {value!r})"
        )
    return value


def _int(value: object, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ContractError(f"{where} must be an integer of at least {minimum}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ContractError(f"{where} must be true or false")
    return value


def _hex_values(value: object, where: str, length: int, *, empty: bool = False) -> tuple[str, ...]:
    items = _list(value, where)
    if not items and not empty:
        raise ContractError(f"{where} must list at least one value")
    for i, item in enumerate(items):
        if not isinstance(item, str) or len(item) != length or not _HEX.fullmatch(item):
            raise ContractError(f"{where}[{i}] must be {length} lowercase hex digits")
    return tuple(items)


def _role(value: object, where: str) -> Role:
    try:
        return Role(str(value)) if isinstance(value, str) else Role(repr(value))
    except ValueError:
        raise ContractError(
            f"{where}: unknown role {value!r} (known roles: {', '.join(r.value for r in Role)})"
        ) from None


def parse_contract(obj: object) -> Contract:
    """Check structure and consistency; see the module docstring."""
    try:
        envelope = Envelope.from_json(obj, expected_type=PAYLOAD_TYPE)
    except NestorError as exc:
        raise ContractError(f"not a valid contract file: {exc.message}") from exc
    return contract_from_envelope(envelope)


def contract_from_envelope(envelope: Envelope) -> Contract:
    s = _obj(envelope.signed, "the contract", TOP_FIELDS)
    name = _text(s["name"], "name", max_length=200)
    collaboration_id = _slug(s["collaboration_id"], "collaboration_id")
    version = _int(s["version"], "version", minimum=1)
    previous = s["previous"]
    if version == 1 and previous is not None:
        raise ContractError("version 1 has no previous version: previous must be null")
    if version > 1 and (not isinstance(previous, str) or not _DIGEST.fullmatch(previous)):
        raise ContractError(
            f"version {version} must name the digest of version {version - 1} in previous"
        )
    validity = _obj(s["validity"], "validity", ("not_before", "not_after"))
    not_before = parse_time(validity["not_before"], "validity.not_before")
    not_after = parse_time(validity["not_after"], "validity.not_after")
    if not_after <= not_before:
        raise ContractError("validity.not_after must be later than validity.not_before")

    parties = _parse_parties(s["parties"])
    by_id = {p.party_id: p for p in parties}

    def require_role(pid: object, role: Role, where: str) -> str:
        if not isinstance(pid, str) or pid not in by_id:
            raise ContractError(f"{where} is {pid!r}, which is not a party of this contract")
        if role not in by_id[pid].roles:
            raise ContractError(
                f"{where} is {by_id[pid].name!r}, who does not have the role {role.value}"
            )
        return pid

    datasets = _parse_datasets(s["datasets"], require_role)
    dataset_ids = {d.id for d in datasets}
    programs = _parse_programs(s["programs"], dataset_ids, require_role)
    enclave_policy = _parse_enclave_policy(s["enclave_policy"])
    job_policy = _parse_job_policy(s["job_policy"], require_role)
    retention = _parse_retention(s["retention"])
    if retention.date is not None:
        when = parse_time(retention.date, "retention.date")
        if not not_before <= when <= not_after:
            raise ContractError("retention.date must fall inside the validity window")
    return Contract(
        envelope=envelope,
        name=name,
        collaboration_id=collaboration_id,
        version=version,
        previous=previous,
        not_before=not_before,
        not_after=not_after,
        parties=parties,
        datasets=datasets,
        programs=programs,
        enclave_policy=enclave_policy,
        job_policy=job_policy,
        retention=retention,
    )


def _parse_parties(value: object) -> tuple[ContractParty, ...]:
    entries = _list(value, "parties", limit=MAX_PARTIES)
    parties: list[ContractParty] = []
    seen_ids: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for i, entry in enumerate(entries):
        e = _obj(entry, f"parties[{i}]", ("card", "roles"))
        try:
            card = verify_party_card(e["card"])
        except NestorError as exc:
            raise ContractError(f"parties[{i}]: the party card is invalid: {exc.message}") from exc
        if card.party_id in seen_ids:
            raise ContractError(
                f"party {card.name!r} ({card.party_id}) is listed twice: "
                f"parties[{seen_ids[card.party_id]}] and parties[{i}]"
            )
        if card.name in seen_names:
            raise ContractError(
                f"parties[{seen_names[card.name]}] and parties[{i}] are both named {card.name!r}; "
                "reviewers could not tell them apart"
            )
        roles_list = _list(e["roles"], f"parties[{i}].roles")
        if not roles_list:
            raise ContractError(f"party {card.name!r} has no role")
        roles = [_role(r, f"party {card.name!r}") for r in roles_list]
        if len(set(roles)) != len(roles):
            raise ContractError(f"party {card.name!r} lists a role twice")
        seen_ids[card.party_id] = i
        seen_names[card.name] = i
        parties.append(ContractParty(card, frozenset(roles)))
    return tuple(parties)


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ContractError(f"{what} id {i!r} is used twice")
        seen.add(i)


def _parse_datasets(value: object, require_role: Any) -> tuple[Dataset, ...]:
    out: list[Dataset] = []
    for i, entry in enumerate(_list(value, "datasets")):
        e = _obj(entry, f"datasets[{i}]", ("id", "owner", "description", "format", "schema"))
        ds_id = _slug(e["id"], f"datasets[{i}].id")
        owner = require_role(e["owner"], Role.DATA_PROVIDER, f"the owner of dataset {ds_id!r}")
        fmt = e["format"]
        if fmt not in DATASET_FORMATS:
            raise ContractError(
                f"dataset {ds_id!r}: unknown format {fmt!r} (known: {', '.join(DATASET_FORMATS)})"
            )
        schema: tuple[Column, ...] | None = None
        if e["schema"] is not None:
            sch = _obj(e["schema"], f"dataset {ds_id!r} schema", ("columns",))
            cols: list[Column] = []
            for j, c in enumerate(_list(sch["columns"], f"dataset {ds_id!r} schema.columns")):
                col = _obj(c, f"dataset {ds_id!r} column {j}", ("name", "type"))
                cname = _text(col["name"], f"dataset {ds_id!r} column {j} name", max_length=200)
                if col["type"] not in COLUMN_TYPES:
                    raise ContractError(
                        f"dataset {ds_id!r} column {cname!r}: unknown type {col['type']!r} "
                        f"(known: {', '.join(COLUMN_TYPES)})"
                    )
                cols.append(Column(cname, col["type"]))
            _unique([c.name for c in cols], f"dataset {ds_id!r} column")
            schema = tuple(cols)
        out.append(
            Dataset(
                ds_id, owner, _text(e["description"], f"dataset {ds_id!r} description"), fmt, schema
            )
        )
    _unique([d.id for d in out], "dataset")
    return tuple(out)


def _parse_programs(value: object, dataset_ids: set[str], require_role: Any) -> tuple[Program, ...]:
    out: list[Program] = []
    for i, entry in enumerate(_list(value, "programs")):
        e = _obj(
            entry,
            f"programs[{i}]",
            ("id", "description", "digest", "entry_point", "parameters", "inputs", "outputs"),
        )
        pid = _slug(e["id"], f"programs[{i}].id")
        where = f"program {pid!r}"
        digest = e["digest"]
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ContractError(f"{where}: digest must be sha256: followed by 64 hex digits")
        entry_point = e["entry_point"]
        if not isinstance(entry_point, str) or not _ENTRY_POINT.fullmatch(entry_point):
            raise ContractError(f"{where}: entry_point must look like package.module:function")
        params: list[Parameter] = []
        praw = e["parameters"]
        if not isinstance(praw, dict):
            raise ContractError(f"{where}: parameters must be an object of name: specification")
        for pname, spec in praw.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", pname):
                raise ContractError(f"{where}: parameter name {pname!r} is not an identifier")
            sp = _obj(spec, f"{where} parameter {pname!r}", ("type", "required"), ("description",))
            if sp["type"] not in PARAMETER_TYPES:
                raise ContractError(
                    f"{where} parameter {pname!r}: unknown type {sp['type']!r} "
                    f"(known: {', '.join(PARAMETER_TYPES)})"
                )
            params.append(
                Parameter(
                    pname,
                    sp["type"],
                    _bool(sp["required"], f"{where} parameter {pname!r} required"),
                    _text(sp.get("description", ""), f"{where} parameter {pname!r}", empty=True),
                )
            )
        inputs = _list(e["inputs"], f"{where} inputs")
        if not inputs:
            raise ContractError(f"{where} must name at least one input dataset")
        for ds in inputs:
            if not isinstance(ds, str) or ds not in dataset_ids:
                raise ContractError(
                    f"{where} reads dataset {ds!r}, which the contract does not list"
                )
        if len(set(inputs)) != len(inputs):
            raise ContractError(f"{where} lists an input dataset twice")
        o = _obj(e["outputs"], f"{where} outputs", ("recipients", "min_group_size"))
        recipients: list[Recipient] = []
        for j, r in enumerate(_list(o["recipients"], f"{where} outputs.recipients")):
            rr = _obj(r, f"{where} recipient {j}", ("party", "view"))
            party = require_role(rr["party"], Role.RESULT_RECIPIENT, f"{where} recipient {j}")
            try:
                view = View(rr["view"])
            except ValueError:
                raise ContractError(
                    f"{where} recipient {j}: unknown view {rr['view']!r} (known: full, own)"
                ) from None
            recipients.append(Recipient(party, view))
        if not recipients:
            raise ContractError(f"{where} must have at least one result recipient")
        if len({r.party for r in recipients}) != len(recipients):
            raise ContractError(f"{where} lists a recipient twice")
        min_group = _int(o["min_group_size"], f"{where} outputs.min_group_size", minimum=1)
        out.append(
            Program(
                pid,
                _text(e["description"], f"{where} description"),
                digest,
                entry_point,
                tuple(params),
                tuple(inputs),
                OutputPolicy(tuple(recipients), min_group),
            )
        )
    _unique([p.id for p in out], "program")
    return tuple(out)


_PLATFORM_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # platform: (required fields, optional fields), besides "platform" itself
    "simulated": (("measurements",), ()),
    "sgx": ((), ("mrenclave", "mrsigner", "isv_prod_id", "min_isv_svn")),
    "tdx": (("mrtd",), ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "init_data")),
    "sev-snp": (("measurements", "min_tcb"), ("host_data", "init_data")),
    "nitro": (("pcrs",), ()),
}


def _parse_platform(entry: object, i: int) -> PlatformPolicy:
    name = entry.get("platform") if isinstance(entry, dict) else None
    if not isinstance(name, str) or name not in _PLATFORM_FIELDS:
        known = ", ".join(_PLATFORM_FIELDS)
        raise ContractError(
            f"enclave_policy.platforms[{i}]: unknown platform {name!r} (known: {known})"
        )
    platform = name
    required, optional = _PLATFORM_FIELDS[platform]
    where = f"enclave policy for {platform}"
    e = _obj(entry, where, ("platform", *required), optional)
    if platform == "simulated":
        _hex_values(e["measurements"], f"{where}: measurements", 64)
    elif platform == "sgx":
        if "mrenclave" in e:
            _hex_values(e["mrenclave"], f"{where}: mrenclave", 64)
        signer = [k for k in ("mrsigner", "isv_prod_id", "min_isv_svn") if k in e]
        if signer and len(signer) != 3:
            raise ContractError(f"{where}: mrsigner, isv_prod_id and min_isv_svn go together")
        if signer:
            _hex_values([e["mrsigner"]], f"{where}: mrsigner", 64)
            _int(e["isv_prod_id"], f"{where}: isv_prod_id")
            _int(e["min_isv_svn"], f"{where}: min_isv_svn")
        if "mrenclave" not in e and not signer:
            raise ContractError(
                f"{where}: give mrenclave, or mrsigner with isv_prod_id and min_isv_svn"
            )
    elif platform == "tdx":
        _hex_values(e["mrtd"], f"{where}: mrtd", 96)
        for k in ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid"):
            if k in e:
                _hex_values(e[k], f"{where}: {k}", 96)
    elif platform == "sev-snp":
        _hex_values(e["measurements"], f"{where}: measurements", 96)
        tcb = _obj(e["min_tcb"], f"{where}: min_tcb", ("bootloader", "tee", "snp", "microcode"))
        for k, v in tcb.items():
            _int(v, f"{where}: min_tcb.{k}")
        if "host_data" in e:
            _hex_values(e["host_data"], f"{where}: host_data", 64)
    elif platform == "nitro":
        pcrs = e["pcrs"]
        if not isinstance(pcrs, dict) or not pcrs:
            raise ContractError(f"{where}: pcrs must map PCR indexes to values")
        for k, v in pcrs.items():
            if not re.fullmatch(r"[0-9]|1[0-5]", k):
                raise ContractError(f"{where}: PCR index {k!r} is not 0-15")
            _hex_values([v], f"{where}: PCR{k}", 96)
    if "init_data" in e:  # only tdx and sev-snp allow it (_PLATFORM_FIELDS)
        _parse_init_data(e["init_data"], f"{where}: init_data")
    return PlatformPolicy(platform, dict(e))


def _parse_init_data(value: object, where: str) -> InitDataPolicy:
    e = _obj(value, where, ("algorithm", "agent_policy"))
    algorithm = e["algorithm"]
    if algorithm not in INIT_DATA_ALGORITHMS:
        raise ContractError(
            f"{where}: unknown algorithm {algorithm!r} (known: {', '.join(INIT_DATA_ALGORITHMS)})"
        )
    policy = e["agent_policy"]
    if policy is None:
        return InitDataPolicy(algorithm, None)
    if isinstance(policy, str) and _DIGEST.fullmatch(policy):
        raise ContractError(
            f"{where}: agent_policy must be the agent policy's text, not its digest: every "
            "party rebuilds the init-data document from it"
        )
    policy = _text(policy, f"{where}: agent_policy", max_length=MAX_AGENT_POLICY_CHARS)
    # The document holds the policy as a TOML literal string, which cannot
    # carry these; and a text without its final newline would be a second
    # spelling of the same document.
    if "'''" in policy or "\r" in policy:
        raise ContractError(
            f"{where}: agent_policy contains ''' or a carriage return, which the init-data "
            "document cannot hold"
        )
    if not policy.endswith("\n"):
        raise ContractError(f"{where}: agent_policy must end with a newline")
    return InitDataPolicy(algorithm, policy)


def _parse_enclave_policy(value: object) -> EnclavePolicy:
    e = _obj(value, "enclave_policy", ("platforms", "accepted_tcb_statuses"))
    platforms = tuple(
        _parse_platform(p, i)
        for i, p in enumerate(_list(e["platforms"], "enclave_policy.platforms"))
    )
    names = [p.platform for p in platforms]
    if len(set(names)) != len(names):
        raise ContractError("enclave_policy lists a platform twice; merge its reference values")
    statuses = _list(e["accepted_tcb_statuses"], "enclave_policy.accepted_tcb_statuses")
    for s in statuses:
        if s not in TCB_STATUSES:
            raise ContractError(f"unknown TCB status {s!r} (known: {', '.join(TCB_STATUSES)})")
    return EnclavePolicy(platforms, tuple(statuses))


def _parse_job_policy(value: object, require_role: Any) -> JobPolicy:
    e = _obj(value, "job_policy", ("submitters", "require_cosign", "max_runs"))
    submitters = tuple(
        require_role(p, Role.JOB_SUBMITTER, f"job_policy.submitters[{i}]")
        for i, p in enumerate(_list(e["submitters"], "job_policy.submitters"))
    )
    if len(set(submitters)) != len(submitters):
        raise ContractError("job_policy.submitters lists a party twice")
    max_runs = (
        None if e["max_runs"] is None else _int(e["max_runs"], "job_policy.max_runs", minimum=1)
    )
    return JobPolicy(submitters, _bool(e["require_cosign"], "job_policy.require_cosign"), max_runs)


def _parse_retention(value: object) -> Retention:
    e = _obj(value, "retention", ("destroy_keys",), ("runs", "date"))
    rule = e["destroy_keys"]
    if rule not in RETENTION_RULES:
        raise ContractError(
            f"retention.destroy_keys {rule!r} is unknown (known: {', '.join(RETENTION_RULES)})"
        )
    # Absent, never null: one meaning must have one spelling under a signature.
    runs = e.get("runs")
    date = e.get("date")
    if rule == "after-runs":
        runs = _int(runs, "retention.runs", minimum=1)
    elif "runs" in e:
        raise ContractError("retention.runs goes only with destroy_keys after-runs")
    if rule == "at-date":
        parse_time(date, "retention.date")
    elif "date" in e:
        raise ContractError("retention.date goes only with destroy_keys at-date")
    return Retention(rule, runs, date)


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureStatus:
    party: ContractParty
    ok: bool
    problem: str | None


def signature_statuses(contract: Contract) -> list[SignatureStatus]:
    """Each party's signature: present and valid over this version, or why not."""
    out: list[SignatureStatus] = []
    for p in contract.parties:
        sig = contract.envelope.signature_by(p.party_id)
        label = f"{p.name!r} ({p.party_id[:19]}…)"
        if sig is None:
            out.append(SignatureStatus(p, False, f"missing signature of {label}"))
            continue
        if contract.previous is not None and sig.signed_digest == contract.previous:
            out.append(
                SignatureStatus(
                    p,
                    False,
                    f"the signature of {label} is over the previous version "
                    f"(version {contract.version - 1}, {contract.previous}), not version "
                    f"{contract.version}: {p.name} must sign the amended contract",
                )
            )
            continue
        if sig.signed_digest != contract.digest:
            out.append(
                SignatureStatus(
                    p,
                    False,
                    f"the signature of {label} was made over other content "
                    f"({sig.signed_digest}): the contract was edited after {p.name} signed",
                )
            )
            continue
        try:
            verify_envelope_signature(contract.envelope, p.card.signing_key, what="the contract")
        except SignatureError:
            out.append(
                SignatureStatus(
                    p,
                    False,
                    f"the signature of {label} is invalid: it does not verify with "
                    "the party's signing key",
                )
            )
            continue
        out.append(SignatureStatus(p, True, None))
    return out


def verify_contract(
    contract: Contract,
    *,
    now: datetime,
    bundle_digests: Mapping[str, str] | None = None,
    previous: Contract | None = None,
) -> VerifiedContract:
    """Check that ``contract`` is in effect at ``now``; list every problem.

    ``bundle_digests`` maps program ids to digests computed from bundle
    directories (``nestor.programs.bundle``); ``previous`` is the version
    this one amends, when the caller has it.
    """
    if now.tzinfo is None:
        raise ConfigurationError("the verification time must be timezone-aware (UTC)")
    problems = [s.problem for s in signature_statuses(contract) if s.problem]
    if not contract.parties:
        problems.append("the contract lists no parties")
    members = {p.party_id for p in contract.parties}
    for sig in contract.envelope.signatures:
        if sig.keyid not in members:
            problems.append(
                f"a signature by key {sig.keyid}, which is not a party of this contract"
            )
    if not contract.not_before <= now <= contract.not_after:
        problems.append(
            f"the contract is not valid at {format_time(now)}: it is valid from "
            f"{format_time(contract.not_before)} until {format_time(contract.not_after)}"
        )
    if not contract.enclave_policy.platforms:
        problems.append("the enclave policy accepts no platform: no enclave could be trusted")
    for program_id, actual in (bundle_digests or {}).items():
        program = contract.program(program_id)
        if program is None:
            problems.append(
                f"a bundle was given for program {program_id!r}, which the contract does not list"
            )
        elif actual != program.digest:
            problems.append(
                f"program {program_id!r}: the bundle's digest {actual} does not match the "
                f"contract's {program.digest}"
            )
    if previous is not None:
        if contract.previous != previous.digest:
            problems.append(
                f"this version names {contract.previous} as its previous version, but the given "
                f"previous contract is {previous.digest}"
            )
        if previous.version != contract.version - 1:
            problems.append(
                f"this is version {contract.version}; the given previous contract is version "
                f"{previous.version}"
            )
        if previous.collaboration_id != contract.collaboration_id:
            problems.append("the previous contract belongs to another collaboration")
    if problems:
        raise ContractVerificationError(
            f"contract {contract.name!r} version {contract.version} ({contract.digest}) is not in "
            f"effect",
            problems=problems,
            hint="a contract takes effect only when every listed party has signed this exact "
            "version inside its validity window",
        )
    return VerifiedContract(contract, now)


def contract_json(contract: Contract) -> dict[str, Any]:
    return contract.envelope.to_json()


def canonical_body(contract: Contract) -> bytes:
    return canonical.encode(contract.envelope.signed)
