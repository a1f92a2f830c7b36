"""Errors a connector raises, named for what the caller does next.

The core never inspects a vendor's error body; a connector maps it onto this tree and the
sync engine, the push worker and the CLI act on the class alone::

    ConnectorError                      base; never raised directly
    +-- ConfigurationError              fix the configuration; do not retry
    +-- AuthenticationError             credentials refused; do not retry until fixed
    |   +-- AuthExpiredError            token expired: refresh once, then retry the call
    +-- RetryableError                  transient (5xx, timeout, dropped connection): back off, retry
    |   +-- RateLimitedError            the vendor said slow down; honour ``retry_after``
    |   +-- QuotaExhaustedError         a daily or periodic budget is spent; wait for the window
    +-- ConflictError                   the target is ambiguous or changed under us: send to review
    |   +-- StaleVersionError           optimistic lock lost (SyncToken, ETag): refetch and reapply
    +-- RecordError                     this record is bad: quarantine it, go on with the batch
    +-- FatalError                      a bug or a broken contract (reused idempotency key): stop

``retry_after`` is in seconds, ``vendor_code`` the vendor's own error code for the operator,
and ``status`` the HTTP status when there was one. Messages never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "AuthExpiredError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ConnectorError",
    "FatalError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "RecordError",
    "RetryableError",
    "StaleVersionError",
]


class ConnectorError(Exception):
    """Base of every error a connector reports to the core."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        vendor_code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor_code = vendor_code
        self.status = status
        self.retry_after = retry_after
        self.field = field

    @property
    def kind(self) -> str:
        """Short stable name of the error class, for storage and metrics labels."""
        return _KIND_BY_CLASS.get(type(self).__name__, "error")

    def __str__(self) -> str:
        parts = [self.message]
        if self.vendor_code:
            parts.append(f"[{self.vendor_code}]")
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)


class ConfigurationError(ConnectorError):
    """The connector's configuration is wrong or incomplete."""


class AuthenticationError(ConnectorError):
    """Credentials were refused."""


class AuthExpiredError(AuthenticationError):
    """The access token or session expired; a refresh should fix it."""

    retryable = True


class RetryableError(ConnectorError):
    """A transient failure: the same call may succeed later."""

    retryable = True


class RateLimitedError(RetryableError):
    """The vendor throttled the call; wait ``retry_after`` seconds."""


class QuotaExhaustedError(RetryableError):
    """A daily or periodic API budget is spent; wait for the next window."""


class ConflictError(ConnectorError):
    """The write is ambiguous (several matching records) or conflicts with the target."""


class StaleVersionError(ConflictError):
    """The target changed since it was read (optimistic locking)."""

    retryable = True


class RecordError(ConnectorError):
    """This one record is invalid for the target; quarantine it and continue."""


class FatalError(ConnectorError):
    """A broken contract that retrying cannot fix."""


_KIND_BY_CLASS = {
    "ConfigurationError": "configuration",
    "AuthenticationError": "authentication",
    "AuthExpiredError": "auth_expired",
    "RetryableError": "retryable",
    "RateLimitedError": "rate_limited",
    "QuotaExhaustedError": "quota_exhausted",
    "ConflictError": "conflict",
    "StaleVersionError": "stale_version",
    "RecordError": "record",
    "FatalError": "fatal",
}
