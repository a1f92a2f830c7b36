"""Client edge cases: auth with respx, REST paging, retries and error mapping on a fake wire."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import requests
import respx
from ledgerlink_salesforce.auth import JWT_GRANT, Authenticator, Credentials
from ledgerlink_salesforce.client import SalesforceClient, SalesforceRetryPolicy
from ledgerlink_salesforce.settings import SalesforceSettings
from ledgerlink_salesforce.streams import StreamReader
from requests.adapters import BaseAdapter

from ledgerlink.connector.errors import (
    AuthenticationError,
    AuthExpiredError,
    ConfigurationError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from ledgerlink.connector.protocol import Cursor
from ledgerlink.metrics import VENDOR_LIMIT_MAX, VENDOR_LIMIT_USED

LOGIN = "https://login.example.test"
INSTANCE = "https://acme.my.example.test"
Handler = Callable[[requests.PreparedRequest], tuple[int, Any, dict[str, str]]]


class FakeWire(BaseAdapter):
    """A requests transport answering from a queue of handlers, recording each request."""

    def __init__(self, handlers: list[Handler]) -> None:
        super().__init__()
        self.handlers = list(handlers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        self.sent.append(request)
        status, body, headers = self.handlers.pop(0)(request)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode() if body is not None else b""
        response.headers.update({"Content-Type": "application/json", **headers})
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None


def answer(status: int, body: Any, limit: str = "api-usage=10/1000") -> Handler:
    return lambda _req: (status, body, {"Sforce-Limit-Info": limit})


def token_endpoint(router: respx.MockRouter, tokens: list[str]) -> respx.Route:
    responses = [
        httpx.Response(200, json={"access_token": t, "instance_url": INSTANCE}) for t in tokens
    ]
    return router.post(f"{LOGIN}/services/oauth2/token").mock(side_effect=responses)


def make_client(
    wire: FakeWire, tokens: list[str], router: respx.MockRouter, budget_share: float = 1.0
) -> SalesforceClient:
    token_endpoint(router, tokens)
    session = requests.Session()
    session.mount("https://", wire)
    auth = Authenticator(
        Credentials(
            flow="refresh_token", login_url=LOGIN, client_id="cid", refresh_token="rt-secret"
        )
    )
    return SalesforceClient(
        auth,
        instance_url=INSTANCE,
        api_version="64.0",
        session=session,
        budget_share=budget_share,
        retry=SalesforceRetryPolicy(max_attempts=3, sleep=lambda _s: None),
    )


PAGE_1 = {
    "totalSize": 3,
    "done": False,
    "nextRecordsUrl": "/services/data/v64.0/query/01g-2",
    "records": [{"Id": "a"}, {"Id": "b"}],
}
PAGE_2 = {"totalSize": 3, "done": True, "records": [{"Id": "c"}]}


@respx.mock
def test_jwt_assertion_carries_issuer_subject_audience_and_short_expiry() -> None:
    """The JWT bearer grant signs iss=consumer key, sub=user, aud=login URL, exp within 3 min."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    route = respx.post(f"{LOGIN}/services/oauth2/token").mock(
        return_value=httpx.Response(200, json={"access_token": "tok", "instance_url": INSTANCE})
    )
    auth = Authenticator(
        Credentials(flow="jwt", login_url=LOGIN, client_id="cid", username="u@x", private_key=pem),
        clock=lambda: 1000.0,
    )
    assert auth.session().instance_url == INSTANCE
    form = dict(x.split("=", 1) for x in route.calls[0].request.content.decode().split("&"))
    assert form["grant_type"] == JWT_GRANT.replace(":", "%3A")
    claims = jwt.decode(
        form["assertion"],
        key.public_key(),
        algorithms=["RS256"],
        audience=LOGIN,
        options={"verify_exp": False},
    )
    assert claims == {"iss": "cid", "sub": "u@x", "aud": LOGIN, "exp": 1180}


@respx.mock
def test_refused_login_is_authentication_error_without_the_secret() -> None:
    """An invalid_grant answer raises AuthenticationError whose text holds no secret."""
    respx.post(f"{LOGIN}/services/oauth2/token").mock(
        return_value=httpx.Response(
            400,
            json={"error": "invalid_grant", "error_description": "expired access/refresh token"},
        )
    )
    auth = Authenticator(
        Credentials(
            flow="refresh_token", login_url=LOGIN, client_id="cid", refresh_token="rt-very-secret"
        )
    )
    with pytest.raises(AuthenticationError) as caught:
        auth.session()
    assert caught.value.vendor_code == "invalid_grant"
    assert "rt-very-secret" not in str(caught.value)
    assert "rt-very-secret" not in repr(auth.credentials)


@respx.mock
def test_token_endpoint_outage_is_retryable() -> None:
    """A 503 from the token endpoint is a RetryableError, not a credentials problem."""
    respx.post(f"{LOGIN}/services/oauth2/token").mock(return_value=httpx.Response(503))
    auth = Authenticator(
        Credentials(flow="refresh_token", login_url=LOGIN, client_id="c", refresh_token="r")
    )
    with pytest.raises(RetryableError):
        auth.session()


@respx.mock
def test_paging_follows_next_records_url_until_done() -> None:
    """query_more follows nextRecordsUrl on the instance and the last page says done."""
    wire = FakeWire([answer(200, PAGE_1), answer(200, PAGE_2)])
    client = make_client(wire, ["t1"], respx.mock)
    first = client.query("SELECT Id FROM Account", include_deleted=True, batch_size=500)
    second = client.query_more(first["nextRecordsUrl"])
    assert [r["Id"] for r in first["records"] + second["records"]] == ["a", "b", "c"]
    assert second["done"] is True
    assert "/queryAll/" in str(wire.sent[0].url)
    assert wire.sent[0].headers["Sforce-Query-Options"] == "batchSize=500"
    assert str(wire.sent[1].url) == f"{INSTANCE}/services/data/v64.0/query/01g-2"


@respx.mock
def test_server_unavailable_is_retried_then_succeeds() -> None:
    """A 503 SERVER_UNAVAILABLE is retried with backoff and the call then succeeds."""
    wire = FakeWire(
        [answer(503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}]), answer(200, PAGE_2)]
    )
    client = make_client(wire, ["t1"], respx.mock)
    assert client.query("SELECT Id FROM Account")["records"] == [{"Id": "c"}]
    assert len(wire.sent) == 2


@respx.mock
def test_retries_give_up_after_max_attempts() -> None:
    """Persistent 500s raise RetryableError after the configured attempts."""
    wire = FakeWire([answer(500, [{"message": "boom", "errorCode": "UNKNOWN_EXCEPTION"}])] * 3)
    client = make_client(wire, ["t1"], respx.mock)
    with pytest.raises(RetryableError) as caught:
        client.query("SELECT Id FROM Account")
    assert caught.value.vendor_code == "UNKNOWN_EXCEPTION"
    assert len(wire.sent) == 3


@respx.mock
def test_expired_session_refreshes_once_and_retries() -> None:
    """INVALID_SESSION_ID gets a new token and the same call is sent again with it."""
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    wire = FakeWire([answer(401, expired), answer(200, PAGE_2)])
    client = make_client(wire, ["t1", "t2"], respx.mock)
    client.query("SELECT Id FROM Account")
    assert wire.sent[0].headers["Authorization"] == "Bearer t1"
    assert wire.sent[1].headers["Authorization"] == "Bearer t2"
    assert client.auth.refreshes == 1


@respx.mock
def test_session_refused_twice_is_auth_expired_error() -> None:
    """A session refused again right after a refresh raises instead of looping."""
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    wire = FakeWire([answer(401, expired), answer(401, expired)])
    client = make_client(wire, ["t1", "t2"], respx.mock)
    with pytest.raises(AuthExpiredError):
        client.query("SELECT Id FROM Account")
    assert len(wire.sent) == 2


@respx.mock
def test_daily_limit_exceeded_is_quota_error_without_retry() -> None:
    """REQUEST_LIMIT_EXCEEDED for TotalRequests is returned at once as QuotaExhaustedError."""
    spent = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    wire = FakeWire([answer(403, spent, "api-usage=1000/1000")])
    client = make_client(wire, ["t1"], respx.mock)
    with pytest.raises(QuotaExhaustedError) as caught:
        client.query("SELECT Id FROM Account")
    assert caught.value.retry_after is not None
    assert len(wire.sent) == 1


@respx.mock
def test_concurrent_limit_is_rate_limited_and_retried() -> None:
    """A concurrency REQUEST_LIMIT_EXCEEDED is a RateLimitedError that is retried."""
    busy = [
        {
            "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]
    wire = FakeWire([answer(403, busy), answer(200, PAGE_2)])
    client = make_client(wire, ["t1"], respx.mock)
    client.query("SELECT Id FROM Account")
    assert len(wire.sent) == 2
    assert isinstance(RateLimitedError("x"), RetryableError)


@respx.mock
def test_malformed_query_is_configuration_error() -> None:
    """A MALFORMED_QUERY (a bad configured field list) is not retried."""
    wire = FakeWire(
        [answer(400, [{"message": "unexpected token", "errorCode": "MALFORMED_QUERY"}])]
    )
    client = make_client(wire, ["t1"], respx.mock)
    with pytest.raises(ConfigurationError):
        client.query("SELECT FROM Account")
    assert len(wire.sent) == 1


@respx.mock
def test_limit_info_feeds_gauges_and_budget_share_stops_calls() -> None:
    """Sforce-Limit-Info sets the gauges and the client refuses to pass its budget share."""
    wire = FakeWire([answer(200, PAGE_2, "api-usage=800/1000")])
    client = make_client(wire, ["t1"], respx.mock, budget_share=0.8)
    client.query("SELECT Id FROM Account")
    assert VENDOR_LIMIT_USED.labels("salesforce", "api-usage")._value.get() == 800
    assert VENDOR_LIMIT_MAX.labels("salesforce", "api-usage")._value.get() == 1000
    with pytest.raises(QuotaExhaustedError, match="80%"):
        client.query("SELECT Id FROM Account")
    assert len(wire.sent) == 1


@respx.mock
def test_dropped_connection_is_retried() -> None:
    """A connection cut mid-answer is retried like any transient failure."""

    def drop(_req: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        raise requests.exceptions.ChunkedEncodingError("connection broken")

    wire = FakeWire([drop, answer(200, PAGE_2)])
    client = make_client(wire, ["t1"], respx.mock)
    assert client.query("SELECT Id FROM Account")["done"] is True


@respx.mock
def test_rotated_refresh_token_is_persisted_and_used_next() -> None:
    """A refresh answer carrying a new refresh token stores it at once and uses it next time."""
    route = respx.post(f"{LOGIN}/services/oauth2/token").mock(
        side_effect=[
            httpx.Response(
                200, json={"access_token": "a1", "instance_url": INSTANCE, "refresh_token": "rt-2"}
            ),
            httpx.Response(200, json={"access_token": "a2", "instance_url": INSTANCE}),
        ]
    )
    stored: list[str] = []
    auth = Authenticator(
        Credentials(flow="refresh_token", login_url=LOGIN, client_id="cid", refresh_token="rt-1"),
        on_refresh_token=stored.append,
    )
    first = auth.session()
    auth.refresh(first)
    assert stored == ["rt-2"]
    assert "refresh_token=rt-2" in route.calls[1].request.content.decode()


@respx.mock
@pytest.mark.parametrize(
    ("identity", "user"),
    [
        (f"{LOGIN}/id/00Dx0000000BV7zEAG/005x00000012Q9PAAU", "005x00000012Q9PAAU"),
        (f"{LOGIN}/id/00Dx0000000BV7z/005x00000012Q9P", "005x00000012Q9P"),
        (None, None),
        (f"{LOGIN}/id/00Dx0000000BV7z/", None),
        (f"{LOGIN}/id/00Dx0000000BV7z/005x00000012Q9P' OR Name != 'x", None),
    ],
)
def test_incremental_reads_leave_out_settled_writes_of_the_identity_urls_user(
    identity: str | None, user: str | None
) -> None:
    """The session's user is the identity URL's last part; an incremental read leaves out
    that user's writes stamped more than the timeout before the cursor, and filters nothing
    when the token answer does not say who the session is."""
    body = {"access_token": "tok", "instance_url": INSTANCE}
    if identity is not None:
        body["id"] = identity
    respx.post(f"{LOGIN}/services/oauth2/token").mock(return_value=httpx.Response(200, json=body))
    auth = Authenticator(
        Credentials(flow="refresh_token", login_url=LOGIN, client_id="cid", refresh_token="rt")
    )
    assert auth.session().user_id == user
    settings = SalesforceSettings(
        instance_url=INSTANCE,
        client_id="cid",
        auth="refresh_token",
        refresh_token="rt",
        timeout_seconds=59.5,
    )
    client = SalesforceClient(auth, instance_url=INSTANCE, api_version="64.0")
    reader = StreamReader(client, settings, "Account")
    statement = reader.incremental_statement(Cursor(value="2026-01-01T00:10:00.000Z"))
    assert statement is not None
    where = statement.split(" WHERE ", 1)[1].split(" ORDER BY ")[0]
    if user is None:
        assert where == "SystemModstamp >= 2026-01-01T00:05:00Z"
    else:
        assert where == (
            "SystemModstamp >= 2026-01-01T00:05:00Z AND (SystemModstamp >= 2026-01-01T00:09:00Z"
            f" OR LastModifiedById != '{user}' OR LastModifiedDate < 2026-01-01T00:05:00Z)"
        )
