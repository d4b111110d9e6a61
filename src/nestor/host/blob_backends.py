"""What the host needs of a blob store, and how a blob store URL picks one.

Two stores satisfy :class:`BlobBackend`: :class:`~nestor.host.blobs.BlobStore`
(a local directory) and :class:`~nestor.host.blobs_s3.S3BlobStore` (an S3
bucket). :func:`open_blob_store` turns the operator's ``--blob-store`` value
(``file:///PATH``, a plain path, or ``s3://BUCKET/PREFIX``) into one.
docs/blob-storage.md compares them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from nestor.errors import ConfigurationError
from nestor.host.blobs import CHUNK_SIZE, DEFAULT_MAX_BLOB_SIZE, BlobInfo, BlobStore
from nestor.host.errors import HostError

if TYPE_CHECKING:
    from nestor.host.blobs import BlobWriter
    from nestor.host.blobs_s3 import S3BlobStore, S3BlobWriter


class BlobWriting(Protocol):
    """One blob being written: nothing is visible under its name before
    :meth:`commit`; :meth:`abort` (also on leaving the ``with`` block
    without a commit) throws the partial blob away."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def commit(self) -> BlobInfo: ...

    def abort(self) -> None: ...

    def __enter__(self) -> BlobWriting: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class BlobBackend(Protocol):
    """A store of named, opaque byte strings, streamed in and out."""

    @property
    def max_size(self) -> int: ...

    def writer(self, name: str) -> BlobWriting: ...

    def put(self, name: str, chunks: Iterable[bytes]) -> BlobInfo: ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> BinaryIO: ...

    def iter_chunks(self, name: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...

    def names(self) -> list[str]: ...


# -- downloads with a Content-Length (and Range) known before the first byte ------------------


class BlobStoreUnavailableError(HostError):
    """The blob store failed for a reason that is not the client's (S3
    unreachable, credentials refused). The API says no more; the host's
    log has the details."""

    type = "blob-store-unavailable"
    status = 503


class RangeNotSatisfiableError(HostError):
    type = "range-not-satisfiable"
    status = 416

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    """One HTTP byte range: ``first-last`` (``last`` inclusive, None for
    "to the end"), or with ``first`` None the last ``last`` bytes."""

    first: int | None
    last: int | None

    def header(self) -> str:
        first = "" if self.first is None else str(self.first)
        last = "" if self.last is None else str(self.last)
        return f"bytes={first}-{last}"

    def resolve(self, size: int) -> tuple[int, int]:
        """``(offset, length)`` within a blob of ``size`` bytes."""
        if size == 0 or (self.first is not None and self.first >= size):
            raise RangeNotSatisfiableError(
                f"{self.header()} is outside the blob's {size} bytes", size=size
            )
        if self.first is None:
            assert self.last is not None
            length = min(self.last, size)
            return size - length, length
        end = size if self.last is None else min(self.last + 1, size)
        return self.first, end - self.first


def parse_range(header: str | None) -> ByteRange | None:
    """The single byte range a ``Range`` header asks for, or None to answer
    the whole blob: HTTP lets a server ignore a Range it will not serve, so
    multiple ranges and malformed or empty ones (``bytes=-0``) get it all."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    first = int(m[1]) if m[1] else None
    last = int(m[2]) if m[2] else None
    if first is None and not last:
        return None
    if first is not None and last is not None and last < first:
        return None
    return ByteRange(first, last)


class BlobDownload:
    """An open blob, or part of it: ``length`` bytes from ``offset`` of a
    blob of ``total`` bytes, fixed when it was opened (a blob replaced
    meanwhile does not change what this one reads)."""

    def __init__(
        self,
        *,
        total: int,
        offset: int,
        length: int,
        partial: bool,
        read: Callable[[int], bytes],
        close: Callable[[], None],
    ) -> None:
        self.total = total
        self.offset = offset
        self.length = length
        self.partial = partial
        self._read = read
        self._close = close
        self._left = length

    @property
    def content_range(self) -> str:
        return f"bytes {self.offset}-{self.offset + self.length - 1}/{self.total}"

    def read_chunk(self, size: int = CHUNK_SIZE) -> bytes:
        """The next at most ``size`` bytes; empty at the end. A short store
        raises rather than end early: a client must never get a truncated
        blob with a Content-Length that promised more."""
        if self._left == 0:
            return b""
        block = self._read(min(size, self._left))
        if not block:
            raise OSError(f"the blob ended {self._left} bytes early")
        self._left -= len(block)
        return block

    def close(self) -> None:
        self._close()


@runtime_checkable
class RangeDownloads(Protocol):
    """A store that opens downloads itself (S3: one GET gives the length,
    the range and the bytes of one object version)."""

    def download(
        self, name: str, byte_range: ByteRange | None = None, *, chunk_size: int = CHUNK_SIZE
    ) -> BlobDownload: ...


def open_download(
    blobs: BlobBackend, name: str, byte_range: ByteRange | None = None
) -> BlobDownload:
    """Open ``name`` (the ``byte_range`` of it) for a response with its
    Content-Length. A file-backed store is measured with fstat on the open
    file, so a blob renamed over meanwhile cannot change the length."""
    if isinstance(blobs, RangeDownloads):
        return blobs.download(name, byte_range)
    f = blobs.open(name)
    try:
        total = os.fstat(f.fileno()).st_size
        offset, length = (0, total) if byte_range is None else byte_range.resolve(total)
        f.seek(offset)
    except BaseException:
        f.close()
        raise
    return BlobDownload(
        total=total,
        offset=offset,
        length=length,
        partial=byte_range is not None,
        read=f.read,
        close=f.close,
    )


# -- choosing a store ------------------------------------------------------------------------

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def open_blob_store(
    url: str, *, max_size: int = DEFAULT_MAX_BLOB_SIZE, check: bool = True
) -> BlobBackend:
    """The blob store ``url`` names: ``s3://BUCKET[/PREFIX]`` (endpoint,
    region and credentials from the standard ``AWS_*`` variables), or a
    local directory as ``file:///PATH`` or a plain path. With ``check``, an
    S3 store is tried once (a list of the prefix), so a wrong bucket,
    endpoint or key fails here, at startup, and not on the first upload."""
    if not _SCHEME.match(url):
        if not url:
            raise ConfigurationError("the blob store URL is empty")
        return _local(Path(url), max_size)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ConfigurationError(
                f"blob store URL {url!r}: a file URL is file:///ABSOLUTE/PATH",
            )
        return _local(Path(unquote(parts.path)), max_size)
    if scheme == "s3":
        bucket = parts.netloc
        if parts.query or parts.fragment or "@" in bucket or ":" in bucket:
            raise ConfigurationError(
                f"blob store URL {url!r}: an S3 URL is s3://BUCKET or s3://BUCKET/PREFIX",
                hint="the endpoint, region and keys come from AWS_ENDPOINT_URL_S3, "
                "AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        try:
            from nestor.host.blobs_s3 import S3BlobStore
        except ImportError as exc:
            raise ConfigurationError(
                f"blob store URL {url!r} needs boto3, which is not installed ({exc.name})",
                hint="pip install boto3",
            ) from None
        store = S3BlobStore(bucket, prefix=unquote(parts.path), max_size=max_size)
        if check:
            store.check()
        return store
    raise ConfigurationError(
        f"blob store URL {url!r}: unknown scheme {parts.scheme!r}",
        hint="use s3://BUCKET/PREFIX, file:///PATH or a directory path",
    )


def _local(root: Path, max_size: int) -> BlobStore:
    try:
        return BlobStore(root, max_size=max_size)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot use the blob directory {root}: {exc.strerror or exc}"
        ) from None


if TYPE_CHECKING:
    # Both stores must keep satisfying the protocols the app is typed against.
    def _conforms(
        local: BlobStore, s3: S3BlobStore, w1: BlobWriter, w2: S3BlobWriter
    ) -> tuple[BlobBackend, BlobBackend, RangeDownloads, BlobWriting, BlobWriting]:
        return local, s3, s3, w1, w2


__all__ = [
    "BlobBackend",
    "BlobDownload",
    "BlobStoreUnavailableError",
    "BlobWriting",
    "ByteRange",
    "RangeDownloads",
    "RangeNotSatisfiableError",
    "open_blob_store",
    "open_download",
    "parse_range",
]
