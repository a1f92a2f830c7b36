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
from ledgerlink.domain.money import Money
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
    store: Store,
    stripe_id: str,
    obj: str,
    remote_id: str | None,
    payload: dict[str, Any],
    *,
    action: WriteAction = WriteAction.CREATE,
    status: str = "done",
) -> None:
    """An outbox row of the ledger (sent by default, with the QuickBooks id it got)."""
    target = None if action is WriteAction.CREATE else remote_id
    op = WriteOp(f"test-{stripe_id}-{obj}-{action.value}", obj, action, payload, target)
    with store.engine.begin() as conn:
        enqueue(conn, [PlannedWrite("quickbooks", op, DOCUMENT_ENTITY, stripe_id)], now=NOW)
        conn.execute(
            update(Outbox.__table__)  # type: ignore[attr-defined]
            .where(Outbox.__table__.c.idempotency_key == op.idempotency_key)  # type: ignore[attr-defined]
            .values(status=status, remote_id=remote_id if status == "done" else target)
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


def _credit_note(invoice: dict[str, Any], n: int, **fields: Any) -> dict[str, Any]:
    """A credit note of a quarter of ``invoice`` (Stripe's shape), issued unless ``fields`` say."""
    amount = max(1, invoice["total"] // 4)
    note_id = f"cn_test{n}"
    return {
        "id": note_id,
        "object": "credit_note",
        "created": invoice["created"] + n,
        "amount": amount,
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "invoice": invoice["id"],
        "number": f"{invoice['number']}-CN-0{n}",
        "status": "issued",
        "subtotal": amount,
        "total": amount,
        "type": "post_payment",
        "refund": None,
        "effective_at": invoice["created"] + n,
        "lines": {
            "object": "list",
            "data": [{"id": f"cnli_test{n}", "amount": amount, "quantity": 1}],
        },
        **fields,
    }


def _land_notes(store: Store, *notes: dict[str, Any]) -> None:
    store.land("stripe", [Record("credit_notes", note["id"], note) for note in notes], now=NOW)


def _memo(note: dict[str, Any], *, voided: bool = False) -> dict[str, Any]:
    """The CreditMemo body the ledger sends for ``note`` (emptied when ``voided``)."""
    amount = 0 if voided else _major(note["total"])
    tag = f"ledgerlink stripe:{note['id']}"
    return {
        "Line": [{"Amount": amount, "DetailType": "SalesItemLineDetail"}],
        "PrivateNote": f"Voided {tag}" if voided else tag,
    }


def _application(note: dict[str, Any], invoice_remote: str, memo_remote: str) -> dict[str, Any]:
    """The zero Payment that applies ``note``'s CreditMemo to its Invoice."""
    applied = _major(note["total"])
    return {
        "TotalAmt": 0,
        "Line": [
            {"Amount": applied, "LinkedTxn": [{"TxnId": invoice_remote, "TxnType": "Invoice"}]},
            {"Amount": applied, "LinkedTxn": [{"TxnId": memo_remote, "TxnType": "CreditMemo"}]},
        ],
        "PrivateNote": f"ledgerlink stripe:{note['id']}",
    }


def _money_of(minor: int, invoice: dict[str, Any]) -> dict[str, Any]:
    return {"amount": minor, "currency": invoice["currency"].upper()}


def _invoice_posted(store: Store, invoice: dict[str, Any]) -> None:
    _link(store, ("stripe", "customers", invoice["customer"]), ("quickbooks", "Customer", "58"))
    _posted(
        store,
        invoice["id"],
        "Invoice",
        "130",
        {"Line": [{"Amount": _major(invoice["total"]), "DetailType": "SalesItemLineDetail"}]},
    )


def test_credit_note_shows_under_its_invoice_with_its_creditmemo(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """A credit note of a paid invoice shows under the invoice with its CreditMemo, from any
    record of the deal; one whose memo is still in the outbox is a break that says so."""
    seeded = _seeded()
    _land(store, seeded)
    invoice = seeded["invoice"]
    _invoice_posted(store, invoice)
    posted, queued = _credit_note(invoice, 1), _credit_note(invoice, 2)
    _land_notes(store, posted, queued)
    _posted(store, posted["id"], "CreditMemo", "140", _memo(posted))
    _posted(store, queued["id"], "CreditMemo", None, _memo(queued), status="pending")

    code, output = run(database_url, tmp_path, "quickbooks:CreditMemo:140", "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    steps = _steps(result["root"])
    assert steps[0]["ref"] == f"salesforce:Opportunity:{OPPORTUNITY}"
    invoice_step = next(s for s in steps if s["ref"] == f"stripe:invoices:{invoice['id']}")
    notes = [c for c in invoice_step["children"] if c["step"] == "Stripe credit note"]
    assert [(n["ref"], n["status"], n["amount"]) for n in notes] == [
        (f"stripe:credit_notes:{posted['id']}", "issued", _money_of(posted["total"], invoice)),
        (f"stripe:credit_notes:{queued['id']}", "issued", _money_of(queued["total"], invoice)),
    ]
    memo = notes[0]["children"]
    assert [(c["step"], c["ref"], c["status"], c["amount"], c["problem"]) for c in memo] == [
        (
            "QuickBooks CreditMemo",
            "quickbooks:CreditMemo:140",
            "posted",
            _money_of(posted["total"], invoice),
            None,
        )
    ]
    assert memo[0]["start"] is True
    waiting = notes[1]["children"]
    assert [(c["ref"], c["status"]) for c in waiting] == [(None, "pending")]
    problem = waiting[0]["problem"]
    assert problem.startswith(
        f"credit note {queued['id']} not posted to QuickBooks yet: queued in the outbox (row "
    )
    assert problem in result["problems"]

    code, output = run(database_url, tmp_path, f"stripe:credit_note:{posted['id']}")
    assert code == 0, output
    line = next(row for row in output.splitlines() if posted["id"] in row)
    for text in ("Stripe credit note", "issued", "<- traced"):
        assert text in line
    amount = Money(posted["total"], invoice["currency"].upper()).format()
    assert amount in line
    memo_line = next(row for row in output.splitlines() if "QuickBooks CreditMemo  140" in row)
    assert amount in memo_line
    assert "posted" in memo_line


def test_credit_note_on_open_invoice_shows_its_application(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """A credit note of an open invoice shows its CreditMemo and the zero Payment applying it
    (with the credit applied); one not posted says what each document waits for."""
    seeded = _seeded()
    seeded["invoice"] |= {"status": "open", "amount_paid": 0}
    _land(store, seeded)
    invoice = seeded["invoice"]
    _invoice_posted(store, invoice)
    applied = _credit_note(invoice, 1, type="pre_payment")
    other_customer = _credit_note(invoice, 2, type="pre_payment", customer="cus_elsewhere")
    _land_notes(store, applied, other_customer)
    _posted(store, applied["id"], "CreditMemo", "140", _memo(applied))
    _posted(store, applied["id"], "Payment", "141", _application(applied, "130", "140"))

    code, output = run(database_url, tmp_path, "quickbooks:Payment:141", "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    by_ref = {s["ref"]: s for s in _steps(result["root"])}
    note = by_ref[f"stripe:credit_notes:{applied['id']}"]
    assert [(c["step"], c["ref"], c["amount"], c["status"]) for c in note["children"]] == [
        (
            "QuickBooks CreditMemo",
            "quickbooks:CreditMemo:140",
            _money_of(applied["total"], invoice),
            "posted",
        ),
        (
            "QuickBooks credit application (Payment)",
            "quickbooks:Payment:141",
            _money_of(applied["total"], invoice),
            "posted",
        ),
    ]
    assert by_ref["quickbooks:Payment:141"]["start"] is True
    other = by_ref[f"stripe:credit_notes:{other_customer['id']}"]
    assert [c["problem"] for c in other["children"]] == [
        f"credit note {other_customer['id']} not posted to QuickBooks yet: waiting for customer: "
        "Stripe customer cus_elsewhere is not matched to a customer yet",
        f"credit application of credit note {other_customer['id']} not posted to QuickBooks yet: "
        "waiting for its CreditMemo to be in QuickBooks",
    ]


def test_voided_credit_note_shows_as_voided(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """A voided credit note shows as void: its emptied CreditMemo as voided and its deleted
    application; one whose memo still counts is a break naming the step it waits on; one
    voided before it was posted has nothing in QuickBooks and is no break."""
    seeded = _seeded()
    seeded["invoice"] |= {"status": "open", "amount_paid": 0}
    _land(store, seeded)
    invoice = seeded["invoice"]
    _invoice_posted(store, invoice)
    undone, pending, early = (
        _credit_note(invoice, n, type="pre_payment", status="void") for n in (1, 2, 3)
    )
    _land_notes(store, undone, pending, early)
    _posted(store, undone["id"], "CreditMemo", "140", _memo(undone))
    _posted(store, undone["id"], "Payment", "141", _application(undone, "130", "140"))
    _posted(store, undone["id"], "Payment", "141", {}, action=WriteAction.DELETE)
    _posted(
        store,
        undone["id"],
        "CreditMemo",
        "140",
        _memo(undone, voided=True),
        action=WriteAction.UPDATE,
    )
    # The memo as QuickBooks showed it when last pulled, before it was emptied.
    store.land(
        "quickbooks",
        [
            Record(
                "CreditMemo",
                "140",
                {"Id": "140", "TotalAmt": _major(undone["total"]), **_memo(undone)},
            )
        ],
        now=NOW,
    )
    _posted(store, pending["id"], "CreditMemo", "150", _memo(pending))
    _posted(store, pending["id"], "Payment", "151", _application(pending, "130", "150"))

    code, output = run(
        database_url, tmp_path, f"stripe:credit_notes:{undone['id']}", "--format", "json"
    )
    assert code == 0, output
    result = json.loads(output)
    by_ref = {s["ref"]: s for s in _steps(result["root"])}
    note = by_ref[f"stripe:credit_notes:{undone['id']}"]
    assert note["status"] == "void"
    assert note["start"] is True
    assert [(c["ref"], c["amount"], c["status"], c["problem"]) for c in note["children"]] == [
        ("quickbooks:CreditMemo:140", _money_of(0, invoice), "voided", None),
        ("quickbooks:Payment:141", None, "deleted", None),
    ]
    late = by_ref[f"stripe:credit_notes:{pending['id']}"]
    assert late["status"] == "void"
    assert [(c["ref"], c["status"]) for c in late["children"]] == [
        ("quickbooks:CreditMemo:150", "posted"),
        ("quickbooks:Payment:151", "posted"),
    ]
    assert late["children"][0]["problem"] == (
        f"credit note {pending['id']} is void but its CreditMemo 150 is not emptied in QuickBooks "
        "yet: its credit application 151 is deleted first (the next sync cycle plans it)"
    )
    before = by_ref[f"stripe:credit_notes:{early['id']}"]
    assert [(c["ref"], c["status"], c["problem"]) for c in before["children"]] == [
        (None, "not posted (voided before it was posted)", None)
    ]
    assert [p for p in result["problems"] if "credit note" in p] == [late["children"][0]["problem"]]

    code, output = run(database_url, tmp_path, f"stripe:credit_notes:{undone['id']}")
    assert code == 0, output
    line = next(row for row in output.splitlines() if "QuickBooks CreditMemo  140" in row)
    assert "voided" in line
