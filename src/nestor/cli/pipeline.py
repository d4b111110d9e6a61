"""Party commands that talk to a host: upload, job, results, receipt, log.

Every command that acts under a contract first checks that the contract is
in effect; every command narrates on stderr and prints its result on stdout.
The host's URL comes from --host or NESTOR_HOST.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.markup import escape

from nestor.attestation.result import Platform
from nestor.cli.console import byte_progress, err, out
from nestor.cli.party import PassphraseFile, read_passphrase
from nestor.client import contracts
from nestor.client import party as party_store
from nestor.client import pipeline as steps
from nestor.client.host_api import HostClient, HostNotFoundError, JobStatus, check_job_id
from nestor.client.party import Party
from nestor.client.secure_files import atomic_output
from nestor.crypto.dataset import ProgressCallback
from nestor.errors import ConfigurationError, NestorError
from nestor.protocol import canonical
from nestor.protocol.contract import Contract, VerifiedContract, parse_time, verify_contract
from nestor.protocol.envelope import Envelope
from nestor.protocol.messages import Announcement
from nestor.simtee.vendor import load_vendor_public_key

job_app = typer.Typer(help="Submit jobs and follow them.", no_args_is_help=True)
results_app = typer.Typer(help="Fetch and open your results.", no_args_is_help=True)
receipt_app = typer.Typer(help="Verify receipts offline.", no_args_is_help=True)
log_app = typer.Typer(help="Verify the enclave's audit log.", no_args_is_help=True)

HostUrl = Annotated[
    str,
    typer.Option(
        "--host",
        envvar="NESTOR_HOST",
        help="The host's base URL, e.g. http://127.0.0.1:8000 (or set NESTOR_HOST).",
    ),
]
ContractFile = Annotated[Path, typer.Option("--contract", help="The signed contract file.")]
PartyDir = Annotated[Path, typer.Option("--party", help="Your party directory.")]
JobId = Annotated[str, typer.Argument(help="The job id `nestor job submit` printed.")]
Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="A program parameter as NAME=VALUE (repeat it); typed by the program's "
        "declared parameter types.",
    ),
]


# -- shared steps ---------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _contract(path: Path, now: datetime) -> VerifiedContract:
    contract = contracts.load_contract(path)
    verified = verify_contract(contract, now=now)
    err.print(
        f"contract {escape(contract.name)!r} version {contract.version} is in effect "
        f"({contract.digest})"
    )
    return verified


def _party(directory: Path, passphrase_file: Path | None) -> Party:
    return party_store.load_party(directory, passphrase=read_passphrase(passphrase_file))


def _vendor_keys() -> list[Ed25519PublicKey]:
    keys: list[Ed25519PublicKey] = []
    # Without a simulated vendor on this installation, simulated evidence cannot verify.
    with contextlib.suppress(NestorError):
        keys.append(load_vendor_public_key())
    return keys


def _attest(
    client: HostClient, contract: VerifiedContract, now: datetime, party_dir: Path
) -> steps.VerifiedEnclave:
    err.print(f"verifying the enclave announced on {client.base_url} ...")
    enclave = steps.verify_enclave(client, contract, now=now, simulated_vendor_keys=_vendor_keys())
    result = enclave.result
    if result.platform is Platform.SIMULATED:
        err.print("[bold yellow]SIMULATED TEE: no hardware protection[/bold yellow]")
    err.print(f"enclave {enclave.keyid} attested ({result.platform.value}):")
    for line in enclave.decision.checked:
        err.print(f"  ok  {escape(line)}")
    steps.save_enclave_record(party_dir, enclave)
    return enclave


def _phases(enabled: bool) -> steps.PhaseProgress:
    def phase(description: str, total: int) -> contextlib.AbstractContextManager[ProgressCallback]:
        return byte_progress(description, total, enabled=enabled)

    return phase


@contextlib.contextmanager
def _client(url: str) -> Iterator[HostClient]:
    with HostClient(url) as client:
        yield client


# -- upload ---------------------------------------------------------------------------------


def upload(
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset id in the contract.")],
    contract: ContractFile,
    party: PartyDir,
    host: HostUrl,
    file: Annotated[
        Path | None,
        typer.Argument(help="The plaintext dataset file (not with --regrant)."),
    ] = None,
    regrant: Annotated[
        bool,
        typer.Option(
            "--regrant",
            help="Grant the kept key of an uploaded dataset to the current (restarted) "
            "enclave; uploads nothing.",
        ),
    ] = False,
    keep_key: Annotated[
        bool,
        typer.Option(
            help="Keep the data key in PARTY/keys (0600) so it can be re-granted after an "
            "enclave restart."
        ),
    ] = True,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Where the ciphertext is staged before upload (default: temp dir)."),
    ] = None,
    passphrase_file: PassphraseFile = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal.")] = True,
) -> None:
    """Encrypt a dataset, upload the ciphertext, grant its key to the attested enclave.

    Checks the contract is in effect and that you own the dataset, verifies
    the enclave's evidence against the contract's enclave policy, then
    encrypts under a fresh data key, uploads only ciphertext, and posts a key
    grant sealed to that enclave alone. Prints the commitment, the blob name
    and the grant id.

    After an enclave restart: nestor upload --regrant --dataset ID ...

    Example: nestor upload visits.csv --dataset visits --contract c.json --party alice
    """
    if regrant == (file is not None):
        raise ConfigurationError(
            "give a FILE to upload, or --regrant to grant a kept key again (not both)",
            hint="nestor upload FILE --dataset ID ..., or nestor upload --regrant --dataset ID ...",
        )
    now = _now()
    verified = _contract(contract, now)
    me = _party(party, passphrase_file)
    steps.check_owner(verified.contract, me, dataset)
    if regrant:
        steps.read_dataset_record(party, dataset)  # fail before any network if nothing is kept
    with _client(host) as client:
        enclave = _attest(client, verified, now, party)
        if regrant:
            receipt = steps.regrant(
                client, me, verified, dataset, now=now, enclave=enclave, party_dir=party
            )
            err.print(f"key of dataset {dataset!r} granted to enclave {enclave.keyid}")
        else:
            assert file is not None
            receipt = steps.upload_dataset(
                client,
                me,
                verified,
                dataset,
                file,
                now=now,
                enclave=enclave,
                work_dir=work_dir or Path(tempfile.gettempdir()),
                progress=_phases(progress),
                party_dir=party if keep_key else None,
            )
            err.print(
                f"dataset {dataset!r} uploaded as blob {receipt.blob}; key granted to enclave "
                f"{enclave.keyid}"
            )
            if keep_key:
                err.print(f"data key kept in {steps.key_path(party, dataset)} (0600)")
    out.print(f"commitment {receipt.commitment}")
    out.print(f"blob       {receipt.blob}")
    out.print(f"grant      {receipt.grant}")


# -- jobs -------------------------------------------------------------------------------------


def _read_request(path: Path) -> Envelope:
    try:
        obj = canonical.decode(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"job request file {path} does not exist") from None
    except NestorError as exc:
        raise ConfigurationError(f"{path} is not a job request file: {exc.message}") from exc
    return steps.read_job_request(obj)


def _write_request(path: Path, request: Envelope) -> None:
    text = json.dumps(request.to_json(), indent=2, ensure_ascii=False) + "\n"
    with atomic_output(path, overwrite=True) as f:
        f.write(text.encode("utf-8"))


def _show_request(request: Envelope, contract: Contract) -> None:
    s = request.signed
    err.print(f"job {escape(str(s.get('job_id')))}: program {escape(str(s.get('program')))!r}")
    err.print(f"  parameters   {escape(json.dumps(s.get('parameters'), ensure_ascii=False))}")
    err.print(f"  inputs       {escape(', '.join(map(str, s.get('inputs') or [])))}")
    err.print(f"  submitted at {escape(str(s.get('submitted_at')))}")
    names = [
        p.name if (p := contract.party(sig.keyid)) else sig.keyid for sig in request.signatures
    ]
    err.print(f"  signed by    {escape(', '.join(names))}")


@job_app.command("draft")
def job_draft(
    program: Annotated[str, typer.Option("--program", help="The program id in the contract.")],
    contract: ContractFile,
    party: PartyDir,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the job request.")],
    param: Params = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Sign a job request without submitting it, to collect co-signatures.

    For contracts whose job policy requires every data provider to co-sign:
    send the file to each provider (`nestor job cosign REQ.json`), then
    submit it with `nestor job submit --request REQ.json`. Prints the job id.
    """
    now = _now()
    verified = _contract(contract, now)
    me = _party(party, passphrase_file)
    prog = verified.contract.program(program)
    if prog is None:
        raise ConfigurationError(f"the contract lists no program {program!r}")
    request = steps.draft_job(
        me, verified, program, steps.parse_parameters(prog, param or []), now=now
    )
    _write_request(out_file, request)
    _show_request(request, verified.contract)
    err.print(f"job request written to {out_file}; collect the co-signatures, then submit it")
    out.print(request.signed["job_id"])


@job_app.command("cosign")
def job_cosign(
    request_file: Annotated[Path, typer.Argument(help="The job request file.")],
    contract: ContractFile,
    party: PartyDir,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of updating the file.")
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Review a job request that reads your data and co-sign it.

    Checks it is for this contract, runs one of its programs on that
    program's inputs with valid parameters, reads one of your datasets and
    is signed by an allowed submitter; shows it; adds your signature.
    """
    now = _now()
    verified = _contract(contract, now)
    me = _party(party, passphrase_file)
    request = _read_request(request_file)
    signed = steps.cosign_job(request.to_json(), me, verified)
    _show_request(signed, verified.contract)
    target = out_file or request_file
    _write_request(target, signed)
    err.print(f"co-signed as {escape(me.card.name)!r}; written to {target}")
    out.print(signed.signed["job_id"])


@job_app.command("submit")
def job_submit(
    contract: ContractFile,
    party: PartyDir,
    host: HostUrl,
    program: Annotated[
        str | None, typer.Option("--program", help="The program id in the contract.")
    ] = None,
    param: Params = None,
    request_file: Annotated[
        Path | None,
        typer.Option("--request", help="Submit this (co-signed) job request file instead."),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Sign and queue a job; prints its job id.

    Example: nestor job submit --program pooled-stats --param min_age=18 \\
    --contract c.json --party alice --host http://127.0.0.1:8000
    """
    if (program is None) == (request_file is None):
        raise ConfigurationError(
            "give --program (and --param) to submit a new job, or --request FILE",
        )
    now = _now()
    verified = _contract(contract, now)
    if request_file is not None:
        if param:
            raise ConfigurationError("--param goes with --program, not with --request")
        request = _read_request(request_file)
    else:
        assert program is not None
        me = _party(party, passphrase_file)
        prog = verified.contract.program(program)
        if prog is None:
            raise ConfigurationError(
                f"the contract lists no program {program!r}",
                hint="programs: " + (", ".join(p.id for p in verified.contract.programs) or "none"),
            )
        request = steps.draft_job(
            me, verified, program, steps.parse_parameters(prog, param or []), now=now
        )
    _show_request(request, verified.contract)
    with _client(host) as client:
        job_id = steps.submit_signed_job(client, verified, request)
    err.print(f"job queued on {host}; follow it with: nestor job wait {job_id}")
    out.print(job_id)


def _print_status(status: JobStatus, *, as_json: bool = False) -> None:
    if as_json:
        body = {"job_id": status.job_id, "status": status.status, "error": status.error}
        out.print(json.dumps(body, indent=2), markup=False)
        return
    out.print(status.status)
    if status.error:
        err.print(f"error: {escape(status.error)}")


@job_app.command("status")
def job_status(
    job_id: JobId,
    host: HostUrl,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a job's status: queued, running, done or failed (as the host says)."""
    check_job_id(job_id)
    with _client(host) as client:
        status = client.job_status(job_id)
    _print_status(status, as_json=as_json)


@job_app.command("wait")
def job_wait(
    job_id: JobId,
    host: HostUrl,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
) -> None:
    """Wait until a job is done; exit 1 with the job's error if it failed."""
    check_job_id(job_id)

    def changed(status: JobStatus) -> None:
        err.print(f"job {job_id}: {status.status}")

    with _client(host) as client:
        status = steps.wait_job(client, job_id, timeout=timeout, on_change=changed)
    out.print(status.status)


# -- results ------------------------------------------------------------------------------------


def _enclave_for_job(
    client: HostClient, contract: VerifiedContract, party_dir: Path, job_id: str, now: datetime
) -> steps.EnclaveRef:
    """The enclave that signed the job's receipt: a remembered one if this
    party verified it before, else the current one, verified now."""
    records = steps.enclave_records(party_dir, contract.contract)
    with contextlib.suppress(HostNotFoundError):
        receipt = client.get_receipt(job_id)
        signatures = receipt.get("signatures")
        for sig in signatures if isinstance(signatures, list) else []:
            keyid = sig.get("keyid") if isinstance(sig, dict) else None
            if isinstance(keyid, str) and keyid in records:
                err.print(f"the job ran on enclave {keyid}, which you verified before")
                return records[keyid]
    return _attest(client, contract, now, party_dir)


@results_app.command("fetch")
def results_fetch(
    job_id: JobId,
    contract: ContractFile,
    party: PartyDir,
    host: HostUrl,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the outputs.")],
    force: Annotated[bool, typer.Option(help="Replace files that exist in --out.")] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Fetch your result of a finished job, verify it and its receipt, open it.

    Verifies the job request, the enclave-signed receipt (program, inputs'
    commitments, output digests) and the sealed result (enclave signature,
    encryption bound to the job and to you). Only then writes the outputs
    (0600) to --out, with receipt.json and announcement.json for offline
    checks (`nestor receipt verify`). Prints one path per line.
    """
    check_job_id(job_id)
    now = _now()
    verified = _contract(contract, now)
    me = _party(party, passphrase_file)
    with _client(host) as client:
        enclave = _enclave_for_job(client, verified, party, job_id, now)
        paths = steps.fetch_results(
            client,
            me,
            verified,
            job_id,
            enclave=enclave,
            out_dir=out_dir,
            known_commitments=steps.known_commitments(party, verified.contract, me),
            overwrite=force,
            log_state=party / steps.LOG_STATE_FILE,
        )
    err.print(f"result of job {job_id} verified and opened; receipt verified")
    for path in paths.values():
        out.print(str(path))
    out.print(str(out_dir / steps.RECEIPT_FILE))


# -- receipts -----------------------------------------------------------------------------------


def _load_json(path: Path, what: str) -> Any:
    try:
        return canonical.decode(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file {path} does not exist") from None
    except NestorError as exc:
        raise ConfigurationError(f"{path} is not a {what} file: {exc.message}") from exc


@receipt_app.command("verify")
def receipt_verify(
    receipt_file: Annotated[Path, typer.Argument(help="The receipt (receipt.json).")],
    contract: ContractFile,
    announcement: Annotated[
        Path,
        typer.Option(
            "--announcement", help="The enclave's announcement (announcement.json beside it)."
        ),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            help="Check the contract and evidence at this UTC time (default: when the job "
            "finished, from the receipt)."
        ),
    ] = None,
    attest: Annotated[
        bool,
        typer.Option(help="Also verify and appraise the enclave's evidence."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt statement.")] = False,
) -> None:
    """Verify a receipt offline: no host, no keys, only the contract and the
    enclave's announcement.

    Checks the receipt is signed by the announced enclave key and names its
    evidence, the contract was in effect, the program is the contract's, and
    (unless --no-attest) the evidence verifies and satisfies the contract's
    enclave policy. Exit 0 only if everything holds.
    """
    c = contracts.load_contract(contract)
    checked = steps.verify_receipt_offline(
        _load_json(receipt_file, "receipt"),
        contract=c,
        announcement=_load_json(announcement, "announcement"),
        at=None if at is None else parse_time(at, "--at"),
        attest=attest,
        simulated_vendor_keys=_vendor_keys(),
    )
    r = checked.receipt
    if as_json:
        out.print(json.dumps(r.statement, indent=2, ensure_ascii=False), markup=False)
        return
    pred = r.statement["predicate"]
    if checked.enclave is not None and checked.enclave.result.platform is Platform.SIMULATED:
        err.print("[bold yellow]SIMULATED TEE: no hardware protection[/bold yellow]")
    out.print("receipt verified", markup=False)
    when = checked.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.print(f"contract      {c.digest} (in effect at {when})", markup=False)
    out.print(f"job           {pred.get('job_id')} ({r.job_request})", markup=False)
    out.print(f"program       {pred['program']['id']} {r.program_digest}", markup=False)
    for ds, commitment in sorted(r.input_commitments.items()):
        out.print(f"input         {ds} {commitment}", markup=False)
    for o in r.outputs:
        recipient = c.party(str(o.get("recipient")))
        to = recipient.name if recipient is not None else str(o.get("recipient"))
        out.print(f"output        {o.get('name')} {o.get('digest')} to {to}", markup=False)
    out.print(f"enclave       {checked.announcement.keyid}", markup=False)
    out.print(f"audit log     entry {r.log_index}, head {r.log_head}", markup=False)
    if checked.enclave is None:
        err.print("evidence not checked (--no-attest)")
    else:
        out.print(
            f"attestation   {checked.enclave.result.platform.value} evidence accepted at {when}",
            markup=False,
        )


# -- audit log ----------------------------------------------------------------------------------


@log_app.command("verify")
def log_verify(
    contract: ContractFile,
    party: PartyDir,
    host: HostUrl,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Verify the enclave's hash-chained, signed audit log against the last
    head you saw (kept in PARTY/log-heads.json), then remember the new head.

    A log shorter than what you saw (truncated) or with another entry at a
    position you saw (forked) fails. Logs of earlier enclaves of this
    contract that you verified before are checked too.
    """
    now = _now()
    verified = _contract(contract, now)
    me = _party(party, passphrase_file)
    state = party / steps.LOG_STATE_FILE
    with _client(host) as client:
        enclave = _attest(client, verified, now, party)
        checked: list[tuple[str, int, str]] = []
        head = steps.verify_audit_log(client, me, enclave, state_file=state)
        checked.append((enclave.keyid, head.index, head.digest))
        remembered = steps.read_log_heads(state, me)
        earlier: dict[str, Announcement] = steps.enclave_records(party, verified.contract)
        for keyid, ann in sorted(earlier.items()):
            if keyid == enclave.keyid or keyid not in remembered:
                continue
            old = steps.verify_audit_log(client, me, ann, state_file=state)
            checked.append((keyid, old.index, old.digest))
    for keyid, index, digest in checked:
        err.print(f"audit log of enclave {keyid}: {index + 1} entries, chain and signatures ok")
        out.print(f"{keyid} {index} {digest}")


__all__ = [
    "job_app",
    "log_app",
    "receipt_app",
    "results_app",
    "upload",
]
