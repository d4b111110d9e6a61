"""Fixtures for the host tests: signed messages, a real PostgreSQL server,
stores on both databases, and a real uvicorn server on a loopback port."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from nestor.crypto import signing
from nestor.host.store import Store
from nestor.protocol.b64 import b64encode
from nestor.protocol.contract import PAYLOAD_TYPE as CONTRACT
from nestor.protocol.envelope import Envelope, sign_envelope
from nestor.protocol.messages import (
    IN_TOTO_PAYLOAD_TYPE,
    JOB_REQUEST,
    KEY_GRANT,
    SEALED_RESULT,
    make_announcement,
    make_log_entry,
    new_id,
)

PG_BIN = Path(os.environ.get("NESTOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- signed messages ---------------------------------------------------------------------------


def _digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


@dataclass
class Messages:
    """Builds structurally valid, really signed protocol messages. The host
    never verifies signatures, but the messages are the real thing."""

    party: Ed25519PrivateKey
    enclave: Ed25519PrivateKey

    @property
    def enclave_keyid(self) -> str:
        return signing.key_id(self.enclave.public_key())

    @property
    def party_id(self) -> str:
        return signing.key_id(self.party.public_key())

    def _sign(self, ptype: str, body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
        return sign_envelope(Envelope(ptype, body), key).to_json()

    def contract(self, title: str = "study", *, signer: Ed25519PrivateKey | None = None) -> Any:
        body = {"title": title, "parties": [], "note": "structure is not the host's business"}
        return self._sign(CONTRACT, body, signer or self.party)

    def announcement(self, contract: str, *, enclave: Ed25519PrivateKey | None = None) -> Any:
        return make_announcement(
            contract=contract,
            enclave_id=new_id(),
            signing_key=enclave or self.enclave,
            hpke_keys={"x25519-hkdf-sha256/aes-256-gcm": b"\x01" * 32},
            platform="simulated",
            evidence=b"evidence",
            collateral=None,
            started_at=T0,
        ).to_json()

    def grant(self, contract: str, dataset: str = "d1", *, enclave: str | None = None) -> Any:
        body = {
            "contract": contract,
            "dataset": dataset,
            "commitment": _digest(7),
            "enclave": enclave or self.enclave_keyid,
            "wrapped_key": b64encode(b"wrapped" * 8),
            "granted_at": "2026-01-01T00:00:00Z",
        }
        return self._sign(KEY_GRANT, body, self.party)

    def job(self, contract: str, job_id: str | None = None) -> Any:
        body = {
            "contract": contract,
            "job_id": job_id or new_id(),
            "program": "mean",
            "parameters": {"column": "age"},
            "inputs": ["d1"],
            "nonce": new_id(),
            "submitted_at": "2026-01-01T00:00:00Z",
        }
        return self._sign(JOB_REQUEST, body, self.party)

    def result(self, contract: str, job: str, recipient: str) -> Any:
        body = {
            "contract": contract,
            "job": job,
            "recipient": recipient,
            "outputs": [{"name": "mean", "digest": _digest(9)}],
            "wrapped_key": b64encode(b"k" * 40),
            "ciphertext": b64encode(b"c" * 64),
        }
        return self._sign(SEALED_RESULT, body, self.enclave)

    def log_entry(self, index: int, *, enclave: Ed25519PrivateKey | None = None) -> Any:
        return make_log_entry(
            index=index,
            previous=_digest(index),
            event="job-run",
            details={"job_id": "0" * 32},
            at=T0,
            enclave_key=enclave or self.enclave,
        ).to_json()

    def receipt(self, payload: bytes = b'{"_type":"x"}') -> dict[str, Any]:
        return {
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": b64encode(payload),
            "signatures": [{"keyid": self.enclave_keyid, "sig": b64encode(b"s" * 64)}],
        }


@pytest.fixture
def msgs() -> Messages:
    return Messages(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())


def envelope_digest(obj: Any) -> str:
    return Envelope.from_json(obj).digest()


@pytest.fixture
def digest_of() -> Callable[[Any], str]:
    return envelope_digest


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- PostgreSQL: a real server for the session -------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the postgres user when we are root (the server refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PostgresServer:
    host: str
    port: int
    _counter: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"nestor_t{next(self._counter)}"
        with psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # noqa: S608 - a name we made up
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    base = Path(tempfile.mkdtemp(prefix="nestor-pg-"))
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    try:
        subprocess.run(
            _as_postgres(
                [str(initdb), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-k {base} -p {port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_postgres([str(pg_ctl), "-D", str(data), "-l", str(log), "-o", options, "-w"])
            + ["start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL: {exc.stderr!r} {text}")
    try:
        yield PostgresServer("127.0.0.1", port, itertools.count())
    finally:
        subprocess.run(
            _as_postgres([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


# -- stores on both databases ------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/host.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    s = Store(store_url, clock=clock)
    yield s
    s.close()


# -- a real uvicorn server ---------------------------------------------------------------------


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def serve() -> Callable[[FastAPI], Any]:
    return live_server
