"""Party identity directories on disk: modes, passphrases, consistency."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nestor.client import party
from nestor.crypto import hpke
from nestor.errors import ConfigurationError, KeyFileError, PartyCardError, SignatureError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_private_keys_0600(tmp_path: Path) -> None:
    d = tmp_path / "alice"
    created = party.init_party(d, "Alice")
    assert _mode(d) == 0o700
    for name in ("signing.key", "hpke-x25519.key", "hpke-mlkem768-x25519.key"):
        assert _mode(d / name) == 0o600, name
    assert _mode(d / "card.json") == 0o644
    loaded = party.load_party(d)
    assert loaded.card.party_id == created.card.party_id
    assert set(loaded.hpke_keys) == set(hpke.Suite)


def test_keys_open_what_the_card_seals_to(tmp_path: Path) -> None:
    loaded = party.init_party(tmp_path / "a", "A")
    reread = party.load_party(tmp_path / "a")
    for suite in hpke.Suite:
        wrapped = hpke.seal_key(b"s" * 32, reread.card.hpke_key(suite), context=b"ctx")
        assert hpke.open_key(wrapped, reread.hpke_private_key(suite), context=b"ctx") == b"s" * 32
    assert loaded.card.party_id == reread.card.party_id


def test_passphrase_protects_every_private_key(tmp_path: Path) -> None:
    d = tmp_path / "p"
    party.init_party(d, "P", passphrase=b"correct horse")
    for name in ("signing.key", "hpke-x25519.key", "hpke-mlkem768-x25519.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (d / name).read_bytes()
    assert party.load_party(d, passphrase=b"correct horse").card.name == "P"
    with pytest.raises(KeyFileError, match="protected by a passphrase"):
        party.load_party(d)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        party.load_party(d, passphrase=b"wrong")


def test_refuses_to_overwrite_an_identity(tmp_path: Path) -> None:
    party.init_party(tmp_path / "a", "A")
    with pytest.raises(ConfigurationError, match="not empty"):
        party.init_party(tmp_path / "a", "A again")


def test_refuses_key_readable_by_others(tmp_path: Path) -> None:
    party.init_party(tmp_path / "a", "A")
    (tmp_path / "a" / "signing.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="accessible by other users"):
        party.load_party(tmp_path / "a")


def test_refuses_keys_that_do_not_match_the_card(tmp_path: Path) -> None:
    party.init_party(tmp_path / "a", "A")
    party.init_party(tmp_path / "b", "B")
    (tmp_path / "a" / "signing.key").write_bytes((tmp_path / "b" / "signing.key").read_bytes())
    with pytest.raises(KeyFileError, match="does not belong to the card"):
        party.load_party(tmp_path / "a")
    party.init_party(tmp_path / "c", "C")
    hpke_file = tmp_path / "c" / "hpke-x25519.key"
    hpke_file.write_bytes((tmp_path / "b" / "hpke-x25519.key").read_bytes())
    with pytest.raises(KeyFileError, match="does not match the HPKE key"):
        party.load_party(tmp_path / "c")


def test_import_verifies_and_keeps_cards(tmp_path: Path) -> None:
    party.init_party(tmp_path / "a", "A")
    b = party.init_party(tmp_path / "b", "B")
    card = party.import_card(tmp_path / "a", tmp_path / "b" / "card.json")
    assert card.party_id == b.card.party_id
    kept = tmp_path / "a" / "peers" / (b.card.party_id.removeprefix("sha256:") + ".json")
    assert party.read_card(kept).party_id == b.card.party_id


def test_import_rejects_a_tampered_card(tmp_path: Path) -> None:
    party.init_party(tmp_path / "a", "A")
    party.init_party(tmp_path / "b", "Bob")
    path = tmp_path / "b" / "card.json"
    path.write_text(path.read_text().replace('"Bob"', '"Mallory"'))
    with pytest.raises(SignatureError, match="edited after signing"):
        party.import_card(tmp_path / "a", path)
    assert not (tmp_path / "a" / "peers").exists() or not any((tmp_path / "a" / "peers").iterdir())


def test_import_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "card.json"
    bad.write_text("not json")
    with pytest.raises(PartyCardError, match="is not a party card"):
        party.read_card(bad)
