"""Getting a Salesforce session: OAuth 2.0 JWT bearer, refresh token, or username-password.

The hub obtains the access token itself (rather than letting simple-salesforce log in) so it
decides when to refresh: a call answered ``INVALID_SESSION_ID`` asks :class:`Authenticator`
for a new session once, then retries. Tokens are registered with the log redactor the moment
they arrive and never appear in reprs or errors.

Flows (Salesforce's OAuth reference, ``POST {login_url}/services/oauth2/token``):

* ``jwt``: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an RS256 assertion
  (``iss`` = connected app consumer key, ``sub`` = username, ``aud`` = login URL, ``exp`` in
  at most three minutes). The server-to-server production default.
* ``refresh_token``: ``grant_type=refresh_token`` with the consumer key (and secret).
* ``password``: ``grant_type=password``, the password followed by the security token (trials).
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import httpx
import jwt

from ledgerlink.connector.errors import (
    AuthenticationError,
    ConfigurationError,
    RetryableError,
)
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger, register_secret

__all__ = ["JWT_GRANT", "Authenticator", "Credentials", "Session", "user_id_of"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_JWT_LIFETIME = 180
_log = get_logger(connector="salesforce")


@dataclass(frozen=True)
class Session:
    """An access token, the instance it is valid for and the user it acts as.

    ``user_id`` is the Salesforce user every write of this session is stamped with
    (``LastModifiedById``), from the token answer's identity URL
    (``https://login.salesforce.com/id/<org id>/<user id>``); None when the answer has none.
    """

    access_token: str = field(repr=False)
    instance_url: str
    user_id: str | None = None


_USER_ID = re.compile(r"/id/[A-Za-z0-9]{15,18}/(005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?)/?$")


def user_id_of(identity_url: object) -> str | None:
    """The user Id at the end of an identity URL, or None when it is not one."""
    match = _USER_ID.search(str(identity_url or ""))
    return match.group(1) if match else None


@dataclass(frozen=True)
class Credentials:
    """What one of the three flows needs (secrets kept out of the repr)."""

    flow: str
    login_url: str
    client_id: str
    username: str | None = None
    private_key: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)


class Authenticator:
    """Obtains sessions from the token endpoint; thread-safe, one refresh at a time."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        verify: str | bool = True,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        on_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self._on_refresh_token = on_refresh_token
        self._clock = clock
        tls: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._client = httpx.Client(verify=tls, timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._session: Session | None = None
        self.refreshes = 0

    def session(self) -> Session:
        """Return the current session, logging in first when there is none.

        Raises:
            AuthenticationError: the credentials were refused.
            RetryableError: the token endpoint could not be reached or failed transiently.
        """
        with self._lock:
            if self._session is None:
                self._session = self._login()
            return self._session

    def refresh(self, stale: Session | None = None) -> Session:
        """Replace ``stale`` with a new session (a no-op when another thread already did).

        Raises:
            AuthenticationError: the credentials were refused.
            RetryableError: the token endpoint failed transiently.
        """
        with self._lock:
            if self._session is None or stale is None or self._session is stale:
                self._session = self._login()
                self.refreshes += 1
            return self._session

    def _form(self) -> dict[str, str]:
        c = self.credentials
        if c.flow == "jwt":
            if not (c.private_key and c.username):
                msg = "the jwt flow needs username and private_key"
                raise ConfigurationError(msg)
            now = int(self._clock())
            assertion = jwt.encode(
                {
                    "iss": c.client_id,
                    "sub": c.username,
                    "aud": c.login_url,
                    "exp": now + _JWT_LIFETIME,
                },
                c.private_key,
                algorithm="RS256",
            )
            return {"grant_type": JWT_GRANT, "assertion": assertion}
        if c.flow == "refresh_token":
            if not c.refresh_token:
                msg = "the refresh_token flow needs refresh_token"
                raise ConfigurationError(msg)
            form = {
                "grant_type": "refresh_token",
                "client_id": c.client_id,
                "refresh_token": c.refresh_token,
            }
            if c.client_secret:
                form["client_secret"] = c.client_secret
            return form
        if c.flow == "password":
            if not (c.username and c.password and c.client_secret):
                msg = "the password flow needs username, password and client_secret"
                raise ConfigurationError(msg)
            return {
                "grant_type": "password",
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "username": c.username,
                "password": c.password + (c.security_token or ""),
            }
        msg = f"unknown auth flow {c.flow!r}: use jwt, refresh_token or password"
        raise ConfigurationError(msg)

    def _login(self) -> Session:
        url = self.credentials.login_url.rstrip("/") + "/services/oauth2/token"
        try:
            response = self._client.post(url, data=self._form())
        except httpx.HTTPError as exc:
            msg = f"Salesforce token endpoint unreachable: {type(exc).__name__}"
            raise RetryableError(msg) from None
        if response.status_code >= 500:
            msg = "Salesforce token endpoint failed"
            raise RetryableError(msg, status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            code = str(body.get("error") or "invalid_grant")
            detail = str(body.get("error_description") or "token request refused")
            msg = f"Salesforce refused the {self.credentials.flow} login: {detail}"
            raise AuthenticationError(msg, vendor_code=code, status=response.status_code)
        token = str(body["access_token"])
        crash_point("salesforce.login")
        register_secret(token)
        rotated = body.get("refresh_token")
        if (
            rotated
            and self.credentials.flow == "refresh_token"
            and rotated != self.credentials.refresh_token
        ):
            # Connected apps with refresh token rotation return a new token and retire the old.
            register_secret(str(rotated))
            self.credentials = replace(self.credentials, refresh_token=str(rotated))
            if self._on_refresh_token is not None:
                self._on_refresh_token(str(rotated))
        _log.info("salesforce.session", flow=self.credentials.flow)
        return Session(
            access_token=token,
            instance_url=str(body.get("instance_url") or ""),
            user_id=user_id_of(body.get("id")),
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
