"""The blob store in an S3 bucket (AWS or any S3-compatible object store).

Blob ``NAME`` is the object ``PREFIX/NAME``. A blob is uploaded with a
multipart upload of ``part_size`` parts (a blob smaller than one part, with
one PUT) and S3 makes the object visible only when the upload completes:
a reader sees a whole blob, old or new, never half of one, and an upload
that fails or is aborted is aborted on S3 too. Reads are one GET streamed
in chunks. At most one part per upload is held in memory, never a blob.

Endpoint, region and credentials come from the constructor or the
standard AWS variables (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, and the
rest of boto3's credential chain). docs/blob-storage.md has the details.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from nestor.errors import ConfigurationError, NestorError
from nestor.host.blob_backends import BlobDownload, ByteRange
from nestor.host.blobs import CHUNK_SIZE, DEFAULT_MAX_BLOB_SIZE, BlobInfo
from nestor.host.errors import NotFoundError, TooLargeError
from nestor.host.ids import check_blob_name, is_blob_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger("nestor.host.blobs")

MIN_PART_SIZE: Final = 5 * 1024**2  # S3's minimum for every part but the last
MAX_PART_SIZE: Final = 5 * 1024**3
MAX_PARTS: Final = 10_000
DEFAULT_PART_SIZE: Final = 16 * 1024**2
DEFAULT_REGION: Final = "us-east-1"
_CONTENT_TYPE: Final = "application/octet-stream"
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

# S3 error codes that mean the host is configured wrongly, not that a
# request failed: retrying will not help, the operator must act.
_CREDENTIAL_CODES: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)
_ACCESS_CODES: Final = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_WRONG_PLACE_CODES: Final = frozenset({"PermanentRedirect", "301", "IllegalLocationConstraint"})


class S3ConfigurationError(ConfigurationError):
    """The bucket, endpoint, region or credentials are wrong: the S3 store
    cannot work until the operator changes them."""


class S3BlobStoreError(NestorError):
    """An S3 request failed (unreachable endpoint, server error, a stream
    cut short). The message names the endpoint, bucket and request."""


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _code(exc: Exception) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "unknown"))
    return None


class S3BlobWriter:
    """One blob being uploaded. The multipart upload starts with the first
    full part; a blob that never fills one is a single PUT at commit. Parts
    go up in the store's threads, at most ``upload_concurrency`` at a time
    while the next one fills: the writer blocks, and so slows its client
    down, rather than hold more parts."""

    def __init__(self, store: S3BlobStore, name: str) -> None:
        self.name = name
        self.size = 0
        self._store = store
        self._key = store.key_for(name)
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: list[tuple[int, Future[Any]]] = []
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("the blob writer is closed")
        if self.size + len(data) > self._store.max_size:
            self.abort()
            raise TooLargeError(
                f"blob {self.name!r} is larger than the limit of {self._store.max_size} bytes"
            )
        self._hash.update(data)
        self.size += len(data)
        part_size = self._store.part_size
        rest = memoryview(data)
        try:
            # Fill the buffer to exactly one part and hand that very buffer
            # over: one part in memory, and no copy of it.
            while rest:
                room = part_size - len(self._buffer)
                self._buffer += rest[:room]
                rest = rest[room:]
                if len(self._buffer) == part_size:
                    part, self._buffer = self._buffer, bytearray()
                    self._upload_part(part)
        except BaseException:
            self.abort()
            raise

    def _upload_part(self, part: bytes | bytearray) -> None:
        s3 = self._store
        if self._upload_id is None:
            started = s3.call(
                "start an upload of",
                self.name,
                s3.client.create_multipart_upload,
                Bucket=s3.bucket,
                Key=self._key,
                ContentType=_CONTENT_TYPE,
            )
            self._upload_id = str(started["UploadId"])
        # A part that failed is noticed here, at the latest one part later.
        while self._in_flight and (
            self._in_flight[0][1].done() or len(self._in_flight) >= s3.upload_concurrency
        ):
            self._collect_oldest()
        number = len(self._parts) + len(self._in_flight) + 1
        future = s3.executor.submit(
            s3.call,
            f"upload part {number} of",
            self.name,
            s3.client.upload_part,
            Bucket=s3.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._in_flight.append((number, future))

    def _collect_oldest(self) -> None:
        number, future = self._in_flight.pop(0)
        self._parts.append({"PartNumber": number, "ETag": future.result()["ETag"]})

    def commit(self) -> BlobInfo:
        """Upload what is left and complete the upload: from now on readers
        get the new blob."""
        if self._closed:
            raise ValueError("the blob writer is closed")
        s3 = self._store
        try:
            if self._upload_id is None:
                s3.call(
                    "upload",
                    self.name,
                    s3.client.put_object,
                    Bucket=s3.bucket,
                    Key=self._key,
                    Body=self._buffer,
                    ContentType=_CONTENT_TYPE,
                )
            else:
                if self._buffer:
                    last, self._buffer = self._buffer, bytearray()
                    self._upload_part(last)
                while self._in_flight:
                    self._collect_oldest()
                s3.call(
                    "complete the upload of",
                    self.name,
                    s3.client.complete_multipart_upload,
                    Bucket=s3.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._buffer = bytearray()
        return BlobInfo(self.name, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        """Throw the upload away (a no-op after commit or abort)."""
        if self._closed:
            return
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        in_flight, self._in_flight = self._in_flight, []
        for _, future in in_flight:
            future.cancel()
        # A part that lands after the abort would outlive it (S3 says to
        # abort once no part upload is in progress).
        wait([future for _, future in in_flight])
        if upload_id is None:
            return
        s3 = self._store
        try:
            s3.call(
                "abort the upload of",
                self.name,
                s3.client.abort_multipart_upload,
                Bucket=s3.bucket,
                Key=self._key,
                UploadId=upload_id,
            )
        except NestorError as exc:
            # Cleanup must not hide the error that made us abort. The parts
            # stay invisible under the name; they only cost space until a
            # lifecycle rule (AbortIncompleteMultipartUpload) removes them.
            log.warning("could not abort the upload of blob %r: %s", self.name, exc.message)

    def __enter__(self) -> S3BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class _BodyReader(io.RawIOBase):
    """An S3 GET's streaming body as a raw file, for :class:`io.BufferedReader`."""

    def __init__(self, store: S3BlobStore, name: str, body: Any) -> None:
        self._store = store
        self._name = name
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        block = self._store.read_body(self._body, len(view), self._name)
        view[: len(block)] = block
        return len(block)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3BlobStore:
    """Blobs as objects ``PREFIX/NAME`` of ``bucket``.

    Arguments left None come from the environment (see the module). With an
    endpoint other than AWS, requests use path-style addressing, which every
    S3-compatible server supports; ``addressing_style`` overrides it.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        max_size: int = DEFAULT_MAX_BLOB_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
        upload_concurrency: int = 2,
        max_pool_connections: int = 32,
        max_attempts: int = 3,
    ) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be from {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes")
        if not _BUCKET.fullmatch(bucket):
            raise S3ConfigurationError(
                f"{bucket!r} is not an S3 bucket name",
                hint="3-63 characters of a-z, 0-9, '.' and '-'; the blob store URL is "
                "s3://BUCKET/PREFIX",
            )
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.max_size = max_size
        # S3 allows 10,000 parts: larger limits need larger parts.
        self.part_size = min(max(part_size, -(-max_size // MAX_PARTS)), MAX_PART_SIZE)
        if upload_concurrency < 1:
            raise ValueError("upload_concurrency must be at least 1")
        self.upload_concurrency = upload_concurrency
        self.executor = ThreadPoolExecutor(
            max_workers=max_pool_connections, thread_name_prefix="s3-upload"
        )
        endpoint_url = endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        # boto3 reads AWS_DEFAULT_REGION only; AWS_REGION is what the other
        # SDKs and the Kubernetes manifests use.
        region = region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION
        if addressing_style is None and endpoint_url is not None:
            addressing_style = "path"
        config = Config(
            s3={"addressing_style": addressing_style or "auto"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max_pool_connections,
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=session_token,
                region_name=region,
            )
            self.client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        except (ValueError, BotoCoreError) as exc:
            raise S3ConfigurationError(
                f"cannot set up the S3 client for bucket {bucket!r} at "
                f"{endpoint_url or 'AWS'}: {exc}",
                hint="check AWS_ENDPOINT_URL_S3 and AWS_REGION",
            ) from None
        self.endpoint: str = str(self.client.meta.endpoint_url)
        self.region = region

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix} at {self.endpoint})"

    def key_for(self, name: str) -> str:
        return self.prefix + check_blob_name(name)

    # -- errors --

    def call(self, action: str, name: str | None, fn: Any, /, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` (a client method), its errors in Nestor's terms:
        ``action`` and ``name`` say what failed ("upload" "data-1")."""
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, name) from None

    def _error(self, exc: Exception, action: str, name: str | None) -> NestorError:
        what = f"{action} blob {name!r}" if name is not None else action
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return S3ConfigurationError(
                f"no S3 credentials to {what} in {where}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        if not isinstance(exc, ClientError):
            return S3BlobStoreError(f"could not {what} in {where}: {exc}")
        error = exc.response.get("Error", {})
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        if code in ("NoSuchKey", "404") and name is not None:
            return NotFoundError(f"no blob {name!r}")
        if code == "NoSuchBucket":
            return S3ConfigurationError(
                f"there is no bucket {self.bucket!r} at the S3 endpoint {self.endpoint}",
                hint="create the bucket, or correct s3://BUCKET in the blob store URL "
                "and AWS_ENDPOINT_URL_S3",
            )
        if code in _CREDENTIAL_CODES:
            return S3ConfigurationError(
                f"the S3 endpoint {self.endpoint} refused the credentials for "
                f"bucket {self.bucket!r} ({code})",
                hint="check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION",
            )
        if code in _ACCESS_CODES:
            return S3ConfigurationError(
                f"the S3 endpoint {self.endpoint} denied the host access to {what} in "
                f"bucket {self.bucket!r} ({code})",
                hint="the host's key needs s3:ListBucket on the bucket and s3:GetObject, "
                "s3:PutObject and s3:AbortMultipartUpload on the prefix",
            )
        if code in _WRONG_PLACE_CODES:
            return S3ConfigurationError(
                f"bucket {self.bucket!r} is not in region {self.region} at {self.endpoint} "
                f"({code})",
                hint="set AWS_REGION to the bucket's region",
            )
        message = str(error.get("Message", ""))[:200]
        return S3BlobStoreError(f"could not {what} in {where}: S3 {code} (HTTP {status}) {message}")

    def check(self) -> None:
        """One cheap request that needs the bucket, the endpoint and the
        credentials to be right (and the list permission the store relies
        on: without it S3 answers a missing blob with 403, not 404)."""
        self.call(
            "list the blobs",
            None,
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=self.prefix,
            MaxKeys=1,
        )

    # -- writing --

    def writer(self, name: str) -> S3BlobWriter:
        """Start writing blob ``name`` (validated); see :class:`S3BlobWriter`."""
        return S3BlobWriter(self, check_blob_name(name))

    def put(self, name: str, chunks: Iterable[bytes]) -> BlobInfo:
        with self.writer(name) as w:
            for chunk in chunks:
                w.write(chunk)
            return w.commit()

    # -- reading --

    def _head(self, name: str) -> Any:
        key = self.key_for(name)
        return self.call("look up", name, self.client.head_object, Bucket=self.bucket, Key=key)

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
        except NotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])

    def _get(self, name: str, **kwargs: Any) -> Any:
        key = self.key_for(name)
        return self.call(
            "read", name, self.client.get_object, Bucket=self.bucket, Key=key, **kwargs
        )

    def read_body(self, body: Any, size: int, name: str) -> bytes:
        """Up to ``size`` bytes of a GET's body (fewer only at its end)."""
        try:
            return bytes(body.read(size))
        except (BotoCoreError, OSError) as exc:
            raise S3BlobStoreError(
                f"reading blob {name!r} from bucket {self.bucket!r} at {self.endpoint} "
                f"failed midway: {exc}"
            ) from None

    def open(self, name: str) -> BinaryIO:
        """The blob as a read-only file (one GET, read as you go)."""
        body = self._get(name)["Body"]
        return io.BufferedReader(_BodyReader(self, name, body), buffer_size=CHUNK_SIZE)

    def iter_chunks(self, name: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks. The GET is sent before the first
        chunk is asked for, so a missing blob raises here, not mid-stream."""
        body = self._get(name)["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                while block := self.read_body(body, chunk_size, name):
                    yield block
            finally:
                body.close()

        return chunks()

    def download(
        self, name: str, byte_range: ByteRange | None = None, *, chunk_size: int = CHUNK_SIZE
    ) -> BlobDownload:
        """One GET (of ``byte_range`` if given): its length, range and body
        belong to one version of the object, however soon it is replaced."""
        extra = {} if byte_range is None else {"Range": byte_range.header()}
        key = self.key_for(name)
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        except (ClientError, BotoCoreError) as exc:
            if byte_range is not None and _code(exc) == "InvalidRange":
                # S3's 416 does not say the size, and the response must.
                byte_range.resolve(self.size(name))
            raise self._error(exc, "read", name) from None
        body = got["Body"]
        length = int(got["ContentLength"])
        offset, total, partial = 0, length, False
        content_range = got.get("ContentRange")
        if byte_range is not None and content_range:
            m = _CONTENT_RANGE.fullmatch(str(content_range))
            if m is None:
                body.close()
                raise S3BlobStoreError(
                    f"{self.endpoint} answered a range of blob {name!r} with Content-Range "
                    f"{content_range!r}"
                )
            offset, total, partial = int(m[1]), int(m[3]), True

        def read(size: int) -> bytes:
            return self.read_body(body, min(size, chunk_size), name)

        return BlobDownload(
            total=total, offset=offset, length=length, partial=partial, read=read, close=body.close
        )

    def names(self) -> list[str]:
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = str(obj["Key"])[len(self.prefix) :]
                    if is_blob_name(name):
                        found.append(name)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list the blobs", None) from None
        return sorted(found)

    def incomplete_uploads(self) -> list[str]:
        """Names of blobs with an upload started and neither completed nor
        aborted (a host that died mid-upload leaves one behind)."""
        found: list[str] = []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        try:
            for page in pages:
                found.extend(str(u["Key"])[len(self.prefix) :] for u in page.get("Uploads", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list the unfinished uploads", None) from None
        return sorted(found)

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)
        self.client.close()


__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "S3BlobStore",
    "S3BlobStoreError",
    "S3BlobWriter",
    "S3ConfigurationError",
]
