"""Client edge cases against a mocked Stripe (respx): retries, error mapping, keys, versions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.settings import PINNED_API_VERSION, StripeSettings
from ledgerlink_stripe.streams import iso

from ledgerlink.connector.errors import (
    AuthenticationError,
    FatalError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import Cursor, WriteAction, WriteOp

API = "https://api.stripe.com"
KEY = "sk_test_respxSecretKey1234567890"


def _error(
    status: int, type_: str, code: str | None = None, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"error": {"type": type_, "message": f"{type_} happened"}}
    if code:
        body["error"]["code"] = code
    return httpx.Response(status, json=body, headers=headers)


def _customer(cid: str = "cus_1") -> dict[str, Any]:
    return {"id": cid, "object": "customer", "created": 1_700_000_000, "metadata": {}}


def _event_list(
    since: int, events: list[tuple[str, int]], gte: int | None = None, lt: int | None = None
) -> httpx.Response:
    """Stripe's answer to a list of ``customer.updated`` events: ``(id, second after since)``,
    newest first, those from ``gte`` on and before ``lt``."""
    data = [
        {
            "id": event_id,
            "object": "event",
            "type": "customer.updated",
            "created": since + second,
            "data": {"object": _customer(f"cus_{event_id}")},
        }
        for event_id, second in sorted(events, key=lambda e: -e[1])
        if (gte is None or since + second >= gte) and (lt is None or since + second < lt)
    ]
    return httpx.Response(
        200, json={"object": "list", "data": data, "has_more": False, "url": "/v1/events"}
    )


@pytest.fixture
def delays() -> list[float]:
    """Sleeps the retry policy asked for."""
    return []


@pytest.fixture
def conn(delays: list[float]) -> Any:
    """A connector with a recording, non-sleeping retry policy."""
    policy = RetryPolicy(max_attempts=3, sleep=delays.append, jitter=lambda d: d)
    connector = StripeConnector(StripeSettings(api_key=KEY), retry=policy)
    yield connector
    connector.close()


def _create(conn: StripeConnector, key: str = "outbox-1") -> Any:
    op = WriteOp(key, "customers", WriteAction.CREATE, {"name": "Acme"})
    return next(iter(conn.write([op])))


@respx.mock
def test_write_sends_outbox_key_and_pinned_version(conn: StripeConnector) -> None:
    """A write carries the outbox idempotency key and the pinned Stripe-Version."""
    route = respx.post(f"{API}/v1/customers").mock(
        return_value=httpx.Response(200, json=_customer())
    )
    result = _create(conn)
    request = route.calls.last.request
    assert request.headers["idempotency-key"] == "outbox-1"
    assert request.headers["stripe-version"] == PINNED_API_VERSION
    assert result.remote_id == "cus_1"
    assert result.ok


@respx.mock
def test_rate_limit_is_retried_after_retry_after(
    conn: StripeConnector, delays: list[float]
) -> None:
    """A 429 is retried with the same key after the Retry-After delay."""
    route = respx.post(f"{API}/v1/customers").mock(
        side_effect=[
            _error(429, "invalid_request_error", "rate_limit", headers={"retry-after": "3"}),
            httpx.Response(200, json=_customer()),
        ]
    )
    result = _create(conn)
    assert result.ok
    assert delays == [3.0]
    keys = {call.request.headers["idempotency-key"] for call in route.calls}
    assert keys == {"outbox-1"}


@respx.mock
def test_lock_timeout_maps_to_rate_limited(conn: StripeConnector) -> None:
    """lock_timeout keeps failing -> RateLimitedError after the attempts run out."""
    respx.post(f"{API}/v1/customers").mock(
        return_value=_error(429, "invalid_request_error", "lock_timeout")
    )
    result = _create(conn)
    assert isinstance(result.error, RateLimitedError)
    assert result.error.vendor_code == "lock_timeout"


@respx.mock
def test_server_error_is_retried_then_succeeds(conn: StripeConnector) -> None:
    """A 500 api_error is retryable and the retry succeeds."""
    respx.get(f"{API}/v1/customers").mock(
        side_effect=[
            _error(500, "api_error"),
            httpx.Response(
                200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}
            ),
        ]
    )
    pages = list(conn.read("customers", Cursor()))
    assert pages[-1].cursor.state["mode"] == "events"


@respx.mock
def test_should_retry_false_is_not_retried(conn: StripeConnector) -> None:
    """Stripe-Should-Retry: false on a 5xx quarantines instead of retrying."""
    route = respx.post(f"{API}/v1/customers").mock(
        return_value=_error(503, "api_error", headers={"stripe-should-retry": "false"})
    )
    result = _create(conn)
    assert isinstance(result.error, RecordError)
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "type_", "code", "expected"),
    [
        (400, "idempotency_error", None, FatalError),
        (400, "invalid_request_error", "parameter_missing", RecordError),
        (402, "card_error", "card_declined", RecordError),
        (401, "invalid_request_error", None, AuthenticationError),
        (403, "invalid_request_error", None, AuthenticationError),
    ],
)
@respx.mock
def test_error_types_map_to_what_the_caller_does(
    conn: StripeConnector, status: int, type_: str, code: str | None, expected: type
) -> None:
    """Each Stripe error type maps onto the core error naming the next step."""
    respx.post(f"{API}/v1/customers").mock(return_value=_error(status, type_, code))
    result = _create(conn)
    assert type(result.error) is expected
    assert result.error.status == status


@respx.mock
def test_connection_error_is_retryable(conn: StripeConnector) -> None:
    """A dropped connection maps to RetryableError once retries are spent."""
    respx.get(f"{API}/v1/events").mock(side_effect=httpx.ConnectError("boom"))
    with pytest.raises(RetryableError):
        list(conn.read("customers", Cursor(state={"mode": "events", "since": 2_000_000_000})))


@respx.mock
def test_api_key_never_appears_in_errors(conn: StripeConnector) -> None:
    """Error messages and reprs never contain the API key."""
    respx.post(f"{API}/v1/customers").mock(return_value=_error(401, "authentication_error"))
    result = _create(conn)
    assert KEY not in str(result.error)
    assert KEY not in repr(result.error)
    assert KEY not in repr(conn)
    assert KEY not in repr(conn.settings)


@respx.mock
def test_truncated_invoice_lines_are_completed(conn: StripeConnector) -> None:
    """An invoice whose embedded lines have more pages gets the rest from its lines list."""
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "created": 1_700_000_000,
        "lines": {
            "object": "list",
            "data": [{"id": "il_1"}],
            "has_more": True,
            "url": "/v1/invoices/in_1/lines",
        },
    }
    respx.get(f"{API}/v1/invoices").mock(
        return_value=httpx.Response(
            200,
            json={"object": "list", "data": [invoice], "has_more": False, "url": "/v1/invoices"},
        )
    )
    respx.get(f"{API}/v1/invoices/in_1/lines").mock(
        return_value=httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"id": "il_2"}],
                "has_more": False,
                "url": "/v1/invoices/in_1/lines",
            },
        )
    )
    pages = list(conn.read("invoices", Cursor()))
    lines = pages[0].records[0].payload["lines"]
    assert [line["id"] for line in lines["data"]] == ["il_1", "il_2"]


@respx.mock
@pytest.mark.parametrize(
    ("age", "settled", "seen"),
    [
        (5, 0, [[0, "evt_1"]]),
        (30, 0, [[0, "evt_1"]]),
        (31, 1, []),
        (3_600, 3_570, []),
    ],
)
@pytest.mark.parametrize("written_before", [False, True])
def test_an_incremental_read_lists_from_the_first_second_not_settled(
    age: int, settled: int, seen: list[list[Any]], written_before: bool
) -> None:
    """A read lists from the cursor's ``since``, the first second no read begun 30 s after it
    has listed, skipping what it landed there; then ``since`` moves to 30 s before the read
    began, so a burst of events in one second is listed again only for those 30 s. A cursor
    written before the window was kept (``seen``: the ids of its ``since`` second) reads the
    same."""
    since = 1_700_000_000
    empty = {"object": "list", "data": [], "has_more": False, "url": "/v1/events"}
    events = respx.get(f"{API}/v1/events").mock(return_value=httpx.Response(200, json=empty))
    fees = respx.get(f"{API}/v1/balance_transactions").mock(
        return_value=httpx.Response(200, json={**empty, "url": "/v1/balance_transactions"})
    )
    connector = StripeConnector(StripeSettings(api_key=KEY), clock=lambda: since + age)
    try:
        for stream, route in (("customers", events), ("balance_transactions", fees)):
            cursor = Cursor(
                value="2023-11-14T22:13:20Z",
                state={
                    "mode": "events" if route is events else "created",
                    "since": since,
                    "seen": ["evt_1"] if written_before else [[since, "evt_1"]],
                },
            )
            pages = list(connector.read(stream, cursor))
            assert route.calls.last.request.url.params["created[gte]"] == str(since)
            assert [r for p in pages for r in p.records] == []
            assert pages[-1].cursor.state["since"] == since + settled
            assert pages[-1].cursor.state["seen"] == [[since + c, i] for c, i in seen]
    finally:
        connector.close()


@respx.mock
def test_an_event_that_joins_its_second_late_is_read_by_the_next_read_however_late() -> None:
    """Stripe's lists are eventually consistent: an event can show up in its second after a
    read listed that second, the newest second of the read or an earlier one. The next read
    lists every second not settled when the last read began, skipping what that read landed,
    so it lands the late event even an hour later; then it moves on."""
    since = 1_700_000_000
    now = [since + 6]

    def events_of(*events: tuple[str, int]) -> httpx.Response:
        return _event_list(since, list(events))

    route = respx.get(f"{API}/v1/events")
    connector = StripeConnector(StripeSettings(api_key=KEY), clock=lambda: now[0])
    try:
        route.mock(return_value=events_of(("evt_1", 0), ("evt_3", 5)))
        cursor = Cursor(state={"mode": "events", "since": since - 60, "seen": []})
        pages = list(connector.read("customers", cursor))
        cursor = pages[-1].cursor
        assert [r.id for p in pages for r in p.records] == ["cus_evt_1", "cus_evt_3"]
        assert cursor.value == iso(since + 5)
        # An hour later: evt_2 joined the first second after that read listed it.
        now[0] = since + 3_600
        route.mock(return_value=events_of(("evt_1", 0), ("evt_2", 0), ("evt_3", 5)))
        pages = list(connector.read("customers", cursor))
        assert route.calls.last.request.url.params["created[gte]"] == str(since - 24)
        assert [r.id for p in pages for r in p.records] == ["cus_evt_2"]
        cursor = pages[-1].cursor
        # That read began long after those seconds settled: the next one starts after them.
        route.mock(return_value=events_of())
        list(connector.read("customers", cursor))
        assert route.calls.last.request.url.params["created[gte]"] == str(since + 3_570)
    finally:
        connector.close()


@respx.mock
def test_the_reads_right_after_a_burst_list_only_what_is_newer() -> None:
    """Within a minute of the window's first second, a read lists only what is newer than the
    seconds landed whole, not the burst again; the first read after that lists the whole
    window again, and lands an event that joined the burst's second late."""
    since = 1_700_000_000
    now = [since + 10]
    events = [("evt_1", 0), ("evt_4", 8)]

    def listed(request: httpx.Request) -> httpx.Response:
        return _event_list(since, events, int(request.url.params["created[gte]"]))

    route = respx.get(f"{API}/v1/events").mock(side_effect=listed)
    connector = StripeConnector(StripeSettings(api_key=KEY), clock=lambda: now[0])
    try:
        burst = {"mode": "events", "since": since - 24, "seen": [[since, "evt_1"]]}
        cursor = Cursor(state={**burst, "newest": since})
        pages = list(connector.read("customers", cursor))
        assert route.calls.last.request.url.params["created[gte]"] == str(since + 1)
        assert [r.id for p in pages for r in p.records] == ["cus_evt_4"]
        cursor = pages[-1].cursor
        assert cursor.state["since"] == since - 24
        assert cursor.state["newest"] == since + 8
        events.append(("evt_2", 0))  # joins the burst's second late
        now[0] = since + 40
        pages = list(connector.read("customers", cursor))
        assert route.calls.last.request.url.params["created[gte]"] == str(since - 24)
        assert [r.id for p in pages for r in p.records] == ["cus_evt_2"]
        assert pages[-1].cursor.state["since"] == since + 10
    finally:
        connector.close()


@respx.mock
def test_a_read_settling_the_window_right_after_a_burst_leaves_the_burst_to_the_next() -> None:
    """A read that settles the window a few seconds after a burst lists the seconds it settles
    and what is newer than the burst, not the burst's seconds: no read begun 30 s after them
    has listed them yet, so they stay in the window. The next read that settles lists them
    once, and lands an event that joined the burst's second late."""
    since = 1_700_000_000
    now = [since + 5]
    events = [("evt_0", -50), ("evt_1", 0), ("evt_3", 3)]

    def listed(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        lt = params.get("created[lt]")
        return _event_list(
            since, events, int(params["created[gte]"]), None if lt is None else int(lt)
        )

    route = respx.get(f"{API}/v1/events").mock(side_effect=listed)
    connector = StripeConnector(StripeSettings(api_key=KEY), clock=lambda: now[0])
    try:
        window = {"since": since - 70, "seen": [[since - 50, "evt_0"], [since, "evt_1"]]}
        cursor = Cursor(state={"mode": "events", **window, "newest": since})
        events += [("evt_late", -40), ("evt_2", 0)]  # each joins its second late
        pages = list(connector.read("customers", cursor))
        asked = [dict(call.request.url.params) for call in route.calls]
        assert [(a["created[gte]"], a.get("created[lt]")) for a in asked] == [
            (str(since - 70), str(since - 25)),
            (str(since + 1), None),
        ]
        assert [r.id for p in pages for r in p.records] == ["cus_evt_late", "cus_evt_3"]
        cursor = pages[-1].cursor
        assert cursor.state["since"] == since - 25
        assert [since, "evt_1"] in cursor.state["seen"]
        now[0] = since + 40
        pages = list(connector.read("customers", cursor))
        assert route.calls.last.request.url.params["created[gte]"] == str(since - 25)
        assert "created[lt]" not in route.calls.last.request.url.params
        assert [r.id for p in pages for r in p.records] == ["cus_evt_2"]
        assert pages[-1].cursor.state["since"] == since + 10
    finally:
        connector.close()


@respx.mock
def test_a_long_reads_pages_keep_the_ids_of_their_newest_seconds_and_resume_exactly() -> None:
    """A read of a long backlog lands in pages of 100 objects; a page's cursor keeps the ids of
    its own last second only (not every id landed so far), and a read resumed from it after
    a crash lands the rest, each object once."""
    since = 1_700_000_000
    events = [(f"evt_{n:03d}", 0 if n < 150 else 1) for n in range(250)]

    def listed(request: httpx.Request) -> httpx.Response:
        return _event_list(since, events, int(request.url.params["created[gte]"]))

    respx.get(f"{API}/v1/events").mock(side_effect=listed)
    connector = StripeConnector(StripeSettings(api_key=KEY), clock=lambda: since + 3_600)
    try:
        start = Cursor(state={"mode": "events", "since": since - 10, "seen": []})
        pages = list(connector.read("customers", start))
        assert [len(p.records) for p in pages] == [100, 100, 50]
        assert [len(p.cursor.state["seen"]) for p in pages] == [100, 50, 0]
        assert [p.cursor.state["since"] for p in pages] == [since, since + 1, since + 3_570]
        resumed = list(connector.read("customers", pages[0].cursor))
        landed = [r.id for p in [pages[0], *resumed] for r in p.records]
        assert sorted(landed) == sorted(f"cus_{event_id}" for event_id, _ in events)
    finally:
        connector.close()


@pytest.mark.parametrize(
    ("status", "type_", "expected"),
    [
        (401, "authentication_error", AuthenticationError),
        (404, "invalid_request_error", RecordError),
        (400, "idempotency_error", FatalError),
    ],
)
@respx.mock
def test_a_reads_errors_map_as_a_writes_do(
    conn: StripeConnector, status: int, type_: str, expected: type
) -> None:
    """A read's answer is parsed by the connector, its errors still by the SDK: each maps onto
    the core error naming the next step, with its status."""
    respx.get(f"{API}/v1/customers").mock(return_value=_error(status, type_))
    with pytest.raises(expected) as raised:
        conn.api.get("/v1/customers", {"limit": 1})
    assert raised.value.status == status
    assert KEY not in str(raised.value)


@respx.mock
def test_a_read_takes_every_json_number_stripe_may_send(conn: StripeConnector) -> None:
    """An integer beyond 64 bits is read exactly (orjson would give an inexact float), and a
    body that is not JSON is the SDK's error, retried."""
    wide = 2**70 + 1
    text = (
        '{"object": "list", "data": [{"id": "cus_1", "n": ' + str(wide) + '}], "has_more": false}'
    )
    respx.get(f"{API}/v1/customers").mock(return_value=httpx.Response(200, text=text))
    body = conn.api.get("/v1/customers")
    assert body["data"][0]["n"] == wide
    respx.get(f"{API}/v1/events").mock(return_value=httpx.Response(200, text="<html>oops"))
    with pytest.raises(RetryableError):  # the SDK's "invalid response body", retried
        conn.api.get("/v1/events")
