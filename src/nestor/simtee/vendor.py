"""The simulated vendor root key and the evidence it issues."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nestor.crypto import signing
from nestor.errors import ConfigurationError, KeyFileError
from nestor.protocol.contract import format_time
from nestor.protocol.envelope import Envelope, sign_envelope

EVIDENCE_TYPE: Final = "application/vnd.nestor.simulated-evidence+json;version=1"
WARNING: Final = "SIMULATED TEE: no hardware protection; for development only"
VENDOR_KEY_FILE: Final = "vendor-root.key"
VENDOR_PUB_FILE: Final = "vendor-root.pub.pem"


def config_dir() -> Path:
    """``$NESTOR_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/nestor``, else ``~/.config/nestor``."""
    explicit = os.environ.get("NESTOR_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nestor"


def vendor_dir(base: Path | None = None) -> Path:
    return (base or config_dir()) / "simulated-tee"


def load_or_create_vendor_key(base: Path | None = None) -> Ed25519PrivateKey:
    """The installation's simulated vendor root, created (0600) on first use."""
    d = vendor_dir(base)
    key_path = d / VENDOR_KEY_FILE
    if key_path.exists():
        st = key_path.stat()
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{key_path} is accessible by other users", hint=f"run: chmod 600 {key_path}"
            )
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{key_path} is not an Ed25519 key")
        return key
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    (d / VENDOR_PUB_FILE).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


def load_vendor_public_key(base: Path | None = None) -> Ed25519PublicKey:
    """The public half, as a verifier on this installation trusts it."""
    path = vendor_dir(base) / VENDOR_PUB_FILE
    if not path.exists():
        raise ConfigurationError(
            f"no simulated vendor root at {path}",
            hint="it is created when a simulated enclave first runs on this installation "
            "(or by `nestor measure`); set NESTOR_CONFIG_DIR to use another one",
        )
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{path} is not an Ed25519 public key")
    return key


def issue_evidence(
    vendor_key: Ed25519PrivateKey,
    *,
    measurement: str,
    report_data: bytes,
    issued_at: datetime,
    debug: bool = False,
) -> bytes:
    """Simulated 'hardware' signs what the enclave asked it to attest."""
    if len(report_data) != 64:
        raise ConfigurationError("report data is exactly 64 bytes")
    signed = {
        "platform": "simulated",
        "warning": WARNING,
        "measurement": measurement,
        "report_data": report_data.hex(),
        "debug": debug,
        "issued_at": format_time(issued_at),
        "vendor": signing.key_id(vendor_key.public_key()),
    }
    env = sign_envelope(Envelope(EVIDENCE_TYPE, signed), vendor_key)
    return json.dumps(env.to_json(), indent=2).encode() + b"\n"
