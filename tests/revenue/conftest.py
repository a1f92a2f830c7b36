"""Builders for revenue tests: subscriptions, snapshots and invoices in a few keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerlink.domain.entities import (
    Interval,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import SubscriptionSnapshot, snapshot


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
