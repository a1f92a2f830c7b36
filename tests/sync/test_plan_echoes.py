"""A kept plan tells the echoes of its own writes: a customer whose records came back holding
just what its last plan wrote to them is not planned again, and anything more is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.matching.persist import run_matching
from ledgerlink.store import Store
from ledgerlink.store.models import SourceRecord
from ledgerlink.sync.plan import MappedRecords, PlanReport, plan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
ACCOUNT = "001Hs00000ACME1AAA"
MODIFIED = "2026-03-01T12:30:00.000+0000"


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _land_world(store: Store, mappings: MappingSet) -> None:
    """Acme in Salesforce and, misspelt, in Stripe, matched."""
    account = {
        "Id": ACCOUNT,
        "Name": "Acme Analytics Inc",
        "BillingCity": "San Francisco",
        "BillingCountry": "United States",
        "LastModifiedDate": "2026-02-01T10:00:00.000+0000",
        "SystemModstamp": "2026-02-01T10:00:00.000+0000",
    }
    customer = {
        "id": "cus_acme",
        "object": "customer",
        "created": 1767225600,
        "name": "ACME Analytics",
        "email": "billing@acme-analytics.com",
        "metadata": {"salesforce_account_id": ACCOUNT},
    }
    store.land("salesforce", [Record("Account", ACCOUNT, account)], now=NOW)
    store.land("stripe", [Record("customers", "cus_acme", customer)], now=NOW)
    run_matching(store.engine, mappings=mappings, now=NOW)


def _merge(base: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in written.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _land_echoes(
    store: Store, mappings: MappingSet, report: PlanReport, **edits: dict[str, Any]
) -> None:
    """Land each updated record as the vendor shows it after the plan's write (Salesforce
    moving its modification time), with ``edits`` (object -> fields) someone made too."""
    with store.engine.connect() as conn:
        landed = {
            (row.system, row.object, row.external_id): row.payload
            for row in conn.execute(select(SourceRecord))  # type: ignore[call-overload]
        }
    for op in report.ops:
        if op.remote_id is None:
            continue  # a create: the push links the new record
        payload = _merge(landed[op.target, op.object, str(op.remote_id)], dict(op.payload))
        if op.target == "salesforce":
            payload |= {"LastModifiedDate": MODIFIED, "SystemModstamp": MODIFIED}
        payload |= edits.get(op.object, {})
        store.land(op.target, [Record(op.object, str(op.remote_id), payload)], now=LATER)
    run_matching(store.engine, mappings=mappings, now=LATER)


def _writes(report: PlanReport) -> list[tuple[str, str, Any]]:
    return sorted((op.target, op.object, sorted(op.payload.items())) for op in report.ops)


def test_echoes_of_the_plans_own_writes_plan_nothing(store: Store, mappings: MappingSet) -> None:
    """The Stripe name and the Account's hub values come back as sent: the customer is not
    planned again, and a plan reading everything agrees there is nothing to write."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    assert {op.target for op in first.ops} == {"salesforce", "stripe"}
    _land_echoes(store, mappings, first)

    echoed = plan(store, mappings, now=LATER, mapped=kept)
    assert (echoed.echoed, echoed.customers, echoed.queued) == (1, 0, 0)
    assert plan(store, mappings, now=LATER, dry_run=True).ops == []


def test_an_echo_carrying_an_edit_is_planned_again(store: Store, mappings: MappingSet) -> None:
    """Someone renamed the Stripe customer right after the hub's write: not an echo, so the
    customer is planned again and the name Salesforce holds is written back."""
    _land_world(store, mappings)
    kept = MappedRecords()
    first = plan(store, mappings, now=NOW, mapped=kept)
    _land_echoes(store, mappings, first, customers={"name": "Acme (old name)"})

    again = plan(store, mappings, now=LATER, mapped=kept, dry_run=True)
    assert (again.echoed, again.customers) == (0, 1)
    assert [op.payload.get("name") for op in again.ops] == ["Acme Analytics Inc"]
    assert _writes(again) == _writes(plan(store, mappings, now=LATER, dry_run=True))


def _invoice(number: int, remaining: int, **fields: Any) -> Record:
    """A Stripe invoice of Acme's Stripe customer (``remaining`` cents still due)."""
    return Record(
        "invoices",
        f"in_{number}",
        {
            "id": f"in_{number}",
            "object": "invoice",
            "customer": "cus_acme",
            "currency": "usd",
            "status": "open",
            "total": 4_900,
            "amount_due": 4_900,
            "amount_paid": 4_900 - remaining,
            "amount_remaining": remaining,
            "created": 1_767_225_600 + number,
            **fields,
        },
    )


def test_billing_that_leaves_the_hub_values_is_no_change(
    store: Store, mappings: MappingSet
) -> None:
    """An invoice amended in a way the hub values do not read (its metadata) comes back with
    the echoes: the customer is not planned again. One whose balance moves is."""
    _land_world(store, mappings)
    store.land("stripe", [_invoice(1, 1_200)], now=NOW)
    kept = MappedRecords()
    plan(store, mappings, now=NOW, mapped=kept)  # queues a QuickBooks customer's create too
    # Planned again once that create is open, as every next plan sees it until it is sent.
    second = plan(store, mappings, now=NOW + timedelta(minutes=1), mapped=kept)
    assert second.customers == 1
    _land_echoes(store, mappings, second)
    store.land("stripe", [_invoice(1, 1_200, metadata={"po": "PO-17"})], now=LATER)

    amended = plan(store, mappings, now=LATER, mapped=kept)
    assert (amended.echoed, amended.customers, amended.queued) == (1, 0, 0)
    assert plan(store, mappings, now=LATER, dry_run=True).ops == []

    store.land("stripe", [_invoice(1, 0, metadata={"po": "PO-17"})], now=LATER)
    paid = plan(store, mappings, now=LATER, mapped=kept, dry_run=True)
    assert (paid.echoed, paid.customers) == (0, 1)
    assert _writes(paid) == _writes(plan(store, mappings, now=LATER, dry_run=True)) != []
