"""Shared pieces of the pipeline benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def host_process(work: Path) -> Iterator[str]:
    """`nestor host serve` as its own process on a free loopback port, as in
    a deployment: the host's request handling does not share the enclave's
    interpreter (and its GIL) with the decryption it is being compared to."""
    log = (work / "host.log").open("wb")
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "host", "serve",
        "--data-dir", str(work / "host"), "--listen", "127.0.0.1:0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"the host did not start; see {work / 'host.log'}")
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
