"""`nestor contract ...`: draft, review, sign, verify and amend a contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from nestor.attestation.initdata import DEFAULT_AGENT_POLICY
from nestor.cli.console import err, out
from nestor.cli.contract_view import render_contract
from nestor.cli.party import PassphraseFile, read_passphrase
from nestor.client import contracts
from nestor.client import party as party_store
from nestor.errors import ConfigurationError, NestorError
from nestor.programs.bundle import bundle_digest
from nestor.protocol import canonical
from nestor.protocol.contract import (
    INIT_DATA_ALGORITHMS,
    PARAMETER_TYPES,
    RETENTION_RULES,
    Contract,
    Role,
    parse_time,
    verify_contract,
)

app = typer.Typer(
    help=(
        "The collaboration contract: who takes part, which data, which code, which "
        "enclave, who gets which result, how long keys live. Draft it with init and "
        "add-*, review it with show, have every party sign it, check it with verify."
    ),
    no_args_is_help=True,
)

ContractFile = Annotated[Path, typer.Argument(help="The contract file (JSON).")]
Discard = Annotated[
    bool,
    typer.Option("--discard-signatures", help="Edit even though signatures exist (voids them)."),
]


def _now(at: str | None) -> datetime:
    return datetime.now(UTC) if at is None else parse_time(at, "--at")


def _save(path: Path, contract: Contract) -> None:
    contracts.save_contract(path, contract)
    err.print(f"contract {contract.digest} (version {contract.version}) written to {path}")


@app.command()
def init(
    file: ContractFile,
    name: Annotated[str, typer.Option(help="Title of the collaboration.")],
    collaboration_id: Annotated[
        str, typer.Option("--id", help="Short identifier, e.g. 'readmissions-2027'.")
    ],
    valid_from: Annotated[
        str | None, typer.Option(help="Start of validity, UTC, e.g. 2027-01-01T00:00:00Z.")
    ] = None,
    valid_until: Annotated[str | None, typer.Option(help="End of validity, UTC.")] = None,
    valid_days: Annotated[
        int, typer.Option(help="Validity in days from --valid-from when --valid-until is absent.")
    ] = 365,
) -> None:
    """Start a new contract draft (version 1, no parties yet)."""
    start = (
        datetime.now(UTC).replace(microsecond=0)
        if valid_from is None
        else parse_time(valid_from, "--valid-from")
    )
    try:
        end = (
            start + timedelta(days=valid_days)
            if valid_until is None
            else parse_time(valid_until, "--valid-until")
        )
    except OverflowError:
        raise ConfigurationError(
            f"--valid-days {valid_days} from {start:%Y-%m-%d} runs past the year 9999"
        ) from None
    if file.exists():
        raise ConfigurationError(f"{file} already exists; refusing to overwrite a contract")
    _save(file, contracts.new_contract(name, collaboration_id, not_before=start, not_after=end))


@app.command("add-party")
def add_party(
    file: ContractFile,
    card: Annotated[Path, typer.Option(help="The party's card.json (verified before adding).")],
    role: Annotated[
        list[str],
        typer.Option(help="Role, repeatable: " + ", ".join(r.value for r in Role) + "."),
    ],
    discard_signatures: Discard = False,
) -> None:
    """Add a party with its roles."""
    contract = contracts.load_contract(file)
    verified = party_store.read_card(card)
    _save(
        file, contracts.add_party(contract, verified, role, discard_signatures=discard_signatures)
    )


def _columns(specs: list[str]) -> list[tuple[str, str]]:
    cols = []
    for spec in specs:
        name, sep, kind = spec.rpartition(":")
        if not sep or not name:
            raise ConfigurationError(f"column {spec!r} must look like name:type")
        cols.append((name, kind))
    return cols


@app.command("add-dataset")
def add_dataset(
    file: ContractFile,
    dataset_id: Annotated[str, typer.Option("--id", help="Dataset identifier, e.g. 'visits'.")],
    owner: Annotated[str, typer.Option(help="Owning party: its name or party id.")],
    description: Annotated[str, typer.Option(help="What the dataset holds.")],
    format: Annotated[str, typer.Option(help="csv, parquet, jsonl, arrow or bytes.")] = "csv",
    column: Annotated[
        list[str] | None,
        typer.Option(help="Schema column name:type, repeatable (string, integer, float, ...)."),
    ] = None,
    discard_signatures: Discard = False,
) -> None:
    """Add a dataset that one data provider will contribute."""
    contract = contracts.load_contract(file)
    _save(
        file,
        contracts.add_dataset(
            contract,
            dataset_id=dataset_id,
            owner=owner,
            description=description,
            fmt=format,
            columns=_columns(column) if column else None,
            discard_signatures=discard_signatures,
        ),
    )


def _parameters(specs: list[str]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[1] not in PARAMETER_TYPES:
            raise ConfigurationError(
                f"parameter {spec!r} must look like name:type[:optional], type one of "
                + ", ".join(PARAMETER_TYPES)
            )
        params[parts[0]] = {
            "type": parts[1],
            "required": not (len(parts) == 3 and parts[2] == "optional"),
        }
    return params


@app.command("add-program")
def add_program(
    file: ContractFile,
    program_id: Annotated[str, typer.Option("--id", help="Program identifier.")],
    bundle: Annotated[
        Path, typer.Option(help="The program bundle directory; its digest is computed.")
    ],
    entry_point: Annotated[str, typer.Option(help="package.module:function inside the bundle.")],
    description: Annotated[str, typer.Option(help="What the program computes.")],
    input: Annotated[list[str], typer.Option(help="Input dataset id, repeatable.")],
    recipient: Annotated[
        list[str],
        typer.Option(
            help="Result recipient PARTY[:full|own], repeatable; own = only its own rows."
        ),
    ],
    min_group_size: Annotated[
        int, typer.Option(help="Suppress table cells built from fewer records than this.")
    ] = 10,
    parameter: Annotated[
        list[str] | None, typer.Option(help="Job parameter name:type[:optional], repeatable.")
    ] = None,
    discard_signatures: Discard = False,
) -> None:
    """Add a program: its bundle digest, inputs and output policy."""
    contract = contracts.load_contract(file)
    recipients = []
    for spec in recipient:
        ref, sep, view = spec.rpartition(":")
        if sep and view in ("full", "own"):
            recipients.append((ref, view))
        else:
            recipients.append((spec, "full"))
    _save(
        file,
        contracts.add_program(
            contract,
            program_id=program_id,
            bundle=bundle,
            entry_point=entry_point,
            description=description,
            inputs=input,
            recipients=recipients,
            min_group_size=min_group_size,
            parameters=_parameters(parameter or []),
            discard_signatures=discard_signatures,
        ),
    )


@app.command("set-policy")
def set_policy(
    file: ContractFile,
    accept_simulated: Annotated[
        list[str] | None,
        typer.Option(help="Accept the simulated TEE with this measurement (development only)."),
    ] = None,
    platform_file: Annotated[
        Path | None,
        typer.Option("--platform", help="JSON file with one platform's reference values."),
    ] = None,
    tcb_status: Annotated[
        list[str] | None, typer.Option(help="Accepted TCB status, repeatable (e.g. UpToDate).")
    ] = None,
    submitter: Annotated[
        list[str] | None, typer.Option(help="Party allowed to submit jobs, repeatable.")
    ] = None,
    require_cosign: Annotated[
        bool | None,
        typer.Option(
            "--require-cosign/--no-require-cosign", help="Every data provider co-signs each job."
        ),
    ] = None,
    max_runs: Annotated[int | None, typer.Option(help="Most jobs the contract allows.")] = None,
    destroy_keys: Annotated[
        str | None,
        typer.Option(help="When data keys are destroyed: " + ", ".join(RETENTION_RULES) + "."),
    ] = None,
    retention_runs: Annotated[int | None, typer.Option(help="With after-runs: how many.")] = None,
    retention_date: Annotated[str | None, typer.Option(help="With at-date: when (UTC).")] = None,
    init_data_algorithm: Annotated[
        str | None,
        typer.Option(
            help="Check the pods' Confidential Containers init-data (TDX MRCONFIGID, SEV-SNP "
            "HOSTDATA) on every tdx and sev-snp platform: the digest algorithm "
            f"({', '.join(INIT_DATA_ALGORITHMS)}) given to `nestor deploy init-data`."
        ),
    ] = None,
    agent_policy: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="With --init-data-algorithm: the Kata agent policy (Rego) the pods are launched "
            "with (default: Nestor's baseline, as `nestor deploy init-data` uses).",
        ),
    ] = None,
    no_agent_policy: Annotated[
        bool,
        typer.Option(help="With --init-data-algorithm: the pods' init-data holds no agent policy."),
    ] = False,
    no_init_data: Annotated[
        bool, typer.Option(help="Stop checking init-data (remove init_data from every platform).")
    ] = False,
    discard_signatures: Discard = False,
) -> None:
    """Set the enclave, job and retention policies."""
    contract = contracts.load_contract(file)
    init_data = _init_data_option(init_data_algorithm, agent_policy, no_agent_policy, no_init_data)
    platforms: list[dict[str, Any]] = []
    if accept_simulated:
        platforms.append({"platform": "simulated", "measurements": list(accept_simulated)})
    if platform_file is not None:
        try:
            loaded = canonical.decode(platform_file.read_bytes())
        except FileNotFoundError:
            raise ConfigurationError(f"platform file {platform_file} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read {platform_file}: {exc.strerror}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"{platform_file} must hold one JSON object")
        platforms.append(loaded)
    retention: dict[str, Any] | None = None
    if destroy_keys is not None:
        retention = {"destroy_keys": destroy_keys}
        if retention_runs is not None:
            retention["runs"] = retention_runs
        if retention_date is not None:
            retention["date"] = retention_date
    _save(
        file,
        contracts.set_policy(
            contract,
            platforms=platforms or None,
            tcb_statuses=tcb_status,
            submitters=submitter,
            require_cosign=require_cosign,
            max_runs=max_runs if max_runs is not None else "unchanged",
            retention=retention,
            init_data=init_data,
            discard_signatures=discard_signatures,
        ),
    )


def _init_data_option(
    algorithm: str | None, agent_policy: Path | None, no_agent_policy: bool, no_init_data: bool
) -> dict[str, Any] | Literal["unchanged"] | None:
    if no_init_data:
        if algorithm is not None or agent_policy is not None or no_agent_policy:
            raise ConfigurationError(
                "--no-init-data excludes --init-data-algorithm, --agent-policy and "
                "--no-agent-policy"
            )
        return None
    if algorithm is None:
        if agent_policy is not None or no_agent_policy:
            raise ConfigurationError(
                "--agent-policy and --no-agent-policy go with --init-data-algorithm",
                hint="e.g. --init-data-algorithm sha256 --agent-policy policy.rego",
            )
        return "unchanged"
    if agent_policy is not None and no_agent_policy:
        raise ConfigurationError("--agent-policy and --no-agent-policy exclude each other")
    if algorithm not in INIT_DATA_ALGORITHMS:
        raise ConfigurationError(
            f"unknown init-data algorithm {algorithm!r}",
            hint=f"use one of {', '.join(INIT_DATA_ALGORITHMS)}",
        )
    text: str | None = DEFAULT_AGENT_POLICY
    if no_agent_policy:
        text = None
    elif agent_policy is not None:
        try:
            text = agent_policy.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigurationError(f"agent policy file {agent_policy} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the agent policy {agent_policy}: {exc}"
            ) from None
    return contracts.init_data_spec(algorithm, text)


@app.command()
def show(
    file: ContractFile,
    at: Annotated[str | None, typer.Option(help="Judge validity at this UTC time.")] = None,
) -> None:
    """Render the contract for review: what a PI or a lawyer reads before signing."""
    contract = contracts.load_contract(file)
    out.print(render_contract(contract, now=_now(at)))


@app.command()
def sign(
    file: ContractFile,
    party: Annotated[Path, typer.Option("--party", help="Your party directory.")],
    passphrase_file: PassphraseFile = None,
    expect_digest: Annotated[
        str | None,
        typer.Option(help="Sign only if the contract digest is exactly this (from your review)."),
    ] = None,
) -> None:
    """Sign the contract's canonical bytes with your party key.

    Review it first with `nestor contract show`. Pass --expect-digest with the
    digest you reviewed, so you never sign a file that changed since.
    """
    contract = contracts.load_contract(file)
    if expect_digest is not None and expect_digest != contract.digest:
        raise ConfigurationError(
            f"the contract's digest is {contract.digest}, not the {expect_digest} you reviewed; "
            "nothing was signed"
        )
    me = party_store.load_party(party, passphrase=read_passphrase(passphrase_file))
    signed = contracts.sign(contract, me)
    contracts.save_contract(file, signed)
    err.print(f"{me.card.name} signed contract {contract.digest} (version {contract.version})")
    missing = [p.name for p in signed.parties if signed.envelope.signature_by(p.party_id) is None]
    if missing:
        err.print("still to sign: " + ", ".join(missing))


@app.command()
def verify(
    file: ContractFile,
    at: Annotated[str | None, typer.Option(help="Check at this UTC time instead of now.")] = None,
    bundle: Annotated[
        list[str] | None,
        typer.Option(help="PROGRAM_ID=DIR: check a program bundle against its digest; repeatable."),
    ] = None,
    previous: Annotated[
        Path | None, typer.Option(help="The version this one amends, to check the chain.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Exit 0 only if the contract is valid and signed by every party.

    Otherwise lists exactly which signatures are missing or invalid, and any
    other reason the contract is not in effect.
    """
    contract = contracts.load_contract(file)
    digests: dict[str, str] = {}
    for spec in bundle or []:
        pid, sep, directory = spec.partition("=")
        if not sep:
            raise ConfigurationError(f"--bundle {spec!r} must look like PROGRAM_ID=DIR")
        digests[pid] = bundle_digest(Path(directory))
    prev = contracts.load_contract(previous) if previous else None
    now = _now(at)
    try:
        verify_contract(contract, now=now, bundle_digests=digests, previous=prev)
    except NestorError as exc:
        if as_json:
            problems = getattr(exc, "problems", [exc.message])
            out.print(
                json.dumps(
                    {"in_effect": False, "digest": contract.digest, "problems": problems}, indent=2
                )
            )
        raise
    if as_json:
        out.print(
            json.dumps(
                {"in_effect": True, "digest": contract.digest, "version": contract.version},
                indent=2,
            )
        )
    else:
        out.print(
            f"contract {contract.name!r} version {contract.version} is in effect: signed by all "
            f"{len(contract.parties)} parties"
        )
        out.print(f"digest {contract.digest}")


@app.command()
def amend(
    file: ContractFile,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the new version.")],
) -> None:
    """Start the next version of a contract: it names this version's digest,
    starts with no signatures, and needs every party's signature again."""
    contract = contracts.load_contract(file)
    new = contracts.amend(contract)
    if out_file.exists():
        raise ConfigurationError(f"{out_file} already exists")
    _save(out_file, new)
