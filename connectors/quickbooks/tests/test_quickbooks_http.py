"""HTTP edge cases of the QuickBooks client, with respx standing in for Intuit."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings
from ledgerlink_quickbooks.errors import error_from_fault

from ledgerlink.connector.errors import (
    AuthenticationError,
    AuthExpiredError,
    RateLimitedError,
    RecordError,
    RetryableError,
    StaleVersionError,
)
from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import ConnectorContext, Cursor, WriteAction, WriteOp

BASE = "https://qbo.test"
TOKEN_URL = "https://oauth.test/oauth2/v1/tokens/bearer"
REALM = "4620816365"
API = f"{BASE}/v3/company/{REALM}"
REFRESH = "RT1-secret-refresh-value"


class Store:
    def __init__(self):
        self.values = {}

    def get(self, name):
        return self.values.get(name)

    def put(self, name, value):
        self.values[name] = value


def _token_answer(n=1):
    return httpx.Response(
        200,
        json={
            "token_type": "bearer",
            "access_token": f"access-{n}",
            "expires_in": 3600,
            "refresh_token": f"RT1-rotated-{n}",
            "x_refresh_token_expires_in": 8726400,
        },
    )


@pytest.fixture
def conn():
    sleeps = []
    settings = QuickBooksSettings(
        client_id="cid",
        client_secret="csecret",
        refresh_token=REFRESH,
        realm_id=REALM,
        base_url=BASE,
        token_url=TOKEN_URL,
        requests_per_minute=60_000,
        batch_requests_per_minute=60_000,
    )
    connector = QuickBooksConnector(
        settings,
        ConnectorContext(secrets=Store()),
        retry=RetryPolicy(sleep=sleeps.append, jitter=lambda d: 0.0),
    )
    connector.sleeps = sleeps
    yield connector
    connector.close()


def _query_answer(entity, rows):
    body = {"QueryResponse": {entity: rows, "startPosition": 1, "maxResults": len(rows)}}
    body["time"] = "2026-03-01T10:00:00.000-08:00"
    return httpx.Response(200, json=body)


def _customer(i, when="2026-03-01T09:00:00-08:00"):
    return {
        "Id": str(i),
        "SyncToken": "0",
        "DisplayName": f"C{i}",
        "MetaData": {"CreateTime": when, "LastUpdatedTime": when},
    }


@respx.mock
def test_server_errors_on_reads_are_retried_then_succeed(conn):
    """Two 503s with a SystemFault body are retried; the third answer is used."""
    respx.post(TOKEN_URL).mock(return_value=_token_answer())
    fault = {
        "Fault": {
            "Error": [
                {
                    "Message": "An application error has occurred",
                    "Detail": "System Failure Error",
                    "code": "10000",
                }
            ],
            "type": "SystemFault",
        }
    }
    route = respx.get(f"{API}/query").mock(
        side_effect=[
            httpx.Response(503, json=fault),
            httpx.Response(503, json=fault),
            _query_answer("Customer", [_customer(1)]),
        ]
    )
    pages = list(conn.read("Customer", Cursor()))
    assert [r.id for p in pages for r in p.records] == ["1"]
    assert route.call_count == 3
    assert all(call.request.url.params["minorversion"] == "75" for call in route.calls)


@respx.mock
def test_times_in_any_offset_become_fixed_width_utc_cursor_values(conn):
    """A Pacific LastUpdatedTime becomes the sortable UTC cursor value."""
    respx.post(TOKEN_URL).mock(return_value=_token_answer())
    respx.get(f"{API}/query").mock(return_value=_query_answer("Customer", [_customer(1)]))
    [page] = list(conn.read("Customer", Cursor()))
    assert page.records[0].cursor_value == "2026-03-01T17:00:00Z"
    assert page.cursor.value == "2026-03-01T17:00:00Z"


@respx.mock
def test_401_refreshes_once_and_repeats_the_call(conn):
    """A lower-case AUTHENTICATION fault triggers one refresh and a resend with the new token."""
    respx.post(TOKEN_URL).mock(side_effect=[_token_answer(1), _token_answer(2)])
    auth_fault = {
        "fault": {
            "error": [
                {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": "Token expired: access-1",
                    "code": "3200",
                }
            ],
            "type": "AUTHENTICATION",
        }
    }
    route = respx.get(f"{API}/companyinfo/{REALM}").mock(
        side_effect=[
            httpx.Response(401, json=auth_fault),
            httpx.Response(200, json={"CompanyInfo": {"CompanyName": "X"}}),
        ]
    )
    assert conn.check().ok
    assert [c.request.headers["Authorization"] for c in route.calls] == [
        "Bearer access-1",
        "Bearer access-2",
    ]


@respx.mock
def test_auth_errors_never_carry_token_text(conn):
    """An auth fault whose Detail echoes the token is reported without that text."""
    fault = {
        "fault": {
            "error": [
                {
                    "message": "AuthenticationFailed",
                    "detail": "Token expired: access-1 RT1-secret-refresh-value",
                    "code": "3200",
                }
            ],
            "type": "AUTHENTICATION",
        }
    }
    error = error_from_fault(fault["fault"], 401)
    assert isinstance(error, AuthExpiredError)
    assert "access-1" not in str(error)
    assert REFRESH not in str(error)
    assert REFRESH not in repr(conn.settings)


@respx.mock
def test_token_endpoint_outage_is_retryable_and_invalid_grant_is_not(conn):
    """A 500 from the token endpoint is retryable; invalid_grant asks for re-authorization."""
    respx.post(TOKEN_URL).mock(
        side_effect=[httpx.Response(500), httpx.Response(400, json={"error": "invalid_grant"})]
    )
    with pytest.raises(RetryableError):
        conn.tokens.access_token()
    with pytest.raises(AuthenticationError) as excinfo:
        conn.tokens.access_token()
    assert not isinstance(excinfo.value, AuthExpiredError)
    assert REFRESH not in str(excinfo.value)


@respx.mock
def test_batch_items_are_classified_individually(conn):
    """Per-item faults map to stale, throttled and validation errors; missing items retry."""
    respx.post(TOKEN_URL).mock(return_value=_token_answer())

    def fault(code, message, detail="", type_="ValidationFault"):
        return {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": type_}

    respx.get(f"{API}/query").mock(
        return_value=_query_answer("Customer", [{**_customer(5), "SyncToken": "3"}])
    )
    batch = respx.post(f"{API}/batch").mock(
        return_value=httpx.Response(
            200,
            json={
                "BatchItemResponse": [
                    {"bId": "0", "Customer": _customer(10)},
                    {
                        "bId": "1",
                        "Fault": fault(
                            "3001", "message=ThrottleExceeded; errorCode=003001", type_="SERVICE"
                        ),
                    },
                    {
                        "bId": "2",
                        "Fault": fault(
                            "6000",
                            "A business validation error has occurred",
                            "Business Validation Error: bad",
                        ),
                    },
                ],
                "time": "2026-03-01T10:00:00.000-08:00",
            },
        )
    )
    ops = [
        WriteOp("k0", "Customer", WriteAction.CREATE, {"DisplayName": "A"}),
        WriteOp("k1", "Customer", WriteAction.CREATE, {"DisplayName": "B"}),
        WriteOp("k2", "Customer", WriteAction.UPDATE, {"Notes": "x"}, remote_id="5"),
        WriteOp("k3", "Customer", WriteAction.CREATE, {"DisplayName": "D"}),
    ]
    results = list(conn.write(ops))
    assert results[0].remote_id == "10"
    assert isinstance(results[1].error, RateLimitedError)
    assert results[1].error.retry_after == 60
    assert isinstance(results[2].error, RecordError)
    assert "Business Validation Error: bad" in results[2].error.message
    assert isinstance(results[3].error, RetryableError)
    sent = json.loads(batch.calls[0].request.content)["BatchItemRequest"]
    assert sent[2] == {
        "bId": "2",
        "operation": "update",
        "Customer": {"Notes": "x", "Id": "5", "SyncToken": "3", "sparse": True},
    }
    assert len(batch.calls[0].request.url.params["requestid"]) <= 50


def test_fault_table_maps_vendor_codes():
    """Codes 5010, 6240, 3100 and unknown 4xx map to stale, conflict, auth and record errors."""

    def f(code, type_="ValidationFault"):
        return {"Error": [{"Message": "m", "Detail": "d", "code": code}], "type": type_}

    assert isinstance(error_from_fault(f("5010"), 400), StaleVersionError)
    assert error_from_fault(f("6240"), 400).kind == "conflict"
    assert isinstance(error_from_fault(f("3100", "AUTHORIZATION"), 403), AuthenticationError)
    assert isinstance(error_from_fault(f("2050"), 400), RecordError)


@respx.mock
def test_dropped_connection_on_a_read_is_retried(conn):
    """A connection dropped mid-read is retried like any transient failure."""
    respx.post(TOKEN_URL).mock(return_value=_token_answer())
    route = respx.get(f"{API}/query").mock(
        side_effect=[
            httpx.RemoteProtocolError("peer closed"),
            _query_answer("Item", [_customer(1)]),
        ]
    )
    pages = list(conn.read("Item", Cursor()))
    assert [r.id for p in pages for r in p.records] == ["1"]
    assert route.call_count == 2
