"""The enclave's outbound connection to the untrusted host (docs/host-api.md).

The enclave only ever calls out; the host never calls in. Everything read
from here is untrusted until a verifier in ``nestor.protocol`` says
otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from nestor.errors import NestorError


class StreamReader:
    """``readinto`` over an iterator of byte blocks (an HTTP body)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readinto(self, buffer: memoryview, /) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class HostLinkError(NestorError):
    """The host did not answer, or answered with an error."""


class HostLink:
    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise HostLinkError(f"host {self.base_url} unreachable: {exc}") from exc
        if r.status_code >= 400:
            raise HostLinkError(f"host {method} {path} answered {r.status_code}: {r.text[:300]}")
        return r

    def post(self, path: str, body: object) -> Any:
        r = self._call("POST", path, json=body)
        return r.json() if r.content else None

    def get(self, path: str, **params: str) -> Any:
        return self._call("GET", path, params=params).json()

    def lease_job(
        self, worker: str, lease_seconds: int, *, contract: str | None = None
    ) -> dict[str, Any] | None:
        body: dict[str, Any] = {"worker": worker, "lease_seconds": lease_seconds}
        if contract is not None:
            body["contract"] = contract
        r = self._call("POST", "/v1/jobs/lease", json=body)
        if r.status_code == 204 or not r.content:
            return None
        leased: dict[str, Any] = r.json()
        return leased

    @contextlib.contextmanager
    def open_blob(self, name: str) -> Iterator[tuple[StreamReader, int | None]]:
        """Stream a blob: a reader with ``readinto`` over the HTTP body and the
        declared length. Nothing is written to disk on the way."""
        try:
            with self._http.stream("GET", f"/v1/blobs/{name}") as r:
                if r.status_code >= 400:
                    raise HostLinkError(f"host has no blob {name!r} ({r.status_code})")
                length = r.headers.get("content-length")
                # Blocks as they arrive (64 KiB reads): asking httpx for
                # bigger blocks makes it join them, a copy of every byte that
                # costs a third more CPU per gigabyte (bench/README, "Fetching").
                yield StreamReader(r.iter_raw()), int(length) if length else None
        except httpx.HTTPError as exc:
            raise HostLinkError(f"reading blob {name!r} failed: {exc}") from exc
