"""Tests for Money: exact parsing, formatting, arithmetic, rounding and allocation."""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ledgerlink.domain import (
    CURRENCIES,
    CurrencyMismatchError,
    Money,
    Rounding,
    RoundingRequiredError,
    UnknownCurrencyError,
    sum_money,
    zero,
)

# No deadline: the machine is shared, and a slow example is not a wrong one. No example
# database: tests must not write into the working tree.
PROPERTY = settings(deadline=None, database=None)

ALL_CODES = sorted(CURRENCIES)
codes = st.sampled_from(ALL_CODES)
amounts = st.integers(min_value=-(10**18), max_value=10**18)
huge_amounts = st.integers(min_value=-(10**30), max_value=10**30)
money = st.builds(Money, amounts, codes)
roundings = st.sampled_from(list(Rounding))


def _same_currency_values(count: int) -> st.SearchStrategy[list[Money]]:
    return codes.flatmap(
        lambda code: st.lists(
            st.builds(Money, amounts, st.just(code)), min_size=count, max_size=count
        )
    )


def _reference_minor_units(value: Decimal, exponent: int, rounding: Rounding) -> int:
    """Round with the decimal module at a precision high enough to be exact."""
    with localcontext() as context:
        context.prec = 400
        quantum = Decimal(1).scaleb(-exponent)
        return int(value.quantize(quantum, rounding=rounding.value).scaleb(exponent))


# -- construction ---------------------------------------------------------------------------


def test_money_stores_minor_units_and_upper_case_currency() -> None:
    """Money(1234, 'eur') is 12.34 EUR with the code stored upper-case."""
    price = Money(1234, "eur")
    assert price.amount == 1234
    assert price.currency == "EUR"
    assert price == Money(1234, "EUR")
    assert hash(price) == hash(Money(1234, "EUR"))


def test_unknown_currency_is_refused() -> None:
    """Building Money in a code outside the table raises UnknownCurrencyError."""
    with pytest.raises(UnknownCurrencyError):
        Money(100, "ABC")
    with pytest.raises(UnknownCurrencyError):
        Money.parse("1.00", "XAU")


@PROPERTY
@given(st.floats(allow_nan=True, allow_infinity=True), codes)
def test_floats_are_refused_everywhere(number: float, code: str) -> None:
    """A float is refused by every constructor and operation with a TypeError."""
    price = Money(100, code)
    with pytest.raises(TypeError):
        Money(number, code)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.parse(number, code)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.from_decimal(number, code)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        price * number  # type: ignore[operator]
    with pytest.raises(TypeError):
        number * price  # type: ignore[operator]
    with pytest.raises(TypeError):
        price.multiply(number, rounding=Rounding.HALF_EVEN)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        price.allocate([number, 1])  # type: ignore[list-item]


@pytest.mark.parametrize("amount", [True, "100", Decimal(100), None])
def test_non_integer_amounts_are_refused(amount: object) -> None:
    """The amount must be an int of minor units; bools, strings and Decimals are refused."""
    with pytest.raises(TypeError):
        Money(amount, "EUR")  # type: ignore[arg-type]


# -- parse and format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("12.34", "EUR", Money(1234, "EUR")),
        ("12.34 EUR", None, Money(1234, "EUR")),
        ("12.34 eur", "EUR", Money(1234, "EUR")),
        ("-0.5", "KWD", Money(-500, "KWD")),
        ("1234", "JPY", Money(1234, "JPY")),
        ("1.2345", "CLF", Money(12345, "CLF")),
        ("+7", "USD", Money(700, "USD")),
        (".5", "USD", Money(50, "USD")),
        ("3.", "USD", Money(300, "USD")),
        ("12.340", "EUR", Money(1234, "EUR")),
        ("  12.34  ", "EUR", Money(1234, "EUR")),
    ],
)
def test_parse_reads_decimal_strings_exactly(text: str, code: str | None, expected: Money) -> None:
    """Decimal strings parse exactly, trailing zeros beyond the exponent included."""
    assert Money.parse(text, code) == expected


@pytest.mark.parametrize(
    "text", ["1e3", "1,000.00", "", "   ", "NaN", "Infinity", "€12", "12.34 EUR extra", "--1", "١٢"]
)
def test_parse_refuses_anything_but_plain_decimals(text: str) -> None:
    """Exponents, separators, symbols, NaN and non-ASCII digits are refused with ValueError."""
    with pytest.raises(ValueError, match=r"amount|currency"):
        Money.parse(text, "EUR")


def test_parse_without_a_currency_is_refused() -> None:
    """A bare number with no currency argument raises ValueError."""
    with pytest.raises(ValueError, match="no currency"):
        Money.parse("12.34")


def test_parse_refuses_a_written_currency_that_contradicts_the_argument() -> None:
    """'12.34 USD' parsed as EUR raises CurrencyMismatchError."""
    with pytest.raises(CurrencyMismatchError):
        Money.parse("12.34 USD", "EUR")


@pytest.mark.parametrize(
    ("text", "code"), [("12.345", "EUR"), ("0.5", "JPY"), ("1.0001", "KWD"), ("0.00001", "CLF")]
)
def test_parse_with_too_many_digits_needs_a_rounding_mode(text: str, code: str) -> None:
    """More significant decimals than the currency has raises RoundingRequiredError."""
    with pytest.raises(RoundingRequiredError):
        Money.parse(text, code)


@pytest.mark.parametrize(
    ("money_value", "text"),
    [
        (Money(1234, "EUR"), "12.34 EUR"),
        (Money(-5, "EUR"), "-0.05 EUR"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(1234, "JPY"), "1234 JPY"),
        (Money(1, "KWD"), "0.001 KWD"),
        (Money(-12345, "CLF"), "-1.2345 CLF"),
    ],
)
def test_format_writes_the_currency_exponent(money_value: Money, text: str) -> None:
    """format() and str() write sign, exactly the currency's decimals, a space and the code."""
    assert money_value.format() == text
    assert str(money_value) == text
    assert f"{money_value}" == text


@PROPERTY
@given(huge_amounts)
def test_parse_format_round_trip_for_every_currency(amount: int) -> None:
    """parse(format(x)) == x, and from_decimal(to_decimal(x)) == x, for every currency."""
    for code in ALL_CODES:
        value = Money(amount, code)
        assert Money.parse(value.format()) == value
        assert Money.parse(str(value.to_decimal()), code) == value
        assert Money.from_decimal(value.to_decimal(), code) == value
        exponent = CURRENCIES[code].exponent
        assert value.to_decimal() == Fraction(amount, 10**exponent)
        assert value.to_decimal().as_tuple().exponent == -exponent


# -- rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "half_even", "half_up"),
    [
        ("0.125", "EUR", "0.12", "0.13"),
        ("0.135", "EUR", "0.14", "0.14"),
        ("-0.125", "EUR", "-0.12", "-0.13"),
        ("2.5", "JPY", "2", "3"),
        ("3.5", "JPY", "4", "4"),
        ("-2.5", "JPY", "-2", "-3"),
        ("1.0005", "KWD", "1.000", "1.001"),
    ],
)
def test_half_even_and_half_up_differ_on_ties(
    text: str, code: str, half_even: str, half_up: str
) -> None:
    """On an exact tie, HALF_EVEN goes to the even unit and HALF_UP away from zero."""
    assert Money.parse(text, code, rounding=Rounding.HALF_EVEN) == Money.parse(half_even, code)
    assert Money.parse(text, code, rounding=Rounding.HALF_UP) == Money.parse(half_up, code)


@PROPERTY
@given(st.integers(min_value=-(10**12), max_value=10**12), codes)
def test_ties_round_to_even_or_away_from_zero(units: int, code: str) -> None:
    """A value exactly half-way between two units rounds as HALF_EVEN and HALF_UP promise."""
    exponent = CURRENCIES[code].exponent
    tie = (Decimal(units) + Decimal("0.5")).scaleb(-exponent)
    lower, upper = units, units + 1
    even = lower if lower % 2 == 0 else upper
    away = upper if tie > 0 else lower
    assert Money.from_decimal(tie, code, rounding=Rounding.HALF_EVEN).amount == even
    assert Money.from_decimal(tie, code, rounding=Rounding.HALF_UP).amount == away
    assert Money.from_decimal(tie, code, rounding=Rounding.HALF_DOWN).amount == lower + upper - away


@PROPERTY
@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=8, min_value=-(10**9), max_value=10**9
    ),
    codes,
    roundings,
)
def test_every_rounding_mode_matches_the_decimal_module(
    value: Decimal, code: str, rounding: Rounding
) -> None:
    """from_decimal rounds exactly as decimal.quantize does with the same mode."""
    exponent = CURRENCIES[code].exponent
    expected = _reference_minor_units(value, exponent, rounding)
    assert Money.from_decimal(value, code, rounding=rounding).amount == expected


@PROPERTY
@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, max_value=10**9), codes)
def test_rounding_is_required_exactly_when_the_value_does_not_fit(
    value: Decimal, code: str
) -> None:
    """Without a mode, a value finer than the minor unit raises and any other value is exact."""
    exponent = CURRENCIES[code].exponent
    with localcontext() as exact:  # the oracle itself must not overflow 28 digits
        exact.prec = 100
        fits = value == value.quantize(Decimal(1).scaleb(-exponent))
    if fits:
        assert Money.from_decimal(value, code).to_decimal() == value
    else:
        with pytest.raises(RoundingRequiredError):
            Money.from_decimal(value, code)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_are_refused(value: Decimal) -> None:
    """NaN and infinities are not amounts."""
    with pytest.raises(ValueError, match="finite"):
        Money.from_decimal(value, "EUR", rounding=Rounding.HALF_EVEN)


def test_tiny_and_huge_exponents_are_handled_without_blowing_up() -> None:
    """Extreme decimal exponents round or fail fast instead of building enormous integers."""
    tiny = Decimal("1E-999999999")
    assert Money.from_decimal(tiny, "EUR", rounding=Rounding.UP) == Money(1, "EUR")
    assert Money.from_decimal(-tiny, "EUR", rounding=Rounding.HALF_UP) == Money(0, "EUR")
    with pytest.raises(ValueError, match="digits"):
        Money.from_decimal(Decimal("1E+999999999"), "EUR")


def test_rounding_must_be_a_rounding_member() -> None:
    """A rounding given as a plain string is refused, so a typo cannot pass silently."""
    with pytest.raises(TypeError):
        Money.parse("0.125", "EUR", rounding="ROUND_HALF_UP")  # type: ignore[arg-type]


# -- vendor scales --------------------------------------------------------------------------


def test_from_scaled_reads_vendor_amounts_in_another_scale() -> None:
    """Stripe's ISK amount 100 (two decimals) is 1 ISK, and to_scaled gives it back."""
    assert Money.from_scaled(100, 2, "isk") == Money(1, "ISK")
    assert Money(1, "ISK").to_scaled(2) == 100
    with pytest.raises(RoundingRequiredError):
        Money.from_scaled(150, 2, "ISK")
    assert Money.from_scaled(150, 2, "ISK", rounding=Rounding.HALF_EVEN) == Money(2, "ISK")


@PROPERTY
@given(money, st.integers(min_value=0, max_value=6))
def test_scaling_to_a_finer_scale_and_back_is_lossless(value: Money, extra: int) -> None:
    """to_scaled at a finer exponent then from_scaled returns the same Money."""
    exponent = value.exponent + extra
    assert Money.from_scaled(value.to_scaled(exponent), exponent, value.currency) == value


# -- arithmetic -----------------------------------------------------------------------------


@PROPERTY
@given(_same_currency_values(3))
def test_addition_is_associative_and_commutative(values: list[Money]) -> None:
    """Within one currency, (a+b)+c == a+(b+c) and a+b == b+a."""
    a, b, c = values
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b).amount == a.amount + b.amount


@PROPERTY
@given(_same_currency_values(2))
def test_subtraction_inverts_addition(values: list[Money]) -> None:
    """(a+b)-b == a, a-a is zero and negation is its own inverse."""
    a, b = values
    assert (a + b) - b == a
    assert a - a == zero(a.currency)
    negated = -a
    assert -negated == a
    assert a + (-b) == a - b
    assert abs(a) == (a if a.amount >= 0 else -a)


@PROPERTY
@given(codes.flatmap(lambda code: st.lists(st.builds(Money, amounts, st.just(code)))))
def test_sum_money_equals_the_sum_in_any_order(values: list[Money]) -> None:
    """sum_money adds all amounts, gives zero for none and ignores order."""
    code = values[0].currency if values else "EUR"
    total = sum_money(values, code)
    assert total.amount == sum(value.amount for value in values)
    assert total.currency == code
    assert sum_money(reversed(values), code) == total


@PROPERTY
@given(money, money)
def test_mixing_currencies_raises(a: Money, b: Money) -> None:
    """Adding, subtracting, ordering or summing two currencies raises CurrencyMismatchError."""
    assume(a.currency != b.currency)
    with pytest.raises(CurrencyMismatchError):
        a + b
    with pytest.raises(CurrencyMismatchError):
        a - b
    with pytest.raises(CurrencyMismatchError):
        a < b  # noqa: B015 - the comparison itself must raise
    with pytest.raises(CurrencyMismatchError):
        a >= b  # noqa: B015 - the comparison itself must raise
    with pytest.raises(CurrencyMismatchError):
        sum_money([a, b], a.currency)
    assert a != b


def test_ordering_within_a_currency_follows_the_amount() -> None:
    """Amounts in one currency compare by value, so they can be sorted and maxed."""
    values = [Money(300, "EUR"), Money(-1, "EUR"), Money(20, "EUR")]
    assert sorted(values) == [Money(-1, "EUR"), Money(20, "EUR"), Money(300, "EUR")]
    assert max(values) == Money(300, "EUR")
    assert Money(1, "EUR") <= Money(1, "EUR")


def test_money_does_not_mix_with_plain_numbers() -> None:
    """Adding or comparing Money with a bare int raises TypeError instead of guessing."""
    with pytest.raises(TypeError):
        Money(1, "EUR") + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(1, "EUR") < 2  # type: ignore[operator]  # noqa: B015 - must raise
    with pytest.raises(TypeError):
        sum_money([1], "EUR")  # type: ignore[list-item]


@PROPERTY
@given(money, st.integers(min_value=-(10**6), max_value=10**6))
def test_multiplying_by_an_int_is_exact(value: Money, factor: int) -> None:
    """Money * int and int * Money multiply the minor units exactly."""
    assert (value * factor).amount == value.amount * factor
    assert factor * value == value * factor
    assert value.multiply(factor) == value * factor


@PROPERTY
@given(
    money,
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-1000, max_value=1000),
    roundings,
)
def test_multiplying_by_a_decimal_rounds_as_named(
    value: Money, factor: Decimal, rounding: Rounding
) -> None:
    """multiply(Decimal, rounding) equals the exact product rounded with that mode."""
    with localcontext() as context:
        context.prec = 400
        exact = Decimal(value.amount) * factor
    expected = _reference_minor_units(exact, 0, rounding)
    assert value.multiply(factor, rounding=rounding) == Money(expected, value.currency)


def test_multiplying_by_a_decimal_needs_rounding_only_when_inexact() -> None:
    """An exact Decimal product needs no mode; an inexact one raises RoundingRequiredError."""
    assert Money(1000, "EUR").multiply(Decimal("0.19")) == Money(190, "EUR")
    with pytest.raises(RoundingRequiredError):
        Money(333, "EUR").multiply(Decimal("0.19"))
    assert Money(333, "EUR").multiply(Decimal("0.19"), rounding=Rounding.HALF_UP) == Money(
        63, "EUR"
    )
    with pytest.raises(TypeError, match="multiply"):
        Money(333, "EUR") * Decimal("0.19")  # type: ignore[operator]


def test_zero_is_falsy_and_signs_are_reported() -> None:
    """Zero Money is falsy; is_zero, is_negative and is_positive tell the sign."""
    assert not zero("EUR")
    assert zero("jpy") == Money(0, "JPY")
    assert Money(-1, "EUR").is_negative
    assert Money(1, "EUR").is_positive
    assert zero("EUR").is_zero


# -- allocation -----------------------------------------------------------------------------

ratios = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20).filter(
    lambda values: sum(values) > 0
)


@PROPERTY
@given(money, ratios)
def test_allocation_adds_up_exactly(value: Money, weights: list[int]) -> None:
    """The parts always sum to the whole, one per ratio, each within a unit of its share."""
    parts = value.allocate(weights)
    assert len(parts) == len(weights)
    assert sum_money(parts, value.currency) == value
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        share = Fraction(value.amount * weight, total)
        assert abs(part.amount - share) < 1
        if weight == 0:
            assert part.is_zero


@PROPERTY
@given(money, st.integers(min_value=1, max_value=50))
def test_equal_ratios_give_parts_within_one_minor_unit(value: Money, count: int) -> None:
    """Splitting into equal parts gives amounts that differ by at most one minor unit."""
    parts = value.split(count)
    assert sum_money(parts, value.currency) == value
    part_amounts = [part.amount for part in parts]
    assert max(part_amounts) - min(part_amounts) <= 1
    assert value.allocate([Decimal("0.5")] * count) == parts


def test_allocation_with_decimal_ratios_uses_largest_remainder() -> None:
    """10.00 EUR split 1:1:1 gives 3.34 + 3.33 + 3.33, the leftover cent to the first part."""
    assert Money(1000, "EUR").split(3) == [Money(334, "EUR"), Money(333, "EUR"), Money(333, "EUR")]
    assert Money(-1000, "EUR").split(3) == [
        Money(-334, "EUR"),
        Money(-333, "EUR"),
        Money(-333, "EUR"),
    ]
    assert Money(5, "EUR").allocate([0, Decimal("0.5"), 1]) == [
        Money(0, "EUR"),
        Money(2, "EUR"),
        Money(3, "EUR"),
    ]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1], [Decimal("NaN")]])
def test_allocation_refuses_meaningless_ratios(weights: list[int | Decimal]) -> None:
    """Empty, all-zero, negative or NaN ratios raise ValueError."""
    with pytest.raises(ValueError, match="ratio"):
        Money(100, "EUR").allocate(weights)


# -- pydantic integration -------------------------------------------------------------------


class _Priced(BaseModel):
    price: Money


def test_models_accept_money_or_its_mapping_and_dump_the_mapping() -> None:
    """A pydantic field of type Money takes Money or {amount, currency} and dumps the mapping."""
    from_mapping = _Priced.model_validate({"price": {"amount": 1234, "currency": "eur"}})
    assert from_mapping.price == Money(1234, "EUR")
    assert _Priced(price=Money(1234, "EUR")) == from_mapping
    dumped = from_mapping.model_dump_json()
    assert dumped == '{"price":{"amount":1234,"currency":"EUR"}}'
    assert _Priced.model_validate_json(dumped) == from_mapping


@pytest.mark.parametrize(
    "payload",
    [
        '{"price": {"amount": 12.34, "currency": "EUR"}}',
        '{"price": {"amount": "1234", "currency": "EUR"}}',
        '{"price": {"amount": 1234, "currency": "ABC"}}',
        '{"price": {"amount": 1234}}',
        '{"price": {"amount": 1234, "currency": "EUR", "extra": 1}}',
    ],
)
def test_models_refuse_float_string_or_unknown_money(payload: str) -> None:
    """A JSON float or string amount, an unknown currency or a malformed mapping is invalid."""
    with pytest.raises(ValidationError):
        _Priced.model_validate_json(payload)


def test_json_number_carries_the_exact_amount_or_refuses() -> None:
    """Amounts leave for vendors as JSON numbers that read back exactly; a lossy one is refused."""
    from decimal import Decimal

    from ledgerlink.domain.currencies import MoneyError
    from ledgerlink.domain.money import json_number

    assert json_number(Decimal("1234.50")) == 1234.5
    assert json_number(Decimal("120.00")) == 120
    assert isinstance(json_number(Decimal("120.00")), int)
    assert json_number(Decimal("0.1")) == 0.1
    with pytest.raises(MoneyError):
        json_number(Decimal("12345678901234567.89"))
