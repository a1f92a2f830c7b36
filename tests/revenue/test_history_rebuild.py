"""Rebuilding a subscription's snapshots from its invoices, edge cases without a sandbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ledgerlink.domain.entities import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    SourceRef,
    Subscription,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue import (
    Month,
    PastDueTreatment,
    RevenuePolicy,
    SubscriptionSnapshot,
    customer_mrr,
    histories,
)
from ledgerlink.revenue.history import rebuild_history

from .conftest import at, item, state

SUB = SourceRef(system="stripe", object="subscription", id="sub_1")
ITEM = SourceRef(system="stripe", object="subscription_item", id="si")
PRODUCT = SourceRef(system="stripe", object="product", id="prod_si")


def invoice(
    key: str,
    start: datetime,
    end: datetime,
    cents: int,
    quantity: int = 1,
    *,
    status: str = "paid",
    paid_at: datetime | None = None,
    proration_at: datetime | None = None,
) -> Invoice:
    """A subscription invoice with one recurring line, and a proration line when asked."""
    lines = [
        InvoiceLine(
            product=PRODUCT,
            quantity=Decimal(quantity),
            unit_price=Money(cents, "EUR"),
            amount=Money(cents * quantity, "EUR"),
            period_start=start,
            period_end=end,
            subscription_item=ITEM,
        )
    ]
    if proration_at is not None:
        lines.append(
            InvoiceLine(
                product=PRODUCT,
                amount=Money(500, "EUR"),
                period_start=proration_at,
                period_end=start,
                proration=True,
            )
        )
    return Invoice(
        source=SourceRef(system="stripe", object="invoices", id=key),
        status=InvoiceStatus(status),
        currency="EUR",
        lines=tuple(lines),
        total=Money(cents * quantity, "EUR"),
        subscription=SUB,
        paid_at=paid_at if paid_at is not None else (start if status == "paid" else None),
    )


def mrr_by_month(snapshots: list[SubscriptionSnapshot], months: list[Month]) -> list[int]:
    """The subscription's MRR (minor units) at the end of each month."""
    (history,) = histories(snapshots)
    values = []
    for month in months:
        counted = customer_mrr(history, month, RevenuePolicy())
        values.append(counted[2] if counted else 0)
    return values


def current(cents: int, quantity: int = 1, **fields: Any) -> Subscription:
    """The subscription as the store holds it now, started on 10 January."""
    return state(
        "sub_1", at(2026, 1, 10), (item("si", cents, quantity=quantity),), **fields
    ).subscription


MONTHS = [Month(2026, m) for m in range(1, 5)]


def test_without_invoices_the_current_state_is_the_history() -> None:
    """A subscription with no invoice in the store keeps one snapshot of its current state."""
    snapshots = rebuild_history(current(1000), [])
    assert len(snapshots) == 1
    assert mrr_by_month(snapshots, MONTHS) == [1000, 1000, 1000, 1000]


def test_an_upgrade_counts_from_its_proration_not_from_the_start() -> None:
    """Items after a proration are the next invoice's, from the moment of the change on."""
    invoices = [
        invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000),
        invoice("in_2", at(2026, 2, 10), at(2026, 3, 10), 1000),
        invoice("in_3", at(2026, 3, 10), at(2026, 4, 10), 1000, 3, proration_at=at(2026, 2, 25)),
    ]
    snapshots = rebuild_history(current(1000, 3), invoices)
    assert mrr_by_month(snapshots, MONTHS) == [1000, 3000, 3000, 3000]


def test_a_first_invoice_paid_late_is_not_mrr_until_paid() -> None:
    """A subscription whose first invoice is paid in March counts from March, not January."""
    invoices = [
        invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000, paid_at=at(2026, 3, 2)),
        invoice("in_v", at(2026, 1, 10), at(2026, 2, 10), 9000, status="void"),
    ]
    snapshots = rebuild_history(current(1000), invoices)
    assert mrr_by_month(snapshots, MONTHS) == [0, 0, 1000, 1000]


def test_a_change_not_invoiced_yet_dates_from_the_current_period() -> None:
    """A change the invoices do not show yet counts from the current period's start."""
    invoices = [
        invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000),
        invoice("in_2", at(2026, 2, 10), at(2026, 3, 10), 1000),
        invoice("in_3", at(2026, 3, 10), at(2026, 4, 10), 1000),
    ]
    now = current(
        2000, current_period_start=at(2026, 3, 10), status=str(SubscriptionStatus.PAST_DUE)
    )
    snapshots = rebuild_history(now, invoices)
    assert mrr_by_month(snapshots, MONTHS) == [1000, 1000, 2000, 2000]
    assert snapshots[-1].subscription.status is SubscriptionStatus.PAST_DUE


def test_a_renewal_paid_late_is_past_due_until_paid() -> None:
    """A renewal charged on 10 March and paid on 2 April is past due at the end of March only."""
    late = invoice("in_3", at(2026, 3, 10), at(2026, 4, 10), 1000, paid_at=at(2026, 4, 2))
    late = late.model_copy(update={"issued_at": at(2026, 3, 10)})
    invoices = [
        invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000),
        invoice("in_2", at(2026, 2, 10), at(2026, 3, 10), 1000),
        late,
    ]
    snapshots = rebuild_history(current(1000), invoices)
    (history,) = histories(snapshots)
    march = history.snapshots[history.index_before(Month(2026, 3).end)]
    assert march.subscription.status is SubscriptionStatus.PAST_DUE
    assert mrr_by_month(snapshots, MONTHS) == [1000, 1000, 1000, 1000]
    excluded = RevenuePolicy(past_due=PastDueTreatment.EXCLUDE)
    assert [
        (counted or ("", "", 0))[2]
        for counted in (customer_mrr(history, m, excluded) for m in MONTHS)
    ] == [1000, 1000, 0, 1000]


def test_a_renewal_paid_at_once_or_by_its_due_date_is_never_past_due() -> None:
    """Paid within the hour of finalisation, or by its due date, a renewal leaves the status active."""
    on_time = invoice("in_2", at(2026, 2, 10), at(2026, 3, 10), 1000, paid_at=at(2026, 2, 10, 1))
    sent = invoice("in_3", at(2026, 3, 10), at(2026, 4, 10), 1000, paid_at=at(2026, 3, 31))
    sent = sent.model_copy(update={"due_date": at(2026, 3, 31).date()})
    invoices = [invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000), on_time, sent]
    snapshots = rebuild_history(current(1000), invoices)
    assert {s.subscription.status for s in snapshots} == {SubscriptionStatus.ACTIVE}


def test_metered_lines_do_not_rebuild_items_and_stay_out_of_mrr() -> None:
    """Usage lines of a metered item (1,500 then 2,000 calls) never become items in MRR."""
    calls = SourceRef(system="stripe", object="subscription_item", id="si_calls")

    def usage(start: datetime, end: datetime, quantity: int) -> InvoiceLine:
        return InvoiceLine(
            quantity=Decimal(quantity),
            unit_price=Money(5, "EUR"),
            amount=Money(5 * quantity, "EUR"),
            period_start=start,
            period_end=end,
            subscription_item=calls,
        )

    first = invoice("in_1", at(2026, 1, 10), at(2026, 2, 10), 1000)
    second = invoice("in_2", at(2026, 2, 10), at(2026, 3, 10), 1000)
    second = second.model_copy(
        update={"lines": (*second.lines, usage(at(2026, 1, 10), at(2026, 2, 10), 1500))}
    )
    third = invoice("in_3", at(2026, 3, 10), at(2026, 4, 10), 1000)
    third = third.model_copy(
        update={"lines": (*third.lines, usage(at(2026, 2, 10), at(2026, 3, 10), 2000))}
    )
    now = current(1000)
    metered_item = item("calls", 5).model_copy(update={"source": calls})
    now = now.model_copy(update={"items": (*now.items, metered_item)})
    snapshots = rebuild_history(now, [first, second, third], metered=[calls])
    assert mrr_by_month(snapshots, MONTHS) == [1000, 1000, 1000, 1000]
    assert all(s.is_metered(metered_item) for s in snapshots)
    assert all(metered_item in s.subscription.items for s in snapshots)
