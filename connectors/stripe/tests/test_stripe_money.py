"""Stripe amounts in zero-, two- and three-decimal currencies convert exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ledgerlink_stripe.money import decimal_places, from_stripe_amount, to_stripe_amount


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [
        (4_900, "usd", Decimal("49.00")),
        (7_350, "JPY", Decimal(7_350)),
        (12_000, "krw", Decimal(12_000)),
        (1_230, "kwd", Decimal("1.230")),
        (-1_000, "eur", Decimal("-10.00")),
    ],
)
def test_stripe_amounts_round_trip(amount: int, currency: str, value: Decimal) -> None:
    """An integer Stripe amount maps to its exact major-unit value and back."""
    assert from_stripe_amount(amount, currency) == value
    assert to_stripe_amount(value, currency) == amount


def test_yen_is_zero_decimal_and_dinar_three() -> None:
    """JPY has no minor unit, KWD three decimals, USD two."""
    assert [decimal_places(c) for c in ("jpy", "kwd", "usd")] == [0, 3, 2]


def test_fractional_yen_is_refused() -> None:
    """A yen value with decimals cannot be sent to Stripe."""
    with pytest.raises(ValueError, match="decimals"):
        to_stripe_amount(Decimal("10.5"), "jpy")


def test_three_decimal_amounts_must_be_multiples_of_ten() -> None:
    """Stripe accepts three-decimal amounts only in steps of 0.010."""
    with pytest.raises(ValueError, match="multiples"):
        to_stripe_amount(Decimal("1.235"), "bhd")


def test_float_amounts_are_refused() -> None:
    """A float is never accepted as a Stripe amount."""
    with pytest.raises(TypeError):
        from_stripe_amount(49.0, "usd")  # type: ignore[arg-type]
