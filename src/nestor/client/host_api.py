"""A party's HTTP client for the untrusted host (docs/host-api.md).

The host is trusted for nothing: every method returns what the host said,
as plain JSON values, and the caller verifies it with ``nestor.protocol``
before relying on it. This module only moves bytes and turns every
transport or HTTP failure into a :class:`HostApiError` that names the URL
(and the status, when there is one).

Blobs are streamed both ways in fixed-size blocks: a dataset is never held
whole in memory. JSON answers are read up to :data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from nestor.client.secure_files import atomic_output
from nestor.errors import ConfigurationError, NestorError

BLOCK_SIZE: Final = 1 << 20
MAX_JSON_BYTES: Final = 256 * 1024 * 1024  # a page of results may hold many sealed outputs
MAX_ERROR_DETAIL: Final = 300

ProgressCallback = Callable[[int], None]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_BLOB_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


# -- errors -------------------------------------------------------------------------------


class HostApiError(NestorError):
    """Talking to the host failed. ``url`` is the request's full URL."""

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class HostUnavailableError(HostApiError):
    """The host could not be reached, or did not answer in time."""


class HostStatusError(HostApiError):
    """The host answered with an error status (its ``error`` type and ``detail``
    are kept, cleaned of control characters and shortened)."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int,
        error_type: str | None,
        detail: str | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, url=url, hint=hint)
        self.status = status
        self.error_type = error_type
        self.detail = detail


class HostNotFoundError(HostStatusError):
    """404: the host holds no such object."""


class HostConflictError(HostStatusError):
    """409: the object exists already (a job id, a log index, a receipt)."""


class HostProtocolError(HostApiError):
    """The host answered 2xx, but not with what the API documents."""


# -- answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    """The host's answer to an upload (its sha256 is informational)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class JobStatus:
    """A job as the host reports it. ``request`` is the job request envelope
    JSON, unverified: check it with ``verify_job_request``."""

    job_id: str
    status: str  # queued, running, done, failed
    error: str | None
    request: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


JOB_STATES: Final = ("queued", "running", "done", "failed")


# -- identifiers --------------------------------------------------------------------------


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ConfigurationError(
            f"{job_id!r} is not a job id: a job id is 32 lowercase hex digits",
            hint="`nestor job submit` prints the job id",
        )
    return job_id


def check_blob_name(name: str) -> str:
    if not _BLOB_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a blob name: 1-128 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _check_digest(value: str, what: str) -> str:
    if not _DIGEST.fullmatch(value):
        raise ConfigurationError(f"{what} {value!r} is not sha256: followed by 64 hex digits")
    return value


def _clean(text: str) -> str:
    """Untrusted text from the host, safe to print: no control characters, short."""
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    if len(cleaned) > MAX_ERROR_DETAIL:
        cleaned = cleaned[:MAX_ERROR_DETAIL] + "…"
    return cleaned


# -- the client ---------------------------------------------------------------------------


class HostClient:
    """Typed calls for every party-side route of the host API v1.

    ``transport`` replaces the network (e.g. ``httpx.MockTransport`` in
    tests). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url.strip().rstrip("/")
        if not re.match(r"https?://[^/\s]+", url):
            raise ConfigurationError(
                f"{base_url!r} is not a host URL",
                hint="give the host's base URL, e.g. --host http://127.0.0.1:8000 "
                "(or set NESTOR_HOST)",
            )
        self.base_url = url
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=url, timeout=timeout, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        query = f"?{urlencode(dict(params))}" if params else ""
        return f"{self.base_url}{path}{query}"

    def _transport_error(self, method: str, url: str, exc: httpx.HTTPError) -> HostApiError:
        if isinstance(exc, httpx.TimeoutException):
            return HostUnavailableError(
                f"the host at {url} did not answer {method} within {self.timeout:g} s",
                url=url,
                hint="the host may be overloaded or down; try again, or raise the timeout",
            )
        if isinstance(exc, httpx.TransportError):
            reason = _clean(str(exc)) or type(exc).__name__
            what = (
                "cannot reach the host at"
                if isinstance(exc, httpx.ConnectError)
                else "the connection to the host failed during"
            )
            return HostUnavailableError(
                f"{what} {url}: {reason}",
                url=url,
                hint="check --host (or NESTOR_HOST) and that the host is running",
            )
        return HostProtocolError(
            f"the host at {url} answered {method} unusably: {_clean(str(exc))}", url=url
        )

    @staticmethod
    def _status_error(method: str, url: str, status: int, body: bytes) -> HostStatusError:
        error_type: str | None = None
        detail: str | None = None
        try:
            parsed = json.loads(body[:65536])
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if isinstance(parsed.get("error"), str):
                error_type = _clean(parsed["error"])
            if isinstance(parsed.get("detail"), str):
                detail = _clean(parsed["detail"])
        elif body:
            detail = _clean(body[:MAX_ERROR_DETAIL].decode("utf-8", "replace"))
        what = f"host {method} {url} answered {status}"
        if error_type:
            what += f" {error_type}"
        if detail:
            what += f": {detail}"
        cls: type[HostStatusError] = HostStatusError
        hint = None
        if status == 404:
            cls = HostNotFoundError
        elif status == 409:
            cls = HostConflictError
        elif status >= 500:
            hint = "the host failed; try again later, or ask its operator"
        elif 300 <= status < 400:
            hint = "the host redirected; give its final URL with --host"
        return cls(what, url=url, status=status, error_type=error_type, detail=detail, hint=hint)

    @staticmethod
    def _read_limited(response: httpx.Response, url: str, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for block in response.iter_bytes(BLOCK_SIZE):
            size += len(block)
            if size > limit:
                raise HostProtocolError(
                    f"the host's answer from {url} is larger than {limit} bytes; refused",
                    url=url,
                )
            chunks.append(block)
        return b"".join(chunks)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        url = self.url(path, params)
        try:
            with self._http.stream(
                method,
                path,
                params=dict(params) if params else None,
                json=json_body,
                content=content,
                headers=dict(headers) if headers else None,
            ) as response:
                status = response.status_code
                limit = MAX_JSON_BYTES if 200 <= status < 300 else 65536
                body = self._read_limited(response, url, limit)
        except httpx.HTTPError as exc:
            raise self._transport_error(method, url, exc) from exc
        if not 200 <= status < 300:
            raise self._status_error(method, url, status, body)
        return status, body

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
    ) -> dict[str, Any]:
        _status, body = self._request(method, path, params=params, json_body=json_body)
        return self._parse_object(body, self.url(path, params))

    @staticmethod
    def _parse_object(body: bytes, url: str) -> dict[str, Any]:
        try:
            value = json.loads(body)
        except ValueError:
            raise HostProtocolError(f"the host's answer from {url} is not JSON", url=url) from None
        if not isinstance(value, dict):
            raise HostProtocolError(f"the host's answer from {url} is not a JSON object", url=url)
        return value

    @staticmethod
    def _field(obj: Mapping[str, Any], name: str, kind: type, url: str) -> Any:
        value = obj.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise HostProtocolError(
                f"the host's answer from {url} lacks a valid {name!r} field", url=url
            )
        return value

    def _list(self, obj: Mapping[str, Any], name: str, url: str) -> list[dict[str, Any]]:
        items = self._field(obj, name, list, url)
        if not all(isinstance(i, dict) for i in items):
            raise HostProtocolError(f"the host's {name!r} from {url} are not all objects", url=url)
        return list(items)

    # -- routes -----------------------------------------------------------------------------

    def health(self) -> bool:
        """``GET /healthz``: whether the host says it is up."""
        return self._json("GET", "/healthz").get("ok") is True

    def put_contract(self, contract: Mapping[str, Any]) -> str:
        """``PUT /v1/contracts``: store a contract envelope; returns its digest."""
        path = "/v1/contracts"
        body = self._json("PUT", path, json_body=dict(contract))
        return str(self._field(body, "digest", str, self.url(path)))

    def get_contract(self, digest: str) -> dict[str, Any]:
        """``GET /v1/contracts/{digest}``: the stored contract JSON (unverified)."""
        return self._json("GET", f"/v1/contracts/{_check_digest(digest, 'contract digest')}")

    def post_announcement(self, announcement: Mapping[str, Any]) -> str:
        """``POST /v1/announcements`` (the enclave's call; here for tools and tests)."""
        path = "/v1/announcements"
        body = self._json("POST", path, json_body=dict(announcement))
        return str(self._field(body, "keyid", str, self.url(path)))

    def latest_announcement(self, contract_digest: str) -> dict[str, Any]:
        """``GET /v1/announcements/latest?contract=``: the newest announcement
        for the contract (unverified). 404 → :class:`HostNotFoundError`."""
        params = {"contract": _check_digest(contract_digest, "contract digest")}
        return self._json("GET", "/v1/announcements/latest", params=params)

    def put_blob(
        self, name: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> BlobInfo:
        """``PUT /v1/blobs/{name}``: stream the file at ``path`` to the host.

        The file is read in blocks of :data:`BLOCK_SIZE`; the host's reported
        size and sha256 are checked against what was sent (a transfer check:
        the security check is the enclave's commitment check)."""
        check_blob_name(name)
        path = Path(path)
        try:
            src = path.open("rb")
        except FileNotFoundError:
            raise ConfigurationError(f"file {path} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
        sent = hashlib.sha256()
        count = 0

        def blocks() -> Iterator[bytes]:
            nonlocal count
            while True:
                block = src.read(BLOCK_SIZE)
                if not block:
                    return
                sent.update(block)
                count += len(block)
                if progress is not None:
                    progress(len(block))
                yield block

        route = f"/v1/blobs/{name}"
        url = self.url(route)
        with src:
            size = path.stat().st_size
            _status, body = self._request(
                "PUT",
                route,
                content=blocks(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            )
        obj = self._parse_object(body, url)
        info = BlobInfo(
            str(self._field(obj, "name", str, url)),
            int(self._field(obj, "size", int, url)),
            str(self._field(obj, "sha256", str, url)),
        )
        if count != size:
            raise ConfigurationError(
                f"{path} changed while it was being uploaded ({size} bytes, then {count})"
            )
        if info.name != name or info.size != count or info.sha256 != sent.hexdigest():
            raise HostProtocolError(
                f"the host at {url} reports {info.size} bytes with sha256 {info.sha256[:16]}… "
                f"for blob {info.name!r}; {count} bytes with sha256 {sent.hexdigest()[:16]}… "
                "were sent",
                url=url,
                hint="the upload was damaged or the host misbehaves; upload again",
            )
        return info

    def get_blob(
        self,
        name: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
    ) -> int:
        """``GET /v1/blobs/{name}``: stream the blob into ``dest`` (created only
        if the whole transfer succeeds). Returns the number of bytes written."""
        check_blob_name(name)
        route = f"/v1/blobs/{name}"
        url = self.url(route)
        written = 0
        try:
            with self._http.stream("GET", route) as response:
                if not 200 <= response.status_code < 300:
                    body = self._read_limited(response, url, 65536)
                    raise self._status_error("GET", url, response.status_code, body)
                with atomic_output(Path(dest), overwrite=overwrite, mode=0o600) as f:
                    # As received: httpx joins smaller reads into bigger
                    # blocks at a copy per byte (see HostLink.open_blob).
                    for block in response.iter_bytes():
                        f.write(block)
                        written += len(block)
                        if progress is not None:
                            progress(len(block))
        except httpx.HTTPError as exc:
            raise self._transport_error("GET", url, exc) from exc
        return written

    def post_grant(self, grant: Mapping[str, Any]) -> str:
        """``POST /v1/grants``: store a key grant envelope; returns its id (digest)."""
        path = "/v1/grants"
        body = self._json("POST", path, json_body=dict(grant))
        return str(self._field(body, "id", str, self.url(path)))

    def list_grants(self, enclave_keyid: str) -> list[dict[str, Any]]:
        """``GET /v1/grants?enclave=``: grants posted for that enclave key, in order."""
        params = {"enclave": _check_digest(enclave_keyid, "enclave key id")}
        body = self._json("GET", "/v1/grants", params=params)
        return self._list(body, "grants", self.url("/v1/grants", params))

    def submit_job(self, request: Mapping[str, Any]) -> str:
        """``POST /v1/jobs``: queue a job request envelope; returns the job id.
        409 (the job id exists) → :class:`HostConflictError`."""
        path = "/v1/jobs"
        body = self._json("POST", path, json_body=dict(request))
        return check_job_id(str(self._field(body, "job_id", str, self.url(path))))

    def job_status(self, job_id: str) -> JobStatus:
        """``GET /v1/jobs/{job_id}``."""
        path = f"/v1/jobs/{check_job_id(job_id)}"
        url = self.url(path)
        body = self._json("GET", path)
        status = str(self._field(body, "status", str, url))
        if status not in JOB_STATES:
            raise HostProtocolError(
                f"the host reports unknown job status {_clean(status)!r}", url=url
            )
        error = body.get("error")
        if error is not None and not isinstance(error, str):
            raise HostProtocolError(f"the job's error from {url} is not text", url=url)
        return JobStatus(
            str(self._field(body, "job_id", str, url)),
            status,
            None if error is None else _clean(error),
            self._field(body, "request", dict, url),
        )

    def get_results(self, job_digest: str, recipient: str) -> list[dict[str, Any]]:
        """``GET /v1/results?job=&recipient=``: sealed result envelopes (unverified)."""
        params = {
            "job": _check_digest(job_digest, "job request digest"),
            "recipient": _check_digest(recipient, "recipient party id"),
        }
        body = self._json("GET", "/v1/results", params=params)
        return self._list(body, "results", self.url("/v1/results", params))

    def get_receipt(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/receipts/{job_id}``: the DSSE receipt (unverified)."""
        return self._json("GET", f"/v1/receipts/{check_job_id(job_id)}")

    def get_log(self, enclave_keyid: str) -> list[dict[str, Any]]:
        """``GET /v1/log?enclave=``: the enclave's audit log entries, by index."""
        params = {"enclave": _check_digest(enclave_keyid, "enclave key id")}
        body = self._json("GET", "/v1/log", params=params)
        return self._list(body, "entries", self.url("/v1/log", params))
