"""The `nestor` command, run as a real subprocess, as a user would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

NESTOR = Path(sys.executable).parent / "nestor"
CS = 4096
STORED = CS + 16
H = 120


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NESTOR), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ok(*args: str | Path, cwd: Path) -> str:
    proc = run(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_version_and_help_teach(tmp_path: Path) -> None:
    assert ok("--version", cwd=tmp_path).startswith("nestor ")
    text = ok("--help", cwd=tmp_path)
    for word in ("demo", "party", "encrypt", "decrypt", "inspect", "attestation"):
        assert word in text
    assert "--key-out" in ok("encrypt", "--help", cwd=tmp_path)
    assert "init" in ok("party", "--help", cwd=tmp_path)


def test_party_init_card_import(tmp_path: Path) -> None:
    party_id = ok("party", "init", "alice", "--name", "Alice Hospital", cwd=tmp_path).strip()
    assert party_id.startswith("sha256:")
    for name in ("signing.key", "hpke-x25519.key", "hpke-mlkem768-x25519.key"):
        assert stat.S_IMODE((tmp_path / "alice" / name).stat().st_mode) == 0o600
    card = json.loads(ok("party", "card", "alice", cwd=tmp_path))
    assert card["signed"]["party_id"] == party_id
    assert card["signed"]["name"] == "Alice Hospital"
    ok("party", "init", "bob", "--name", "Bob", cwd=tmp_path)
    imported = ok("party", "import", "alice/card.json", "--dir", "bob", cwd=tmp_path).strip()
    assert imported == party_id


def test_party_init_with_passphrase_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("a long passphrase\n")
    ok("party", "init", "p", "--name", "P", "--passphrase-file", "pw", cwd=tmp_path)
    assert b"ENCRYPTED" in (tmp_path / "p" / "signing.key").read_bytes()


def test_party_import_rejects_tampered_card(tmp_path: Path) -> None:
    ok("party", "init", "a", "--name", "A", cwd=tmp_path)
    ok("party", "init", "b", "--name", "Bob", cwd=tmp_path)
    card = tmp_path / "b" / "card.json"
    card.write_text(card.read_text().replace('"Bob"', '"Mallory"'))
    proc = run("party", "import", card, "--dir", "a", cwd=tmp_path)
    assert proc.returncode == 1
    assert "signature on the party card of 'Mallory'" in proc.stderr
    assert "edited after signing" in proc.stderr


def test_party_init_refuses_existing_identity(tmp_path: Path) -> None:
    ok("party", "init", "a", "--name", "A", cwd=tmp_path)
    proc = run("party", "init", "a", "--name", "A", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not empty" in proc.stderr


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[Path, bytes, str]:
    plaintext = os.urandom(CS * 5 + 77)
    (tmp_path / "data.csv").write_bytes(plaintext)
    out = ok(
        "encrypt",
        "data.csv",
        "data.nds",
        "--key-out",
        "data.key",
        "--chunk-size",
        "4KiB",
        cwd=tmp_path,
    )
    commitment = out.split("commitment ")[1].strip()
    assert stat.S_IMODE((tmp_path / "data.key").stat().st_mode) == 0o600
    return tmp_path, plaintext, commitment


def test_encrypt_inspect_decrypt(encrypted: tuple[Path, bytes, str]) -> None:
    d, plaintext, commitment = encrypted
    info = json.loads(ok("inspect", "data.nds", "--json", cwd=d))
    assert info["commitment"] == commitment
    assert info["chunk_count"] == 6
    assert info["plaintext_length"] == len(plaintext)
    assert "commitment" in ok("inspect", "data.nds", cwd=d)
    ok("decrypt", "data.nds", "plain.csv", "--key", "data.key", "--commitment", commitment, cwd=d)
    assert (d / "plain.csv").read_bytes() == plaintext
    assert stat.S_IMODE((d / "plain.csv").stat().st_mode) == 0o600


def test_encrypt_with_existing_key_and_chacha(encrypted: tuple[Path, bytes, str]) -> None:
    d, plaintext, _ = encrypted
    ok(
        "encrypt",
        "data.csv",
        "again.nds",
        "--key",
        "data.key",
        "--cipher",
        "chacha20-poly1305",
        cwd=d,
    )
    assert json.loads(ok("inspect", "again.nds", "--json", cwd=d))["suite"] == "ChaCha20-Poly1305"
    ok("decrypt", "again.nds", "again.csv", "--key", "data.key", cwd=d)
    assert (d / "again.csv").read_bytes() == plaintext


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    body = data[H:]
    return data[:H], [body[i : i + STORED] for i in range(0, len(body), STORED)]


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


BAD_INPUTS: dict[str, tuple[Callable[[bytes, bytes], bytes], str]] = {
    "flipped header byte": (lambda d, o: _flip(d, 100), "header was modified"),
    "flipped chunk byte": (lambda d, o: _flip(d, H + STORED + 9), "chunk 1 failed authentication"),
    "flipped tag byte": (
        lambda d, o: _flip(d, H + 2 * STORED - 1),
        "chunk 1 failed authentication",
    ),
    "truncated at boundary": (lambda d, o: d[: H + 3 * STORED], "at a chunk boundary after 3 of 6"),
    "truncated mid-chunk": (lambda d, o: d[: H + 3 * STORED + 7], "middle of chunk 3"),
    "dropped chunk": (
        lambda d, o: _chunks(d)[0] + b"".join(_chunks(d)[1][:1] + _chunks(d)[1][2:]),
        "chunk 1 is missing",
    ),
    "duplicated chunk": (
        lambda d, o: _chunks(d)[0] + b"".join([*_chunks(d)[1][:2], *_chunks(d)[1][1:]]),
        "chunk 1 is repeated",
    ),
    "reordered chunks": (
        lambda d, o: (
            _chunks(d)[0]
            + b"".join([_chunks(d)[1][0], _chunks(d)[1][2], _chunks(d)[1][1], *_chunks(d)[1][3:]])
        ),
        "out of order",
    ),
    "chunk spliced from another file": (
        lambda d, o: (
            _chunks(d)[0] + b"".join([_chunks(d)[1][0], _chunks(o)[1][1], *_chunks(d)[1][2:]])
        ),
        "spliced in from another file",
    ),
    "not in the format": (lambda d, o: b"patient,age\n" * 50, "not a Nestor encrypted dataset"),
    "empty file": (lambda d, o: b"", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_decrypt_bad_input(encrypted: tuple[Path, bytes, str], case: str) -> None:
    d, _, _ = encrypted
    ok("encrypt", "data.csv", "other.nds", "--key", "data.key", "--chunk-size", "4KiB", cwd=d)
    make, message = BAD_INPUTS[case]
    (d / "bad.nds").write_bytes(make((d / "data.nds").read_bytes(), (d / "other.nds").read_bytes()))
    before = set(os.listdir(d))
    proc = run("decrypt", "bad.nds", "out.csv", "--key", "data.key", cwd=d)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert set(os.listdir(d)) == before  # no plaintext, no temporary left behind


def test_decrypt_with_wrong_key(encrypted: tuple[Path, bytes, str]) -> None:
    d, _plaintext, _ = encrypted
    (d / "x").write_bytes(b"x")
    ok("encrypt", "x", "x.nds", "--key-out", "other.key", cwd=d)
    proc = run("decrypt", "data.nds", "out.csv", "--key", "other.key", cwd=d)
    assert proc.returncode == 1
    assert "data key does not open this file" in proc.stderr
    assert not (d / "out.csv").exists()


def test_decrypt_with_wrong_commitment(encrypted: tuple[Path, bytes, str]) -> None:
    d, _, commitment = encrypted
    wrong = commitment[:-1] + ("0" if commitment[-1] != "0" else "1")
    proc = run("decrypt", "data.nds", "out.csv", "--key", "data.key", "--commitment", wrong, cwd=d)
    assert proc.returncode == 1
    assert "not the expected" in proc.stderr
    assert not (d / "out.csv").exists()


def test_decrypt_refuses_to_overwrite(encrypted: tuple[Path, bytes, str]) -> None:
    d, _, _ = encrypted
    (d / "out.csv").write_text("keep me")
    proc = run("decrypt", "data.nds", "out.csv", "--key", "data.key", cwd=d)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr
    assert (d / "out.csv").read_text() == "keep me"


def test_key_file_readable_by_others_is_refused(encrypted: tuple[Path, bytes, str]) -> None:
    d, _, _ = encrypted
    (d / "data.key").chmod(0o644)
    proc = run("decrypt", "data.nds", "out.csv", "--key", "data.key", cwd=d)
    assert proc.returncode == 2
    assert "accessible by other users" in proc.stderr


def test_encrypt_needs_exactly_one_key_option(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    proc = run("encrypt", "x", "x.nds", cwd=tmp_path)
    assert proc.returncode == 2
    assert "exactly one of --key-out" in proc.stderr


def test_inspect_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("hello")
    proc = run("inspect", "x", cwd=tmp_path)
    assert proc.returncode == 1
    assert "not a Nestor encrypted dataset" in proc.stderr


def test_demo_runs(tmp_path: Path) -> None:
    proc = run("demo", "--rows", "2000", "--workspace", tmp_path / "ws", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "demo finished" in proc.stderr
    assert "receipt verified" in proc.stderr
    assert "hash chain and signatures intact" in proc.stderr
    assert "Traceback" not in proc.stderr
