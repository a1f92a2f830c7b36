"""The planner on hand-made landed records: what becomes a write, and where it goes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.matching.persist import run_matching
from ledgerlink.store import Store
from ledgerlink.sync.plan import plan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNT = "001Hs00000ACME1AAA"


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def land(store: Store, stripe_fields: dict[str, Any]) -> None:
    """Acme as a Salesforce Account and a Stripe customer that names it in its metadata."""
    store.land(
        "salesforce",
        [
            Record(
                "Account",
                ACCOUNT,
                {
                    "Id": ACCOUNT,
                    "Name": "Acme Analytics Inc",
                    "BillingStreet": "100 Market Street",
                    "BillingCity": "San Francisco",
                    "BillingCountry": "United States",
                    "LastModifiedDate": "2026-02-01T10:00:00.000+0000",
                    "SystemModstamp": "2026-02-01T10:00:00.000+0000",
                    "Stripe_Customer_Id__c": "cus_acme",
                },
            )
        ],
        now=NOW,
    )
    payload = {
        "id": "cus_acme",
        "object": "customer",
        "created": 1767225600,
        "email": "billing@acme-analytics.com",
        "metadata": {"salesforce_account_id": ACCOUNT},
        **stripe_fields,
    }
    store.land("stripe", [Record("customers", "cus_acme", payload)], now=NOW)
    run_matching(store.engine, mappings=load_mappings(), now=NOW)


def test_fields_go_only_to_systems_that_are_not_their_source_of_truth(
    store: Store, mappings: MappingSet
) -> None:
    """Salesforce owns the name: Stripe gets it; Salesforce only gets hub values back."""
    land(store, {"name": "ACME Analytics"})
    report = plan(store, mappings, now=NOW, dry_run=True)
    by_target = {op.target: op for op in report.ops}
    assert by_target["stripe"].payload["name"] == "Acme Analytics Inc"
    written_to_salesforce = set(by_target["salesforce"].payload)
    assert written_to_salesforce <= set(mappings.systems["salesforce"].objects["Account"].writes)
    assert "Name" not in written_to_salesforce


def test_only_changes_become_writes(store: Store, mappings: MappingSet) -> None:
    """A Stripe customer already holding the Account's name and address gets no such write."""
    land(
        store,
        {
            "name": "Acme Analytics Inc",
            "address": {"line1": "100 Market Street", "city": "San Francisco", "country": "US"},
        },
    )
    report = plan(store, mappings, now=NOW, dry_run=True)
    stripe_ops = [op for op in report.ops if op.target == "stripe"]
    assert all("name" not in op.payload and "address" not in op.payload for op in stripe_ops)
    # The Account already names the Stripe customer: that hub field is not written again.
    salesforce = next(op for op in report.ops if op.target == "salesforce")
    assert "Stripe_Customer_Id__c" not in salesforce.payload


def test_a_stored_plan_queues_once(store: Store, mappings: MappingSet) -> None:
    """Planning twice without any change queues the writes the first time only."""
    land(store, {"name": "ACME Analytics"})
    first = plan(store, mappings, now=NOW)
    second = plan(store, mappings, now=NOW)
    assert first.queued == len(first.ops) > 0
    assert second.queued == 0
    # Stripe still shows the old name until the write lands: the same write, the same key.
    assert {op.idempotency_key for op in second.ops} <= {op.idempotency_key for op in first.ops}
    assert any(op.target == "stripe" for op in second.ops)


def test_naive_time_is_refused(store: Store, mappings: MappingSet) -> None:
    """`now` must be timezone-aware."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(store, mappings, now=datetime(2026, 3, 1))
