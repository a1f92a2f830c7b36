"""Tests of the shared HTTP helper: retries, Retry-After, error mapping, rate limits, redaction."""

from __future__ import annotations

import httpx
import pytest
import respx

from ledgerlink.connector.errors import (
    AuthExpiredError,
    ConflictError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from ledgerlink.connector.http import (
    HttpClient,
    RateLimiter,
    RetryPolicy,
    parse_retry_after,
    redact_url,
)

BASE = "https://api.example.test"


def make_client(sleeps: list[float], **kwargs: object) -> HttpClient:
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, jitter=lambda d: d, sleep=sleeps.append)
    return HttpClient(connector="test", base_url=BASE, retry=policy, **kwargs)  # type: ignore[arg-type]


@respx.mock
def test_get_is_retried_after_server_errors_and_returns_the_success() -> None:
    """A GET that meets 503 twice is retried with exponential backoff and then succeeds."""
    route = respx.get(f"{BASE}/items").mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"ok": 1})]
    )
    sleeps: list[float] = []
    response = make_client(sleeps).request("GET", "/items")
    assert response.json() == {"ok": 1}
    assert route.call_count == 3
    assert sleeps == [1.0, 2.0]


@respx.mock
def test_retry_after_header_sets_the_wait() -> None:
    """A 429 with Retry-After waits exactly what the vendor asked before retrying."""
    respx.get(f"{BASE}/items").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
    )
    sleeps: list[float] = []
    make_client(sleeps).request("GET", "/items")
    assert sleeps == [7.0]


@respx.mock
def test_post_without_idempotency_is_not_retried() -> None:
    """A plain POST that fails is raised at once, because a retry could duplicate the write."""
    route = respx.post(f"{BASE}/items").mock(return_value=httpx.Response(503))
    sleeps: list[float] = []
    with pytest.raises(RetryableError):
        make_client(sleeps).request("POST", "/items", json={})
    assert route.call_count == 1
    assert sleeps == []


@respx.mock
def test_post_marked_idempotent_is_retried() -> None:
    """A POST carrying an idempotency key may be retried."""
    route = respx.post(f"{BASE}/items").mock(side_effect=[httpx.Response(502), httpx.Response(201)])
    make_client([]).request("POST", "/items", json={}, idempotent=True)
    assert route.call_count == 2


@respx.mock
def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    """When every attempt fails the last classified error is raised."""
    route = respx.get(f"{BASE}/items").mock(return_value=httpx.Response(429))
    with pytest.raises(RateLimitedError):
        make_client([]).request("GET", "/items")
    assert route.call_count == 4


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, RecordError), (401, AuthExpiredError), (409, ConflictError), (500, RetryableError)],
)
@respx.mock
def test_status_maps_to_what_the_caller_does_next(status: int, error: type[Exception]) -> None:
    """Error statuses become the error class that names the caller's next step."""
    respx.get(f"{BASE}/x").mock(return_value=httpx.Response(status))
    client = make_client([])
    client.retry = RetryPolicy(max_attempts=1)
    with pytest.raises(error):
        client.request("GET", "/x")


@respx.mock
def test_vendor_mapper_refines_the_status_table() -> None:
    """A connector's error mapper decides before the default status table."""
    respx.get(f"{BASE}/x").mock(return_value=httpx.Response(400, json={"code": "LOCKED"}))

    def mapper(response: httpx.Response) -> RetryableError | None:
        if response.json().get("code") == "LOCKED":
            return RetryableError("row locked", vendor_code="LOCKED", status=400)
        return None

    client = make_client([], error_mapper=mapper)
    client.retry = RetryPolicy(max_attempts=1)
    with pytest.raises(RetryableError) as info:
        client.request("GET", "/x")
    assert info.value.vendor_code == "LOCKED"


@respx.mock
def test_dropped_connection_is_retryable() -> None:
    """A transport failure is classified as retryable and retried for safe methods."""
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[httpx.RemoteProtocolError("peer closed"), httpx.Response(200)]
    )
    make_client([]).request("GET", "/x")
    assert route.call_count == 2


@respx.mock
def test_calls_are_counted_by_status() -> None:
    """Every call is counted, failures included, for metrics and benchmarks."""
    respx.get(f"{BASE}/x").mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    client = make_client([])
    client.request("GET", "/x")
    assert client.stats.calls == 2
    assert client.stats.by_status[503] == 1


def test_redact_url_masks_secret_query_parameters_and_userinfo() -> None:
    """Tokens in query strings and credentials in the authority never reach the logs."""
    url = "https://user:pw@h.test/cb?access_token=abc123&page=2&client_secret=s3cr3t"
    redacted = redact_url(url)
    assert "abc123" not in redacted
    assert "s3cr3t" not in redacted
    assert "pw" not in redacted
    assert "page=2" in redacted


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After is understood both as seconds and as an HTTP date."""
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_rate_limiter_spaces_calls_beyond_the_burst() -> None:
    """A bucket of 2 at 10 calls/s lets two calls through, then waits 0.1 s per call."""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
    assert waits == [0.1, 0.1]


def test_stale_version_is_left_to_the_caller() -> None:
    """A stale-version conflict is not resent unchanged: the caller must refetch and reapply."""
    from ledgerlink.connector.errors import StaleVersionError

    calls = []

    def stale() -> None:
        calls.append(1)
        raise StaleVersionError("SyncToken is stale")

    with pytest.raises(StaleVersionError):
        RetryPolicy(sleep=lambda _s: None).call(stale)
    assert len(calls) == 1
