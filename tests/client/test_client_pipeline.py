"""The party side of the pipeline, without a host.

- HostClient: every transport and HTTP failure becomes a HostApiError naming
  the URL (and status); httpx.MockTransport stands in for the network here
  only, to produce those failures.
- Parameter parsing (library and `nestor job draft`), ownership checks before
  any network, enclave appraisal, offline receipt verification (library and
  `nestor receipt verify`), audit-log truncation and fork detection.

Happy paths against a real host and enclave are the end-to-end tests' job.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from nestor.attestation.binding import report_data_for
from nestor.cli.main import app
from nestor.client import contracts as drafting
from nestor.client import pipeline as steps
from nestor.client.host_api import (
    HostClient,
    HostConflictError,
    HostNotFoundError,
    HostProtocolError,
    HostStatusError,
    HostUnavailableError,
    JobStatus,
)
from nestor.client.party import Party, init_party
from nestor.crypto import hpke, signing
from nestor.errors import (
    AppraisalError,
    AttestationError,
    ConfigurationError,
    SignatureError,
    VerificationError,
)
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode
from nestor.protocol.contract import Contract, VerifiedContract, verify_contract
from nestor.protocol.envelope import pae
from nestor.protocol.messages import (
    GENESIS,
    LogHead,
    cosign_job_request,
    make_announcement,
    make_job_request,
    make_log_entry,
    make_receipt,
    verify_job_request,
)
from nestor.simtee.vendor import issue_evidence, load_or_create_vendor_key

T0 = datetime(2020, 1, 1, tzinfo=UTC)  # wide: the CLI checks the contract at the real time
T1 = datetime(2100, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
MEASUREMENT = "ab" * 32
OTHER_MEASUREMENT = "cd" * 32
CLOSED = "http://127.0.0.1:9"  # nothing is ever sent there: see NoNetwork
PARAMETERS: dict[str, dict[str, Any]] = {
    "threshold": {"type": "integer", "required": True},
    "ratio": {"type": "number", "required": False},
    "strict": {"type": "boolean", "required": False},
    "label": {"type": "string", "required": False},
}


# -- fixtures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    base: Path
    alice: Party
    bob: Party
    contract: Contract  # require_cosign: every provider co-signs
    other: Contract  # another collaboration, same parties
    vendor: Ed25519PrivateKey
    config: Path  # NESTOR_CONFIG_DIR holding the vendor root

    def verified(self, contract: Contract | None = None) -> VerifiedContract:
        return verify_contract(contract or self.contract, now=NOW)


def _contract(alice: Party, bob: Party, bundle: Path, cid: str, *, cosign: bool) -> Contract:
    c = drafting.new_contract("Study " + cid, cid, not_before=T0, not_after=T1)
    c = drafting.add_party(c, alice.card, ["data-provider", "result-recipient", "job-submitter"])
    c = drafting.add_party(c, bob.card, ["data-provider", "result-recipient"])
    c = drafting.add_dataset(
        c, dataset_id="visits", owner="Alice", description="Visits", fmt="csv", columns=None
    )
    c = drafting.add_dataset(
        c, dataset_id="claims", owner="Bob", description="Claims", fmt="csv", columns=None
    )
    c = drafting.add_program(
        c,
        program_id="count",
        bundle=bundle,
        entry_point="main:run",
        description="Counts",
        inputs=["visits", "claims"],
        recipients=[("Alice", "full"), ("Bob", "own")],
        min_group_size=1,
        parameters=PARAMETERS,
    )
    c = drafting.set_policy(
        c,
        platforms=[{"platform": "simulated", "measurements": [MEASUREMENT]}],
        submitters=["Alice"],
        require_cosign=cosign,
    )
    return drafting.sign(drafting.sign(c, alice), bob)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("pipeline")
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "main.py").write_text("def run(inputs, params):\n    return {}\n")
    alice = init_party(base / "alice", "Alice", now=T0)
    bob = init_party(base / "bob", "Bob", now=T0)
    config = base / "config"
    return World(
        base,
        alice,
        bob,
        _contract(alice, bob, bundle, "study-1", cosign=True),
        _contract(alice, bob, bundle, "study-2", cosign=False),
        load_or_create_vendor_key(config),
        config,
    )


@dataclass(frozen=True)
class FakeEnclave:
    key: Ed25519PrivateKey
    announcement: dict[str, Any]

    @property
    def keyid(self) -> str:
        return signing.key_id(self.key.public_key())


def _enclave(
    world: World,
    contract: Contract | None = None,
    *,
    measurement: str = MEASUREMENT,
    bind_contract: str | None = None,
    vendor: Ed25519PrivateKey | None = None,
) -> FakeEnclave:
    """An announcement as a simulated enclave makes one (evidence included)."""
    contract = contract or world.contract
    key = Ed25519PrivateKey.generate()
    hpke_keys = {
        hpke.Suite.X25519_SHA256_AES256GCM.label: (
            x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
        )
    }
    report_data = report_data_for(
        bind_contract or contract.digest, key.public_key().public_bytes_raw(), hpke_keys
    )
    evidence = issue_evidence(
        vendor or world.vendor,
        measurement=measurement,
        report_data=report_data,
        issued_at=NOW - timedelta(minutes=1),
    )
    ann = make_announcement(
        contract=contract.digest,
        enclave_id="e" * 32,
        signing_key=key,
        hpke_keys=hpke_keys,
        platform="simulated",
        evidence=evidence,
        collateral=None,
        started_at=NOW - timedelta(minutes=1),
    )
    return FakeEnclave(key, ann.to_json())


class NoNetwork(HostClient):
    """A client that fails the test if anything is sent."""

    def __init__(self) -> None:
        super().__init__(CLOSED)

    def _request(self, *args: object, **kwargs: object) -> tuple[int, bytes]:
        raise AssertionError("the network was used")


class LogHost(NoNetwork):
    """Serves a fixed audit log (and nothing else)."""

    def __init__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.entries = [dict(e) for e in entries]

    def get_log(self, enclave_keyid: str) -> list[dict[str, Any]]:
        return [dict(e) for e in self.entries]


class StatusHost(NoNetwork):
    def __init__(self, statuses: Sequence[JobStatus]) -> None:
        super().__init__()
        self.statuses = list(statuses)

    def job_status(self, job_id: str) -> JobStatus:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> HostClient:
    return HostClient("http://host.test:8000", transport=httpx.MockTransport(handler))


JOB_ID = "0123456789abcdef0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32


# -- HostClient: error mapping (MockTransport) ------------------------------------------------


def test_404_becomes_not_found_with_url_status_and_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not-found", "detail": "no such job"})

    with _client(handler) as client, pytest.raises(HostNotFoundError) as info:
        client.job_status(JOB_ID)
    err = info.value
    assert err.status == 404
    assert err.url == f"http://host.test:8000/v1/jobs/{JOB_ID}"
    assert err.error_type == "not-found"
    assert err.detail == "no such job"
    assert f"http://host.test:8000/v1/jobs/{JOB_ID}" in err.message
    assert "404" in err.message
    assert "no such job" in err.message


def test_404_on_latest_announcement_names_query() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not-found", "detail": "none"})

    with _client(handler) as client, pytest.raises(HostNotFoundError) as info:
        client.latest_announcement(DIGEST)
    assert info.value.url.endswith("/v1/announcements/latest?contract=sha256%3A" + "ab" * 32)


def test_500_with_text_body_becomes_status_error_with_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="Internal Server Error")

    with _client(handler) as client, pytest.raises(HostStatusError) as info:
        client.get_receipt(JOB_ID)
    err = info.value
    assert not isinstance(err, HostNotFoundError)
    assert err.status == 500
    assert f"http://host.test:8000/v1/receipts/{JOB_ID}" in err.message
    assert "500" in err.message
    assert "Internal Server Error" in err.message
    assert err.hint is not None


def test_409_on_submit_becomes_conflict() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        return httpx.Response(409, json={"error": "job-exists", "detail": "job exists"})

    with _client(handler) as client, pytest.raises(HostConflictError) as info:
        client.submit_job({"payload_type": "x", "signed": {}, "signatures": []})
    assert info.value.status == 409
    assert "job-exists" in info.value.message


def test_host_error_detail_is_cleaned_and_shortened() -> None:
    detail = "\x1b[31mred\x1b[0m\n" + "x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad-request", "detail": detail})

    with _client(handler) as client, pytest.raises(HostStatusError) as info:
        client.get_log(DIGEST)
    assert "\x1b" not in info.value.message
    assert "\n" not in info.value.message
    assert len(info.value.message) < 500


def test_connection_refused_names_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(handler) as client, pytest.raises(HostUnavailableError) as info:
        client.list_grants(DIGEST)
    assert info.value.url.startswith("http://host.test:8000/v1/grants?enclave=")
    assert "cannot reach the host at http://host.test:8000/v1/grants" in info.value.message
    assert "Connection refused" in info.value.message
    assert info.value.hint is not None
    assert "NESTOR_HOST" in info.value.hint


def test_connection_refused_by_a_real_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the port is closed now: connecting is refused
    with (
        HostClient(f"http://127.0.0.1:{port}", timeout=5) as client,
        pytest.raises(HostUnavailableError) as info,
    ):
        client.health()
    assert f"http://127.0.0.1:{port}/healthz" in info.value.message


def test_timeout_becomes_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(handler) as client, pytest.raises(HostUnavailableError) as info:
        client.get_receipt(JOB_ID)
    assert "did not answer" in info.value.message
    assert JOB_ID in info.value.message


def test_2xx_that_is_not_the_documented_json_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/jobs/"):
            return httpx.Response(200, json={"job_id": JOB_ID, "status": "exploded"})
        return httpx.Response(200, text="<html>")

    with _client(handler) as client:
        with pytest.raises(HostProtocolError, match="not JSON"):
            client.get_receipt(JOB_ID)
        with pytest.raises(HostProtocolError, match="unknown job status"):
            client.job_status(JOB_ID)


def test_upload_misreported_by_the_host_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"ciphertext" * 1000)

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        assert request.headers["content-length"] == str(len(body)) == "10000"
        return httpx.Response(201, json={"name": "visits-00", "size": 5, "sha256": "00" * 32})

    with _client(handler) as client, pytest.raises(HostProtocolError) as info:
        client.put_blob("visits-00", blob)
    assert "http://host.test:8000/v1/blobs/visits-00" in info.value.message


def test_failed_download_leaves_no_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not-found", "detail": "no blob"})

    dest = tmp_path / "out.nds"
    with _client(handler) as client, pytest.raises(HostNotFoundError):
        client.get_blob("visits-00", dest)
    assert list(tmp_path.iterdir()) == []


def test_malformed_identifiers_are_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request should be made")

    with _client(handler) as client:
        with pytest.raises(ConfigurationError, match="not a job id"):
            client.job_status("../blobs/x")
        with pytest.raises(ConfigurationError, match="not a blob name"):
            client.get_blob("../../etc", Path("x"))
        with pytest.raises(ConfigurationError):
            client.latest_announcement("sha256:short")


def test_a_host_url_must_be_http() -> None:
    with pytest.raises(ConfigurationError, match="not a host URL"):
        HostClient("127.0.0.1:8000")


# -- parameters ---------------------------------------------------------------------------------


def test_parameters_are_typed_by_the_programs_declaration(world: World) -> None:
    program = world.contract.program("count")
    assert program is not None
    params = steps.parse_parameters(
        program, ["threshold=18", "ratio=-250", "strict=Yes", "label=a=b c"]
    )
    assert params == {"threshold": 18, "ratio": -250, "strict": True, "label": "a=b c"}
    assert type(params["threshold"]) is int
    assert steps.parse_parameters(program, ["threshold=+3", "strict=off"]) == {
        "threshold": 3,
        "strict": False,
    }
    # what the parser accepts, the enclave's check accepts
    request = make_job_request(
        contract=world.other,
        program="count",
        parameters=params,
        submitter_key=world.alice.signing_key,
        submitted_at=NOW,
    )
    assert verify_job_request(request.to_json(), contract=world.other).parameters == params


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["threshold=1.5"], "is an integer"),
        (["threshold=3", "ratio=0.5"], "no fractions"),
        (["threshold=ten"], "not an integer"),
        (["threshold=3", "strict=maybe"], "give true or false"),
        (["threshold=3", "colour=red"], "takes no parameter 'colour'"),
        (["threshold=3", "threshold=4"], "given twice"),
        (["threshold"], "not NAME=VALUE"),
        (["=3"], "not NAME=VALUE"),
        ([], "needs parameter(s) threshold"),
        ([f"threshold={2**53}"], "outside"),
    ],
)
def test_bad_parameters_are_refused(world: World, items: list[str], message: str) -> None:
    program = world.contract.program("count")
    assert program is not None
    with pytest.raises(ConfigurationError) as info:
        steps.parse_parameters(program, items)
    assert message in info.value.message


def test_cli_job_draft_types_params(world: World, tmp_path: Path) -> None:
    contract_file = tmp_path / "contract.json"
    drafting.save_contract(contract_file, world.contract)
    out_file = tmp_path / "req.json"
    runner = CliRunner()
    args = [
        "job",
        "draft",
        "--program",
        "count",
        "--param",
        "threshold=7",
        "--param",
        "strict=false",
        "--param",
        "label=x=y",
        "--contract",
        str(contract_file),
        "--party",
        str(world.base / "alice"),
        "--out",
        str(out_file),
    ]
    result = runner.invoke(app, args, env={"NESTOR_PASSPHRASE": ""})
    assert result.exit_code == 0, result.output
    request = json.loads(out_file.read_text())
    assert request["signed"]["parameters"] == {"threshold": 7, "strict": False, "label": "x=y"}
    assert request["signed"]["job_id"] == result.stdout.strip()

    bad = runner.invoke(app, [*args[:5], "threshold=seven", *args[6:]])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, ConfigurationError)
    assert "not an integer" in bad.exception.message


# -- jobs: co-signatures ---------------------------------------------------------------------------


def test_cosign_flow_and_local_refusal_before_network(world: World) -> None:
    verified = world.verified()
    drafted = steps.draft_job(world.alice, verified, "count", {"threshold": 3}, now=NOW)
    # Bob has not co-signed: refused locally, with the procedure as hint, nothing sent
    with pytest.raises(VerificationError) as info:
        steps.submit_signed_job(NoNetwork(), verified, drafted)
    assert "co-sign" in info.value.message
    assert info.value.hint is not None
    assert "nestor job cosign" in info.value.hint
    cosigned = steps.cosign_job(drafted.to_json(), world.bob, verified)
    job = verify_job_request(cosigned.to_json(), contract=world.contract)
    assert job.job_id == drafted.signed["job_id"]
    # separately co-signed copies merge into one envelope
    merged = steps.merge_cosignatures(drafted, cosigned)
    assert {s.keyid for s in merged.signatures} == {
        world.alice.card.party_id,
        world.bob.card.party_id,
    }
    other = steps.draft_job(world.alice, verified, "count", {"threshold": 4}, now=NOW)
    with pytest.raises(VerificationError, match="another job request"):
        steps.merge_cosignatures(drafted, other)


def test_only_submitters_draft_jobs(world: World) -> None:
    with pytest.raises(ConfigurationError, match="may not submit jobs"):
        steps.draft_job(world.bob, world.verified(), "count", {"threshold": 3}, now=NOW)
    with pytest.raises(ConfigurationError, match="no program 'nope'"):
        steps.draft_job(world.alice, world.verified(), "nope", {}, now=NOW)


def test_wait_job_reports_failure_and_timeout() -> None:
    request: dict[str, Any] = {}
    failing = StatusHost(
        [
            JobStatus(JOB_ID, "queued", None, request),
            JobStatus(JOB_ID, "failed", "no key grant for dataset(s) claims", request),
        ]
    )
    seen: list[str] = []
    with pytest.raises(steps.JobFailedError, match="no key grant for dataset"):
        steps.wait_job(
            failing,
            JOB_ID,
            timeout=10,
            sleep=lambda _s: None,
            on_change=lambda s: seen.append(s.status),
        )
    assert seen == ["queued", "failed"]
    clock = iter(float(i) for i in range(100))
    stuck = StatusHost([JobStatus(JOB_ID, "running", None, request)])
    with pytest.raises(steps.JobTimeoutError, match="still running"):
        steps.wait_job(stuck, JOB_ID, timeout=3, sleep=lambda _s: None, clock=lambda: next(clock))


# -- enclave appraisal (offline) -------------------------------------------------------------------


def test_appraisal_accepts_the_right_enclave(world: World) -> None:
    enclave = _enclave(world)
    verified = steps.appraise_announcement(
        enclave.announcement,
        world.contract,
        now=NOW,
        simulated_vendor_keys=[world.vendor.public_key()],
    )
    assert verified.keyid == enclave.keyid
    assert verified.decision.accepted


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"measurement": OTHER_MEASUREMENT}, AppraisalError, "satisfy the contract"),
        ({"bind_contract": "sha256:" + "00" * 32}, AppraisalError, "satisfy the contract"),
        ({"vendor": Ed25519PrivateKey.generate()}, AttestationError, "not a trusted"),
    ],
    ids=["other-measurement", "other-binding", "untrusted-vendor"],
)
def test_appraisal_refuses(
    world: World, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    enclave = _enclave(world, **kwargs)
    with pytest.raises(error, match=message) as info:
        steps.appraise_announcement(
            enclave.announcement,
            world.contract,
            now=NOW,
            simulated_vendor_keys=[world.vendor.public_key()],
        )
    if isinstance(info.value, AppraisalError):
        assert info.value.reasons


def test_announcement_for_another_contract_is_refused(world: World) -> None:
    enclave = _enclave(world, world.other)
    with pytest.raises(VerificationError, match="announces contract"):
        steps.appraise_announcement(
            enclave.announcement,
            world.contract,
            now=NOW,
            simulated_vendor_keys=[world.vendor.public_key()],
        )


# -- upload: ownership before any network -----------------------------------------------------


def _appraised(
    world: World, contract: Contract | None = None
) -> tuple[steps.VerifiedEnclave, Ed25519PrivateKey]:
    contract = contract or world.contract
    enclave = _enclave(world, contract)
    verified = steps.appraise_announcement(
        enclave.announcement,
        contract,
        now=NOW,
        simulated_vendor_keys=[world.vendor.public_key()],
    )
    return verified, enclave.key


def _verified_enclave(world: World, contract: Contract | None = None) -> steps.VerifiedEnclave:
    return _appraised(world, contract)[0]


def test_upload_refuses_a_dataset_owned_by_another_party(world: World, tmp_path: Path) -> None:
    source = tmp_path / "claims.csv"
    source.write_text("id\n1\n")
    work = tmp_path / "work"
    work.mkdir()
    party_dir = tmp_path / "alice-state"
    party_dir.mkdir()
    with pytest.raises(ConfigurationError) as info:
        steps.upload_dataset(
            NoNetwork(),
            world.alice,
            world.verified(),
            "claims",
            source,
            now=NOW,
            enclave=_verified_enclave(world),
            work_dir=work,
            party_dir=party_dir,
        )
    assert "belongs to 'Bob'" in info.value.message
    assert info.value.hint == "yours: visits"
    assert list(work.iterdir()) == []
    assert list(party_dir.iterdir()) == []


def test_upload_refuses_unknown_dataset_and_foreign_enclave(world: World, tmp_path: Path) -> None:
    source = tmp_path / "visits.csv"
    source.write_text("id\n1\n")
    with pytest.raises(ConfigurationError, match="no dataset 'nope'"):
        steps.upload_dataset(
            NoNetwork(),
            world.alice,
            world.verified(),
            "nope",
            source,
            now=NOW,
            enclave=_verified_enclave(world),
            work_dir=tmp_path,
        )
    with pytest.raises(VerificationError, match="serves contract"):
        steps.upload_dataset(
            NoNetwork(),
            world.alice,
            world.verified(),
            "visits",
            source,
            now=NOW,
            enclave=_verified_enclave(world, world.other),
            work_dir=tmp_path,
        )


def test_regrant_needs_a_kept_key(world: World, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no upload record"):
        steps.regrant(
            NoNetwork(),
            world.alice,
            world.verified(),
            "visits",
            now=NOW,
            enclave=_verified_enclave(world),
            party_dir=tmp_path,
        )


# -- receipts, offline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    enclave: FakeEnclave
    receipt: dict[str, Any]
    job_digest: str
    commitments: dict[str, str]
    outputs: dict[str, str]


def _receipt(world: World, contract: Contract, enclave: FakeEnclave | None = None) -> Issued:
    enclave = enclave or _enclave(world, contract)
    request = make_job_request(
        contract=contract,
        program="count",
        parameters={"threshold": 3},
        submitter_key=world.alice.signing_key,
        submitted_at=NOW,
    )
    request = cosign_job_request(request, world.bob.signing_key)
    job = verify_job_request(request.to_json(), contract=contract)
    program = contract.program("count")
    assert program is not None
    commitments = {"visits": "sha256:" + "11" * 32, "claims": "sha256:" + "22" * 32}
    digest_a, digest_b = canonical.digest_bytes(b"all rows"), canonical.digest_bytes(b"own rows")
    outputs = [
        {"recipient": world.alice.card.party_id, "name": "summary.csv", "digest": digest_a},
        {"recipient": world.bob.card.party_id, "name": "summary.csv", "digest": digest_b},
    ]
    evidence = b64decode(enclave.announcement["signed"]["evidence"])
    receipt = make_receipt(
        contract=contract,
        job=job,
        program_digest=program.digest,
        input_commitments=commitments,
        outputs=outputs,
        enclave_keyid=enclave.keyid,
        evidence_digest="sha256:" + hashlib.sha256(evidence).hexdigest(),
        platform="simulated",
        finished_at=NOW,
        log_index=4,
        log_head="sha256:" + "44" * 32,
        enclave_key=enclave.key,
    )
    return Issued(enclave, receipt, job.digest, commitments, {"summary.csv": digest_a})


def _edit_payload(
    receipt: Mapping[str, Any], edit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(receipt["payload"]))
    edit(statement)
    return {**receipt, "payload": base64.b64encode(canonical.encode(statement)).decode()}


def test_offline_receipt_verifies_with_contract_and_announcement(world: World) -> None:
    issued = _receipt(world, world.contract)
    checked = steps.verify_receipt_offline(
        issued.receipt,
        contract=world.contract,
        announcement=issued.enclave.announcement,
        simulated_vendor_keys=[world.vendor.public_key()],
    )
    assert checked.at == NOW  # the receipt's finished_at
    assert checked.enclave is not None
    assert checked.enclave.decision.accepted
    assert checked.receipt.job_request == issued.job_digest
    assert checked.receipt.input_commitments == issued.commitments
    assert (checked.receipt.log_index, checked.receipt.log_head) == (4, "sha256:" + "44" * 32)
    assert steps.receipt_outputs(checked.receipt, world.alice.card.party_id) == issued.outputs
    # the checks a recipient makes after opening its result
    steps.check_receipt(
        issued.receipt,
        contract=world.contract,
        enclave=checked.announcement,
        known_commitments={"visits": ("sha256:" + "99" * 32, issued.commitments["visits"])},
        recipient=world.alice.card.party_id,
        outputs=issued.outputs,
    )


def test_receipt_with_an_altered_output_digest_is_refused(world: World) -> None:
    issued = _receipt(world, world.contract)

    def alter(statement: dict[str, Any]) -> None:
        statement["predicate"]["outputs"][0]["digest"] = canonical.digest_bytes(b"forged")

    with pytest.raises(SignatureError):
        steps.verify_receipt_offline(
            _edit_payload(issued.receipt, alter),
            contract=world.contract,
            announcement=issued.enclave.announcement,
            simulated_vendor_keys=[world.vendor.public_key()],
        )
    # genuine receipt, but the outputs it lists are not the ones this party opened
    with pytest.raises(VerificationError, match="outputs for you do not match"):
        steps.check_receipt(
            issued.receipt,
            contract=world.contract,
            enclave=steps.appraise_announcement(
                issued.enclave.announcement,
                world.contract,
                now=NOW,
                simulated_vendor_keys=[world.vendor.public_key()],
            ),
            recipient=world.alice.card.party_id,
            outputs={"summary.csv": canonical.digest_bytes(b"what I opened")},
        )


def test_receipt_for_another_contract_is_refused(world: World) -> None:
    enclave = _enclave(world, world.contract)
    issued = _receipt(world, world.other, enclave)  # same enclave key, other contract
    with pytest.raises(VerificationError, match="another contract"):
        steps.verify_receipt_offline(
            issued.receipt,
            contract=world.contract,
            announcement=enclave.announcement,
            simulated_vendor_keys=[world.vendor.public_key()],
        )


def test_receipt_binds_job_commitments_enclave_and_evidence(world: World) -> None:
    issued = _receipt(world, world.contract)
    verified = steps.appraise_announcement(
        issued.enclave.announcement,
        world.contract,
        now=NOW,
        simulated_vendor_keys=[world.vendor.public_key()],
    )
    with pytest.raises(VerificationError, match="not a ciphertext you uploaded"):
        steps.check_receipt(
            issued.receipt,
            contract=world.contract,
            enclave=verified,
            known_commitments={"visits": ("sha256:" + "99" * 32,)},
        )
    other_job = _receipt(world, world.contract, issued.enclave)
    job = verify_job_request(
        steps.cosign_job(
            steps.draft_job(
                world.alice, world.verified(), "count", {"threshold": 9}, now=NOW
            ).to_json(),
            world.bob,
            world.verified(),
        ).to_json(),
        contract=world.contract,
    )
    with pytest.raises(VerificationError, match="is for job request"):
        steps.check_receipt(other_job.receipt, contract=world.contract, enclave=verified, job=job)
    stranger = _verified_enclave(world)
    with pytest.raises(VerificationError, match="signed by enclave") as info:
        steps.check_receipt(issued.receipt, contract=world.contract, enclave=stranger)
    assert info.value.hint is not None
    assert "restart" in info.value.hint

    def swap_evidence(statement: dict[str, Any]) -> None:
        statement["predicate"]["enclave"]["evidence"] = "sha256:" + "00" * 32

    resigned = _resign(_edit_payload(issued.receipt, swap_evidence), issued.enclave)
    with pytest.raises(VerificationError, match="other evidence"):
        steps.check_receipt(resigned, contract=world.contract, enclave=verified)


def _resign(receipt: dict[str, Any], enclave: FakeEnclave) -> dict[str, Any]:
    payload = base64.b64decode(receipt["payload"])
    sig = signing.sign(enclave.key, pae(receipt["payloadType"], payload))
    return {
        **receipt,
        "signatures": [{"keyid": enclave.keyid, "sig": base64.b64encode(sig).decode()}],
    }


def test_cli_receipt_verify_offline(world: World, tmp_path: Path) -> None:
    issued = _receipt(world, world.contract)
    contract_file = tmp_path / "contract.json"
    drafting.save_contract(contract_file, world.contract)
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(issued.receipt))
    announcement_file = tmp_path / "announcement.json"
    announcement_file.write_text(json.dumps(issued.enclave.announcement))
    env = {"NESTOR_CONFIG_DIR": str(world.config)}
    args = [
        "receipt",
        "verify",
        str(receipt_file),
        "--contract",
        str(contract_file),
        "--announcement",
        str(announcement_file),
    ]
    runner = CliRunner()
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "receipt verified" in result.stdout
    assert issued.commitments["visits"] in result.stdout
    assert "to Alice" in result.stdout
    assert "simulated evidence accepted" in result.stdout

    forged = tmp_path / "forged.json"
    forged.write_text(
        json.dumps(
            _edit_payload(
                issued.receipt,
                lambda s: s["predicate"]["outputs"][1].update(digest="sha256:" + "00" * 32),
            )
        )
    )
    refused = runner.invoke(app, [*args[:2], str(forged), *args[3:]], env=env)
    assert refused.exit_code != 0
    assert isinstance(refused.exception, SignatureError)

    other = tmp_path / "other.json"
    drafting.save_contract(other, world.other)
    refused = runner.invoke(app, [*args[:4], str(other), *args[5:]], env=env)
    assert refused.exit_code != 0
    assert isinstance(refused.exception, VerificationError)


# -- audit log ----------------------------------------------------------------------------------


def _log(key: Ed25519PrivateKey, events: Sequence[str], contract: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    previous = GENESIS
    for i, event in enumerate(events):
        details: dict[str, Any] = {"contract": contract} if event == "enclave-started" else {"n": i}
        entry = make_log_entry(
            index=i, previous=previous, event=event, details=details, at=NOW, enclave_key=key
        )
        entries.append(entry.to_json())
        previous = entry.digest()
    return entries


EVENTS = ("enclave-started", "key-granted", "key-granted", "job-run", "result-released")


def test_log_head_is_remembered_and_growth_accepted(world: World, tmp_path: Path) -> None:
    enclave, key = _appraised(world)
    state = tmp_path / steps.LOG_STATE_FILE
    entries = _log(key, EVENTS, world.contract.digest)
    head = steps.verify_audit_log(LogHost(entries[:3]), world.alice, enclave, state_file=state)
    assert head.index == 2
    assert steps.read_log_heads(state, world.alice)[enclave.keyid] == head
    grown = steps.verify_audit_log(LogHost(entries), world.alice, enclave, state_file=state)
    assert grown.index == 4
    assert steps.read_log_heads(state, world.alice)[enclave.keyid] == grown


def test_truncated_log_is_detected(world: World, tmp_path: Path) -> None:
    enclave, key = _appraised(world)
    entries = _log(key, EVENTS, world.contract.digest)
    state = tmp_path / steps.LOG_STATE_FILE
    steps.verify_audit_log(LogHost(entries), world.alice, enclave, state_file=state)
    before = state.read_bytes()
    with pytest.raises(VerificationError, match="truncated"):
        steps.verify_audit_log(LogHost(entries[:3]), world.alice, enclave, state_file=state)
    with pytest.raises(VerificationError, match="truncated"):
        steps.verify_audit_log(LogHost([]), world.alice, enclave, state_file=state)
    assert state.read_bytes() == before  # the remembered head is kept


def test_forked_log_is_detected(world: World, tmp_path: Path) -> None:
    enclave, key = _appraised(world)
    state = tmp_path / steps.LOG_STATE_FILE
    steps.verify_audit_log(
        LogHost(_log(key, EVENTS, world.contract.digest)), world.alice, enclave, state_file=state
    )
    # same length, same signer, another history: a fork at the remembered head
    forked = _log(key, (*EVENTS[:4], "job-failed"), world.contract.digest)
    with pytest.raises(VerificationError, match="forked"):
        steps.verify_audit_log(LogHost(forked), world.alice, enclave, state_file=state)
    # a fork below the head breaks the chain up to it
    rewritten = _log(key, ("enclave-started", "key-destroyed", *EVENTS[2:]), world.contract.digest)
    with pytest.raises(VerificationError, match="forked"):
        steps.verify_audit_log(LogHost(rewritten), world.alice, enclave, state_file=state)


def test_log_of_another_signer_or_contract_is_refused(world: World, tmp_path: Path) -> None:
    enclave, key = _appraised(world)
    state = tmp_path / steps.LOG_STATE_FILE
    stranger = _log(Ed25519PrivateKey.generate(), EVENTS, world.contract.digest)
    with pytest.raises(SignatureError):
        steps.verify_audit_log(LogHost(stranger), world.alice, enclave, state_file=state)
    elsewhere = _log(key, EVENTS, world.other.digest)
    with pytest.raises(VerificationError, match="starts for contract"):
        steps.verify_audit_log(LogHost(elsewhere), world.alice, enclave, state_file=state)
    assert not state.exists()


def test_log_state_belongs_to_one_party(world: World, tmp_path: Path) -> None:
    enclave, key = _appraised(world)
    state = tmp_path / steps.LOG_STATE_FILE
    entries = _log(key, EVENTS, world.contract.digest)
    steps.verify_audit_log(LogHost(entries), world.alice, enclave, state_file=state)
    with pytest.raises(ConfigurationError, match="another party"):
        steps.verify_audit_log(LogHost(entries), world.bob, enclave, state_file=state)


def test_remember_log_head_keeps_the_latest(world: World, tmp_path: Path) -> None:
    state = tmp_path / steps.LOG_STATE_FILE
    keyid = "sha256:" + "77" * 32
    steps.remember_log_head(state, world.alice, keyid, LogHead(4, "sha256:" + "44" * 32))
    steps.remember_log_head(state, world.alice, keyid, LogHead(2, "sha256:" + "22" * 32))
    assert steps.read_log_heads(state, world.alice)[keyid] == LogHead(4, "sha256:" + "44" * 32)
