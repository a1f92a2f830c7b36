"""Money: an exact amount in a currency's minor unit, and the arithmetic finance needs.

A :class:`Money` is an integer ``amount`` in minor units (cents for EUR, yen for JPY, fils for
KWD) plus an upper-case ISO 4217 ``currency``. There is no float anywhere: amounts come in as
``int``, :class:`~decimal.Decimal` or decimal strings, and a float raises :class:`TypeError`.

Rounding is never implicit. Parsing ``"12.345"`` as EUR, multiplying by ``Decimal("1.5")`` or
rescaling a vendor amount raises :class:`RoundingRequiredError` when the result does not fit
the minor unit exactly, unless the caller names a :class:`Rounding` mode.

Mixing currencies in arithmetic or ordering raises :class:`CurrencyMismatchError`; equality
between different currencies is simply False. Splitting an amount (:meth:`Money.allocate`)
uses the largest-remainder method, so the parts always add up to the whole.

Errors::

    ValueError
    +-- MoneyError                  (ledgerlink.domain.currencies)
        +-- UnknownCurrencyError    the code is not an ISO 4217 currency in the table
        +-- CurrencyMismatchError   two amounts in different currencies were combined
        +-- RoundingRequiredError   the exact result needs rounding and no mode was named
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from ledgerlink.domain.currencies import MoneyError, get_currency, normalize_currency_code

__all__ = [
    "CurrencyMismatchError",
    "Money",
    "Rounding",
    "RoundingRequiredError",
    "json_number",
    "sum_money",
    "zero",
]

# Bounds the work done on hostile input such as Decimal("1E+999999999"): no ledger holds an
# amount with this many digits of minor units.
_MAX_DIGITS = 48
_AMOUNT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_MAX_TEXT_LENGTH = 80


def json_number(value: Decimal) -> int | float:
    """Return ``value`` as the JSON number vendors take, refusing any loss.

    A float is only the carrier of the decimal text at the JSON boundary (``Decimal("1234.50")``
    -> ``1234.5``); it is exact for amounts of up to 15 significant digits, and anything it
    would change is refused rather than rounded.

    Raises:
        MoneyError: ``value`` cannot travel exactly as a JSON number.
    """
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        msg = f"amount {value} cannot be sent exactly as a JSON number"
        raise MoneyError(msg)
    return as_float


class CurrencyMismatchError(MoneyError):
    """Two amounts in different currencies were added, subtracted or compared."""


class RoundingRequiredError(MoneyError):
    """The exact result does not fit the currency's minor unit and no rounding was named."""


class Rounding(enum.StrEnum):
    """How to round a result that falls between two minor units.

    ``HALF_EVEN`` is banker's rounding (ties go to the even unit); ``HALF_UP`` sends ties away
    from zero, as most invoices and tax rules do.
    """

    HALF_EVEN = ROUND_HALF_EVEN
    """Nearest unit; ties to the even unit (0.125 EUR -> 0.12)."""
    HALF_UP = ROUND_HALF_UP
    """Nearest unit; ties away from zero (0.125 EUR -> 0.13, -0.125 -> -0.13)."""
    HALF_DOWN = ROUND_HALF_DOWN
    """Nearest unit; ties toward zero (0.125 EUR -> 0.12)."""
    UP = ROUND_UP
    """Away from zero (0.121 EUR -> 0.13)."""
    DOWN = ROUND_DOWN
    """Toward zero, truncation (0.129 EUR -> 0.12)."""
    CEILING = ROUND_CEILING
    """Toward positive infinity."""
    FLOOR = ROUND_FLOOR
    """Toward negative infinity."""


def _round_magnitude(
    quotient: int, remainder: int, divisor: int, *, negative: bool, rounding: Rounding
) -> int:
    """Round the magnitude ``quotient + remainder / divisor`` (0 < remainder < divisor)."""
    if rounding in (Rounding.HALF_EVEN, Rounding.HALF_UP, Rounding.HALF_DOWN):
        twice = 2 * remainder
        if twice != divisor:
            away = twice > divisor
        else:
            away = rounding is Rounding.HALF_UP or (
                rounding is Rounding.HALF_EVEN and quotient % 2 == 1
            )
    else:
        away = (
            rounding is Rounding.UP
            or (rounding is Rounding.CEILING and not negative)
            or (rounding is Rounding.FLOOR and negative)
        )
    return quotient + 1 if away else quotient


def _check_rounding(rounding: object) -> None:
    if rounding is not None and not isinstance(rounding, Rounding):
        msg = f"rounding must be a Rounding member or None, not {rounding!r}"
        raise TypeError(msg)


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """Return ``(coefficient, exponent)`` with ``value == coefficient * 10**exponent``."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        msg = f"amount must be a finite number, not {value}"
        raise ValueError(msg)  # NaN and infinities carry a letter code as exponent
    coefficient = int("".join(map(str, digits)))
    return (-coefficient if sign else coefficient), exponent


def _scale(coefficient: int, shift: int, rounding: Rounding | None) -> int:
    """Return ``coefficient * 10**shift`` as an int, rounding only when a mode is named.

    Pure integer arithmetic, so the result is exact whatever the decimal context.
    """
    if coefficient == 0:
        return 0
    negative = coefficient < 0
    magnitude = abs(coefficient)
    digit_count = len(str(magnitude))
    if shift >= 0:
        if digit_count + shift > _MAX_DIGITS:
            msg = f"amount has more than {_MAX_DIGITS} digits"
            raise ValueError(msg)
        magnitude *= pow(10, shift)
    else:
        if -shift > digit_count + 1:
            # Far below half a unit: every mode rounds it as it rounds 0.01 of a unit, and
            # this avoids building a huge divisor for inputs such as 1E-999999999.
            magnitude, shift = 1, -2
        divisor: int = pow(10, -shift)
        quotient, remainder = divmod(magnitude, divisor)
        if remainder:
            if rounding is None:
                msg = (
                    "the exact amount is finer than the currency's minor unit; "
                    "name a Rounding mode to round it"
                )
                raise RoundingRequiredError(msg)
            quotient = _round_magnitude(
                quotient, remainder, divisor, negative=negative, rounding=rounding
            )
        magnitude = quotient
    return -magnitude if negative else magnitude


def _require_decimal_or_int(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        msg = f"{what} must be an int or a Decimal, not {type(value).__name__}"
        if isinstance(value, float):
            msg += "; floats are never accepted for money (use a Decimal or a string)"
        raise TypeError(msg)
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of money: integer minor units plus an ISO 4217 currency.

    ``Money(1234, "eur")`` is 12.34 EUR; the currency is stored upper-case. Values are
    immutable and hashable.

    Args:
        amount: the amount in the currency's minor unit (an ``int``; ``bool`` and ``float``
            are refused).
        currency: an ISO 4217 alphabetic code in any letter case.

    Raises:
        TypeError: ``amount`` is not an int.
        UnknownCurrencyError: ``currency`` is not in the currency table.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        amount: object = self.amount
        if isinstance(amount, bool) or not isinstance(amount, int):
            msg = f"Money amount must be an int of minor units, not {type(amount).__name__}"
            if isinstance(amount, float):
                msg += "; floats are never accepted for money"
            raise TypeError(msg)
        if type(amount) is not int:
            object.__setattr__(self, "amount", int(amount))
        code = normalize_currency_code(self.currency)
        if code != self.currency:
            object.__setattr__(self, "currency", code)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def parse(
        cls, text: str, currency: str | None = None, *, rounding: Rounding | None = None
    ) -> Money:
        """Parse a decimal string in major units, exactly.

        Accepts ``"12.34"`` with ``currency`` given, or ``"12.34 EUR"`` as :meth:`format`
        writes it (then ``currency`` is optional and, if given, must agree). The number is
        plain decimal notation: an optional sign, digits, an optional decimal point; no
        exponent, grouping separators or currency symbols.

        Args:
            text: the amount in major units (``"12.34"``, ``"-0.5 KWD"``).
            currency: the currency code, unless ``text`` carries one.
            rounding: how to round when ``text`` has more decimals than the currency's
                exponent; without it such a string raises.

        Returns:
            The amount as Money.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: ``text`` is not a plain decimal amount, or no currency is given.
            CurrencyMismatchError: ``text`` names another currency than ``currency``.
            UnknownCurrencyError: the currency is not in the table.
            RoundingRequiredError: the amount needs rounding and ``rounding`` is None.
        """
        given: object = text
        if not isinstance(given, str):
            msg = f"Money.parse takes a string, not {type(given).__name__}"
            raise TypeError(msg)
        if len(text) > _MAX_TEXT_LENGTH:
            msg = f"amount text longer than {_MAX_TEXT_LENGTH} characters"
            raise ValueError(msg)
        parts = text.split()
        if len(parts) == 2:
            number, written_code = parts
            code = normalize_currency_code(written_code)
            if currency is not None and normalize_currency_code(currency) != code:
                msg = f"{text!r} is in {code}, not {currency.upper()}"
                raise CurrencyMismatchError(msg)
        elif len(parts) == 1 and currency is not None:
            number, code = parts[0], normalize_currency_code(currency)
        elif len(parts) == 1:
            msg = f"no currency for {text!r}: pass currency= or write it as '12.34 EUR'"
            raise ValueError(msg)
        else:
            msg = f"not a money amount: {text!r}"
            raise ValueError(msg)
        if not _AMOUNT_TEXT.fullmatch(number):
            msg = f"not a plain decimal amount: {number!r}"
            raise ValueError(msg)
        return cls.from_decimal(Decimal(number), code, rounding=rounding)

    @classmethod
    def from_decimal(
        cls, value: Decimal | int, currency: str, *, rounding: Rounding | None = None
    ) -> Money:
        """Build Money from an amount in major units (``Decimal("12.34")`` EUR is 1234 cents).

        Args:
            value: the amount in major units; an ``int`` counts whole units.
            currency: an ISO 4217 code in any letter case.
            rounding: how to round a value finer than the minor unit; without it such a
                value raises.

        Returns:
            The amount as Money.

        Raises:
            TypeError: ``value`` is a float or another non-decimal type.
            ValueError: ``value`` is NaN, infinite or absurdly large.
            UnknownCurrencyError: the currency is not in the table.
            RoundingRequiredError: the value needs rounding and ``rounding`` is None.
        """
        _check_rounding(rounding)
        decimal_value = _require_decimal_or_int(value, "amount")
        info = get_currency(currency)
        coefficient, exponent = _decimal_parts(decimal_value)
        return cls(_scale(coefficient, exponent + info.exponent, rounding), info.code)

    @classmethod
    def from_scaled(
        cls, units: int, exponent: int, currency: str, *, rounding: Rounding | None = None
    ) -> Money:
        """Build Money from an integer amount written with a vendor's own number of decimals.

        Some APIs scale a currency differently from ISO 4217: Stripe sends ISK with two
        decimals (``100`` is 1 ISK) where ISO has none. ``from_scaled(100, 2, "ISK")`` is
        1 ISK.

        Args:
            units: the integer amount as the vendor sends it.
            exponent: the vendor's number of decimals for this currency (``units`` means
                ``units / 10**exponent`` major units).
            currency: an ISO 4217 code in any letter case.
            rounding: how to round when the vendor's scale is finer than ISO's and the amount
                is not a whole minor unit; without it such an amount raises.

        Returns:
            The amount as Money in ISO minor units.

        Raises:
            TypeError: ``units`` or ``exponent`` is not an int.
            UnknownCurrencyError: the currency is not in the table.
            RoundingRequiredError: the amount needs rounding and ``rounding`` is None.
        """
        for name, number in (("units", units), ("exponent", exponent)):
            if isinstance(number, bool) or not isinstance(number, int):
                msg = f"{name} must be an int, not {type(number).__name__}"
                raise TypeError(msg)
        _check_rounding(rounding)
        info = get_currency(currency)
        return cls(_scale(units, info.exponent - exponent, rounding), info.code)

    # -- views --------------------------------------------------------------------------

    @property
    def exponent(self) -> int:
        """Number of decimal digits of the currency's minor unit (2 for EUR, 0 for JPY)."""
        return get_currency(self.currency).exponent

    def _amount_text(self) -> str:
        exponent = self.exponent
        sign = "-" if self.amount < 0 else ""
        digits = str(abs(self.amount))
        if exponent == 0:
            return sign + digits
        digits = digits.rjust(exponent + 1, "0")
        return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"

    def to_decimal(self) -> Decimal:
        """Return the amount in major units, exactly, with the currency's decimals.

        Returns:
            ``Decimal("12.34")`` for 1234 EUR cents, ``Decimal("1234")`` for 1234 JPY.
        """
        return Decimal(self._amount_text())

    def to_scaled(self, exponent: int, *, rounding: Rounding | None = None) -> int:
        """Return the amount as an integer with ``exponent`` decimals (a vendor's scale).

        The inverse of :meth:`from_scaled`: ``Money(1, "ISK").to_scaled(2)`` is ``100``.

        Args:
            exponent: the number of decimals the integer should carry.
            rounding: how to round when ``exponent`` is coarser than the currency's and the
                amount does not fit; without it such an amount raises.

        Returns:
            The scaled integer amount.

        Raises:
            RoundingRequiredError: the amount needs rounding and ``rounding`` is None.
        """
        _check_rounding(rounding)
        if isinstance(exponent, bool) or not isinstance(exponent, int):
            msg = f"exponent must be an int, not {type(exponent).__name__}"
            raise TypeError(msg)
        return _scale(self.amount, exponent - self.exponent, rounding)

    def format(self) -> str:
        """Return the amount as ``"12.34 EUR"``; :meth:`parse` reads it back exactly.

        Returns:
            Sign, digits and exactly the currency's number of decimals, a space, the code.
        """
        return f"{self._amount_text()} {self.currency}"

    def __str__(self) -> str:
        return self.format()

    @property
    def is_zero(self) -> bool:
        """Whether the amount is zero."""
        return self.amount == 0

    @property
    def is_negative(self) -> bool:
        """Whether the amount is below zero (a credit, a refund)."""
        return self.amount < 0

    @property
    def is_positive(self) -> bool:
        """Whether the amount is above zero."""
        return self.amount > 0

    def __bool__(self) -> bool:
        return self.amount != 0

    # -- arithmetic ---------------------------------------------------------------------

    def _same_currency(self, other: Money, operation: str) -> None:
        if other.currency != self.currency:
            msg = f"cannot {operation} {self} and {other}: different currencies"
            raise CurrencyMismatchError(msg)

    def __add__(self, other: Money) -> Money:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: int) -> Money:
        given: object = factor
        if isinstance(given, bool) or not isinstance(given, int):
            if isinstance(given, Decimal | float):
                msg = (
                    f"Money * {type(given).__name__} is refused: use "
                    "money.multiply(Decimal(...), rounding=Rounding.HALF_EVEN) for fractional "
                    "factors"
                )
                raise TypeError(msg)
            return NotImplemented
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def multiply(self, factor: int | Decimal, *, rounding: Rounding | None = None) -> Money:
        """Multiply by an int or a Decimal (a quantity, a tax rate, a discount).

        Args:
            factor: the multiplier; floats are refused.
            rounding: how to round a product finer than the minor unit; without it such a
                product raises.

        Returns:
            The product in the same currency.

        Raises:
            TypeError: ``factor`` is a float or another non-decimal type.
            ValueError: ``factor`` is NaN or infinite.
            RoundingRequiredError: the product needs rounding and ``rounding`` is None.
        """
        _check_rounding(rounding)
        coefficient, exponent = _decimal_parts(_require_decimal_or_int(factor, "factor"))
        return Money(_scale(self.amount * coefficient, exponent, rounding), self.currency)

    def allocate(self, ratios: Sequence[int | Decimal]) -> list[Money]:
        """Split the amount into parts proportional to ``ratios`` that add up exactly to it.

        Each part first gets the floor of its exact share (in minor units); the units left
        over go one each to the parts with the largest remainders, earlier parts first on
        ties (the largest-remainder method). Equal ratios therefore give parts that differ by
        at most one minor unit. A negative amount is split as its magnitude, then negated.

        Args:
            ratios: non-negative weights (ints or Decimals), at least one of them positive.

        Returns:
            One Money per ratio, in the same order, summing to this amount.

        Raises:
            TypeError: a ratio is a float or another non-decimal type.
            ValueError: ``ratios`` is empty, has a negative entry or sums to zero.
        """
        if not ratios:
            msg = "allocate needs at least one ratio"
            raise ValueError(msg)
        weights: list[Fraction] = []
        for ratio in ratios:
            decimal_ratio = _require_decimal_or_int(ratio, "ratio")
            if not decimal_ratio.is_finite() or decimal_ratio < 0:
                msg = f"ratios must be finite and non-negative, got {ratio}"
                raise ValueError(msg)
            weights.append(Fraction(decimal_ratio))
        total = sum(weights, Fraction(0))
        if total == 0:
            msg = "ratios must not all be zero"
            raise ValueError(msg)
        magnitude = abs(self.amount)
        shares = [magnitude * weight / total for weight in weights]
        parts = [math.floor(share) for share in shares]
        leftover = magnitude - sum(parts)
        by_remainder = sorted(
            range(len(shares)), key=lambda index: (parts[index] - shares[index], index)
        )
        for index in by_remainder[:leftover]:
            parts[index] += 1
        sign = -1 if self.amount < 0 else 1
        return [Money(sign * part, self.currency) for part in parts]

    def split(self, count: int) -> list[Money]:
        """Split the amount into ``count`` parts differing by at most one minor unit.

        Args:
            count: number of parts, at least 1.

        Returns:
            ``count`` Money values adding up exactly to this amount, larger parts first.

        Raises:
            TypeError: ``count`` is not an int.
            ValueError: ``count`` is below 1.
        """
        if isinstance(count, bool) or not isinstance(count, int):
            msg = f"count must be an int, not {type(count).__name__}"
            raise TypeError(msg)
        if count < 1:
            msg = f"cannot split into {count} parts"
            raise ValueError(msg)
        return self.allocate([1] * count)

    # -- ordering -----------------------------------------------------------------------

    def __lt__(self, other: Money) -> bool:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        given: object = other
        if not isinstance(given, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount >= other.amount

    # -- pydantic -----------------------------------------------------------------------

    @classmethod
    def _from_mapping(cls, data: dict[str, Any]) -> Money:
        return cls(data["amount"], data["currency"])

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Let pydantic models hold Money: from a Money or ``{"amount": int, "currency": str}``.

        The amount must be a JSON integer or a Python int (strict: no float, no string);
        models serialize Money back to the same mapping.
        """
        from_mapping = core_schema.no_info_after_validator_function(
            cls._from_mapping,
            core_schema.typed_dict_schema(
                {
                    "amount": core_schema.typed_dict_field(core_schema.int_schema(strict=True)),
                    "currency": core_schema.typed_dict_field(core_schema.str_schema(strict=True)),
                },
                extra_behavior="forbid",
            ),
        )
        return core_schema.json_or_python_schema(
            json_schema=from_mapping,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_mapping]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda money: {"amount": money.amount, "currency": money.currency}
            ),
        )


def zero(currency: str) -> Money:
    """Return zero in ``currency``.

    Args:
        currency: an ISO 4217 code in any letter case.

    Returns:
        ``Money(0, currency)``.

    Raises:
        UnknownCurrencyError: the currency is not in the table.
    """
    return Money(0, currency)


def sum_money(amounts: Iterable[Money], currency: str) -> Money:
    """Add up amounts that must all be in ``currency``; an empty iterable gives zero.

    Args:
        amounts: the Money values to add.
        currency: the currency every amount must have (and of the result).

    Returns:
        The total in ``currency``.

    Raises:
        TypeError: an item is not Money.
        CurrencyMismatchError: an item is in another currency.
        UnknownCurrencyError: ``currency`` is not in the table.
    """
    total = zero(currency)
    for amount in amounts:
        item: object = amount
        if not isinstance(item, Money):
            msg = f"sum_money adds Money values, not {type(item).__name__}"
            raise TypeError(msg)
        total = total + amount
    return total
