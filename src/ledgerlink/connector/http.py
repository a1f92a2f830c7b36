"""The HTTP helper connectors share: timeouts, retries, rate limits, error mapping, metrics.

:class:`HttpClient` wraps one ``httpx.Client``. Each call goes through the connector's
:class:`RateLimiter`, is logged with secrets redacted and counted for metrics, has its error
response mapped to :mod:`ledgerlink.connector.errors`, and is retried by :class:`RetryPolicy`
when the error says so. Non-idempotent calls (POST, PATCH without an idempotency key) are
never retried, because a retry could duplicate a write.

Connectors built on a vendor SDK (simple-salesforce, stripe-python) use the pieces directly:
``RetryPolicy.call``, ``RateLimiter.acquire``, ``error_for_status`` and ``redact_url``.
"""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import tenacity

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
from ledgerlink.log import REDACTED, get_logger
from ledgerlink.metrics import API_CALL_SECONDS, API_CALLS

__all__ = [
    "CallStats",
    "HttpClient",
    "RateLimiter",
    "RetryPolicy",
    "error_for_status",
    "full_jitter",
    "parse_retry_after",
    "redact_url",
]

T = TypeVar("T")
ErrorMapper = Callable[[httpx.Response], ConnectorError | None]

_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
        "api_key",
        "assertion",
        "code",
        "token",
        "key",
        "sig",
        "signature",
    }
)
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def redact_url(url: str | httpx.URL) -> str:
    """Return ``url`` with secret-looking query parameters and user info masked."""
    parts = urlsplit(str(url))
    query = urlencode(
        [
            (k, REDACTED if k.lower() in _SECRET_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds, or None.

    Accepts delta-seconds and HTTP dates; negative results become 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


# Status -> error class: the default rules. A connector's own mapper runs first and can
# refine them with the vendor's error codes (for example a 400 that is really a lock timeout).
_STATUS_TABLE: dict[int, type[ConnectorError]] = {
    400: RecordError,
    401: AuthExpiredError,
    403: AuthenticationError,
    404: RecordError,
    409: ConflictError,
    412: ConflictError,
    422: RecordError,
    429: RateLimitedError,
}


def error_for_status(response: httpx.Response, message: str | None = None) -> ConnectorError:
    """Map an error response to the core's error type by status alone."""
    status = response.status_code
    cls = _STATUS_TABLE.get(status)
    if cls is None:
        cls = RetryableError if status >= 500 or status == 408 else RecordError
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    text = message or f"{response.request.method} {redact_url(response.request.url)} failed"
    return cls(text, status=status, retry_after=retry_after)


def full_jitter(delay: float) -> float:
    """Return a random delay in [0, delay] (AWS 'full jitter'); tests inject their own."""
    return random.uniform(0, delay)  # noqa: S311 - backoff jitter, not security


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry, as data.

    Rules, in order:
      1. an error whose ``retryable`` flag is false is raised at once;
      2. ``AuthExpiredError`` and ``StaleVersionError`` are the caller's to handle (refresh the
         token, or refetch and reapply) before calling again: raised;
      3. otherwise wait ``retry_after`` when the vendor gave one (capped at ``max_delay``),
         else exponential backoff ``base_delay * 2**attempt`` with jitter;
      4. give up after ``max_attempts`` calls and raise the last error.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 60.0
    jitter: Callable[[float], float] = full_jitter
    sleep: Callable[[float], None] = time.sleep

    def should_retry(self, error: BaseException) -> bool:
        """True when ``error`` is worth another attempt under these rules."""
        return (
            isinstance(error, ConnectorError)
            and error.retryable
            and not isinstance(error, AuthExpiredError | StaleVersionError)
        )

    def delay_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (attempt counts from 1)."""
        if isinstance(error, ConnectorError) and error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        return self.jitter(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under this policy and return its result, or raise its last error."""

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay_for(state.attempt_number, error)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(self.should_retry),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


class RateLimiter:
    """Thread-safe token bucket: ``rate`` calls per second on average, bursts of ``burst``.

    Share one instance between every client of the same vendor account so that their calls
    add up against the vendor's limit.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            msg = "rate must be > 0 and burst >= 1"
            raise ValueError(msg)
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass
class CallStats:
    """In-process count of calls by status, for benchmarks and ``connectors check``."""

    calls: int = 0
    by_status: Counter[int] = field(default_factory=Counter)

    def record(self, status: int) -> None:
        """Count one call that ended with ``status`` (0 for no response)."""
        self.calls += 1
        self.by_status[status] += 1


class HttpClient:
    """An ``httpx.Client`` with the core's retry, rate-limit, error and logging rules.

    Args:
        connector: connector name, for logs and metrics labels.
        base_url: the API root.
        headers: default headers (an ``Authorization`` header is never logged).
        auth: an ``httpx.Auth`` (OAuth bearer with refresh, ...).
        timeout: seconds for connect/read/write/pool.
        retry: the retry policy.
        rate_limiter: shared limiter, or None.
        error_mapper: vendor-specific mapping; returns None to fall back to the status table.
        verify: TLS verification: a bool, an SSL context, or the path of a CA bundle (a
            sandbox's own certificate).
        transport: an httpx transport (respx or ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        *,
        connector: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        error_mapper: ErrorMapper | None = None,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.connector = connector
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.error_mapper = error_mapper
        self.stats = CallStats()
        self._log = get_logger(connector=connector)
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    @property
    def client(self) -> httpx.Client:
        """The underlying ``httpx.Client``."""
        return self._client

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request and return its successful response.

        Args:
            method: HTTP method.
            url: path relative to ``base_url`` or absolute URL.
            idempotent: whether a retry is safe; defaults to True for GET/HEAD/OPTIONS/PUT/
                DELETE and False otherwise. Pass True for a write carrying an idempotency key.
            **kwargs: passed to ``httpx.Client.request`` (params, json, data, headers, ...).

        Raises:
            ConnectorError: the mapped error after the retry policy gave up.
        """
        method = method.upper()
        safe = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent

        def once() -> httpx.Response:
            return self._send_once(method, url, **kwargs)

        if not safe:
            return once()
        return self.retry.call(once)

    def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        started = time.perf_counter()
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            self._count(method, 0, started)
            msg = f"{method} {redact_url(url)} timed out"
            raise RetryableError(msg) from exc
        except httpx.TransportError as exc:
            self._count(method, 0, started)
            msg = f"{method} {redact_url(url)}: {type(exc).__name__}"
            raise RetryableError(msg) from exc
        self._count(method, response.status_code, started)
        self._log.debug(
            "http.call",
            method=method,
            url=redact_url(response.request.url),
            status=response.status_code,
            seconds=round(time.perf_counter() - started, 4),
        )
        if response.is_success:
            return response
        response.read()
        error = self.error_mapper(response) if self.error_mapper else None
        raise error or error_for_status(response)

    def _count(self, method: str, status: int, started: float) -> None:
        self.stats.record(status)
        API_CALLS.labels(self.connector, method, str(status)).inc()
        API_CALL_SECONDS.labels(self.connector).observe(time.perf_counter() - started)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
