"""The local dispatcher, with real processes: a stand-in script takes the
place of `nestor enclave run` and records each start."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nestor.host.dispatcher import DEFAULT_COMMAND, EnclaveSpec, LocalDispatcher, fill_command

STAND_IN = """
import json, os, signal, subprocess, sys, time
record, mode = sys.argv[1], sys.argv[2]
child = None
if mode == "with-child":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]).pid
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(record, "a") as f:
    entry = {"pid": os.getpid(), "child": child, "argv": sys.argv[3:], "t": time.monotonic()}
    f.write(json.dumps(entry) + "\\n")
print("enclave output", flush=True)
if mode == "crash":
    sys.exit(3)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.script = tmp / "stand_in.py"
        self.script.write_text(STAND_IN)
        self.record = tmp / "starts.jsonl"
        self.contract = tmp / "contract.json"
        self.contract.write_text("{}")
        self.dispatchers: list[LocalDispatcher] = []

    def command(self, mode: str = "sleep") -> list[str]:
        return [sys.executable, str(self.script), str(self.record), mode, "{host}", "{contract}"]

    def dispatcher(self, mode: str = "sleep", **kw: Any) -> LocalDispatcher:
        d = LocalDispatcher("http://127.0.0.1:9", command=self.command(mode), **kw)
        self.dispatchers.append(d)
        return d

    def starts(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for d in e.dispatchers:
        d.stop_all(timeout=2)


def test_the_default_command_is_nestor_enclave_run() -> None:
    argv = fill_command(
        DEFAULT_COMMAND, host="http://127.0.0.1:8000", spec=EnclaveSpec(Path("/c.json"), "sim")
    )
    assert argv == [
        sys.executable,
        "-m",
        "nestor.cli.main",
        "enclave",
        "run",
        "--host",
        "http://127.0.0.1:8000",
        "--contract",
        "/c.json",
        "--tee",
        "sim",
    ]


def test_start_and_stop(env: Env) -> None:
    d = env.dispatcher()
    d.add(env.contract)
    assert env.starts() == []  # registering starts nothing
    d.start_all()
    wait_for(lambda: len(env.starts()) == 1)
    (start,) = env.starts()
    assert start["argv"] == ["http://127.0.0.1:9", str(env.contract)]
    (info,) = d.processes()
    assert (info.pid, info.running, info.starts) == (start["pid"], True, 1)
    d.stop_all()
    assert not alive(start["pid"])
    (info,) = d.processes()
    assert not info.running
    assert info.last_returncode == -signal.SIGTERM


def test_a_dead_enclave_is_restarted_with_backoff(env: Env) -> None:
    d = env.dispatcher(backoff_initial=0.3, poll_interval=0.05)
    d.add(env.contract)
    d.start_all()
    wait_for(lambda: len(env.starts()) == 1)
    first = env.starts()[0]["pid"]
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: len(env.starts()) == 2)
    assert time.monotonic() - killed_at >= 0.25  # waited for the backoff
    second = env.starts()[1]["pid"]
    assert second != first
    (info,) = d.processes()
    assert (info.pid, info.running, info.starts, info.last_returncode) == (
        second,
        True,
        2,
        -signal.SIGKILL,
    )


def test_backoff_grows_while_an_enclave_keeps_crashing(env: Env) -> None:
    d = env.dispatcher("crash", backoff_initial=0.1, backoff_max=0.4, poll_interval=0.02)
    d.add(env.contract)
    d.start_all()
    # Stop during a backoff pause: stopping a just-started stand-in before it
    # crashes would record SIGTERM (-15) instead of its exit status.
    wait_for(
        lambda: (
            len(env.starts()) >= 5
            and not d.processes()[0].running
            and d.processes()[0].last_returncode == 3
        )
    )
    d.stop_all()
    assert d.processes()[0].last_returncode == 3
    t = [s["t"] for s in env.starts()]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # 0.1, 0.2, 0.4, then capped at 0.4 (plus process start-up time each).
    assert gaps[0] < gaps[2]
    assert 0.35 < gaps[3] < 1.5


def test_no_restart_when_disabled(env: Env) -> None:
    d = env.dispatcher("crash", restart=False, poll_interval=0.02)
    d.add(env.contract)
    d.start_all()
    wait_for(lambda: d.processes()[0].last_returncode == 3)
    time.sleep(0.2)
    assert len(env.starts()) == 1
    assert not d.processes()[0].running


def test_sigkill_after_the_grace_period(env: Env) -> None:
    d = env.dispatcher("stubborn", stop_timeout=0.5)
    d.add(env.contract)
    d.start_all()
    wait_for(lambda: len(env.starts()) == 1)
    began = time.monotonic()
    d.stop_all()
    assert time.monotonic() - began >= 0.45
    assert not alive(env.starts()[0]["pid"])
    assert d.processes()[0].last_returncode == -signal.SIGKILL


def test_stop_takes_the_enclaves_helpers_too(env: Env) -> None:
    d = env.dispatcher("with-child")
    d.add(env.contract)
    d.start_all()
    wait_for(lambda: len(env.starts()) == 1)
    child = env.starts()[0]["child"]
    assert alive(child)
    d.stop_all()
    wait_for(lambda: not alive(child))


def test_output_goes_to_the_log_dir(env: Env) -> None:
    logs = env.tmp / "logs"
    logs.mkdir()
    d = env.dispatcher(log_dir=logs)
    d.add(env.contract)
    d.start_all()
    wait_for(lambda: "enclave output" in (logs / "enclave-1.log").read_text())
    d.stop_all()


def test_enclaves_added_while_running_start_at_once(env: Env) -> None:
    d = env.dispatcher(poll_interval=5)
    d.start_all()
    d.add(env.contract)
    d.add(env.contract, tee="tsm")
    wait_for(lambda: len(env.starts()) == 2)
    assert [p.spec.tee for p in d.processes()] == ["sim", "tsm"]


def test_a_command_that_cannot_start_is_retried_not_fatal(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    d = LocalDispatcher(
        "http://x",
        command=[str(env.tmp / "does-not-exist")],
        backoff_initial=0.05,
        poll_interval=0.02,
        die_with_host=False,
    )
    env.dispatchers.append(d)
    d.add(env.contract)
    began = time.monotonic()
    d.start_all()
    assert time.monotonic() - began < 2  # start_all does not wait for a success
    wait_for(lambda: caplog.text.count("cannot start enclave 1") >= 3)
    assert d.running
    assert d.processes()[0].starts == 0
    d.stop_all()


HOST_PROCESS = """
import sys, time
from pathlib import Path
from nestor.host.dispatcher import LocalDispatcher
d = LocalDispatcher("http://h", command=sys.argv[1:])
d.add(Path("c.json"))
d.start_all()
print("started", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_enclaves_die_with_a_killed_host(env: Env) -> None:
    """SIGKILL gives the host no chance to stop anything: the kernel does."""
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_PROCESS, *env.command()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "started"
        wait_for(lambda: len(env.starts()) == 1)
        enclave = env.starts()[0]["pid"]
        assert alive(enclave)
    finally:
        host.kill()
        host.communicate()
    wait_for(lambda: not alive(enclave))
