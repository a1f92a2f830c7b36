"""The Salesforce sandbox: a seeded fake org served over TLS on loopback.

:class:`SalesforceSandbox` starts the Starlette app of :mod:`.app` behind a
:class:`~ledgerlink.connector.sandbox.FaultInjector` (faults rendered as Salesforce error
bodies) on a :class:`~ledgerlink.connector.sandbox.LoopbackServer` with a self-signed
certificate, because simple-salesforce always speaks ``https://``. It creates a throw-away RSA
key pair for the JWT bearer flow and hands the private half to the connector settings, so the
real auth code runs unchanged.
"""

from __future__ import annotations

import functools
import gc
import warnings
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink.connector.sandbox import FaultInjector, LoopbackServer
from ledgerlink_salesforce.sandbox.app import SalesforceApi, render_error
from ledgerlink_salesforce.sandbox.data import (
    HUB_ACCOUNT_FIELDS,
    HUB_DEAL_FIELDS,
    Org,
    seed_accounts,
)
from ledgerlink_salesforce.sandbox.deals import SeededDeal, seed_accepted_quotes
from ledgerlink_salesforce.streams import DEFAULT_FIELDS

__all__ = ["SANDBOX_API_VERSION", "SalesforceSandbox", "start_sandbox"]

SANDBOX_API_VERSION = "64.0"
_CLIENT_ID = "3MVG9sandbox.ledgerlink.connected.app"
_USERNAME = "integration@ledgerlink.sandbox"
_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - fake credential of the local fake
_PASSWORD = "sandbox-password"  # noqa: S105 - fake credential of the local fake
_SECURITY_TOKEN = "sandboxtoken"  # noqa: S105 - fake credential of the local fake
_REFRESH_TOKEN = "5Aep861sandbox.refresh.token"  # noqa: S105 - fake credential


@functools.cache
def _key_pair() -> tuple[str, str]:
    """A throw-away RSA key pair for the JWT flow, made once per process (keygen is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


class SalesforceSandbox:
    """A running sandbox org. ``org`` holds the data and test hooks, ``api`` the HTTP side."""

    def __init__(self, options: SandboxOptions, *, api_max: int = 100_000) -> None:
        self.private_key_pem, public_pem = _key_pair()
        # A shared roster fixes the Accounts; contacts, deals and quotes follow their number.
        accounts = None if options.roster is None else options.roster.rows("salesforce")
        size = options.size if accounts is None else len(accounts)
        self.org = Org(seed=options.seed, size=size, api_max=api_max)
        if accounts is not None:
            seed_accounts(self.org, accounts)
        self.api = SalesforceApi(
            self.org,
            client_id=_CLIENT_ID,
            username=_USERNAME,
            public_key_pem=public_pem,
            client_secret=_CLIENT_SECRET,
            password=_PASSWORD + _SECURITY_TOKEN,
            refresh_token=_REFRESH_TOKEN,
        )
        self.faults = FaultInjector(self.api.app, render_error=render_error, seed=options.seed)
        server = LoopbackServer(self.faults, port=options.port, tls=True)
        server.start()
        self._server: LoopbackServer | None = server
        self._ca_path = str(server.ca_path)
        self.api.base_url = server.base_url
        self.base_url: str = server.base_url

    @property
    def ca_path(self) -> str:
        """PEM file of the sandbox's self-signed certificate (trust it with ``verify``)."""
        return self._ca_path

    def connector_settings(self, auth: str = "jwt") -> dict[str, Any]:
        """Settings with which the plugin reaches this sandbox.

        Args:
            auth: ``jwt`` (default), ``refresh_token`` or ``password``.
        """
        settings: dict[str, Any] = {
            "instance_url": self.base_url,
            "login_url": self.base_url,
            "api_version": SANDBOX_API_VERSION,
            "client_id": _CLIENT_ID,
            "username": _USERNAME,
            "auth": auth,
            "ca_bundle": self.ca_path,
            # The org has the hub's custom Account fields: read them, so what the hub wrote
            # lands on the next pull and the planner compares against it.
            "fields": {
                "Account": [
                    *DEFAULT_FIELDS["Account"],
                    # A multi-currency org: the hub shows amounts in the Account's currency.
                    "CurrencyIsoCode",
                    "Stripe_Customer_Id__c",
                    *HUB_ACCOUNT_FIELDS,
                ],
                # The deal's currency, and the billing status the hub writes back to it.
                "Quote": [*DEFAULT_FIELDS["Quote"], "CurrencyIsoCode", *HUB_DEAL_FIELDS],
                "Opportunity": [
                    *DEFAULT_FIELDS["Opportunity"],
                    "CurrencyIsoCode",
                    *HUB_DEAL_FIELDS,
                ],
            },
        }
        if auth == "jwt":
            settings["private_key"] = self.private_key_pem
        elif auth == "refresh_token":
            settings["refresh_token"] = _REFRESH_TOKEN
        else:
            settings.update(
                client_secret=_CLIENT_SECRET, password=_PASSWORD, security_token=_SECURITY_TOKEN
            )
        return settings

    def seed_accepted_quotes(self, first_account: int = 1) -> list[SeededDeal]:
        """Add a few quotes accepted now, with lines (see :mod:`.deals`); return them."""
        return seed_accepted_quotes(self.org, first_account=first_account)

    def stop(self) -> None:
        """Stop serving.

        uvicorn's TLS transports of keep-alive connections can outlive the server thread; they
        are collected here, quietly, so their ResourceWarning does not surface later at random.
        """
        if self._server is None:
            return
        self._server.stop()
        self._server = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def start_sandbox(options: SandboxOptions, *, api_max: int = 100_000) -> SalesforceSandbox:
    """Start a sandbox org for ``options`` and return it, serving."""
    return SalesforceSandbox(options, api_max=api_max)
