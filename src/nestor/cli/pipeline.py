"""Party commands that talk to a host: upload, job, results, receipt, log."""

from __future__ import annotations

import typer

job_app = typer.Typer(help="Submit jobs and follow them.", no_args_is_help=True)
results_app = typer.Typer(help="Fetch and open your results.", no_args_is_help=True)
receipt_app = typer.Typer(help="Verify receipts offline.", no_args_is_help=True)
log_app = typer.Typer(help="Verify the enclave's audit log.", no_args_is_help=True)
