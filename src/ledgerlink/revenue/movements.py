"""Monthly MRR movements that reconcile exactly, per customer, per currency and in total.

For each customer and currency, a month's change in MRR is exactly one kind of movement,
comparing the MRR at the end of the previous month (opening) with the MRR at the end of the
month (closing):

- opening 0, closing > 0: **new** if the customer never had MRR in that currency before,
  otherwise **reactivation**;
- opening > 0, closing 0: **churn** of the whole opening;
- both > 0: **expansion** (closing above opening) or **contraction** (below).

So ``opening + new + expansion - contraction - churn + reactivation == closing`` holds for
every row by construction, and the totals per month and currency are sums of rows, so it holds
for them too (:meth:`MovementTotals.reconciles`). Because MRR splits an annual price over 12
months with :meth:`Money.allocate`, a customer on an unchanged annual plan can move by one minor
unit between months; that shows as a one-unit expansion or contraction, and keeps 12 months of
MRR equal to the price.

With a :class:`~ledgerlink.revenue.policy.RateTable`, each customer's MRR is converted into the
reporting currency before classifying (fixed rates, so no exchange-rate noise).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ledgerlink.domain.money import Money
from ledgerlink.revenue.mrr import (
    Month,
    SubscriptionHistory,
    customer_mrr,
    month_range,
)
from ledgerlink.revenue.policy import RateTable, RevenuePolicy

__all__ = [
    "Movement",
    "MovementKind",
    "MovementReport",
    "MovementTotals",
    "compute_movements",
]


class MovementKind(enum.StrEnum):
    """The kind of a customer's MRR change in a month."""

    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"
    REACTIVATION = "reactivation"


@dataclass(frozen=True, slots=True)
class Movement:
    """One customer's MRR change in one month and currency.

    Attributes:
        month: the month.
        customer: the customer key.
        opening: MRR at the end of the previous month.
        new: MRR of a first-time customer.
        expansion: increase of an existing customer.
        contraction: decrease of a customer who still pays (positive amount).
        churn: MRR lost by a customer who stopped paying (positive amount).
        reactivation: MRR of a returning customer.
        closing: MRR at the end of the month.
    """

    month: Month
    customer: str
    opening: Money
    new: Money
    expansion: Money
    contraction: Money
    churn: Money
    reactivation: Money
    closing: Money

    @property
    def currency(self) -> str:
        """The currency of every amount in the row."""
        return self.opening.currency

    @property
    def kind(self) -> MovementKind | None:
        """The movement's kind, or None when MRR did not change."""
        for kind in MovementKind:
            if getattr(self, kind.value).amount:
                return kind
        return None

    def reconciles(self) -> bool:
        """Whether opening + new + expansion - contraction - churn + reactivation == closing."""
        return (
            self.opening
            + self.new
            + self.expansion
            - self.contraction
            - self.churn
            + self.reactivation
            == self.closing
        )


@dataclass(frozen=True, slots=True)
class MovementTotals:
    """All customers' movements in one month and currency.

    Attributes:
        month: the month.
        currency: the currency.
        opening: total MRR at the end of the previous month.
        new: total new MRR.
        expansion: total expansion.
        contraction: total contraction (positive).
        churn: total churned MRR (positive).
        reactivation: total reactivated MRR.
        closing: total MRR at the end of the month.
        new_customers: customers counted as new.
        churned_customers: customers counted as churned.
        reactivated_customers: customers counted as reactivated.
    """

    month: Month
    currency: str
    opening: Money
    new: Money
    expansion: Money
    contraction: Money
    churn: Money
    reactivation: Money
    closing: Money
    new_customers: int
    churned_customers: int
    reactivated_customers: int

    @property
    def net_new(self) -> Money:
        """Net new MRR: closing - opening."""
        return self.closing - self.opening

    def reconciles(self) -> bool:
        """Whether opening + new + expansion - contraction - churn + reactivation == closing."""
        return (
            self.opening
            + self.new
            + self.expansion
            - self.contraction
            - self.churn
            + self.reactivation
            == self.closing
        )


@dataclass(frozen=True, slots=True)
class MovementReport:
    """Movements for a range of months.

    Attributes:
        months: the months reported, in order.
        rows: per customer and month, the rows with a change (all rows when asked).
        totals: per month and currency, every month of the range (zero rows included for
            each currency seen).
    """

    months: tuple[Month, ...]
    rows: tuple[Movement, ...]
    totals: tuple[MovementTotals, ...]

    def for_customer(self, customer: str) -> list[Movement]:
        """Return the rows of one customer, in month order."""
        return [row for row in self.rows if row.customer == customer]


def _monthly_amounts(
    subscription_histories: list[SubscriptionHistory],
    month: Month,
    policy: RevenuePolicy,
    rates: RateTable | None,
) -> dict[tuple[str, str], int]:
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    for history in subscription_histories:
        counted = customer_mrr(history, month, policy)
        if counted is not None:
            customer, currency, amount = counted
            amounts[customer, currency] += amount
    if rates is None:
        return amounts
    converted: dict[tuple[str, str], int] = defaultdict(int)
    for (customer, currency), amount in amounts.items():
        money = rates.convert(Money(amount, currency), policy.rounding)
        converted[customer, money.currency] += money.amount
    return converted


def _classify(opening: int, closing: int, seen_before: bool) -> tuple[int, int, int, int, int]:
    """Return (new, expansion, contraction, churn, reactivation) for one customer-month."""
    if opening == 0 and closing > 0:
        return (0, 0, 0, 0, closing) if seen_before else (closing, 0, 0, 0, 0)
    if opening > 0 and closing == 0:
        return (0, 0, 0, opening, 0)
    if closing > opening:
        return (0, closing - opening, 0, 0, 0)
    return (0, 0, opening - closing, 0, 0)


def _totals(month: Month, currency: str, sums: list[int]) -> MovementTotals:
    money = [Money(value, currency) for value in sums[:7]]
    return MovementTotals(
        month=month,
        currency=currency,
        opening=money[0],
        new=money[1],
        expansion=money[2],
        contraction=money[3],
        churn=money[4],
        reactivation=money[5],
        closing=money[6],
        new_customers=sums[7],
        churned_customers=sums[8],
        reactivated_customers=sums[9],
    )


def compute_movements(
    subscription_histories: Iterable[SubscriptionHistory],
    first: Month,
    last: Month,
    policy: RevenuePolicy | None = None,
    *,
    rates: RateTable | None = None,
    customer: str | None = None,
    include_unchanged: bool = False,
) -> MovementReport:
    """Compute MRR movements for every month from ``first`` to ``last``.

    MRR is computed from each subscription's first month so that a returning customer is a
    reactivation, not new, even when the earlier months are outside the range.

    Args:
        subscription_histories: the subscriptions.
        first: the first month reported.
        last: the last month reported.
        policy: the MRR choices; default :class:`RevenuePolicy()`.
        rates: convert every customer into ``rates.currency`` before classifying.
        customer: only this customer.
        include_unchanged: also emit rows of customers whose MRR did not change.

    Returns:
        The rows and totals.

    Raises:
        MissingRateError: ``rates`` has no rate for a currency in use.
    """
    chosen = policy or RevenuePolicy()
    selected = [
        h
        for h in subscription_histories
        if customer is None or any(s.customer == customer for s in h.snapshots)
    ]
    begin = min([first, *(h.first_month for h in selected)]).shift(-1)
    previous: dict[tuple[str, str], int] = {}
    ever: set[tuple[str, str]] = set()
    rows: list[Movement] = []
    totals: list[MovementTotals] = []
    currencies: set[str] = set()
    for month in month_range(begin, last):
        current = _monthly_amounts(selected, month, chosen, rates)
        if customer is not None:
            current = {k: v for k, v in current.items() if k[0] == customer}
        sums: dict[str, list[int]] = defaultdict(lambda: [0] * 10)
        for key in sorted(previous.keys() | current.keys()):
            opening, closing = previous.get(key, 0), current.get(key, 0)
            parts = _classify(opening, closing, key in ever)
            if closing > 0:
                ever.add(key)
            if month < first:
                continue
            who, currency = key
            row_sums = sums[currency]
            for position, value in enumerate((opening, *parts, closing)):
                row_sums[position] += value
            row_sums[7] += parts[0] > 0
            row_sums[8] += parts[3] > 0
            row_sums[9] += parts[4] > 0
            if include_unchanged or opening != closing:
                money = [Money(value, currency) for value in (opening, *parts, closing)]
                rows.append(Movement(month, who, *money))
        previous = {k: v for k, v in current.items() if v}
        if month >= first:
            currencies.update(sums)
            totals.extend(_totals(month, c, sums[c]) for c in sorted(currencies))
    return MovementReport(
        months=tuple(month_range(first, last)), rows=tuple(rows), totals=tuple(totals)
    )
