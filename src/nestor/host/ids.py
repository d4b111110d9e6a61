"""Identifier shapes of the host API (docs/host-api.md) and their checks."""

from __future__ import annotations

import re
from typing import Final

from nestor.host.errors import InvalidIdentifierError

DIGEST_PATTERN: Final = r"sha256:[0-9a-f]{64}"
KEYID_PATTERN: Final = DIGEST_PATTERN
JOB_ID_PATTERN: Final = r"[0-9a-f]{32}"
BLOB_NAME_PATTERN: Final = r"[a-z0-9][a-z0-9._-]{0,127}"
# Party ids are key ids today; the host only needs a bounded, printable token.
RECIPIENT_PATTERN: Final = r"[\x21-\x7e]{1,256}"

_DIGEST = re.compile(DIGEST_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_BLOB_NAME = re.compile(BLOB_NAME_PATTERN)
_RECIPIENT = re.compile(RECIPIENT_PATTERN)


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def is_blob_name(value: object) -> bool:
    return isinstance(value, str) and _BLOB_NAME.fullmatch(value) is not None


def is_recipient(value: object) -> bool:
    return isinstance(value, str) and _RECIPIENT.fullmatch(value) is not None


def check_digest(value: object, what: str = "digest") -> str:
    if not isinstance(value, str) or not is_digest(value):
        raise InvalidIdentifierError(f"{what} must be sha256: followed by 64 lowercase hex digits")
    return value


def check_keyid(value: object, what: str = "keyid") -> str:
    return check_digest(value, what)


def check_job_id(value: object, what: str = "job_id") -> str:
    if not isinstance(value, str) or not is_job_id(value):
        raise InvalidIdentifierError(f"{what} must be 32 lowercase hex digits")
    return value


def check_blob_name(value: object) -> str:
    if not isinstance(value, str) or not is_blob_name(value):
        raise InvalidIdentifierError(
            "a blob name is 1-128 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_recipient(value: object, what: str = "recipient") -> str:
    if not isinstance(value, str) or not is_recipient(value):
        raise InvalidIdentifierError(f"{what} must be 1-256 printable ASCII characters")
    return value
