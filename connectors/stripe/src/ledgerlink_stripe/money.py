"""Stripe's amount conventions: which currencies have no minor unit, or three decimals.

Stripe amounts are integers in the currency's smallest unit: cents for USD, whole yen for JPY
(zero-decimal), and for the three-decimal currencies (BHD, JOD, KWD, OMR, TND) thousandths,
of which Stripe only accepts multiples of ten. The domain ``Money`` type keeps integer minor
units plus the ISO code; these helpers say how Stripe's integer relates to ISO 4217's minor
unit so no amount is ever scaled by a float.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "decimal_places",
    "from_stripe_amount",
    "to_stripe_amount",
]

ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def decimal_places(currency: str) -> int:
    """Return how many decimals a Stripe amount in ``currency`` carries (0, 2 or 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def from_stripe_amount(amount: int, currency: str) -> Decimal:
    """Return the major-unit value of a Stripe ``amount`` (exact, no float).

    Raises:
        TypeError: ``amount`` is not an integer.
    """
    if not isinstance(amount, int) or isinstance(amount, bool):
        msg = "Stripe amounts are integers in the smallest currency unit"
        raise TypeError(msg)
    return Decimal(amount).scaleb(-decimal_places(currency))


def to_stripe_amount(value: Decimal, currency: str) -> int:
    """Return the Stripe integer for a major-unit ``value``.

    Raises:
        ValueError: ``value`` has more decimals than the currency allows, or a
            three-decimal amount is not a multiple of ten minor units as Stripe requires.
    """
    places = decimal_places(currency)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        msg = f"{value} has more than {places} decimals for {currency.upper()}"
        raise ValueError(msg)
    amount = int(scaled)
    if places == 3 and amount % 10:
        msg = f"Stripe needs {currency.upper()} amounts in multiples of 0.010"
        raise ValueError(msg)
    return amount
