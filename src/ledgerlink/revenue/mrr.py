"""MRR, ARR and ACV: what each subscription is worth per month, and why.

Inputs are canonical :class:`~ledgerlink.domain.entities.Subscription` values wrapped in a
:class:`SubscriptionSnapshot`: the subscription as it was from ``effective_at`` on (one
snapshot per ``customer.subscription.*`` event, or per stored version), the golden customer it
belongs to, the discounts in force (the canonical entity has no discount field) and which of
its prices are billed on usage. Snapshots of one subscription form a
:class:`SubscriptionHistory`.

MRR for a month is the state at the month's last instant (``RevenuePolicy`` documents every
choice). Each counted subscription item is normalised to a month exactly:

- the item's net amount per billing period (unit price x quantity, less discounts) is split
  over the months of the period with :meth:`Money.allocate` (monthly: 1 month, quarterly: 3,
  annual: 12), and the month takes its part by position in the period, so the 12 months of
  an annual plan add up exactly to its price;
- weekly and daily prices are first annualised (x 52 or x 365 per ``interval_count``,
  rounded once with the policy's rounding) and that year is split over 12 months.

Metered items, trials, ended, paused and incomplete subscriptions contribute zero, with the
reason on the line so :func:`explain` can show it. Metered usage and one-off charges are
reported apart by :func:`usage_and_one_off` from invoices. No float is involved anywhere.

Before its first snapshot a subscription is projected backwards from that snapshot: it is
counted from ``started_at`` (after any trial) in the state ``active``, since a subscription
seen later as past due or cancelled was running before.
"""

from __future__ import annotations

import bisect
import enum
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from ledgerlink.domain.entities import (
    Interval,
    Invoice,
    InvoiceStatus,
    Quote,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    ensure_utc,
)
from ledgerlink.domain.money import CurrencyMismatchError, Money, Rounding
from ledgerlink.revenue.policy import (
    CancelAtPeriodEnd,
    DiscountTreatment,
    PastDueTreatment,
    RevenueError,
    RevenuePolicy,
)

__all__ = [
    "ContractValue",
    "CustomerResolver",
    "Discount",
    "DiscountDuration",
    "Exclusion",
    "Month",
    "MrrExplanation",
    "MrrLine",
    "MrrSnapshot",
    "NonRecurring",
    "SubscriptionHistory",
    "SubscriptionSnapshot",
    "arr",
    "contract_value",
    "customer_mrr",
    "default_customer",
    "explain",
    "histories",
    "measure_mrr",
    "month_range",
    "round_fraction",
    "snapshot",
    "usage_and_one_off",
]

CustomerResolver = Callable[[SourceRef | None], str]
"""Turns a record's party reference into the customer key reports group by."""


def default_customer(party: SourceRef | None) -> str:
    """Return the customer key for a party reference when no golden customer is known.

    Args:
        party: the record's party, or None.

    Returns:
        ``"system/object/id"`` of the party, or ``"unassigned"``.
    """
    return str(party) if party is not None else "unassigned"


# -- months -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month in UTC, the unit every revenue report is bucketed by.

    Attributes:
        year: four-digit year.
        month: 1 to 12.

    Raises:
        ValueError: ``month`` is outside 1..12 or ``year`` outside 1..9998.
    """

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9998:
            msg = f"not a month: {self.year}-{self.month}"
            raise ValueError(msg)

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``"2024-03"``.

        Args:
            text: ``YYYY-MM``.

        Returns:
            The month.

        Raises:
            ValueError: ``text`` is not ``YYYY-MM``.
        """
        parts = text.strip().split("-")
        if len(parts) != 2 or not all(part.isdigit() for part in parts) or len(parts[0]) != 4:
            msg = f"not a month (expected YYYY-MM): {text!r}"
            raise ValueError(msg)
        return cls(int(parts[0]), int(parts[1]))

    @classmethod
    def of(cls, moment: datetime | date) -> Month:
        """Return the month holding ``moment`` (an aware datetime, taken in UTC, or a date).

        Args:
            moment: a timezone-aware datetime or a calendar date.

        Returns:
            The month.

        Raises:
            ValueError: ``moment`` is a naive datetime.
        """
        if isinstance(moment, datetime):
            moment = ensure_utc(moment)
        return cls(moment.year, moment.month)

    @classmethod
    def from_ordinal(cls, ordinal: int) -> Month:
        """Return the month with the given :attr:`ordinal`."""
        year, index = divmod(ordinal, 12)
        return cls(year, index + 1)

    @property
    def ordinal(self) -> int:
        """Months since year 0: consecutive months differ by one."""
        return self.year * 12 + self.month - 1

    @property
    def start(self) -> datetime:
        """The month's first instant (UTC midnight on the 1st)."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next month's first instant: the month is ``[start, end)``."""
        return self.shift(1).start

    @property
    def days(self) -> int:
        """Number of days in the month."""
        return (self.shift(1).start - self.start).days

    def shift(self, months: int) -> Month:
        """Return the month ``months`` later (earlier when negative)."""
        return Month.from_ordinal(self.ordinal + months)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def month_range(first: Month, last: Month) -> list[Month]:
    """Return every month from ``first`` to ``last``, both included.

    Args:
        first: the first month.
        last: the last month.

    Returns:
        The months in order (empty when ``last`` is before ``first``).
    """
    return [Month.from_ordinal(o) for o in range(first.ordinal, last.ordinal + 1)]


# -- inputs -------------------------------------------------------------------------------


class DiscountDuration(enum.StrEnum):
    """How long a discount lasts (Stripe's coupon ``duration``)."""

    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value)


@dataclass(frozen=True, slots=True)
class Discount:
    """A discount on a subscription, in force from ``starts_at`` until ``ends_at``.

    Attributes:
        percent_off: percentage off each applicable item (``Decimal("20")`` is 20 %).
        amount_off: fixed amount off per billing period, split over applicable items in
            proportion to their amounts.
        duration: once, repeating or forever; the mapping sets ``ends_at`` for the first two.
        starts_at: when it starts applying (None: from the start).
        ends_at: when it stops applying (None: never).
        items: the subscription items (by item or price reference) it applies to; empty
            means every item.
        source: the coupon or discount record.

    Raises:
        TypeError: ``percent_off`` is a float.
        RevenueError: not exactly one of ``percent_off`` and ``amount_off``, a percentage
            outside 0..100 or a negative amount.
        ValueError: a naive datetime.
    """

    percent_off: Decimal | None = None
    amount_off: Money | None = None
    duration: DiscountDuration = DiscountDuration.FOREVER
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    items: frozenset[SourceRef] = frozenset()
    source: SourceRef | None = None

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            msg = "a discount has exactly one of percent_off and amount_off"
            raise RevenueError(msg)
        percent: object = self.percent_off
        if percent is not None:
            if isinstance(percent, bool) or not isinstance(percent, Decimal | int):
                msg = f"percent_off must be a Decimal, not {type(percent).__name__}"
                raise TypeError(msg)
            if not Decimal(0) <= Decimal(percent) <= Decimal(100):
                msg = f"percent_off must be within 0..100, got {percent}"
                raise RevenueError(msg)
            object.__setattr__(self, "percent_off", Decimal(percent))
        if self.amount_off is not None and self.amount_off.is_negative:
            msg = "amount_off must not be negative"
            raise RevenueError(msg)
        object.__setattr__(self, "starts_at", _aware(self.starts_at))
        object.__setattr__(self, "ends_at", _aware(self.ends_at))
        object.__setattr__(self, "items", frozenset(self.items))

    def in_force(self, before: datetime) -> bool:
        """Whether the discount applies at the last instant before ``before``.

        Args:
            before: an exclusive bound (a month's :attr:`Month.end`).

        Returns:
            True when it started before ``before`` and has not ended by then.
        """
        if self.starts_at is not None and self.starts_at >= before:
            return False
        return self.ends_at is None or self.ends_at >= before

    def applies_to(self, item: SubscriptionItem) -> bool:
        """Whether the discount covers ``item``."""
        if not self.items:
            return True
        return (item.source is not None and item.source in self.items) or (
            item.price is not None and item.price in self.items
        )


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """A subscription as it was from ``effective_at`` until the next snapshot.

    Attributes:
        subscription: the canonical subscription.
        effective_at: when this state began (the event time).
        customer: the customer key reports group by (the golden customer id).
        discounts: discounts on the subscription.
        metered: item or price references billed on usage (never in MRR).
    """

    subscription: Subscription
    effective_at: datetime
    customer: str
    discounts: tuple[Discount, ...] = ()
    metered: frozenset[SourceRef] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_at", ensure_utc(self.effective_at))
        for discount in self.discounts:
            amount = discount.amount_off
            if amount is not None and amount.currency != self.subscription.currency:
                msg = (
                    f"discount {amount} is not in the currency of subscription "
                    f"{self.subscription.source} ({self.subscription.currency})"
                )
                raise CurrencyMismatchError(msg)

    def is_metered(self, item: SubscriptionItem) -> bool:
        """Whether ``item`` is billed on usage."""
        return (item.source is not None and item.source in self.metered) or (
            item.price is not None and item.price in self.metered
        )


def snapshot(
    subscription: Subscription,
    *,
    customer: str | None = None,
    effective_at: datetime | None = None,
    discounts: Iterable[Discount] = (),
    metered: Iterable[SourceRef] = (),
) -> SubscriptionSnapshot:
    """Wrap a subscription as a snapshot, filling defaults from the subscription.

    Args:
        subscription: the canonical subscription.
        customer: the customer key; default :func:`default_customer` of its party.
        effective_at: when the state began; default ``updated_at``, then ``started_at``,
            then ``created_at``.
        discounts: discounts on it.
        metered: item or price references billed on usage.

    Returns:
        The snapshot.

    Raises:
        RevenueError: no ``effective_at`` is given and the subscription has no time at all.
    """
    moment = (
        effective_at
        or subscription.updated_at
        or subscription.started_at
        or subscription.created_at
    )
    if moment is None:
        msg = f"subscription {subscription.source} has no time: pass effective_at"
        raise RevenueError(msg)
    return SubscriptionSnapshot(
        subscription=subscription,
        effective_at=moment,
        customer=customer if customer is not None else default_customer(subscription.party),
        discounts=tuple(discounts),
        metered=frozenset(metered),
    )


@dataclass(frozen=True, slots=True)
class SubscriptionHistory:
    """The snapshots of one subscription, oldest first.

    Attributes:
        snapshots: at least one snapshot, all of the same subscription, sorted by time.

    Raises:
        RevenueError: no snapshot, or snapshots of different subscriptions.
    """

    snapshots: tuple[SubscriptionSnapshot, ...]
    _times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.snapshots:
            msg = "a subscription history needs at least one snapshot"
            raise RevenueError(msg)
        ordered = tuple(sorted(self.snapshots, key=lambda s: s.effective_at))
        first = ordered[0].subscription.source
        if any(s.subscription.source != first for s in ordered):
            msg = f"snapshots of several subscriptions in the history of {first}"
            raise RevenueError(msg)
        object.__setattr__(self, "snapshots", ordered)
        object.__setattr__(self, "_times", tuple(s.effective_at for s in ordered))

    @property
    def source(self) -> SourceRef:
        """The subscription's reference."""
        return self.snapshots[0].subscription.source

    @property
    def first_month(self) -> Month:
        """The earliest month in which the subscription can have MRR."""
        first = self.snapshots[0]
        moments = [first.effective_at]
        moments.extend(
            s.subscription.started_at
            for s in self.snapshots
            if s.subscription.started_at is not None
        )
        return Month.of(min(moments))

    def index_before(self, before: datetime) -> int:
        """Index of the snapshot in force just before ``before``; -1 when none yet."""
        return bisect.bisect_left(self._times, before) - 1


def histories(snapshots: Iterable[SubscriptionSnapshot]) -> list[SubscriptionHistory]:
    """Group snapshots into one history per subscription.

    Args:
        snapshots: snapshots of any subscriptions, in any order.

    Returns:
        One history per subscription source, in order of first appearance.
    """
    grouped: dict[SourceRef, list[SubscriptionSnapshot]] = {}
    for item in snapshots:
        grouped.setdefault(item.subscription.source, []).append(item)
    return [SubscriptionHistory(tuple(group)) for group in grouped.values()]


# -- evaluation ---------------------------------------------------------------------------


class Exclusion(enum.StrEnum):
    """Why a subscription item contributes nothing to MRR in a month."""

    NOT_STARTED = "not started"
    TRIAL = "in trial"
    ENDED = "ended"
    CANCEL_SCHEDULED = "cancellation scheduled (policy: churn when scheduled)"
    PAST_DUE = "past due (policy)"
    UNPAID = "unpaid (policy)"
    PAUSED = "paused"
    INCOMPLETE = "first payment never completed"
    METERED = "metered usage (reported apart)"


@dataclass(frozen=True, slots=True)
class MrrLine:
    """How one subscription item makes (or does not make) a customer's MRR in a month.

    Attributes:
        month: the month measured.
        customer: the customer key.
        subscription: the subscription.
        item: the item (or its price) reference.
        product: the product billed.
        status: the subscription status used, after projection.
        quantity: units.
        unit_price: price of one unit per billing period.
        interval: billing period unit.
        interval_count: units per period.
        period_amount: unit price x quantity per billing period.
        discount: discount per billing period applied to MRR.
        period_months: months the period amount is split over (12 for annual, weekly and
            daily prices).
        month_index: this month's position in that split (0-based).
        mrr: the item's MRR this month (zero when excluded).
        excluded: why it is not counted, or None.
    """

    month: Month
    customer: str
    subscription: SourceRef
    item: SourceRef | None
    product: SourceRef | None
    status: str
    quantity: int
    unit_price: Money
    interval: Interval
    interval_count: int
    period_amount: Money
    discount: Money
    period_months: int
    month_index: int
    mrr: Money
    excluded: Exclusion | None

    @property
    def normalisation(self) -> str:
        """The normalisation in words: ``"1200.00 EUR per year / 12 months, part 3 of 12"``."""
        net = self.period_amount - self.discount
        per = (
            f"{self.interval_count} {self.interval}s"
            if self.interval_count > 1
            else str(self.interval)
        )
        if self.interval in (Interval.WEEK, Interval.DAY):
            factor = 52 if self.interval is Interval.WEEK else 365
            basis = f"{net} per {per} x {factor} / {self.interval_count} = a year"
        else:
            basis = f"{net} per {per}"
        return f"{basis} / {self.period_months} months, part {self.month_index + 1} of {self.period_months}"


@functools.lru_cache(maxsize=65536)
def _allocated(amount: int, months: int, currency: str) -> tuple[int, ...]:
    # Money.allocate (largest remainder) is the single rule for splitting a period.
    return tuple(part.amount for part in Money(amount, currency).allocate([1] * months))


def _period(item: SubscriptionItem, net: int, policy: RevenuePolicy) -> tuple[int, int]:
    """Return (amount to split, months to split it over) for one item's net period amount."""
    count = item.interval_count
    if item.interval is Interval.MONTH:
        return net, count
    if item.interval is Interval.YEAR:
        return net, 12 * count
    factor = 52 if item.interval is Interval.WEEK else 365
    return round_fraction(Fraction(net * factor, count), policy.rounding), 12


def _time_exclusion(
    current: SubscriptionSnapshot, status: SubscriptionStatus, end: datetime, policy: RevenuePolicy
) -> Exclusion | None:
    """Exclusions decided by the subscription's dates: not started, ended, scheduled, trial."""
    sub = current.subscription
    start = sub.started_at or sub.created_at or current.effective_at
    if start >= end:
        return Exclusion.NOT_STARTED
    ended = (
        (sub.ended_at is not None and sub.ended_at < end)
        or (sub.cancel_at is not None and sub.cancel_at < end)
        or (
            sub.cancel_at_period_end
            and sub.current_period_end is not None
            and sub.current_period_end < end
        )
        or status is SubscriptionStatus.CANCELED
    )
    if ended:
        return Exclusion.ENDED
    if (
        sub.cancel_at_period_end
        and policy.cancel_at_period_end is CancelAtPeriodEnd.CHURN_WHEN_SCHEDULED
        and (sub.canceled_at is None or sub.canceled_at < end)
    ):
        return Exclusion.CANCEL_SCHEDULED
    if status is SubscriptionStatus.TRIALING or (
        sub.trial_end is not None and sub.trial_end >= end
    ):
        return Exclusion.TRIAL
    return None


_STATUS_EXCLUSIONS = {
    SubscriptionStatus.INCOMPLETE: Exclusion.INCOMPLETE,
    SubscriptionStatus.INCOMPLETE_EXPIRED: Exclusion.INCOMPLETE,
    SubscriptionStatus.PAUSED: Exclusion.PAUSED,
}


def _past_due_too_long(
    history: SubscriptionHistory, index: int, end: datetime, grace_days: int
) -> bool:
    since_index = index
    while (
        since_index > 0
        and history.snapshots[since_index - 1].subscription.status is SubscriptionStatus.PAST_DUE
    ):
        since_index -= 1
    return end - history.snapshots[since_index].effective_at > timedelta(days=grace_days)


def _state(
    history: SubscriptionHistory, index: int, end: datetime, policy: RevenuePolicy
) -> tuple[SubscriptionSnapshot, SubscriptionStatus, Exclusion | None]:
    """Return the snapshot used for the month ending at ``end``, its status and exclusion."""
    projected = index < 0
    current = history.snapshots[0 if projected else index]
    status = current.subscription.status
    if projected and status not in (
        SubscriptionStatus.INCOMPLETE,
        SubscriptionStatus.INCOMPLETE_EXPIRED,
        SubscriptionStatus.TRIALING,
    ):
        status = SubscriptionStatus.ACTIVE
    exclusion = _time_exclusion(current, status, end, policy) or _STATUS_EXCLUSIONS.get(status)
    if exclusion is None and status is SubscriptionStatus.UNPAID and not policy.count_unpaid:
        exclusion = Exclusion.UNPAID
    past_due_excluded = status is SubscriptionStatus.PAST_DUE and (
        policy.past_due is PastDueTreatment.EXCLUDE
        or (
            policy.past_due_grace_days is not None
            and _past_due_too_long(history, index, end, policy.past_due_grace_days)
        )
    )
    if exclusion is None and past_due_excluded:
        exclusion = Exclusion.PAST_DUE
    return current, status, exclusion


def _discounts(
    current: SubscriptionSnapshot, end: datetime, policy: RevenuePolicy
) -> list[Discount]:
    if policy.discounts is DiscountTreatment.IGNORE:
        return []
    chosen = [d for d in current.discounts if d.in_force(end)]
    if policy.discounts is DiscountTreatment.FOREVER_ONLY:
        chosen = [d for d in chosen if d.duration is DiscountDuration.FOREVER and d.ends_at is None]
    return chosen


def _net_amounts(
    items: Sequence[SubscriptionItem],
    counted: Sequence[bool],
    discounts: Sequence[Discount],
    policy: RevenuePolicy,
) -> list[int]:
    """Return each item's discount per billing period (zero for items not counted)."""
    gross = [item.unit_price.amount * item.quantity for item in items]
    net = list(gross)
    for discount in discounts:
        if discount.percent_off is None:
            continue
        rate = discount.percent_off / 100
        for position, item in enumerate(items):
            if counted[position] and discount.applies_to(item) and net[position] > 0:
                cut = Money(net[position], item.unit_price.currency).multiply(
                    rate, rounding=policy.rounding
                )
                net[position] -= cut.amount
    for discount in discounts:
        if discount.amount_off is None or discount.amount_off.is_zero:
            continue
        targets = [
            p
            for p, item in enumerate(items)
            if counted[p] and discount.applies_to(item) and net[p] > 0
        ]
        if not targets:
            continue
        shares = discount.amount_off.allocate([net[p] for p in targets])
        for position, share in zip(targets, shares, strict=True):
            net[position] -= min(share.amount, net[position])
    return [g - n for g, n in zip(gross, net, strict=True)]


def _evaluate(history: SubscriptionHistory, month: Month, policy: RevenuePolicy) -> list[MrrLine]:
    end = month.end
    current, status, exclusion = _state(history, history.index_before(end), end, policy)
    sub = current.subscription
    items = sub.items
    metered = [current.is_metered(item) for item in items]
    counted = [exclusion is None and not m for m in metered]
    discounts = _discounts(current, end, policy) if any(counted) else []
    cuts = _net_amounts(items, counted, discounts, policy) if discounts else [0] * len(items)
    anchor_default = sub.current_period_start or sub.started_at or current.effective_at
    lines: list[MrrLine] = []
    for position, item in enumerate(items):
        gross = item.unit_price.amount * item.quantity
        cut = cuts[position] if counted[position] else 0
        split_amount, months = _period(item, gross - cut, policy)
        anchor = Month.of(item.current_period_start or anchor_default)
        index = (month.ordinal - anchor.ordinal) % months
        if counted[position]:
            amount = _allocated(split_amount, months, sub.currency)[index]
            reason = None
        else:
            amount = 0
            reason = Exclusion.METERED if metered[position] and exclusion is None else exclusion
        currency = sub.currency
        lines.append(
            MrrLine(
                month=month,
                customer=current.customer,
                subscription=sub.source,
                item=item.source or item.price,
                product=item.product,
                status=str(status),
                quantity=item.quantity,
                unit_price=item.unit_price,
                interval=item.interval,
                interval_count=item.interval_count,
                period_amount=Money(gross, currency),
                discount=Money(cut, currency),
                period_months=months,
                month_index=index,
                mrr=Money(amount, currency),
                excluded=reason,
            )
        )
    return lines


def customer_mrr(
    history: SubscriptionHistory, month: Month, policy: RevenuePolicy
) -> tuple[str, str, int] | None:
    """Return one subscription's MRR in ``month`` as ``(customer, currency, minor units)``.

    The fast path of :func:`measure_mrr` for movements: the same rules, no explanation lines.

    Args:
        history: the subscription.
        month: the month (state at its last instant).
        policy: the MRR choices.

    Returns:
        The customer key, currency and MRR, or None when the subscription is not counted.
    """
    end = _month_end(month.ordinal)
    current, _status, exclusion = _state(history, history.index_before(end), end, policy)
    if exclusion is not None:
        return None
    sub = current.subscription
    items = sub.items
    counted = [not current.is_metered(item) for item in items] if current.metered else None
    discounts = _discounts(current, end, policy) if current.discounts else None
    cuts = (
        _net_amounts(items, counted or [True] * len(items), discounts, policy)
        if discounts
        else None
    )
    anchor_default = sub.current_period_start or sub.started_at or current.effective_at
    ordinal = month.ordinal
    total = 0
    for position, item in enumerate(items):
        if counted is not None and not counted[position]:
            continue
        net = item.unit_price.amount * item.quantity - (cuts[position] if cuts else 0)
        split_amount, months = _period(item, net, policy)
        if months == 1:
            total += split_amount
            continue
        anchor = item.current_period_start or anchor_default  # UTC: entities normalise it
        index = (ordinal - (anchor.year * 12 + anchor.month - 1)) % months
        total += _allocated(split_amount, months, sub.currency)[index]
    return current.customer, sub.currency, total


@functools.lru_cache(maxsize=4096)
def _month_end(ordinal: int) -> datetime:
    return Month.from_ordinal(ordinal + 1).start


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MrrSnapshot:
    """MRR of every subscription item in one month.

    Attributes:
        month: the month measured.
        lines: one line per subscription item, counted or excluded.
    """

    month: Month
    lines: tuple[MrrLine, ...]

    def by_customer(self) -> dict[tuple[str, str], Money]:
        """Return MRR per ``(customer, currency)``, only for customers with counted items."""
        totals: dict[tuple[str, str], Money] = {}
        for line in self.lines:
            if line.excluded is None:
                key = (line.customer, line.mrr.currency)
                totals[key] = totals[key] + line.mrr if key in totals else line.mrr
        return totals

    def totals(self) -> dict[str, Money]:
        """Return total MRR per currency."""
        totals: dict[str, Money] = {}
        for (_customer, currency), amount in self.by_customer().items():
            totals[currency] = totals[currency] + amount if currency in totals else amount
        return totals


def measure_mrr(
    subscription_histories: Iterable[SubscriptionHistory],
    month: Month,
    policy: RevenuePolicy | None = None,
) -> MrrSnapshot:
    """Compute every subscription item's MRR for ``month``.

    Args:
        subscription_histories: the subscriptions (see :func:`histories`).
        month: the month to measure (state at its last instant).
        policy: the MRR choices; default :class:`RevenuePolicy()`.

    Returns:
        The lines, with per-customer and per-currency totals.

    Raises:
        CurrencyMismatchError: a discount is in another currency than its subscription.
    """
    chosen = policy or RevenuePolicy()
    lines: list[MrrLine] = []
    for history in subscription_histories:
        lines.extend(_evaluate(history, month, chosen))
    return MrrSnapshot(month=month, lines=tuple(lines))


def arr(mrr: Money) -> Money:
    """Return annual run rate: 12 x MRR, exactly.

    Args:
        mrr: monthly recurring revenue.

    Returns:
        ``mrr * 12``.
    """
    return mrr * 12


@dataclass(frozen=True, slots=True)
class MrrExplanation:
    """How a customer's MRR for a month was computed, for ``report mrr --explain``.

    Attributes:
        customer: the customer key.
        month: the month.
        lines: every item of the customer's subscriptions, counted or excluded.
        totals: MRR per currency.
        policy: the policy choices used, as text.
    """

    customer: str
    month: Month
    lines: tuple[MrrLine, ...]
    totals: dict[str, Money]
    policy: dict[str, str]


def explain(
    subscription_histories: Iterable[SubscriptionHistory],
    customer: str,
    month: Month,
    policy: RevenuePolicy | None = None,
) -> MrrExplanation:
    """Show the lines that make ``customer``'s MRR in ``month``.

    Args:
        subscription_histories: the subscriptions.
        customer: the customer key.
        month: the month.
        policy: the MRR choices; default :class:`RevenuePolicy()`.

    Returns:
        Each subscription item with its normalisation, discount and exclusion reason, the
        totals per currency and the policy in words.
    """
    chosen = policy or RevenuePolicy()
    lines = [
        line
        for history in subscription_histories
        if any(s.customer == customer for s in history.snapshots)
        for line in _evaluate(history, month, chosen)
        if line.customer == customer
    ]
    snap = MrrSnapshot(month=month, lines=tuple(lines))
    return MrrExplanation(
        customer=customer,
        month=month,
        lines=tuple(lines),
        totals=snap.totals(),
        policy=chosen.describe(),
    )


# -- usage and one-off charges ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NonRecurring:
    """Invoiced amounts that are not MRR, per customer, currency and month of issue.

    Attributes:
        month: month the invoice was issued.
        customer: the customer key.
        metered: usage-based lines (net of line discounts).
        one_off: lines billed outside any subscription (set-up fees, services).
    """

    month: Month
    customer: str
    metered: Money
    one_off: Money


def usage_and_one_off(
    invoices: Iterable[Invoice],
    metered: Iterable[SourceRef],
    customer_of: CustomerResolver = default_customer,
) -> list[NonRecurring]:
    """Add up metered usage and one-off charges from invoices, apart from MRR.

    A line is metered when its ``subscription_item`` is one of ``metered``; it is one-off when
    it bills no subscription item and is not a proration. Draft and void invoices are left
    out. Amounts are before tax, net of line discounts.

    Args:
        invoices: canonical invoices.
        metered: references of metered subscription items (or their prices).
        customer_of: customer key of an invoice's party.

    Returns:
        One row per (month, customer, currency) with any such amount, sorted.
    """
    usage = frozenset(metered)
    sums: dict[tuple[Month, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for invoice in invoices:
        if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            continue
        moment = invoice.issued_at or invoice.created_at
        if moment is None:
            continue
        key = (Month.of(moment), customer_of(invoice.party), invoice.currency)
        for line in invoice.lines:
            net = line.amount.amount - (line.discount.amount if line.discount else 0)
            if line.subscription_item is not None and line.subscription_item in usage:
                sums[key][0] += net
            elif line.subscription_item is None and not line.proration:
                sums[key][1] += net
    return [
        NonRecurring(month, customer, Money(values[0], currency), Money(values[1], currency))
        for (month, customer, currency), values in sorted(sums.items())
        if values[0] or values[1]
    ]


# -- contract value -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractValue:
    """Total and annual value of one accepted contract (quote).

    Attributes:
        quote: the quote.
        customer: the customer key.
        recurring: total of the recurring lines over the whole term.
        one_time: total of the lines without an interval.
        tcv: total contract value counted for ACV (recurring, plus one-time if the policy
            says so).
        years: contract length in years (exact fraction).
        acv: ``tcv / years``, rounded with the policy's rounding.
    """

    quote: SourceRef
    customer: str
    recurring: Money
    one_time: Money
    tcv: Money
    years: Fraction
    acv: Money


def _months_between(start: date, end_inclusive: date) -> Fraction:
    """Length of ``[start, end_inclusive]`` in months: whole months, then days of the next."""
    stop = end_inclusive + timedelta(days=1)
    whole = (stop.year - start.year) * 12 + stop.month - start.month
    if stop.day < start.day:
        whole -= 1
    anchor = Month.of(start).shift(whole)
    day = min(start.day, anchor.days)
    boundary = date(anchor.year, anchor.month, day)
    rest = (stop - boundary).days
    return whole + Fraction(rest, anchor.days)


def contract_value(
    quote: Quote,
    policy: RevenuePolicy | None = None,
    customer_of: CustomerResolver = default_customer,
) -> ContractValue:
    """Compute TCV and ACV of a quote.

    Each line's ``amount`` is its total over its own term (Salesforce CPQ's net total). The
    term runs from the earliest line ``start_date`` to the latest ``end_date`` (inclusive);
    without dates it is ``policy.default_contract_years``.

    Args:
        quote: the quote (normally accepted).
        policy: the revenue choices; default :class:`RevenuePolicy()`.
        customer_of: customer key of the quote's party.

    Returns:
        The contract's value.

    Raises:
        RevenueError: the term is empty or negative.
    """
    chosen = policy or RevenuePolicy()
    recurring = sum((line.amount.amount for line in quote.lines if line.interval), 0)
    one_time = sum((line.amount.amount for line in quote.lines if line.interval is None), 0)
    if not quote.lines:
        recurring = quote.total.amount - (quote.tax.amount if quote.tax else 0)
    starts = [line.start_date for line in quote.lines if line.start_date is not None]
    ends = [line.end_date for line in quote.lines if line.end_date is not None]
    if starts and ends:
        months = _months_between(min(starts), max(ends))
        if months <= 0:
            msg = f"quote {quote.source} has an empty term"
            raise RevenueError(msg)
        years = months / 12
    else:
        years = Fraction(chosen.default_contract_years)
    tcv = recurring + (one_time if chosen.acv_includes_one_time else 0)
    acv = Money(round_fraction(Fraction(tcv) / years, chosen.rounding), quote.currency)
    return ContractValue(
        quote=quote.source,
        customer=customer_of(quote.party),
        recurring=Money(recurring, quote.currency),
        one_time=Money(one_time, quote.currency),
        tcv=Money(tcv, quote.currency),
        years=years,
        acv=acv,
    )


def round_fraction(value: Fraction, rounding: Rounding) -> int:
    """Round an exact rational number of minor units to an integer.

    Args:
        value: the exact amount, in minor units.
        rounding: the rounding mode.

    Returns:
        The rounded integer.
    """
    negative = value < 0
    magnitude = -value if negative else value
    low, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if remainder == 0:
        return -low if negative else low
    if rounding in (Rounding.HALF_EVEN, Rounding.HALF_UP, Rounding.HALF_DOWN):
        twice = 2 * remainder
        if twice != magnitude.denominator:
            up = twice > magnitude.denominator
        else:
            up = rounding is Rounding.HALF_UP or (rounding is Rounding.HALF_EVEN and low % 2 == 1)
    else:
        up = (
            rounding is Rounding.UP
            or (rounding is Rounding.CEILING and not negative)
            or (rounding is Rounding.FLOOR and negative)
        )
    rounded = low + 1 if up else low
    return -rounded if negative else rounded
