"""Every route of docs/host-api.md over real HTTP (uvicorn on a loopback
port, SQLite store): status codes, JSON shapes, error bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nestor.host.app import create_app
from nestor.host.blobs import BlobStore
from nestor.host.store import Store
from nestor.host.testing import FakeClock, Messages, envelope_digest, fake_digest, live_server

C1, C2 = fake_digest(1), fake_digest(2)
LEASE = {"worker": "enclave-1", "lease_seconds": 60}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/host.db", clock=clock)
    yield s
    s.close()


class Switch:
    """An ASGI app that forwards to the app of the current test, so one
    uvicorn server serves the whole module (each test still gets a fresh
    store and blob directory)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the per-test apps have nothing to start
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switch, str]]:
    switch = Switch()
    with live_server(switch) as url:
        yield switch, url


@pytest.fixture
def client(server: tuple[Switch, str], store: Store, tmp_path: Path) -> Iterator[httpx.Client]:
    switch, url = server
    blobs = BlobStore(tmp_path / "blobs", max_size=1000)
    switch.app = create_app(store, blobs, max_json_bytes=64 * 1024)
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture
def msgs() -> Messages:
    return Messages()


def error_of(r: Any, status: int) -> str:
    """The error id of a response, after checking the status and the error shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["error"])


# -- health and schema -----------------------------------------------------------------------


def test_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/v1/healthz").json() == {"ok": True}


def test_openapi_publishes_every_route(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        "/healthz": {"get"},
        "/v1/contracts": {"put"},
        "/v1/contracts/{digest}": {"get"},
        "/v1/announcements": {"post"},
        "/v1/announcements/latest": {"get"},
        "/v1/blobs/{name}": {"put", "get"},
        "/v1/grants": {"post", "get"},
        "/v1/jobs": {"post"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs/lease": {"post"},
        "/v1/jobs/{job_id}/complete": {"post"},
        "/v1/results": {"post", "get"},
        "/v1/receipts": {"post"},
        "/v1/receipts/{job_id}": {"get"},
        "/v1/log": {"post", "get"},
    }
    assert {p: set(ops) for p, ops in paths.items()} == expected
    body = paths["/v1/blobs/{name}"]["put"]["requestBody"]["content"]
    assert "application/octet-stream" in body


def test_unknown_routes_and_methods_answer_in_the_error_shape(client: httpx.Client) -> None:
    assert error_of(client.get("/v1/nothing"), 404) == "not-found"
    assert error_of(client.delete("/v1/blobs/a"), 405) == "method-not-allowed"


# -- JSON bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "invalid-json"),
        (b"{", "invalid-json"),
        (b'{"a": 1, "a": 2}', "invalid-json"),  # duplicate keys
        (b'{"a": 1.5}', "invalid-json"),  # no floats in Nestor messages
        (b"[]", "invalid-envelope"),
        (b'{"payload_type": "x", "signed": {}, "signatures": []}', "invalid-envelope"),
    ],
)
def test_malformed_bodies(client: httpx.Client, body: bytes, error: str) -> None:
    r = client.put("/v1/contracts", content=body, headers={"content-type": "application/json"})
    assert error_of(r, 400) == error


def test_json_bodies_are_size_limited(client: httpx.Client, msgs: Messages) -> None:
    big = msgs.contract("x" * 70_000)
    assert error_of(client.put("/v1/contracts", json=big), 413) == "too-large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield json.dumps(big).encode()

    assert error_of(client.put("/v1/contracts", content=chunks()), 413) == "too-large"


def test_an_envelope_of_the_wrong_kind_is_refused(client: httpx.Client, msgs: Messages) -> None:
    r = client.post("/v1/jobs", json=msgs.contract())
    assert error_of(r, 400) == "invalid-envelope"
    assert "job-request" in r.json()["detail"]


# -- contracts ---------------------------------------------------------------------------------


def test_contracts(client: httpx.Client, msgs: Messages) -> None:
    c = msgs.contract()
    digest = envelope_digest(c)
    r = client.put("/v1/contracts", json=c)
    assert (r.status_code, r.json()) == (201, {"digest": digest})
    assert client.get(f"/v1/contracts/{digest}").json() == c
    cosigned = msgs.cosign(c, Messages().party)
    assert client.put("/v1/contracts", json=cosigned).json() == {"digest": digest}
    assert client.get(f"/v1/contracts/{digest}").json() == cosigned
    assert error_of(client.get(f"/v1/contracts/{fake_digest(5)}"), 404) == "not-found"
    assert error_of(client.get("/v1/contracts/sha256:XYZ"), 400) == "invalid-identifier"


# -- announcements -----------------------------------------------------------------------------


def test_announcements(client: httpx.Client) -> None:
    old, new, other = Messages(), Messages(), Messages()
    for m, c in [(old, C1), (other, C2), (new, C1)]:
        r = client.post("/v1/announcements", json=m.announcement(c))
        assert (r.status_code, r.json()) == (201, {"keyid": m.enclave_keyid})
    latest = client.get("/v1/announcements/latest", params={"contract": C1}).json()
    assert latest["signed"]["signing_key"] == new.announcement(C1)["signed"]["signing_key"]
    r = client.get("/v1/announcements/latest", params={"contract": fake_digest(3)})
    assert error_of(r, 404) == "not-found"
    assert error_of(client.get("/v1/announcements/latest"), 400) == "bad-request"
    r = client.get("/v1/announcements/latest", params={"contract": "nope"})
    assert error_of(r, 400) == "invalid-identifier"


def test_announcement_fields_the_host_indexes_are_checked(client: httpx.Client) -> None:
    m = Messages()
    bad_key = m.announcement(C1)
    bad_key["signed"]["signing_key"] = "AAAA"
    assert error_of(client.post("/v1/announcements", json=bad_key), 400) == "invalid-envelope"
    bad_contract = m.announcement(C1)
    bad_contract["signed"]["contract"] = "sha256:short"
    assert error_of(client.post("/v1/announcements", json=bad_contract), 400) == "invalid-envelope"


# -- blobs -------------------------------------------------------------------------------------


def test_blobs(client: httpx.Client) -> None:
    r = client.put("/v1/blobs/d1-abc", content=b"ciphertext")
    assert r.status_code == 201
    assert r.json() == {
        "name": "d1-abc",
        "size": 10,
        "sha256": hashlib.sha256(b"ciphertext").hexdigest(),
    }
    got = client.get("/v1/blobs/d1-abc")
    assert (got.status_code, got.content) == (200, b"ciphertext")
    assert got.headers["content-type"] == "application/octet-stream"
    part = client.get("/v1/blobs/d1-abc", headers={"range": "bytes=2-5"})
    assert (part.status_code, part.content) == (206, b"pher")
    assert client.put("/v1/blobs/d1-abc", content=b"v2").json()["size"] == 2
    assert client.get("/v1/blobs/d1-abc").content == b"v2"
    assert error_of(client.get("/v1/blobs/missing"), 404) == "not-found"
    assert error_of(client.put("/v1/blobs/Bad", content=b"x"), 400) == "invalid-identifier"
    assert error_of(client.get("/v1/blobs/.incoming"), 400) == "invalid-identifier"


def test_blob_size_limit(client: httpx.Client) -> None:
    assert error_of(client.put("/v1/blobs/big", content=b"x" * 1001), 413) == "too-large"

    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * 100

    assert error_of(client.put("/v1/blobs/big", content=chunks()), 413) == "too-large"
    assert error_of(client.get("/v1/blobs/big"), 404) == "not-found"
    assert client.put("/v1/blobs/ok", content=b"x" * 1000).status_code == 201


# -- grants ------------------------------------------------------------------------------------


def test_grants(client: httpx.Client, msgs: Messages) -> None:
    grants = [msgs.grant(C1, f"d{i}") for i in range(3)]
    for g in grants:
        r = client.post("/v1/grants", json=g)
        assert (r.status_code, r.json()) == (201, {"id": envelope_digest(g)})
    other = Messages()
    client.post("/v1/grants", json=other.grant(C1))
    r = client.get("/v1/grants", params={"enclave": msgs.enclave_keyid})
    assert r.json() == {"grants": grants}
    assert client.get("/v1/grants", params={"enclave": fake_digest(4)}).json() == {"grants": []}
    assert error_of(client.get("/v1/grants"), 400) == "bad-request"
    no_enclave = msgs.grant(C1)
    del no_enclave["signed"]["enclave"]
    assert error_of(client.post("/v1/grants", json=no_enclave), 400) == "invalid-envelope"


# -- jobs --------------------------------------------------------------------------------------


def test_job_lifecycle(client: httpx.Client, msgs: Messages) -> None:
    job = msgs.job(C1)
    job_id = job["signed"]["job_id"]
    r = client.post("/v1/jobs", json=job)
    assert (r.status_code, r.json()) == (201, {"job_id": job_id, "status": "queued"})
    assert error_of(client.post("/v1/jobs", json=job), 409) == "job-exists"
    assert client.get(f"/v1/jobs/{job_id}").json() == {
        "job_id": job_id,
        "status": "queued",
        "error": None,
        "request": job,
    }
    r = client.post("/v1/jobs/lease", json=LEASE)
    assert (r.status_code, r.json()) == (200, {"job_id": job_id, "request": job})
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    r = client.post("/v1/jobs/lease", json=LEASE)
    assert (r.status_code, r.content) == (204, b"")
    r = client.post(f"/v1/jobs/{job_id}/complete", json={"status": "done", "error": None})
    assert (r.status_code, r.json()) == (200, {"job_id": job_id, "status": "done"})
    # A retried completion is fine; a contradicting one is a conflict.
    assert client.post(f"/v1/jobs/{job_id}/complete", json={"status": "done"}).status_code == 200
    r = client.post(f"/v1/jobs/{job_id}/complete", json={"status": "failed", "error": "x"})
    assert error_of(r, 409) == "job-state"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "done"


def test_failed_jobs_keep_their_error(client: httpx.Client, msgs: Messages) -> None:
    job_id = client.post("/v1/jobs", json=msgs.job(C1)).json()["job_id"]
    client.post("/v1/jobs/lease", json=LEASE)
    r = client.post(
        f"/v1/jobs/{job_id}/complete", json={"status": "failed", "error": "grant missing"}
    )
    assert r.status_code == 200
    got = client.get(f"/v1/jobs/{job_id}").json()
    assert (got["status"], got["error"]) == ("failed", "grant missing")


def test_job_errors(client: httpx.Client, msgs: Messages) -> None:
    job_id = client.post("/v1/jobs", json=msgs.job(C1)).json()["job_id"]
    done = {"status": "done", "error": None}
    assert error_of(client.get("/v1/jobs/" + "0" * 32), 404) == "not-found"
    assert error_of(client.get("/v1/jobs/XYZ"), 400) == "invalid-identifier"
    assert error_of(client.post("/v1/jobs/" + "0" * 32 + "/complete", json=done), 404)
    assert error_of(client.post(f"/v1/jobs/{job_id}/complete", json=done), 409) == "job-state"
    bodies: list[Any] = [
        {"status": "running"},
        {"status": "done", "error": 5},
        {"status": "done", "extra": 1},
        {},
        [],
    ]
    for body in bodies:
        r = client.post(f"/v1/jobs/{job_id}/complete", json=body)
        assert error_of(r, 400) == "bad-request", body
    bad_id = msgs.job(C1, "not-hex")
    assert error_of(client.post("/v1/jobs", json=bad_id), 400) == "invalid-envelope"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"worker": "w"},
        {"worker": "", "lease_seconds": 5},
        {"worker": "w", "lease_seconds": 0},
        {"worker": "w", "lease_seconds": True},
        {"worker": "w", "lease_seconds": "5"},
        {"worker": "w", "lease_seconds": 10**9},
        {"worker": "w", "lease_seconds": 5, "colour": "red"},
        {"worker": "w", "lease_seconds": 5, "contract": "abc"},
    ],
)
def test_lease_requests_are_checked(client: httpx.Client, body: dict[str, Any]) -> None:
    assert error_of(client.post("/v1/jobs/lease", json=body), 400) in (
        "bad-request",
        "invalid-identifier",
    )


def test_lease_for_one_contract(client: httpx.Client, msgs: Messages) -> None:
    client.post("/v1/jobs", json=msgs.job(C1))
    j2 = client.post("/v1/jobs", json=msgs.job(C2)).json()["job_id"]
    r = client.post("/v1/jobs/lease", json={**LEASE, "contract": C2})
    assert r.json()["job_id"] == j2
    assert client.post("/v1/jobs/lease", json={**LEASE, "contract": C2}).status_code == 204


def test_an_expired_lease_is_leased_again(
    client: httpx.Client, clock: FakeClock, msgs: Messages
) -> None:
    job_id = client.post("/v1/jobs", json=msgs.job(C1)).json()["job_id"]
    first = client.post("/v1/jobs/lease", json={"worker": "a", "lease_seconds": 10})
    assert first.json()["job_id"] == job_id
    assert (
        client.post("/v1/jobs/lease", json={"worker": "b", "lease_seconds": 10}).status_code == 204
    )
    clock.advance(11)
    again = client.post("/v1/jobs/lease", json={"worker": "b", "lease_seconds": 10})
    assert again.json()["job_id"] == job_id
    stale = {"status": "done", "error": None, "worker": "a"}
    assert error_of(client.post(f"/v1/jobs/{job_id}/complete", json=stale), 409) == "job-state"
    fresh = {"status": "done", "error": None, "worker": "b"}
    assert client.post(f"/v1/jobs/{job_id}/complete", json=fresh).status_code == 200


# -- results -----------------------------------------------------------------------------------


def test_results(client: httpx.Client, msgs: Messages) -> None:
    job = fake_digest(10)
    alice, bob = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    ra, rb = msgs.result(C1, job, alice), msgs.result(C1, job, bob)
    for res in (ra, rb):
        r = client.post("/v1/results", json=res)
        assert (r.status_code, r.json()) == (201, {"id": envelope_digest(res)})
    got = client.get("/v1/results", params={"job": job, "recipient": alice}).json()
    assert got == {"results": [ra]}
    assert client.get("/v1/results", params={"job": job}).json() == {"results": [ra, rb]}
    other = client.get("/v1/results", params={"job": fake_digest(11), "recipient": alice})
    assert other.json() == {"results": []}
    assert error_of(client.get("/v1/results", params={"job": "x"}), 400) == "invalid-identifier"
    assert error_of(client.get("/v1/results"), 400) == "bad-request"


# -- receipts ----------------------------------------------------------------------------------


def test_receipts(client: httpx.Client, msgs: Messages) -> None:
    job_id = "c" * 32
    receipt = msgs.receipt()
    r = client.post("/v1/receipts", json={"job_id": job_id, "receipt": receipt})
    assert (r.status_code, r.json()) == (201, {"job_id": job_id})
    assert client.get(f"/v1/receipts/{job_id}").json() == receipt
    again = client.post("/v1/receipts", json={"job_id": job_id, "receipt": receipt})
    assert again.status_code == 201
    r = client.post("/v1/receipts", json={"job_id": job_id, "receipt": msgs.receipt(b"2")})
    assert error_of(r, 409) == "receipt-exists"
    assert error_of(client.get("/v1/receipts/" + "d" * 32), 404) == "not-found"
    assert error_of(client.get("/v1/receipts/zz"), 400) == "invalid-identifier"


@pytest.mark.parametrize(
    "body",
    [
        {"job_id": "c" * 32},
        {"job_id": "bad", "receipt": {"payloadType": "t", "payload": "p", "signatures": []}},
        {"job_id": "c" * 32, "receipt": {"payloadType": "t", "payload": "p"}},
        {"job_id": "c" * 32, "receipt": {"payloadType": "t", "payload": 1, "signatures": []}},
        {"job_id": "c" * 32, "receipt": [], "x": 1},
    ],
)
def test_receipt_uploads_are_checked(client: httpx.Client, body: dict[str, Any]) -> None:
    assert error_of(client.post("/v1/receipts", json=body), 400) in (
        "bad-request",
        "invalid-identifier",
        "invalid-envelope",
    )


# -- audit log ---------------------------------------------------------------------------------


def test_log(client: httpx.Client, msgs: Messages) -> None:
    for i in (1, 0, 2):
        r = client.post("/v1/log", json=msgs.log_entry(i))
        assert (r.status_code, r.json()) == (201, {"enclave": msgs.enclave_keyid, "index": i})
    assert error_of(client.post("/v1/log", json=msgs.log_entry(1)), 409) == "log-entry-exists"
    entries = client.get("/v1/log", params={"enclave": msgs.enclave_keyid}).json()["entries"]
    assert [e["signed"]["index"] for e in entries] == [0, 1, 2]
    assert client.get("/v1/log", params={"enclave": fake_digest(1)}).json() == {"entries": []}
    negative = msgs.log_entry(0)
    negative["signed"]["index"] = -1
    assert error_of(client.post("/v1/log", json=negative), 400) == "invalid-envelope"
    assert error_of(client.get("/v1/log"), 400) == "bad-request"
