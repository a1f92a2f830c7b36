"""The shipped mappings turn realistic vendor payloads into exact canonical entities."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.domain import (
    Address,
    AddressKind,
    BalanceTransaction,
    Contact,
    Invoice,
    InvoiceStatus,
    Money,
    Party,
    Payment,
    Payout,
    Product,
    Quote,
    QuoteStatus,
    Refund,
    SourceRef,
    Subscription,
    SubscriptionStatus,
    TaxId,
)
from ledgerlink.mapping import (
    Normalizer,
    RecordMappingError,
    UnmappedObjectError,
    load_mappings,
)


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(load_mappings())


# -- Stripe (https://docs.stripe.com/api) -------------------------------------------------

STRIPE_CUSTOMER: dict[str, Any] = {
    "id": "cus_NffrFeUfNV2Hib",
    "object": "customer",
    "address": {
        "city": "Berlin",
        "country": "DE",
        "line1": "Unter den Linden 1",
        "line2": None,
        "postal_code": "10117",
        "state": None,
    },
    "balance": 0,
    "created": 1680893993,
    "currency": "eur",
    "email": " Billing@Acme.example ",
    "name": "ACME  GmbH",
    "phone": "+49 30 1234567",
    "shipping": None,
    "metadata": {"salesforce_account_id": "001Hs00002ABCDEFGH"},
    "tax_ids": {
        "object": "list",
        "data": [{"id": "txi_1", "type": "eu_vat", "value": "DE123456789", "country": "DE"}],
        "has_more": False,
    },
}


def test_stripe_customer_becomes_a_party(normalizer: Normalizer) -> None:
    """A Stripe customer maps to a party with cleaned name, email, address, tax id and links."""
    party = normalizer.map_record("stripe", "customers", "cus_NffrFeUfNV2Hib", STRIPE_CUSTOMER)
    assert party == Party(
        source=SourceRef(system="stripe", object="customers", id="cus_NffrFeUfNV2Hib"),
        created_at=datetime(2023, 4, 7, 18, 59, 53, tzinfo=UTC),
        metadata={"salesforce_account_id": "001Hs00002ABCDEFGH"},
        name="ACME GmbH",
        emails=("billing@acme.example",),
        phones=("+49 30 1234567",),
        addresses=(
            Address(
                kind=AddressKind.BILLING,
                line1="Unter den Linden 1",
                city="Berlin",
                postal_code="10117",
                country="DE",
            ),
        ),
        tax_ids=(TaxId(type="eu_vat", value="DE123456789", country="DE"),),
        currency="EUR",
    )


def test_stripe_customer_without_address_or_email_has_none(normalizer: Normalizer) -> None:
    """Missing optional values leave empty fields instead of empty addresses or emails."""
    sparse = {"id": "cus_2", "name": "Solo", "email": "", "address": None, "created": 1}
    party = normalizer.map_record("stripe", "customers", "cus_2", sparse)
    assert isinstance(party, Party)
    assert party.addresses == ()
    assert party.emails == ()
    assert party.metadata == {}


STRIPE_INVOICE: dict[str, Any] = {
    "id": "in_1MtHbELkdIwHu7ixl4OzzPMv",
    "object": "invoice",
    "amount_due": 15000,
    "amount_paid": 15000,
    "amount_remaining": 0,
    "created": 1680644467,
    "currency": "jpy",
    "customer": "cus_NeZwdNtLEOXuvB",
    "due_date": None,
    "lines": {
        "object": "list",
        "data": [
            {
                "id": "il_1MtHbELkdIwHu7ixIVK1xTbM",
                "object": "line_item",
                "amount": 15000,
                "currency": "jpy",
                "description": "3 x Pro (at JPY 5,000 / month)",
                "period": {"end": 1683236467, "start": 1680644467},
                "price": {
                    "id": "price_1MtHbDLkdIwHu7ix",
                    "product": "prod_NeZwdO0pYTnbOO",
                    "unit_amount": 5000,
                    "recurring": {"interval": "month", "interval_count": 1},
                },
                "proration": False,
                "quantity": 3,
                "subscription_item": "si_NeZwjTLuYOd7Cc",
                "type": "subscription",
            }
        ],
        "has_more": False,
    },
    "number": "ACME-0042",
    "period_end": 1680644467,
    "period_start": 1680644467,
    "status": "paid",
    "status_transitions": {
        "finalized_at": 1680644468,
        "paid_at": 1680644470,
        "voided_at": None,
    },
    "subscription": "sub_1MtHbELkdIwHu7ix",
    "subtotal": 15000,
    "tax": None,
    "total": 15000,
}


def test_stripe_invoice_in_a_zero_decimal_currency(normalizer: Normalizer) -> None:
    """A JPY invoice keeps yen as whole units, with lines, periods and links."""
    invoice = normalizer.map_record("stripe", "invoices", STRIPE_INVOICE["id"], STRIPE_INVOICE)
    assert isinstance(invoice, Invoice)
    assert invoice.currency == "JPY"
    assert invoice.total == Money(15000, "JPY")
    assert invoice.amount_remaining == Money(0, "JPY")
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.party == SourceRef(system="stripe", object="customers", id="cus_NeZwdNtLEOXuvB")
    assert invoice.paid_at == datetime(2023, 4, 4, 21, 41, 10, tzinfo=UTC)
    (line,) = invoice.lines
    assert line.amount == Money(15000, "JPY")
    assert line.unit_price == Money(5000, "JPY")
    assert line.quantity == Decimal(3)
    assert line.product == SourceRef(system="stripe", object="products", id="prod_NeZwdO0pYTnbOO")
    assert line.period_end == datetime(2023, 5, 4, 21, 41, 7, tzinfo=UTC)


def test_stripe_subscription_and_isk_price(normalizer: Normalizer) -> None:
    """A subscription in ISK reads Stripe's two-decimal ISK amounts as whole krónur."""
    subscription = {
        "id": "sub_1",
        "object": "subscription",
        "created": 1700000000,
        "customer": {"id": "cus_1", "object": "customer"},
        "currency": "isk",
        "status": "trialing",
        "items": {
            "data": [
                {
                    "id": "si_1",
                    "quantity": 2,
                    "price": {
                        "id": "price_1",
                        "product": "prod_1",
                        "unit_amount": 990000,
                        "recurring": {"interval": "year", "interval_count": 1},
                    },
                }
            ]
        },
        "start_date": 1700000000,
        "trial_end": 1701209600,
        "cancel_at_period_end": False,
    }
    entity = normalizer.map_record("stripe", "subscriptions", "sub_1", subscription)
    assert isinstance(entity, Subscription)
    assert entity.status is SubscriptionStatus.TRIALING
    assert entity.party == SourceRef(system="stripe", object="customers", id="cus_1")
    (item,) = entity.items
    assert item.unit_price == Money(9900, "ISK")
    assert item.quantity == 2
    assert item.interval.value == "year"


def test_stripe_charge_refund_payout_and_balance_transaction(normalizer: Normalizer) -> None:
    """Cash objects map with exact amounts, links and the fee breakdown."""
    charge = {
        "id": "ch_3MmlLrLkdIwHu7ix0snN0B15",
        "amount": 1099,
        "currency": "usd",
        "customer": "cus_1",
        "invoice": "in_1",
        "status": "succeeded",
        "balance_transaction": "txn_1",
        "created": 1679090539,
        "payment_method_details": {"type": "card"},
    }
    payment = normalizer.map_record("stripe", "charges", charge["id"], charge)
    assert isinstance(payment, Payment)
    assert payment.amount == Money(1099, "USD")
    assert payment.invoices == (SourceRef(system="stripe", object="invoices", id="in_1"),)
    assert payment.method == "card"
    assert payment.balance_transaction == SourceRef(
        system="stripe", object="balance_transactions", id="txn_1"
    )

    refund = {
        "id": "re_1",
        "amount": 500,
        "currency": "usd",
        "charge": charge["id"],
        "status": "requires_action",
        "reason": "requested_by_customer",
        "created": 1679090600,
    }
    mapped_refund = normalizer.map_record("stripe", "refunds", "re_1", refund)
    assert isinstance(mapped_refund, Refund)
    assert mapped_refund.amount == Money(500, "USD")
    assert mapped_refund.status.value == "pending"

    payout = {
        "id": "po_1",
        "amount": 1100000,
        "currency": "eur",
        "arrival_date": 1680652800,
        "status": "in_transit",
        "destination": "ba_1",
        "created": 1680566400,
    }
    mapped_payout = normalizer.map_record("stripe", "payouts", "po_1", payout)
    assert isinstance(mapped_payout, Payout)
    assert mapped_payout.amount == Money(1100000, "EUR")
    assert mapped_payout.arrival_date == date(2023, 4, 5)

    txn = {
        "id": "txn_1",
        "amount": 1099,
        "currency": "usd",
        "fee": 62,
        "net": 1037,
        "type": "charge",
        "source": charge["id"],
        "available_on": 1679616000,
        "fee_details": [
            {
                "amount": 62,
                "currency": "usd",
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ],
        "created": 1679090539,
    }
    balance = normalizer.map_record("stripe", "balance_transactions", "txn_1", txn)
    assert isinstance(balance, BalanceTransaction)
    assert (balance.amount, balance.fee, balance.net) == (
        Money(1099, "USD"),
        Money(62, "USD"),
        Money(1037, "USD"),
    )
    assert balance.related == SourceRef(system="stripe", object="charges", id=charge["id"])
    assert balance.fee_details[0].amount == Money(62, "USD")


# -- Salesforce (REST API sObjects) -------------------------------------------------------

SF_ACCOUNT: dict[str, Any] = {
    "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001Hs00002"},
    "Id": "001Hs00002ABCDEFGH",
    "Name": "  Acme   Corp ",
    "Website": "acme.example",
    "Phone": "(415) 555-0100",
    "BillingStreet": "1 Market St\nSuite 300",
    "BillingCity": "San Francisco",
    "BillingState": "CA",
    "BillingPostalCode": "94105",
    "BillingCountry": "United States",
    "ShippingStreet": None,
    "CurrencyIsoCode": "USD",
    "Type": "Customer - Direct",
    "Industry": None,
    "Stripe_Customer_Id__c": "cus_NffrFeUfNV2Hib",
    "CreatedDate": "2024-01-15T10:00:00.000+0000",
    "LastModifiedDate": "2024-03-01T08:30:00.000+0000",
    "SystemModstamp": "2024-03-01T08:30:00.000+0000",
}


def test_salesforce_account_becomes_a_party(normalizer: Normalizer) -> None:
    """A Salesforce Account maps with a two-line street split and a country name resolved."""
    party = normalizer.map_record("salesforce", "Account", SF_ACCOUNT["Id"], SF_ACCOUNT)
    assert isinstance(party, Party)
    assert party.name == "Acme Corp"
    assert party.addresses == (
        Address(
            kind=AddressKind.BILLING,
            line1="1 Market St",
            line2="Suite 300",
            city="San Francisco",
            region="CA",
            postal_code="94105",
            country="US",
        ),
    )
    assert party.metadata == {
        "stripe_customer_id": "cus_NffrFeUfNV2Hib",
        "type": "Customer - Direct",
    }
    assert party.created_at == datetime(2024, 1, 15, 10, tzinfo=UTC)
    assert party.currency == "USD"


def test_salesforce_contact_and_quote(normalizer: Normalizer) -> None:
    """Contacts link to their account; quotes get a mapped status and exact decimal totals."""
    contact = normalizer.map_record(
        "salesforce",
        "Contact",
        "003A",
        {
            "AccountId": "001A",
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ADA@Acme.example",
            "Title": "CFO",
        },
    )
    assert contact == Contact(
        source=SourceRef(system="salesforce", object="Contact", id="003A"),
        party=SourceRef(system="salesforce", object="Account", id="001A"),
        first_name="Ada",
        last_name="Lovelace",
        email="ada@acme.example",
        title="CFO",
    )
    quote = normalizer.map_record(
        "salesforce",
        "Quote",
        "0Q0A",
        {
            "AccountId": "001A",
            "OpportunityId": "006A",
            "Name": "Q-000001",
            "QuoteNumber": "00000042",
            "Status": "Needs Review",
            "GrandTotal": 1234.5,
            "Subtotal": 1300.1,
            "Tax": None,
            "CurrencyIsoCode": "EUR",
            "ExpirationDate": "2024-06-30",
        },
    )
    assert isinstance(quote, Quote)
    assert quote.status is QuoteStatus.IN_REVIEW
    assert quote.total == Money(123450, "EUR")
    assert quote.subtotal == Money(130010, "EUR")
    assert quote.valid_until == date(2024, 6, 30)


def test_salesforce_price_in_a_single_currency_org(normalizer: Normalizer) -> None:
    """A pricebook entry without CurrencyIsoCode is priced in the mapping's fallback currency."""
    product = normalizer.map_record(
        "salesforce",
        "PricebookEntry",
        "01uA",
        {"Product2Id": "01tA", "UnitPrice": 199.0, "IsActive": True, "ProductCode": "PRO-M"},
    )
    assert isinstance(product, Product)
    assert product.unit_price == Money(19900, "USD")
    assert product.name == "PRO-M"


# -- QuickBooks Online (Accounting API) ---------------------------------------------------

QBO_INVOICE: dict[str, Any] = {
    "Id": "130",
    "SyncToken": "0",
    "DocNumber": "1037",
    "TxnDate": "2024-05-02",
    "DueDate": "2024-06-01",
    "CustomerRef": {"value": "58", "name": "Acme GmbH"},
    "CurrencyRef": {"value": "EUR", "name": "Euro"},
    "ExchangeRate": 1.0842,
    "Line": [
        {
            "Id": "1",
            "LineNum": 1,
            "Description": "Pro subscription",
            "Amount": 398.0,
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {
                "ItemRef": {"value": "5", "name": "Pro"},
                "UnitPrice": 199,
                "Qty": 2,
            },
        },
        {
            "Id": "2",
            "LineNum": 2,
            "Amount": 0.1,
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {
                "ItemRef": {"value": "6", "name": "Usage"},
                "UnitPrice": 0.001,
                "Qty": 100,
            },
        },
        {"Amount": 398.1, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    ],
    "TxnTaxDetail": {"TotalTax": 0},
    "TotalAmt": 398.1,
    "Balance": 398.1,
    "MetaData": {
        "CreateTime": "2024-05-02T10:15:00-07:00",
        "LastUpdatedTime": "2024-05-02T10:15:00-07:00",
    },
}


def test_quickbooks_invoice_lines_are_filtered_and_exact(normalizer: Normalizer) -> None:
    """A QuickBooks invoice keeps only sales lines, reads decimals exactly and is open."""
    result = normalizer.map_record("quickbooks", "Invoice", QBO_INVOICE["Id"], QBO_INVOICE)
    assert isinstance(result, Invoice)
    assert result.status is InvoiceStatus.OPEN
    assert result.currency == "EUR"
    assert result.total == Money(39810, "EUR")
    assert result.amount_remaining == Money(39810, "EUR")
    assert [line.amount for line in result.lines] == [Money(39800, "EUR"), Money(10, "EUR")]
    assert result.lines[0].unit_price == Money(19900, "EUR")
    assert result.lines[0].quantity == Decimal(2)
    assert result.lines[1].unit_price is None  # 0.001 EUR is finer than a cent: left out
    assert result.lines[0].product == SourceRef(system="quickbooks", object="Item", id="5")
    assert result.metadata == {"exchange_rate": "1.0842"}
    assert result.updated_at == datetime(2024, 5, 2, 17, 15, tzinfo=UTC)


def test_quickbooks_paid_invoice_and_payment(normalizer: Normalizer) -> None:
    """A zero balance means paid; a payment links to the invoices it pays."""
    paid = {**QBO_INVOICE, "Line": [QBO_INVOICE["Line"][0]], "TotalAmt": 398.0, "Balance": 0}
    assert normalizer.map_record("quickbooks", "Invoice", "130", paid).status is InvoiceStatus.PAID
    payment = normalizer.map_record(
        "quickbooks",
        "Payment",
        "77",
        {
            "Id": "77",
            "TxnDate": "2024-05-10",
            "CustomerRef": {"value": "58"},
            "TotalAmt": 398.0,
            "CurrencyRef": {"value": "EUR"},
            "Line": [{"Amount": 398.0, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}],
        },
    )
    assert isinstance(payment, Payment)
    assert payment.amount == Money(39800, "EUR")
    assert payment.invoices == (SourceRef(system="quickbooks", object="Invoice", id="130"),)
    assert payment.paid_at == datetime(2024, 5, 10, tzinfo=UTC)


def test_quickbooks_customer_in_home_currency(normalizer: Normalizer) -> None:
    """A QuickBooks customer maps display name, company name, email and phones."""
    party = normalizer.map_record(
        "quickbooks",
        "Customer",
        "58",
        {
            "Id": "58",
            "DisplayName": "Acme GmbH",
            "CompanyName": "ACME Gesellschaft mbH",
            "PrimaryEmailAddr": {"Address": "AP@acme.example"},
            "Mobile": {"FreeFormNumber": "0170 1"},
            "BillAddr": {"Line1": "Unter den Linden 1", "City": "Berlin", "Country": "Germany"},
        },
    )
    assert isinstance(party, Party)
    assert party.legal_name == "ACME Gesellschaft mbH"
    assert party.emails == ("ap@acme.example",)
    assert party.phones == ("0170 1",)
    assert party.addresses[0].country == "DE"
    assert party.currency is None


# -- failures -----------------------------------------------------------------------------


def test_failures_name_the_field_and_its_source(normalizer: Normalizer) -> None:
    """A record that cannot map raises with the canonical field, its source and the reason."""
    bad_currency = {**STRIPE_INVOICE, "currency": "zzz"}
    with pytest.raises(RecordMappingError, match=r"currency \(from currency\): unknown currency"):
        normalizer.map_record("stripe", "invoices", "in_bad", bad_currency)
    no_name = {**SF_ACCOUNT, "Name": "   "}
    with pytest.raises(RecordMappingError, match=r"name \(from Name\) is required"):
        normalizer.map_record("salesforce", "Account", "001bad", no_name)
    bad_country = {**SF_ACCOUNT, "BillingCountry": "Atlantis"}
    with pytest.raises(
        RecordMappingError, match=r"addresses\[0\]\.country \(from BillingCountry\)"
    ):
        normalizer.map_record("salesforce", "Account", "001bad", bad_country)
    bad_net = {
        "id": "txn_2",
        "amount": 100,
        "fee": 3,
        "net": 99,
        "currency": "usd",
        "type": "charge",
    }
    with pytest.raises(RecordMappingError, match=r"net .* is not amount .* minus fee"):
        normalizer.map_record("stripe", "balance_transactions", "txn_2", bad_net)


def test_unmapped_object_is_reported(normalizer: Normalizer) -> None:
    """Mapping an object no file maps raises UnmappedObjectError."""
    with pytest.raises(UnmappedObjectError):
        normalizer.map_record("stripe", "disputes", "dp_1", {})
    assert normalizer.mapper("salesforce", "Opportunity") is None


def test_user_override_changes_the_result(tmp_path: Path) -> None:
    """A user override of one field changes that field and leaves the others as shipped."""
    (tmp_path / "stripe.yaml").write_text(
        "objects:\n  customers:\n    fields:\n      name: {from: metadata.legal_name}\n"
    )
    custom = Normalizer(load_mappings(tmp_path))
    payload = {**STRIPE_CUSTOMER, "metadata": {"legal_name": "Acme Legal GmbH"}}
    party = custom.map_record("stripe", "customers", "cus_1", payload)
    assert isinstance(party, Party)
    assert party.name == "Acme Legal GmbH"
    assert party.emails == ("billing@acme.example",)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["usd", "JPY", "eur", "2024-01-15T10:00:00Z", "2024-01-15", "DE", "paid"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_DEFAULTS = Normalizer(load_mappings())
_OBJECTS = [
    (system, name) for system, file in _DEFAULTS.mappings.systems.items() for name in file.objects
]


@settings(max_examples=100, deadline=None)
@given(target=st.sampled_from(_OBJECTS), data=st.data())
def test_any_payload_maps_or_gives_a_reason(target: tuple[str, str], data: st.DataObject) -> None:
    """Whatever a vendor sends, a default mapping returns an entity or a RecordMappingError."""
    system, object_name = target
    normalizer = _DEFAULTS
    mapping = normalizer.mappings.object_mapping(system, object_name)
    assert mapping is not None
    keys = sorted({spec.split(".")[0].split("[")[0] for spec in _source_paths(mapping.fields)})
    payload = data.draw(
        st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), _JSON, max_size=8)
    )
    try:
        entity = normalizer.map_record(system, object_name, "x1", payload)
    except RecordMappingError as exc:
        reason = exc.reason
        entity = None
    else:
        reason = None
    assert (entity is None) != (reason is None)
    assert reason or entity.source == SourceRef(system=system, object=object_name, id="x1")  # type: ignore[union-attr]


def _source_paths(fields: Any) -> list[str]:
    paths: list[str] = []
    for spec in fields.values():
        sources = spec.from_ if isinstance(spec.from_, list) else [spec.from_ or spec.each or ""]
        paths.extend(path for path in sources if path)
    return paths
