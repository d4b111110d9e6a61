"""`nestor host serve --blob-store`: a store it cannot use stops it at startup,
naming the bucket and endpoint (tests/host/test_blobs_s3.py covers a real S3
server; this is the command line's side)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def test_an_unreachable_s3_endpoint_stops_the_host_with_its_name(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "not-shown",
        "AWS_REGION": "us-east-1",
    }
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "host", "serve",
        "--data-dir", str(tmp_path / "host"), "--listen", "127.0.0.1:0",
        "--blob-store", "s3://ciphertexts/collab-1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert proc.stdout == b""  # never said it was listening
    assert "bucket 'ciphertexts'" in err
    assert f"http://127.0.0.1:{port}" in err
    assert "not-shown" not in err
    assert "Traceback" not in err


def test_the_blob_store_may_come_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "NESTOR_BLOB_STORE": "s3://"}
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "host", "serve",
        "--data-dir", str(tmp_path / "host"), "--listen", "127.0.0.1:0",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "s3://" in proc.stderr.decode()
