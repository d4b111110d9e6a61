"""Drafting, amending and signing contracts on a party's machine.

Every change goes through :func:`nestor.protocol.contract.contract_from_envelope`,
so a draft on disk is always structurally valid. A change to a contract that
already carries signatures would void them; it is refused unless the caller
asks to discard them.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from nestor.client.party import Party
from nestor.client.secure_files import atomic_output
from nestor.errors import ConfigurationError, ContractError, NestorError
from nestor.programs.bundle import bundle_digest
from nestor.protocol import canonical
from nestor.protocol.contract import (
    INIT_DATA_PLATFORMS,
    PAYLOAD_TYPE,
    Contract,
    Role,
    View,
    contract_from_envelope,
    format_time,
    parse_contract,
)
from nestor.protocol.envelope import Envelope, sign_envelope
from nestor.protocol.party_card import PartyCard


def load_contract(path: Path) -> Contract:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"contract file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read contract file {path}: {exc.strerror}") from None
    try:
        obj = canonical.decode(data)
    except NestorError as exc:
        raise ContractError(f"{path} is not a contract file: {exc.message}") from exc
    return parse_contract(obj)


def save_contract(path: Path, contract: Contract, *, overwrite: bool = True) -> None:
    text = json.dumps(contract.envelope.to_json(), indent=2, ensure_ascii=False) + "\n"
    with atomic_output(Path(path), overwrite=overwrite) as f:
        f.write(text.encode("utf-8"))


def new_contract(
    name: str, collaboration_id: str, *, not_before: datetime, not_after: datetime
) -> Contract:
    body: dict[str, Any] = {
        "name": name,
        "collaboration_id": collaboration_id,
        "version": 1,
        "previous": None,
        "validity": {"not_before": format_time(not_before), "not_after": format_time(not_after)},
        "parties": [],
        "datasets": [],
        "programs": [],
        "enclave_policy": {"platforms": [], "accepted_tcb_statuses": ["UpToDate"]},
        "job_policy": {"submitters": [], "require_cosign": False, "max_runs": None},
        "retention": {"destroy_keys": "after-each-job"},
    }
    return contract_from_envelope(Envelope(PAYLOAD_TYPE, body))


def _edit(contract: Contract, body: dict[str, Any], *, discard_signatures: bool) -> Contract:
    if contract.envelope.signatures and not discard_signatures:
        raise ConfigurationError(
            f"the contract already carries {len(contract.envelope.signatures)} signature(s); "
            "this change would void them",
            hint="pass --discard-signatures to edit the draft anyway, or use "
            "`nestor contract amend` to start a new version of a signed contract",
        )
    return contract_from_envelope(Envelope(PAYLOAD_TYPE, body))


def _body(contract: Contract) -> dict[str, Any]:
    return copy.deepcopy(contract.envelope.signed)


def resolve_party(contract: Contract, ref: str) -> str:
    """A party id from an id, a unique id prefix, or an exact name."""
    matches = [
        p.party_id
        for p in contract.parties
        if ref in (p.party_id, p.name) or (len(ref) >= 12 and p.party_id.startswith(ref))
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ContractError(
            f"{ref!r} is not a party of this contract",
            hint="parties: " + ", ".join(repr(p.name) for p in contract.parties),
        )
    raise ContractError(f"{ref!r} matches several parties; give the full party id")


def add_party(
    contract: Contract, card: PartyCard, roles: list[str], *, discard_signatures: bool = False
) -> Contract:
    body = _body(contract)
    body["parties"].append({"card": card.to_json(), "roles": roles})
    return _edit(contract, body, discard_signatures=discard_signatures)


def add_dataset(
    contract: Contract,
    *,
    dataset_id: str,
    owner: str,
    description: str,
    fmt: str,
    columns: list[tuple[str, str]] | None,
    discard_signatures: bool = False,
) -> Contract:
    body = _body(contract)
    body["datasets"].append(
        {
            "id": dataset_id,
            "owner": resolve_party(contract, owner),
            "description": description,
            "format": fmt,
            "schema": None
            if columns is None
            else {"columns": [{"name": n, "type": t} for n, t in columns]},
        }
    )
    return _edit(contract, body, discard_signatures=discard_signatures)


def add_program(
    contract: Contract,
    *,
    program_id: str,
    bundle: Path,
    entry_point: str,
    description: str,
    inputs: list[str],
    recipients: list[tuple[str, str]],
    min_group_size: int,
    parameters: dict[str, dict[str, Any]],
    discard_signatures: bool = False,
) -> Contract:
    body = _body(contract)
    body["programs"].append(
        {
            "id": program_id,
            "description": description,
            "digest": bundle_digest(bundle),
            "entry_point": entry_point,
            "parameters": parameters,
            "inputs": inputs,
            "outputs": {
                "recipients": [
                    {"party": resolve_party(contract, ref), "view": view}
                    for ref, view in recipients
                ],
                "min_group_size": min_group_size,
            },
        }
    )
    return _edit(contract, body, discard_signatures=discard_signatures)


def set_policy(
    contract: Contract,
    *,
    platforms: list[dict[str, Any]] | None = None,
    tcb_statuses: list[str] | None = None,
    submitters: list[str] | None = None,
    require_cosign: bool | None = None,
    max_runs: int | str | None = "unchanged",
    retention: dict[str, Any] | None = None,
    init_data: dict[str, Any] | Literal["unchanged"] | None = "unchanged",
    discard_signatures: bool = False,
) -> Contract:
    """Change the policies; ``None`` (``"unchanged"`` for ``max_runs`` and
    ``init_data``) leaves a part as it is.

    ``init_data`` (see :func:`init_data_spec`) is set on every TDX and
    SEV-SNP entry of the enclave policy, after ``platforms`` are merged in;
    ``None`` removes it from them.
    """
    body = _body(contract)
    if platforms is not None:
        existing = {p["platform"]: p for p in body["enclave_policy"]["platforms"]}
        for p in platforms:
            name = p.get("platform")
            existing[name if isinstance(name, str) else repr(name)] = copy.deepcopy(p)
        body["enclave_policy"]["platforms"] = list(existing.values())
    if init_data != "unchanged":
        targets = [
            p
            for p in body["enclave_policy"]["platforms"]
            if p.get("platform") in INIT_DATA_PLATFORMS
        ]
        if init_data is not None and not targets:
            raise ConfigurationError(
                "the enclave policy has no tdx or sev-snp platform to bind init-data to",
                hint="add the platform's reference values first (--platform FILE)",
            )
        for p in targets:
            if init_data is None:
                p.pop("init_data", None)
            else:
                p["init_data"] = copy.deepcopy(init_data)
    if tcb_statuses is not None:
        body["enclave_policy"]["accepted_tcb_statuses"] = tcb_statuses
    if submitters is not None:
        body["job_policy"]["submitters"] = [resolve_party(contract, s) for s in submitters]
    if require_cosign is not None:
        body["job_policy"]["require_cosign"] = require_cosign
    if max_runs != "unchanged":
        body["job_policy"]["max_runs"] = max_runs
    if retention is not None:
        body["retention"] = retention
    return _edit(contract, body, discard_signatures=discard_signatures)


def init_data_spec(algorithm: str, agent_policy: str | None) -> dict[str, Any]:
    """The contract's ``init_data`` object for pods launched with
    ``nestor deploy init-data --algorithm ALGORITHM`` and this agent policy
    text (``None``: no policy entry)."""
    if agent_policy is not None and not agent_policy.endswith("\n"):
        # As the init-data document itself does, so a file without its final
        # newline gives the same document either way.
        agent_policy += "\n"
    return {"algorithm": algorithm, "agent_policy": agent_policy}


def amend(contract: Contract) -> Contract:
    """Start the next version: it names this one's digest and has no signatures."""
    body = _body(contract)
    body["version"] = contract.version + 1
    body["previous"] = contract.digest
    return contract_from_envelope(Envelope(PAYLOAD_TYPE, body))


def sign(contract: Contract, party: Party) -> Contract:
    if contract.party(party.card.party_id) is None:
        raise ContractError(
            f"{party.card.name!r} ({party.card.party_id}) is not a party of this contract; "
            "only listed parties sign it"
        )
    return contract_from_envelope(sign_envelope(contract.envelope, party.signing_key))


__all__ = [
    "Role",
    "View",
    "add_dataset",
    "add_party",
    "add_program",
    "amend",
    "init_data_spec",
    "load_contract",
    "new_contract",
    "resolve_party",
    "save_contract",
    "set_policy",
    "sign",
]
