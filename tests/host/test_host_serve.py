"""`nestor host serve` as a real process, as an operator runs it: port 0,
restarts on the same data directory after SIGTERM and after SIGKILL (no
queued job or stored state lost, no half blob), the enclave it starts, and
bounded memory while streaming a large blob."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nestor.host.testing import Messages, envelope_digest, fake_digest

NESTOR = Path(sys.executable).parent / "nestor"
C1 = fake_digest(1)
MB = 1024 * 1024


class Host:
    """One `nestor host serve` process."""

    def __init__(self, data_dir: Path, *extra: str | Path) -> None:
        self.log = data_dir.parent / f"{data_dir.name}-host.log"
        argv = [str(NESTOR), "host", "serve", "--data-dir", str(data_dir)]
        argv += ["--listen", "127.0.0.1:0", *map(str, extra)]
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
            )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:"), self.log.read_text()
        self.url = first.removeprefix("listening on ")
        port = int(self.url.rsplit(":", 1)[1])
        assert port != 0
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.http.close()
        self.proc.send_signal(sig)
        self.proc.communicate(timeout=30)
        return self.proc.returncode

    def peak_rss(self) -> int:
        """The process's peak resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.communicate()


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def populate(h: Host, msgs: Messages) -> dict[str, Any]:
    """Store one of everything; leave jobs queued, running and done."""
    c = msgs.contract()
    assert h.http.put("/v1/contracts", json=c).status_code == 201
    assert h.http.post("/v1/announcements", json=msgs.announcement(C1)).status_code == 201
    blob = os.urandom(3 * MB + 17)
    assert h.http.put("/v1/blobs/d1-0123456789abcdef", content=blob).status_code == 201
    grant = msgs.grant(C1)
    assert h.http.post("/v1/grants", json=grant).status_code == 201
    jobs = [msgs.job(C1) for _ in range(5)]
    for j in jobs:
        assert h.http.post("/v1/jobs", json=j).status_code == 201
    lease = {"worker": "enclave", "lease_seconds": 3600}
    for _ in range(2):
        assert h.http.post("/v1/jobs/lease", json=lease).status_code == 200
    done = jobs[0]["signed"]["job_id"]
    r = h.http.post(f"/v1/jobs/{done}/complete", json={"status": "done", "error": None})
    assert r.status_code == 200
    result = msgs.result(C1, envelope_digest(jobs[0]), msgs.party_id)
    assert h.http.post("/v1/results", json=result).status_code == 201
    receipt = msgs.receipt()
    assert h.http.post("/v1/receipts", json={"job_id": done, "receipt": receipt}).status_code == 201
    log = [msgs.log_entry(i) for i in range(3)]
    for entry in log:
        assert h.http.post("/v1/log", json=entry).status_code == 201
    return {
        "contract": c,
        "blob": blob,
        "grant": grant,
        "jobs": jobs,
        "result": result,
        "receipt": receipt,
        "log": log,
    }


def check_everything_is_there(h: Host, msgs: Messages, state: dict[str, Any]) -> None:
    c = state["contract"]
    assert h.http.get(f"/v1/contracts/{envelope_digest(c)}").json() == c
    latest = h.http.get("/v1/announcements/latest", params={"contract": C1})
    assert latest.status_code == 200
    assert h.http.get("/v1/blobs/d1-0123456789abcdef").content == state["blob"]
    grants = h.http.get("/v1/grants", params={"enclave": msgs.enclave_keyid}).json()
    assert grants == {"grants": [state["grant"]]}
    jobs = state["jobs"]
    ids = [j["signed"]["job_id"] for j in jobs]
    statuses = [h.http.get(f"/v1/jobs/{i}").json()["status"] for i in ids]
    assert statuses == ["done", "running", "queued", "queued", "queued"]
    assert h.http.get(f"/v1/jobs/{ids[2]}").json()["request"] == jobs[2]
    results = h.http.get(
        "/v1/results", params={"job": envelope_digest(jobs[0]), "recipient": msgs.party_id}
    )
    assert results.json() == {"results": [state["result"]]}
    assert h.http.get(f"/v1/receipts/{ids[0]}").json() == state["receipt"]
    log = h.http.get("/v1/log", params={"enclave": msgs.enclave_keyid}).json()
    assert log == {"entries": state["log"]}
    # The queued jobs come out of the queue in order, and only they.
    lease = {"worker": "enclave-2", "lease_seconds": 60}
    got = [h.http.post("/v1/jobs/lease", json=lease) for _ in range(4)]
    assert [r.json()["job_id"] for r in got[:3]] == ids[2:]
    assert got[3].status_code == 204


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_loses_no_job_and_no_state(
    tmp_path: Path, hosts: list[Host], sig: signal.Signals
) -> None:
    data = tmp_path / "data"
    msgs = Messages()
    first = Host(data)
    hosts.append(first)
    state = populate(first, msgs)
    code = first.stop(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    second = Host(data)
    hosts.append(second)
    check_everything_is_there(second, msgs, state)
    assert second.stop() == 0


def test_a_host_killed_mid_upload_keeps_the_old_blob(tmp_path: Path, hosts: list[Host]) -> None:
    data = tmp_path / "data"
    h = Host(data)
    hosts.append(h)
    assert h.http.put("/v1/blobs/b", content=b"version 1").status_code == 201
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        for i in range(1000):
            yield b"2" * 65536
            if i == 20:
                sent.set()
            time.sleep(0.01)

    def upload() -> None:
        with pytest.raises(httpx.HTTPError):
            httpx.put(f"{h.url}/v1/blobs/b", content=slow_body(), timeout=30)

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert sent.wait(10)
    time.sleep(0.1)
    assert list((data / "blobs" / ".incoming").iterdir())  # the upload was under way
    h.stop(signal.SIGKILL)
    uploader.join(30)
    again = Host(data)
    hosts.append(again)
    assert again.http.get("/v1/blobs/b").content == b"version 1"
    assert list((data / "blobs" / ".incoming").iterdir()) == []


STAND_IN = """
import json, os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[2:]}) + "\\n")
time.sleep(600)
"""


def start_with_enclave(tmp_path: Path, hosts: list[Host]) -> tuple[Host, dict[str, Any], Path]:
    script, record = tmp_path / "stand_in.py", tmp_path / "enclave.jsonl"
    script.write_text(STAND_IN)
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps(Messages().contract()))
    command = f"{sys.executable} {script} {record} {{host}} {{contract}} {{tee}}"
    h = Host(tmp_path / "data", "--enclave-contract", contract, "--enclave-command", command)
    hosts.append(h)
    # The stand-in creates the file before it writes its line: wait for the line.
    wait_for(lambda: record.exists() and record.read_text().endswith("\n"))
    started: dict[str, Any] = json.loads(record.read_text())
    return h, started, contract


def test_the_host_starts_its_enclave_and_stops_it_on_sigterm(
    tmp_path: Path, hosts: list[Host]
) -> None:
    h, started, contract = start_with_enclave(tmp_path, hosts)
    assert started["argv"] == [h.url, str(contract.resolve()), "sim"]
    assert alive(started["pid"])
    assert h.stop(signal.SIGTERM) == 0
    assert not alive(started["pid"])


def test_the_enclave_does_not_outlive_a_killed_host(tmp_path: Path, hosts: list[Host]) -> None:
    h, started, _ = start_with_enclave(tmp_path, hosts)
    assert alive(started["pid"])
    h.stop(signal.SIGKILL)
    wait_for(lambda: not alive(started["pid"]))


def test_streaming_a_large_blob_keeps_the_host_small(tmp_path: Path, hosts: list[Host]) -> None:
    h = Host(tmp_path / "data")
    hosts.append(h)
    h.http.get("/healthz")
    before = h.peak_rss()
    size, block = 160 * MB, os.urandom(MB)

    def body() -> Iterator[bytes]:
        for _ in range(size // MB):
            yield block

    r = h.http.put("/v1/blobs/large", content=body())
    assert r.status_code == 201
    digest, n = hashlib.sha256(), 0
    with h.http.stream("GET", "/v1/blobs/large") as down:
        for chunk in down.iter_bytes():
            digest.update(chunk)
            n += len(chunk)
    assert (n, digest.hexdigest()) == (size, r.json()["sha256"])
    grown = h.peak_rss() - before
    assert grown < 48 * MB, f"the host's peak memory grew by {grown / MB:.0f} MB"


def test_unusable_listen_addresses_are_usage_errors(tmp_path: Path, hosts: list[Host]) -> None:
    bad = subprocess.run(
        [str(NESTOR), "host", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "HOST:PORT" in bad.stderr
    h = Host(tmp_path / "data")
    hosts.append(h)
    listen = h.url.removeprefix("http://")  # already taken
    busy = subprocess.run(
        [str(NESTOR), "host", "serve", "--data-dir", str(tmp_path / "d2"), "--listen", listen],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert busy.returncode == 2
    assert "cannot listen" in busy.stderr
    assert busy.stdout == ""
