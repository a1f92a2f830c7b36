"""Round trip: a sandbox's customers exported as the vendor's CSV and imported land what a pull lands.

For each system, the party object is read through the connector from its sandbox (over real
loopback sockets) and landed as a sync would; the same records are written as the vendor's
export file (its export labels, its date and address formats) and imported. The mapping layer
must then produce the same canonical entities from both landings.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledgerlink.connector import (
    ConnectorContext,
    Cursor,
    Record,
    SandboxOptions,
    load_plugin,
)
from ledgerlink.csvimport import import_file
from ledgerlink.mapping import Normalizer, load_mappings
from ledgerlink.store import Store

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


def pull(system: str, stream: str) -> list[Record]:
    """Read one stream from the system's seeded sandbox through its connector."""
    plugin = load_plugin(system)
    sandbox = plugin.start_sandbox(SandboxOptions(seed=7, size=30))
    try:
        connector = plugin.connect(
            sandbox.connector_settings(), ConnectorContext(secrets=MemorySecrets())
        )
        try:
            return [r for page in connector.read(stream, Cursor()) for r in page.records]
        finally:
            close = getattr(connector, "close", None)
            if close is not None:
                close()
    finally:
        sandbox.stop()


def get(payload: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        payload = payload.get(key) if isinstance(payload, dict) else None
    return payload


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stripe_export(records: list[Record]) -> tuple[list[str], Iterator[list[str]]]:
    """Stripe dashboard customer export: labels, `Created (UTC)` dates, metadata columns."""
    columns = {
        "id": "id",
        "Description": "description",
        "Email": "email",
        "Name": "name",
        "Phone": "phone",
        "Currency": "currency",
        "Delinquent": "delinquent",
        "Address Line1": "address.line1",
        "Address Line2": "address.line2",
        "Address City": "address.city",
        "Address State": "address.state",
        "Address Country": "address.country",
        "Address Zip": "address.postal_code",
    }
    keys = sorted({k for r in records for k in (r.payload.get("metadata") or {})})

    def row(payload: Any) -> list[str]:
        created = datetime.fromtimestamp(payload["created"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        meta = payload.get("metadata") or {}
        return [
            *(cell(get(payload, path)) for path in columns.values()),
            created,
            *(cell(meta.get(k)) for k in keys),
        ]

    header = [*columns, "Created (UTC)", *(f"{k} (metadata)" for k in keys)]
    return header, (row(r.payload) for r in records)


def labelled_export(columns: dict[str, str]) -> Callable[[list[Record]], Any]:
    """An export whose columns are vendor labels (or API names) of the given payload paths."""

    def export(records: list[Record]) -> tuple[list[str], Iterator[list[str]]]:
        return list(columns), (
            [cell(get(r.payload, path)) for path in columns.values()] for r in records
        )

    return export


SALESFORCE_REPORT = labelled_export(
    {
        "Account ID": "Id",
        "Account Name": "Name",
        "Type": "Type",
        "Industry": "Industry",
        "Website": "Website",
        "Phone": "Phone",
        "Billing Street": "BillingStreet",
        "Billing City": "BillingCity",
        "Billing State/Province": "BillingState",
        "Billing Zip/Postal Code": "BillingPostalCode",
        "Billing Country": "BillingCountry",
        "Employees": "NumberOfEmployees",
        "Account Currency": "CurrencyIsoCode",
        "Created Date": "CreatedDate",
        "Last Modified Date": "LastModifiedDate",
        "STRIPE_CUSTOMER_ID__C": "Stripe_Customer_Id__c",
    }
)
QUICKBOOKS_LIST = labelled_export(
    {
        "Id": "Id",
        "Customer": "DisplayName",
        "Company name": "CompanyName",
        "Email": "PrimaryEmailAddr.Address",
        "Phone": "PrimaryPhone.FreeFormNumber",
        "Mobile": "Mobile.FreeFormNumber",
        "Website": "WebAddr.URI",
        "Billing street": "BillAddr.Line1",
        "BillAddr_Line2": "BillAddr.Line2",
        "Billing city": "BillAddr.City",
        "Billing state": "BillAddr.CountrySubDivisionCode",
        "Billing zip": "BillAddr.PostalCode",
        "Billing country": "BillAddr.Country",
        "Shipping street": "ShipAddr.Line1",
        "ShipAddr.Line2": "ShipAddr.Line2",
        "Shipping city": "ShipAddr.City",
        "Shipping state": "ShipAddr.CountrySubDivisionCode",
        "Shipping zip": "ShipAddr.PostalCode",
        "Shipping country": "ShipAddr.Country",
        "Currency": "CurrencyRef.value",
        "MetaData_CreateTime": "MetaData.CreateTime",
        "MetaData.LastUpdatedTime": "MetaData.LastUpdatedTime",
    }
)

CASES = {
    # system: (stream, object name in the mapping, export writer, CSV encoding)
    "stripe": ("customers", "customers", stripe_export, "utf-8"),
    "salesforce": ("Account", "Account", SALESFORCE_REPORT, "utf-8-sig"),
    "quickbooks": ("Customer", "Customer", QUICKBOOKS_LIST, "utf-8"),
}


@pytest.mark.parametrize("system", list(CASES))
def test_export_import_maps_like_the_api_pull(system: str, store: Store, tmp_path: Path) -> None:
    """A vendor CSV export of sandbox data imports to the same canonical entities as the pull."""
    stream, mapped_object, export, encoding = CASES[system]
    records = [r for r in pull(system, stream) if not r.deleted]
    assert len(records) >= 10
    normalizer = Normalizer(load_mappings())

    def entities() -> dict[str, Any]:
        found = {}
        for record in records:
            landed = store.get_source_record(system, stream, record.id)
            assert landed is not None
            entity = normalizer.map_record(system, mapped_object, record.id, landed.payload)
            found[record.id] = entity.model_dump()
        return found

    store.land(system, records, now=NOW)
    from_api = entities()
    # The comparison covers real content: names, and addresses on most records.
    assert all(entity["name"] for entity in from_api.values())
    assert sum(1 for entity in from_api.values() if entity["addresses"]) > len(records) // 2

    path = tmp_path / f"{system}.csv"
    header, rows = export(records)
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    summary = import_file(store, path, system=system, object_name=stream, now=NOW)
    assert summary.problems == []
    assert summary.rows == len(records)
    assert summary.landed == len(records)

    assert entities() == from_api
