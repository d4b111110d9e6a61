"""`nestor enclave ...`: the enclave side (inside a TEE, or the simulated one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import err, out
from nestor.enclave.tee import select_producer
from nestor.errors import ConfigurationError

app = typer.Typer(help="Commands that run inside the enclave.", no_args_is_help=True)

Tee = Annotated[
    str,
    typer.Option(
        "--tee",
        help="Evidence source: auto (configfs-tsm, else Gramine, else simulated), "
        "sim, tsm (TDX/SEV-SNP guests) or gramine (SGX).",
    ),
]


@app.command()
def evidence(
    report_data: Annotated[str, typer.Option(help="64 bytes to bind, as 128 hex digits.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the evidence.")],
    tee: Tee = "auto",
) -> None:
    """Ask this machine's TEE for evidence over REPORT_DATA.

    Useful to check a TEE works before running an enclave, and to produce
    reference evidence. Verify the output with `nestor attest verify`.
    """
    try:
        data = bytes.fromhex(report_data)
    except ValueError:
        raise ConfigurationError("--report-data must be hex") from None
    producer = select_producer(tee)
    produced = producer.produce(data)
    out_file.write_bytes(produced.evidence)
    if produced.auxiliary:
        out_file.with_suffix(out_file.suffix + ".aux").write_bytes(produced.auxiliary)
    err.print(f"{producer.name}: {produced.platform.value} evidence written to {out_file}")
    out.print(produced.platform.value)
