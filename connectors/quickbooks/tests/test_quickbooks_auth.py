"""OAuth against the sandbox: expiry, refresh-token rotation and a crash during a refresh."""

from __future__ import annotations

import datetime as dt

import pytest
from ledgerlink_quickbooks.auth import refresh_token_secret_name
from ledgerlink_quickbooks.sandbox import SANDBOX_REALM

from ledgerlink.connector.errors import AuthenticationError, ConfigurationError
from ledgerlink.connector.protocol import Cursor

SECRET = refresh_token_secret_name(SANDBOX_REALM)


class CrashingStore:
    """A secret store whose next put dies like a process killed mid-refresh."""

    def __init__(self, inner):
        self.inner = inner
        self.crash_next_put = True

    def get(self, name):
        return self.inner.get(name)

    def put(self, name, value):
        if self.crash_next_put:
            self.crash_next_put = False
            raise KeyboardInterrupt("killed")
        self.inner.put(name, value)


def test_rotated_refresh_token_is_stored_before_the_access_token_is_used(
    connector, sandbox, secrets, monkeypatch
):
    """The new refresh token is durable before the first API call that uses its access token."""
    events = []
    original_put = secrets.put
    monkeypatch.setattr(secrets, "put", lambda n, v: (events.append("put"), original_put(n, v)))
    original_valid = sandbox.oauth.valid
    monkeypatch.setattr(
        sandbox.oauth, "valid", lambda token: (events.append("api"), original_valid(token))[1]
    )
    assert connector.check().ok
    assert events[:2] == ["put", "api"]
    assert secrets.get(SECRET) != sandbox.connector_settings()["refresh_token"]


def test_expired_access_token_is_refreshed_and_the_call_repeated(connector, sandbox, read_all):
    """A 401 for an expired token triggers one refresh and the read goes on."""
    read_all(connector, "Item", Cursor())
    sandbox.oauth.expire_access_tokens()
    refreshes = sandbox.oauth.refresh_calls
    pages, _ = read_all(connector, "Account", Cursor())
    assert [r.id for p in pages for r in p.records]
    assert sandbox.oauth.refresh_calls == refreshes + 1


def test_token_expiry_after_an_hour_refreshes_before_calling(connector, sandbox, read_all):
    """An hour later the connector refreshes up front instead of collecting a 401."""
    read_all(connector, "Item", Cursor())
    sandbox.advance(dt.timedelta(hours=1, minutes=1))
    sandbox.faults.reset_counts()
    read_all(connector, "TaxCode", Cursor())
    paths = [path for _, path in sandbox.faults.requests]
    assert paths[0] == "/oauth2/v1/tokens/bearer"
    assert len(paths) == 2


def test_crash_after_rotation_before_storing_still_authenticates_next_start(
    make_connector, sandbox, secrets
):
    """Killed between Intuit's rotation and the store write, the next start still gets in."""
    crashing = CrashingStore(secrets)
    first = make_connector()
    first.tokens._secrets = crashing
    with pytest.raises(KeyboardInterrupt):
        first.check()
    assert secrets.get(SECRET) is None
    second = make_connector()
    assert second.check().ok
    assert secrets.get(SECRET) is not None
    third = make_connector()
    assert third.check().ok


def test_crash_after_storing_before_use_still_authenticates_next_start(
    make_connector, sandbox, secrets
):
    """Killed after the store write but before any API call, the next start uses the stored token."""
    first = make_connector()
    first.tokens.access_token()
    stored = secrets.get(SECRET)
    assert stored is not None
    sandbox.advance(dt.timedelta(hours=2))
    initial = sandbox.connector_settings()["refresh_token"]
    assert sandbox.oauth.refresh(initial) is None
    second = make_connector()
    assert second.check().ok


def test_superseded_refresh_token_is_refused_after_the_grace(make_connector, sandbox, secrets):
    """After Intuit's grace the old refresh token gives invalid_grant, named for the operator."""
    settings = sandbox.connector_settings()
    assert make_connector().check().ok
    sandbox.advance(dt.timedelta(minutes=10))
    secrets.values.clear()
    with pytest.raises(AuthenticationError) as excinfo:
        make_connector(refresh_token=settings["refresh_token"]).tokens.access_token()
    assert "invalid_grant" in str(excinfo.value)
    assert settings["refresh_token"] not in str(excinfo.value)


def test_stored_token_wins_and_configured_token_is_the_fallback(make_connector, sandbox, secrets):
    """A refused stored token falls back to the configured one (a fresh authorization)."""
    secrets.put(SECRET, "RT1-revoked-long-ago")
    assert make_connector().check().ok
    assert secrets.get(SECRET) != "RT1-revoked-long-ago"


def test_wrong_client_secret_is_a_configuration_error(make_connector):
    """A refused client secret stops with a ConfigurationError that does not echo it."""
    conn = make_connector(client_secret="not-the-secret")
    with pytest.raises(ConfigurationError) as excinfo:
        conn.tokens.access_token()
    assert "invalid_client" in str(excinfo.value)
    assert "not-the-secret" not in str(excinfo.value)
    assert not conn.check().ok
