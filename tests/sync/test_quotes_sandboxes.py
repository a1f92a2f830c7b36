"""Accepted quotes billed in Stripe, in whole cycles against the Salesforce and Stripe sandboxes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import Outbox, Quarantine
from ledgerlink.sync.cycle import CycleCache, CycleReport, run_cycle
from ledgerlink.sync.quotes import plan_quotes

SYSTEMS = ("salesforce", "stripe")


@dataclass
class World:
    """Running sandboxes, their connectors, and the seeded deals by name."""

    sandboxes: dict[str, Any]
    connectors: dict[str, Connector]
    deals: dict[str, Any]


@pytest.fixture
def world(store: Store) -> Iterator[World]:
    """A small org with three quotes accepted now, and a Stripe account with one-time prices."""
    secrets = DbSecretStore(store.engine, generate_key())
    sandboxes: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            sandboxes[name] = plugin.start_sandbox(SandboxOptions(seed=5, size=6))
        sandboxes["stripe"].seed_one_time_prices()
        deals = {deal.name: deal for deal in sandboxes["salesforce"].seed_accepted_quotes()}
        for name in SYSTEMS:
            plugin = load_plugin(name)
            connectors[name] = connect_plugin(plugin, sandboxes[name], secrets)
        yield World(sandboxes, connectors, deals)
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in sandboxes.values():
            sandbox.stop()


def connect_plugin(plugin: Any, sandbox: Any, secrets: DbSecretStore) -> Connector:
    """Connect ``plugin`` to its running sandbox."""
    from ledgerlink.sync.runtime import connect

    return connect(plugin, sandbox.connector_settings(), secrets)


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def cycle(
    store: Store, world: World, mappings: MappingSet, cache: CycleCache | None = None
) -> CycleReport:
    """One full cycle at the current time (the sandboxes keep real time too)."""
    return run_cycle(store, world.connectors, mappings, now=datetime.now(UTC), cache=cache)


def stripe_objects(world: World, kind: str, quote_id: str) -> list[dict[str, Any]]:
    """Objects of ``kind`` the Stripe sandbox holds for the deal ``quote_id``."""
    added = world.sandboxes["stripe"].state.store(kind).added.values()
    return [
        obj
        for obj in added
        if obj is not None and (obj.get("metadata") or {}).get("salesforce_quote_id") == quote_id
    ]


def lookup_keys(subscription: dict[str, Any]) -> dict[str, int]:
    """Lookup key -> quantity of a subscription's items."""
    return {item["price"]["lookup_key"]: item["quantity"] for item in subscription["items"]["data"]}


def quote(world: World, name: str) -> dict[str, Any]:
    """The seeded quote ``name`` as the Salesforce sandbox holds it now."""
    record = world.sandboxes["salesforce"].org.table("Quote").get(world.deals[name].quote_id)
    assert record is not None
    return dict(record)


def test_accepted_quote_makes_one_subscription_across_cycles(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """An accepted quote gets one Stripe customer and one subscription, however many cycles run."""
    deal = world.deals["Pro for the team"]
    for _ in range(5):
        cycle(store, world, mappings)
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    assert lookup_keys(subscription) == {"pro_usd": 3, "extra_seat_usd": 5}
    assert subscription["metadata"]["salesforce_object"] == "Quote"
    customer = world.sandboxes["stripe"].billing.get("customer", subscription["customer"])
    assert customer["metadata"]["salesforce_account_id"] == deal.account_id
    created = [
        c
        for c in world.sandboxes["stripe"].state.store("customer").added.values()
        if c and c["metadata"].get("salesforce_account_id") == deal.account_id
    ]
    assert len(created) == 1
    report = cycle(store, world, mappings)
    assert report.quotes is not None
    assert not [op for op in report.quotes.ops if op.target == "stripe"]
    assert len(stripe_objects(world, "subscription", deal.quote_id)) == 1


def test_amended_quote_updates_the_subscription(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """New and changed lines on a billed quote change the subscription's items, not add one."""
    deal = world.deals["Pro for the team"]
    for _ in range(3):
        cycle(store, world, mappings)
    org = world.sandboxes["salesforce"].org
    org.touch("QuoteLineItem", deal.line_ids[0], Quantity=4.0)
    org.insert(
        "QuoteLineItem",
        {
            "QuoteId": deal.quote_id,
            "Product2Id": org.table("Product2").id_for(0),
            "PricebookEntryId": org.table("PricebookEntry").id_for(0),
            "Quantity": 1.0,
            "UnitPrice": 49.0,
            "TotalPrice": 49.0,
        },
    )
    report = cycle(store, world, mappings)
    cycle(store, world, mappings)
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    assert lookup_keys(subscription) == {"pro_usd": 4, "extra_seat_usd": 5, "starter_usd": 1}
    assert report.quotes is not None
    assert [n for n in report.quotes.notes if "Stripe price" in n] == [
        f"Quote {deal.quote_id}: STR-M quoted at 49.00 USD a unit, Stripe price "
        f"{subscription['items']['data'][-1]['price']['id']} bills 19.00 USD"
    ]


def test_kept_records_bill_amend_and_mark_a_deal_as_fresh_reads_do(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Cycles of a long-running process (a kept cache: each plan reads only what changed) bill
    an accepted quote once, follow an amended line, and mark the quote invoiced, then paid."""
    deal = world.deals["Pro for the team"]
    kept = CycleCache()
    for _ in range(4):
        cycle(store, world, mappings, kept)
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    assert lookup_keys(subscription) == {"pro_usd": 3, "extra_seat_usd": 5}
    assert (quote(world, deal.name)["Invoiced__c"], quote(world, deal.name)["Paid__c"]) == (
        True,
        False,
    )
    world.sandboxes["salesforce"].org.touch("QuoteLineItem", deal.line_ids[0], Quantity=4.0)
    world.sandboxes["stripe"].billing.pay_invoice(
        subscription["latest_invoice"], {"paid_out_of_band": True}
    )
    for _ in range(3):
        cycle(store, world, mappings, kept)
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    assert lookup_keys(subscription) == {"pro_usd": 4, "extra_seat_usd": 5}
    assert quote(world, deal.name)["Paid__c"] is True
    report = cycle(store, world, mappings, kept)
    assert report.quotes is not None
    assert report.quotes.ops == []


def test_one_time_quote_gives_one_invoice(store: Store, world: World, mappings: MappingSet) -> None:
    """A quote of one-time products becomes one finalized invoice with the mapped price."""
    deal = world.deals["Onboarding package"]
    for _ in range(4):
        cycle(store, world, mappings)
    assert stripe_objects(world, "subscription", deal.quote_id) == []
    (invoice,) = stripe_objects(world, "invoice", deal.quote_id)
    assert invoice["status"] == "open"
    assert invoice["collection_method"] == "send_invoice"
    lines = [(line["price"]["lookup_key"], line["quantity"]) for line in invoice["lines"]["data"]]
    assert lines == [("onboarding_usd", 1)]
    assert invoice["amount_due"] == 250_000


def test_unmapped_product_is_quarantined_and_not_billed(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A quote for a product without a Stripe price is held at stage plan with the reason."""
    deal = world.deals["Enterprise yearly"]
    for _ in range(2):
        cycle(store, world, mappings)
    assert stripe_objects(world, "subscription", deal.quote_id) == []
    assert stripe_objects(world, "invoice", deal.quote_id) == []
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(Quarantine.stage, Quarantine.reason, Quarantine.resolved_at).where(  # type: ignore[call-overload]
                Quarantine.system == "salesforce",
                Quarantine.object == "Quote",
                Quarantine.external_id == deal.quote_id,
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].stage == "plan"
    assert "ENT-Y" in rows[0].reason
    assert rows[0].resolved_at is None


def test_fixed_quote_leaves_quarantine_and_is_billed(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Once the held quote's line names a mapped product, its row is resolved and it is billed."""
    deal = world.deals["Enterprise yearly"]
    cycle(store, world, mappings)
    org = world.sandboxes["salesforce"].org
    org.touch("QuoteLineItem", deal.line_ids[0], Product2Id=org.table("Product2").id_for(1))
    org.touch("Quote", deal.quote_id)
    for _ in range(3):
        cycle(store, world, mappings)
    with store.engine.connect() as conn:
        resolved = conn.execute(
            select(Quarantine.resolved_at).where(  # type: ignore[call-overload]
                Quarantine.object == "Quote", Quarantine.external_id == deal.quote_id
            )
        ).scalar_one()
    assert resolved is not None
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    assert lookup_keys(subscription) == {"pro_usd": 1}


def test_quotes_accepted_before_the_window_are_not_billed(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Deals that changed long before the plan are history: nothing is queued for them."""
    cycle(store, world, mappings)
    later = datetime.now(UTC) + timedelta(days=45)
    report = plan_quotes(store, mappings, now=later, dry_run=True)
    assert report.ops == []
    assert report.deals >= 3
    assert any("billing window" in note for note in report.notes)
    generated = [
        quote_id
        for quote_id, record in world_quotes(world)
        if record["Status"] == "Accepted"
        and quote_id not in {d.quote_id for d in world.deals.values()}
    ]
    for quote_id in generated:
        assert stripe_objects(world, "subscription", quote_id) == []


def test_dry_run_reports_the_billing_and_queues_nothing(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A dry run lists the Stripe customer creates and leaves the outbox and Stripe alone."""
    report = run_cycle(store, world.connectors, mappings, now=datetime.now(UTC), dry_run=True)
    assert report.quotes is not None
    creates = [op for op in report.quotes.ops if op.object == "customers"]
    assert {op.payload["salesforce_account_id"] for op in creates} == {
        d.account_id for d in world.deals.values() if d.name != "Enterprise yearly"
    }
    with store.engine.connect() as conn:
        assert conn.execute(select(Outbox.id)).all() == []  # type: ignore[call-overload]
    assert not any(world.sandboxes["stripe"].state.store("customer").added.values())


def world_quotes(world: World) -> list[tuple[str, dict[str, Any]]]:
    """Every quote of the Salesforce sandbox, generated ones included."""
    table = world.sandboxes["salesforce"].org.table("Quote")
    return [(record["Id"], record) for record in table.scan()]


def test_invoiced_then_paid_status_reaches_the_quote(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """The quote shows invoiced once Stripe issues the invoice, and paid once it is paid."""
    deal = world.deals["Pro for the team"]
    for _ in range(4):
        cycle(store, world, mappings)
    assert (quote(world, deal.name)["Invoiced__c"], quote(world, deal.name)["Paid__c"]) == (
        True,
        False,
    )
    (subscription,) = stripe_objects(world, "subscription", deal.quote_id)
    billing = world.sandboxes["stripe"].billing
    billing.pay_invoice(subscription["latest_invoice"], {"paid_out_of_band": True})
    for _ in range(2):
        cycle(store, world, mappings)
    assert (quote(world, deal.name)["Invoiced__c"], quote(world, deal.name)["Paid__c"]) == (
        True,
        True,
    )


def test_won_opportunity_without_quote_is_billed_and_marked(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A Closed Won Opportunity with lines and no quote gets its subscription and status."""
    org = world.sandboxes["salesforce"].org
    account_id = org.table("Account").id_for(4)
    opportunity = org.insert(
        "Opportunity",
        {
            "AccountId": account_id,
            "Name": "Starter seats",
            "StageName": "Closed Won",
            "CloseDate": datetime.now(UTC).date().isoformat(),
            "Amount": 38.0,
            "CurrencyIsoCode": "USD",
            "IsWon": True,
            "IsClosed": True,
        },
    )
    org.insert(
        "OpportunityLineItem",
        {
            "OpportunityId": opportunity["Id"],
            "Product2Id": org.table("Product2").id_for(0),
            "PricebookEntryId": org.table("PricebookEntry").id_for(0),
            "Quantity": 2.0,
            "UnitPrice": 19.0,
            "TotalPrice": 38.0,
        },
    )
    for _ in range(4):
        cycle(store, world, mappings)
    (subscription,) = stripe_objects(world, "subscription", opportunity["Id"])
    assert subscription["metadata"]["salesforce_object"] == "Opportunity"
    assert lookup_keys(subscription) == {"starter_usd": 2}
    won = org.table("Opportunity").get(opportunity["Id"])
    assert (won["Invoiced__c"], won["Paid__c"]) == (True, False)


def test_status_fields_the_connector_does_not_read_are_written_once(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """When the pull leaves out Invoiced__c and Paid__c, the status is still written only once."""
    from ledgerlink_salesforce.streams import DEFAULT_FIELDS

    from ledgerlink.sync.runtime import connect

    settings = world.sandboxes["salesforce"].connector_settings()
    settings["fields"]["Quote"] = [*DEFAULT_FIELDS["Quote"], "CurrencyIsoCode"]
    secrets = DbSecretStore(store.engine, generate_key())
    world.connectors["salesforce"].close()
    world.connectors["salesforce"] = connect(load_plugin("salesforce"), settings, secrets)
    deal = world.deals["Pro for the team"]
    writes = []
    for _ in range(7):
        report = cycle(store, world, mappings)
        assert report.quotes is not None
        writes.extend(op for op in report.quotes.ops if op.remote_id == deal.quote_id)
    assert [(op.object, dict(op.payload)) for op in writes] == [
        ("Quote", {"Invoiced__c": True, "Paid__c": False})
    ]
    assert quote(world, deal.name)["Invoiced__c"] is True
