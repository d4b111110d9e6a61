"""The host's own errors: each has a stable ``type`` id and an HTTP status.

The API answers every error as ``{"error": <type>, "detail": <text>}``
(docs/host-api.md). Details name fields and identifiers, never contents.
"""

from __future__ import annotations

from typing import ClassVar

from nestor.errors import NestorError


class HostError(NestorError):
    """Root of the host's errors. ``type`` is the stable id the API reports."""

    type: ClassVar[str] = "host-error"
    status: ClassVar[int] = 500


class BadRequestError(HostError):
    """The request is malformed (not JSON, wrong shape, bad identifier)."""

    type = "bad-request"
    status = 400


class InvalidJsonError(BadRequestError):
    type = "invalid-json"


class InvalidEnvelopeError(BadRequestError):
    """Not a structurally valid signed envelope of the expected kind."""

    type = "invalid-envelope"


class InvalidIdentifierError(BadRequestError):
    """A digest, key id, job id or blob name in the path or query is malformed."""

    type = "invalid-identifier"


class NotFoundError(HostError):
    type = "not-found"
    status = 404


class ConflictError(HostError):
    type = "conflict"
    status = 409


class JobExistsError(ConflictError):
    type = "job-exists"


class JobStateError(ConflictError):
    """The job is not in a state that allows the request (e.g. completing a
    job that is not running, or that another worker holds)."""

    type = "job-state"


class ReceiptExistsError(ConflictError):
    type = "receipt-exists"


class LogEntryExistsError(ConflictError):
    type = "log-entry-exists"


class TooLargeError(HostError):
    type = "too-large"
    status = 413
