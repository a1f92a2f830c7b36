"""A faithful fake of the Stripe API on loopback, for tests, benchmarks and demos.

:class:`StripeSandbox` serves :func:`~ledgerlink_stripe.sandbox.app.build_app` over plain HTTP
on 127.0.0.1 (stripe-python accepts an ``http://`` base address), wrapped in the core's
``FaultInjector`` with Stripe's own error bodies, and delivers signed webhooks to the
endpoints registered through ``/v1/webhook_endpoints``. The same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledgerlink.connector.protocol import SandboxOptions
from ledgerlink.connector.sandbox import (
    ASGIApp,
    FaultInjector,
    LoopbackServer,
    Message,
    Receive,
    Scope,
    Send,
)
from ledgerlink_stripe.sandbox.app import build_app, render_fault
from ledgerlink_stripe.sandbox.billing import Billing
from ledgerlink_stripe.sandbox.deals import seed_one_time_prices
from ledgerlink_stripe.sandbox.delivery import WebhookDeliverer
from ledgerlink_stripe.sandbox.store import SandboxState

__all__ = ["SANDBOX_API_KEY", "StripeSandbox"]

SANDBOX_API_KEY = "sk_test_ledgerlinkSandbox0000000000"


class _LoseResponses:
    """Fault: apply the next ``count`` POSTs, then cut the connection instead of answering.

    This is the crash window a client fears most: Stripe made the object, the client never
    heard back, and only a retry with the same idempotency key avoids a duplicate.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0
        self.lost = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.count <= 0:
            await self.app(scope, receive, send)
            return
        self.count -= 1
        self.lost += 1

        async def swallow(message: Message) -> None:  # noqa: ARG001 - ASGI send signature
            return None

        await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
        raise ConnectionAbortedError("sandbox fault: response lost after commit")


class StripeSandbox:
    """A running Stripe sandbox; stop it with :meth:`stop` or use it as a context manager.

    Args:
        options: seed, size (customers) and port.
        settle_after: seconds after which a new charge gets its balance transaction (on the
            next request); negative leaves it to test clock advances.
        clock: the sandbox's wall clock (unix seconds), injectable for retention tests.
        webhook_retry_delays: seconds between delivery retries.
    """

    def __init__(
        self,
        options: SandboxOptions | None = None,
        *,
        settle_after: float = 1.0,
        clock: Callable[[], float] | None = None,
        webhook_retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0),
    ) -> None:
        options = options or SandboxOptions()
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        # A shared roster fixes the customers; subscriptions and invoices follow their number.
        customers = None if options.roster is None else options.roster.rows("stripe")
        size = options.size if customers is None else len(customers)
        self.state = SandboxState(seed=options.seed, size=size, **kwargs)
        if customers is not None:
            self.state.catalog.use_customers(customers)
        self.billing = Billing(self.state)
        self.api_key = SANDBOX_API_KEY
        app = build_app(self.state, self.billing, api_key=self.api_key, settle_after=settle_after)
        self.lose_responses = _LoseResponses(app)
        self.faults = FaultInjector(
            self.lose_responses, render_error=render_fault, seed=options.seed
        )
        self.webhooks = WebhookDeliverer(self.state, retry_delays=webhook_retry_delays)
        self._server = LoopbackServer(self.faults, port=options.port)
        self._server.start()
        self.base_url = self._server.base_url

    def connector_settings(self) -> dict[str, Any]:
        """Return settings with which the Stripe plugin connects to this sandbox."""
        return {"api_key": self.api_key, "api_base": self.base_url}

    def seed_one_time_prices(self) -> dict[str, dict[str, Any]]:
        """Add the one-time Onboarding prices (see :mod:`.deals`); return them by lookup key."""
        return seed_one_time_prices(self.billing)

    def stop(self) -> None:
        """Stop serving and delivering webhooks."""
        self.webhooks.stop()
        self._server.stop()

    def __enter__(self) -> StripeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
