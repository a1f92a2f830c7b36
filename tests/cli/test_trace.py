"""``ledgerlink trace``: one deal followed from Salesforce through Stripe to QuickBooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledgerlink_stripe.sandbox.data import SeedCatalog
from sqlalchemy import insert, update
from typer.testing import CliRunner

from ledgerlink.cli import app
from ledgerlink.connector.protocol import Record, WriteAction, WriteOp
from ledgerlink.store import Store
from ledgerlink.store.models import Customer, CustomerLink, Outbox
from ledgerlink.sync.ledger import DOCUMENT_ENTITY, tie_payout
from ledgerlink.sync.outbox import PlannedWrite, enqueue

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
QUOTE = "0Q0000000000001AAA"
OPPORTUNITY = "0060000000000001AA"


def _seeded() -> dict[str, dict[str, Any]]:
    """A paid invoice of the Stripe sandbox's seed, with its subscription, charge, fee and a payout."""
    catalog = SeedCatalog(seed=7, size=40, now=int(NOW.timestamp()))
    j = next(j for j in range(1, 80, 2) if catalog.invoice_paid(j))
    invoice = catalog.kinds["invoice"].make(j)
    assert invoice is not None
    subscription = dict(catalog.kinds["subscription"].make(j // 2) or {})
    subscription["metadata"] = {"salesforce_quote_id": QUOTE}
    return {
        "subscription": subscription,
        "invoice": invoice,
        "charge": catalog.kinds["charge"].make(j) or {},
        "txn": catalog.kinds["balance_transaction"].make(j) or {},
        "payout": catalog.kinds["payout"].make(0) or {},
    }


def _land(store: Store, seeded: dict[str, dict[str, Any]]) -> None:
    store.land(
        "salesforce",
        [
            Record(
                "Opportunity",
                OPPORTUNITY,
                {
                    "Id": OPPORTUNITY,
                    "Name": "Deal 1",
                    "StageName": "Closed Won",
                    "IsWon": True,
                    "Amount": 1200.0,
                    "CurrencyIsoCode": "USD",
                },
            ),
            Record(
                "Quote",
                QUOTE,
                {
                    "Id": QUOTE,
                    "OpportunityId": OPPORTUNITY,
                    "Name": "Q-000001",
                    "Status": "Accepted",
                    "GrandTotal": 1200.0,
                    "CurrencyIsoCode": "USD",
                },
            ),
        ],
        now=NOW,
    )
    store.land(
        "stripe",
        [
            Record("subscriptions", seeded["subscription"]["id"], seeded["subscription"]),
            Record("invoices", seeded["invoice"]["id"], seeded["invoice"]),
            Record("charges", seeded["charge"]["id"], seeded["charge"]),
            Record("balance_transactions", seeded["txn"]["id"], seeded["txn"]),
            Record("payouts", seeded["payout"]["id"], seeded["payout"]),
        ],
        now=NOW,
    )
    tie_payout(store, seeded["payout"]["id"], [seeded["txn"]], now=NOW)


def _link(store: Store, *records: tuple[str, str, str]) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            insert(Customer.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": "cust-1",
                    "display_name": "Acme",
                    "fields": {},
                    "lineage": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                    "version": 1,
                }
            ],
        )
        conn.execute(
            insert(CustomerLink.__table__),  # type: ignore[attr-defined]
            [
                {
                    "system": s,
                    "object": o,
                    "external_id": e,
                    "customer_id": "cust-1",
                    "score": 1.0,
                    "method": "xref",
                    "status": "linked",
                    "reasons": [],
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for s, o, e in records
            ],
        )


def _posted(
    store: Store, stripe_id: str, obj: str, remote_id: str, payload: dict[str, Any]
) -> None:
    """An outbox row of the ledger, sent, with the QuickBooks id it got."""
    op = WriteOp(f"test-{stripe_id}-{obj}", obj, WriteAction.CREATE, payload)
    with store.engine.begin() as conn:
        enqueue(conn, [PlannedWrite("quickbooks", op, DOCUMENT_ENTITY, stripe_id)], now=NOW)
        conn.execute(
            update(Outbox.__table__)  # type: ignore[attr-defined]
            .where(Outbox.__table__.c.idempotency_key == op.idempotency_key)  # type: ignore[attr-defined]
            .values(status="done", remote_id=remote_id)
        )


def _major(minor: int) -> float:
    return minor / 100


def run(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "ledgerlink.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    # A wide terminal keeps each step on one line.
    result = CliRunner().invoke(app, ["-c", str(config), "trace", *args], env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _steps(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(s for child in node["children"] for s in _steps(child))]


def test_whole_chain_from_any_record(store: Store, database_url: str, tmp_path: Path) -> None:
    """A fully posted deal shows every step from the opportunity to the Deposit, whatever REF starts it."""
    seeded = _seeded()
    _land(store, seeded)
    invoice, charge, txn, payout = (seeded[k] for k in ("invoice", "charge", "txn", "payout"))
    _link(store, ("stripe", "customers", invoice["customer"]), ("quickbooks", "Customer", "58"))
    note = {"PrivateNote": "ledgerlink"}
    _posted(
        store,
        invoice["id"],
        "Invoice",
        "130",
        {
            "Line": [{"Amount": _major(invoice["total"]), "DetailType": "SalesItemLineDetail"}],
            **note,
        },
    )
    _posted(store, charge["id"], "Payment", "131", {"TotalAmt": _major(charge["amount"]), **note})
    _posted(
        store,
        txn["id"],
        "JournalEntry",
        "132",
        {
            "Line": [
                {"Amount": _major(txn["fee"]), "JournalEntryLineDetail": {"PostingType": "Debit"}},
                {"Amount": _major(txn["fee"]), "JournalEntryLineDetail": {"PostingType": "Credit"}},
            ]
        },
    )
    _posted(store, payout["id"], "Deposit", "133", {"Line": [{"Amount": _major(payout["amount"])}]})

    code, output = run(database_url, tmp_path, "quickbooks:Payment:131", "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    assert result["problems"] == []
    steps = _steps(result["root"])
    refs = [s["ref"] for s in steps]
    assert refs == [
        f"salesforce:Opportunity:{OPPORTUNITY}",
        f"salesforce:Quote:{QUOTE}",
        f"stripe:subscriptions:{seeded['subscription']['id']}",
        f"stripe:invoices:{invoice['id']}",
        "quickbooks:Invoice:130",
        f"stripe:charges:{charge['id']}",
        "quickbooks:Payment:131",
        f"stripe:balance_transactions:{txn['id']}",
        "quickbooks:JournalEntry:132",
        f"stripe:payouts:{payout['id']}",
        "quickbooks:Deposit:133",
    ]
    by_ref = {s["ref"]: s for s in steps}
    assert [s["ref"] for s in steps if s["start"]] == ["quickbooks:Payment:131"]
    currency = invoice["currency"].upper()
    assert by_ref[f"stripe:invoices:{invoice['id']}"]["amount"] == {
        "amount": invoice["total"],
        "currency": currency,
    }
    assert by_ref["quickbooks:Invoice:130"]["amount"] == {
        "amount": invoice["total"],
        "currency": currency,
    }
    assert by_ref["quickbooks:Payment:131"]["status"] == "posted"
    assert by_ref[f"stripe:balance_transactions:{txn['id']}"]["amount"]["amount"] == txn["fee"]
    assert by_ref["quickbooks:JournalEntry:132"]["amount"]["amount"] == txn["fee"]

    code, output = run(database_url, tmp_path, f"stripe:invoice:{invoice['id']}")
    assert code == 0, output
    for text in (
        OPPORTUNITY,
        QUOTE,
        invoice["id"],
        charge["id"],
        txn["id"],
        payout["id"],
        "QuickBooks Deposit",
        "<- traced",
    ):
        assert text in output
    assert "broken" not in output


def test_broken_chain_names_the_missing_step(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """An invoice whose customer is not in QuickBooks yet is where the chain stops, and the trace says why."""
    seeded = _seeded()
    _land(store, seeded)
    invoice, charge = seeded["invoice"], seeded["charge"]
    _link(store, ("stripe", "customers", invoice["customer"]))

    code, output = run(database_url, tmp_path, f"stripe:charges:{charge['id']}", "--format", "json")
    assert code == 0, output
    problems = json.loads(output)["problems"]
    assert (
        f"invoice {invoice['id']} not posted to QuickBooks yet: waiting for customer: customer cust-1 is not in QuickBooks yet"
        in problems
    )
    assert (
        f"charge {charge['id']} not posted to QuickBooks yet: waiting for invoice {invoice['id']} to be in QuickBooks"
        in problems
    )

    code, output = run(database_url, tmp_path, f"stripe:invoices:{invoice['id']}")
    assert code == 0
    assert f"invoice {invoice['id']} not posted to QuickBooks yet: waiting for customer" in output
    assert "broken link(s)" in output


def test_accepted_quote_not_billed_is_broken(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """An accepted quote that nothing in Stripe bills is reported as the break."""
    store.land(
        "salesforce",
        [
            Record(
                "Quote",
                QUOTE,
                {"Id": QUOTE, "Status": "Accepted", "GrandTotal": 99.5, "CurrencyIsoCode": "EUR"},
            )
        ],
        now=NOW,
    )
    code, output = run(database_url, tmp_path, f"salesforce:Quote:{QUOTE}", "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    assert result["root"]["amount"] == {"amount": 9950, "currency": "EUR"}
    assert result["problems"] == [
        f"quote {QUOTE} is accepted but not billed in Stripe yet (no subscription or invoice has metadata salesforce_quote_id={QUOTE})"
    ]


def test_customer_traces_its_deals(store: Store, database_url: str, tmp_path: Path) -> None:
    """--customer lists the customer's linked records and the chain of its Stripe subscription."""
    seeded = _seeded()
    _land(store, seeded)
    _link(store, ("stripe", "customers", seeded["invoice"]["customer"]))
    code, output = run(database_url, tmp_path, "cust-1", "--customer", "--format", "json")
    assert code == 0, output
    refs = [s["ref"] for s in _steps(json.loads(output)["root"])]
    assert refs[:2] == ["customer:cust-1", f"stripe:customers:{seeded['invoice']['customer']}"]
    assert f"stripe:invoices:{seeded['invoice']['id']}" in refs


def test_unknown_ref_exits_1(store: Store, database_url: str, tmp_path: Path) -> None:
    """An unknown or malformed REF, or an unknown customer, exits 1 with a message."""
    code, output = run(database_url, tmp_path, "stripe:invoices:in_missing")
    assert code == 1
    assert "no record stripe:invoices:in_missing in the store" in output
    code, output = run(database_url, tmp_path, "in_missing")
    assert code == 1
    assert "system:object:id" in output
    code, output = run(database_url, tmp_path, "nobody", "--customer")
    assert code == 1
    assert "no customer 'nobody'" in output
    code, output = run(database_url, tmp_path, "quickbooks:Invoice:999")
    assert code == 1
    assert "not posted by ledgerlink" in output
