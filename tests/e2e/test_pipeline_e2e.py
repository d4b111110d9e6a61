"""The whole pipeline with real processes over loopback: `nestor host serve`
with its dispatcher starting `nestor enclave run --tee sim`, three parties
using the client library. Then the host turns hostile: each attack must be
detected with a specific error, no key released, no plaintext outside the
enclave."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nestor.client import contracts, party, pipeline
from nestor.client.host_api import HostClient
from nestor.crypto import hpke
from nestor.errors import AppraisalError, NestorError, VerificationError
from nestor.protocol import messages
from nestor.protocol.contract import VerifiedContract, verify_contract
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import load_vendor_public_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

NET_PROBE = """
import socket


def run(inputs, parameters, context):
    s = socket.create_connection(("127.0.0.1", 1), timeout=2)
    return {"meta": {"connected": True}}
"""

ESCAPE = """
from pathlib import Path


def run(inputs, parameters, context):
    Path(parameters["target"]).write_text("written from the enclave program")
    return {"meta": {"wrote": True}}
"""

THIEF = """
from pathlib import Path


def run(inputs, parameters, context):
    data = Path(parameters["target"]).read_bytes()
    return {"meta": {"stolen": data.hex()}}
"""


@dataclass
class Collab:
    root: Path
    dirs: list[Path]
    members: list[party.Party]
    contract: VerifiedContract
    contract_path: Path
    host: HostClient
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    def enclave(self) -> pipeline.VerifiedEnclave:
        deadline = time.monotonic() + 30
        while True:
            try:
                return pipeline.verify_enclave(
                    self.host,
                    self.contract,
                    now=datetime.now(UTC),
                    simulated_vendor_keys=[load_vendor_public_key()],
                )
            except (pipeline.NoEnclaveError, NestorError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.root / "host" / "host.db")

    def upload_all(self, enclave: pipeline.VerifiedEnclave) -> list[pipeline.UploadReceipt]:
        out = []
        for i, (m, d) in enumerate(zip(self.members, self.dirs, strict=True)):
            out.append(
                pipeline.upload_dataset(
                    self.host,
                    m,
                    self.contract,
                    f"visits-{i + 1}",
                    d / "visits.csv",
                    now=datetime.now(UTC),
                    enclave=enclave,
                    work_dir=d,
                    party_dir=d,
                )
            )
        return out

    def run_job(self, program: str = "pooled-stats", params: dict[str, Any] | None = None) -> str:
        job_id = pipeline.submit_job(
            self.host, self.members[0], self.contract, program, params or {}, now=datetime.now(UTC)
        )
        pipeline.wait_job(self.host, job_id, timeout=60)
        return job_id

    def failed_job(self, program: str, params: dict[str, Any] | None = None) -> str:
        job_id = pipeline.submit_job(
            self.host, self.members[0], self.contract, program, params or {}, now=datetime.now(UTC)
        )
        with pytest.raises(pipeline.JobFailedError) as info:
            pipeline.wait_job(self.host, job_id, timeout=60)
        return info.value.message


def _bundle(programs: Path, name: str, source: str) -> Path:
    b = programs / name / name.replace("-", "_")
    b.mkdir(parents=True)
    (b / "__init__.py").write_text("")
    (b / "main.py").write_text(source)
    return programs / name


def _visits(path: Path, rows: int, seed: int) -> None:
    from nestor.cli.demo import make_visits

    make_visits(path, rows, seed)


def _start_host(
    root: Path, contract_path: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nestor.cli.main",
            "host",
            "serve",
            "--data-dir",
            str(root / "host"),
            "--listen",
            "127.0.0.1:0",
            "--enclave-contract",
            str(contract_path),
            "--tee",
            "sim",
        ],
        stdout=subprocess.PIPE,
        stderr=(root / "host.log").open("ab"),
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("listening on "), (root / "host.log").read_text()[-2000:]
    return proc, line.removeprefix("listening on ")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def collab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Collab]:
    root = tmp_path
    programs = root / "programs"
    shutil.copytree(EXAMPLES / "pooled-stats", programs / "pooled-stats")
    _bundle(programs, "net-probe", NET_PROBE)
    _bundle(programs, "escape", ESCAPE)
    _bundle(programs, "thief", THIEF)
    env = {
        **os.environ,
        "NESTOR_CONFIG_DIR": str(root / "config"),
        "NESTOR_PROGRAMS_DIR": str(programs),
    }
    monkeypatch.setenv("NESTOR_CONFIG_DIR", env["NESTOR_CONFIG_DIR"])
    names = ("Northside Hospital", "Riverside Hospital", "Lakeside Clinic")
    dirs = [root / f"party-{i + 1}" for i in range(3)]
    members = [party.init_party(d, n) for d, n in zip(dirs, names, strict=True)]
    for i, d in enumerate(dirs):
        _visits(d / "visits.csv", 400, seed=i + 1)
    now = datetime.now(UTC).replace(microsecond=0)
    c = contracts.new_contract(
        "e2e", "e2e", not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=1)
    )
    for i, m in enumerate(members):
        roles = ["data-provider", "result-recipient"] + (["job-submitter"] if i == 0 else [])
        c = contracts.add_party(c, m.card, roles)
        c = contracts.add_dataset(
            c,
            dataset_id=f"visits-{i + 1}",
            owner=m.card.party_id,
            description="visits",
            fmt="csv",
            columns=None,
        )
    inputs = [f"visits-{i + 1}" for i in range(3)]
    recipients = [(members[0].card.party_id, "full"), (members[1].card.party_id, "own")]
    for pid, entry in (
        ("pooled-stats", "pooled_stats.main:run"),
        ("net-probe", "net_probe.main:run"),
        ("escape", "escape.main:run"),
        ("thief", "thief.main:run"),
    ):
        c = contracts.add_program(
            c,
            program_id=pid,
            bundle=programs / pid,
            entry_point=entry,
            description=pid,
            inputs=inputs,
            recipients=recipients,
            min_group_size=5,
            parameters={
                "group_by": {"type": "string", "required": False},
                "target": {"type": "string", "required": False},
            },
        )
    c = contracts.set_policy(
        c,
        platforms=[{"platform": "simulated", "measurements": [measure_enclave()]}],
        submitters=[members[0].card.party_id],
        retention={"destroy_keys": "at-expiry"},
    )
    for m in members:
        c = contracts.sign(c, m)
    contract_path = root / "contract.json"
    contracts.save_contract(contract_path, c)
    verified = verify_contract(contracts.load_contract(contract_path), now=datetime.now(UTC))
    proc, url = _start_host(root, contract_path, env)
    host = HostClient(url)
    host.put_contract(verified.contract.envelope.to_json())
    collab = Collab(root, dirs, members, verified, contract_path, host, url, proc, env)
    try:
        yield collab
    finally:
        _stop(collab.proc)  # the host running now (a test may have restarted it)


def _results_dir(c: Collab, i: int, name: str) -> Path:
    return c.dirs[i] / name


# -- the happy path ---------------------------------------------------------------------------


def test_happy_path(collab: Collab) -> None:
    enclave = collab.enclave()
    assert enclave.result.platform.value == "simulated"
    ups = collab.upload_all(enclave)
    job_id = collab.run_job(params={"group_by": "ward"})
    north = pipeline.fetch_results(
        collab.host,
        collab.members[0],
        collab.contract,
        job_id,
        enclave=enclave,
        out_dir=collab.dirs[0] / "r",
        known_commitments={u.dataset: [u.commitment] for u in ups},
    )
    assert {"summary.csv", "per_owner.csv", "meta.json"} <= set(north)
    # the own-view recipient sees only its own rows of per-owner tables
    river = pipeline.fetch_results(
        collab.host,
        collab.members[1],
        collab.contract,
        job_id,
        enclave=enclave,
        out_dir=collab.dirs[1] / "r",
    )
    own_rows = river["per_owner.csv"].read_text().splitlines()[1:]
    assert own_rows
    assert all(collab.members[1].card.party_id in row for row in own_rows)
    full_rows = north["per_owner.csv"].read_text().splitlines()[1:]
    assert len(full_rows) > len(own_rows)
    # the third party is not a recipient: nothing is sealed to it
    with pytest.raises(NestorError):
        pipeline.fetch_results(
            collab.host,
            collab.members[2],
            collab.contract,
            job_id,
            enclave=enclave,
            out_dir=collab.dirs[2] / "r",
        )
    head = pipeline.verify_audit_log(
        collab.host, collab.members[0], enclave, state_file=collab.dirs[0] / "heads.json"
    )
    assert head.index >= 5
    # The enclave (its output goes to the host's log) reports the job's phases,
    # and not each request of its queue polling.
    log = (collab.root / "host.log").read_text()
    done = [line for line in log.splitlines() if f"job {job_id} done in " in line]
    assert len(done) == 1, log[-3000:]
    assert "fetch_decrypt_verify=" in done[0]
    assert "seal_sign_publish=" in done[0]
    assert "program pooled-stats ran: " in log
    assert " read_inputs=" in log
    assert "HTTP Request:" not in log


# -- host attacks ------------------------------------------------------------------------------


def test_altered_blob_is_detected(collab: Collab) -> None:
    enclave = collab.enclave()
    ups = collab.upload_all(enclave)
    blob = collab.root / "host" / "blobs" / ups[1].blob
    data = bytearray(blob.read_bytes())
    data[500] ^= 0x01
    blob.write_bytes(bytes(data))
    reason = collab.failed_job("pooled-stats")
    assert "dataset 'visits-2'" in reason
    assert "not the one its owner granted" in reason
    assert collab.host.get_results(_job_digest(collab), collab.members[0].card.party_id) == []


def test_swapped_blob_is_detected(collab: Collab) -> None:
    enclave = collab.enclave()
    ups = collab.upload_all(enclave)
    blobs = collab.root / "host" / "blobs"
    shutil.copyfile(blobs / ups[0].blob, blobs / ups[2].blob)
    reason = collab.failed_job("pooled-stats")
    assert "dataset 'visits-3'" in reason
    assert "not the one its owner granted" in reason


def _job_digest(collab: Collab) -> str:
    with collab.db() as db:
        (request,) = db.execute("select request from jobs order by seq desc limit 1").fetchone()
    env = json.loads(request)
    from nestor.protocol.envelope import Envelope

    return Envelope.from_json(env).digest()


def test_old_grant_replayed_to_new_enclave(collab: Collab) -> None:
    old = collab.enclave()
    collab.upload_all(old)
    # The enclave restarts (the dispatcher brings it back with new keys) ...
    os.killpg(_enclave_pid(collab), signal.SIGKILL)
    deadline = time.monotonic() + 90
    new = old
    while new.keyid == old.keyid:
        assert time.monotonic() < deadline, "the dispatcher did not restart the enclave"
        time.sleep(0.5)
        new = collab.enclave()
    # ... and the hostile host re-files the old grants under the new enclave.
    with collab.db() as db:
        db.execute("update grants set enclave = ?", (new.keyid,))
    reason = collab.failed_job("pooled-stats")
    assert "no key grant for dataset" in reason
    # After the parties verify the new enclave and re-grant, nothing is lost.
    for i, (m, d) in enumerate(zip(collab.members, collab.dirs, strict=True)):
        pipeline.regrant(collab.host, m, collab.contract, f"visits-{i + 1}",
                         now=datetime.now(UTC), enclave=new, party_dir=d)  # fmt: skip
    collab.run_job()


def _enclave_pid(collab: Collab) -> int:
    out = subprocess.run(
        ["pgrep", "-f", "enclave run"], capture_output=True, text=True, check=False
    )
    pids = [int(p) for p in out.stdout.split()]
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(collab.root).encode() in env:
            return os.getpgid(pid)
    raise AssertionError("enclave process not found")


def test_job_not_signed_by_an_authorised_party(collab: Collab) -> None:
    collab.upload_all(collab.enclave())
    # Riverside provides data but may not submit jobs; the host queues its request anyway.
    request = messages.make_job_request(
        contract=collab.contract.contract,
        program="pooled-stats",
        parameters={},
        submitter_key=collab.members[1].signing_key,
        submitted_at=datetime.now(UTC),
    )
    job_id = request.signed["job_id"]
    collab.host.submit_job(request.to_json())
    with pytest.raises(pipeline.JobFailedError, match="not signed by a party the contract allows"):
        pipeline.wait_job(collab.host, job_id, timeout=60)


def test_job_naming_a_program_not_in_the_contract(collab: Collab) -> None:
    collab.upload_all(collab.enclave())
    request = messages.make_job_request(
        contract=collab.contract.contract,
        program="exfiltrate",
        parameters={},
        submitter_key=collab.members[0].signing_key,
        submitted_at=datetime.now(UTC),
    )
    collab.host.submit_job(request.to_json())
    with pytest.raises(
        pipeline.JobFailedError, match="'exfiltrate', which the contract does not list"
    ):
        pipeline.wait_job(collab.host, request.signed["job_id"], timeout=60)


def test_altered_result_is_refused(collab: Collab) -> None:
    enclave = collab.enclave()
    collab.upload_all(enclave)
    job_id = collab.run_job()
    with collab.db() as db:
        rows = db.execute("select id, document from results").fetchall()
        for rid, doc in rows:
            obj = json.loads(doc)
            ct = bytearray(base64.urlsafe_b64decode(obj["signed"]["ciphertext"] + "=="))
            ct[3] ^= 1
            obj["signed"]["ciphertext"] = base64.urlsafe_b64encode(bytes(ct)).rstrip(b"=").decode()
            db.execute("update results set document = ? where id = ?", (json.dumps(obj), rid))
    with pytest.raises(NestorError, match=r"edited after signing|does not verify|modified"):
        pipeline.fetch_results(
            collab.host,
            collab.members[0],
            collab.contract,
            job_id,
            enclave=enclave,
            out_dir=collab.dirs[0] / "r",
        )
    assert not (collab.dirs[0] / "r" / "summary.csv").exists()


def test_truncated_and_forked_log(collab: Collab) -> None:
    enclave = collab.enclave()
    collab.upload_all(enclave)
    collab.run_job()
    state = collab.dirs[0] / "heads.json"
    head = pipeline.verify_audit_log(collab.host, collab.members[0], enclave, state_file=state)
    with collab.db() as db:
        (doc,) = db.execute("select document from log_entries where entry_index = 1").fetchone()
        db.execute("delete from log_entries where entry_index = ?", (head.index,))
    with pytest.raises(VerificationError, match="truncated"):
        pipeline.verify_audit_log(collab.host, collab.members[0], enclave, state_file=state)
    with collab.db() as db:
        obj = json.loads(doc)
        obj["signed"]["details"] = {"dataset": "visits-9"}
        db.execute("update log_entries set document = ? where entry_index = 1", (json.dumps(obj),))
    with pytest.raises(NestorError, match="log entry 1"):
        pipeline.verify_audit_log(
            collab.host, collab.members[1], enclave, state_file=collab.dirs[1] / "h.json"
        )


def test_evidence_with_another_measurement_is_refused(collab: Collab) -> None:
    """The running enclave's real evidence, appraised under a policy that
    expects another build: the party refuses, so no key is granted."""
    from nestor.attestation.appraisal import require_accepted
    from nestor.attestation.binding import report_data_for
    from nestor.attestation.verify import verify_evidence
    from nestor.protocol.contract import EnclavePolicy, PlatformPolicy

    ann = collab.enclave().announcement
    result = verify_evidence(
        ann.evidence, now=datetime.now(UTC), simulated_vendor_keys=[load_vendor_public_key()]
    )
    other = EnclavePolicy(
        (PlatformPolicy("simulated", {"platform": "simulated", "measurements": ["11" * 32]}),),
        ("UpToDate",),
    )
    expected = report_data_for(
        collab.contract.contract.digest, ann.signing_key.public_bytes_raw(), ann.hpke_keys
    )
    with pytest.raises(AppraisalError) as info:
        require_accepted(result, other, expected_report_data=expected)
    assert any("measurement" in r and "differs" in r for r in info.value.reasons)
    assert "no key is released" in info.value.diagnostics()


# -- the sandbox -----------------------------------------------------------------------------------


def test_program_cannot_open_a_network_connection(collab: Collab) -> None:
    collab.upload_all(collab.enclave())
    reason = collab.failed_job("net-probe")
    assert "the program 'net-probe' failed" in reason
    assert "Network is unreachable" in reason


def test_program_cannot_write_outside_its_scratch(collab: Collab) -> None:
    collab.upload_all(collab.enclave())
    target = Path("/var/tmp") / f"nestor-escaped-{os.getpid()}.txt"
    reason = collab.failed_job("escape", {"target": str(target)})
    assert "the program 'escape' failed" in reason
    assert "Read-only file system" in reason
    assert not target.exists()


def test_program_cannot_read_a_party_key(collab: Collab) -> None:
    collab.upload_all(collab.enclave())
    key_file = collab.dirs[1] / "signing.key"
    reason = collab.failed_job("thief", {"target": str(key_file)})
    assert "the program 'thief' failed" in reason
    assert "No such file or directory" in reason  # the party's files are not in the sandbox


def test_host_restart_loses_nothing(collab: Collab) -> None:
    enclave = collab.enclave()
    collab.upload_all(enclave)
    job_id = collab.run_job()
    collab.proc.send_signal(signal.SIGKILL)
    collab.proc.wait()
    proc, url = _start_host(collab.root, collab.contract_path, collab.env)
    collab.proc = proc
    collab.host = HostClient(url)
    status = collab.host.job_status(job_id)
    assert status.status == "done"
    pipeline.fetch_results(
        collab.host,
        collab.members[0],
        collab.contract,
        job_id,
        enclave=enclave,
        out_dir=collab.dirs[0] / "after-restart",
    )


def test_non_recipient_cannot_open_another_partys_result(collab: Collab) -> None:
    enclave = collab.enclave()
    collab.upload_all(enclave)
    job_id = collab.run_job()
    job_digest = _job_digest(collab)
    sealed = collab.host.get_results(job_digest, collab.members[0].card.party_id)
    assert sealed
    outsider = collab.members[2]  # provides data but is not a result recipient
    with pytest.raises(VerificationError, match="sealed for"):
        messages.open_result(
            sealed[0],
            enclave_key=enclave.signing_key,
            recipient=outsider.card.party_id,
            recipient_private=outsider.hpke_keys[hpke.DEFAULT_SUITE],
        )
    # Even pretending to be the recipient, its own private key does not open the HPKE seal.
    with pytest.raises(VerificationError, match="does not open"):
        messages.open_result(
            sealed[0],
            enclave_key=enclave.signing_key,
            recipient=collab.members[0].card.party_id,
            recipient_private=outsider.hpke_keys[hpke.DEFAULT_SUITE],
        )
    assert job_id
