"""Mapping QuickBooks faults onto the core's error tree.

QuickBooks answers errors as ``{"Fault": {"Error": [{"Message", "Detail", "code",
"element"}], "type"}, "time"}``; authentication failures come from the gateway in lower
case (``{"fault": {"error": [{"message", "detail", "code"}], "type": "AUTHENTICATION"}}``).
The table, by vendor code first, then fault type, then HTTP status::

    3200 / AUTHENTICATION / 401   -> AuthExpiredError     refresh the token, call again
    3100 / AUTHORIZATION / 403    -> AuthenticationError  the app lost access to the realm
    3001 / ThrottleExceeded / 429 -> RateLimitedError     wait 60 s (Intuit's rule)
    5010 Stale Object Error       -> StaleVersionError    refetch SyncToken, reapply, retry
    6240 Duplicate Name Exists    -> ConflictError        a human decides which record wins
    10000 SystemFault / 5xx       -> RetryableError
    other ValidationFault / 4xx   -> RecordError          quarantine with the fault's Detail

Authentication details are dropped from messages: QuickBooks echoes part of the token there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from ledgerlink.connector.errors import (
    AuthenticationError,
    AuthExpiredError,
    ConflictError,
    ConnectorError,
    RateLimitedError,
    RecordError,
    RetryableError,
    StaleVersionError,
)

__all__ = ["THROTTLE_WAIT_SECONDS", "error_from_fault", "error_from_response", "fault_of"]

THROTTLE_WAIT_SECONDS = 60.0


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive key lookup (QuickBooks mixes ``Fault`` and ``fault``)."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for name, value in mapping.items():
        if name.lower() == lowered:
            return value
    return None


def fault_of(body: Any) -> Mapping[str, Any] | None:
    """Return the ``Fault`` element of a response body, or None."""
    if not isinstance(body, Mapping):
        return None
    fault = _get(body, "Fault")
    return fault if isinstance(fault, Mapping) else None


def error_from_fault(  # noqa: PLR0911 - one return per row of the table above
    fault: Mapping[str, Any], status: int | None = None
) -> ConnectorError:
    """Classify one ``Fault`` element (of a response or of a batch item).

    Args:
        fault: the ``Fault`` mapping.
        status: HTTP status when the fault came with one.

    Returns:
        The core error naming what the caller does next.
    """
    errors = _get(fault, "Error") or [{}]
    first = errors[0] if isinstance(errors, list) and errors else {}
    code = str(_get(first, "code") or "").lstrip("0")
    message = str(_get(first, "Message") or "QuickBooks fault")
    detail = str(_get(first, "Detail") or "")
    element = _get(first, "element")
    fault_type = str(_get(fault, "type") or "")
    kind = fault_type.upper()
    text = f"{message}: {detail}" if detail and detail != message else message
    common: dict[str, Any] = {"vendor_code": code or None, "status": status}
    if code == "3200" or kind in {"AUTHENTICATION", "AUTHENTICATIONFAULT"} or status == 401:
        return AuthExpiredError("QuickBooks refused the access token", **common)
    if code == "3100" or kind in {"AUTHORIZATION", "AUTHORIZATIONFAULT"} or status == 403:
        return AuthenticationError(
            "QuickBooks refused access to the company (app disconnected or no permission)",
            **common,
        )
    if code == "3001" or "ThrottleExceeded" in message or status == 429:
        return RateLimitedError(
            "QuickBooks throttled the request", retry_after=THROTTLE_WAIT_SECONDS, **common
        )
    if code == "5010":
        return StaleVersionError(text, field=element, **common)
    if code == "6240":
        return ConflictError(text, field=element, **common)
    if code == "10000" or kind == "SYSTEMFAULT" or (status is not None and status >= 500):
        return RetryableError(text, **common)
    return RecordError(text, field=element, **common)


def error_from_response(response: httpx.Response) -> ConnectorError | None:
    """``HttpClient`` error mapper: classify a non-2xx QuickBooks answer (None: use status)."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    fault = fault_of(body)
    if fault is None:
        if response.status_code == 429:
            return RateLimitedError(
                "QuickBooks throttled the request",
                status=429,
                retry_after=THROTTLE_WAIT_SECONDS,
            )
        if response.status_code == 401:
            return AuthExpiredError("QuickBooks refused the access token", status=401)
        return None
    return error_from_fault(fault, response.status_code)
