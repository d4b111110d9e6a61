"""Drafting, amending, signing, saving and loading contracts on a party's machine."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nestor.client import contracts as drafting
from nestor.client.party import Party, init_party
from nestor.crypto import hpke, signing
from nestor.errors import ConfigurationError, ContractError
from nestor.programs.bundle import bundle_digest
from nestor.protocol.contract import Contract, verify_contract
from nestor.protocol.party_card import make_party_card

T0 = datetime(2027, 1, 1, tzinfo=UTC)
T1 = datetime(2028, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 3, 1, tzinfo=UTC)
CREATED = datetime(2026, 12, 1, tzinfo=UTC)
H64 = "ab" * 32


@dataclass(frozen=True)
class Parties:
    alice: Party
    bob: Party
    stranger: Party
    bundle: Path


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Parties:
    base = tmp_path_factory.mktemp("drafting")
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "stats.py").write_text("def run(inputs, params):\n    return {}\n")
    return Parties(
        init_party(base / "alice", "Alice", now=CREATED),
        init_party(base / "bob", "Bob", now=CREATED),
        init_party(base / "stranger", "Stranger", now=CREATED),
        bundle,
    )


def _draft(p: Parties) -> Contract:
    c = drafting.new_contract("Study", "study-1", not_before=T0, not_after=T1)
    c = drafting.add_party(c, p.alice.card, ["data-provider", "result-recipient", "job-submitter"])
    c = drafting.add_party(c, p.bob.card, ["data-provider"])
    c = drafting.add_dataset(
        c, dataset_id="visits", owner="Alice", description="Visits", fmt="csv", columns=None
    )
    c = drafting.add_program(
        c,
        program_id="count",
        bundle=p.bundle,
        entry_point="stats:run",
        description="Counts",
        inputs=["visits"],
        recipients=[("Alice", "full")],
        min_group_size=5,
        parameters={},
    )
    return drafting.set_policy(
        c, platforms=[{"platform": "simulated", "measurements": [H64]}], submitters=["Alice"]
    )


@pytest.fixture(scope="module")
def draft(parties: Parties) -> Contract:
    return _draft(parties)


@pytest.fixture(scope="module")
def signed(parties: Parties, draft: Contract) -> Contract:
    return drafting.sign(drafting.sign(draft, parties.alice), parties.bob)


def test_new_contract_is_an_empty_version_one(parties: Parties) -> None:
    c = drafting.new_contract("Study", "study-1", not_before=T0, not_after=T1)
    assert (c.version, c.previous, c.parties, c.envelope.signatures) == (1, None, (), ())
    assert (c.not_before, c.not_after) == (T0, T1)
    with pytest.raises(ContractError, match="not_after must be later"):
        drafting.new_contract("Study", "study-1", not_before=T1, not_after=T0)
    with pytest.raises(ContractError, match="collaboration_id must be"):
        drafting.new_contract("Study", "Study 1", not_before=T0, not_after=T1)


def test_drafted_contract_verifies_once_all_sign(
    parties: Parties, draft: Contract, signed: Contract
) -> None:
    prog = draft.program("count")
    assert prog is not None
    assert prog.digest == bundle_digest(parties.bundle)
    assert verify_contract(signed, now=NOW).contract is signed
    # signing again replaces the party's own signature
    again = drafting.sign(signed, parties.alice)
    assert len(again.envelope.signatures) == 2
    assert again.digest == signed.digest


EDITS: dict[str, Callable[[Contract, Parties, bool], Contract]] = {
    "add_party": lambda c, p, d: drafting.add_party(
        c, p.stranger.card, ["auditor"], discard_signatures=d
    ),
    "add_dataset": lambda c, p, d: drafting.add_dataset(
        c,
        dataset_id="claims",
        owner="Bob",
        description="Claims",
        fmt="jsonl",
        columns=[("id", "string")],
        discard_signatures=d,
    ),
    "add_program": lambda c, p, d: drafting.add_program(
        c,
        program_id="count2",
        bundle=p.bundle,
        entry_point="stats:run",
        description="Counts again",
        inputs=["visits"],
        recipients=[("Alice", "own")],
        min_group_size=3,
        parameters={"year": {"type": "integer", "required": True}},
        discard_signatures=d,
    ),
    "set_policy": lambda c, p, d: drafting.set_policy(c, max_runs=4, discard_signatures=d),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_editing_a_signed_contract_is_refused(
    parties: Parties, signed: Contract, edit: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        EDITS[edit](signed, parties, False)
    assert "already carries 2 signature(s); this change would void them" in info.value.message
    assert info.value.hint is not None
    assert "--discard-signatures" in info.value.hint
    changed = EDITS[edit](signed, parties, True)
    assert changed.envelope.signatures == ()
    assert changed.digest != signed.digest


def test_edits_leave_the_original_untouched(parties: Parties, draft: Contract) -> None:
    before = copy.deepcopy(draft.envelope.signed)
    for edit in EDITS.values():
        edit(draft, parties, False)
    drafting.amend(draft)
    assert draft.envelope.signed == before


def test_amend(parties: Parties, signed: Contract) -> None:
    v2 = drafting.amend(signed)
    assert v2.version == 2
    assert v2.previous == signed.digest
    assert v2.envelope.signatures == ()
    body, old = dict(v2.envelope.signed), dict(signed.envelope.signed)
    for k in ("version", "previous"):
        body.pop(k)
        old.pop(k)
    assert body == old
    # an amended draft can be edited before anyone signs it
    v2 = drafting.set_policy(v2, max_runs=3)
    assert v2.job_policy.max_runs == 3
    assert v2.previous == signed.digest
    v2 = drafting.sign(drafting.sign(v2, parties.alice), parties.bob)
    verify_contract(v2, now=NOW, previous=signed)
    v3 = drafting.amend(v2)
    assert (v3.version, v3.previous) == (3, v2.digest)


def test_sign_refuses_a_non_party(parties: Parties, draft: Contract) -> None:
    with pytest.raises(ContractError) as info:
        drafting.sign(draft, parties.stranger)
    assert info.value.message == (
        f"'Stranger' ({parties.stranger.card.party_id}) is not a party of this contract; "
        "only listed parties sign it"
    )


def test_save_load_round_trip(tmp_path: Path, signed: Contract) -> None:
    path = tmp_path / "contract.json"
    drafting.save_contract(path, signed)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert text.startswith('{\n  "payload_type"')
    loaded = drafting.load_contract(path)
    assert loaded.digest == signed.digest
    assert loaded.envelope.signatures == signed.envelope.signatures
    verify_contract(loaded, now=NOW)
    with pytest.raises(ConfigurationError, match="already exists"):
        drafting.save_contract(path, signed, overwrite=False)
    drafting.save_contract(path, drafting.amend(signed))
    assert drafting.load_contract(path).version == 2


def test_non_ascii_text_round_trips(tmp_path: Path, parties: Parties) -> None:
    c = drafting.new_contract("Étude réadmissions – 2027 ✓", "etude", not_before=T0, not_after=T1)
    path = tmp_path / "c.json"
    drafting.save_contract(path, c)
    assert "Étude réadmissions" in path.read_text(encoding="utf-8")
    assert drafting.load_contract(path).digest == c.digest


def test_load_errors(tmp_path: Path, signed: Contract) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        drafting.load_contract(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ContractError, match="is not a contract file"):
        drafting.load_contract(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"payload_type": "a", "payload_type": "b"}')
    with pytest.raises(ContractError, match="is not a contract file"):
        drafting.load_contract(dup)
    edited = tmp_path / "edited.json"
    obj = copy.deepcopy(signed.envelope.to_json())
    obj["signed"]["datasets"][0]["owner"] = "nobody"
    edited.write_text(json.dumps(obj))
    with pytest.raises(ContractError, match="which is not a party of this contract"):
        drafting.load_contract(edited)


def test_resolve_party(parties: Parties, draft: Contract) -> None:
    alice = parties.alice.card.party_id
    assert drafting.resolve_party(draft, "Alice") == alice
    assert drafting.resolve_party(draft, alice) == alice
    assert drafting.resolve_party(draft, alice[:12]) == alice
    assert drafting.resolve_party(draft, alice[:30]) == alice
    assert drafting.resolve_party(draft, "Bob") == parties.bob.card.party_id


@pytest.mark.parametrize("ref", ["Carol", "alice", "sha256:", "", "sha256:" + "0" * 64])
def test_resolve_unknown_party(parties: Parties, draft: Contract, ref: str) -> None:
    with pytest.raises(ContractError) as info:
        drafting.resolve_party(draft, ref)
    assert info.value.message == f"{ref!r} is not a party of this contract"
    assert info.value.hint == "parties: 'Alice', 'Bob'"


def test_short_prefix_is_not_accepted(parties: Parties, draft: Contract) -> None:
    with pytest.raises(ContractError, match="is not a party of this contract"):
        drafting.resolve_party(draft, parties.alice.card.party_id[:11])


def test_ambiguous_party_reference(parties: Parties, draft: Contract) -> None:
    """A party may be *named* like another party's id: then the reference is ambiguous."""
    alice = parties.alice.card.party_id
    sk = signing.generate_signing_key()
    impostor = make_party_card(
        alice,
        sk,
        {hpke.Suite.X25519_SHA256_AES256GCM: hpke.generate_private_key().public_key()},
        created=CREATED,
    )
    c = drafting.add_party(draft, impostor, ["auditor"])
    with pytest.raises(ContractError, match="matches several parties; give the full party id"):
        drafting.resolve_party(c, alice)
    assert drafting.resolve_party(c, impostor.party_id) == impostor.party_id


def test_drafting_resolves_references(parties: Parties, draft: Contract) -> None:
    with pytest.raises(ContractError, match="'Nobody' is not a party of this contract"):
        drafting.add_program(
            draft,
            program_id="p2",
            bundle=parties.bundle,
            entry_point="stats:run",
            description="d",
            inputs=["visits"],
            recipients=[("Nobody", "full")],
            min_group_size=1,
            parameters={},
        )
    with pytest.raises(ContractError, match="'Nobody' is not a party of this contract"):
        drafting.set_policy(draft, submitters=["Nobody"])
    with pytest.raises(ContractError, match="unknown role 'owner'"):
        drafting.add_party(draft, parties.stranger.card, ["owner"])


def test_set_policy(parties: Parties, draft: Contract) -> None:
    sgx = {"platform": "sgx", "mrenclave": [H64]}
    c = drafting.set_policy(draft, platforms=[sgx], tcb_statuses=["UpToDate", "SWHardeningNeeded"])
    assert [p.platform for p in c.enclave_policy.platforms] == ["simulated", "sgx"]
    assert c.enclave_policy.accepted_tcb_statuses == ("UpToDate", "SWHardeningNeeded")
    # a platform given again replaces its reference values
    other = {"platform": "simulated", "measurements": ["cd" * 32]}
    c = drafting.set_policy(c, platforms=[other])
    assert [dict(p.values) for p in c.enclave_policy.platforms] == [other, sgx]
    c = drafting.set_policy(c, max_runs=7, require_cosign=True)
    assert (c.job_policy.max_runs, c.job_policy.require_cosign) == (7, True)
    c = drafting.set_policy(c, retention={"destroy_keys": "at-expiry"})
    assert c.job_policy.max_runs == 7  # "unchanged" by default
    assert c.retention.destroy_keys == "at-expiry"
    c = drafting.set_policy(c, max_runs=None)
    assert c.job_policy.max_runs is None
    with pytest.raises(ContractError, match="max_runs must be an integer of at least 1"):
        drafting.set_policy(c, max_runs=0)
    with pytest.raises(ContractError, match=r"retention\.runs must be"):
        drafting.set_policy(c, retention={"destroy_keys": "after-runs"})


def test_set_policy_with_unhashable_platform_is_a_contract_error(draft: Contract) -> None:
    # contracts.py set_policy: `existing[p.get("platform")] = p` hashes the value.
    with pytest.raises(ContractError):
        drafting.set_policy(draft, platforms=[{"platform": ["sgx"]}])
