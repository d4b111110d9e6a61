"""`nestor party ...`: create and exchange party identities."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from nestor.cli.console import err, out
from nestor.client import party as party_store
from nestor.errors import ConfigurationError
from nestor.protocol.party_card import PartyCard

app = typer.Typer(
    help="Create your party identity, show your party card, import others' cards.",
    no_args_is_help=True,
)

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the key passphrase from this file (first line). "
        "NESTOR_PASSPHRASE in the environment works too.",
    ),
]


def read_passphrase(path: Path | None, *, ask: bool = False, confirm: bool = False) -> bytes | None:
    if path is not None:
        try:
            text = path.read_text().splitlines()[0] if path.read_text() else ""
        except FileNotFoundError:
            raise ConfigurationError(f"passphrase file {path} does not exist") from None
        if not text:
            raise ConfigurationError(f"passphrase file {path} is empty")
        return text.encode()
    env = os.environ.get("NESTOR_PASSPHRASE")
    if env:
        return env.encode()
    if ask:
        value: str = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
        return value.encode() or None
    return None


def _print_card(card: PartyCard) -> None:
    err.print(f"[bold]{card.name}[/bold]")
    err.print(f"  party id  {card.party_id}")
    err.print(f"  created   {card.created}")
    err.print("  hpke keys " + ", ".join(s.label for s in card.hpke_keys))


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="New directory for this party's keys.")],
    name: Annotated[str, typer.Option("--name", help="The party's name, e.g. 'St Mary Hospital'.")],
    passphrase_file: PassphraseFile = None,
    ask_passphrase: Annotated[
        bool, typer.Option("--ask-passphrase", help="Prompt for a passphrase.")
    ] = False,
) -> None:
    """Create a party identity: an Ed25519 signing key and HPKE keys.

    Private keys are written with mode 0600 (passphrase-encrypted if you give
    one); the public party card goes to DIR/card.json. Share the card; read
    your party id aloud to the other parties so they can check what they
    imported.
    """
    passphrase = read_passphrase(passphrase_file, ask=ask_passphrase, confirm=True)
    created = party_store.init_party(directory, name, passphrase=passphrase)
    err.print(f"created party identity in {directory}")
    _print_card(created.card)
    out.print(created.card.party_id)


@app.command()
def card(
    directory: Annotated[Path, typer.Argument(help="The party's directory.")],
) -> None:
    """Print your public party card (JSON) to share with the other parties."""
    loaded = party_store.read_card(Path(directory) / party_store.CARD_FILE)
    out.print(json.dumps(loaded.to_json(), indent=2, ensure_ascii=False))


@app.command("import")
def import_(
    card_file: Annotated[Path, typer.Argument(help="Another party's card.json.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Your party directory; the card is kept in DIR/peers.")
    ],
) -> None:
    """Verify another party's card and keep it.

    Checks the card's structure, that its party id is the fingerprint of its
    signing key, and its self-signature. Compare the printed party id with
    the one the party told you out of band.
    """
    imported = party_store.import_card(directory, card_file)
    err.print("card verified")
    _print_card(imported)
    out.print(imported.party_id)


@app.command()
def verify(
    card_file: Annotated[Path, typer.Argument(help="A party card file.")],
) -> None:
    """Verify a party card without keeping it; prints its party id."""
    verified = party_store.read_card(card_file)
    err.print("card verified")
    _print_card(verified)
    out.print(verified.party_id)
