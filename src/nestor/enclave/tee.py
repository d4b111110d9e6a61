"""Evidence producers: how an enclave asks its TEE to attest report data.

``--tee`` picks one:

- ``sim``: the simulated TEE (``nestor.simtee``): the default for
  development; its evidence is refused unless a contract accepts it.
- ``tsm``: Linux configfs-tsm (``/sys/kernel/config/tsm/report``), the
  kernel's common interface for TDX and SEV-SNP guests.
- ``gramine``: Gramine's ``/dev/attestation`` pseudo-files (SGX).
- ``auto``: ``tsm`` if the configfs directory exists, else ``gramine`` if
  ``/dev/attestation/quote`` exists, else ``sim``.

The filesystem roots are parameters so the producers can be exercised
against a directory that behaves like the kernel's.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from nestor.attestation.result import Platform
from nestor.errors import ConfigurationError
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import issue_evidence, load_or_create_vendor_key

TSM_ROOT: Final = Path("/sys/kernel/config/tsm/report")
GRAMINE_ROOT: Final = Path("/dev/attestation")
REPORT_DATA_LENGTH: Final = 64


@dataclass(frozen=True)
class Evidence:
    platform: Platform
    evidence: bytes
    # SEV-SNP: the certificate table from the host (may hold the VCEK); else None
    auxiliary: bytes | None = None


class EvidenceProducer(Protocol):
    name: str

    def produce(self, report_data: bytes) -> Evidence: ...


def _check(report_data: bytes) -> None:
    if len(report_data) != REPORT_DATA_LENGTH:
        raise ConfigurationError(f"report data must be {REPORT_DATA_LENGTH} bytes")


class SimulatedProducer:
    name = "sim"

    def __init__(self, config_base: Path | None = None) -> None:
        self._key = load_or_create_vendor_key(config_base)
        self.measurement = measure_enclave()

    def produce(self, report_data: bytes) -> Evidence:
        _check(report_data)
        blob = issue_evidence(
            self._key,
            measurement=self.measurement,
            report_data=report_data,
            issued_at=datetime.now(UTC),
        )
        return Evidence(Platform.SIMULATED, blob)


class TsmProducer:
    """configfs-tsm: mkdir an entry, write inblob, read outblob, remove it."""

    name = "tsm"

    def __init__(
        self, root: Path = TSM_ROOT, *, remove_entry: Callable[[Path], None] = os.rmdir
    ) -> None:
        if not root.is_dir():
            raise ConfigurationError(
                f"configfs-tsm is not available at {root}",
                hint="this needs a TDX or SEV-SNP guest kernel with CONFIG_TSM_REPORTS; "
                "mount configfs at /sys/kernel/config",
            )
        self.root = root
        # configfs entries are removed with rmdir even though they hold
        # attribute files; a stand-in directory in tests needs rmtree.
        self._remove = remove_entry

    def produce(self, report_data: bytes) -> Evidence:
        _check(report_data)
        entry = self.root / f"nestor-{secrets.token_hex(8)}"
        entry.mkdir()
        try:
            (entry / "inblob").write_bytes(report_data)
            generation = (entry / "generation").read_text().strip()
            outblob = (entry / "outblob").read_bytes()
            # Another writer to this entry between our write and read would
            # bump the generation: then the outblob is not ours.
            if (entry / "generation").read_text().strip() != generation:
                raise ConfigurationError("configfs-tsm entry changed while reading the report")
            provider = (entry / "provider").read_text().strip()
            aux = entry / "auxblob"
            auxiliary = aux.read_bytes() if aux.exists() else None
        finally:
            self._remove(entry)
        platform = {"tdx_guest": Platform.TDX, "sev_guest": Platform.SEV_SNP}.get(provider)
        if platform is None:
            raise ConfigurationError(f"unknown configfs-tsm provider {provider!r}")
        return Evidence(platform, outblob, auxiliary or None)


class GramineProducer:
    """Gramine: write user_report_data, read the DCAP quote."""

    name = "gramine"

    def __init__(self, root: Path = GRAMINE_ROOT) -> None:
        if not (root / "quote").exists():
            raise ConfigurationError(
                f"Gramine's attestation interface is not available at {root}",
                hint='run inside Gramine-SGX with sgx.remote_attestation = "dcap"',
            )
        kind_file = root / "attestation_type"
        if kind_file.exists() and kind_file.read_text().strip() != "dcap":
            raise ConfigurationError(
                f"Gramine attestation type is {kind_file.read_text().strip()!r}; DCAP is needed"
            )
        self.root = root

    def produce(self, report_data: bytes) -> Evidence:
        _check(report_data)
        (self.root / "user_report_data").write_bytes(report_data)
        return Evidence(Platform.SGX, (self.root / "quote").read_bytes())


def select_producer(
    kind: str,
    *,
    tsm_root: Path = TSM_ROOT,
    gramine_root: Path = GRAMINE_ROOT,
    config_base: Path | None = None,
) -> EvidenceProducer:
    if kind == "auto":
        if tsm_root.is_dir():
            kind = "tsm"
        elif (gramine_root / "quote").exists():
            kind = "gramine"
        else:
            kind = "sim"
    if kind == "sim":
        return SimulatedProducer(config_base)
    if kind == "tsm":
        return TsmProducer(tsm_root)
    if kind == "gramine":
        return GramineProducer(gramine_root)
    raise ConfigurationError(f"unknown --tee {kind!r}: choose auto, sim, tsm or gramine")
