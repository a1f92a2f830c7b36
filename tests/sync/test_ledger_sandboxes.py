"""Ledger posting in whole cycles against the Stripe and QuickBooks sandboxes, with invariants."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ledgerlink_quickbooks.accounts import ensure_accounts
from sqlalchemy import select

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import CustomerLink, Outbox, Quarantine
from ledgerlink.sync.cycle import CycleReport, run_cycle
from ledgerlink.sync.ledger import LedgerOptions, plan_ledger, reconcile, tie_payout
from ledgerlink.sync.push import push
from ledgerlink.sync.runtime import connect

SYSTEMS = ("stripe", "quickbooks")


@dataclass
class World:
    """Running sandboxes, their connectors and the scenario's Stripe customers and invoices."""

    sandboxes: dict[str, Any]
    connectors: dict[str, Connector]
    customers: dict[str, str]
    invoices: list[str]

    @property
    def stripe(self) -> Any:
        return self.sandboxes["stripe"]

    @property
    def company(self) -> Any:
        return self.sandboxes["quickbooks"].company


def _write(connector: Connector, op: WriteOp) -> str:
    (result,) = list(connector.write([op]))
    assert result.error is None, result.error
    assert result.remote_id is not None
    return result.remote_id


def _customer(world: World, key: str, name: str, email: str) -> None:
    world.customers[key] = _write(
        world.connectors["stripe"],
        WriteOp(f"test-{key}", "customers", WriteAction.CREATE, {"name": name, "email": email}),
    )


def _invoice(world: World, key: str, customer: str, currency: str, lines: list[Any]) -> str:
    invoice = _write(
        world.connectors["stripe"],
        WriteOp(
            f"test-invoice-{key}",
            "invoices",
            WriteAction.CREATE,
            {"customer": world.customers[customer], "currency": currency, "lines": lines},
        ),
    )
    world.invoices.append(invoice)
    return invoice


def _pay(world: World, invoice: str) -> str:
    """Pay an open invoice by card and settle its balance transaction (with the fee)."""
    world.stripe.billing.pay_invoice(invoice, {"payment_method": "pm_card_visa"})
    world.stripe.billing.settle_charges()
    charge: str = world.stripe.billing.get("invoice", invoice)["charge"]
    return charge


@pytest.fixture
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


@pytest.fixture
def world(store: Store, mappings: MappingSet) -> Iterator[World]:
    """Small sandboxes, the ledger accounts in QuickBooks, two billed USD customers."""
    secrets = DbSecretStore(store.engine, generate_key())
    sandboxes: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            sandboxes[name] = plugin.start_sandbox(SandboxOptions(seed=11, size=1))
            connectors[name] = connect(plugin, sandboxes[name].connector_settings(), secrets)
        ensure_accounts(connectors["quickbooks"], mappings.accounts.accounts)  # type: ignore[arg-type]
        world = World(sandboxes, connectors, {}, [])
        _customer(world, "north", "Northwind Traders", "billing@northwindtraders.com")
        _customer(world, "fabri", "Fabrikam Robotics", "ap@fabrikam-robotics.io")
        pro = {"unit_amount": 49_900, "quantity": 2, "description": "Pro"}
        _invoice(world, "n1", "north", "usd", [pro, {"unit_amount": 1_250, "quantity": 3}])
        _invoice(world, "n2", "north", "usd", [{"unit_amount": 20_000, "quantity": 1}])
        _invoice(world, "f1", "fabri", "usd", [{"unit_amount": 7_300, "quantity": 1}])
        yield world
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in sandboxes.values():
            sandbox.stop()


def cycle(store: Store, world: World, mappings: MappingSet) -> CycleReport:
    """One full cycle (pull, match, plan customers and ledger, push) at the current time."""
    return run_cycle(store, world.connectors, mappings, now=datetime.now(UTC))


def settle(store: Store, world: World, mappings: MappingSet, cycles: int = 5) -> CycleReport:
    """Run cycles until a ledger plan queues nothing; return the last report."""
    report = cycle(store, world, mappings)
    for _ in range(cycles - 1):
        report = cycle(store, world, mappings)
        assert report.ledger is not None
        if report.ledger.queued == 0 and not report.ledger.waiting:
            break
    return report


def _quickbooks_customer(store: Store, world: World, key: str) -> str:
    with store.engine.connect() as conn:
        golden = conn.execute(
            select(CustomerLink.customer_id).where(  # type: ignore[call-overload]
                CustomerLink.system == "stripe",
                CustomerLink.external_id == world.customers[key],
            )
        ).scalar_one()
        return str(
            conn.execute(
                select(CustomerLink.external_id).where(  # type: ignore[call-overload]
                    CustomerLink.customer_id == golden, CustomerLink.system == "quickbooks"
                )
            ).scalar_one()
        )


def _stripe_invoice_totals(world: World, key: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice_id in world.invoices:
        invoice = world.stripe.billing.get("invoice", invoice_id)
        if invoice["customer"] == world.customers[key]:
            totals[invoice["currency"].upper()] += Decimal(invoice["total"]) / 100
    return dict(totals)


def _quickbooks_invoice_totals(world: World, customer_id: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in world.company.tables["Invoice"].by_id():
        if invoice["CustomerRef"]["value"] == customer_id:
            totals[invoice["CurrencyRef"]["value"]] += Decimal(str(invoice["TotalAmt"]))
    return dict(totals)


def _notes(world: World, entity: str) -> list[str]:
    return [
        str(doc.get("PrivateNote"))
        for doc in world.company.tables[entity].by_id()
        if "stripe:" in str(doc.get("PrivateNote") or "")
    ]


def test_invoices_and_payments_post_once_and_balance(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Invoices and charges post once per Stripe object; totals match and the books balance."""
    charges = [_pay(world, world.invoices[0]), _pay(world, world.invoices[2])]
    settle(store, world, mappings)
    for key in ("north", "fabri"):
        quickbooks_customer = _quickbooks_customer(store, world, key)
        assert _quickbooks_invoice_totals(world, quickbooks_customer) == _stripe_invoice_totals(
            world, key
        )
    payments = _notes(world, "Payment")
    for charge in charges:
        assert payments.count(f"ledgerlink stripe:{charge}") == 1
    assert len(payments) == len(charges)
    assert sum(world.sandboxes["quickbooks"].trial_balance().values(), Decimal(0)) == 0
    fees = _notes(world, "JournalEntry")
    for charge in charges:
        txn = world.stripe.billing.get("charge", charge)["balance_transaction"]
        assert fees.count(f"ledgerlink stripe:{txn}") == 1
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0
    assert again.documents == []


def test_a_payment_waits_for_its_invoice_and_the_customer(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Before the customer exists in QuickBooks, nothing is posted and the report says why."""
    _pay(world, world.invoices[1])
    first = cycle(store, world, mappings)
    assert first.ledger is not None
    assert [d for d in first.ledger.documents if d.kind in ("invoice", "payment")] == []
    assert first.ledger.waiting["customer not in QuickBooks yet"] >= 3
    assert first.ledger.waiting["invoice not in QuickBooks yet"] >= 1
    settle(store, world, mappings)
    assert len(_notes(world, "Payment")) == 1


def test_refund_and_payout_reconcile_with_zero_difference(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A charge, a partial refund and a payout of the net balance reconcile to zero."""
    charge = _pay(world, world.invoices[0])
    world.stripe.billing.create_refund({"charge": charge, "amount": 10_000})
    balance = world.stripe.state.store("balance_transaction")
    mine = [
        t
        for t in balance.added.values()
        if t and t["currency"] == "usd" and t["source"] in {charge} | _refund_ids(world)
    ]
    net = sum(int(t["net"]) for t in mine)
    payout = world.stripe.billing.create_payout({"amount": net, "currency": "usd"})
    tie_payout(store, payout["id"], mine, now=datetime.now(UTC))
    settle(store, world, mappings)
    assert len(_notes(world, "RefundReceipt")) == 1
    assert len(_notes(world, "Deposit")) == 1
    (line,) = [r for r in reconcile(store, mappings) if r.payout_id == payout["id"]]
    assert line.tie == "stripe"
    assert line.transactions == 2
    assert line.expected.amount == net
    assert line.difference.is_zero
    assert line.status == "reconciled"
    assert sum(world.sandboxes["quickbooks"].trial_balance().values(), Decimal(0)) == 0


def test_a_payout_that_does_not_match_the_posted_documents_is_flagged(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A payout larger than what was posted through clearing shows the difference."""
    charge = _pay(world, world.invoices[2])
    txn_id = world.stripe.billing.get("charge", charge)["balance_transaction"]
    txn = world.stripe.billing.get("balance_transaction", txn_id)
    payout = world.stripe.billing.create_payout(
        {"amount": int(txn["net"]) + 500, "currency": "usd"}
    )
    tie_payout(store, payout["id"], [txn], now=datetime.now(UTC))
    settle(store, world, mappings)
    (line,) = [r for r in reconcile(store, mappings) if r.payout_id == payout["id"]]
    assert line.difference.amount == 500
    assert line.status == "difference"


def _refund_ids(world: World) -> set[str]:
    return {r["id"] for r in world.stripe.state.store("refund").added.values() if r}


def test_missing_exchange_rate_quarantines_and_a_configured_rate_posts(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A EUR invoice without a rate is quarantined with its reason; with a rate it posts."""
    euro = _invoice(world, "e1", "fabri", "eur", [{"unit_amount": 9_900, "quantity": 1}])
    settle(store, world, mappings)
    with store.engine.connect() as conn:
        reasons = conn.execute(
            select(Quarantine.reason, Quarantine.resolved_at).where(  # type: ignore[call-overload]
                Quarantine.external_id == euro
            )
        ).all()
    assert len(reasons) == 1
    assert "no exchange rate EUR->USD" in reasons[0].reason
    assert reasons[0].resolved_at is None
    assert f"ledgerlink stripe:{euro}" not in _notes(world, "Invoice")
    report = plan_ledger(
        store,
        mappings,
        now=datetime.now(UTC),
        options=LedgerOptions(rates={"EUR": Decimal("1.08")}),
    )
    (document,) = [d for d in report.documents if d.stripe_id == euro]
    assert document.payload["ExchangeRate"] == 1.08
    assert document.payload["CurrencyRef"] == {"value": "EUR"}
    push(store, world.connectors["quickbooks"], worker_id="test")
    assert f"ledgerlink stripe:{euro}" in _notes(world, "Invoice")
    with store.engine.connect() as conn:
        resolved = conn.execute(
            select(Quarantine.resolved_at).where(Quarantine.external_id == euro)  # type: ignore[call-overload]
        ).scalar_one()
    assert resolved is not None


def test_amended_invoice_is_updated_not_duplicated(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """An invoice changed after it was posted becomes one update of the same document."""
    settle(store, world, mappings)
    invoice_id = world.invoices[1]
    with store.engine.connect() as conn:
        outbox = conn.execute(
            select(Outbox.remote_id).where(  # type: ignore[call-overload]
                Outbox.entity_id == invoice_id, Outbox.object == "Invoice"
            )
        ).scalar_one()
    invoice = world.stripe.billing.get("invoice", invoice_id)
    invoice["lines"]["data"][0]["amount"] = 25_000
    invoice["total"] = 25_000
    world.stripe.state.store("invoice").put(invoice)
    world.stripe.state.emit("invoice.updated", invoice)
    settle(store, world, mappings)
    posted = [
        doc
        for doc in world.company.tables["Invoice"].by_id()
        if doc.get("PrivateNote") == f"ledgerlink stripe:{invoice_id}"
    ]
    assert len(posted) == 1
    assert posted[0]["Id"] == outbox
    assert Decimal(str(posted[0]["TotalAmt"])) == Decimal(250)
