"""`nestor attest verify` and `nestor measure`."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from nestor.attestation.appraisal import appraise
from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.verify import verify_evidence
from nestor.cli.console import err, out
from nestor.client import contracts
from nestor.errors import AppraisalError, ConfigurationError, NestorError
from nestor.protocol.contract import parse_time
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import (
    config_dir,
    load_or_create_vendor_key,
    load_vendor_public_key,
    vendor_dir,
)

app = typer.Typer(
    help="Verify TEE evidence (SGX, TDX, SEV-SNP, Nitro, Azure vTPM, simulated) and "
    "appraise it against a contract.",
    no_args_is_help=True,
)


def _hex(value: str | None, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigurationError(f"{what} must be hex") from None


@app.command()
def verify(
    evidence: Annotated[Path, typer.Argument(help="Evidence file: quote, report or document.")],
    platform: Annotated[
        str | None,
        typer.Option(
            help="simulated, sgx, tdx, sev-snp, nitro or azure-snp-vtpm (default: detect)."
        ),
    ] = None,
    collateral: Annotated[
        Path | None,
        typer.Option(help="SGX/TDX: DCAP collateral JSON. SEV-SNP: the VCEK/VLEK certificate."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Verification time, UTC (e.g. 2025-07-01T00:00:00Z). Default: now."),
    ] = None,
    contract: Annotated[
        Path | None, typer.Option(help="Appraise against this contract's enclave policy.")
    ] = None,
    report_data: Annotated[
        str | None, typer.Option(help="Expected report data (hex) for the binding check.")
    ] = None,
    nonce: Annotated[str | None, typer.Option(help="Azure vTPM: the expected nonce (hex).")] = None,
    pccs_url: Annotated[
        str | None,
        typer.Option(
            help="SGX/TDX without --collateral: fetch it from this PCCS or Intel PCS URL."
        ),
    ] = None,
    collateral_cache: Annotated[
        Path | None, typer.Option(help="Cache directory for fetched collateral.")
    ] = None,
    offline: Annotated[bool, typer.Option(help="Use only cached collateral; never fetch.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify evidence against the vendor's pinned roots and collateral at a
    fixed time; with --contract, also appraise it and print the decision.

    Collateral and certificates expire: pass --at to check old evidence.
    Exit 0 only if the evidence verifies (and, with --contract, is accepted).
    """
    try:
        plat = Platform(platform) if platform else None
    except ValueError:
        raise ConfigurationError(f"unknown platform {platform!r}") from None
    now = datetime.now(UTC) if at is None else parse_time(at, "--at")
    if not evidence.is_file():
        raise ConfigurationError(f"evidence file {evidence} does not exist")
    vendor_keys = []
    # Without a simulated vendor on this installation, simulated evidence cannot verify.
    with contextlib.suppress(NestorError):
        vendor_keys.append(load_vendor_public_key())
    raw = evidence.read_bytes()
    collateral_bytes = collateral.read_bytes() if collateral else None
    if collateral_bytes is None and (pccs_url or offline):
        from nestor.attestation import intel

        collateral_bytes = intel.get_collateral(
            raw,
            pccs_url=pccs_url or intel.INTEL_PCS_URL,
            cache_dir=collateral_cache or config_dir() / "collateral-cache",
            offline=offline,
        )
    result = verify_evidence(
        raw,
        now=now,
        platform=plat,
        collateral=collateral_bytes,
        nonce=_hex(nonce, "--nonce"),
        simulated_vendor_keys=vendor_keys,
    )
    decision = None
    if contract is not None:
        loaded = contracts.load_contract(contract)
        decision = appraise(
            result,
            loaded.enclave_policy,
            expected_report_data=_hex(report_data, "--report-data"),
            contract_digest=loaded.digest,
        )
    if as_json:
        body = {"result": result.to_json()}
        if decision is not None:
            body["decision"] = {
                "accepted": decision.accepted,
                "reasons": list(decision.reasons),
                "checked": list(decision.checked),
            }
        out.print(json.dumps(body, indent=2))
    else:
        _print_result(result)
        if decision is not None:
            out.print("decision: " + ("ACCEPTED" if decision.accepted else "REJECTED"))
            for line in decision.checked:
                out.print(f"  ok   {line}")
            for line in decision.reasons:
                out.print(f"  FAIL {line}")
    if decision is not None and not decision.accepted:
        raise AppraisalError(
            "the evidence verifies but does not satisfy the contract's enclave policy",
            reasons=list(decision.reasons),
        )


def _print_result(result: AttestationResult) -> None:
    if result.platform is Platform.SIMULATED:
        err.print("[bold yellow]SIMULATED TEE: no hardware protection[/bold yellow]")
    out.print(f"platform      {result.platform.value}")
    out.print("verified      signature and chain valid at " + result.verified_at.isoformat())
    for k, v in result.measurements.items():
        out.print(f"{k:<13} {v}")
    for k, n in result.numbers.items():
        out.print(f"{k:<13} {n}")
    out.print(f"tcb status    {result.tcb_status or '-'}")
    if result.advisory_ids:
        out.print("advisories    " + ", ".join(result.advisory_ids))
    out.print(f"debug         {result.debug}")
    out.print(f"report data   {result.report_data.hex()}")
    for i, c in enumerate(result.chain):
        out.print(("chain         " if i == 0 else "              ") + c)


def measure(
    show_vendor: Annotated[
        bool, typer.Option(help="Also print where the simulated vendor root lives.")
    ] = False,
) -> None:
    """Print the simulated enclave's reference value (its measurement).

    It is a reproducible digest of the enclave's code: put it in the
    contract with `nestor contract set-policy --accept-simulated VALUE`.
    """
    out.print(measure_enclave())
    if show_vendor:
        load_or_create_vendor_key()
        err.print(f"simulated vendor root: {vendor_dir()}")
