"""The host under real load on a real uvicorn server (loopback, SQLite):
concurrent leasers over HTTP, a 200 MB blob streamed both ways in bounded
memory, and enclave processes started and stopped with the server."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nestor.host.app import create_app
from nestor.host.blobs import BlobStore
from nestor.host.dispatcher import LocalDispatcher
from nestor.host.store import JobStatus, Store
from nestor.host.testing import Messages, fake_digest, live_server

C1 = fake_digest(1)
MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/host.db")
    yield s
    s.close()


def test_concurrent_leasers_over_http_never_share_a_job(store: Store, tmp_path: Path) -> None:
    app = create_app(store, BlobStore(tmp_path / "blobs"))
    msgs = Messages()
    workers = 8
    with live_server(app) as url:
        with httpx.Client(base_url=url) as c:
            ids = {c.post("/v1/jobs", json=msgs.job(C1)).json()["job_id"] for _ in range(80)}
        leased: list[list[str]] = [[] for _ in range(workers)]
        failures: list[str] = []
        barrier = threading.Barrier(workers)

        def lease(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                barrier.wait()
                while True:
                    r = c.post("/v1/jobs/lease", json={"worker": f"w{n}", "lease_seconds": 300})
                    if r.status_code == 204:
                        return
                    if r.status_code != 200:
                        failures.append(r.text)
                        return
                    leased[n].append(r.json()["job_id"])

        threads = [threading.Thread(target=lease, args=(n,)) for n in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not failures
    everything = [j for part in leased for j in part]
    assert len(everything) == len(set(everything)) == len(ids)
    assert set(everything) == ids
    assert sum(1 for part in leased if part) > 1  # the leasers really competed
    assert store.count_jobs(JobStatus.RUNNING) == len(ids)


def test_a_200_mb_blob_streams_both_ways_in_bounded_memory(store: Store, tmp_path: Path) -> None:
    size, block = 200 * MB, os.urandom(MB)
    app = create_app(store, BlobStore(tmp_path / "blobs"))

    def body() -> Iterator[bytes]:
        for _ in range(size // MB):
            yield block

    expected = hashlib.sha256()
    for _ in range(size // MB):
        expected.update(block)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        tracemalloc.start()
        try:
            r = c.put("/v1/blobs/big", content=body())
            got, n = hashlib.sha256(), 0
            with c.stream("GET", "/v1/blobs/big") as down:
                assert down.status_code == 200
                assert down.headers["content-length"] == str(size)
                for chunk in down.iter_bytes():
                    got.update(chunk)
                    n += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert r.status_code == 201
    assert r.json() == {"name": "big", "size": size, "sha256": expected.hexdigest()}
    assert (n, got.hexdigest()) == (size, expected.hexdigest())
    # Client and server run in this process: neither held the blob in memory.
    assert peak < 32 * MB, f"peak traced memory {peak / MB:.0f} MB"
    assert (tmp_path / "blobs" / "big").stat().st_size == size
    meta = store.get_blob("big")
    assert meta is not None
    assert meta.size == size


def test_an_interrupted_upload_leaves_no_blob(store: Store, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    app = create_app(store, blobs)

    class BrokenBodyError(Exception):
        pass

    def body() -> Iterator[bytes]:
        yield b"x" * MB
        raise BrokenBodyError

    with live_server(app) as url, httpx.Client(base_url=url) as c:
        with pytest.raises(BrokenBodyError):
            c.put("/v1/blobs/cut", content=body())
        deadline = time.monotonic() + 5
        while list(blobs.incoming_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/blobs/cut").status_code == 404
    assert list(blobs.incoming_dir.iterdir()) == []
    assert store.get_blob("cut") is None


STAND_IN = """
import json, os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[2:]}) + "\\n")
time.sleep(600)
"""


def test_the_app_starts_and_stops_its_dispatcher(store: Store, tmp_path: Path) -> None:
    record = tmp_path / "started.jsonl"
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    contract = tmp_path / "contract.json"
    contract.write_text("{}")
    dispatcher = LocalDispatcher(
        "http://127.0.0.1:1",
        command=[sys.executable, str(script), str(record), "{host}", "{contract}", "{tee}"],
    )
    dispatcher.add(contract, tee="sim")
    app = create_app(store, BlobStore(tmp_path / "blobs"), dispatcher=dispatcher)
    with live_server(app):
        deadline = time.monotonic() + 10
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = json.loads(record.read_text())
        assert started["argv"] == ["http://127.0.0.1:1", str(contract), "sim"]
        (info,) = dispatcher.processes()
        assert info.running
        assert info.pid == started["pid"]
    assert not dispatcher.processes()[0].running
    with pytest.raises(ProcessLookupError):
        os.kill(started["pid"], 0)
