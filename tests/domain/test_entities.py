"""Tests for the canonical entities: UTC timestamps, money fields, currencies and shape."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ledgerlink.domain import (
    ENTITY_TYPES,
    Address,
    BalanceTransaction,
    Contact,
    CreditNote,
    Entity,
    FeeDetail,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Party,
    Payment,
    Payout,
    Product,
    Quote,
    QuoteLine,
    Refund,
    SourceRef,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    TaxId,
    ensure_utc,
)

PROPERTY = settings(deadline=None, database=None, max_examples=50)

EUR_10 = Money(1000, "EUR")
SOURCE = SourceRef(system="stripe", object="invoice", id="in_123")

# The smallest valid field set of every entity, beyond ``source``.
MINIMAL: dict[type[Entity], dict[str, Any]] = {
    Party: {"name": "Acme GmbH"},
    Contact: {},
    Product: {"name": "Pro plan"},
    Quote: {"currency": "EUR", "total": EUR_10},
    Subscription: {"status": "active", "currency": "EUR"},
    Invoice: {"status": "open", "currency": "EUR", "total": EUR_10},
    CreditNote: {"currency": "EUR", "total": EUR_10},
    Payment: {"amount": EUR_10},
    Refund: {"amount": EUR_10},
    Payout: {"amount": EUR_10},
    BalanceTransaction: {
        "type": "charge",
        "amount": EUR_10,
        "fee": Money(59, "EUR"),
        "net": Money(941, "EUR"),
    },
}

# Nested values with their own timestamps, as (class, minimal fields).
NESTED: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (SubscriptionItem, {"unit_price": EUR_10, "interval": "month"}),
    (InvoiceLine, {"amount": EUR_10}),
]


def _mentions_datetime(annotation: object) -> bool:
    if annotation is datetime:
        return True
    return any(_mentions_datetime(argument) for argument in get_args(annotation))


def _timestamp_fields(model: type[BaseModel]) -> list[str]:
    return [
        name for name, field in model.model_fields.items() if _mentions_datetime(field.annotation)
    ]


def _timestamp_cases() -> list[tuple[type[BaseModel], dict[str, Any], str]]:
    cases: list[tuple[type[BaseModel], dict[str, Any], str]] = []
    for entity, fields in MINIMAL.items():
        cases.extend(
            (entity, {"source": SOURCE, **fields}, name) for name in _timestamp_fields(entity)
        )
    for model, fields in NESTED:
        cases.extend((model, fields, name) for name in _timestamp_fields(model))
    return cases


TIMESTAMP_CASES = _timestamp_cases()
offsets = st.builds(
    timezone,
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
)


def test_every_entity_type_has_a_minimal_example() -> None:
    """Each registered entity is covered by the tests below and builds from minimal fields."""
    assert set(ENTITY_TYPES.values()) == set(MINIMAL)
    for entity, fields in MINIMAL.items():
        built = entity(source=SOURCE, **fields)
        assert built.source == SOURCE
        assert built.metadata == {}


def test_every_entity_has_timestamps_to_check() -> None:
    """created_at and updated_at exist on every entity, so the naive-datetime check covers all."""
    covered = {model for model, _, _ in TIMESTAMP_CASES}
    assert set(MINIMAL) <= covered
    assert {SubscriptionItem, InvoiceLine} <= covered


@pytest.mark.parametrize(
    ("model", "fields", "name"),
    TIMESTAMP_CASES,
    ids=[f"{model.__name__}.{name}" for model, _, name in TIMESTAMP_CASES],
)
@PROPERTY
@given(moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_naive_datetimes_are_refused(
    model: type[BaseModel], fields: dict[str, Any], name: str, moment: datetime
) -> None:
    """Every timestamp field refuses a naive datetime and an ISO string without an offset."""
    with pytest.raises(ValidationError, match="timezone-aware"):
        model(**fields, **{name: moment})
    with pytest.raises(ValidationError, match="timezone-aware"):
        model(**fields, **{name: moment.isoformat()})


@pytest.mark.parametrize(
    ("model", "fields", "name"),
    TIMESTAMP_CASES,
    ids=[f"{model.__name__}.{name}" for model, _, name in TIMESTAMP_CASES],
)
@PROPERTY
@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    offset=offsets,
)
def test_aware_datetimes_are_stored_in_utc(
    model: type[BaseModel], fields: dict[str, Any], name: str, moment: datetime, offset: timezone
) -> None:
    """An aware datetime in any zone is stored as the same instant in UTC."""
    aware = moment.replace(tzinfo=offset)
    stored = getattr(model(**fields, **{name: aware}), name)
    assert stored == aware
    assert stored.tzinfo is UTC


def test_unix_timestamps_and_offset_strings_are_read_as_utc() -> None:
    """Stripe's integer timestamps and ISO strings with an offset become UTC datetimes."""
    invoice = Invoice(
        source=SOURCE,
        status="paid",
        currency="EUR",
        total=EUR_10,
        created_at=1_700_000_000,
        paid_at="2024-03-01T12:00:00+02:00",
    )
    assert invoice.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert invoice.paid_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_ensure_utc_refuses_naive_and_converts_aware() -> None:
    """ensure_utc raises on a naive datetime and converts an aware one to UTC."""
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_utc(datetime(2024, 1, 1))
    paris = timezone(timedelta(hours=1))
    assert ensure_utc(datetime(2024, 1, 1, 1, tzinfo=paris)) == datetime(2024, 1, 1, tzinfo=UTC)


def test_entities_are_immutable() -> None:
    """Assigning to a field of an entity raises."""
    party = Party(source=SOURCE, name="Acme")
    with pytest.raises(ValidationError):
        party.name = "Other"  # type: ignore[misc]


def test_unknown_fields_are_refused() -> None:
    """A misspelt field from a mapping fails instead of being dropped."""
    with pytest.raises(ValidationError, match="extra"):
        Party(source=SOURCE, name="Acme", nmae="typo")  # type: ignore[call-arg]


def test_source_ref_is_hashable_and_prints_as_a_path() -> None:
    """SourceRef works as a dict key and prints system/object/id."""
    ref = SourceRef(system="salesforce", object="Account", id="001xx0000001")
    assert {ref: 1}[SourceRef(system="salesforce", object="Account", id="001xx0000001")] == 1
    assert str(ref) == "salesforce/Account/001xx0000001"
    with pytest.raises(ValidationError):
        SourceRef(system="stripe", object="customer", id="")


def test_party_holds_contact_details_and_normalizes_codes() -> None:
    """A party keeps its details; currency and country codes are upper-cased and validated."""
    party = Party(
        source=SourceRef(system="stripe", object="customer", id="cus_1"),
        name="Acme",
        legal_name="Acme GmbH",
        emails=("billing@acme.example",),
        phones=("+49 30 1234567",),
        website="acme.example",
        addresses=(Address(line1="Hauptstr. 1", city="Berlin", postal_code="10115", country="de"),),
        tax_ids=(TaxId(type="eu_vat", value="DE123456789", country="DE"),),
        currency="eur",
        metadata={"salesforce_id": "001xx0000001"},
    )
    assert party.currency == "EUR"
    assert party.addresses[0].country == "DE"
    with pytest.raises(ValidationError, match="currency"):
        Party(source=SOURCE, name="Acme", currency="ABC")
    with pytest.raises(ValidationError, match="country"):
        Address(country="Germany")


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Invoice, {"status": "open", "currency": "EUR", "total": Money(1000, "USD")}),
        (
            Invoice,
            {
                "status": "open",
                "currency": "EUR",
                "total": EUR_10,
                "lines": [{"amount": Money(1000, "USD")}],
            },
        ),
        (
            Quote,
            {
                "currency": "EUR",
                "total": EUR_10,
                "lines": [{"unit_price": Money(1, "GBP"), "amount": EUR_10}],
            },
        ),
        (
            Subscription,
            {
                "status": "active",
                "currency": "EUR",
                "items": [{"unit_price": Money(1, "USD"), "interval": "month"}],
            },
        ),
        (CreditNote, {"currency": "EUR", "total": Money(10, "JPY")}),
        (Payment, {"amount": EUR_10, "fee": Money(3, "USD")}),
        (Payout, {"amount": EUR_10, "fee": Money(3, "USD")}),
        (
            BalanceTransaction,
            {"type": "charge", "amount": EUR_10, "fee": Money(0, "USD"), "net": EUR_10},
        ),
    ],
)
def test_documents_refuse_amounts_in_another_currency(
    model: type[Entity], fields: dict[str, Any]
) -> None:
    """Every amount of a document, its lines included, must be in the document's currency."""
    with pytest.raises(ValidationError, match=r"is in EUR but|different currencies"):
        model(source=SOURCE, **fields)


def test_balance_transaction_net_must_equal_amount_minus_fee() -> None:
    """A balance transaction whose net is not amount minus fee is refused."""
    with pytest.raises(ValidationError, match="net"):
        BalanceTransaction(
            source=SOURCE, type="charge", amount=EUR_10, fee=Money(59, "EUR"), net=EUR_10
        )
    charge = BalanceTransaction(
        source=SOURCE,
        type="charge",
        amount=EUR_10,
        fee=Money(59, "EUR"),
        net=Money(941, "EUR"),
        fee_details=(FeeDetail(type="stripe_fee", amount=Money(59, "EUR")),),
    )
    assert charge.net == charge.amount - charge.fee


@pytest.mark.parametrize("quantity", [1.5, float("nan")])
def test_float_quantities_are_refused(quantity: float) -> None:
    """A quantity given as a float is refused; Decimals, ints and decimal strings are read."""
    with pytest.raises(ValidationError, match="float"):
        InvoiceLine(amount=EUR_10, quantity=quantity)
    assert InvoiceLine(amount=EUR_10, quantity="1.5").quantity == Decimal("1.5")
    assert QuoteLine(unit_price=EUR_10, amount=EUR_10, quantity=3).quantity == Decimal(3)


def test_money_fields_refuse_float_amounts() -> None:
    """A money field given a float amount is refused."""
    with pytest.raises(ValidationError):
        Payment(source=SOURCE, amount={"amount": 10.5, "currency": "EUR"})


def test_invoice_round_trips_through_json() -> None:
    """An invoice dumped to JSON validates back to an equal invoice."""
    invoice = Invoice(
        source=SOURCE,
        party=SourceRef(system="stripe", object="customer", id="cus_1"),
        number="INV-0001",
        status=InvoiceStatus.PAID,
        currency="EUR",
        lines=(
            InvoiceLine(
                description="Pro plan",
                quantity=Decimal(2),
                unit_price=Money(500, "EUR"),
                amount=EUR_10,
                period_start=datetime(2024, 1, 1, tzinfo=UTC),
                period_end=datetime(2024, 2, 1, tzinfo=UTC),
            ),
        ),
        total=EUR_10,
        amount_paid=EUR_10,
        due_date=date(2024, 1, 31),
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice


def test_subscription_carries_items_and_cancellation_dates() -> None:
    """A subscription keeps its items, interval and scheduled cancellation."""
    subscription = Subscription(
        source=SourceRef(system="stripe", object="subscription", id="sub_1"),
        status=SubscriptionStatus.ACTIVE,
        currency="eur",
        items=(
            SubscriptionItem(unit_price=Money(200000, "EUR"), interval=Interval.MONTH, quantity=3),
        ),
        cancel_at=datetime(2025, 1, 1, tzinfo=UTC),
        cancel_at_period_end=True,
    )
    assert subscription.currency == "EUR"
    assert subscription.items[0].interval is Interval.MONTH
    with pytest.raises(ValidationError):
        SubscriptionItem(unit_price=EUR_10, interval="fortnight")
