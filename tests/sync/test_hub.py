"""The hub values a customer's records give (what Salesforce is sent back on the Account)."""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerlink.domain.entities import Payment, PaymentStatus, SourceRef
from ledgerlink.domain.money import Money
from ledgerlink.sync._hub import Billing, hub_values
from ledgerlink.sync._landed import PaymentFacts

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
