"""Helpers to test against a real host: a uvicorn server on a loopback port,
a controllable clock, and builders of structurally valid signed messages.

Test code only (nothing in the host's runtime imports this module).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nestor.crypto import signing
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

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)


def fake_digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def envelope_digest(obj: object) -> str:
    return Envelope.from_json(obj).digest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeClock:
    """A thread-safe clock for ``Store(clock=...)`` that moves only when told."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@dataclass
class Messages:
    """Really signed protocol messages with plausible contents. The host never
    verifies them, but they are the real envelopes (``to_json()`` form)."""

    party: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    enclave: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def enclave_keyid(self) -> str:
        return signing.key_id(self.enclave.public_key())

    @property
    def party_id(self) -> str:
        return signing.key_id(self.party.public_key())

    @staticmethod
    def _sign(ptype: str, body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
        return sign_envelope(Envelope(ptype, body), key).to_json()

    def contract(self, title: str = "study", *, signer: Ed25519PrivateKey | None = None) -> Any:
        body = {"title": title, "parties": [], "note": "the host does not read contracts"}
        return self._sign(CONTRACT, body, signer or self.party)

    def cosign(self, envelope: Any, key: Ed25519PrivateKey) -> Any:
        return sign_envelope(Envelope.from_json(envelope), key).to_json()

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
            "commitment": fake_digest(7),
            "enclave": enclave or self.enclave_keyid,
            "wrapped_key": b64encode(b"wrapped!" * 8),
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
            "outputs": [{"name": "mean", "digest": fake_digest(9)}],
            "wrapped_key": b64encode(b"k" * 40),
            "ciphertext": b64encode(b"c" * 64),
        }
        return self._sign(SEALED_RESULT, body, self.enclave)

    def log_entry(self, index: int, *, enclave: Ed25519PrivateKey | None = None) -> Any:
        return make_log_entry(
            index=index,
            previous=fake_digest(index),
            event="job-run",
            details={"job_id": "0" * 32},
            at=T0,
            enclave_key=enclave or self.enclave,
        ).to_json()

    def receipt(self, payload: bytes = b'{"_type":"statement"}') -> dict[str, Any]:
        return {
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": b64encode(payload),
            "signatures": [{"keyid": self.enclave_keyid, "sig": b64encode(b"s" * 64)}],
        }


@contextmanager
def live_server(app: Any, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a free port of ``host`` in a
    thread (lifespan on); yields its base URL and stops it on exit."""
    import uvicorn

    # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
