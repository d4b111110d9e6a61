"""The enclave's hash-chained, signed audit log.

Each entry names the digest of the one before it and is signed by the
enclave's key; the host stores entries but cannot rewrite, drop or reorder
them without a party that remembers an earlier head noticing
(``nestor.protocol.messages.verify_log``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nestor.protocol.messages import GENESIS, make_log_entry


class AuditLog:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        publish: Callable[[dict[str, Any]], None],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._key = key
        self._publish = publish
        self._clock = clock
        self.index = -1
        self.head = GENESIS

    def append(self, event: str, details: Mapping[str, Any]) -> tuple[int, str]:
        entry = make_log_entry(
            index=self.index + 1,
            previous=self.head,
            event=event,
            details=details,
            at=self._clock(),
            enclave_key=self._key,
        )
        self._publish(entry.to_json())
        self.index += 1
        self.head = entry.digest()
        return self.index, self.head
