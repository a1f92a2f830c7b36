"""The hub values a customer's records give (what Salesforce is sent back on the Account)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerlink.domain.entities import (
    Interval,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from ledgerlink.domain.money import Money
from ledgerlink.sync import _hub
from ledgerlink.sync._hub import Billing, KeptMrr, hub_values
from ledgerlink.sync._landed import InvoiceFacts, PaymentFacts

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PARTY = SourceRef(system="quickbooks", object="Customer", id="58")


def _payment(payment_id: str, amount: int, day: int, **extra: object) -> Payment:
    return Payment(
        source=SourceRef(system="quickbooks", object="Payment", id=payment_id),
        party=PARTY,
        amount=Money(amount, "USD"),
        paid_at=datetime(2026, 3, day, tzinfo=UTC),
        **extra,
    )


def _last_payment(*payments: Payment | PaymentFacts) -> object:
    billing = Billing(payments=list(payments))
    computed = hub_values("c-1", {}, billing, has_billing_record=True, currency="USD", now=NOW)
    return computed.values["last_payment_date"]


def test_a_zero_payment_applying_a_credit_is_not_the_last_payment() -> None:
    """QuickBooks applies a credit memo to an invoice with a zero Payment: no money moved, so
    the Account's last payment date stays the day money was last received."""
    paid, credit = _payment("131", 12_000, 3), _payment("140", 0, 15)
    assert _last_payment(paid, credit) == "2026-03-03"
    # The same through the facts a long-running plan keeps of each payment.
    assert _last_payment(PaymentFacts.of(paid), PaymentFacts.of(credit)) == "2026-03-03"
    assert _last_payment(paid, _payment("141", 500, 15)) == "2026-03-15"


def test_a_failed_payment_is_not_the_last_payment() -> None:
    """Only succeeded payments count."""
    failed = _payment("150", 9_000, 18, status=PaymentStatus.FAILED)
    assert _last_payment(_payment("131", 12_000, 3), failed) == "2026-03-03"


def _subscription(amount: int, *, started: datetime) -> Subscription:
    return Subscription(
        source=SourceRef(system="stripe", object="subscriptions", id="sub_1"),
        party=SourceRef(system="stripe", object="customers", id="cus_1"),
        status=SubscriptionStatus.ACTIVE,
        currency="USD",
        items=(SubscriptionItem(unit_price=Money(amount, "USD"), interval=Interval.MONTH),),
        started_at=started,
        current_period_start=started,
    )


def _mrr_of(kept: KeptMrr, subscription: Subscription, now: datetime, **billing: Any) -> object:
    values = hub_values(
        "cust-1",
        {},
        Billing(subscriptions=[subscription], **billing),
        has_billing_record=True,
        currency="USD",
        now=now,
        kept_mrr=kept,
    ).values
    return values["mrr"]


def test_a_kept_mrr_is_measured_again_when_a_subscription_or_the_month_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured: list[str] = []
    real = _hub._mrr

    def counting(customer_id: str, subscriptions: Any, now: datetime) -> Any:
        measured.append(now.strftime("%Y-%m"))
        return real(customer_id, subscriptions, now)

    monkeypatch.setattr(_hub, "_mrr", counting)
    kept = KeptMrr()
    start = datetime(2026, 1, 10, tzinfo=UTC)
    basic = _subscription(5000, started=start)
    now = datetime(2026, 3, 5, tzinfo=UTC)
    assert _mrr_of(kept, basic, now) == 50
    # A new invoice or payment of the customer: the same subscription, measured once.
    paid = _payment("py_1", 5000, 4)
    assert _mrr_of(kept, basic, now, payments=[paid]) == 50
    assert measured == ["2026-03"]
    # The subscription's record changed (an upgrade): a new object, measured again.
    upgraded = _subscription(9000, started=start)
    assert _mrr_of(kept, upgraded, now) == 90
    assert measured == ["2026-03", "2026-03"]
    # The same subscription in the next month: measured again.
    assert _mrr_of(kept, upgraded, datetime(2026, 4, 1, tzinfo=UTC)) == 90
    assert measured == ["2026-03", "2026-03", "2026-04"]


def _invoice(system: str, invoice_id: str, status: InvoiceStatus, remaining: int) -> InvoiceFacts:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    obj = "Invoice" if system == "quickbooks" else "invoice"
    party = (
        PARTY if system == "quickbooks" else SourceRef(system="stripe", object="customer", id="c")
    )
    source = SourceRef(system=system, object=obj, id=invoice_id)
    return InvoiceFacts(source, party, status, at, at, Money(remaining, "USD"))


def _open_balance(*invoices: InvoiceFacts) -> object:
    billing = Billing(invoices=list(invoices))
    computed = hub_values("c-1", {}, billing, has_billing_record=True, currency="USD", now=NOW)
    return computed.values["open_balance"]


def test_a_paid_up_customer_owes_nothing_before_its_invoices_reach_the_ledger_as_after() -> None:
    """The open balance of a customer whose Stripe invoices are all paid is 0 before the
    ledger's copies land as after: the Account is not written once more when they land."""
    paid = _invoice("stripe", "in_1", InvoiceStatus.PAID, 0)
    copied = _invoice("quickbooks", "7", InvoiceStatus.PAID, 0)
    assert _open_balance(paid) == 0
    assert _open_balance(paid, copied) == 0
    owing = _invoice("stripe", "in_2", InvoiceStatus.OPEN, 1_250)
    assert _open_balance(paid, owing) == 12.5
    assert _open_balance(_invoice("stripe", "in_3", InvoiceStatus.DRAFT, 900)) is None
    assert _open_balance() is None
