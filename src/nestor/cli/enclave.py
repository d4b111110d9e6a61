"""`nestor enclave ...`: the enclave side (inside a TEE, or the simulated one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import err, out
from nestor.enclave.tee import select_producer
from nestor.errors import ConfigurationError
from nestor.protocol import canonical
from nestor.protocol.contract import parse_contract

app = typer.Typer(help="Commands that run inside the enclave.", no_args_is_help=True)

Tee = Annotated[
    str,
    typer.Option(
        "--tee",
        help="Evidence source: auto (configfs-tsm, else Gramine, else simulated), "
        "sim, tsm (TDX/SEV-SNP guests) or gramine (SGX).",
    ),
]


def default_programs_dir() -> Path:
    import os

    explicit = os.environ.get("NESTOR_PROGRAMS_DIR")
    if explicit:
        return Path(explicit)
    beside = Path(__file__).resolve().parents[3] / "examples"
    return beside if beside.is_dir() else Path("examples")


@app.command()
def run(
    host: Annotated[str, typer.Option(help="The host's URL; the enclave only calls out to it.")],
    contract: Annotated[Path, typer.Option(help="The signed contract this enclave serves.")],
    programs: Annotated[
        Path | None,
        typer.Option(
            help="Directory of program bundles, one sub-directory per program id "
            "(default: $NESTOR_PROGRAMS_DIR, else the examples/ beside this source tree)."
        ),
    ] = None,
    tee: Tee = "sim",
    poll_interval: Annotated[float, typer.Option(help="Seconds between queue polls.")] = 0.2,
    time_limit: Annotated[int, typer.Option(help="Wall-clock seconds per program run.")] = 600,
    memory_limit_mb: Annotated[int, typer.Option(help="Address-space limit per program.")] = 8192,
    huge_pages: Annotated[
        bool,
        typer.Option(
            help="Let programs use transparent huge pages as the kernel's policy says "
            "(the default); --no-huge-pages gives them 4 KiB pages only. On a VM that "
            "hands freed memory back to its hypervisor either can be 1.5-2x faster: "
            "measure with bench/bench_pipeline.py (docs/programs.md, 'Memory pages')."
        ),
    ] = True,
) -> None:
    """Run the enclave: check the contract, attest, announce, then serve jobs.

    Fresh keys are made at every start and live only in this process's
    memory; after a restart the parties verify the new evidence and grant
    their keys again.
    """
    import logging
    import signal

    from nestor.enclave.host_link import HostLink
    from nestor.enclave.runner import make_runner
    from nestor.enclave.service import EnclaveService

    logging.basicConfig(level=logging.INFO, format="enclave: %(message)s")
    # httpx logs every request at INFO: two lines per queue poll, five polls a second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    service = EnclaveService(
        host=HostLink(host),
        contract=parse_contract(canonical.decode(contract.read_bytes())),
        producer=select_producer(tee),
        programs_dir=programs or default_programs_dir(),
        runner=make_runner(
            time_limit=time_limit, memory_limit_mb=memory_limit_mb, huge_pages=huge_pages
        ),
    )
    service.start()
    out.print(f"enclave {service.keys.keyid} serving contract {service.contract.digest}")
    service.run_forever(poll_interval=poll_interval, stop=lambda: stopping)


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
