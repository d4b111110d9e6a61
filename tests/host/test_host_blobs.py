"""The blob directory: atomic, streaming, size-limited, validated names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nestor.host.blobs import BlobStore
from nestor.host.errors import InvalidIdentifierError, NotFoundError, TooLargeError


def test_put_and_read_back_in_chunks(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    chunks = [os.urandom(1000) for _ in range(10)]
    info = blobs.put("data-1.bin", iter(chunks))
    whole = b"".join(chunks)
    assert (info.name, info.size, info.sha256) == (
        "data-1.bin",
        len(whole),
        hashlib.sha256(whole).hexdigest(),
    )
    read = list(blobs.iter_chunks("data-1.bin", chunk_size=4096))
    assert b"".join(read) == whole
    assert [len(c) for c in read] == [4096, 4096, 1808]
    assert blobs.size("data-1.bin") == len(whole)
    assert blobs.names() == ["data-1.bin"]


def test_empty_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    assert blobs.put("e", []).size == 0
    assert list(blobs.iter_chunks("e")) == []


@pytest.mark.parametrize("name", ["a", "0", "d1-0123456789abcdef", "x.y_z-w", "a" * 128, "a..b"])
def test_valid_names(tmp_path: Path, name: str) -> None:
    BlobStore(tmp_path).put(name, [b"x"])
    assert (tmp_path / name).read_bytes() == b"x"


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "-a", "_a", "A", "a/b", "a" * 129, "é", "a b", "a\x00"]
)
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(InvalidIdentifierError):
        blobs.put(name, [b"x"])
    with pytest.raises(InvalidIdentifierError):
        blobs.open(name)


def test_missing_blob_raises_before_streaming(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(NotFoundError):
        blobs.iter_chunks("nothing")
    with pytest.raises(NotFoundError):
        blobs.existing_path("nothing")
    assert not blobs.exists("nothing")


def test_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path, max_size=10)
    blobs.put("ok", [b"0123456789"])
    with pytest.raises(TooLargeError):
        blobs.put("big", [b"012345", b"6789", b"X"])
    assert not blobs.exists("big")
    assert list(blobs.incoming_dir.iterdir()) == []


def test_an_unfinished_write_never_shows_under_the_name(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.put("b", [b"old"])
    writer = blobs.writer("b")
    writer.write(b"new, half written")
    # Until commit, readers see the whole old blob.
    assert b"".join(blobs.iter_chunks("b")) == b"old"
    # A reader that opened the old blob keeps reading the old bytes after the rename.
    with blobs.open("b") as old_reader:
        writer.write(b" and finished")
        writer.commit()
        assert old_reader.read() == b"old"
    assert b"".join(blobs.iter_chunks("b")) == b"new, half written and finished"
    with blobs.writer("c") as w:
        w.write(b"abandoned")
    assert not blobs.exists("c")
    assert list(blobs.incoming_dir.iterdir()) == []


def test_leftovers_of_a_crash_are_cleaned_at_start(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    writer = blobs.writer("crashed")
    writer.write(b"partial")  # the process "dies" here: no commit, no abort
    assert len(list(blobs.incoming_dir.iterdir())) == 1
    again = BlobStore(tmp_path)
    assert list(again.incoming_dir.iterdir()) == []
    assert not again.exists("crashed")
    assert again.names() == []
