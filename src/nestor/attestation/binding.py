"""What an enclave binds into its evidence (brief §3, step 3).

``report_data`` is SHA-512 over the canonical JSON::

    {"type": "nestor/enclave-binding", "version": 1,
     "contract": <contract digest>,
     "signing_key": <enclave Ed25519 public key, base64url>,
     "hpke_keys": {<suite label>: <enclave HPKE public key, base64url>, ...}}

64 bytes: the size of SGX/TDX/SEV-SNP report data (Nitro carries it in
``user_data``). A party that recomputes it from the contract it signed and
the keys the enclave published, and finds it in verified evidence, knows
those keys live inside that enclave, for that contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from nestor.protocol import canonical
from nestor.protocol.b64 import b64encode


def report_data_for(
    contract_digest: str, signing_key: bytes, hpke_keys: Mapping[str, bytes]
) -> bytes:
    body: dict[str, canonical.JsonValue] = {
        "type": "nestor/enclave-binding",
        "version": 1,
        "contract": contract_digest,
        "signing_key": b64encode(signing_key),
        "hpke_keys": {label: b64encode(key) for label, key in sorted(hpke_keys.items())},
    }
    return hashlib.sha512(canonical.encode(body)).digest()
