"""The planner in whole cycles (pull, match, plan, push) against the three sandboxes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import CustomerLink, Outbox, Quarantine
from ledgerlink.sync.cycle import CycleReport, run_cycle
from ledgerlink.sync.runtime import connect

pytestmark = pytest.mark.slow
SYSTEMS = ("salesforce", "stripe", "quickbooks")


@dataclass
class World:
    """Running sandboxes, their connectors, and the records made for the scenario."""

    sandboxes: dict[str, Any]
    connectors: dict[str, Connector]
    account: str
    stripe_customer: str


def _write(connector: Connector, op: WriteOp) -> str:
    (result,) = list(connector.write([op]))
    assert result.error is None, result.error
    assert result.remote_id is not None
    return result.remote_id


@pytest.fixture
def world(store: Store, settings_of: Any) -> Iterator[World]:
    """Three small sandboxes; Northwind is an Account and a billed Stripe customer naming it."""
    secrets = DbSecretStore(store.engine, generate_key())
    sandboxes: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            sandboxes[name] = plugin.start_sandbox(SandboxOptions(seed=5, size=4))
            connectors[name] = connect(plugin, settings_of(name, sandboxes[name]), secrets)
        sf, st = connectors["salesforce"], connectors["stripe"]
        account = _write(
            sf,
            WriteOp(
                "test-sf-northwind",
                "Account",
                WriteAction.CREATE,
                {
                    "Name": "Northwind Traders Inc",
                    "Phone": "+1 415 555 0199",
                    "BillingStreet": "1 Harbor Way",
                    "BillingCity": "San Francisco",
                    "BillingPostalCode": "94105",
                    "BillingCountry": "United States",
                },
            ),
        )
        customer = _write(
            st,
            WriteOp(
                "test-stripe-northwind",
                "customers",
                WriteAction.CREATE,
                {
                    "name": "Northwind Traders",
                    "email": "billing@northwindtraders.com",
                    "metadata": {"salesforce_account_id": account},
                },
            ),
        )
        _write(
            st,
            WriteOp(
                "test-stripe-northwind-invoice",
                "invoices",
                WriteAction.CREATE,
                {
                    "customer": customer,
                    "currency": "usd",
                    "lines": [{"unit_amount": 120000, "quantity": 1, "description": "Pro"}],
                },
            ),
        )
        yield World(sandboxes, connectors, account, customer)
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in sandboxes.values():
            sandbox.stop()


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def cycle(store: Store, world: World, mappings: MappingSet, **options: Any) -> CycleReport:
    """One full cycle at the current time (the sandboxes keep real time too)."""
    return run_cycle(store, world.connectors, mappings, now=datetime.now(UTC), **options)


def account_of(world: World) -> dict[str, Any]:
    """The Northwind Account as the Salesforce sandbox holds it now."""
    record = world.sandboxes["salesforce"].org.table("Account").get(world.account)
    assert record is not None
    return dict(record)


def test_ten_cycles_settle_and_then_write_nothing(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """After the first cycles settle, cycles on unchanged data plan and send zero writes."""
    written = []
    for _ in range(10):
        report = cycle(store, world, mappings)
        assert report.plan is not None
        written.append((len(report.plan.ops), sum(p.done for p in report.pushes)))
    assert written[0][0] > 0
    assert written[-6:] == [(0, 0)] * 6, written
    with store.engine.connect() as conn:
        open_rows = conn.execute(
            select(Outbox.id).where(Outbox.status.in_(("pending", "in_flight")))  # type: ignore[attr-defined]
        ).all()
    assert open_rows == []


def test_created_quickbooks_customer_is_linked_and_written_back(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A billed customer missing in QuickBooks is created once; its id reaches Salesforce."""
    first = cycle(store, world, mappings)
    assert first.plan is not None
    creates = [
        op
        for op in first.plan.ops
        if op.target == "quickbooks"
        and op.action is WriteAction.CREATE
        and op.payload.get("DisplayName") == "Northwind Traders Inc"
    ]
    assert len(creates) == 1
    with store.engine.connect() as conn:
        link = conn.execute(
            select(CustomerLink.external_id, CustomerLink.method).where(  # type: ignore[call-overload]
                CustomerLink.customer_id == creates[0].customer_id,
                CustomerLink.system == "quickbooks",
            )
        ).one()
    assert link.method == "created"
    for _ in range(2):
        cycle(store, world, mappings)
    account = account_of(world)
    assert account["QuickBooks_Customer_Id__c"] == link.external_id
    assert account["Stripe_Customer_Id__c"] == world.stripe_customer
    assert account["Open_Balance__c"] == 1200
    assert account["Billing_Status__c"] == "none"
    assert account["Last_Invoice_Date__c"] == datetime.now(UTC).date().isoformat()
    names = [
        c["DisplayName"]
        for c in world.sandboxes["quickbooks"].company.tables["Customer"].by_id()
        if c["DisplayName"].startswith("Northwind")
    ]
    assert names == ["Northwind Traders Inc"]


def test_dry_run_plans_field_by_field_and_writes_nothing(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A dry run reports old -> new per field and leaves the outbox and the targets alone."""
    before = account_of(world)
    report = cycle(store, world, mappings, dry_run=True)
    assert report.plan is not None
    assert report.pushes == []
    update = next(
        op for op in report.plan.ops if op.target == "salesforce" and op.remote_id == world.account
    )
    change = {c.field: (c.old, c.new) for c in update.changes}
    assert change["Stripe_Customer_Id__c"] == (None, world.stripe_customer)
    with store.engine.connect() as conn:
        assert conn.execute(select(Outbox.id)).all() == []  # type: ignore[call-overload]
    assert account_of(world) == before


def test_idempotency_keys_are_stable_across_replans(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Planning the same state twice gives the same keys, and queues nothing the second time."""
    first = cycle(store, world, mappings, dry_run=True)
    second = cycle(store, world, mappings, dry_run=True)
    assert first.plan is not None
    assert second.plan is not None
    assert [op.idempotency_key for op in first.plan.ops] == [
        op.idempotency_key for op in second.plan.ops
    ]


def test_conflicting_address_edits_go_to_review_not_overwrite(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """The billing city changed in Salesforce and in Stripe: held for review, Stripe untouched."""
    for _ in range(3):
        cycle(store, world, mappings)
    world.sandboxes["salesforce"].org.touch("Account", world.account, BillingCity="Oakland")
    stripe = world.connectors["stripe"]
    _write(
        stripe,
        WriteOp(
            "test-stripe-city",
            "customers",
            WriteAction.UPDATE,
            {
                "address": {
                    "line1": "1 Harbor Way",
                    "city": "Berkeley",
                    "postal_code": "94105",
                    "country": "US",
                }
            },
            remote_id=world.stripe_customer,
        ),
    )
    report = cycle(store, world, mappings)
    assert report.plan is not None
    conflicts = [c for c in report.plan.conflicts if c.record_id == world.stripe_customer]
    assert [(c.field, c.source_value, c.target_value) for c in conflicts] == [
        ("addresses", "Oakland", "Berkeley")
    ]
    assert not any(
        op.remote_id == world.stripe_customer and "address" in op.payload for op in report.plan.ops
    )
    customer = world.sandboxes["stripe"].state.store("customer").get(world.stripe_customer)
    assert customer["address"]["city"] == "Berkeley"
    with store.engine.connect() as conn:
        held = (
            conn.execute(
                select(Quarantine.reason).where(  # type: ignore[call-overload]
                    Quarantine.stage == "plan",
                    Quarantine.external_id == world.stripe_customer,
                    Quarantine.resolved_at.is_(None),  # type: ignore[union-attr]
                )
            )
            .scalars()
            .all()
        )
    assert len(held) == 1
    assert "Oakland" in held[0]
    assert "Berkeley" in held[0]


def failed_rows(store: Store) -> list[str]:
    """The errors of the outbox rows that gave up."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(Outbox.last_error).where(Outbox.status == "failed")  # type: ignore[call-overload]
        )
        return [str(error) for error in rows.scalars()]


def test_quickbooks_create_avoids_a_name_held_by_a_quarantined_customer(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A QuickBooks customer the mapping cannot read still holds its name: no 6240.

    Its country is unknown, so it is quarantined and matched to nobody; QuickBooks still
    refuses a second "Northwind Traders Inc", so the hub creates "Northwind Traders Inc (2)".
    """
    _write(
        world.connectors["quickbooks"],
        WriteOp(
            "test-qb-unreadable",
            "Customer",
            WriteAction.CREATE,
            {"DisplayName": "Northwind Traders Inc", "BillAddr": {"Country": "Atlantis"}},
        ),
    )
    for _ in range(3):
        cycle(store, world, mappings)
    assert failed_rows(store) == []
    names = sorted(
        c["DisplayName"]
        for c in world.sandboxes["quickbooks"].company.tables["Customer"].by_id()
        if c["DisplayName"].startswith("Northwind")
    )
    assert names == ["Northwind Traders Inc", "Northwind Traders Inc (2)"]
