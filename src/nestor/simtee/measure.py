"""The simulated enclave's measurement: a reproducible digest of its code.

It covers the Python source files the enclave process runs: the package
root modules and the enclave, shared protocol, crypto, attestation, programs
and simulated-TEE packages (not the client, host or CLI). The manifest rules
are those of program bundles (``nestor.programs.bundle``), so the value is
the same on every machine with the same code. Shown as 64 hex digits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from nestor.protocol import canonical

ENCLAVE_PARTS: Final = (
    "__init__.py",
    "errors.py",
    "attestation",
    "crypto",
    "enclave",
    "programs",
    "protocol",
    "simtee",
)


def package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def enclave_manifest(root: Path | None = None) -> dict[str, canonical.JsonValue]:
    root = root or package_root()
    files: list[canonical.JsonValue] = []
    paths: list[Path] = []
    for part in ENCLAVE_PARTS:
        p = root / part
        if p.is_file():
            paths.append(p)
        elif p.is_dir():
            paths.extend(q for q in p.rglob("*.py") if "__pycache__" not in q.parts)
    for p in sorted(paths, key=lambda q: q.relative_to(root).as_posix().encode()):
        data = p.read_bytes()
        files.append(
            {
                "path": p.relative_to(root).as_posix(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return {"type": "nestor/simulated-enclave", "version": 1, "files": files}


def measure_enclave(root: Path | None = None) -> str:
    return canonical.digest(enclave_manifest(root)).removeprefix("sha256:")
