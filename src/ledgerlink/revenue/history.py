"""Subscription history as dated snapshots, rebuilt from the invoices Stripe issued.

The store holds each Stripe subscription only as it is now, so a plan upgraded in March and
cancelled in May would look, month after month, like its final state. Its invoices keep the
past: every subscription invoice has one recurring line per item with the price, quantity and
service period billed, and a change in the middle of a period leaves proration lines whose
period starts at the moment of the change. Invoices are listed in full on a first load and
never expire, whereas Stripe keeps events for 30 days only, so invoices are what the history
is built from (the reasons are in docs/revenue.md, "Subscription history").

:func:`rebuild_history` turns one subscription and its invoices into snapshots:

- each recurring invoice gives the items in force from its lines' period start;
- each proration gives a change at its period start; the items after it are those of the next
  recurring invoice, or the subscription's current items when no later invoice exists yet;
- a first invoice paid after its period began keeps the subscription ``incomplete`` until the
  payment (Stripe only activates it then);
- the subscription as it is now closes the history: at ``ended_at`` when it has ended, else
  from its last known change, so its current flags (cancellation scheduled, past due) apply.

A subscription without any invoice in the store keeps the single snapshot of its current state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from ledgerlink.domain.entities import (
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue.mrr import SubscriptionSnapshot, snapshot

__all__ = ["rebuild_histories", "rebuild_history"]

_Items = tuple[SubscriptionItem, ...]


def _service_period(line: InvoiceLine) -> tuple[datetime, datetime] | None:
    """The period a line bills a subscription item for in full; None for other lines."""
    start, end = line.period_start, line.period_end
    if line.proration or line.subscription_item is None or start is None or end is None:
        return None
    return (start, end) if end > start else None


def _interval_of(start: datetime, end: datetime) -> tuple[Interval, int]:
    """Guess a billing interval from a period's length, for items no longer on the subscription."""
    days = round((end - start) / timedelta(days=1))
    if days >= 360:  # a year: 360 to 366 days
        return Interval.YEAR, max(1, round(days / 365))
    if days >= 28:  # the shortest month
        return Interval.MONTH, max(1, round(days / 30.4))
    if days >= 7:  # a week
        return Interval.WEEK, max(1, days // 7)
    return Interval.DAY, max(1, days)


def _item(
    line: InvoiceLine, period: tuple[datetime, datetime], current: Subscription
) -> SubscriptionItem | None:
    """The subscription item a recurring line billed, priced as the line says."""
    quantity = int(line.quantity)
    if quantity < 0:
        return None
    unit = line.unit_price
    if unit is None:
        if quantity == 0 or line.amount.amount % quantity:
            return None
        unit = Money(line.amount.amount // quantity, line.amount.currency)
    template = next((i for i in current.items if i.source == line.subscription_item), None)
    if template is None:
        template = next(
            (i for i in current.items if line.product and i.product == line.product), None
        )
    if template is not None and template.product == line.product:
        interval, count, price = template.interval, template.interval_count, template.price
    else:
        (interval, count), price = _interval_of(*period), None
    return SubscriptionItem(
        source=line.subscription_item,
        product=line.product,
        price=price,
        quantity=quantity,
        unit_price=unit,
        interval=interval,
        interval_count=count,
        current_period_start=period[0],
        current_period_end=period[1],
    )


def _periods(
    subscription: Subscription, invoices: Iterable[Invoice]
) -> tuple[list[tuple[datetime, datetime, _Items, Invoice]], list[datetime]]:
    """Return the recurring periods billed (start, end, items, invoice) and the change times."""
    periods: dict[datetime, tuple[datetime, list[SubscriptionItem], Invoice]] = {}
    changes: set[datetime] = set()
    for invoice in invoices:
        if invoice.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
            continue
        if invoice.currency != subscription.currency:
            continue
        for line in invoice.lines:
            if line.proration and line.period_start is not None:
                changes.add(line.period_start)
            period = _service_period(line)
            built = _item(line, period, subscription) if period else None
            if period is None or built is None:
                continue
            end, items, owner = periods.setdefault(period[0], (period[1], [], invoice))
            if owner is invoice:  # a second invoice for the same period is a re-issue
                items.append(built)
                periods[period[0]] = (max(end, period[1]), items, owner)
    ordered = [(start, end, tuple(items), owner) for start, (end, items, owner) in periods.items()]
    ordered.sort(key=lambda period: period[0])
    return ordered, sorted(changes)


def _state(
    subscription: Subscription,
    items: _Items,
    period: tuple[datetime, datetime],
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
) -> Subscription:
    """The subscription as it was: these items, this period, not cancelled."""
    return subscription.model_copy(
        update={
            "items": items,
            "status": status,
            "current_period_start": period[0],
            "current_period_end": period[1],
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "ended_at": None,
        }
    )


def _same_items(left: Sequence[SubscriptionItem], right: Sequence[SubscriptionItem]) -> bool:
    """Whether two item lists bill the same prices and quantities."""

    def key(items: Sequence[SubscriptionItem]) -> list[tuple[str, int, int, str, int]]:
        return sorted(
            (
                str(i.product or i.source),
                i.unit_price.amount,
                i.quantity,
                str(i.interval),
                i.interval_count,
            )
            for i in items
        )

    return key(left) == key(right)


def rebuild_history(
    subscription: Subscription,
    invoices: Iterable[Invoice],
    *,
    customer: str | None = None,
) -> list[SubscriptionSnapshot]:
    """Rebuild a subscription's dated snapshots from its invoices and its current state.

    Args:
        subscription: the subscription as it is now.
        invoices: its invoices (others' are ignored only if the caller filters them; pass
            only this subscription's).
        customer: the customer key; default that of the subscription's party.

    Returns:
        Snapshots, oldest first; the single current snapshot when no invoice bills a period.
    """
    periods, changes = _periods(subscription, invoices)
    if not periods:
        return [snapshot(subscription, customer=customer)]
    dated: dict[datetime, Subscription] = {}
    first_start, first_end, first_items, first_invoice = periods[0]
    paid = first_invoice.paid_at
    if (paid is not None and paid > first_start) or (
        paid is None and subscription.status in _NOT_YET_PAID
    ):
        dated[first_start] = _state(
            subscription, first_items, (first_start, first_end), SubscriptionStatus.INCOMPLETE
        )
        if paid is not None:
            dated[paid] = _state(subscription, first_items, (first_start, first_end))
    else:
        dated[first_start] = _state(subscription, first_items, (first_start, first_end))
    for start, end, items, _invoice in periods[1:]:
        dated[start] = _state(subscription, items, (start, end))
    for moment in changes:
        if moment in dated or moment < first_start:
            continue
        enclosing = max((p for p in periods if p[0] <= moment), key=lambda p: p[0])
        later = [p for p in periods if p[0] > moment]
        items = later[0][2] if later else subscription.items
        dated[moment] = _state(subscription, items, (enclosing[0], enclosing[1]))
    last_time = max(dated)
    if subscription.ended_at is not None:
        dated[max(subscription.ended_at, last_time)] = subscription
    elif _same_items(dated[last_time].items, subscription.items):
        dated[last_time] = subscription
    else:
        # Changed since the last invoice without a landed proration: the change happened after
        # the last invoiced moment; date it from the current period's start at the earliest.
        moment = max(
            last_time + timedelta(seconds=1), subscription.current_period_start or last_time
        )
        dated[moment] = subscription
    return [
        snapshot(state, customer=customer, effective_at=moment)
        for moment, state in sorted(dated.items(), key=lambda pair: pair[0])
    ]


_NOT_YET_PAID = (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)


def rebuild_histories(
    subscriptions: Iterable[Subscription],
    invoices: Iterable[Invoice],
    *,
    customer_of: dict[SourceRef, str] | None = None,
) -> list[SubscriptionSnapshot]:
    """Rebuild the snapshots of many subscriptions, each from the invoices that bill it.

    Args:
        subscriptions: subscriptions as they are now.
        invoices: any invoices; those without a subscription are ignored.
        customer_of: customer key per subscription reference; default its party's key.

    Returns:
        Every subscription's snapshots (group them with :func:`~ledgerlink.revenue.histories`).
    """
    by_subscription: dict[SourceRef, list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        if invoice.subscription is not None:
            by_subscription[invoice.subscription].append(invoice)
    snapshots: list[SubscriptionSnapshot] = []
    for subscription in subscriptions:
        who = (customer_of or {}).get(subscription.source)
        snapshots.extend(
            rebuild_history(
                subscription, by_subscription.get(subscription.source, ()), customer=who
            )
        )
    return snapshots
