"""The simulated TEE end to end: vendor root, measurement, evidence,
verification, and its refusal by contracts that do not accept it."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nestor.attestation.result import Platform
from nestor.attestation.simulated import verify_simulated
from nestor.attestation.verify import detect_platform, verify_evidence
from nestor.crypto import signing
from nestor.enclave.tee import GramineProducer, TsmProducer, select_producer
from nestor.errors import (
    AttestationError,
    CertificateChainError,
    ConfigurationError,
    EvidenceFormatError,
    EvidenceSignatureError,
    KeyFileError,
)
from nestor.simtee import vendor
from nestor.simtee.measure import enclave_manifest, measure_enclave

NOW = datetime(2027, 1, 1, tzinfo=UTC)
RD = bytes(range(64))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "config"


def _evidence(cfg: Path, report_data: bytes = RD, debug: bool = False) -> bytes:
    key = vendor.load_or_create_vendor_key(cfg)
    return vendor.issue_evidence(
        key, measurement=measure_enclave(), report_data=report_data, issued_at=NOW, debug=debug
    )


def test_vendor_root_is_created_once_with_mode_0600(cfg: Path) -> None:
    a = vendor.load_or_create_vendor_key(cfg)
    b = vendor.load_or_create_vendor_key(cfg)
    assert signing.key_id(a.public_key()) == signing.key_id(b.public_key())
    key_file = vendor.vendor_dir(cfg) / vendor.VENDOR_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert signing.key_id(vendor.load_vendor_public_key(cfg)) == signing.key_id(a.public_key())


def test_vendor_root_readable_by_others_is_refused(cfg: Path) -> None:
    vendor.load_or_create_vendor_key(cfg)
    (vendor.vendor_dir(cfg) / vendor.VENDOR_KEY_FILE).chmod(0o644)
    with pytest.raises(KeyFileError, match="accessible by other users"):
        vendor.load_or_create_vendor_key(cfg)


def test_missing_vendor_root_is_explained(cfg: Path) -> None:
    with pytest.raises(ConfigurationError, match="no simulated vendor root"):
        vendor.load_vendor_public_key(cfg)


def test_measurement_is_reproducible_and_covers_enclave_code(tmp_path: Path) -> None:
    assert measure_enclave() == measure_enclave()
    files = enclave_manifest()["files"]
    assert isinstance(files, list)
    paths = {str(f["path"]) for f in files if isinstance(f, dict)}
    assert "enclave/tee.py" in paths
    assert "crypto/dataset.py" in paths
    assert not any(str(p).startswith(("cli/", "host/", "client/")) for p in paths)
    # A copy of the package measures the same; changing one byte changes it.
    root = Path(__file__).resolve().parents[2] / "src" / "nestor"
    copy = tmp_path / "nestor"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert measure_enclave(copy) == measure_enclave(root)
    target = copy / "enclave" / "tee.py"
    target.write_text(target.read_text() + "\n# changed\n")
    assert measure_enclave(copy) != measure_enclave(root)


def test_simulated_evidence_verifies_and_says_simulated(cfg: Path) -> None:
    ev = _evidence(cfg)
    assert b"SIMULATED TEE" in ev
    assert detect_platform(ev) is Platform.SIMULATED
    result = verify_evidence(
        ev, now=NOW, simulated_vendor_keys=[vendor.load_vendor_public_key(cfg)]
    )
    assert result.platform is Platform.SIMULATED
    assert result.measurements == {"measurement": measure_enclave()}
    assert result.report_data == RD
    assert result.debug is False
    assert result.to_json()["simulated"] is True


def test_evidence_from_another_installation_is_refused(tmp_path: Path) -> None:
    ev = _evidence(tmp_path / "one")
    other = vendor.load_or_create_vendor_key(tmp_path / "two").public_key()
    with pytest.raises(CertificateChainError, match="not a trusted simulated vendor root"):
        verify_simulated(ev, vendor_keys=[other], now=NOW)


@pytest.mark.parametrize("field", ["measurement", "report_data", "debug"])
def test_edited_evidence_is_refused(cfg: Path, field: str) -> None:
    obj = json.loads(_evidence(cfg))
    obj["signed"][field] = {"measurement": "00" * 32, "report_data": "11" * 64, "debug": True}[
        field
    ]
    with pytest.raises(EvidenceSignatureError, match="edited after signing"):
        verify_simulated(
            json.dumps(obj).encode(), vendor_keys=[vendor.load_vendor_public_key(cfg)], now=NOW
        )


def test_flipped_signature_is_refused(cfg: Path) -> None:
    obj = json.loads(_evidence(cfg))
    sig = obj["signatures"][0]["sig"]
    obj["signatures"][0]["sig"] = ("B" if sig[0] != "B" else "C") + sig[1:]
    with pytest.raises(EvidenceSignatureError, match="does not verify"):
        verify_simulated(
            json.dumps(obj).encode(), vendor_keys=[vendor.load_vendor_public_key(cfg)], now=NOW
        )


def test_evidence_from_the_future_is_refused(cfg: Path) -> None:
    ev = _evidence(cfg)
    with pytest.raises(EvidenceFormatError, match="in the future"):
        verify_simulated(
            ev, vendor_keys=[vendor.load_vendor_public_key(cfg)], now=NOW - timedelta(hours=1)
        )


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600))
def test_verifier_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        verify_evidence(data, now=NOW, platform=Platform.SIMULATED)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 2000), flip=st.integers(0, 2000))
def test_verifier_on_truncated_and_flipped_evidence(
    tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int
) -> None:
    cfg = tmp_path_factory.getbasetemp() / "hyp-cfg"
    ev = _evidence(cfg)
    keys = [vendor.load_vendor_public_key(cfg)]
    flipped = bytearray(ev)
    flipped[flip % len(ev)] ^= 0x20
    for candidate in (ev[: cut % len(ev)], bytes(flipped)):
        try:
            verify_simulated(candidate, vendor_keys=keys, now=NOW)
        except AttestationError:
            continue


# -- evidence producers ------------------------------------------------------------


def test_auto_falls_back_to_simulated(tmp_path: Path, cfg: Path) -> None:
    producer = select_producer(
        "auto", tsm_root=tmp_path / "no-tsm", gramine_root=tmp_path / "no-gramine", config_base=cfg
    )
    assert producer.name == "sim"
    assert producer.produce(RD).platform is Platform.SIMULATED


def test_unknown_tee_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown --tee"):
        select_producer("sgx-magic")


def test_tsm_needs_configfs(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="configfs-tsm is not available"):
        TsmProducer(tmp_path / "missing")


def _fake_configfs(root: Path, stop: threading.Event, provider: str) -> None:
    """Behaves like configfs-tsm for one entry: when inblob appears, the
    'kernel' writes outblob (a report over the inblob) and bumps generation."""
    while not stop.is_set():
        for entry in root.iterdir():
            inblob = entry / "inblob"
            if inblob.exists() and not (entry / "outblob").exists():
                data = inblob.read_bytes()
                (entry / "provider").write_text(provider + "\n")
                (entry / "generation").write_text("1\n")
                (entry / "outblob").write_bytes(b"REPORT:" + data)
        time.sleep(0.001)


def test_tsm_producer_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tsm"
    root.mkdir()
    stop = threading.Event()
    kernel = threading.Thread(target=_fake_configfs, args=(root, stop, "tdx_guest"), daemon=True)
    kernel.start()
    original_write = Path.write_bytes

    def write_and_wait(self: Path, data: bytes) -> int:
        # configfs produces outblob synchronously; the stand-in thread needs a moment
        n = original_write(self, data)
        if self.name == "inblob":
            deadline = time.monotonic() + 5
            while not (self.parent / "outblob").exists() and time.monotonic() < deadline:
                time.sleep(0.001)
        return n

    monkeypatch.setattr(Path, "write_bytes", write_and_wait)
    try:
        evidence = TsmProducer(root, remove_entry=shutil.rmtree).produce(RD)
    finally:
        stop.set()
        kernel.join()
    assert evidence.platform is Platform.TDX
    assert evidence.evidence == b"REPORT:" + RD
    assert list(root.iterdir()) == []  # the entry is removed


def test_gramine_producer(tmp_path: Path) -> None:
    root = tmp_path / "attestation"
    root.mkdir()
    (root / "attestation_type").write_text("dcap\n")
    (root / "quote").write_bytes(b"QUOTE")
    (root / "user_report_data").write_bytes(b"")
    evidence = GramineProducer(root).produce(RD)
    assert evidence.platform is Platform.SGX
    assert (root / "user_report_data").read_bytes() == RD
    assert evidence.evidence == b"QUOTE"


def test_gramine_needs_dcap(tmp_path: Path) -> None:
    root = tmp_path / "attestation"
    root.mkdir()
    (root / "quote").write_bytes(b"")
    (root / "attestation_type").write_text("epid\n")
    with pytest.raises(ConfigurationError, match="DCAP is needed"):
        GramineProducer(root)


def test_report_data_must_be_64_bytes(cfg: Path) -> None:
    with pytest.raises(ConfigurationError, match="64 bytes"):
        select_producer("sim", config_base=cfg).produce(b"short")
