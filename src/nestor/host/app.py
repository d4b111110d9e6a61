"""The host's HTTP API (docs/host-api.md), as a FastAPI application.

The host checks sizes and shapes only: it parses each signed envelope's
structure (``Envelope.from_json``) and the few fields it indexes, and never
verifies a signature -- it has no reason to trust anything, and nobody
trusts it. Every error is ``{"error": <stable id>, "detail": <text>}``.

JSON bodies are read as a stream with a size limit (16 MiB by default) and
parsed strictly (``nestor.protocol.canonical.decode``: no duplicate keys,
no floats). Blobs stream in and out in chunks; a blob is never held in
memory. Stored documents are served back as the exact JSON text stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nestor import __version__
from nestor.crypto import signing
from nestor.errors import NestorError
from nestor.host.blob_backends import (
    BlobBackend,
    BlobDownload,
    BlobStoreUnavailableError,
    RangeNotSatisfiableError,
    open_download,
    parse_range,
)
from nestor.host.blobs import CHUNK_SIZE, BlobStore
from nestor.host.errors import (
    BadRequestError,
    HostError,
    InvalidEnvelopeError,
    InvalidJsonError,
    NotFoundError,
    TooLargeError,
)
from nestor.host.ids import (
    check_blob_name,
    check_digest,
    check_job_id,
    check_keyid,
    check_recipient,
)
from nestor.host.store import JobStatus, Store, json_list
from nestor.protocol import canonical
from nestor.protocol.b64 import b64decode
from nestor.protocol.contract import PAYLOAD_TYPE as CONTRACT
from nestor.protocol.envelope import Envelope
from nestor.protocol.messages import ANNOUNCEMENT, JOB_REQUEST, KEY_GRANT, LOG_ENTRY, SEALED_RESULT

DEFAULT_MAX_JSON_BYTES: Final = 16 * 1024 * 1024
MAX_LEASE_SECONDS: Final = 7 * 24 * 3600
MAX_WORKER_LENGTH: Final = 256
MAX_ERROR_LENGTH: Final = 64 * 1024
MAX_LOG_INDEX: Final = 2**53 - 1

P = ParamSpec("P")
T = TypeVar("T")

_blob_log = logging.getLogger("nestor.host.blobs")


class Dispatcher(Protocol):
    """What the app needs of a dispatcher: start its enclaves when the
    server starts, stop them when it stops."""

    def start_all(self) -> None: ...

    def stop_all(self) -> None: ...


# -- OpenAPI descriptions of bodies the routes read themselves ----------------------------------

_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}


def _json_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Bad request", 404: "Not found", 409: "Conflict", 413: "Too large"}
    return {
        c: {"description": text[c], "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for c in codes
    }


# -- helpers -----------------------------------------------------------------------------------


def _error_response(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _json_text(text: str, status: int = 200) -> Response:
    return Response(content=text, status_code=status, media_type="application/json")


async def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking store or file call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequestError("Content-Length is not a number") from None


async def _read_json(request: Request, limit: int) -> Any:
    """Read a JSON body of at most ``limit`` bytes, streaming, and parse it strictly."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise TooLargeError(f"the JSON body is larger than the limit of {limit} bytes")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise TooLargeError(f"the JSON body is larger than the limit of {limit} bytes")
    if not buf:
        raise InvalidJsonError("the request needs a JSON body")
    try:
        return canonical.decode(bytes(buf))
    except NestorError as exc:
        raise InvalidJsonError(f"the body is not acceptable JSON: {exc.message}") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    return value


def _only(body: Mapping[str, Any], what: str, required: set[str], optional: set[str]) -> None:
    missing = required - set(body)
    unknown = set(body) - required - optional
    if missing:
        raise BadRequestError(f"{what} lacks field(s): {', '.join(sorted(missing))}")
    if unknown:
        raise BadRequestError(f"{what} has unknown field(s): {', '.join(sorted(unknown))}")


def _envelope(obj: object, payload_type: str) -> Envelope:
    try:
        return Envelope.from_json(obj, expected_type=payload_type)
    except NestorError as exc:
        raise InvalidEnvelopeError(exc.message) from None


def _signed_field(env: Envelope, field: str, check: Callable[[object, str], str]) -> str:
    what = f"the envelope's signed.{field}"
    if field not in env.signed:
        raise InvalidEnvelopeError(f"{what} is missing")
    try:
        return check(env.signed[field], what)
    except HostError as exc:
        raise InvalidEnvelopeError(exc.message) from None


def _announcement_keyid(env: Envelope) -> str:
    raw = env.signed.get("signing_key")
    if not isinstance(raw, str):
        raise InvalidEnvelopeError("the announcement's signed.signing_key must be base64url text")
    try:
        return signing.key_id(signing.public_key_from_raw(b64decode(raw, field="signing_key")))
    except NestorError as exc:
        raise InvalidEnvelopeError(
            f"the announcement's signed.signing_key is not an Ed25519 key: {exc.message}"
        ) from None


def _log_index(env: Envelope) -> int:
    index = env.signed.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_LOG_INDEX:
        raise InvalidEnvelopeError("the log entry's signed.index must be a non-negative integer")
    return index


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _http_error_id(status: int) -> str:
    return {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        status, "bad-request" if 400 <= status < 500 else "internal"
    )


# -- the application ---------------------------------------------------------------------------


class _BlobResponse(FileResponse):
    # Starlette sends files 64 KiB at a time; blobs are gigabytes, and each
    # chunk is a trip through the event loop (1 MiB roughly doubles the rate).
    chunk_size = 1 << 20


async def _blob_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A blocking blob store call. A failure of the store itself (S3
    unreachable, credentials refused) goes to the log in full; the client
    only learns that the store is unavailable."""
    try:
        return await _call(fn, *args, **kwargs)
    except HostError:
        raise
    except NestorError as exc:
        _blob_log.error("blob store: %s", exc.diagnostics())
        raise BlobStoreUnavailableError("the blob store is unavailable") from None


async def _download_body(download: BlobDownload) -> AsyncIterator[bytes]:
    try:
        while chunk := await _call(download.read_chunk, CHUNK_SIZE):
            yield chunk
    except NestorError as exc:
        # The status line is gone: all that is left is to cut the response
        # short, which the Content-Length makes the client notice.
        _blob_log.error("blob store, mid-download: %s", exc.diagnostics())
        raise
    finally:
        download.close()


def create_app(
    store: Store,
    blobs: BlobBackend,
    *,
    dispatcher: Dispatcher | None = None,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
) -> FastAPI:
    """The host API over ``store`` and ``blobs``. With a ``dispatcher``, its
    enclaves start with the server and stop when the server stops."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if dispatcher is not None:
            await _call(dispatcher.start_all)
        try:
            yield
        finally:
            if dispatcher is not None:
                await _call(dispatcher.stop_all)

    app = FastAPI(
        title="Nestor host API",
        version=__version__,
        description="The untrusted host: stores public data, signed messages and "
        "ciphertext, and keeps the job queue (docs/host-api.md).",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.blobs = blobs

    async def read_json(request: Request) -> Any:
        return await _read_json(request, max_json_bytes)

    # -- errors --

    @app.exception_handler(HostError)
    async def _host_error(_request: Request, exc: HostError) -> Response:
        return _error_response(exc.status, exc.type, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return _error_response(400, "bad-request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(exc.status_code, _http_error_id(exc.status_code), str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, _exc: Exception) -> Response:
        return _error_response(500, "internal", "internal error")

    # -- health --

    @app.get("/healthz", tags=["health"])
    @app.get("/v1/healthz", tags=["health"], include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"ok": True})

    # -- contracts --

    @app.put(
        "/v1/contracts",
        status_code=201,
        tags=["contracts"],
        openapi_extra=_json_body("A contract envelope."),
        responses=_errors(400, 413),
    )
    async def put_contract(request: Request) -> Response:
        """Store a contract; a later upload of the same content replaces its
        signatures. Answers the digest of the signed content."""
        received = await read_json(request)
        env = _envelope(received, CONTRACT)
        digest = env.digest()
        await _call(store.put_contract, digest, received)
        return JSONResponse({"digest": digest}, status_code=201)

    @app.get("/v1/contracts/{digest}", tags=["contracts"], responses=_errors(400, 404))
    async def get_contract(digest: str) -> Response:
        check_digest(digest)
        text = await _call(store.get_contract, digest)
        if text is None:
            raise NotFoundError(f"no contract {digest}")
        return _json_text(text)

    # -- enclave announcements --

    @app.post(
        "/v1/announcements",
        status_code=201,
        tags=["announcements"],
        openapi_extra=_json_body("An enclave announcement envelope."),
        responses=_errors(400, 413),
    )
    async def post_announcement(request: Request) -> Response:
        received = await read_json(request)
        env = _envelope(received, ANNOUNCEMENT)
        contract = _signed_field(env, "contract", check_digest)
        keyid = _announcement_keyid(env)
        await _call(store.add_announcement, contract, keyid, received)
        return JSONResponse({"keyid": keyid}, status_code=201)

    @app.get("/v1/announcements/latest", tags=["announcements"], responses=_errors(400, 404))
    async def latest_announcement(contract: str = Query(description="contract digest")) -> Response:
        check_digest(contract, "contract")
        text = await _call(store.latest_announcement, contract)
        if text is None:
            raise NotFoundError(f"no enclave has announced itself for contract {contract}")
        return _json_text(text)

    # -- blobs --

    @app.put(
        "/v1/blobs/{name}",
        status_code=201,
        tags=["blobs"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
        responses=_errors(400, 413),
    )
    async def put_blob(name: str, request: Request) -> Response:
        """Store raw bytes, streamed to the blob store; the blob appears
        under its name, whole, only once every byte is stored."""
        check_blob_name(name)
        declared = _declared_length(request)
        if declared is not None and declared > blobs.max_size:
            raise TooLargeError(f"the blob is larger than the limit of {blobs.max_size} bytes")
        writer = await _blob_call(blobs.writer, name)
        try:
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= CHUNK_SIZE:
                    await _blob_call(writer.write, bytes(pending))
                    pending.clear()
            if pending:
                await _blob_call(writer.write, bytes(pending))
            info = await _blob_call(writer.commit)
        finally:
            await _blob_call(writer.abort)
        await _call(store.put_blob, info.name, info.size, info.sha256)
        return JSONResponse(
            {"name": info.name, "size": info.size, "sha256": info.sha256}, status_code=201
        )

    @app.get(
        "/v1/blobs/{name}",
        tags=["blobs"],
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
            **_errors(400, 404),
        },
    )
    async def get_blob(name: str, request: Request) -> Response:
        if isinstance(blobs, BlobStore):
            path = await _call(blobs.existing_path, name)
            return _BlobResponse(path, media_type="application/octet-stream")
        check_blob_name(name)
        # Without validators of our own, an If-Range can never be known to
        # match: the whole blob is the answer that is always right.
        wanted = (
            None if "if-range" in request.headers else parse_range(request.headers.get("range"))
        )
        try:
            download = await _blob_call(open_download, blobs, name, wanted)
        except RangeNotSatisfiableError as exc:
            response = _error_response(exc.status, exc.type, exc.message)
            response.headers["content-range"] = f"bytes */{exc.size}"
            return response
        headers = {"content-length": str(download.length), "accept-ranges": "bytes"}
        if download.partial:
            headers["content-range"] = download.content_range
        return StreamingResponse(
            _download_body(download),
            status_code=206 if download.partial else 200,
            headers=headers,
            media_type="application/octet-stream",
        )

    # -- key grants --

    @app.post(
        "/v1/grants",
        status_code=201,
        tags=["grants"],
        openapi_extra=_json_body("A key grant envelope."),
        responses=_errors(400, 413),
    )
    async def post_grant(request: Request) -> Response:
        received = await read_json(request)
        env = _envelope(received, KEY_GRANT)
        contract = _signed_field(env, "contract", check_digest)
        enclave = _signed_field(env, "enclave", check_keyid)
        digest = env.digest()
        await _call(store.add_grant, digest, contract, enclave, received)
        return JSONResponse({"id": digest}, status_code=201)

    @app.get("/v1/grants", tags=["grants"], responses=_errors(400))
    async def get_grants(enclave: str = Query(description="the enclave's key id")) -> Response:
        check_keyid(enclave, "enclave")
        return _json_text(json_list("grants", await _call(store.grants_for, enclave)))

    # -- jobs --

    @app.post(
        "/v1/jobs",
        status_code=201,
        tags=["jobs"],
        openapi_extra=_json_body("A job request envelope."),
        responses=_errors(400, 409, 413),
    )
    async def post_job(request: Request) -> Response:
        received = await read_json(request)
        env = _envelope(received, JOB_REQUEST)
        job_id = _signed_field(env, "job_id", check_job_id)
        contract = _signed_field(env, "contract", check_digest)
        await _call(store.add_job, job_id, contract, received)
        return JSONResponse({"job_id": job_id, "status": JobStatus.QUEUED.value}, status_code=201)

    @app.post(
        "/v1/jobs/lease",
        tags=["jobs"],
        openapi_extra=_json_body(
            '{"worker": <text>, "lease_seconds": <int>, "contract": <digest, optional>}'
        ),
        responses={204: {"description": "The queue is empty."}, **_errors(400)},
    )
    async def lease_job(request: Request) -> Response:
        body = _object(await read_json(request), "the lease request")
        _only(body, "the lease request", {"worker", "lease_seconds"}, {"contract"})
        worker, seconds = body["worker"], body["lease_seconds"]
        if not isinstance(worker, str) or not 0 < len(worker) <= MAX_WORKER_LENGTH:
            raise BadRequestError(f"worker must be 1-{MAX_WORKER_LENGTH} characters")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 0 < seconds <= MAX_LEASE_SECONDS
        ):
            raise BadRequestError(f"lease_seconds must be an integer from 1 to {MAX_LEASE_SECONDS}")
        contract = body.get("contract")
        if contract is not None:
            check_digest(contract, "contract")
        leased = await _call(store.lease_job, worker, seconds, contract=contract)
        if leased is None:
            return Response(status_code=204)
        return _json_text(
            '{"job_id":' + json.dumps(leased.job_id) + ',"request":' + leased.request + "}"
        )

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], responses=_errors(400, 404))
    async def get_job(job_id: str) -> Response:
        check_job_id(job_id)
        job = await _call(store.get_job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        head = json.dumps({"job_id": job.job_id, "status": job.status.value, "error": job.error})
        return _json_text(head[:-1] + ',"request":' + job.request + "}")

    @app.post(
        "/v1/jobs/{job_id}/complete",
        tags=["jobs"],
        openapi_extra=_json_body(
            '{"status": "done"|"failed", "error": <text or null>, "worker": <text, optional>}'
        ),
        responses=_errors(400, 404, 409),
    )
    async def complete_job(job_id: str, request: Request) -> Response:
        check_job_id(job_id)
        body = _object(await read_json(request), "the completion")
        _only(body, "the completion", {"status"}, {"error", "worker"})
        status = body["status"]
        if status not in (JobStatus.DONE.value, JobStatus.FAILED.value):
            raise BadRequestError('status must be "done" or "failed"')
        error = body.get("error")
        if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR_LENGTH):
            raise BadRequestError(f"error must be null or text of at most {MAX_ERROR_LENGTH} chars")
        worker = body.get("worker")
        if worker is not None and not isinstance(worker, str):
            raise BadRequestError("worker must be text")
        job = await _call(store.complete_job, job_id, JobStatus(status), error, worker=worker)
        return JSONResponse({"job_id": job.job_id, "status": job.status.value})

    # -- results --

    @app.post(
        "/v1/results",
        status_code=201,
        tags=["results"],
        openapi_extra=_json_body("A sealed result envelope."),
        responses=_errors(400, 413),
    )
    async def post_result(request: Request) -> Response:
        received = await read_json(request)
        env = _envelope(received, SEALED_RESULT)
        contract = _signed_field(env, "contract", check_digest)
        job = _signed_field(env, "job", check_digest)
        recipient = _signed_field(env, "recipient", check_recipient)
        digest = env.digest()
        await _call(store.add_result, digest, contract, job, recipient, received)
        return JSONResponse({"id": digest}, status_code=201)

    @app.get("/v1/results", tags=["results"], responses=_errors(400))
    async def get_results(
        job: str = Query(description="digest of the job request"),
        recipient: str | None = Query(default=None, description="party id"),
    ) -> Response:
        check_digest(job, "job")
        if recipient is not None:
            check_recipient(recipient)
        return _json_text(json_list("results", await _call(store.results_for, job, recipient)))

    # -- receipts --

    @app.post(
        "/v1/receipts",
        status_code=201,
        tags=["receipts"],
        openapi_extra=_json_body('{"job_id": <32 hex>, "receipt": <DSSE envelope>}'),
        responses=_errors(400, 409, 413),
    )
    async def post_receipt(request: Request) -> Response:
        body = _object(await read_json(request), "the receipt upload")
        _only(body, "the receipt upload", {"job_id", "receipt"}, set())
        job_id = check_job_id(body["job_id"])
        receipt = body["receipt"]
        if (
            not isinstance(receipt, dict)
            or set(receipt) != {"payloadType", "payload", "signatures"}
            or not isinstance(receipt["payloadType"], str)
            or not isinstance(receipt["payload"], str)
            or not isinstance(receipt["signatures"], list)
        ):
            raise InvalidEnvelopeError(
                "a receipt is a DSSE envelope: payloadType (text), payload (text), "
                "signatures (list)"
            )
        await _call(store.put_receipt, job_id, receipt)
        return JSONResponse({"job_id": job_id}, status_code=201)

    @app.get("/v1/receipts/{job_id}", tags=["receipts"], responses=_errors(400, 404))
    async def get_receipt(job_id: str) -> Response:
        check_job_id(job_id)
        text = await _call(store.get_receipt, job_id)
        if text is None:
            raise NotFoundError(f"no receipt for job {job_id}")
        return _json_text(text)

    # -- audit log --

    @app.post(
        "/v1/log",
        status_code=201,
        tags=["log"],
        openapi_extra=_json_body("An audit log entry envelope."),
        responses=_errors(400, 409, 413),
    )
    async def post_log(request: Request) -> Response:
        received = await read_json(request)
        env = _envelope(received, LOG_ENTRY)
        enclave = _signed_field(env, "enclave", check_keyid)
        index = _log_index(env)
        await _call(store.add_log_entry, enclave, index, received)
        return JSONResponse({"enclave": enclave, "index": index}, status_code=201)

    @app.get("/v1/log", tags=["log"], responses=_errors(400))
    async def get_log(enclave: str = Query(description="the enclave's key id")) -> Response:
        check_keyid(enclave, "enclave")
        return _json_text(json_list("entries", await _call(store.log_entries, enclave)))

    return app


__all__ = ["DEFAULT_MAX_JSON_BYTES", "Dispatcher", "create_app"]
