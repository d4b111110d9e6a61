"""`nestor host ...`: the untrusted host service."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Run the untrusted host: HTTP API, store, queue, dispatcher.", no_args_is_help=True
)
