"""Pins the public surface of ledgerlink.domain."""

from __future__ import annotations

import ledgerlink.domain as domain

EXPECTED = {
    "CURRENCIES",
    "ENTITY_TYPES",
    "Address",
    "AddressKind",
    "BalanceTransaction",
    "Contact",
    "CountryCode",
    "CreditNote",
    "CreditNoteStatus",
    "Currency",
    "CurrencyCode",
    "CurrencyMismatchError",
    "Entity",
    "ExactDecimal",
    "FeeDetail",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "Money",
    "MoneyError",
    "Party",
    "Payment",
    "PaymentStatus",
    "Payout",
    "PayoutStatus",
    "Product",
    "Quote",
    "QuoteLine",
    "QuoteStatus",
    "Refund",
    "RefundStatus",
    "Rounding",
    "RoundingRequiredError",
    "SourceRef",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionStatus",
    "TaxId",
    "UnknownCurrencyError",
    "UtcDatetime",
    "ensure_utc",
    "get_currency",
    "normalize_currency_code",
    "sum_money",
    "zero",
}


def test_public_names_are_exactly_the_documented_ones() -> None:
    """ledgerlink.domain exports exactly the documented names, and each one resolves."""
    assert set(domain.__all__) == EXPECTED
    for name in domain.__all__:
        assert getattr(domain, name) is not None


def test_error_tree_lets_callers_catch_value_error() -> None:
    """Every money error is a MoneyError and a ValueError."""
    for error in (
        domain.UnknownCurrencyError,
        domain.CurrencyMismatchError,
        domain.RoundingRequiredError,
    ):
        assert issubclass(error, domain.MoneyError)
        assert issubclass(error, ValueError)
