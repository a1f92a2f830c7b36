"""Issue 8's invariants on the sandboxes' own data, after whole cycles over all three systems.

Salesforce, Stripe and QuickBooks start from one shared roster of companies (so customers
overlap and match), Stripe gets a one-off charge, a credit note and a voided invoice on top of its
seed, and cycles run until quiet. Then, read from the sandboxes themselves:

* each Salesforce Account linked to a QuickBooks customer shows that customer's open invoice
  balance in ``Open_Balance__c``;
* per customer and currency, the QuickBooks invoices posted from Stripe total what Stripe's do;
* every successful Stripe charge has exactly one QuickBooks payment;
* the QuickBooks trial balance sums to zero.
"""

from __future__ import annotations

from collections import Counter, defaultdict
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

from ledgerlink.cli.demo import DEMO_RATES
from ledgerlink.connector import SandboxOptions
from ledgerlink.connector.protocol import Connector, WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.connector.roster import Roster
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.store.models import CustomerLink, LinkStatus, Outbox, Quarantine
from ledgerlink.sync.cycle import CycleReport, run_cycle
from ledgerlink.sync.ledger import CUSTOMER_ENTITY, LedgerOptions
from ledgerlink.sync.runtime import connect

pytestmark = pytest.mark.slow
SYSTEMS = ("salesforce", "stripe", "quickbooks")
COMPANIES = 40
NOTE = "ledgerlink stripe:"
LEDGER = LedgerOptions(rates={currency: Decimal(rate) for currency, rate in DEMO_RATES.items()})


@dataclass
class Sandboxes:
    """The three running sandboxes and their connectors."""

    running: dict[str, Any]
    connectors: dict[str, Connector]

    @property
    def stripe(self) -> Any:
        return self.running["stripe"]

    @property
    def company(self) -> Any:
        return self.running["quickbooks"].company


@pytest.fixture
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


@pytest.fixture
def sandboxes(store: Store, mappings: MappingSet, settings_of: Any) -> Iterator[Sandboxes]:
    """All three sandboxes seeded from one roster, connected, with the ledger's accounts."""
    options = SandboxOptions(seed=5, size=COMPANIES, roster=Roster(companies=COMPANIES, seed=5))
    secrets = DbSecretStore(store.engine, generate_key())
    running: dict[str, Any] = {}
    connectors: dict[str, Connector] = {}
    try:
        for name in SYSTEMS:
            plugin = load_plugin(name)
            running[name] = plugin.start_sandbox(options)
            connectors[name] = connect(plugin, settings_of(name, running[name]), secrets)
        limits = running["quickbooks"].limits
        limits.requests_per_second = limits.requests_per_minute = limits.batch_per_minute = None
        ensure_accounts(connectors["quickbooks"], mappings.accounts.accounts)  # type: ignore[arg-type]
        yield Sandboxes(running, connectors)
    finally:
        for connector in connectors.values():
            connector.close()
        for sandbox in running.values():
            sandbox.stop()


def _stripe_post(boxes: Sandboxes, path: str, data: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(
        f"{boxes.stripe.base_url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {boxes.stripe.api_key}"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _until_quiet(store: Store, boxes: Sandboxes, mappings: MappingSet) -> CycleReport:
    """Run cycles until one queues and sends nothing (at most ten).

    A write a vendor refused for good (its outbox row failed) may still be wanted by the plan;
    it queues nothing new, so it does not keep the cycles from settling.
    """
    for _ in range(10):
        report = run_cycle(store, boxes.connectors, mappings, now=datetime.now(UTC), ledger=LEDGER)
        assert report.plan is not None
        assert report.ledger is not None
        if (
            not report.plan.queued
            and not report.ledger.queued
            and not any(p.sent for p in report.pushes)
        ):
            return report
    pytest.fail("the cycles did not settle in ten rounds")


def _linked(store: Store) -> dict[str, dict[str, set[str]]]:
    """Golden customer -> system -> the ids linked to it."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    with store.engine.connect() as conn:
        for system, external_id, customer in conn.execute(
            select(  # type: ignore[call-overload]
                CustomerLink.system, CustomerLink.external_id, CustomerLink.customer_id
            ).where(CustomerLink.status == LinkStatus.LINKED.value)
        ):
            out[customer][system].add(str(external_id))
    return out


def _held(store: Store) -> set[str]:
    """Stripe ids the hub holds on purpose (quarantined records, customers in review)."""
    with store.engine.connect() as conn:
        quarantined = {
            str(i)
            for (i,) in conn.execute(
                select(Quarantine.external_id).where(Quarantine.resolved_at.is_(None))  # type: ignore[call-overload,union-attr]
            )
        }
        review = {
            str(i)
            for (i,) in conn.execute(
                select(CustomerLink.external_id).where(  # type: ignore[call-overload]
                    CustomerLink.status == LinkStatus.REVIEW.value
                )
            )
        }
    return quarantined | review


def _open_balances(company: Any, customer_id: str) -> dict[str, Decimal]:
    """A QuickBooks customer's open invoice balance, per currency."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in company.table("Invoice").by_id():
        if invoice["CustomerRef"]["value"] == customer_id:
            out[invoice["CurrencyRef"]["value"]] += Decimal(str(invoice["Balance"]))
    return dict(out)


def _stripe_ids(company: Any, entity: str) -> Counter[str]:
    return Counter(
        str(doc["PrivateNote"]).rsplit("stripe:", 1)[1]
        for doc in company.table(entity).by_id()
        if NOTE in str(doc.get("PrivateNote") or "")
    )


def _new_invoice(
    boxes: Sandboxes, customer: str, currency: str, key: str, amount: int
) -> dict[str, Any]:
    """A finalized (open) Stripe invoice of one line, made through the Stripe connector."""
    op = WriteOp(
        f"test-invoice-{key}",
        "invoices",
        WriteAction.CREATE,
        {
            "customer": customer,
            "currency": currency,
            "lines": [{"unit_amount": amount, "quantity": 1, "description": "Pro"}],
        },
    )
    (result,) = list(boxes.connectors["stripe"].write([op]))
    assert result.remote_id is not None, result.error
    invoice: dict[str, Any] = boxes.stripe.billing.get("invoice", result.remote_id)
    assert invoice["status"] == "open"
    return invoice


def _bill(boxes: Sandboxes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two new open invoices of a customer whose invoices the ledger posts."""
    posted = _stripe_ids(boxes.company, "Invoice")
    paying = next(i for i in boxes.stripe.state.store("invoice").iter_desc() if posted[i["id"]])
    billed, voided = (
        _new_invoice(boxes, paying["customer"], paying["currency"], key, amount)
        for key, amount in (("billed", 12_000), ("voided", 3_000))
    )
    return billed, voided


def _shape_the_month(
    boxes: Sandboxes, billed: dict[str, Any], voided: dict[str, Any]
) -> dict[str, str]:
    """On posted invoices: a credit note on one, a void of the other, and a one-off charge."""
    note = _stripe_post(
        boxes, "/v1/credit_notes", {"invoice": billed["id"], "amount": str(billed["total"] // 2)}
    )
    _stripe_post(boxes, f"/v1/invoices/{voided['id']}/void", {})
    charge = Settlement(boxes.stripe.billing).create_charge(
        {
            "customer": billed["customer"],
            "amount": "2500",
            "currency": "usd",
            "payment_method": "pm_card_visa",
        }
    )
    boxes.stripe.billing.settle_charges()
    return {"credit_note": note["id"], "voided": voided["id"], "one_off": charge["id"]}


def test_accounts_show_the_ledger_balance_and_the_books_match_stripe(
    store: Store, sandboxes: Sandboxes, mappings: MappingSet
) -> None:
    """After quiet cycles over all three systems, issue 8's four invariants hold on their data."""
    boxes = sandboxes
    _until_quiet(store, boxes, mappings)
    billed, voided = _bill(boxes)
    _until_quiet(store, boxes, mappings)
    shaped = _shape_the_month(boxes, billed, voided)
    _until_quiet(store, boxes, mappings)
    company = boxes.company
    held = _held(store)
    linked = _linked(store)

    # 1. Each Salesforce Account linked to QuickBooks customers shows their open invoice
    #    balance: QuickBooks keeps one currency per customer, so the one in the Account's
    #    currency, or the only currency anything is owed in (0 when nothing is).
    accounts = boxes.running["salesforce"].org.table("Account")
    checked = 0
    for systems in linked.values():
        balances: dict[str, Decimal] = defaultdict(Decimal)
        for customer_id in systems.get("quickbooks", set()):
            for currency, amount in _open_balances(company, customer_id).items():
                balances[currency] += amount
        balances = {c: a for c, a in balances.items() if a} or {"": Decimal(0)}
        for account_id in systems.get("salesforce", set()) if systems.get("quickbooks") else ():
            account = accounts.get(account_id)
            assert account is not None
            currency = account.get("CurrencyIsoCode")
            if len(balances) > 1 and currency not in balances:
                continue  # several currencies, none the Account's: the hub notes it instead
            expected = balances[currency] if len(balances) > 1 else sum(balances.values())
            shown = account.get("Open_Balance__c")
            assert Decimal(str(shown or 0)) == expected, (account_id, dict(balances), shown)
            checked += 1
    assert checked > len(linked) // 2

    # 2. Per customer and currency the QuickBooks invoices from Stripe total Stripe's invoices.
    stripe_invoices = [
        i
        for i in boxes.stripe.state.store("invoice").iter_desc()
        if i["status"] in ("open", "paid", "uncollectible")
        and i["total"]
        and not {i["id"], i["customer"]} & held
    ]
    want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for invoice in stripe_invoices:
        want[(invoice["customer"], invoice["currency"].upper())] += Decimal(invoice["total"]) / (
            1 if invoice["currency"] == "jpy" else 100
        )
    by_stripe = {i["id"]: i for i in boxes.stripe.state.store("invoice").iter_desc()}
    got: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for invoice in company.table("Invoice").by_id():
        note = str(invoice.get("PrivateNote") or "")
        if NOTE not in note:
            continue
        source = by_stripe[note.rsplit("stripe:", 1)[1]]
        key = (source["customer"], invoice["CurrencyRef"]["value"])
        got[key] += Decimal(str(invoice["TotalAmt"]))  # a voided invoice is 0 in both
    assert {k: v for k, v in got.items() if v} == dict(want)
    (void,) = [
        i
        for i in company.table("Invoice").by_id()
        if f"stripe:{shaped['voided']}" in str(i.get("PrivateNote") or "")
    ]
    assert void["TotalAmt"] == 0
    assert str(void["PrivateNote"]).startswith("Voided")

    # 3. Every successful charge has exactly one QuickBooks payment.
    payments = _stripe_ids(company, "Payment")
    succeeded = [
        c
        for c in boxes.stripe.state.store("charge").iter_desc()
        if c["status"] == "succeeded" and not {c["id"], c["customer"], c.get("invoice")} & held
    ]
    assert succeeded
    assert {c["id"]: payments[c["id"]] for c in succeeded} == {c["id"]: 1 for c in succeeded}
    assert payments[shaped["one_off"]] == 1
    assert _stripe_ids(company, "CreditMemo")[shaped["credit_note"]] == 1

    # The QuickBooks customers made for other currencies stay with their customer.
    with store.engine.connect() as conn:
        made = conn.execute(
            select(Outbox.entity_id, Outbox.remote_id).where(  # type: ignore[call-overload]
                Outbox.entity_kind == CUSTOMER_ENTITY, Outbox.status == "done"
            )
        ).all()
    assert made
    owner = {qb: customer for customer, systems in linked.items() for qb in systems["quickbooks"]}
    assert {row.remote_id: owner.get(row.remote_id) for row in made} == {
        row.remote_id: row.entity_id.partition(":")[2] for row in made
    }
    for row in made:
        currency = row.entity_id.partition(":")[0]
        assert company.find("Customer", row.remote_id)["CurrencyRef"]["value"] == currency

    # 4. The books balance.
    assert sum(boxes.running["quickbooks"].trial_balance().values(), Decimal(0)) == 0
