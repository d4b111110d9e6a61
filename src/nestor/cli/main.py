"""The `nestor` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from nestor import __version__
from nestor.cli import attest, contract, data, demo, deploy, enclave, host, party, pipeline
from nestor.cli.console import err
from nestor.errors import NestorError

app = typer.Typer(
    name="nestor",
    help=(
        "Confidential, collaborative data analysis on untrusted clouds.\n\n"
        "Parties that may not share raw data agree on a signed contract, check a "
        "Trusted Execution Environment by remote attestation, upload only encrypted "
        "data, and release their keys only to the attested enclave.\n\n"
        "Start here: `nestor demo` runs a whole collaboration on this machine. "
        "Your own first steps: `nestor party init DIR --name NAME`, then "
        "`nestor encrypt DATA OUT --key-out KEY`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(party.app, name="party")
app.add_typer(contract.app, name="contract")
app.add_typer(attest.app, name="attest")
app.add_typer(enclave.app, name="enclave")
app.add_typer(host.app, name="host")
app.add_typer(deploy.app, name="deploy")
app.add_typer(pipeline.job_app, name="job")
app.add_typer(pipeline.results_app, name="results")
app.add_typer(pipeline.receipt_app, name="receipt")
app.add_typer(pipeline.log_app, name="log")
app.command(rich_help_panel="Attestation")(attest.measure)
app.command(rich_help_panel="Datasets")(data.encrypt)
app.command(rich_help_panel="Datasets")(data.decrypt)
app.command(rich_help_panel="Datasets")(data.inspect)
app.command(rich_help_panel="Pipeline")(pipeline.upload)
app.command(rich_help_panel="Try it")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nestor {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Confidential, collaborative data analysis on untrusted clouds."""


def run() -> None:
    """Console entry point: errors become one readable message and an exit code."""
    try:
        app()
    except NestorError as exc:
        err.print(f"[bold red]error:[/bold red] {escape(exc.diagnostics())}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run()
