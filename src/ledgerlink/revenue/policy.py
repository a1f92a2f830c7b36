"""Revenue policy: the explicit choices behind MRR, and the rate table for conversions.

MRR is not one number that every tool agrees on. Tools differ on discounts, cancellation
timing, past-due subscriptions and tax. :class:`RevenuePolicy` names each choice, with a
default that is documented below and in ``docs/revenue.md``; :class:`RateTable` is the only way
amounts change currency (a missing rate raises :class:`MissingRateError`, it is never 1).

How common tools decide (from their public documentation):

- Stripe Billing analytics: counts ``active`` and ``past_due`` subscriptions, excludes trials,
  tax, metered prices and ``unpaid`` subscriptions; only ``forever`` coupons reduce MRR; a
  subscription set to ``cancel_at_period_end`` leaves MRR when the cancellation is requested.
- ChartMogul: past-due subscriptions keep contributing until cancelled (default; optional
  auto-churn after N days); churn is recognised when the subscription ends in the billing
  system (default), optionally at the end of the final service period or when scheduled;
  discounts reduce MRR while they apply to invoices.

Errors::

    ValueError
    +-- RevenueError                  any revenue computation refused
        +-- MissingRateError          a conversion needs a rate the table does not hold
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from types import MappingProxyType

from ledgerlink.domain.currencies import normalize_currency_code
from ledgerlink.domain.money import Money, Rounding

__all__ = [
    "CancelAtPeriodEnd",
    "DiscountTreatment",
    "MissingRateError",
    "PastDueTreatment",
    "RateTable",
    "RevenueError",
    "RevenuePolicy",
]


class RevenueError(ValueError):
    """A revenue figure cannot be computed from the given inputs and policy."""


class MissingRateError(RevenueError):
    """A conversion was asked for a currency that the rate table does not hold."""


class CancelAtPeriodEnd(enum.StrEnum):
    """When a subscription scheduled to cancel at period end stops counting in MRR."""

    COUNT_UNTIL_END = "count_until_end"
    """It counts until it actually ends (ChartMogul's default; the customer still pays)."""
    CHURN_WHEN_SCHEDULED = "churn_when_scheduled"
    """It leaves MRR the moment the cancellation is requested (Stripe's dashboard)."""


class PastDueTreatment(enum.StrEnum):
    """Whether a ``past_due`` subscription (a failed renewal being retried) counts."""

    INCLUDE = "include"
    """It counts while Stripe retries (Stripe and ChartMogul defaults)."""
    EXCLUDE = "exclude"
    """It stops counting as soon as a renewal fails; recovery shows as reactivation."""


class DiscountTreatment(enum.StrEnum):
    """Which discounts reduce MRR."""

    APPLY_ACTIVE = "apply_active"
    """Every discount in force at the measured instant (what the customer is billed)."""
    FOREVER_ONLY = "forever_only"
    """Only discounts without an end (Stripe's ``forever`` coupons), as Stripe reports."""
    IGNORE = "ignore"
    """List price: discounts never reduce MRR."""


@dataclass(frozen=True, slots=True)
class RevenuePolicy:
    """The choices behind every MRR, movement and revenue figure.

    Attributes:
        cancel_at_period_end: default ``COUNT_UNTIL_END``: a customer who scheduled a
            cancellation still pays for the period, so churn is recorded when the
            subscription ends (ChartMogul's default). Stripe's dashboard drops it when the
            cancellation is requested; choose ``CHURN_WHEN_SCHEDULED`` for that view.
        past_due: default ``INCLUDE``: Stripe and ChartMogul both keep past-due subscriptions
            in MRR while payment is retried; a recovered payment then changes nothing, and a
            final failure shows as churn when the subscription is cancelled or marked unpaid.
        past_due_grace_days: with ``INCLUDE``, stop counting a subscription that has been
            past due for more than this many days (ChartMogul's auto-churn); ``None`` (the
            default) means no limit.
        count_unpaid: default ``False``: Stripe marks a subscription ``unpaid`` once retries
            are exhausted and no longer counts it; so does ledgerlink.
        discounts: default ``APPLY_ACTIVE``: MRR is what the customer is billed this month, so
            a three-month coupon lowers MRR for three months (ChartMogul's view); the end of
            the coupon then shows as expansion.
        measure_at_month_end: MRR for a month is the state at the month's last instant (the
            convention of Stripe, ChartMogul and Baremetrics month charts). Always ``True``;
            kept as a named field so reports can state it.
        rounding: rounding used when an exact result needs it: a percentage discount, a
            weekly or daily price annualised (weekly x 52), a currency conversion, an ACV.
            Default ``HALF_EVEN`` (unbiased over many lines).
        acv_includes_one_time: default ``False``: ACV measures the recurring value of a
            contract per year; one-time fees (set-up, services) are reported apart.
        default_contract_years: contract length assumed when a quote has no dates; 1 year.

    Tax is never revenue: subscription prices are taken before tax, invoice lines net of tax.
    """

    cancel_at_period_end: CancelAtPeriodEnd = CancelAtPeriodEnd.COUNT_UNTIL_END
    past_due: PastDueTreatment = PastDueTreatment.INCLUDE
    past_due_grace_days: int | None = None
    count_unpaid: bool = False
    discounts: DiscountTreatment = DiscountTreatment.APPLY_ACTIVE
    measure_at_month_end: bool = True
    rounding: Rounding = Rounding.HALF_EVEN
    acv_includes_one_time: bool = False
    default_contract_years: int = 1

    def __post_init__(self) -> None:
        if self.past_due_grace_days is not None and self.past_due_grace_days < 0:
            msg = "past_due_grace_days must be None or at least 0"
            raise RevenueError(msg)
        if not self.measure_at_month_end:
            msg = "MRR is measured at month end; other measurement points are not supported"
            raise RevenueError(msg)
        if self.default_contract_years < 1:
            msg = "default_contract_years must be at least 1"
            raise RevenueError(msg)

    def describe(self) -> dict[str, str]:
        """Return each choice as text, for report headers and ``--explain``.

        Returns:
            The policy's field names mapped to their values as strings.
        """
        return {
            "cancel_at_period_end": str(self.cancel_at_period_end),
            "past_due": str(self.past_due),
            "past_due_grace_days": "none"
            if self.past_due_grace_days is None
            else str(self.past_due_grace_days),
            "count_unpaid": str(self.count_unpaid).lower(),
            "discounts": str(self.discounts),
            "measured_at": "month end",
            "rounding": self.rounding.name.lower(),
            "acv_includes_one_time": str(self.acv_includes_one_time).lower(),
        }


def _frozen_rates(rates: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    checked: dict[str, Decimal] = {}
    for code, rate in rates.items():
        given: object = rate
        if isinstance(given, bool) or not isinstance(given, Decimal | int):
            msg = f"rate for {code} must be a Decimal or an int, not {type(given).__name__}"
            raise TypeError(msg)
        decimal_rate = Decimal(rate)
        if not decimal_rate.is_finite() or decimal_rate <= 0:
            msg = f"rate for {code} must be a positive finite number, got {rate}"
            raise RevenueError(msg)
        checked[normalize_currency_code(code)] = decimal_rate
    return MappingProxyType(checked)


@dataclass(frozen=True, slots=True)
class RateTable:
    """Fixed conversion rates into one reporting currency.

    A rate says how many major units of ``currency`` one major unit of the source currency
    is worth: with ``currency="EUR"`` and ``rates={"USD": Decimal("0.92")}``, 100.00 USD is
    92.00 EUR. One fixed rate per currency keeps movement reports free of exchange-rate noise:
    a customer whose USD MRR did not change shows no expansion or contraction in EUR.

    Attributes:
        currency: the reporting currency.
        rates: source currency -> rate; the reporting currency itself converts at exactly 1.

    Raises:
        TypeError: a rate is a float.
        RevenueError: a rate is zero, negative or not finite.
        UnknownCurrencyError: a code is not ISO 4217.
    """

    currency: str
    rates: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency_code(self.currency))
        object.__setattr__(self, "rates", _frozen_rates(self.rates))

    def rate(self, currency: str) -> Decimal:
        """Return the rate from ``currency`` into the reporting currency.

        Args:
            currency: the source currency.

        Returns:
            The rate (exactly 1 for the reporting currency).

        Raises:
            MissingRateError: the table has no rate for ``currency``.
        """
        code = normalize_currency_code(currency)
        if code == self.currency:
            return Decimal(1)
        try:
            return self.rates[code]
        except KeyError:
            msg = f"no rate from {code} to {self.currency} in the rate table"
            raise MissingRateError(msg) from None

    def convert(self, money: Money, rounding: Rounding = Rounding.HALF_EVEN) -> Money:
        """Convert ``money`` into the reporting currency.

        Args:
            money: the amount to convert.
            rounding: how to round the converted amount to the target's minor unit.

        Returns:
            The amount in the reporting currency.

        Raises:
            MissingRateError: the table has no rate for ``money.currency``.
        """
        if money.currency == self.currency:
            return money
        rate = self.rate(money.currency)
        with localcontext() as context:
            context.prec = 80  # exact for any amount a ledger holds; rounding happens once below
            converted = money.to_decimal() * rate
        return Money.from_decimal(converted, self.currency, rounding=rounding)
