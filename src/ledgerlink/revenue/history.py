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
- a renewal invoice paid late (a declined card retried, an invoice sent and paid after its due
  date) makes the subscription ``past_due`` from the failed charge (or the day after the due
  date) until the payment, as Stripe does during dunning; ``RevenuePolicy.past_due`` then
  decides whether it counts;
- metered items bill usage in arrears, so their lines say nothing about the items in force:
  they are left out of the rebuilt items, and the subscription's current metered items are
  carried on every snapshot, marked metered (never in MRR, explained as such);
- the subscription as it is now closes the history: at ``ended_at`` when it has ended, else
  from its last known change, so its current flags (cancellation scheduled, past due) apply.

A subscription without any invoice in the store keeps the single snapshot of its current state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, time, timedelta

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
_References = frozenset[SourceRef]

# A charge taken within this time of the invoice's finalisation is its first attempt: Stripe's
# dunning retries come days apart, so a later payment means the first charge failed.
_FIRST_ATTEMPT = timedelta(hours=1)


def _service_period(line: InvoiceLine, metered: _References) -> tuple[datetime, datetime] | None:
    """The period a line bills a licensed subscription item for in full; None for other lines."""
    start, end = line.period_start, line.period_end
    if line.proration or line.subscription_item is None or start is None or end is None:
        return None
    if line.subscription_item in metered:
        return None
    return (start, end) if end > start else None


def _is_metered(item: SubscriptionItem, metered: _References) -> bool:
    return (item.source is not None and item.source in metered) or (
        item.price is not None and item.price in metered
    )


def _overdue_since(invoice: Invoice, period_start: datetime) -> datetime | None:
    """When a renewal invoice made its subscription past due; None when it was paid in time.

    An invoice charged automatically is past due from its first (failed) charge at
    finalisation; one sent with a due date, from the day after that date.
    """
    issued = invoice.issued_at or invoice.created_at or period_start
    if invoice.due_date is not None:
        since = datetime.combine(invoice.due_date + timedelta(days=1), time(), tzinfo=UTC)
        deadline = since
    else:
        since, deadline = issued, issued + _FIRST_ATTEMPT
    if invoice.paid_at is not None:
        return since if invoice.paid_at > deadline else None
    unpaid = invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    return since if unpaid else None


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
    subscription: Subscription, invoices: Iterable[Invoice], metered: _References
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
            period = _service_period(line, metered)
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
    metered: Iterable[SourceRef] = (),
) -> list[SubscriptionSnapshot]:
    """Rebuild a subscription's dated snapshots from its invoices and its current state.

    Args:
        subscription: the subscription as it is now.
        invoices: its invoices (others' are ignored only if the caller filters them; pass
            only this subscription's).
        customer: the customer key; default that of the subscription's party.
        metered: item or price references billed on usage (Stripe prices with
            ``usage_type=metered``); their lines do not rebuild items and they are never MRR.

    Returns:
        Snapshots, oldest first; the single current snapshot when no invoice bills a period.
    """
    usage = frozenset(metered)
    periods, changes = _periods(subscription, invoices, usage)
    if not periods:
        return [snapshot(subscription, customer=customer, metered=usage)]
    usage_items = tuple(i for i in subscription.items if _is_metered(i, usage))
    licensed_now = tuple(i for i in subscription.items if not _is_metered(i, usage))

    def past(
        items: _Items,
        period: tuple[datetime, datetime],
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    ) -> Subscription:
        return _state(subscription, items + usage_items, period, status)

    dated: dict[datetime, Subscription] = {}
    first_start, first_end, first_items, first_invoice = periods[0]
    paid = first_invoice.paid_at
    if (paid is not None and paid > first_start) or (
        paid is None and subscription.status in _NOT_YET_PAID
    ):
        dated[first_start] = past(
            first_items, (first_start, first_end), SubscriptionStatus.INCOMPLETE
        )
        if paid is not None:
            dated[paid] = past(first_items, (first_start, first_end))
    else:
        dated[first_start] = past(first_items, (first_start, first_end))
    _renewals(dated, periods, past)
    for moment in changes:
        if moment in dated or moment < first_start:
            continue
        enclosing = max((p for p in periods if p[0] <= moment), key=lambda p: p[0])
        later = [p for p in periods if p[0] > moment]
        items = later[0][2] if later else licensed_now
        dated[moment] = past(items, (enclosing[0], enclosing[1]))
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
        snapshot(state, customer=customer, effective_at=moment, metered=usage)
        for moment, state in sorted(dated.items(), key=lambda pair: pair[0])
    ]


def _renewals(
    dated: dict[datetime, Subscription],
    periods: Sequence[tuple[datetime, datetime, _Items, Invoice]],
    past: Callable[..., Subscription],
) -> None:
    """Date each renewal's state, past due from a late-paid invoice's failure to its payment.

    A past-due spell is cut at the next period's start, whose own invoice then tells the state.
    """
    for position, (start, end, items, invoice) in enumerate(periods[1:], start=1):
        dated[start] = past(items, (start, end))
        overdue = _overdue_since(invoice, start)
        following = periods[position + 1][0] if position + 1 < len(periods) else None
        if overdue is None or (following is not None and overdue >= following):
            continue
        dated[max(overdue, start)] = past(items, (start, end), SubscriptionStatus.PAST_DUE)
        recovered = invoice.paid_at
        if recovered is not None and (following is None or recovered < following):
            dated[recovered] = past(items, (start, end))


_NOT_YET_PAID = (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)


def rebuild_histories(
    subscriptions: Iterable[Subscription],
    invoices: Iterable[Invoice],
    *,
    customer_of: dict[SourceRef, str] | None = None,
    metered: Iterable[SourceRef] = (),
) -> list[SubscriptionSnapshot]:
    """Rebuild the snapshots of many subscriptions, each from the invoices that bill it.

    Args:
        subscriptions: subscriptions as they are now.
        invoices: any invoices; those without a subscription are ignored.
        customer_of: customer key per subscription reference; default its party's key.
        metered: item or price references billed on usage, of any subscription.

    Returns:
        Every subscription's snapshots (group them with :func:`~ledgerlink.revenue.histories`).
    """
    by_subscription: dict[SourceRef, list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        if invoice.subscription is not None:
            by_subscription[invoice.subscription].append(invoice)
    usage = frozenset(metered)
    snapshots: list[SubscriptionSnapshot] = []
    for subscription in subscriptions:
        who = (customer_of or {}).get(subscription.source)
        snapshots.extend(
            rebuild_history(
                subscription,
                by_subscription.get(subscription.source, ()),
                customer=who,
                metered=usage,
            )
        )
    return snapshots
