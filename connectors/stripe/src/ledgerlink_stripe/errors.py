"""Mapping of Stripe's errors onto the core's error tree (what the caller does next).

One table, read top to bottom; the first matching rule wins::

    stripe error / condition                         -> core error
    IdempotencyError (type idempotency_error)        -> FatalError   (a reused key is a bug)
    AuthenticationError (401)                        -> AuthenticationError
    PermissionError (403, restricted key)            -> AuthenticationError
    Stripe-Should-Retry: false                       -> RecordError  (Stripe says do not retry)
    RateLimitError (429: rate_limit, lock_timeout)   -> RateLimitedError (Retry-After honoured)
    APIConnectionError                               -> RetryableError
    APIError (5xx) or Stripe-Should-Retry: true      -> RetryableError
    CardError (402), InvalidRequestError (400/404)   -> RecordError  (quarantine with type/code)
    anything else                                    -> RetryableError when 5xx, else RecordError

Messages carry Stripe's error type, code and message and never the API key.
"""

from __future__ import annotations

from typing import Any

import stripe

from ledgerlink.connector.errors import (
    AuthenticationError,
    ConnectorError,
    FatalError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from ledgerlink.connector.http import parse_retry_after

__all__ = ["map_stripe_error"]


def _header(error: stripe.StripeError, name: str) -> str | None:
    headers: Any = error.headers or {}
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


def map_stripe_error(error: stripe.StripeError) -> ConnectorError:  # noqa: PLR0911 - one return per table row
    """Return the core error for a stripe-python exception.

    Args:
        error: the exception the SDK raised.

    Returns:
        A :class:`~ledgerlink.connector.errors.ConnectorError` subclass carrying Stripe's
        error code as ``vendor_code``, the HTTP status and, for throttling, ``retry_after``.
    """
    status = error.http_status
    detail = error.error
    error_type = getattr(detail, "type", None) or ""
    code = error.code or getattr(detail, "code", None)
    param = getattr(detail, "param", None)
    text = f"Stripe {error_type or type(error).__name__}: {error.user_message or 'no message'}"
    should_retry = _header(error, "stripe-should-retry")
    kwargs: dict[str, Any] = {
        "vendor_code": code or error_type or None,
        "status": status,
        "field": param,
    }
    if isinstance(error, stripe.IdempotencyError) or error_type == "idempotency_error":
        return FatalError(text, **kwargs)
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return AuthenticationError(text, **kwargs)
    if should_retry == "false":
        return RecordError(text, **kwargs)
    if isinstance(error, stripe.RateLimitError) or code in ("rate_limit", "lock_timeout"):
        retry_after = parse_retry_after(_header(error, "retry-after"))
        return RateLimitedError(text, retry_after=retry_after, **kwargs)
    if isinstance(error, stripe.APIConnectionError):
        return RetryableError(f"Stripe connection failed: {type(error).__name__}", **kwargs)
    if (
        should_retry == "true"
        or isinstance(error, stripe.APIError)
        or (status is not None and status >= 500)
    ):
        return RetryableError(text, **kwargs)
    return RecordError(text, **kwargs)
