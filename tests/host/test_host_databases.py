"""The host's store on both databases it supports: SQLite (a file) and a real
PostgreSQL server started for this session (initdb + pg_ctl on a loopback
port). Every store test runs on both."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nestor.host.errors import (
    BadRequestError,
    JobExistsError,
    JobStateError,
    LogEntryExistsError,
    NotFoundError,
    ReceiptExistsError,
)
from nestor.host.store import JobStatus, Store, StoreConfigurationError, json_list
from nestor.host.testing import FakeClock, Messages, envelope_digest, fake_digest, free_port

PG_BIN = Path(os.environ.get("NESTOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
C1, C2 = fake_digest(1), fake_digest(2)


# -- a real PostgreSQL server ------------------------------------------------------------------


def _as_postgres(argv: list[str]) -> list[str]:
    """The server refuses to run as root: run its tools as postgres then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    host: str
    port: int
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"nestor_t{next(self._names)}"
        with psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    base = Path(tempfile.mkdtemp(prefix="nestor-pg-"))
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    options = (
        f"-k {base} -p {port} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        subprocess.run(
            _as_postgres([str(initdb), "-D", str(data), "--auth=trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        start = [str(pg_ctl), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
        subprocess.run(
            _as_postgres(start),
            check=True,
            capture_output=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL: {exc.stderr!r}\n{server_log}")
    try:
        yield PostgresServer("127.0.0.1", port, itertools.count())
    finally:
        subprocess.run(
            _as_postgres([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/host.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    s = Store(store_url, clock=clock)
    yield s
    s.close()


@pytest.fixture
def msgs() -> Messages:
    return Messages()


def _job_ids(store: Store, n: int, contract: str = C1) -> list[str]:
    m = Messages()
    ids = []
    for i in range(n):
        job_id = f"{i:032x}"
        store.add_job(job_id, contract, m.job(contract, job_id))
        ids.append(job_id)
    return ids


# -- documents ------------------------------------------------------------------------------


def test_contracts_are_stored_as_received_and_replaced_by_digest(
    store: Store, msgs: Messages
) -> None:
    c = msgs.contract()
    digest = envelope_digest(c)
    assert store.get_contract(digest) is None
    store.put_contract(digest, c)
    assert json.loads(store.get_contract(digest) or "null") == c
    cosigned = msgs.cosign(c, Messages().party)
    store.put_contract(digest, cosigned)
    stored = store.get_contract(digest)
    assert stored is not None
    assert len(json.loads(stored)["signatures"]) == 2
    assert store.contract_digests() == [digest]


def test_latest_announcement_is_the_last_posted_for_that_contract(store: Store) -> None:
    first, second, other = Messages(), Messages(), Messages()
    store.add_announcement(C1, first.enclave_keyid, first.announcement(C1))
    store.add_announcement(C2, other.enclave_keyid, other.announcement(C2))
    store.add_announcement(C1, second.enclave_keyid, second.announcement(C1))
    latest = store.latest_announcement(C1)
    assert latest is not None
    assert '"signing_key"' in latest
    assert (
        json.loads(latest)["signed"]["signing_key"]
        == second.announcement(C1)["signed"]["signing_key"]
    )
    assert store.latest_announcement(C2) is not None
    assert store.latest_announcement(fake_digest(3)) is None


def test_blob_metadata_upserts(store: Store) -> None:
    store.put_blob("a", 3, "00" * 32)
    store.put_blob("a", 5, "11" * 32)
    store.put_blob("b", 0, "22" * 32)
    meta = store.get_blob("a")
    assert meta is not None
    assert (meta.size, meta.sha256) == (5, "11" * 32)
    assert [b.name for b in store.list_blobs()] == ["a", "b"]
    assert store.get_blob("zz") is None


def test_grants_keep_posting_order_and_reposting_is_idempotent(
    store: Store, msgs: Messages
) -> None:
    grants = [msgs.grant(C1, f"d{i}") for i in range(3)]
    for g in grants:
        store.add_grant(envelope_digest(g), C1, msgs.enclave_keyid, g)
    store.add_grant(envelope_digest(grants[0]), C1, msgs.enclave_keyid, grants[0])
    other = Messages()
    store.add_grant(envelope_digest(other.grant(C1)), C1, other.enclave_keyid, other.grant(C1))
    got = json_list("grants", store.grants_for(msgs.enclave_keyid))
    assert json.loads(got) == {"grants": grants}
    assert store.grants_for(fake_digest(5)) == []


def test_results_filter_by_job_and_recipient(store: Store, msgs: Messages) -> None:
    job1, job2 = fake_digest(11), fake_digest(12)
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    for job, rcpt in [(job1, a), (job1, b), (job2, a)]:
        r = msgs.result(C1, job, rcpt)
        store.add_result(envelope_digest(r), C1, job, rcpt, r)
        store.add_result(envelope_digest(r), C1, job, rcpt, r)  # idempotent
    assert len(store.results_for(job1)) == 2
    assert len(store.results_for(job1, a)) == 1
    assert len(store.results_for(job2, b)) == 0


def test_receipts_accept_the_same_receipt_again_but_not_another(
    store: Store, msgs: Messages
) -> None:
    job_id = "f" * 32
    store.put_receipt(job_id, msgs.receipt())
    store.put_receipt(job_id, msgs.receipt())
    with pytest.raises(ReceiptExistsError):
        store.put_receipt(job_id, msgs.receipt(b"other"))
    assert store.get_receipt(job_id) is not None
    assert store.get_receipt("e" * 32) is None


def test_log_entries_are_ordered_by_index_and_never_overwritten(
    store: Store, msgs: Messages
) -> None:
    for i in (2, 0, 1):
        store.add_log_entry(msgs.enclave_keyid, i, msgs.log_entry(i))
    with pytest.raises(LogEntryExistsError):
        store.add_log_entry(msgs.enclave_keyid, 1, msgs.log_entry(1))
    other = Messages()
    store.add_log_entry(other.enclave_keyid, 1, other.log_entry(1))  # another enclave's log
    entries = [json.loads(e) for e in store.log_entries(msgs.enclave_keyid)]
    assert [e["signed"]["index"] for e in entries] == [0, 1, 2]


# -- the queue ------------------------------------------------------------------------------


def test_jobs_are_queued_and_duplicate_ids_refused(store: Store, msgs: Messages) -> None:
    request = msgs.job(C1, "1" * 32)
    job = store.add_job("1" * 32, C1, request)
    assert (job.status, job.attempts, job.error) == (JobStatus.QUEUED, 0, None)
    assert job.request_json() == request
    with pytest.raises(JobExistsError):
        store.add_job("1" * 32, C1, msgs.job(C1, "1" * 32))
    assert store.count_jobs() == 1
    assert store.get_job("2" * 32) is None


def test_lease_takes_the_oldest_job_then_none(store: Store) -> None:
    ids = _job_ids(store, 3)
    got = [store.lease_job("w", 60) for _ in range(4)]
    assert [g.job_id if g else None for g in got] == [*ids, None]
    job = store.get_job(ids[0])
    assert job is not None
    assert (job.status, job.lease_owner, job.attempts) == (JobStatus.RUNNING, "w", 1)
    assert store.count_jobs(JobStatus.RUNNING) == 3


def test_lease_can_be_limited_to_one_contract(store: Store) -> None:
    (a,) = _job_ids(store, 1, C1)
    m = Messages()
    store.add_job("b" * 32, C2, m.job(C2, "b" * 32))
    leased = store.lease_job("w", 60, contract=C2)
    assert leased is not None
    assert leased.job_id == "b" * 32
    assert store.lease_job("w", 60, contract=C2) is None
    leased = store.lease_job("w", 60)
    assert leased is not None
    assert leased.job_id == a


def test_an_expired_lease_goes_back_to_the_queue(store: Store, clock: FakeClock) -> None:
    (job_id,) = _job_ids(store, 1)
    first = store.lease_job("w1", 30)
    assert first is not None
    assert store.lease_job("w2", 30) is None
    clock.advance(29)
    assert store.lease_job("w2", 30) is None
    clock.advance(2)
    second = store.lease_job("w2", 30)
    assert second is not None
    assert (second.job_id, second.worker, second.attempts) == (job_id, "w2", 2)
    # The first worker lost the job: it may not complete it in the new holder's name.
    with pytest.raises(JobStateError):
        store.complete_job(job_id, JobStatus.DONE, None, worker="w1")
    store.complete_job(job_id, JobStatus.DONE, None, worker="w2")


def test_requeue_expired_makes_expiry_visible(store: Store, clock: FakeClock) -> None:
    ids = _job_ids(store, 2)
    store.lease_job("w", 10)
    store.lease_job("w", 100)
    clock.advance(50)
    assert store.requeue_expired() == 1
    job = store.get_job(ids[0])
    assert job is not None
    assert (job.status, job.lease_owner) == (JobStatus.QUEUED, None)
    assert store.get_job(ids[1]) is not None
    assert store.count_jobs(JobStatus.RUNNING) == 1


def test_complete_rules(store: Store) -> None:
    a, b = _job_ids(store, 2)
    with pytest.raises(NotFoundError):
        store.complete_job("9" * 32, JobStatus.DONE, None)
    with pytest.raises(JobStateError):  # queued, not leased
        store.complete_job(a, JobStatus.DONE, None)
    with pytest.raises(BadRequestError):
        store.complete_job(a, JobStatus.RUNNING, None)
    store.lease_job("w", 60)
    store.lease_job("w", 60)
    done = store.complete_job(a, JobStatus.DONE, None)
    assert (done.status, done.lease_expires_at) == (JobStatus.DONE, None)
    assert store.complete_job(a, JobStatus.DONE, None).status == JobStatus.DONE  # a retry
    with pytest.raises(JobStateError):
        store.complete_job(a, JobStatus.FAILED, "changed my mind")
    failed = store.complete_job(b, JobStatus.FAILED, "program crashed")
    assert (failed.status, failed.error) == (JobStatus.FAILED, "program crashed")
    assert [j.job_id for j in store.list_jobs(JobStatus.FAILED)] == [b]
    assert store.lease_job("w", 60) is None  # finished jobs are never leased


def test_concurrent_leasers_never_share_a_job(store_url: str) -> None:
    """Many threads, each with its own store (own connections), lease until
    the queue is empty: every job is leased exactly once."""
    setup = Store(store_url)
    ids = _job_ids(setup, 120)
    setup.close()
    leased: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        s = Store(store_url)
        try:
            barrier.wait()
            while (job := s.lease_job(f"w{n}", 300)) is not None:
                leased[n].append(job.job_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [j for part in leased for j in part]
    assert sorted(everything) == sorted(ids)
    assert len(set(everything)) == len(everything)


# -- durability and configuration ------------------------------------------------------------


def test_a_reopened_store_has_everything(store_url: str, msgs: Messages) -> None:
    s = Store(store_url)
    c = msgs.contract()
    s.put_contract(envelope_digest(c), c)
    _job_ids(s, 3)
    s.lease_job("w", 60)
    s.close()
    again = Store(store_url)
    assert again.get_contract(envelope_digest(c)) is not None
    assert again.count_jobs(JobStatus.QUEUED) == 2
    assert again.count_jobs(JobStatus.RUNNING) == 1
    again.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "nonsense://x", "mysql://"])
def test_unusable_database_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(StoreConfigurationError) as info:
        Store(url)
    assert info.value.exit_code == 2


def test_an_unreachable_postgres_names_the_database_without_a_password() -> None:
    port = free_port()
    with pytest.raises(StoreConfigurationError) as info:
        Store(f"postgresql+psycopg://postgres:secret@127.0.0.1:{port}/x?connect_timeout=2")
    assert "secret" not in info.value.message
    assert f"127.0.0.1:{port}" in info.value.message


# -- the host served on PostgreSQL, as a process -----------------------------------------------


def test_nestor_host_serve_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.new_database()
    nestor = Path(sys.executable).parent / "nestor"
    argv = [str(nestor), "host", "serve", "--data-dir", str(tmp_path / "d")]
    argv += ["--database", url, "--listen", "127.0.0.1:0"]
    msgs = Messages()

    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), proc.stderr
        return proc, line.removeprefix("listening on ")

    proc, base = start()
    try:
        job = msgs.job(C1)
        assert httpx.post(f"{base}/v1/jobs", json=job).status_code == 201
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    proc, base = start()
    try:
        r = httpx.post(f"{base}/v1/jobs/lease", json={"worker": "w", "lease_seconds": 60})
        assert r.status_code == 200
        assert r.json() == {"job_id": job["signed"]["job_id"], "request": job}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
