"""OAuth 2.0 for QuickBooks Online: access tokens refreshed with rotated refresh tokens.

Access tokens live about an hour. Each refresh may hand out a new refresh token, and Intuit
stops honouring the previous one shortly after. :class:`TokenManager` therefore writes the new
refresh token to the durable :class:`~ledgerlink.connector.protocol.SecretStore` *before* it
uses the new access token: a crash between the two leaves the store holding a token that
works (the new one, or, if the crash came before the store write, the old one still inside
Intuit's grace period). Every token obtained is registered with the log redactor.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Generator

import httpx
from pydantic import SecretStr

from ledgerlink.connector.errors import AuthenticationError, ConfigurationError, RetryableError
from ledgerlink.connector.protocol import SecretStore
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger, register_secret

__all__ = ["BearerAuth", "TokenManager", "refresh_token_secret_name"]

_EARLY_REFRESH = dt.timedelta(minutes=5)


def refresh_token_secret_name(realm_id: str) -> str:
    """Name under which the realm's current refresh token is stored."""
    return f"quickbooks/{realm_id}/refresh_token"


class TokenManager:
    """Holds the access token of one realm and refreshes it when needed.

    Args:
        client_id: the Intuit app's client id.
        client_secret: the Intuit app's client secret.
        token_url: the token endpoint.
        realm_id: company id (names the stored secret).
        secrets: durable store of the rotating refresh token.
        initial_refresh_token: the configured refresh token, used when the store has none
            (or when the stored one was refused and the configured one differs).
        http: client for the token endpoint.
        clock: current time (tests move it).
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        token_url: str,
        realm_id: str,
        secrets: SecretStore,
        initial_refresh_token: SecretStr | None,
        http: httpx.Client,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._secrets = secrets
        self._secret_name = refresh_token_secret_name(realm_id)
        self._initial = initial_refresh_token
        self._http = http
        self._clock = clock
        self._access: str | None = None
        self._expires_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._lock = threading.Lock()
        self._log = get_logger(connector="quickbooks", realm=realm_id)
        self.refreshes = 0
        register_secret(client_secret.get_secret_value())
        if initial_refresh_token is not None:
            register_secret(initial_refresh_token.get_secret_value())

    def access_token(self) -> str:
        """A valid access token, refreshing first when it is missing or about to expire.

        Raises:
            AuthenticationError: the refresh token was refused (re-authorize the app).
            ConfigurationError: no refresh token is configured or stored, or the client id
                or secret was refused.
            RetryableError: the token endpoint failed transiently.
        """
        with self._lock:
            if self._access is None or self._clock() >= self._expires_at - _EARLY_REFRESH:
                return self._refresh_locked()
            return self._access

    def force_refresh(self, rejected: str | None) -> str:
        """Refresh after the API refused ``rejected`` (unless another thread already did)."""
        with self._lock:
            if self._access is None or self._access == rejected:
                return self._refresh_locked()
            return self._access

    def _candidates(self) -> list[str]:
        stored = self._secrets.get(self._secret_name)
        configured = self._initial.get_secret_value() if self._initial else None
        out = [t for t in (stored, configured) if t]
        if not out:
            msg = "no QuickBooks refresh token configured or stored; authorize the app first"
            raise ConfigurationError(msg)
        return list(dict.fromkeys(out))

    def _refresh_locked(self) -> str:
        last_refusal = ""
        for refresh_token in self._candidates():
            register_secret(refresh_token)
            try:
                response = self._http.post(
                    self._token_url,
                    data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                    auth=(self._client_id, self._client_secret.get_secret_value()),
                    headers={"Accept": "application/json"},
                )
            except httpx.TransportError as exc:
                msg = f"QuickBooks token endpoint unreachable: {type(exc).__name__}"
                raise RetryableError(msg) from exc
            self.refreshes += 1
            if response.status_code >= 500 or response.status_code == 429:
                msg = "QuickBooks token endpoint failed"
                raise RetryableError(msg, status=response.status_code)
            if response.status_code != 200:
                try:
                    last_refusal = str(response.json().get("error", ""))
                except ValueError:
                    last_refusal = f"HTTP {response.status_code}"
                if last_refusal == "invalid_client":
                    msg = "QuickBooks refused the app's client id or secret (invalid_client)"
                    raise ConfigurationError(msg, vendor_code=last_refusal)
                continue
            answer = response.json()
            access = str(answer["access_token"])
            new_refresh = str(answer.get("refresh_token") or refresh_token)
            register_secret(access, new_refresh)
            # Durable first: once the store has the new refresh token, a crash cannot lock
            # the hub out, whatever happens to the access token below.
            crash_point("quickbooks.token_rotated")
            if new_refresh != self._secrets.get(self._secret_name):
                self._secrets.put(self._secret_name, new_refresh)
            crash_point("quickbooks.token_stored")
            self._access = access
            self._expires_at = self._clock() + dt.timedelta(
                seconds=int(answer.get("expires_in", 3600))
            )
            self._log.info("quickbooks.token_refreshed", rotated=new_refresh != refresh_token)
            return access
        msg = (
            f"QuickBooks refused the refresh token ({last_refusal or 'unknown error'}); "
            "re-authorize the app"
        )
        raise AuthenticationError(msg, vendor_code=last_refusal or None)


class BearerAuth(httpx.Auth):
    """httpx auth flow: bearer token, one refresh and resend when the API answers 401."""

    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with the token; on 401 refresh once and send it again."""
        token = self.tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = self.tokens.force_refresh(token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
