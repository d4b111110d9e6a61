"""`nestor contract ...` end to end, as real subprocesses: three parties build,
review, sign and verify a contract from the command line alone, and every
invalid case is refused with a specific message (never a traceback).

Verification always passes --at: nothing here depends on the wall clock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nestor.attestation.initdata import DEFAULT_AGENT_POLICY
from nestor.client.party import init_party, load_party
from nestor.protocol.envelope import Envelope, sign_envelope

NESTOR = Path(sys.executable).parent / "nestor"
AT = "2027-06-01T00:00:00Z"
H64 = "ab" * 32
ALICE, BOB, CAROL = "Alice Hospital", "Bob Clinic", "Carol Institute"
CONTRACT_TYPE = "application/vnd.nestor.contract+json;version=1"


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NESTOR_PASSPHRASE"}
    proc = subprocess.run(
        [str(NESTOR), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = run(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


def fails(*args: str | Path, cwd: Path, code: int | None = None) -> str:
    """Run a command that must fail; return its stderr (the error message)."""
    proc = run(*args, cwd=cwd)
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def problem_lines(stderr: str) -> list[str]:
    return [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Story:
    root: Path  # party directories, the bundle and every stage of the contract
    ids: dict[str, str]
    digest: str
    review: str  # `contract show` before signing
    signed_review: str  # `contract show` after everyone signed
    sign_messages: list[str]
    verify_stdout: str
    verify_json: dict[str, Any]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    root = tmp_path_factory.mktemp("cli-contract")
    ids = {
        name: ok("party", "init", d, "--name", name, cwd=root).stdout.strip()
        for d, name in (("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    }
    bundle = root / "bundle" / "readmit"
    bundle.mkdir(parents=True)
    (bundle / "__init__.py").write_text("")
    (bundle / "main.py").write_text("def run(inputs, params):\n    return {}\n")

    c = "contract.json"
    ok(
        "contract", "init", c, "--name", "Readmissions study", "--id", "readmissions-2027",
        "--valid-from", "2027-01-01T00:00:00Z", "--valid-until", "2028-01-01T00:00:00Z",
        cwd=root,
    )  # fmt: skip
    ok(
        "contract", "add-party", c, "--card", "alice/card.json",
        "--role", "data-provider", "--role", "result-recipient", "--role", "job-submitter",
        cwd=root,
    )  # fmt: skip
    ok(
        "contract", "add-party", c, "--card", "bob/card.json",
        "--role", "data-provider", "--role", "result-recipient",
        cwd=root,
    )  # fmt: skip
    ok("contract", "add-party", c, "--card", "carol/card.json", "--role", "auditor", cwd=root)
    ok(
        "contract", "add-dataset", c, "--id", "visits", "--owner", ALICE,
        "--description", "Hospital visits 2020-2026",
        "--column", "patient:string", "--column", "age:integer",
        cwd=root,
    )  # fmt: skip
    ok(
        "contract", "add-dataset", c, "--id", "claims", "--owner", ids[BOB][:20],
        "--description", "Insurance claims", "--format", "parquet",
        cwd=root,
    )  # fmt: skip
    ok(
        "contract", "add-program", c, "--id", "readmit", "--bundle", "bundle",
        "--entry-point", "readmit.main:run", "--description", "30-day readmission rates",
        "--input", "visits", "--input", "claims",
        "--recipient", ALICE, "--recipient", f"{BOB}:own", "--min-group-size", "10",
        "--parameter", "year:integer", "--parameter", "region:string:optional",
        cwd=root,
    )  # fmt: skip
    ok(
        "contract", "set-policy", c, "--accept-simulated", H64, "--tcb-status", "UpToDate",
        "--submitter", ALICE, "--require-cosign", "--max-runs", "10",
        "--destroy-keys", "after-runs", "--retention-runs", "5",
        cwd=root,
    )  # fmt: skip
    shutil.copy(root / c, root / "draft.json")

    review = ok("contract", "show", c, "--at", AT, cwd=root).stdout
    match = re.search(r"contract digest (sha256:[0-9a-f]{64})", review)
    assert match, review
    digest = match.group(1)

    messages = []
    for d in ("alice", "bob", "carol"):
        messages.append(
            ok("contract", "sign", c, "--party", d, "--expect-digest", digest, cwd=root).stderr
        )
        if d == "alice":
            shutil.copy(root / c, root / "one-signed.json")
    shutil.copy(root / c, root / "signed.json")
    signed_review = ok("contract", "show", "signed.json", "--at", AT, cwd=root).stdout
    verify_stdout = ok("contract", "verify", "signed.json", "--at", AT, cwd=root).stdout
    verify_json = json.loads(
        ok("contract", "verify", "signed.json", "--at", AT, "--json", cwd=root).stdout
    )
    return Story(root, ids, digest, review, signed_review, messages, verify_stdout, verify_json)


# -- the story: from the command line alone ---------------------------------------------------


def test_review_shows_what_parties_sign(story: Story) -> None:
    text = story.review
    for fragment in (
        "Readmissions study",
        "collaboration readmissions-2027, version 1",
        f"valid from 2027-01-01T00:00:00Z until 2028-01-01T00:00:00Z (valid at {AT})",
        ALICE,
        BOB,
        CAROL,
        "visits",
        "patient:string, age:integer",
        "claims",
        "Program readmit: 30-day readmission rates",
        "entry point   readmit.main:run",
        "reads         visits, claims",
        "year:integer, region:string (optional)",
        f"result to     {ALICE}: all results",
        f"result to     {BOB}: only the rows about its own data",
        "fewer than 10 records are suppressed",
        "simulated: ",
        "development only",
        f"submitters: {ALICE}",
        "every data provider co-signs each job: yes",
        "maximum runs: 10",
        "data keys destroyed after 5 runs",
        f"--expect-digest {story.digest}",
    ):
        assert fragment in text, fragment
    assert text.count("missing") == 3
    assert "signed" not in text.replace("Sign only", "").replace("co-signs", "")
    assert story.signed_review.count("signed") >= 3
    assert "missing" not in story.signed_review


def test_signing_reports_who_is_still_to_sign(story: Story) -> None:
    alice, bob, carol = story.sign_messages
    assert f"{ALICE} signed contract {story.digest} (version 1)" in alice
    assert f"still to sign: {BOB}, {CAROL}" in alice
    assert f"still to sign: {CAROL}" in bob
    assert "still to sign" not in carol
    signatures = read_json(story.root / "signed.json")["signatures"]
    assert [s["keyid"] for s in signatures] == [story.ids[n] for n in (ALICE, BOB, CAROL)]
    assert all(s["signed_digest"] == story.digest for s in signatures)


def test_verify_says_the_contract_is_in_effect(story: Story) -> None:
    assert story.verify_stdout.splitlines() == [
        "contract 'Readmissions study' version 1 is in effect: signed by all 3 parties",
        f"digest {story.digest}",
    ]
    assert story.verify_json == {"in_effect": True, "digest": story.digest, "version": 1}


def test_verify_with_matching_and_modified_bundle(story: Story, tmp_path: Path) -> None:
    ok(
        "contract",
        "verify",
        "signed.json",
        "--at",
        AT,
        "--bundle",
        "readmit=bundle",
        cwd=story.root,
    )
    changed = tmp_path / "bundle"
    shutil.copytree(story.root / "bundle", changed)
    (changed / "readmit" / "main.py").write_text("def run(inputs, params):\n    return 1\n")
    stderr = fails(
        "contract", "verify", story.root / "signed.json", "--at", AT,
        "--bundle", f"readmit={changed}",
        cwd=tmp_path, code=1,
    )  # fmt: skip
    (problem,) = problem_lines(stderr)
    assert problem.startswith("program 'readmit': the bundle's digest sha256:")
    assert "does not match the contract's sha256:" in problem


# -- verify lists exactly what is wrong ---------------------------------------------------------


def test_missing_signatures_are_listed(story: Story) -> None:
    stderr = fails("contract", "verify", "one-signed.json", "--at", AT, cwd=story.root, code=1)
    assert f"error: contract 'Readmissions study' version 1 ({story.digest}) is not in effect" in (
        stderr
    )
    problems = problem_lines(stderr)
    assert len(problems) == 2
    assert problems[0].startswith(f"missing signature of {BOB!r} ({story.ids[BOB][:19]}")
    assert problems[1].startswith(f"missing signature of {CAROL!r} ({story.ids[CAROL][:19]}")
    assert ALICE not in stderr

    proc = run("contract", "verify", "one-signed.json", "--at", AT, "--json", cwd=story.root)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["in_effect"] is False
    assert result["digest"] == story.digest
    assert result["problems"] == problems


def test_outside_validity_window(story: Story) -> None:
    stderr = fails(
        "contract", "verify", "signed.json", "--at", "2028-01-01T00:00:01Z",
        cwd=story.root, code=1,
    )  # fmt: skip
    assert problem_lines(stderr) == [
        "the contract is not valid at 2028-01-01T00:00:01Z: it is valid from "
        "2027-01-01T00:00:00Z until 2028-01-01T00:00:00Z"
    ]


def test_amended_contract_with_old_signatures(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "signed.json", tmp_path / "v1.json")
    ok("contract", "amend", "v1.json", "--out", "v2.json", cwd=tmp_path)
    v2 = read_json(tmp_path / "v2.json")
    assert (v2["signed"]["version"], v2["signed"]["previous"], v2["signatures"]) == (
        2,
        story.digest,
        [],
    )
    v2["signatures"] = read_json(tmp_path / "v1.json")["signatures"]
    write_json(tmp_path / "stale.json", v2)
    problems = problem_lines(
        fails("contract", "verify", "stale.json", "--at", AT, cwd=tmp_path, code=1)
    )
    assert len(problems) == 3
    for name, problem in zip((ALICE, BOB, CAROL), problems, strict=True):
        assert problem.startswith(f"the signature of {name!r}")
        assert f"is over the previous version (version 1, {story.digest})" in problem
        assert f"{name} must sign the amended contract" in problem

    # checking the chain against the wrong previous version
    stderr = fails(
        "contract", "verify", "stale.json", "--at", AT, "--previous", "v2.json", cwd=tmp_path
    )
    assert f"this version names {story.digest} as its previous version" in stderr
    assert "this is version 2; the given previous contract is version 2" in stderr


def test_field_edited_after_signing(story: Story, tmp_path: Path) -> None:
    obj = read_json(story.root / "signed.json")
    obj["signed"]["programs"][0]["outputs"]["min_group_size"] = 1
    write_json(tmp_path / "edited.json", obj)
    problems = problem_lines(
        fails("contract", "verify", "edited.json", "--at", AT, cwd=tmp_path, code=1)
    )
    assert len(problems) == 3
    for name, problem in zip((ALICE, BOB, CAROL), problems, strict=True):
        assert f"was made over other content ({story.digest})" in problem
        assert f"the contract was edited after {name} signed" in problem


def test_stranger_cannot_sign(story: Story, tmp_path: Path) -> None:
    stranger_id = ok("party", "init", "mallory", "--name", "Mallory", cwd=tmp_path).stdout.strip()
    shutil.copy(story.root / "signed.json", tmp_path / "c.json")
    before = (tmp_path / "c.json").read_bytes()
    stderr = fails("contract", "sign", "c.json", "--party", "mallory", cwd=tmp_path)
    assert f"'Mallory' ({stranger_id}) is not a party of this contract" in stderr
    assert (tmp_path / "c.json").read_bytes() == before

    # a stranger's signature appended by hand
    obj = read_json(tmp_path / "c.json")
    envelope = Envelope.from_json(obj, expected_type=CONTRACT_TYPE)
    mallory = load_party(tmp_path / "mallory")
    write_json(tmp_path / "c.json", sign_envelope(envelope, mallory.signing_key).to_json())
    stderr = fails("contract", "verify", "c.json", "--at", AT, cwd=tmp_path, code=1)
    assert problem_lines(stderr) == [
        f"a signature by key {stranger_id}, which is not a party of this contract"
    ]


def test_sign_with_wrong_expected_digest_signs_nothing(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    before = (tmp_path / "c.json").read_bytes()
    wrong = "sha256:" + "0" * 64
    stderr = fails(
        "contract", "sign", "c.json", "--party", story.root / "alice", "--expect-digest", wrong,
        cwd=tmp_path, code=2,
    )  # fmt: skip
    assert f"the contract's digest is {story.digest}, not the {wrong} you reviewed" in stderr
    assert "nothing was signed" in stderr
    assert (tmp_path / "c.json").read_bytes() == before


# -- drafting mistakes --------------------------------------------------------------------------


def test_unknown_role(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    init_party(tmp_path / "dave", "Dave")
    stderr = fails(
        "contract", "add-party", "c.json", "--card", "dave/card.json", "--role", "admin",
        cwd=tmp_path, code=1,
    )  # fmt: skip
    assert "unknown role 'admin'" in stderr
    assert "known roles: data-provider, result-recipient, job-submitter, auditor" in stderr


def test_same_card_twice(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    stderr = fails(
        "contract", "add-party", "c.json", "--card", story.root / "bob" / "card.json",
        "--role", "auditor",
        cwd=tmp_path,
    )  # fmt: skip
    assert f"party {BOB!r} ({story.ids[BOB]}) is listed twice: parties[1] and parties[3]" in stderr


def test_dataset_owner_must_be_a_data_provider_party(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    before = (tmp_path / "c.json").read_bytes()
    stderr = fails(
        "contract", "add-dataset", "c.json", "--id", "x", "--owner", "Mallory",
        "--description", "d",
        cwd=tmp_path,
    )  # fmt: skip
    assert "'Mallory' is not a party of this contract" in stderr
    assert f"hint: parties: {ALICE!r}, {BOB!r}, {CAROL!r}" in stderr
    stderr = fails(
        "contract", "add-dataset", "c.json", "--id", "x", "--owner", CAROL, "--description", "d",
        cwd=tmp_path,
    )  # fmt: skip
    assert f"the owner of dataset 'x' is {CAROL!r}, who does not have the role data-provider" in (
        stderr
    )
    assert (tmp_path / "c.json").read_bytes() == before


def test_editing_a_signed_contract(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "signed.json", tmp_path / "c.json")
    args = ("contract", "set-policy", "c.json", "--max-runs", "3")
    stderr = fails(*args, cwd=tmp_path, code=2)
    assert "already carries 3 signature(s); this change would void them" in stderr
    assert "--discard-signatures" in stderr
    ok(*args, "--discard-signatures", cwd=tmp_path)
    obj = read_json(tmp_path / "c.json")
    assert obj["signatures"] == []
    assert obj["signed"]["job_policy"]["max_runs"] == 3


def test_init_refuses_an_existing_contract(story: Story) -> None:
    stderr = fails(
        "contract", "init", "signed.json", "--name", "X", "--id", "x",
        "--valid-from", "2027-01-01T00:00:00Z",
        cwd=story.root, code=2,
    )  # fmt: skip
    assert "signed.json already exists; refusing to overwrite a contract" in stderr


def test_platform_file_is_validated(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    (tmp_path / "sgx.json").write_text('{"platform": "sgx", "mrsigner": "' + H64 + '"}')
    stderr = fails("contract", "set-policy", "c.json", "--platform", "sgx.json", cwd=tmp_path)
    assert "enclave policy for sgx: mrsigner, isv_prod_id and min_isv_svn go together" in stderr


# -- bugs found while writing these tests (see the report) ----------------------------------


def test_init_with_validity_beyond_year_9999(tmp_path: Path) -> None:
    # cli/contract.py init: start + timedelta(days=valid_days) overflows, uncaught.
    fails("contract", "init", "c.json", "--name", "X", "--id", "x", "--valid-days", "3000000",
          cwd=tmp_path)  # fmt: skip


def test_contract_path_that_is_a_directory(tmp_path: Path) -> None:
    # client/contracts.py load_contract catches only FileNotFoundError.
    (tmp_path / "dir").mkdir()
    fails("contract", "show", "dir", cwd=tmp_path)


def test_platform_file_with_a_list_as_platform(story: Story, tmp_path: Path) -> None:
    # client/contracts.py set_policy: existing[p.get("platform")] hashes the value.
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    (tmp_path / "p.json").write_text('{"platform": ["sgx"]}')
    fails("contract", "set-policy", "c.json", "--platform", "p.json", cwd=tmp_path)


# -- init-data (Confidential Containers) ----------------------------------------------------


def test_set_policy_init_data_options(story: Story, tmp_path: Path) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    stderr = fails(
        "contract", "set-policy", "c.json", "--init-data-algorithm", "sha256", cwd=tmp_path, code=2
    )
    assert "the enclave policy has no tdx or sev-snp platform to bind init-data to" in stderr
    (tmp_path / "tdx.json").write_text('{"platform": "tdx", "mrtd": ["' + "aa" * 48 + '"]}')
    ok("contract", "set-policy", "c.json", "--platform", "tdx.json",
       "--init-data-algorithm", "sha384", cwd=tmp_path)  # fmt: skip
    tdx = next(p for p in platforms(tmp_path / "c.json") if p["platform"] == "tdx")
    assert tdx["init_data"] == {"algorithm": "sha384", "agent_policy": DEFAULT_AGENT_POLICY}
    shown = ok("contract", "show", "c.json", "--at", AT, cwd=tmp_path).stdout
    assert "pod init-data checked: algorithm sha384, Nestor's baseline agent policy" in shown

    (tmp_path / "policy.rego").write_text(
        "package agent_policy\ndefault ExecProcessRequest := false"
    )
    ok("contract", "set-policy", "c.json", "--init-data-algorithm", "sha256",
       "--agent-policy", "policy.rego", cwd=tmp_path)  # fmt: skip
    tdx = next(p for p in platforms(tmp_path / "c.json") if p["platform"] == "tdx")
    # The final newline is added as the init-data document adds it.
    text = "package agent_policy\ndefault ExecProcessRequest := false\n"
    assert tdx["init_data"] == {"algorithm": "sha256", "agent_policy": text}
    ok("contract", "set-policy", "c.json", "--init-data-algorithm", "sha512",
       "--no-agent-policy", cwd=tmp_path)  # fmt: skip
    tdx = next(p for p in platforms(tmp_path / "c.json") if p["platform"] == "tdx")
    assert tdx["init_data"] == {"algorithm": "sha512", "agent_policy": None}
    ok("contract", "set-policy", "c.json", "--no-init-data", cwd=tmp_path)
    tdx = next(p for p in platforms(tmp_path / "c.json") if p["platform"] == "tdx")
    assert "init_data" not in tdx
    shown = ok("contract", "show", "c.json", "--at", AT, cwd=tmp_path).stdout
    assert "pod init-data: not checked" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--init-data-algorithm", "md5"), "unknown init-data algorithm 'md5'"),
        (("--agent-policy", "policy.rego"), "--agent-policy and --no-agent-policy go with"),
        (("--no-agent-policy",), "--agent-policy and --no-agent-policy go with"),
        (
            ("--init-data-algorithm", "sha256", "--agent-policy", "policy.rego",
             "--no-agent-policy"),
            "exclude each other",
        ),
        (("--no-init-data", "--init-data-algorithm", "sha256"), "--no-init-data excludes"),
        (
            ("--init-data-algorithm", "sha256", "--agent-policy", "missing.rego"),
            "agent policy file missing.rego does not exist",
        ),
    ],
)  # fmt: skip
def test_set_policy_init_data_misuse(
    story: Story, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    shutil.copy(story.root / "draft.json", tmp_path / "c.json")
    (tmp_path / "policy.rego").write_text("package agent_policy\n")
    before = (tmp_path / "c.json").read_bytes()
    assert message in fails("contract", "set-policy", "c.json", *args, cwd=tmp_path, code=2)
    assert (tmp_path / "c.json").read_bytes() == before


def platforms(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = read_json(path)["signed"]["enclave_policy"]["platforms"]
    return found
