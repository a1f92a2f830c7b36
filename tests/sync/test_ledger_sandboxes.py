"""Ledger posting in whole cycles against the Stripe and QuickBooks sandboxes, with invariants."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ledgerlink_quickbooks.accounts import ensure_accounts
from ledgerlink_stripe.sandbox.settlement import Settlement
from sqlalchemy import select

from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, Record, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import Customer, CustomerLink, Outbox, Quarantine
from ledgerlink.sync._ledger_world import KeptLedgerWorld
from ledgerlink.sync.cycle import CycleCache, CycleReport, run_cycle
from ledgerlink.sync.ledger import LedgerOptions, plan_ledger, reconcile, tie_payout
from ledgerlink.sync.push import push
from ledgerlink.sync.runtime import connect
from ledgerlink.sync.trace import trace

pytestmark = pytest.mark.slow
SYSTEMS = ("stripe", "quickbooks")


@dataclass
class World:
    """Running sandboxes, their connectors and the scenario's Stripe customers and invoices."""

    sandboxes: dict[str, Any]
    connectors: dict[str, Connector]
    customers: dict[str, str]
    invoices: list[str]
    cache: CycleCache | None = None
    """What a long-running process keeps between cycles (``kept``), or nothing (``fresh``)."""

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


@pytest.fixture(params=["fresh", "kept"])
def world(
    request: pytest.FixtureRequest, store: Store, settings_of: Any, mappings: MappingSet
) -> Iterator[World]:
    """Small sandboxes, the ledger accounts in QuickBooks, two billed USD customers.

    Each scenario runs twice: with cycles that read everything (``fresh``, as ``ledgerlink
    sync run``) and with cycles that keep what they read between them and read again only
    what changed (``kept``, as the daemon), which must post the same.
    """
    secrets = DbSecretStore(store.engine, generate_key())
    sandboxes: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            sandboxes[name] = plugin.start_sandbox(SandboxOptions(seed=11, size=1))
            connectors[name] = connect(plugin, settings_of(name, sandboxes[name]), secrets)
        ensure_accounts(connectors["quickbooks"], mappings.accounts.accounts)  # type: ignore[arg-type]
        cache = CycleCache() if request.param == "kept" else None
        world = World(sandboxes, connectors, {}, [], cache)
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
    return run_cycle(store, world.connectors, mappings, now=datetime.now(UTC), cache=world.cache)


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


def test_a_paid_invoice_posts_with_its_payment_in_one_cycle(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Once the customer is in QuickBooks, a new paid invoice and its payment post in the same
    cycle: the ledger plans again right after the push sent the invoice."""
    settle(store, world, mappings)
    invoice = _invoice(world, "n3", "north", "usd", [{"unit_amount": 4_200, "quantity": 1}])
    charge = _pay(world, invoice)

    report = cycle(store, world, mappings)
    assert report.ledger is not None
    assert [d.stripe_id for d in report.ledger.documents if d.kind == "invoice"] == [invoice]
    assert report.ledger.waiting_on_sends >= 1  # the payment waited for that invoice
    # One round: the payment it posts settles nothing else (what still waits, waits on more)
    assert len(report.ledger_follow_ups) == 1
    assert [d.stripe_id for d in report.ledger_follow_ups[0].documents if d.kind == "payment"] == [
        charge
    ]
    assert _notes(world, "Invoice").count(f"ledgerlink stripe:{invoice}") == 1
    assert _notes(world, "Payment").count(f"ledgerlink stripe:{charge}") == 1
    assert sum(world.sandboxes["quickbooks"].trial_balance().values(), Decimal(0)) == 0


@pytest.mark.parametrize("currency", ["usd", "eur"])
def test_a_new_customer_is_invoiced_and_paid_in_the_cycle_that_creates_it(
    store: Store, world: World, mappings: MappingSet, currency: str
) -> None:
    """A Stripe customer new to QuickBooks with a paid invoice: the cycle that creates its
    QuickBooks customer also posts the invoice and the payment (in EUR, through the customer
    in EUR the ledger makes), without waiting a pass for the new customer to land."""
    settle(store, world, mappings)
    _customer(world, "south", "Southridge Video", "accounts@southridgevideo.example")
    invoice = _invoice(world, "s1", "south", currency, [{"unit_amount": 6_400, "quantity": 1}])
    charge = _pay(world, invoice)
    options = LedgerOptions(rates={"EUR": Decimal("1.08")})

    report = run_cycle(
        store,
        world.connectors,
        mappings,
        now=datetime.now(UTC),
        cache=world.cache,
        ledger=options,
    )
    assert report.ledger is not None
    assert report.ledger.waiting_on_customers >= 1  # before the push, no QuickBooks customer
    assert 1 <= len(report.ledger_follow_ups) <= 3
    assert _notes(world, "Invoice").count(f"ledgerlink stripe:{invoice}") == 1
    assert _notes(world, "Payment").count(f"ledgerlink stripe:{charge}") == 1
    (posted,) = [
        doc
        for doc in world.company.tables["Invoice"].by_id()
        if doc.get("PrivateNote") == f"ledgerlink stripe:{invoice}"
    ]
    made = {c["Id"]: c for c in world.company.tables["Customer"].by_id()}
    customer = made[posted["CustomerRef"]["value"]]
    assert customer["DisplayName"].startswith("Southridge Video")
    assert customer.get("CurrencyRef", {}).get("value", "USD") == currency.upper()
    assert sum(world.sandboxes["quickbooks"].trial_balance().values(), Decimal(0)) == 0
    again = plan_ledger(store, mappings, now=datetime.now(UTC), options=options)
    assert again.queued == 0
    # The new QuickBooks customer's id reached the Stripe customer in the same cycle (the one
    # created in the home currency, not the ledger's customer in EUR).
    (home,) = [c for c in made.values() if c["DisplayName"] == "Southridge Video"]
    stripe_customer = world.stripe.state.store("customer").get(world.customers["south"])
    assert stripe_customer["metadata"]["quickbooks_customer_id"] == home["Id"]
    after = run_cycle(
        store, world.connectors, mappings, now=datetime.now(UTC), cache=world.cache, ledger=options
    )
    assert after.plan is not None
    assert [op for op in after.plan.ops if op.remote_id == world.customers["south"]] == []
    # Once the customer in EUR landed too, the golden customer still has the company's name.
    with store.engine.connect() as conn:
        golden = conn.execute(
            select(CustomerLink.customer_id).where(  # type: ignore[call-overload]
                CustomerLink.external_id == world.customers["south"]
            )
        ).scalar_one()
        name = conn.execute(
            select(Customer.display_name).where(Customer.id == golden)  # type: ignore[call-overload]
        ).scalar_one()
    assert name == "Southridge Video"


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


def _stripe_post(world: World, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST to the Stripe sandbox's HTTP API as a client would (form body, bearer key)."""
    answer = httpx.post(
        f"{world.stripe.base_url}{path}",
        data=data or {},
        headers={"Authorization": f"Bearer {world.stripe.api_key}"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _documents(world: World, entity: str, stripe_id: str) -> list[dict[str, Any]]:
    """The QuickBooks documents of ``entity`` that carry ``stripe_id`` in their note."""
    return [
        doc
        for doc in world.company.tables[entity].by_id()
        if f"stripe:{stripe_id}" in str(doc.get("PrivateNote") or "")
    ]


def _succeeded_charges(world: World) -> list[str]:
    return [
        c["id"]
        for c in world.stripe.state.store("charge").added.values()
        if c and c["status"] == "succeeded"
    ]


def _each_charge_has_one_payment(world: World) -> None:
    payments = _notes(world, "Payment")
    for charge in _succeeded_charges(world):
        assert payments.count(f"ledgerlink stripe:{charge}") == 1, charge


def _trial_balance_is_zero(world: World) -> None:
    assert sum(world.sandboxes["quickbooks"].trial_balance().values(), Decimal(0)) == 0


def _issued_stripe_totals(world: World, key: str) -> dict[str, Decimal]:
    """Per currency, the totals of the customer's Stripe invoices that are not void."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice_id in world.invoices:
        invoice = world.stripe.billing.get("invoice", invoice_id)
        if invoice["customer"] == world.customers[key] and invoice["status"] != "void":
            totals[invoice["currency"].upper()] += Decimal(invoice["total"]) / 100
    return dict(totals)


def test_a_one_off_charge_posts_an_unapplied_payment_and_its_fee(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A charge without an invoice becomes one Payment with no invoice link, credit on the account."""
    one_off = _stripe_post(
        world,
        "/v1/charges",
        {
            "customer": world.customers["north"],
            "amount": "5000",
            "currency": "usd",
            "payment_method": "pm_card_visa",
        },
    )
    assert one_off["invoice"] is None
    world.stripe.billing.settle_charges()
    paid = _pay(world, world.invoices[2])
    settle(store, world, mappings)
    (payment,) = _documents(world, "Payment", one_off["id"])
    north = _quickbooks_customer(store, world, "north")
    assert payment["CustomerRef"]["value"] == north
    assert "Line" not in payment
    assert Decimal(str(payment["TotalAmt"])) == Decimal(50)
    assert Decimal(str(payment["UnappliedAmt"])) == Decimal(50)
    fee_txn = world.stripe.billing.get("charge", one_off["id"])["balance_transaction"]
    assert len(_documents(world, "JournalEntry", fee_txn)) == 1
    _each_charge_has_one_payment(world)
    assert set(_succeeded_charges(world)) == {one_off["id"], paid}
    north_owes = sum(_stripe_invoice_totals(world, "north").values(), Decimal(0)) - 50
    assert world.sandboxes["quickbooks"].receivable_by_customer()[north] == north_owes
    _trial_balance_is_zero(world)
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0
    traced = trace(store.engine, f"stripe:charges:{one_off['id']}")
    (step,) = [s for s in traced.root.walk() if s.step == "QuickBooks Payment"]
    assert step.ref == f"quickbooks:Payment:{payment['Id']}"
    assert traced.problems == []


def test_a_voided_invoice_voids_its_quickbooks_invoice_once(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Voided after posting, the QuickBooks invoice is voided in place (same Id, zero, noted) once."""
    never_posted = _stripe_post(world, f"/v1/invoices/{world.invoices[2]}/void")
    assert never_posted["status"] == "void"
    settle(store, world, mappings)
    assert _documents(world, "Invoice", world.invoices[2]) == []
    target = world.invoices[1]
    (posted,) = _documents(world, "Invoice", target)
    _stripe_post(world, f"/v1/invoices/{target}/void")
    _stripe_post(world, f"/v1/invoices/{world.invoices[0]}/mark_uncollectible")
    settle(store, world, mappings)
    (voided,) = _documents(world, "Invoice", target)
    assert voided["Id"] == posted["Id"]
    assert voided["DocNumber"] == posted["DocNumber"]
    assert voided["TotalAmt"] == 0
    assert voided["Balance"] == 0
    assert voided["PrivateNote"] == f"Voided ledgerlink stripe:{target}"
    (uncollectible,) = _documents(world, "Invoice", world.invoices[0])
    assert uncollectible["Balance"] == uncollectible["TotalAmt"] > 0
    north = _quickbooks_customer(store, world, "north")
    assert _quickbooks_invoice_totals(world, north) == _issued_stripe_totals(world, "north")
    _trial_balance_is_zero(world)
    with store.engine.connect() as conn:
        voids = conn.execute(
            select(Outbox.idempotency_key, Outbox.status).where(  # type: ignore[call-overload]
                Outbox.entity_id == target, Outbox.action == "void"
            )
        ).all()
    assert [v.status for v in voids] == ["done"]
    token = voided["SyncToken"]
    resent = WriteOp(
        voids[0].idempotency_key, "Invoice", WriteAction.VOID, {}, remote_id=posted["Id"]
    )
    (result,) = list(world.connectors["quickbooks"].write([resent]))
    assert result.ok
    (still,) = _documents(world, "Invoice", target)
    assert still["SyncToken"] == token
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0
    assert again.documents == []


def test_quickbooks_refuses_to_void_an_invoice_with_a_payment(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """The QuickBooks sandbox, like QuickBooks, will not void an invoice a payment is applied to."""
    _pay(world, world.invoices[2])
    settle(store, world, mappings)
    (invoice,) = _documents(world, "Invoice", world.invoices[2])
    void = WriteOp("test-void-paid", "Invoice", WriteAction.VOID, {}, remote_id=invoice["Id"])
    (result,) = list(world.connectors["quickbooks"].write([void]))
    assert result.error is not None
    assert "payments applied" in str(result.error)
    (unchanged,) = _documents(world, "Invoice", world.invoices[2])
    assert unchanged["TotalAmt"] == invoice["TotalAmt"]


def _line_id(world: World, invoice_id: str, index: int) -> str:
    line_id: str = world.stripe.billing.get("invoice", invoice_id)["lines"]["data"][index]["id"]
    return line_id


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def test_a_credit_note_on_an_open_invoice_is_a_credit_memo_applied_to_it(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A pre-payment credit note posts its lines as a CreditMemo applied to the open invoice."""
    invoice_id = world.invoices[0]
    note = _stripe_post(
        world,
        "/v1/credit_notes",
        {
            "invoice": invoice_id,
            "lines[0][type]": "invoice_line_item",
            "lines[0][invoice_line_item]": _line_id(world, invoice_id, 0),
            "lines[0][quantity]": "1",
            "lines[1][type]": "custom_line_item",
            "lines[1][description]": "Goodwill",
            "lines[1][quantity]": "2",
            "lines[1][unit_amount]": "500",
        },
    )
    assert note["type"] == "pre_payment"
    assert note["total"] == 49_900 + 1_000
    settle(store, world, mappings)
    (memo,) = _documents(world, "CreditMemo", note["id"])
    north = _quickbooks_customer(store, world, "north")
    assert memo["CustomerRef"]["value"] == north
    assert memo["DocNumber"] == note["number"]
    assert _money(memo["TotalAmt"]) == Decimal("509.00")
    sales = [line for line in memo["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [(line["SalesItemLineDetail"]["Qty"], _money(line["Amount"])) for line in sales] == [
        (1, Decimal("499.00")),
        (2, Decimal("10.00")),
    ]
    pro_item = world.company.find("Item", sales[0]["SalesItemLineDetail"]["ItemRef"]["value"])
    assert pro_item is not None
    assert pro_item["Name"] == "Pro Subscription"
    (application,) = _documents(world, "Payment", note["id"])
    assert application["TotalAmt"] == 0
    (invoice,) = _documents(world, "Invoice", invoice_id)
    assert _money(invoice["Balance"]) == _money(invoice["TotalAmt"]) - Decimal("509.00")
    assert _money(world.company.find("CreditMemo", memo["Id"])["RemainingCredit"]) == 0
    charge = _pay(world, invoice_id)
    assert world.stripe.billing.get("charge", charge)["amount"] == 103_550 - 50_900
    settle(store, world, mappings)
    (invoice,) = _documents(world, "Invoice", invoice_id)
    assert invoice["Balance"] == 0
    assert _quickbooks_invoice_totals(world, north) == _stripe_invoice_totals(world, "north")
    _each_charge_has_one_payment(world)
    _trial_balance_is_zero(world)
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0


def test_a_credit_note_that_refunds_posts_only_what_the_refund_does_not(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """On a paid invoice the refunded part posts once (RefundReceipt), the rest as customer credit."""
    invoice_id = world.invoices[2]
    _pay(world, invoice_id)
    split = _stripe_post(
        world,
        "/v1/credit_notes",
        {"invoice": invoice_id, "amount": "5000", "refund_amount": "3000", "credit_amount": "2000"},
    )
    in_full = _stripe_post(
        world,
        "/v1/credit_notes",
        {"invoice": invoice_id, "amount": "2300", "refund_amount": "2300"},
    )
    assert split["type"] == in_full["type"] == "post_payment"
    world.stripe.billing.settle_charges()
    settle(store, world, mappings)
    (memo,) = _documents(world, "CreditMemo", split["id"])
    assert _money(memo["TotalAmt"]) == Decimal("20.00")
    assert _documents(world, "CreditMemo", in_full["id"]) == []
    assert _documents(world, "Payment", split["id"]) == []
    refunds = sorted(_money(r["TotalAmt"]) for r in world.company.tables["RefundReceipt"].by_id())
    assert refunds == [Decimal("23.00"), Decimal("30.00")]
    fabrikam = _quickbooks_customer(store, world, "fabri")
    assert world.sandboxes["quickbooks"].receivable_by_customer()[fabrikam] == Decimal("-20.00")
    _each_charge_has_one_payment(world)
    _trial_balance_is_zero(world)
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0


def test_a_voided_credit_note_is_emptied_in_quickbooks_and_its_credit_unapplied(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A credit note voided after posting: its application goes, its memo is zeroed, once."""
    invoice_id = world.invoices[1]
    posted = _stripe_post(world, "/v1/credit_notes", {"invoice": invoice_id, "amount": "5000"})
    settle(store, world, mappings)
    (memo,) = _documents(world, "CreditMemo", posted["id"])
    (invoice,) = _documents(world, "Invoice", invoice_id)
    assert _money(invoice["Balance"]) == Decimal("150.00")
    unposted = _stripe_post(world, "/v1/credit_notes", {"invoice": invoice_id, "amount": "1000"})
    _stripe_post(world, f"/v1/credit_notes/{unposted['id']}/void")
    _stripe_post(world, f"/v1/credit_notes/{posted['id']}/void")
    settle(store, world, mappings)
    assert _documents(world, "CreditMemo", unposted["id"]) == []
    (voided,) = _documents(world, "CreditMemo", posted["id"])
    assert voided["Id"] == memo["Id"]
    assert voided["TotalAmt"] == 0
    assert voided["PrivateNote"] == f"Voided ledgerlink stripe:{posted['id']}"
    assert _documents(world, "Payment", posted["id"]) == []
    (invoice,) = _documents(world, "Invoice", invoice_id)
    assert _money(invoice["Balance"]) == Decimal("200.00")
    _trial_balance_is_zero(world)
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert again.queued == 0
    assert again.documents == []


def test_an_automatic_payout_is_tied_from_stripe_once_and_reconciles(
    store: Store, world: World, mappings: MappingSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pull asks Stripe once what an automatic payout paid out; the report ties it: stripe."""
    api = world.connectors["stripe"].api  # type: ignore[attr-defined]
    asked: list[str] = []
    original = api.get

    def counting_get(path: str, params: Any = None) -> Any:
        if path == "/v1/balance_transactions" and (params or {}).get("payout"):
            asked.append(str(params["payout"]))
        return original(path, params)

    monkeypatch.setattr(api, "get", counting_get)
    charges = [_pay(world, world.invoices[0]), _pay(world, world.invoices[2])]
    refund = world.stripe.billing.create_refund({"charge": charges[0], "amount": 10_000})
    settlement = Settlement(world.stripe.billing)
    payout = settlement.automatic_payout("usd")
    settle(store, world, mappings)
    assert payout["id"] not in asked
    (line,) = [r for r in reconcile(store, mappings) if r.payout_id == payout["id"]]
    assert line.tie == "sweep"
    settlement.advance_payout(payout["id"], "in_transit")
    settle(store, world, mappings)
    assert asked.count(payout["id"]) == 1
    settlement.advance_payout(payout["id"], "paid")
    settle(store, world, mappings)
    assert asked.count(payout["id"]) == 1
    seeded = world.stripe.state.catalog.kinds["payout"].make(0)
    assert asked.count(seeded["id"]) == 1
    (line,) = [r for r in reconcile(store, mappings) if r.payout_id == payout["id"]]
    assert line.tie == "stripe"
    assert line.transactions == 3
    txns = {world.stripe.billing.get("charge", c)["balance_transaction"] for c in charges} | {
        refund["balance_transaction"]
    }
    assert line.stripe_net == line.expected
    assert (
        line.expected.amount
        == payout["amount"]
        == sum(int(world.stripe.billing.get("balance_transaction", t)["net"]) for t in txns)
    )
    assert line.difference.is_zero
    assert line.status == "reconciled"
    _trial_balance_is_zero(world)


def test_stripe_answers_which_transactions_a_payout_paid_out(world: World) -> None:
    """``?payout=`` lists a seeded automatic payout's movements of its currency; manual: refused."""
    seeded = world.stripe.state.catalog.kinds["payout"].make(0)
    answer = httpx.get(
        f"{world.stripe.base_url}/v1/balance_transactions",
        params={"payout": seeded["id"], "limit": 2},
        headers={"Authorization": f"Bearer {world.stripe.api_key}"},
    ).json()
    assert answer["object"] == "list"
    paid_out = list(answer["data"])
    while answer["has_more"]:
        answer = httpx.get(
            f"{world.stripe.base_url}/v1/balance_transactions",
            params={"payout": seeded["id"], "limit": 2, "starting_after": paid_out[-1]["id"]},
            headers={"Authorization": f"Bearer {world.stripe.api_key}"},
        ).json()
        paid_out.extend(answer["data"])
    assert {t["currency"] for t in paid_out} == {seeded["currency"]}
    assert seeded["balance_transaction"] in {t["id"] for t in paid_out}
    assert all(t["created"] <= seeded["created"] for t in paid_out)
    assert len({t["id"] for t in paid_out}) == len(paid_out)
    manual = world.stripe.billing.create_payout({"amount": 100, "currency": "usd"})
    refused = httpx.get(
        f"{world.stripe.base_url}/v1/balance_transactions",
        params={"payout": manual["id"]},
        headers={"Authorization": f"Bearer {world.stripe.api_key}"},
    )
    assert refused.status_code == 400
    assert "automatic" in refused.json()["error"]["message"]


def _journal_side(entry: dict[str, Any], posting: str) -> tuple[str, Decimal]:
    (line,) = [x for x in entry["Line"] if x["JournalEntryLineDetail"]["PostingType"] == posting]
    return line["JournalEntryLineDetail"]["AccountRef"]["value"], _money(line["Amount"])


def test_a_won_dispute_gives_its_funds_back_in_the_books_and_reconciles(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A disputed payment posts its withdrawal; winning the dispute posts the funds given back
    (clearing debited, the disputes account credited; Stripe keeps the fee), once; a payout of
    what is left reconciles with zero difference and the trial balance stays zero."""
    invoice = world.stripe.billing.get("invoice", world.invoices[0])
    world.stripe.billing.pay_invoice(invoice["id"], {"payment_method": "pm_card_createDispute"})
    world.stripe.billing.settle_charges()
    charge = world.stripe.billing.get("invoice", invoice["id"])["charge"]
    (dispute,) = [
        d for d in world.stripe.state.store("dispute").added.values() if d and d["charge"] == charge
    ]
    settle(store, world, mappings)
    (withdrawn_txn,) = world.stripe.billing.get("dispute", dispute["id"])["balance_transactions"]
    (withdrawn,) = _documents(world, "JournalEntry", withdrawn_txn["id"])
    won = world.stripe.billing.update_dispute(
        dispute["id"], {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    reversal_txn = won["balance_transactions"][-1]
    assert reversal_txn["reporting_category"] == "dispute_reversal"
    settle(store, world, mappings)
    (reversal,) = _documents(world, "JournalEntry", reversal_txn["id"])
    traced = trace(store.engine, f"stripe:balance_transactions:{reversal_txn['id']}")
    (step,) = [s for s in traced.root.walk() if s.step == "Stripe dispute won"]
    assert [c.ref for c in step.children] == [f"quickbooks:JournalEntry:{reversal['Id']}"]
    disputes_account, taken = _journal_side(withdrawn, "Debit")
    clearing, _ = _journal_side(withdrawn, "Credit")
    assert taken == _money(dispute["amount"]) / 100 + Decimal("15.00")  # the amount and the fee
    assert _journal_side(reversal, "Debit") == (clearing, _money(dispute["amount"]) / 100)
    assert _journal_side(reversal, "Credit") == (disputes_account, _money(dispute["amount"]) / 100)
    _trial_balance_is_zero(world)
    txns = [
        world.stripe.billing.get("charge", charge)["balance_transaction"],
        withdrawn_txn["id"],
        reversal_txn["id"],
    ]
    mine = [world.stripe.state.store("balance_transaction").added[t] for t in txns]
    net = sum(int(t["net"]) for t in mine)
    payout = world.stripe.billing.create_payout({"amount": net, "currency": "usd"})
    tie_payout(store, payout["id"], mine, now=datetime.now(UTC))
    settle(store, world, mappings)
    (line,) = [r for r in reconcile(store, mappings) if r.payout_id == payout["id"]]
    assert (line.transactions, line.expected.amount) == (3, net)
    assert line.difference.is_zero
    assert line.status == "reconciled"
    _trial_balance_is_zero(world)
    again = plan_ledger(store, mappings, now=datetime.now(UTC))
    assert (again.queued, again.documents) == (0, [])


def test_a_kept_plan_holds_a_document_until_what_it_is_built_from_changes(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """Plans of a long-running process remember a document held for a missing rate and do not
    build it again while nothing it is built from changed; once the balance transaction it
    is built from carries Stripe's rate, it posts, as a fresh plan would."""
    euro = _invoice(world, "e1", "fabri", "eur", [{"unit_amount": 9_900, "quantity": 1}])
    _pay(world, euro)
    settle(store, world, mappings)
    kept = KeptLedgerWorld()
    first = plan_ledger(store, mappings, now=datetime.now(UTC), kept=kept)
    assert [q for q in first.quarantined if q[0] == euro] == [
        (euro, "no exchange rate EUR->USD: Stripe gave none and the rate table has no EUR")
    ]
    # Nothing it is built from changed: the next plan does not look at it again, and its
    # quarantine row stays open.
    again = plan_ledger(store, mappings, now=datetime.now(UTC), kept=kept)
    assert [q for q in again.quarantined if q[0] == euro] == []
    assert again.documents == []
    assert again.unchanged > 0
    with store.engine.connect() as conn:
        held = conn.execute(
            select(Quarantine.resolved_at).where(Quarantine.external_id == euro)  # type: ignore[call-overload]
        ).scalar_one()
    assert held is None
    # Stripe's own rate: the charge's balance transaction, in the account's currency.
    charge = world.stripe.billing.get("charge", world.stripe.billing.get("invoice", euro)["charge"])
    txn = dict(world.stripe.billing.get("balance_transaction", charge["balance_transaction"]))
    txn.update(currency="usd", exchange_rate=1.1)
    store.land("stripe", [Record("balance_transactions", txn["id"], txn)], now=datetime.now(UTC))
    for plan_with in (kept, None):
        report = plan_ledger(store, mappings, now=datetime.now(UTC), kept=plan_with, dry_run=True)
        (document,) = [d for d in report.documents if d.stripe_id == euro]
        assert document.payload["ExchangeRate"] == 1.1


def test_a_kept_plan_settles_a_foreign_invoice_until_its_rate_moves(
    store: Store, world: World, mappings: MappingSet
) -> None:
    """A EUR invoice posted at the rate table's rate, found equal to its row, is not built
    again by the next plans of a long-running process; once its charge's balance transaction
    carries Stripe's rate, the kept plan updates it with that rate, as a fresh plan does."""
    table = LedgerOptions(rates={"EUR": Decimal("1.08")})
    euro = _invoice(world, "e1", "fabri", "eur", [{"unit_amount": 9_900, "quantity": 1}])
    _pay(world, euro)
    settle(store, world, mappings)  # held: no rate yet
    kept = KeptLedgerWorld()
    posted = plan_ledger(store, mappings, now=datetime.now(UTC), kept=kept, options=table)
    (document,) = [d for d in posted.documents if d.stripe_id == euro and d.object == "Invoice"]
    assert document.payload["ExchangeRate"] == 1.08
    push(store, world.connectors["quickbooks"], worker_id="test")
    paid = plan_ledger(store, mappings, now=datetime.now(UTC), kept=kept, options=table)
    assert [d.object for d in paid.documents] == ["Payment"]  # once the invoice has its id
    push(store, world.connectors["quickbooks"], worker_id="test")
    for _ in range(2):  # compared with its sent row, then taken as settled
        quiet = plan_ledger(store, mappings, now=datetime.now(UTC), kept=kept, options=table)
        assert quiet.documents == []
    assert euro in kept.world.final
    charge = world.stripe.billing.get("charge", world.stripe.billing.get("invoice", euro)["charge"])
    txn = dict(world.stripe.billing.get("balance_transaction", charge["balance_transaction"]))
    txn.update(currency="usd", exchange_rate=1.1)
    store.land("stripe", [Record("balance_transactions", txn["id"], txn)], now=datetime.now(UTC))
    for plan_with in (kept, None):
        report = plan_ledger(
            store, mappings, now=datetime.now(UTC), kept=plan_with, options=table, dry_run=True
        )
        (update,) = [d for d in report.documents if d.stripe_id == euro and d.object == "Invoice"]
        assert update.action == "update"
        assert update.payload["ExchangeRate"] == 1.1
