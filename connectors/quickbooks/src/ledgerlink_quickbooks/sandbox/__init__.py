"""A faithful, seeded fake of QuickBooks Online served on loopback.

:class:`QuickBooksSandbox` runs the Starlette app of :mod:`.app` behind the core's
:class:`~ledgerlink.connector.sandbox.FaultInjector` (faults rendered as QuickBooks' own
error bodies). Besides the vendor API it offers test helpers that no real company has: a
movable clock, the ledger's trial balance and receivable per customer, and direct edits that
imitate a bookkeeper working in the QuickBooks screens.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink.connector.sandbox import FaultInjector, LoopbackServer
from ledgerlink_quickbooks.sandbox.app import (
    OAuthServer,
    SandboxLimits,
    SandboxState,
    build_app,
    render_error,
)
from ledgerlink_quickbooks.sandbox.store import Clock, Company, QboFault

__all__ = ["SANDBOX_REALM", "QboFault", "QuickBooksSandbox", "SandboxLimits"]

SANDBOX_REALM = "9341453908059321"


class QuickBooksSandbox:
    """A running QuickBooks sandbox (one realm).

    Attributes:
        base_url: ``http://127.0.0.1:PORT``; the API lives under ``/v3`` and the token
            endpoint under ``/oauth2/v1/tokens/bearer``.
        faults: the fault injector (and request counter).
        company: the realm's books.
        oauth: the token endpoint's state.
        limits: throttling limits (relax them for benchmarks).
        clock: the sandbox clock (``advance`` it to age CDC windows and tokens).
    """

    def __init__(self, options: SandboxOptions | None = None) -> None:
        options = options or SandboxOptions()
        self.clock = Clock()
        customers = None if options.roster is None else options.roster.rows("quickbooks")
        self.company = Company(
            SANDBOX_REALM, options.seed, options.size, self.clock, customers=customers
        )
        self.oauth = OAuthServer(self.clock)
        self.limits = SandboxLimits()
        self.state = SandboxState(
            clock=self.clock,
            companies={SANDBOX_REALM: self.company},
            oauth=self.oauth,
            limits=self.limits,
        )
        self.faults = FaultInjector(
            build_app(self.state), render_error=render_error, seed=options.seed
        )
        self._server = LoopbackServer(self.faults, port=options.port)
        self._server.start()
        self.base_url = self._server.base_url

    def connector_settings(self) -> dict[str, Any]:
        """Settings with which ``plugin.connect`` reaches this sandbox."""
        return {
            "client_id": self.oauth.client_id,
            "client_secret": self.oauth.client_secret,
            "refresh_token": self.oauth.initial_refresh_token,
            "realm_id": SANDBOX_REALM,
            "base_url": self.base_url,
            "token_url": f"{self.base_url}/oauth2/v1/tokens/bearer",
            "minorversion": 75,
        }

    def advance(self, delta: dt.timedelta) -> None:
        """Move the sandbox clock forward (CDC windows, token expiry)."""
        self.clock.advance(delta)

    def trial_balance(self) -> dict[str, Decimal]:
        """Balance per account id in the home currency, debits positive."""
        with self.company.lock:
            return self.company.trial_balance()

    def receivable_by_customer(self) -> dict[str, Decimal]:
        """Open accounts receivable per customer id (home currency)."""
        with self.company.lock:
            return self.company.receivable_by_customer()

    def edit(self, entity: str, record_id: str, **changes: Any) -> dict[str, Any]:
        """Change a record as a bookkeeper would in the QuickBooks screens (bumps SyncToken)."""
        current = self.company.read(entity, record_id)
        return self.company.update(
            entity, {"Id": record_id, "SyncToken": current["SyncToken"], "sparse": True, **changes}
        )

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()
