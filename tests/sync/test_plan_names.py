"""QuickBooks names are unique (error 6240): one plan never sends two records onto one name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.matching.persist import run_matching
from ledgerlink.store import Store
from ledgerlink.sync.plan import MappedRecords, PlanReport, plan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODIFIED = "2026-02-01T10:00:00.000+0000"
# Two companies of one name: a freight firm in Berlin and one in Leeds.
COMPANIES = {
    "001Hs00000AURBEAAA": ("Feldweg 3", "Berlin", "10115", "Germany", "aurora-freight.de"),
    "001Hs00000AURLEAAA": ("12 Wharf Street", "Leeds", "LS2 7EQ", "United Kingdom", "aurora.co.uk"),
}


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _land(
    store: Store,
    mappings: MappingSet,
    names: dict[str, str],
    accounts_named: tuple[str, str] = ("Aurora Freight", "Aurora Freight"),
) -> None:
    """Each company as a Salesforce Account (named as in ``accounts_named``) and a QuickBooks
    customer (Id -> its DisplayName in ``names``), in the companies' order."""
    accounts, customers = [], []
    for (account, (street, city, postal, country, domain)), (qb_id, display), named in zip(
        COMPANIES.items(), names.items(), accounts_named, strict=True
    ):
        accounts.append(
            Record(
                "Account",
                account,
                {
                    "Id": account,
                    "Name": named,
                    "Website": domain,
                    "BillingStreet": street,
                    "BillingCity": city,
                    "BillingPostalCode": postal,
                    "BillingCountry": country,
                    "LastModifiedDate": MODIFIED,
                    "SystemModstamp": MODIFIED,
                    "QuickBooks_Customer_Id__c": qb_id,
                },
            )
        )
        customers.append(
            Record(
                "Customer",
                qb_id,
                {
                    "Id": qb_id,
                    "DisplayName": display,
                    "WebAddr": {"URI": f"https://{domain}"},
                    "BillAddr": {"Line1": street, "City": city, "PostalCode": postal},
                    "SyncToken": "0",
                    "MetaData": {"LastUpdatedTime": "2026-02-01T10:00:00Z"},
                },
            )
        )
    store.land("salesforce", accounts, now=NOW)
    store.land("quickbooks", customers, now=NOW)
    run_matching(store.engine, mappings, now=NOW)


def _renames(store: Store, mappings: MappingSet) -> dict[str, str]:
    return _renamed(plan(store, mappings, now=NOW, dry_run=True))


def _renamed(report: PlanReport) -> dict[str, str]:
    """QuickBooks customer id -> the name the plan gives it."""
    return {
        str(op.remote_id): op.payload["DisplayName"]
        for op in report.ops
        if op.target == "quickbooks" and "DisplayName" in op.payload
    }


def test_two_customers_of_one_name_do_not_both_take_it(store: Store, mappings: MappingSet) -> None:
    """Both QuickBooks customers would take the name their Account holds: the first planned
    takes it, the other keeps its own (QuickBooks would refuse the second write)."""
    _land(store, mappings, {"71": "Aurora Freight GmbH", "72": "AURORA FREIGHT LTD"})
    renames = _renames(store, mappings)
    assert list(renames.values()) == ["Aurora Freight"]


def test_a_name_a_landed_customer_holds_is_not_taken(store: Store, mappings: MappingSet) -> None:
    """One QuickBooks customer already holds the name: the other is not renamed onto it."""
    _land(store, mappings, {"71": "Aurora Freight", "72": "AURORA FREIGHT LTD"})
    assert _renames(store, mappings) == {}


def test_a_name_freed_later_is_taken_by_the_customer_it_was_kept_from(
    store: Store, mappings: MappingSet
) -> None:
    """The Leeds firm's QuickBooks customer holds "Aurora Freight", the Berlin firm's golden
    name: the Berlin customer keeps its own until the Leeds one is renamed (to its Account's
    name), then the next kept plan renames it, though nothing of its own changed."""
    _land(
        store,
        mappings,
        {"71": "Aurora Freight GmbH", "72": "Aurora Freight"},
        accounts_named=("Aurora Freight", "Aurora Freight Leeds Ltd"),
    )
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    assert _renamed(first) == {"72": "Aurora Freight Leeds Ltd"}

    later = NOW + timedelta(hours=1)
    leeds = {
        "Id": "72",
        "DisplayName": "Aurora Freight Leeds Ltd",
        "WebAddr": {"URI": "https://aurora.co.uk"},
        "BillAddr": {"Line1": "12 Wharf Street", "City": "Leeds", "PostalCode": "LS2 7EQ"},
        "SyncToken": "1",
        "MetaData": {"LastUpdatedTime": "2026-03-01T12:30:00Z"},
    }
    store.land("quickbooks", [Record("Customer", "72", leeds)], now=later)
    run_matching(store.engine, mappings, now=later)
    freed = plan(store, mappings, now=later, mapped=kept, dry_run=True)
    assert _renamed(freed) == {"71": "Aurora Freight"}
