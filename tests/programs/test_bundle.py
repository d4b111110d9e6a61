"""The reproducible digest of a program bundle directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nestor.errors import ConfigurationError, ProgramBundleError
from nestor.programs.bundle import MANIFEST_TYPE, bundle_digest, read_manifest
from nestor.protocol import canonical

FILES: dict[str, bytes] = {
    "stats/__init__.py": b"",
    "stats/main.py": b"def run(inputs, params):\n    return {}\n",
    "stats/util/helpers.py": b"X = 1\n",
    "README.md": b"# readmissions\n",
    "run.sh": b"#!/bin/sh\nexec python -m stats.main\n",
}
EXECUTABLE = {"run.sh"}


def make_bundle(root: Path, files: dict[str, bytes] = FILES, *, reverse: bool = False) -> Path:
    names = sorted(files, reverse=reverse)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        os.chmod(path, 0o755 if name in EXECUTABLE else 0o644)
    return root


def test_digest_is_the_canonical_digest_of_the_manifest(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    expected_files: list[canonical.JsonValue] = [
        {
            "path": name,
            "executable": name in EXECUTABLE,
            "size": len(FILES[name]),
            "sha256": hashlib.sha256(FILES[name]).hexdigest(),
        }
        for name in sorted(FILES, key=lambda n: n.encode("utf-8"))
    ]
    manifest = read_manifest(root)
    assert manifest.to_json() == {"type": MANIFEST_TYPE, "version": 1, "files": expected_files}
    expected = canonical.digest({"type": MANIFEST_TYPE, "version": 1, "files": expected_files})
    assert manifest.digest == bundle_digest(root) == expected
    assert expected.startswith("sha256:")
    assert len(expected) == 71


def test_digest_is_reproducible(tmp_path: Path) -> None:
    a = make_bundle(tmp_path / "first")
    b = make_bundle(tmp_path / "elsewhere" / "other-name", reverse=True)
    for i, path in enumerate(sorted(b.rglob("*"))):
        os.utime(path, (1_000_000 + i, 2_000_000 + i))
    # group/other permission bits and timestamps do not count
    os.chmod(b / "README.md", 0o600)
    assert bundle_digest(a) == bundle_digest(b)
    # an empty directory is not content
    (b / "empty").mkdir()
    assert bundle_digest(a) == bundle_digest(b)


def test_paths_sort_by_utf8_bytes(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b", {"é.py": b"", "z.py": b"", "B.py": b"", "a/b.py": b""})
    assert [f["path"] for f in read_manifest(root).files] == ["B.py", "a/b.py", "z.py", "é.py"]


@pytest.mark.parametrize(
    "change",
    ["content", "append-byte", "rename", "move-to-subdir", "executable-bit", "add-file", "remove"],
)
def test_digest_changes(tmp_path: Path, change: str) -> None:
    before = bundle_digest(make_bundle(tmp_path / "a"))
    root = make_bundle(tmp_path / "b")
    main = root / "stats" / "main.py"
    if change == "content":
        main.write_bytes(main.read_bytes().replace(b"{}", b"[]"))
    elif change == "append-byte":
        main.write_bytes(main.read_bytes() + b"\n")
    elif change == "rename":
        main.rename(root / "stats" / "main2.py")
    elif change == "move-to-subdir":
        main.rename(root / "stats" / "util" / "main.py")
    elif change == "executable-bit":
        os.chmod(main, 0o744)
    elif change == "add-file":
        (root / "stats" / "extra.txt").write_bytes(b"")
    else:
        (root / "README.md").unlink()
    assert bundle_digest(root) != before


@pytest.mark.parametrize("where", ["pycache", "sourceless-pyc", "top-pyc"])
def test_bytecode_is_refused(tmp_path: Path, where: str) -> None:
    """Python can run a .pyc instead of its source: bytecode under a reviewed
    digest would be unreviewed code, so a bundle that holds any is refused."""
    root = make_bundle(tmp_path / "b")
    if where == "pycache":
        cache = root / "stats" / "__pycache__"
        cache.mkdir()
        (cache / "main.cpython-311.pyc").write_bytes(b"\x00" * 16)
    elif where == "sourceless-pyc":
        (root / "stats" / "legacy.pyc").write_bytes(b"\x01" * 16)
    else:
        (root / "top.pyc").write_bytes(b"")
    with pytest.raises(ProgramBundleError, match="contains compiled bytecode") as info:
        bundle_digest(root)
    assert "not reviewed source" in info.value.diagnostics()


def test_symlink_to_file_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "link.py").symlink_to(root / "stats" / "main.py")
    with pytest.raises(ProgramBundleError, match="contains a symbolic link"):
        bundle_digest(root)


def test_symlink_to_directory_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "lib").symlink_to(root / "stats", target_is_directory=True)
    with pytest.raises(ProgramBundleError, match="contains a symbolic link"):
        bundle_digest(root)


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "stats" / "gone.py").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ProgramBundleError, match="contains a symbolic link"):
        bundle_digest(root)


def test_special_file_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    os.mkfifo(root / "pipe")
    with pytest.raises(ProgramBundleError, match="contains a special file"):
        bundle_digest(root)


def test_empty_bundles_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProgramBundleError, match="holds no files"):
        bundle_digest(empty)
    only_dirs = tmp_path / "dirs-only"
    (only_dirs / "sub" / "deeper").mkdir(parents=True)
    with pytest.raises(ProgramBundleError, match="holds no files"):
        bundle_digest(only_dirs)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ProgramBundleError, match="is not a directory"):
        bundle_digest(tmp_path / "missing")
    (tmp_path / "file.py").write_bytes(b"")
    with pytest.raises(ProgramBundleError, match="is not a directory"):
        bundle_digest(tmp_path / "file.py")
    # a bundle problem is a configuration error: the CLI exits 2 with a message
    assert issubclass(ProgramBundleError, ConfigurationError)


def test_file_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    try:
        fd = os.open(os.fsencode(root) + b"/bad-\xff.py", os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError:
        pytest.skip("this file system does not accept non-UTF-8 names")
    os.close(fd)
    with pytest.raises(ProgramBundleError, match="not valid UTF-8"):
        bundle_digest(root)
