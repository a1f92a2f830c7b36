"""Bookings, billings, cash and recognised revenue, side by side per month.

- **Bookings**: accepted quotes, in the month of acceptance, at their total net of tax.
- **Billings**: finalised invoices (not draft, not void) in the month of issue, net of tax and
  of line and invoice discounts; issued credit notes reduce billings in their month of issue.
- **Cash**: succeeded payments in the month paid, less succeeded refunds in the month refunded,
  less disputed amounts in the month the funds were withdrawn (and back when a dispute is won).
- **Recognised revenue**: each invoice line straight-line over its service period, by day:
  the line's net amount is split over the months of ``[period_start, period_end)`` in
  proportion to the days each month holds, with :meth:`Money.allocate`, so the parts add up
  exactly to the line. A line without a service period is recognised when the invoice is
  issued. Credit notes are recognised negatively the same way.

An invoice-level discount is spread over the invoice's lines in proportion to their net
amounts (again with ``allocate``), so billings and recognised revenue of an invoice are equal
over time. Disputes have no canonical entity yet: :class:`Dispute` is the input the mapping
layer fills from Stripe's dispute objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ledgerlink.domain.entities import (
    CreditNote,
    CreditNoteStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Quote,
    QuoteStatus,
    Refund,
    RefundStatus,
    SourceRef,
    ensure_utc,
)
from ledgerlink.domain.money import Money
from ledgerlink.revenue.mrr import CustomerResolver, Month, default_customer, month_range

__all__ = [
    "Dispute",
    "RevenueRow",
    "invoice_line_amounts",
    "recognise",
    "revenue_by_month",
]


@dataclass(frozen=True, slots=True)
class Dispute:
    """A payment disputed by the customer's bank (Stripe ``dispute``).

    Attributes:
        payment: the disputed payment.
        amount: the amount withdrawn from the balance (positive).
        withdrawn_at: when the funds were withdrawn.
        reinstated_at: when they came back because the dispute was won, or None.
    """

    payment: SourceRef | None
    amount: Money
    withdrawn_at: datetime
    reinstated_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "withdrawn_at", ensure_utc(self.withdrawn_at))
        if self.reinstated_at is not None:
            object.__setattr__(self, "reinstated_at", ensure_utc(self.reinstated_at))


def recognise(amount: Money, start: datetime, end: datetime) -> dict[Month, Money]:
    """Spread ``amount`` straight-line by day over ``[start, end)``, bucketed by month.

    Days are UTC calendar days from ``start``'s date up to ``end``'s date (excluded); a
    period shorter than a day is one day.

    Args:
        amount: the amount to recognise (negative for a credit).
        start: first instant of the service period.
        end: end of the service period (excluded).

    Returns:
        The amount per month, summing exactly to ``amount``.
    """
    first_day = ensure_utc(start).date()
    last_day = max(ensure_utc(end).date() - timedelta(days=1), first_day)
    months = month_range(Month.of(first_day), Month.of(last_day))
    weights: list[int] = []
    for month in months:
        month_first = max(first_day, month.start.date())
        month_last = min(last_day, month.end.date() - timedelta(days=1))
        weights.append((month_last - month_first).days + 1)
    return dict(zip(months, amount.allocate(weights), strict=True))


def invoice_line_amounts(lines: tuple[InvoiceLine, ...], discount: Money | None) -> list[Money]:
    """Return each line's net amount: line amount less line discount and its share of ``discount``.

    Args:
        lines: the document's lines.
        discount: the document-level discount, or None.

    Returns:
        One net amount per line, in order.
    """
    nets = [line.amount - line.discount if line.discount else line.amount for line in lines]
    if discount is None or discount.is_zero or not lines:
        return nets
    weights = [max(net.amount, 0) for net in nets]
    if not any(weights):
        weights = [1] * len(nets)
    return [net - share for net, share in zip(nets, discount.allocate(weights), strict=True)]


@dataclass(frozen=True, slots=True)
class RevenueRow:
    """Bookings, billings, cash and recognised revenue of one month in one currency.

    Attributes:
        month: the month.
        currency: the currency.
        bookings: accepted quotes' totals net of tax.
        billings: invoices net of tax and discounts, less credit notes.
        cash: payments received less refunds and disputes.
        recognised: revenue earned in the month.
    """

    month: Month
    currency: str
    bookings: Money
    billings: Money
    cash: Money
    recognised: Money


_BOOKINGS, _BILLINGS, _CASH, _RECOGNISED = range(4)


def _document_revenue(
    add: _Adder, lines: tuple[InvoiceLine, ...], nets: list[Money], issued: datetime, sign: int
) -> None:
    for line, net in zip(lines, nets, strict=True):
        if line.period_start is not None and line.period_end is not None:
            for month, part in recognise(net, line.period_start, line.period_end).items():
                add(month, part * sign, _RECOGNISED)
        else:
            add(Month.of(issued), net * sign, _RECOGNISED)


class _Adder:
    """Accumulates amounts per (month, currency, measure) for a customer filter."""

    def __init__(self) -> None:
        self.sums: dict[tuple[Month, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def __call__(self, month: Month, amount: Money, measure: int) -> None:
        self.sums[month, amount.currency][measure] += amount.amount


_Wanted = Callable[[SourceRef | None], bool]


def _add_bookings(add: _Adder, quotes: Iterable[Quote], wanted: _Wanted) -> None:
    for quote in quotes:
        if quote.status is QuoteStatus.ACCEPTED and quote.accepted_at and wanted(quote.party):
            booked = quote.total - quote.tax if quote.tax else quote.total
            add(Month.of(quote.accepted_at), booked, _BOOKINGS)


def _add_documents(add: _Adder, documents: Iterable[Invoice | CreditNote], wanted: _Wanted) -> None:
    for document in documents:
        issued = document.issued_at or document.created_at
        if isinstance(document, Invoice):
            skipped = document.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID)
            discount, sign = document.discount, 1
        else:
            skipped = document.status is CreditNoteStatus.VOID
            discount, sign = None, -1
        if skipped or issued is None or not wanted(document.party):
            continue
        if document.lines:
            nets = invoice_line_amounts(document.lines, discount)
            _document_revenue(add, document.lines, nets, issued, sign)
        else:
            nets = [document.total - document.tax if document.tax else document.total]
            add(Month.of(issued), nets[0] * sign, _RECOGNISED)
        for net in nets:
            add(Month.of(issued), net * sign, _BILLINGS)


def _add_cash(
    add: _Adder,
    payments: Iterable[Payment],
    refunds: Iterable[Refund],
    disputes: Iterable[Dispute],
    wanted: _Wanted,
) -> None:
    party_of_payment: dict[SourceRef, SourceRef | None] = {}
    for payment in payments:
        party_of_payment[payment.source] = payment.party
        paid = payment.paid_at or payment.created_at
        if payment.status is PaymentStatus.SUCCEEDED and paid and wanted(payment.party):
            add(Month.of(paid), payment.amount, _CASH)
    for refund in refunds:
        party = party_of_payment.get(refund.payment) if refund.payment else None
        refunded = refund.refunded_at or refund.created_at
        if refund.status is RefundStatus.SUCCEEDED and refunded and wanted(party):
            add(Month.of(refunded), -refund.amount, _CASH)
    for dispute in disputes:
        party = party_of_payment.get(dispute.payment) if dispute.payment else None
        if wanted(party):
            add(Month.of(dispute.withdrawn_at), -dispute.amount, _CASH)
            if dispute.reinstated_at is not None:
                add(Month.of(dispute.reinstated_at), dispute.amount, _CASH)


def revenue_by_month(
    first: Month,
    last: Month,
    *,
    quotes: Iterable[Quote] = (),
    invoices: Iterable[Invoice] = (),
    credit_notes: Iterable[CreditNote] = (),
    payments: Iterable[Payment] = (),
    refunds: Iterable[Refund] = (),
    disputes: Iterable[Dispute] = (),
    customer: str | None = None,
    customer_of: CustomerResolver = default_customer,
) -> list[RevenueRow]:
    """Put bookings, billings, cash and recognised revenue side by side per month.

    Args:
        first: first month reported.
        last: last month reported.
        quotes: quotes (only accepted ones with ``accepted_at`` count).
        invoices: invoices.
        credit_notes: credit notes.
        payments: payments; they also tell refunds and disputes which customer they concern.
        refunds: refunds.
        disputes: disputes.
        customer: only this customer's records.
        customer_of: customer key of a record's party.

    Returns:
        One row per month and currency seen, months in order, zero rows included.
    """
    add = _Adder()

    def wanted(party: SourceRef | None) -> bool:
        return customer is None or customer_of(party) == customer

    _add_bookings(add, quotes, wanted)
    _add_documents(add, invoices, wanted)
    _add_documents(add, credit_notes, wanted)
    _add_cash(add, payments, refunds, disputes, wanted)
    currencies = sorted({currency for (_month, currency) in add.sums})
    rows: list[RevenueRow] = []
    for month in month_range(first, last):
        for currency in currencies:
            sums = add.sums.get((month, currency), [0, 0, 0, 0])
            bookings, billings, cash, recognised = (Money(v, currency) for v in sums)
            rows.append(RevenueRow(month, currency, bookings, billings, cash, recognised))
    return rows
