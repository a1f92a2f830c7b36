"""Tests for the ISO 4217 currency table."""

from __future__ import annotations

import pycountry
import pytest

from ledgerlink.domain import (
    CURRENCIES,
    MoneyError,
    UnknownCurrencyError,
    get_currency,
    normalize_currency_code,
)

# ISO 4217 lists these with minor unit "N.A.": they are not money a business invoices in.
NO_MINOR_UNIT = {
    "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX",
}  # fmt: skip
ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
}  # fmt: skip
THREE_DECIMAL = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
FOUR_DECIMAL = {"CLF", "UYW"}


def test_every_active_iso_currency_with_a_minor_unit_is_in_the_table() -> None:
    """Every ISO 4217 code pycountry knows, except those without a minor unit, is accepted."""
    iso_codes = {currency.alpha_3 for currency in pycountry.currencies}
    active = {code for code, currency in CURRENCIES.items() if currency.active}
    assert active == iso_codes - NO_MINOR_UNIT


def test_numeric_codes_match_iso() -> None:
    """Each active currency carries its ISO numeric code."""
    for code, currency in CURRENCIES.items():
        if currency.active:
            iso = pycountry.currencies.get(alpha_3=code)
            assert iso is not None
            assert currency.numeric == int(iso.numeric)


@pytest.mark.parametrize(
    ("codes", "exponent"), [(ZERO_DECIMAL, 0), (THREE_DECIMAL, 3), (FOUR_DECIMAL, 4)]
)
def test_non_two_decimal_currencies_have_their_iso_exponent(codes: set[str], exponent: int) -> None:
    """Zero-, three- and four-decimal currencies carry the ISO exponent."""
    for code in codes:
        assert get_currency(code).exponent == exponent


def test_every_other_currency_has_two_decimals() -> None:
    """Currencies outside the special groups have an exponent of 2."""
    special = ZERO_DECIMAL | THREE_DECIMAL | FOUR_DECIMAL
    for code, currency in CURRENCIES.items():
        if code not in special:
            assert currency.exponent == 2, code


def test_lookup_ignores_letter_case_and_surrounding_space() -> None:
    """Stripe's lower-case codes resolve to the upper-case entry."""
    assert get_currency("eur").code == "EUR"
    assert normalize_currency_code(" jpy ") == "JPY"


@pytest.mark.parametrize("code", ["ABC", "XAU", "XXX", "EURO", "", "eu"])
def test_unknown_or_non_monetary_codes_raise_unknown_currency(code: str) -> None:
    """A code outside the table raises UnknownCurrencyError, which is a ValueError."""
    with pytest.raises(UnknownCurrencyError) as caught:
        get_currency(code)
    assert isinstance(caught.value, MoneyError)
    assert isinstance(caught.value, ValueError)


def test_non_string_code_raises_type_error() -> None:
    """A currency code must be a string."""
    with pytest.raises(TypeError):
        get_currency(978)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["BGN", "HRK", "ANG", "CUC", "SLL", "ZWL"])
def test_recently_withdrawn_currencies_still_load_as_inactive(code: str) -> None:
    """Historical records in a withdrawn currency still resolve, marked inactive."""
    currency = get_currency(code)
    assert currency.exponent == 2
    assert currency.active is False


def test_table_cannot_be_modified() -> None:
    """The shared currency table is read-only."""
    with pytest.raises(TypeError):
        CURRENCIES["EUR"] = CURRENCIES["USD"]  # type: ignore[index]
