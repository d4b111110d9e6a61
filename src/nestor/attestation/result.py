"""The one normalised attestation result every verifier returns.

In IETF RATS (RFC 9334) terms: the enclave is the Attester, its evidence is
Evidence, vendor certificates and collateral are Endorsements, the contract's
enclave policy holds the Reference Values and the appraisal policy, this
object is the Attestation Result, and each party is a Relying Party.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Platform(StrEnum):
    SIMULATED = "simulated"
    SGX = "sgx"
    TDX = "tdx"
    SEV_SNP = "sev-snp"
    NITRO = "nitro"
    AZURE_SNP_VTPM = "azure-snp-vtpm"


@dataclass(frozen=True)
class AttestationResult:
    """What verified evidence says. Only verifiers construct one.

    - ``measurements``: named reference-comparable values as lowercase hex:
      SGX ``mrenclave``, ``mrsigner``; TDX ``mrtd``, ``rtmr0``..``rtmr3``,
      ``mrconfigid``, ``mrowner``, ``mrownerconfig``, ``mrseam``; SEV-SNP
      ``measurement``, ``host_data``, ``chip_id``; Nitro ``pcr0``..``pcrN``;
      simulated ``measurement``.
    - ``numbers``: named integers: SGX ``isv_prod_id``, ``isv_svn``; SEV-SNP
      ``vmpl``, ``policy``, ``tcb_bootloader``, ``tcb_tee``, ``tcb_snp``,
      ``tcb_microcode``, ``version``.
    - ``tcb_status``: Intel's TCB status (``UpToDate``, ...) or ``None`` where
      the platform has no such notion (SEV-SNP and Nitro: the contract's
      minimum TCB / PCRs decide).
    - ``report_data``: the 64 bytes (Nitro: ``user_data``) the enclave bound
      into its evidence.
    - ``chain``: subjects of the verified certificates, leaf first, and the
      pinned root's SHA-256 fingerprint last.
    """

    platform: Platform
    measurements: Mapping[str, str]
    numbers: Mapping[str, int]
    tcb_status: str | None
    advisory_ids: tuple[str, ...]
    debug: bool
    report_data: bytes
    chain: tuple[str, ...]
    verified_at: datetime
    evidence_digest: str
    claims: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "simulated": self.platform is Platform.SIMULATED,
            "measurements": dict(self.measurements),
            "numbers": dict(self.numbers),
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "debug": self.debug,
            "report_data": self.report_data.hex(),
            "chain": list(self.chain),
            "verified_at": self.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "evidence_digest": self.evidence_digest,
            "claims": dict(self.claims),
        }
