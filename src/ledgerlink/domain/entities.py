"""Canonical entities: the system-neutral shape every source record is normalized into.

The mapping layer turns a Salesforce Account, a Stripe customer or a QuickBooks Customer into
a :class:`Party`; a Stripe invoice or a QuickBooks Invoice into an :class:`Invoice`; and so on.
Matching, planning and revenue work on these values only, never on vendor payloads.

Every entity is a frozen pydantic model that:

- carries ``source``: the :class:`SourceRef` ``(system, object, id)`` it was read from;
- holds money as :class:`~ledgerlink.domain.money.Money` (integer minor units + ISO 4217
  currency; floats are refused), and currency codes as upper-case ISO 4217 codes;
- holds instants as timezone-aware UTC datetimes: a naive datetime (or an ISO string without
  an offset) is refused, an aware one in another zone is converted to UTC, and an integer is
  read as a Unix timestamp (Stripe's format). Calendar days that are not instants (a due
  date, a payout's arrival date) are plain :class:`~datetime.date` values;
- refers to related records by their ``SourceRef`` in the same system (an invoice's
  ``party``, a payment's ``invoices``), never by a golden customer id;
- refuses unknown fields, so a typo in a mapping fails loudly instead of losing data.

Documents with lines (quote, subscription, invoice, credit note) check that every line is in
the document's currency; they do not recompute totals, because the source system's totals
(with its discounts, taxes and rounding) are the truth the hub reports.

``ENTITY_TYPES`` maps the entity names used by :class:`ledgerlink.connector.protocol.Stream`
(``"party"``, ``"invoice"``, ...) to these classes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Self

import pycountry
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ledgerlink.domain.currencies import normalize_currency_code
from ledgerlink.domain.money import CurrencyMismatchError, Money

__all__ = [
    "ENTITY_TYPES",
    "Address",
    "AddressKind",
    "BalanceTransaction",
    "Contact",
    "CountryCode",
    "CreditNote",
    "CreditNoteStatus",
    "CurrencyCode",
    "Entity",
    "ExactDecimal",
    "FeeDetail",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
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
    "SourceRef",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionStatus",
    "TaxId",
    "UtcDatetime",
    "ensure_utc",
]


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC, refusing a naive datetime.

    Args:
        value: a timezone-aware datetime.

    Returns:
        The same instant with ``tzinfo=UTC``.

    Raises:
        TypeError: ``value`` is not a datetime.
        ValueError: ``value`` is naive (no timezone), so the instant is unknown.
    """
    given: object = value
    if not isinstance(given, datetime):
        msg = f"expected a datetime, not {type(given).__name__}"
        raise TypeError(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"naive datetime {value.isoformat()} refused: timestamps must be timezone-aware"
        raise ValueError(msg)
    return value.astimezone(UTC)


def _country_code(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        msg = f"unknown country {value!r}: expected an ISO 3166-1 alpha-2 code such as 'DE'"
        raise ValueError(msg)
    return code


UtcDatetime = Annotated[datetime, AfterValidator(ensure_utc)]
"""A timezone-aware datetime, normalized to UTC; naive values are refused."""

CurrencyCode = Annotated[str, AfterValidator(normalize_currency_code)]
"""An ISO 4217 code from the currency table, normalized to upper case."""

CountryCode = Annotated[str, AfterValidator(_country_code)]
"""An ISO 3166-1 alpha-2 country code, normalized to upper case."""


def _refuse_float(value: object) -> object:
    if isinstance(value, float):
        msg = "floats are refused on money paths: give a Decimal, an int or a decimal string"
        raise ValueError(msg)  # pydantic reports ValueError as a validation error
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_refuse_float), Field(allow_inf_nan=False)]
"""A finite Decimal built from an int, a Decimal or a decimal string, never from a float."""


class _Value(BaseModel):
    """Frozen, strict-shaped base for the values below."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRef(_Value):
    """Where a record lives: ``("stripe", "customer", "cus_123")``.

    Attributes:
        system: the connector name (``salesforce``, ``stripe``, ``quickbooks``).
        object: the vendor's object type (``Account``, ``customer``, ``Invoice``).
        id: the vendor's id of the record.
    """

    system: str = Field(min_length=1)
    object: str = Field(min_length=1)
    id: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.system}/{self.object}/{self.id}"


class Entity(_Value):
    """Fields every canonical entity has.

    Attributes:
        source: the record this entity was normalized from.
        created_at: when the source system created the record.
        updated_at: when the source system last changed the record.
        metadata: the record's free key-value metadata (Stripe ``metadata``, Salesforce
            custom fields the mapping keeps); cross-references to other systems live here.
    """

    source: SourceRef
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


def _check_currency(document: str, currency: str, amounts: Mapping[str, Money | None]) -> None:
    for name, amount in amounts.items():
        if amount is not None and amount.currency != currency:
            msg = f"{document} is in {currency} but {name} is {amount}"
            raise CurrencyMismatchError(msg)


# -- parties ------------------------------------------------------------------------------


class AddressKind(enum.StrEnum):
    """What an address is used for."""

    BILLING = "billing"
    SHIPPING = "shipping"
    OTHER = "other"


class Address(_Value):
    """A postal address.

    Attributes:
        kind: billing, shipping or other.
        line1: street and number.
        line2: building, suite, c/o.
        city: city or locality.
        region: state, province or county.
        postal_code: ZIP or postcode.
        country: ISO 3166-1 alpha-2 code.
    """

    kind: AddressKind = AddressKind.BILLING
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: CountryCode | None = None


class TaxId(_Value):
    """A tax registration number.

    Attributes:
        type: the kind of number, in Stripe's vocabulary where one exists (``eu_vat``,
            ``gb_vat``, ``us_ein``).
        value: the number as registered.
        country: the issuing country, when known.
    """

    type: str = Field(min_length=1)
    value: str = Field(min_length=1)
    country: CountryCode | None = None


class Party(Entity):
    """A customer as one system knows it (Salesforce Account, Stripe customer, QBO Customer).

    Attributes:
        name: display name.
        legal_name: registered company name, when different.
        emails: e-mail addresses, primary first.
        phones: phone numbers as the source holds them (normalized by matching), primary first.
        website: web site URL or domain.
        addresses: postal addresses.
        tax_ids: tax registration numbers.
        currency: the customer's billing currency, when the system has one.
    """

    name: str
    legal_name: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    website: str | None = None
    addresses: tuple[Address, ...] = ()
    tax_ids: tuple[TaxId, ...] = ()
    currency: CurrencyCode | None = None


class Contact(Entity):
    """A person at a customer.

    Attributes:
        party: the customer the person belongs to.
        first_name: given name.
        last_name: family name.
        email: e-mail address.
        phone: phone number as the source holds it.
        title: job title.
    """

    party: SourceRef | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None


# -- catalogue ----------------------------------------------------------------------------


class Interval(enum.StrEnum):
    """Billing period unit of a recurring price."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class Product(Entity):
    """Something sold: a Salesforce Product2, a Stripe product, a QuickBooks Item.

    Attributes:
        name: display name.
        sku: stock keeping unit or product code.
        description: longer description.
        active: whether it can still be sold.
        unit_price: default price, when the system keeps one on the product.
        interval: billing period of the default price, for a recurring product.
        interval_count: number of ``interval`` units per billing period.
    """

    name: str
    sku: str | None = None
    description: str | None = None
    active: bool = True
    unit_price: Money | None = None
    interval: Interval | None = None
    interval_count: int = Field(default=1, ge=1)


# -- quotes -------------------------------------------------------------------------------


class QuoteStatus(enum.StrEnum):
    """Where a quote is in its life."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    PRESENTED = "presented"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELED = "canceled"


class QuoteLine(_Value):
    """One line of a quote.

    Attributes:
        source: the line record, when the system stores lines separately (QuoteLineItem).
        product: the product quoted.
        description: line text.
        quantity: number of units (may be fractional: hours, seats pro rata).
        unit_price: price of one unit, before discount.
        discount_percent: discount in percent (``Decimal("10")`` is 10 %).
        amount: the line total as the source computed it.
        interval: billing period unit, for a recurring line.
        interval_count: number of ``interval`` units per billing period.
        start_date: service start.
        end_date: service end.
    """

    source: SourceRef | None = None
    product: SourceRef | None = None
    description: str | None = None
    quantity: Annotated[ExactDecimal, Field(ge=0)] = Decimal(1)
    unit_price: Money
    discount_percent: Annotated[ExactDecimal, Field(ge=0, le=100)] | None = None
    amount: Money
    interval: Interval | None = None
    interval_count: int = Field(default=1, ge=1)
    start_date: date | None = None
    end_date: date | None = None


class Quote(Entity):
    """A priced offer to a customer (Salesforce Quote, or an Opportunity with lines).

    Attributes:
        party: the customer quoted.
        opportunity: the deal the quote belongs to.
        number: human quote number.
        name: title.
        status: where the quote is in its life.
        currency: the quote's currency; every line and total is in it.
        lines: quoted lines.
        subtotal: total before discount and tax.
        discount: total discount.
        tax: total tax.
        total: grand total.
        valid_until: last day the offer holds.
        accepted_at: when the customer accepted.
    """

    party: SourceRef | None = None
    opportunity: SourceRef | None = None
    number: str | None = None
    name: str | None = None
    status: QuoteStatus = QuoteStatus.DRAFT
    currency: CurrencyCode
    lines: tuple[QuoteLine, ...] = ()
    subtotal: Money | None = None
    discount: Money | None = None
    tax: Money | None = None
    total: Money
    valid_until: date | None = None
    accepted_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        amounts: dict[str, Money | None] = {
            "subtotal": self.subtotal,
            "discount": self.discount,
            "tax": self.tax,
            "total": self.total,
        }
        for index, line in enumerate(self.lines):
            amounts[f"lines[{index}].unit_price"] = line.unit_price
            amounts[f"lines[{index}].amount"] = line.amount
        _check_currency("quote", self.currency, amounts)
        return self


# -- subscriptions ------------------------------------------------------------------------


class SubscriptionStatus(enum.StrEnum):
    """Life-cycle state of a subscription (Stripe's vocabulary)."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    PAUSED = "paused"
    CANCELED = "canceled"


class SubscriptionItem(_Value):
    """One priced component of a subscription.

    Attributes:
        source: the item record (Stripe ``si_...``).
        product: the product billed.
        price: the vendor's price record, when it has one (Stripe ``price_...``).
        quantity: number of units (seats, licences).
        unit_price: price of one unit per billing period.
        interval: billing period unit.
        interval_count: number of ``interval`` units per billing period.
        current_period_start: start of the period being billed (Stripe keeps it per item).
        current_period_end: end of that period.
    """

    source: SourceRef | None = None
    product: SourceRef | None = None
    price: SourceRef | None = None
    quantity: int = Field(default=1, ge=0)
    unit_price: Money
    interval: Interval
    interval_count: int = Field(default=1, ge=1)
    current_period_start: UtcDatetime | None = None
    current_period_end: UtcDatetime | None = None


class Subscription(Entity):
    """A recurring agreement billed every period.

    Attributes:
        party: the customer billed.
        status: life-cycle state.
        currency: the subscription's currency; every item is in it.
        items: priced components.
        started_at: when the subscription started.
        current_period_start: start of the period being billed.
        current_period_end: end of that period.
        trial_end: end of the trial, if any.
        cancel_at: when a scheduled cancellation takes effect.
        cancel_at_period_end: whether it ends at the end of the current period.
        canceled_at: when the cancellation was requested.
        ended_at: when it actually ended.
        quote: the quote that created it, when known.
    """

    party: SourceRef | None = None
    status: SubscriptionStatus
    currency: CurrencyCode
    items: tuple[SubscriptionItem, ...] = ()
    started_at: UtcDatetime | None = None
    current_period_start: UtcDatetime | None = None
    current_period_end: UtcDatetime | None = None
    trial_end: UtcDatetime | None = None
    cancel_at: UtcDatetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    quote: SourceRef | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        _check_currency(
            "subscription",
            self.currency,
            {f"items[{i}].unit_price": item.unit_price for i, item in enumerate(self.items)},
        )
        return self


# -- invoices and credit notes ------------------------------------------------------------


class InvoiceStatus(enum.StrEnum):
    """State of an invoice (Stripe's vocabulary; QuickBooks invoices map to open or paid)."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class InvoiceLine(_Value):
    """One line of an invoice or credit note.

    Attributes:
        source: the line record, when it has its own id.
        product: the product billed.
        description: line text.
        quantity: number of units (negative on some ledgers' discount or return lines).
        unit_price: price of one unit, when the source gives one.
        amount: the line amount before tax, as the source computed it.
        tax: tax on the line.
        discount: discount applied to the line.
        period_start: start of the service period billed.
        period_end: end of that period.
        proration: whether the line is a proration (mid-period change).
        subscription_item: the subscription item the line bills.
    """

    source: SourceRef | None = None
    product: SourceRef | None = None
    description: str | None = None
    quantity: ExactDecimal = Decimal(1)
    unit_price: Money | None = None
    amount: Money
    tax: Money | None = None
    discount: Money | None = None
    period_start: UtcDatetime | None = None
    period_end: UtcDatetime | None = None
    proration: bool = False
    subscription_item: SourceRef | None = None


def _line_amounts(lines: tuple[InvoiceLine, ...]) -> dict[str, Money | None]:
    amounts: dict[str, Money | None] = {}
    for index, line in enumerate(lines):
        amounts[f"lines[{index}].amount"] = line.amount
        amounts[f"lines[{index}].unit_price"] = line.unit_price
        amounts[f"lines[{index}].tax"] = line.tax
        amounts[f"lines[{index}].discount"] = line.discount
    return amounts


class Invoice(Entity):
    """A bill sent to a customer.

    Attributes:
        party: the customer billed.
        number: human invoice number.
        status: state of the invoice.
        currency: the invoice's currency; every line and total is in it.
        lines: billed lines.
        subtotal: total before tax and invoice-level discount.
        discount: invoice-level discount.
        tax: total tax.
        total: grand total.
        amount_due: what the customer owes in all.
        amount_paid: what has been paid.
        amount_remaining: what is still open.
        issued_at: when it was finalized or sent.
        due_date: the day payment is due.
        paid_at: when it was fully paid.
        voided_at: when it was voided.
        subscription: the subscription it bills, if any.
        period_start: start of the billing period.
        period_end: end of the billing period.
    """

    party: SourceRef | None = None
    number: str | None = None
    status: InvoiceStatus
    currency: CurrencyCode
    lines: tuple[InvoiceLine, ...] = ()
    subtotal: Money | None = None
    discount: Money | None = None
    tax: Money | None = None
    total: Money
    amount_due: Money | None = None
    amount_paid: Money | None = None
    amount_remaining: Money | None = None
    issued_at: UtcDatetime | None = None
    due_date: date | None = None
    paid_at: UtcDatetime | None = None
    voided_at: UtcDatetime | None = None
    subscription: SourceRef | None = None
    period_start: UtcDatetime | None = None
    period_end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        amounts = _line_amounts(self.lines)
        amounts.update(
            subtotal=self.subtotal,
            discount=self.discount,
            tax=self.tax,
            total=self.total,
            amount_due=self.amount_due,
            amount_paid=self.amount_paid,
            amount_remaining=self.amount_remaining,
        )
        _check_currency("invoice", self.currency, amounts)
        return self


class CreditNoteStatus(enum.StrEnum):
    """State of a credit note."""

    ISSUED = "issued"
    VOID = "void"


class CreditNote(Entity):
    """A reduction of what a customer owes on an invoice.

    Attributes:
        party: the customer credited.
        invoice: the invoice it reduces.
        number: human credit note number.
        status: issued or void.
        currency: the credit note's currency; every line and total is in it.
        lines: credited lines.
        subtotal: total before tax.
        tax: total tax credited.
        total: amount credited (positive).
        reason: why it was issued (``duplicate``, ``product_unsatisfactory``, free text).
        refund: the refund paying the credit out, if any.
        issued_at: when it was issued.
        voided_at: when it was voided.
    """

    party: SourceRef | None = None
    invoice: SourceRef | None = None
    number: str | None = None
    status: CreditNoteStatus = CreditNoteStatus.ISSUED
    currency: CurrencyCode
    lines: tuple[InvoiceLine, ...] = ()
    subtotal: Money | None = None
    tax: Money | None = None
    total: Money
    reason: str | None = None
    refund: SourceRef | None = None
    issued_at: UtcDatetime | None = None
    voided_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        amounts = _line_amounts(self.lines)
        amounts.update(subtotal=self.subtotal, tax=self.tax, total=self.total)
        _check_currency("credit note", self.currency, amounts)
        return self


# -- cash ---------------------------------------------------------------------------------


class PaymentStatus(enum.StrEnum):
    """State of a payment."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Payment(Entity):
    """Money received from a customer (Stripe charge, QuickBooks Payment).

    Attributes:
        party: the paying customer.
        invoices: the invoices it pays.
        amount: amount received (gross, before processing fees).
        fee: processing fee, when known (Stripe's balance transaction may come later).
        status: state of the payment.
        method: payment method type (``card``, ``sepa_debit``, ``check``).
        reference: the payer-visible reference (charge id, check number).
        paid_at: when the payment succeeded.
        balance_transaction: the balance transaction that holds its fee and net.
    """

    party: SourceRef | None = None
    invoices: tuple[SourceRef, ...] = ()
    amount: Money
    fee: Money | None = None
    status: PaymentStatus = PaymentStatus.SUCCEEDED
    method: str | None = None
    reference: str | None = None
    paid_at: UtcDatetime | None = None
    balance_transaction: SourceRef | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        _check_currency("payment", self.amount.currency, {"fee": self.fee})
        return self


class RefundStatus(enum.StrEnum):
    """State of a refund."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Refund(Entity):
    """Money returned to a customer.

    Attributes:
        payment: the payment refunded.
        amount: amount returned (positive).
        status: state of the refund.
        reason: why (``duplicate``, ``fraudulent``, ``requested_by_customer``, free text).
        refunded_at: when it was made.
        balance_transaction: the balance transaction recording it.
    """

    payment: SourceRef | None = None
    amount: Money
    status: RefundStatus = RefundStatus.SUCCEEDED
    reason: str | None = None
    refunded_at: UtcDatetime | None = None
    balance_transaction: SourceRef | None = None


class PayoutStatus(enum.StrEnum):
    """State of a payout to the company's bank account."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class Payout(Entity):
    """A transfer of the processor balance to the company's bank account.

    Attributes:
        amount: amount sent to the bank.
        fee: fee charged for the payout, if any.
        status: state of the payout.
        arrival_date: the day the funds are expected in the bank.
        destination: the bank account, as the processor names it.
        balance_transaction: the balance transaction recording it.
    """

    amount: Money
    fee: Money | None = None
    status: PayoutStatus = PayoutStatus.PENDING
    arrival_date: date | None = None
    destination: str | None = None
    balance_transaction: SourceRef | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        _check_currency("payout", self.amount.currency, {"fee": self.fee})
        return self


class FeeDetail(_Value):
    """One component of a balance transaction's fee.

    Attributes:
        type: kind of fee (``stripe_fee``, ``tax``, ``application_fee``).
        amount: the fee component.
        description: the processor's description.
    """

    type: str
    amount: Money
    description: str | None = None


class BalanceTransaction(Entity):
    """A movement of the processor balance: a charge, refund, payout or fee with its net.

    ``net`` always equals ``amount - fee``; a mapping that produces anything else is refused.

    Attributes:
        type: kind of movement (``charge``, ``refund``, ``payout``, ``stripe_fee``,
            ``adjustment``).
        amount: gross amount (negative for money leaving the balance).
        fee: total fees.
        net: ``amount - fee``.
        fee_details: the components of ``fee``.
        related: the record that caused it (charge, refund, payout).
        available_on: when the funds become available for payout.
        description: the processor's description.
    """

    type: str
    amount: Money
    fee: Money
    net: Money
    fee_details: tuple[FeeDetail, ...] = ()
    related: SourceRef | None = None
    available_on: UtcDatetime | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _net_is_amount_minus_fee(self) -> Self:
        amounts: dict[str, Money | None] = {"fee": self.fee, "net": self.net}
        for index, detail in enumerate(self.fee_details):
            amounts[f"fee_details[{index}].amount"] = detail.amount
        _check_currency("balance transaction", self.amount.currency, amounts)
        if self.amount - self.fee != self.net:
            msg = f"net {self.net} is not amount {self.amount} minus fee {self.fee}"
            raise ValueError(msg)
        return self


ENTITY_TYPES: Mapping[str, type[Entity]] = MappingProxyType(
    {
        "party": Party,
        "contact": Contact,
        "product": Product,
        "quote": Quote,
        "subscription": Subscription,
        "invoice": Invoice,
        "credit_note": CreditNote,
        "payment": Payment,
        "refund": Refund,
        "payout": Payout,
        "balance_transaction": BalanceTransaction,
    }
)
"""Canonical entity classes by the name streams use in ``Stream.entity``."""
