"""The values the hub computes for a customer and writes back (``hub.<name>`` in ``writes``).

Each is computed from what landed and was mapped, per golden customer:

* ``salesforce_account_id``, ``stripe_customer_id``, ``quickbooks_customer_id``: the customer's
  linked record in that system (its primary one when it has several, which the planner chooses:
  the record already holding the hub's ids, else the one the golden record took its name or
  e-mail from, else the first id in text order), or a record the hub created for it.
* ``billing_status``: from the customer's subscriptions: ``past_due`` when one is past due or
  unpaid, else ``active`` when one is active or trialing, else ``canceled`` when it had any,
  else ``none``. Only for customers with a billing-system record.
* ``last_invoice_date``: the day of the latest issued (not draft, not void) invoice in any system.
* ``last_payment_date``: the day of the latest succeeded payment in any system (a zero
  payment, QuickBooks' way of applying a credit to an invoice, is not one).
* ``open_balance``: what the customer owes in the ledger (the unpaid balance of its QuickBooks
  invoices); a customer without ledger invoices gets the remaining amount of its open Stripe
  invoices (0 when its invoices are all paid, as the ledger will say once they reach it). A
  currency in which nothing is owed does not count as one of several.
* ``mrr`` and ``arr``: the customer's MRR of the current month as ``ledgerlink report mrr``
  counts it (:func:`ledgerlink.revenue.measure_mrr`), and 12 x MRR.

Amounts are written in major units as JSON numbers; a customer whose amounts are in several
currencies gets the one of its Salesforce Account's currency, or none (a note says why).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ledgerlink.domain.entities import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money, json_number
from ledgerlink.revenue import Month, RevenueError, arr, histories, measure_mrr, snapshot
from ledgerlink.sync._landed import InvoiceFacts, PaymentFacts

__all__ = [
    "BILLING_SYSTEMS",
    "LEDGER_SYSTEMS",
    "Billing",
    "HubValues",
    "KeptMrr",
    "group_billing",
    "hub_values",
    "money_value",
]

BILLING_SYSTEMS = ("stripe",)
"""Systems whose customer record means the customer is billed (billing status, MRR)."""
LEDGER_SYSTEMS = ("quickbooks",)
"""Systems whose invoices are the ledger's receivables (open balance)."""
_ISSUED = {InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE}
_PAST_DUE = {SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID}
_ACTIVE = {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING}
_OPEN_OR_PAID = {InvoiceStatus.OPEN, InvoiceStatus.PAID}


@dataclass
class Billing:
    """Quote-to-cash records of one customer, from every system."""

    invoices: list[Invoice | InvoiceFacts] = field(default_factory=list)
    payments: list[Payment | PaymentFacts] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)


@dataclass(frozen=True)
class HubValues:
    """Computed values of one customer (None: nothing to write) and notes for people."""

    values: Mapping[str, Any]
    notes: tuple[str, ...] = ()


def money_value(amount: Money) -> int | float:
    """Return ``amount`` in major units as a JSON number with exactly the currency's digits.

    Vendors take amounts as JSON numbers (see :func:`~ledgerlink.domain.money.json_number`:
    exact, or refused).
    """
    return json_number(amount.to_decimal())


def _day(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    return (moment.date() if isinstance(moment, datetime) else moment).isoformat()


def _latest_day(moments: Iterable[datetime | None]) -> str | None:
    known = [m for m in moments if m is not None]
    return _day(max(known)) if known else None


def _billing_status(subscriptions: Sequence[Subscription]) -> str:
    statuses = {s.status for s in subscriptions}
    if statuses & _PAST_DUE:
        return "past_due"
    if statuses & _ACTIVE:
        return "active"
    return "canceled" if statuses else "none"


def _in_currency(
    totals: Mapping[str, Money], preferred: str | None, what: str, notes: list[str]
) -> Money | None:
    if not totals:
        return None
    if len(totals) == 1:
        return next(iter(totals.values()))
    if preferred is not None and preferred in totals:
        return totals[preferred]
    notes.append(f"{what} is in several currencies ({', '.join(sorted(totals))}); not written")
    return None


def _add(totals: dict[str, Money], amount: Money) -> None:
    current = totals.get(amount.currency)
    totals[amount.currency] = amount if current is None else current + amount


def _open_balance(invoices: Sequence[Invoice | InvoiceFacts]) -> dict[str, Money]:
    ledger = [i for i in invoices if i.source.system in LEDGER_SYSTEMS]
    # Without the ledger's: the open invoices' remaining amounts, and the paid ones' (nothing)
    # for their currency, so a paid-up customer owes 0 before its invoices reach the ledger as
    # after (not nothing, then 0 once the ledger's paid copies land: a second write).
    chosen = ledger or [i for i in invoices if i.status in _OPEN_OR_PAID]
    totals: dict[str, Money] = {}
    for invoice in chosen:
        if invoice.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
            continue
        if invoice.amount_remaining is not None:
            _add(totals, invoice.amount_remaining)
    # Nothing owed in a currency is no amount in it: only currencies with a balance compete for
    # the one field (a customer paid up in EUR and owing USD owes USD; paid up in all owes 0).
    owed = {currency: amount for currency, amount in totals.items() if not amount.is_zero}
    return owed or dict(sorted(totals.items())[:1])


def _mrr(
    customer_id: str, subscriptions: Sequence[Subscription], now: datetime
) -> dict[str, Money]:
    snapshots = []
    for subscription in subscriptions:
        try:
            snapshots.append(snapshot(subscription, customer=customer_id))
        except RevenueError:
            continue  # a subscription without any time cannot be placed in a month
    measured = measure_mrr(histories(snapshots), Month.of(now))
    return {currency: amount for (_c, currency), amount in measured.by_customer().items()}


class KeptMrr:
    """Each customer's MRR by currency as last measured, kept while its subscriptions are the
    same objects in the same month.

    A long-running planner keeps one mapped entity per landed subscription until the record
    changes (:class:`~ledgerlink.sync._landed.MappedRecords`), so the objects tell whether the
    subscriptions moved: a customer whose invoices or payments alone changed (a new invoice,
    the ledger's QuickBooks copy of it landing back) has its hub values computed again without
    measuring its MRR again. The subscriptions are held here, so no other object can take
    their identity while they are kept.
    """

    def __init__(self) -> None:
        self._kept: dict[str, tuple[tuple[Subscription, ...], Month, dict[str, Money]]] = {}

    def __call__(
        self, customer_id: str, subscriptions: Sequence[Subscription], now: datetime
    ) -> dict[str, Money]:
        """The customer's MRR by currency in ``now``'s month (see :func:`_mrr`)."""
        month = Month.of(now)
        mine = tuple(subscriptions)
        kept = self._kept.get(customer_id)
        if (
            kept is not None
            and kept[1] == month
            and len(kept[0]) == len(mine)
            and all(a is b for a, b in zip(kept[0], mine, strict=True))
        ):
            return kept[2]
        measured = _mrr(customer_id, mine, now)
        self._kept[customer_id] = (mine, month, measured)
        return measured


def hub_values(
    customer_id: str,
    ids: Mapping[str, str | None],
    billing: Billing,
    *,
    has_billing_record: bool,
    currency: str | None,
    now: datetime,
    kept_mrr: KeptMrr | None = None,
) -> HubValues:
    """Compute the ``hub.*`` values of one customer.

    Args:
        customer_id: the golden customer.
        ids: ``salesforce_account_id``, ``stripe_customer_id``, ``quickbooks_customer_id``.
        billing: the customer's invoices, payments and subscriptions.
        has_billing_record: the customer has a record in a billing system (Stripe).
        currency: the currency of the customer's CRM account, to choose among several.
        now: the time of the plan (MRR of its month).
        kept_mrr: the MRR measured before, kept by a long-running planner (None measures
            it).

    Returns:
        The values (None where there is nothing to say) and notes.
    """
    notes: list[str] = []
    issued = [i for i in billing.invoices if i.status in _ISSUED]
    # A zero payment moves no money: QuickBooks records a credit applied to an invoice so.
    paid = [
        p for p in billing.payments if p.status is PaymentStatus.SUCCEEDED and not p.amount.is_zero
    ]
    values: dict[str, Any] = dict(ids)
    values["last_invoice_date"] = _latest_day(i.issued_at or i.created_at for i in issued)
    values["last_payment_date"] = _latest_day(p.paid_at or p.created_at for p in paid)
    balance = _in_currency(_open_balance(billing.invoices), currency, "open balance", notes)
    values["open_balance"] = None if balance is None else money_value(balance)
    if has_billing_record:
        values["billing_status"] = _billing_status(billing.subscriptions)
        totals = (kept_mrr or _mrr)(customer_id, billing.subscriptions, now)
        if not totals:
            values["mrr"] = values["arr"] = 0
        else:
            mrr = _in_currency(totals, currency, "MRR", notes)
            values["mrr"] = None if mrr is None else money_value(mrr)
            values["arr"] = None if mrr is None else money_value(arr(mrr))
    return HubValues(values=values, notes=tuple(notes))


def group_billing(
    entities: Iterable[Invoice | InvoiceFacts | Payment | PaymentFacts | Subscription],
    customer_of: Mapping[tuple[str, str, str], str],
) -> dict[str, Billing]:
    """Group billing entities by the golden customer of their party."""
    grouped: dict[str, Billing] = defaultdict(Billing)
    for entity in entities:
        party = entity.party
        if party is None:
            continue
        customer = customer_of.get((party.system, party.object, party.id))
        if customer is None:
            continue
        if isinstance(entity, Invoice | InvoiceFacts):
            grouped[customer].invoices.append(entity)
        elif isinstance(entity, Payment | PaymentFacts):
            grouped[customer].payments.append(entity)
        else:
            grouped[customer].subscriptions.append(entity)
    return dict(grouped)
