"""Regenerate the HPKE test-vector subsets in this folder (see README.md).

The source is the ``cryptography_vectors`` 50.0.2 wheel from PyPI, which
ships the CFRG RFC 9180 ``test-vectors.json`` and the draft-ietf-hpke-pq
``hpke-pq-test-vectors.json`` under ``cryptography_vectors/HPKE/``::

    pip download --no-deps cryptography_vectors==50.0.2 -d /tmp/cv
    WHEEL=/tmp/cv/cryptography_vectors-50.0.2-py3-none-any.whl
    python tests/vectors/hpke/extract.py "$WHEEL"          # rewrite the JSON files
    python tests/vectors/hpke/extract.py --check "$WHEEL"  # compare only

SOURCE may be the wheel itself, an unpacked wheel (a directory holding
``cryptography_vectors/HPKE/``) or that ``HPKE`` directory. Each source file
is checked against its pinned SHA-256 before anything is extracted. Entries
are copied verbatim (same keys, same order, same values); only the selection
is ours. ``--check`` compares instead of writing and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MEMBER_DIR = "cryptography_vectors/HPKE"

# SHA-256 of the files inside cryptography_vectors-50.0.2-py3-none-any.whl.
RFC9180_SOURCE = (
    "test-vectors.json",
    "61fc662f01996cd06d713dacf5e133167bd309a1f329442d53f1e21a47b3ede6",
)
PQ_SOURCE = (
    "hpke-pq-test-vectors.json",
    "ba1f90672903e0df25610a1eef84b5f157e44d34849c0a72a2f9b164f3213888",
)

Entry = dict[str, Any]


def is_rfc9180_x25519_sha256_aes256gcm_base(entry: Entry) -> bool:
    """mode_base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM."""
    return (entry["mode"], entry["kem_id"], entry["kdf_id"], entry["aead_id"]) == (
        0,
        0x0020,
        0x0001,
        0x0002,
    )


def is_mlkem768_x25519_sha256_base(entry: Entry) -> bool:
    """mode_base, MLKEM768-X25519 (0x647a), HKDF-SHA256, any AEAD.

    The source has no 0x647a vector with AES-256-GCM (0x0002); the one with
    HKDF-SHA256 uses ChaCha20-Poly1305 (0x0003).
    """
    return (entry["mode"], entry["kem_id"], entry["kdf_id"]) == (0, 0x647A, 0x0001)


OUTPUTS: list[tuple[str, tuple[str, str], Callable[[Entry], bool]]] = [
    (
        "rfc9180-x25519-sha256-aes256gcm.json",
        RFC9180_SOURCE,
        is_rfc9180_x25519_sha256_aes256gcm_base,
    ),
    ("mlkem768-x25519.json", PQ_SOURCE, is_mlkem768_x25519_sha256_base),
]


def read_source(source: Path, name: str) -> bytes:
    if source.is_file():
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(f"{MEMBER_DIR}/{name}")
    for candidate in (source / MEMBER_DIR / name, source / name):
        if candidate.is_file():
            return candidate.read_bytes()
    raise FileNotFoundError(f"{name} not found in {source}")


def render(entries: list[Entry]) -> str:
    return json.dumps(entries, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="the cryptography_vectors wheel or directory")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)

    status = 0
    for out_name, (src_name, src_sha256), keep in OUTPUTS:
        raw = read_source(args.source, src_name)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != src_sha256:
            print(f"{src_name}: sha256 {digest}, expected {src_sha256}", file=sys.stderr)
            return 2
        entries = [e for e in json.loads(raw) if keep(e)]
        if len(entries) != 1:
            print(f"{src_name}: filter kept {len(entries)} entries, expected 1", file=sys.stderr)
            return 2
        text = render(entries)
        target = HERE / out_name
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                print(f"{out_name}: differs from what {src_name} gives", file=sys.stderr)
                status = 1
            else:
                print(f"{out_name}: ok")
        else:
            target.write_text(text, encoding="utf-8")
            print(f"{out_name}: wrote {len(entries)} entry from {src_name}")
    return status


if __name__ == "__main__":
    sys.exit(main())
