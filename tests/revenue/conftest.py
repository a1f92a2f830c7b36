"""Builders for revenue tests: subscriptions, snapshots and invoices in a few keyword arguments.

For the tests played on the Stripe sandbox: a client on its API, the sandbox itself
(``stripe_sandbox``), and `ledgerlink report` run as CSV on the test's database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.domain.entities import (
    Interval,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import SubscriptionSnapshot, snapshot
from ledgerlink.store import Store
from ledgerlink.sync import pull
from ledgerlink.sync.runtime import UnconfiguredSecretStore


def at(year: int, month: int, day: int = 1, hour: int = 0) -> datetime:
    """An aware UTC instant."""
    return datetime(year, month, day, hour, tzinfo=UTC)


def item(
    key: str,
    cents: int,
    interval: str = "month",
    count: int = 1,
    quantity: int = 1,
    currency: str = "EUR",
) -> SubscriptionItem:
    """A subscription item priced ``cents`` per period."""
    return SubscriptionItem(
        source=SourceRef(system="stripe", object="subscription_item", id=key),
        price=SourceRef(system="stripe", object="price", id=f"price_{key}"),
        product=SourceRef(system="stripe", object="product", id=f"prod_{key}"),
        quantity=quantity,
        unit_price=Money(cents, currency),
        interval=Interval(interval),
        interval_count=count,
    )


def state(
    sub_id: str,
    effective_at: datetime,
    items: tuple[SubscriptionItem, ...],
    *,
    customer: str = "acme",
    status: str = "active",
    currency: str = "EUR",
    **fields: Any,
) -> SubscriptionSnapshot:
    """A snapshot of subscription ``sub_id`` from ``effective_at``."""
    extra: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("discounts", "metered")}
    extra.setdefault("started_at", effective_at)
    extra.setdefault("current_period_start", extra["started_at"])
    subscription = Subscription(
        source=SourceRef(system="stripe", object="subscription", id=sub_id),
        party=SourceRef(system="stripe", object="customer", id=customer),
        status=SubscriptionStatus(status),
        currency=currency,
        items=items,
        **extra,
    )
    return snapshot(
        subscription,
        customer=customer,
        effective_at=effective_at,
        discounts=fields.get("discounts", ()),
        metered=fields.get("metered", ()),
    )


@pytest.fixture
def build() -> Callable[..., SubscriptionSnapshot]:
    """The ``state`` builder, for tests that prefer a fixture."""
    return state


@dataclass
class Stripe:
    """A client on the sandbox's Stripe API that posts with idempotency keys, as the hub does."""

    http: httpx.Client

    def post(self, path: str, key: str, **data: Any) -> dict[str, Any]:
        """POST a form and return the object Stripe answers."""
        response = self.http.post(path, data=data, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET an object or a list."""
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def clock(self, key: str, frozen: int) -> str:
        """Create a test clock frozen at ``frozen``."""
        return str(self.post("/v1/test_helpers/test_clocks", key, frozen_time=frozen)["id"])

    def advance(self, clock: str, frozen: int) -> None:
        """Advance a test clock; Stripe runs renewals and dunning retries on the way."""
        self.post(
            f"/v1/test_helpers/test_clocks/{clock}/advance",
            f"{clock}-{frozen}",
            frozen_time=frozen,
        )

    def monthly(self, key: str, product: str, cents: int, **recurring: str) -> str:
        """Create a monthly USD price of ``cents`` (extra ``recurring[...]`` settings allowed)."""
        settings = {f"recurring[{name}]": value for name, value in recurring.items()}
        settings.setdefault("recurring[interval]", "month")
        price = self.post(
            "/v1/prices", key, product=product, currency="usd", unit_amount=cents, **settings
        )
        return str(price["id"])

    def customer(self, key: str, clock: str, card: str = "pm_card_visa") -> str:
        """Create a customer on ``clock`` paying with the test card ``card``."""
        customer = self.post(
            "/v1/customers",
            key,
            name=f"Customer {key}",
            test_clock=clock,
            payment_method=card,
            **{"invoice_settings[default_payment_method]": card},
        )
        return str(customer["id"])

    def set_card(self, key: str, customer: str, card: str) -> None:
        """Make ``card`` the customer's default payment method (the card on file changes)."""
        self.post(
            f"/v1/customers/{customer}",
            key,
            **{"invoice_settings[default_payment_method]": card},
        )

    def subscribe(self, key: str, customer: str, *prices: str) -> dict[str, Any]:
        """Subscribe ``customer`` to one unit of each price."""
        items = {f"items[{n}][price]": price for n, price in enumerate(prices)}
        return self.post("/v1/subscriptions", key, customer=customer, **items)


@dataclass
class StripeSandbox:
    """A running Stripe sandbox: a client on its API and the connector settings that reach it."""

    stripe: Stripe
    settings: dict[str, Any]

    def pull(self, store: Store, streams: Sequence[str]) -> None:
        """Pull ``streams`` from the sandbox into ``store``, as a sync cycle does."""
        plugin = load_plugin("stripe")
        connector = plugin.connect(
            self.settings, ConnectorContext(secrets=UnconfiguredSecretStore())
        )
        try:
            results = pull(store, connector, list(streams))
        finally:
            connector.close()
        assert [r.error for r in results if r.error] == []


@pytest.fixture
def stripe_sandbox() -> Iterator[StripeSandbox]:
    """A fresh Stripe sandbox (seed 5, size 1), stopped after the test."""
    plugin = load_plugin("stripe")
    sandbox = plugin.start_sandbox(SandboxOptions(seed=5, size=1))
    settings = dict(sandbox.connector_settings())
    http = httpx.Client(
        base_url=str(settings["api_base"]),
        headers={"Authorization": f"Bearer {settings['api_key']}"},
    )
    try:
        yield StripeSandbox(Stripe(http), settings)
    finally:
        http.close()
        sandbox.stop()


@pytest.fixture
def report_config(database_url: str, tmp_path: Path) -> Path:
    """A config file that points `ledgerlink` at the test's database."""
    config = tmp_path / "ledgerlink.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    return config


def report_rows(config: Path, *args: str) -> list[dict[str, str]]:
    """Run `ledgerlink report ...` as CSV with ``config`` and parse the rows of its table."""
    result = CliRunner().invoke(app, ["-c", str(config), "report", *args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output.split("\n\n")[0])))
