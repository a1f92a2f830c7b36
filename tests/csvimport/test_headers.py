"""Export headers of each vendor resolve to the API field paths their connector lands."""

from __future__ import annotations

import pytest

from ledgerlink.csvimport import (
    UnknownObjectError,
    UnknownSystemError,
    object_spec,
    resolve_columns,
)


def paths(system: str, obj: str, headers: list[str], **overrides: str) -> list[str]:
    return [".".join(c.path) for c in resolve_columns(system, obj, headers, overrides)]


def test_stripe_dashboard_headers() -> None:
    """Stripe's dashboard customer export headers map to the customer's API fields."""
    headers = [
        "id",
        "Email",
        "Name",
        "Description",
        "Address Line1",
        "Address City",
        "Address Country",
        "Address Zip",
        "Created (UTC)",
        "sf_account_id (metadata)",
    ]
    assert paths("stripe", "customers", headers) == [
        "id",
        "email",
        "name",
        "description",
        "address.line1",
        "address.city",
        "address.country",
        "address.postal_code",
        "created",
        "metadata.sf_account_id",
    ]


def test_salesforce_report_labels_and_data_loader_names() -> None:
    """Salesforce report labels and Data Loader's upper-case API names give the sObject fields."""
    report = ["Account ID", "Account Name", "Billing City", "Billing Zip/Postal Code", "Website"]
    assert paths("salesforce", "Account", report) == [
        "Id",
        "Name",
        "BillingCity",
        "BillingPostalCode",
        "Website",
    ]
    loader = ["ID", "NAME", "BILLINGCOUNTRY", "PHONE", "STRIPE_CUSTOMER_ID__C"]
    assert paths("salesforce", "Account", loader) == [
        "Id",
        "Name",
        "BillingCountry",
        "Phone",
        "Stripe_Customer_Id__c",
    ]


def test_quickbooks_customer_list_headers() -> None:
    """QuickBooks customer list headers map into the Customer's nested API fields."""
    headers = [
        "Id",
        "Customer",
        "Company name",
        "Email",
        "Phone",
        "Billing address",
        "Billing city",
    ]
    assert paths("quickbooks", "Customer", headers) == [
        "Id",
        "DisplayName",
        "CompanyName",
        "PrimaryEmailAddr.Address",
        "PrimaryPhone.FreeFormNumber",
        "BillAddr.Line1",
        "BillAddr.City",
    ]


def test_nested_fields_by_underscore_or_dot() -> None:
    """Nested API fields written with `_` or `.` resolve to the same nested path."""
    assert paths("stripe", "customers", ["address_line1", "shipping_address_postal_code"]) == [
        "address.line1",
        "shipping.address.postal_code",
    ]
    assert paths("stripe", "customers", ["address.line1", "invoice_settings_footer"]) == [
        "address.line1",
        "invoice_settings.footer",
    ]
    assert paths("quickbooks", "Customer", ["BillAddr_City", "BillAddr.PostalCode"]) == [
        "BillAddr.City",
        "BillAddr.PostalCode",
    ]
    assert paths("quickbooks", "Customer", ["PrimaryEmailAddr", "tax_exempt_reason"]) == [
        "PrimaryEmailAddr.Address",
        "tax_exempt_reason",
    ]


def test_map_option_overrides_headers() -> None:
    """`--map col=field` decides what an unrecognised (or recognised) column holds."""
    assert paths(
        "stripe", "customers", ["Kunden-ID", "Ort"], **{"Kunden-ID": "id", "ort": "address_city"}
    ) == [
        "id",
        "address.city",
    ]


def test_object_names_accept_stream_and_api_names() -> None:
    """Stripe's `customer` and `customers` both land under the connector's stream name."""
    assert object_spec("stripe", "customer").name == "customers"
    assert object_spec("Stripe", "CUSTOMERS").name == "customers"
    assert object_spec("salesforce", "account").name == "Account"


def test_unknown_system_and_object_list_the_known_ones() -> None:
    """An unknown system or object is refused with the list of known names."""
    with pytest.raises(UnknownSystemError, match="salesforce, stripe"):
        object_spec("hubspot", "customers")
    with pytest.raises(UnknownObjectError, match="Account, Contact"):
        object_spec("salesforce", "Lead")
