"""The blob store: a local directory of named, opaque byte strings (ciphertext).

A blob is written to a temporary file in the same directory tree, fsynced
and renamed over its name, so a crash never leaves half a blob under its
name and a reader always sees a whole blob, old or new. Reads and writes
stream in chunks; nothing holds a whole blob in memory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from nestor.host.errors import NotFoundError, TooLargeError
from nestor.host.ids import check_blob_name

DEFAULT_MAX_BLOB_SIZE: Final = 64 * 1024**3  # 64 GiB
CHUNK_SIZE: Final = 1024 * 1024
_INCOMING: Final = ".incoming"  # never a valid blob name (names start with [a-z0-9])


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    sha256: str  # hex, informational: clients check their own commitments


class BlobWriter:
    """One blob being written. Use as a context manager: leaving it without
    :meth:`commit` (or on an error) removes the temporary file."""

    def __init__(self, store: BlobStore, name: str) -> None:
        self.name = name
        self._store = store
        self._final = store.path_for(name)
        self._tmp = store.incoming_dir / f"{name}.{secrets.token_hex(8)}.part"
        self._file: BinaryIO | None = self._tmp.open("xb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("the blob writer is closed")
        if self.size + len(data) > self._store.max_size:
            self.abort()
            raise TooLargeError(
                f"blob {self.name!r} is larger than the limit of {self._store.max_size} bytes"
            )
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> BlobInfo:
        """Flush, fsync, rename over the blob's name and fsync the directory."""
        if self._file is None:
            raise ValueError("the blob writer is closed")
        f, self._file = self._file, None
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        os.replace(self._tmp, self._final)
        _fsync_dir(self._final.parent)
        return BlobInfo(self.name, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs as files ``ROOT/<name>``; partial uploads under ``ROOT/.incoming``."""

    def __init__(self, root: Path, *, max_size: int = DEFAULT_MAX_BLOB_SIZE) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.root = root
        self.max_size = max_size
        self.incoming_dir = root / _INCOMING
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of uploads cut short by a crash: never visible, just space.
        for stale in self.incoming_dir.glob("*.part"):
            stale.unlink(missing_ok=True)

    def path_for(self, name: str) -> Path:
        return self.root / check_blob_name(name)

    def writer(self, name: str) -> BlobWriter:
        """Start writing blob ``name`` (validated); see :class:`BlobWriter`."""
        return BlobWriter(self, check_blob_name(name))

    def put(self, name: str, chunks: Iterable[bytes]) -> BlobInfo:
        with self.writer(name) as w:
            for chunk in chunks:
                w.write(chunk)
            return w.commit()

    def exists(self, name: str) -> bool:
        return self.path_for(name).is_file()

    def size(self, name: str) -> int:
        return self.existing_path(name).stat().st_size

    def existing_path(self, name: str) -> Path:
        """The blob's file; :class:`NotFoundError` if there is no such blob."""
        path = self.path_for(name)
        if not path.is_file():
            raise NotFoundError(f"no blob {name!r}")
        return path

    def open(self, name: str) -> BinaryIO:
        try:
            return self.path_for(name).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"no blob {name!r}") from None

    def iter_chunks(self, name: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks. The file is opened before the first
        chunk is asked for, so a missing blob raises here, not mid-stream."""
        f = self.open(name)

        def chunks() -> Iterator[bytes]:
            with f:
                while block := f.read(chunk_size):
                    yield block

        return chunks()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and p.name[0] != ".")
