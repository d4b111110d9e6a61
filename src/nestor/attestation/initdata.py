"""Confidential Containers init-data that binds an enclave pod to its contract.

A Confidential Containers pod carries launch-time configuration in the pod
annotation ``io.katacontainers.config.hypervisor.cc_init_data``: a TOML
document (CoCo's init-data specification, version ``0.1.0``) that the
runtime hands to the guest and whose digest the TEE binds into its launch
evidence -- TDX ``MRCONFIGID`` (48 bytes), SEV-SNP ``HOSTDATA`` (32 bytes).
The host is untrusted, so the binding is what matters: a party that knows
the contract recomputes the document from the contract digest alone and
compares its digest with the register in the evidence.

Byte layout (docs/deploy-kubernetes.md, "Init-data"):

- the document is UTF-8 TOML written by :func:`render_document`, byte for
  byte deterministic: ``algorithm``, ``version``, then ``[data]`` with one
  literal multi-line string per entry, keys sorted. Nestor's entry
  ``nestor.toml`` holds ``contract_digest = "sha256:<hex>"``; the optional
  ``policy.rego`` entry is the Kata agent policy the guest enforces;
- digest = H(document bytes), H being the document's ``algorithm``
  (sha256, sha384 or sha512);
- the register value is that digest cut or zero-padded to the register:
  48 bytes for TDX MRCONFIGID, 32 for SNP HOSTDATA (as Kata's
  ``adjust_digest`` does);
- the annotation is standard base64 of gzip(document) with mtime 0. The gzip
  layer is transport only: the digest is over the decompressed document.

Everything here is pure and public, so it lives in the shared layer: the
host (the Kubernetes dispatcher, ``nestor deploy init-data``) writes the
document for the contract a pod serves, and appraisal
(``nestor.attestation.appraisal``) rebuilds it from the contract's
``init_data`` parameters (:func:`expected_initdata`) to check the register.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from nestor.errors import ConfigurationError, ProtocolError
from nestor.protocol.contract import INIT_DATA_ALGORITHMS, InitDataPolicy

if TYPE_CHECKING:
    from nestor.protocol.contract import Contract

ANNOTATION: Final = "io.katacontainers.config.hypervisor.cc_init_data"
"""The pod annotation Confidential Containers reads the init-data from."""

CONTRACT_ANNOTATION: Final = "nestor.dev/contract-digest"
"""A readable copy of the contract digest for operators; the TEE binds only ANNOTATION."""

VERSION: Final = "0.1.0"
# The contract parser accepts exactly what this module can build.
ALGORITHMS: Final = INIT_DATA_ALGORITHMS
DEFAULT_ALGORITHM: Final = "sha256"
NESTOR_ENTRY: Final = "nestor.toml"
POLICY_ENTRY: Final = "policy.rego"

# Kubernetes caps all annotations of an object at 256 KiB together; a
# document beyond that could never reach a pod, and a bigger decompressed
# annotation is refused before it is read whole.
MAX_DOCUMENT_BYTES: Final = 256 * 1024

_CONTRACT_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ENTRY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

DEFAULT_AGENT_POLICY: Final = """\
package agent_policy

# Nestor baseline: the untrusted host may create, start, stop and watch the
# enclave container, and read its log, but may not enter it, write to its
# stdin or replace this policy once the TEE has measured it. Generate a
# stricter policy (image digests, arguments, mounts) with Kata's genpolicy
# and pass it to `nestor deploy init-data --agent-policy FILE`.
default AddARPNeighborsRequest := true
default AddSwapRequest := true
default CloseStdinRequest := false
default CopyFileRequest := true
default CreateContainerRequest := true
default CreateSandboxRequest := true
default DestroySandboxRequest := true
default ExecProcessRequest := false
default GetMetricsRequest := true
default GetOOMEventRequest := true
default GuestDetailsRequest := true
default ListInterfacesRequest := true
default ListRoutesRequest := true
default MemHotplugByProbeRequest := true
default OnlineCPUMemRequest := true
default PauseContainerRequest := false
default PullImageRequest := true
default ReadStreamRequest := true
default RemoveContainerRequest := true
default RemoveStaleVirtiofsShareMountsRequest := true
default ReseedRandomDevRequest := true
default ResumeContainerRequest := false
default SetGuestDateTimeRequest := true
default SetPolicyRequest := false
default SignalProcessRequest := true
default StartContainerRequest := true
default StartTracingRequest := false
default StatsContainerRequest := true
default StopTracingRequest := false
default TtyWinResizeRequest := false
default UpdateContainerRequest := true
default UpdateEphemeralMountsRequest := true
default UpdateInterfaceRequest := true
default UpdateRoutesRequest := true
default WaitProcessRequest := true
default WriteStreamRequest := false
"""


class Platform(StrEnum):
    """A TEE whose launch evidence binds the init-data digest, and where."""

    tdx = "tdx"  # MRCONFIGID
    snp = "snp"  # HOSTDATA

    @property
    def register_size(self) -> int:
        return 48 if self is Platform.tdx else 32

    @property
    def register_name(self) -> str:
        return "MRCONFIGID" if self is Platform.tdx else "HOSTDATA"

    @property
    def measurement(self) -> str:
        """The key of the register in ``AttestationResult.measurements``."""
        return "mrconfigid" if self is Platform.tdx else "host_data"

    @property
    def policy_name(self) -> str:
        """The platform's name in the contract's ``enclave_policy.platforms``."""
        return "tdx" if self is Platform.tdx else "sev-snp"

    @classmethod
    def for_policy(cls, name: str) -> Platform | None:
        """The platform a contract's enclave-policy entry names, if it binds init-data."""
        return next((p for p in cls if p.policy_name == name), None)


@dataclass(frozen=True)
class InitData:
    """One init-data document and what Nestor put in it."""

    document: str  # the exact text whose digest the TEE binds
    algorithm: str
    contract_digest: str
    entries: Mapping[str, str] = field(repr=False)

    def digest(self) -> bytes:
        return hashlib.new(self.algorithm, self.document.encode("utf-8")).digest()

    def register_value(self, platform: Platform) -> bytes:
        """The value ``platform``'s evidence must show for this document."""
        return fit_to_register(self.digest(), platform.register_size)

    def annotation(self) -> str:
        return encode_annotation(self.document)

    def pod_annotations(self) -> dict[str, str]:
        """The annotations an enclave pod carries for this init-data."""
        return {ANNOTATION: self.annotation(), CONTRACT_ANNOTATION: self.contract_digest}


def fit_to_register(digest: bytes, size: int) -> bytes:
    """Cut or zero-pad ``digest`` to ``size`` bytes, as Kata does for each TEE."""
    return digest[:size] if len(digest) >= size else digest + bytes(size - len(digest))


def render_document(algorithm: str, entries: Mapping[str, str]) -> str:
    """The init-data TOML for ``entries``, byte for byte deterministic.

    Values are TOML literal multi-line strings: no escaping, so the text the
    guest reads is the text given here. Each value must end with a newline
    and must not contain ``'''``.
    """
    if algorithm not in ALGORITHMS:
        raise ConfigurationError(
            f"init-data algorithm {algorithm!r} is not supported",
            hint=f"use one of {', '.join(ALGORITHMS)}",
        )
    lines = [f'algorithm = "{algorithm}"', f'version = "{VERSION}"', "", "[data]"]
    for key in sorted(entries):
        value = entries[key]
        if not _ENTRY_KEY.fullmatch(key):
            raise ConfigurationError(f"init-data entry name {key!r} is not a plain file name")
        if "'''" in value or "\r" in value:
            raise ConfigurationError(
                f"init-data entry {key!r} contains ''' or a carriage return, "
                "which a TOML literal string cannot hold"
            )
        if not value.endswith("\n"):
            value += "\n"
        lines.append(f"\"{key}\" = '''\n{value}'''")
    return "\n".join(lines) + "\n"


def build_initdata(
    contract_digest: str,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    agent_policy: str | None = DEFAULT_AGENT_POLICY,
) -> InitData:
    """The init-data for an enclave pod serving the contract ``contract_digest``."""
    if not _CONTRACT_DIGEST.fullmatch(contract_digest):
        raise ConfigurationError(
            f"{contract_digest!r} is not a contract digest",
            hint="expected sha256: and 64 lower-case hex digits, as `nestor contract show` prints",
        )
    entries = {NESTOR_ENTRY: f'contract_digest = "{contract_digest}"\n'}
    if agent_policy is not None:
        entries[POLICY_ENTRY] = agent_policy
    document = render_document(algorithm, entries)
    return InitData(document, algorithm, contract_digest, entries)


def initdata_for_contract(
    contract: Contract,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    agent_policy: str | None = DEFAULT_AGENT_POLICY,
) -> InitData:
    return build_initdata(contract.digest, algorithm=algorithm, agent_policy=agent_policy)


def expected_initdata(contract_digest: str, policy: InitDataPolicy) -> InitData:
    """The init-data a pod serving ``contract_digest`` must have been launched
    with, as the contract's ``init_data`` parameters describe it.

    The contract cannot name this digest itself (the document holds the
    contract digest), so every party rebuilds the document from the contract.
    """
    return build_initdata(
        contract_digest, algorithm=policy.algorithm, agent_policy=policy.agent_policy
    )


def encode_annotation(document: str) -> str:
    """base64(gzip(document)); mtime 0 and a fixed level keep it reproducible."""
    data = document.encode("utf-8")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigurationError(
            f"the init-data document is {len(data)} bytes; Kubernetes annotations are "
            f"limited to {MAX_DOCUMENT_BYTES} bytes in all",
            hint="shorten the agent policy",
        )
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


def decode_annotation(value: str) -> str:
    """The document inside an annotation value (whitespace ignored, as Kata does)."""
    compact = "".join(value.split())
    try:
        packed = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("the init-data annotation is not standard base64") from None
    try:
        # Read one byte past the limit so an oversized document is refused
        # without inflating it whole.
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(packed, MAX_DOCUMENT_BYTES + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the init-data annotation is not gzip data: {exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ProtocolError(f"the init-data document is larger than {MAX_DOCUMENT_BYTES} bytes")
    if not inflater.eof:
        raise ProtocolError("the init-data annotation is truncated gzip data")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the init-data document is not UTF-8") from None


def parse_initdata(document: str) -> InitData:
    """Check an init-data document and find Nestor's contract digest in it."""
    try:
        top = tomllib.loads(document)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"the init-data document is not TOML: {exc}") from None
    unknown = sorted(set(top) - {"algorithm", "version", "data"})
    if unknown:
        raise ProtocolError(f"the init-data document has unknown fields: {', '.join(unknown)}")
    if top.get("version") != VERSION:
        raise ProtocolError(f"init-data version {top.get('version')!r} is not {VERSION!r}")
    algorithm = top.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ProtocolError(f"init-data algorithm {algorithm!r} is not one of {ALGORITHMS}")
    data = top.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ProtocolError("init-data [data] must map names to strings")
    if NESTOR_ENTRY not in data:
        raise ProtocolError(
            f"the init-data has no {NESTOR_ENTRY!r} entry: it was not made for a Nestor enclave"
        )
    try:
        nestor = tomllib.loads(data[NESTOR_ENTRY])
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"init-data entry {NESTOR_ENTRY!r} is not TOML: {exc}") from None
    digest = nestor.get("contract_digest")
    if not isinstance(digest, str) or not _CONTRACT_DIGEST.fullmatch(digest):
        raise ProtocolError(f"init-data entry {NESTOR_ENTRY!r} has no valid contract_digest")
    return InitData(document, str(algorithm), digest, dict(data))
