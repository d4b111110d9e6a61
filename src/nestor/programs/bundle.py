"""The reproducible digest of a program bundle directory.

A bundle's digest is the canonical digest of its *manifest*::

    {"type": "nestor/program-bundle", "version": 1,
     "files": [{"path": "stats/main.py", "executable": false,
                "size": 1234, "sha256": "<64 hex>"}, ...]}

``files`` lists every regular file under the directory, sorted by the UTF-8
bytes of ``path`` (POSIX separators, relative to the bundle root). Only the
path, the executable bit, the size and the content hash count: timestamps,
owners and the directory's own name do not, so the same files give the same
digest on every machine. Compiled bytecode (``__pycache__`` directories,
``*.pyc`` files) is refused, not skipped: Python can run a ``.pyc`` instead of
its source, so skipping it would let unreviewed code run under a reviewed
digest. Symbolic links, devices and unreadable entries are refused too: they
could make two machines see different content under one digest.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nestor.errors import ProgramBundleError
from nestor.protocol import canonical

MANIFEST_TYPE: Final = "nestor/program-bundle"
MAX_FILES: Final = 10_000
MAX_BUNDLE_BYTES: Final = 256 * 1024 * 1024
_BYTECODE_DIRS: Final = frozenset({"__pycache__"})
_BYTECODE_SUFFIXES: Final = (".pyc", ".pyo")


@dataclass(frozen=True)
class BundleManifest:
    files: tuple[dict[str, canonical.JsonValue], ...]

    def to_json(self) -> dict[str, canonical.JsonValue]:
        return {"type": MANIFEST_TYPE, "version": 1, "files": list(self.files)}

    @property
    def digest(self) -> str:
        return canonical.digest(self.to_json())


def _hash_file(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def read_manifest(root: Path) -> BundleManifest:
    """Walk ``root`` and build its manifest (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise ProgramBundleError(f"program bundle {root} is not a directory")
    entries: list[dict[str, canonical.JsonValue]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            full = here / d
            if d in _BYTECODE_DIRS:
                raise ProgramBundleError(
                    f"program bundle contains compiled bytecode: {full}",
                    hint="remove it (find DIR -name __pycache__ -prune -exec rm -r {} +): "
                    "bytecode is not reviewed source and Python could run it instead",
                )
            if full.is_symlink():
                raise ProgramBundleError(f"program bundle contains a symbolic link: {full}")
        for name in filenames:
            full = here / name
            if name.endswith(_BYTECODE_SUFFIXES):
                raise ProgramBundleError(
                    f"program bundle contains compiled bytecode: {full}",
                    hint="remove .pyc files: bytecode is not reviewed source",
                )
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode):
                kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                raise ProgramBundleError(f"program bundle contains a {kind}: {full}")
            rel = full.relative_to(root).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise ProgramBundleError(f"file name is not valid UTF-8: {full}") from None
            size, sha = _hash_file(full)
            total += size
            entries.append(
                {
                    "path": rel,
                    "executable": bool(st.st_mode & stat.S_IXUSR),
                    "size": size,
                    "sha256": sha,
                }
            )
            if len(entries) > MAX_FILES or total > MAX_BUNDLE_BYTES:
                raise ProgramBundleError(
                    f"program bundle {root} is larger than {MAX_FILES} files or "
                    f"{MAX_BUNDLE_BYTES} bytes"
                )
    if not entries:
        raise ProgramBundleError(f"program bundle {root} holds no files")
    entries.sort(key=lambda e: str(e["path"]).encode("utf-8"))
    return BundleManifest(tuple(entries))


def bundle_digest(root: Path) -> str:
    return read_manifest(root).digest


def copy_bundle(src: Path, dst: Path) -> Path:
    """Copy a bundle's source to ``dst`` without the bytecode caches that
    importing it (from tests, say) leaves behind, which the digest refuses."""
    import shutil

    patterns = [*_BYTECODE_DIRS, *(f"*{suffix}" for suffix in _BYTECODE_SUFFIXES)]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*patterns))
    return dst
