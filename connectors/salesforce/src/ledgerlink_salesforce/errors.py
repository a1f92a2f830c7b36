"""Mapping Salesforce's error answers onto ledgerlink's error tree.

Salesforce answers a failed REST call with a JSON array ``[{"message", "errorCode",
"fields"}]`` and a failed record inside an sObject Collection with ``{"statusCode",
"message", "fields"}``. The table below says what the hub does next for each code::

    INVALID_SESSION_ID                      AuthExpiredError     refresh once, call again
    REQUEST_LIMIT_EXCEEDED (TotalRequests)  QuotaExhaustedError  wait for the daily window
    REQUEST_LIMIT_EXCEEDED (concurrency)    RateLimitedError     back off, retry
    UNABLE_TO_LOCK_ROW, SERVER_UNAVAILABLE,
    UNKNOWN_EXCEPTION, any 5xx              RetryableError       back off, retry
    HTTP 300, DUPLICATE_EXTERNAL_ID         ConflictError        review, never guess
    INVALID_FIELD, REQUIRED_FIELD_MISSING,
    DUPLICATE_VALUE, ENTITY_IS_DELETED,
    other record-level codes                RecordError          quarantine, go on
    INVALID_TYPE, MALFORMED_QUERY, 404      ConfigurationError   fix the field/stream config
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledgerlink.connector.errors import (
    AuthenticationError,
    AuthExpiredError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetryableError,
)

__all__ = [
    "DAILY_LIMIT_RETRY_AFTER",
    "error_for_code",
    "error_from_body",
    "error_from_record",
    "first_error",
]

DAILY_LIMIT_RETRY_AFTER = 3600.0
"""Seconds the engine waits after the daily API budget is spent (the window is rolling)."""

_RETRYABLE = {
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "UNKNOWN_EXCEPTION",
    "QUERY_TIMEOUT",
    "TXN_SECURITY_NO_ACCESS_RETRY",
}
_CONFIGURATION = {
    "INVALID_TYPE",
    "MALFORMED_QUERY",
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "NOT_FOUND",
    "API_DISABLED_FOR_ORG",
    "INVALIDJOB",
}


def first_error(content: Any) -> tuple[str | None, str, list[str]]:
    """Return (errorCode, message, fields) of the first error in a Salesforce error body.

    Args:
        content: the decoded body (list of errors, one error, or raw text/bytes).
    """
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except ValueError:
            return None, str(content)[:300], []
    if isinstance(content, Sequence) and content and isinstance(content[0], Mapping):
        content = content[0]
    if isinstance(content, Mapping):
        code = content.get("errorCode") or content.get("statusCode") or content.get("error")
        message = content.get("message") or content.get("error_description") or ""
        fields = list(content.get("fields") or [])
        return (str(code) if code else None), str(message), [str(f) for f in fields]
    return None, str(content)[:300], []


def error_for_code(  # noqa: PLR0911 - one return per row of the table above
    code: str | None, message: str, *, status: int | None = None, fields: Sequence[str] = ()
) -> ConnectorError:
    """Return the ledgerlink error for a Salesforce ``code`` (see the module table)."""
    field = ",".join(fields) or None
    text = message or "Salesforce refused the call"
    if code == "INVALID_SESSION_ID":
        return AuthExpiredError(text, vendor_code=code, status=status)
    if code == "REQUEST_LIMIT_EXCEEDED":
        if "TotalRequests" in message:
            return QuotaExhaustedError(
                text, vendor_code=code, status=status, retry_after=DAILY_LIMIT_RETRY_AFTER
            )
        return RateLimitedError(text, vendor_code=code, status=status)
    if code in _RETRYABLE or (status is not None and status >= 500):
        return RetryableError(text, vendor_code=code, status=status)
    if code == "DUPLICATE_EXTERNAL_ID" or status == 300:
        return ConflictError(text, vendor_code=code, status=status, field=field)
    if code in _CONFIGURATION or status == 404:
        return ConfigurationError(text, vendor_code=code, status=status, field=field)
    if status in (401, 403) and code not in (None, "INVALID_FIELD"):
        return AuthenticationError(text, vendor_code=code, status=status)
    return RecordError(text, vendor_code=code, status=status, field=field)


def error_from_body(status: int, content: Any) -> ConnectorError:
    """Map an error response (status and decoded body) to a ledgerlink error."""
    if status == 300:
        urls = [str(u) for u in content] if isinstance(content, list) else []
        ids = ", ".join(u.rsplit("/", 1)[-1] for u in urls)
        return ConflictError(f"several records share the external id: {ids}", status=300)
    code, message, fields = first_error(content)
    return error_for_code(code, message, status=status, fields=fields)


def error_from_record(errors: Sequence[Mapping[str, Any]]) -> ConnectorError:
    """Map the ``errors`` of one failed record of an sObject Collection."""
    code, message, fields = first_error(list(errors) or [{"message": "record failed"}])
    return error_for_code(code, message, fields=fields)
