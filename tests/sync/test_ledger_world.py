"""The ledger planner's kept world (the daemon's and long-running cycles' way) sees every change.

A long-running caller keeps :class:`~ledgerlink.sync._ledger_world.KeptLedgerWorld` between
plans, so a plan reads only the landed records and ledger outbox rows that changed since the
previous one. These tests change the store between refreshes in every way the ledger cares
about (Stripe objects landed, amended and deleted; QuickBooks documents landed and voided;
accounts renamed; outbox rows queued, sent, failed, cancelled and retried; links made) and
check that the kept world is, each time, the world a fresh read gives, and that a plan through
it queues what a plan reading everything queues.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, update

from ledgerlink.connector.protocol import Record, WriteAction, WriteOp
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import Store
from ledgerlink.store.models import Outbox
from ledgerlink.sync._ledger_world import (
    ITEM_ENTITY,
    FinalIds,
    KeptLedgerWorld,
    LedgerWorld,
    load_world,
)
from ledgerlink.sync.ledger import plan_ledger
from ledgerlink.sync.outbox import PlannedWrite, cancel_row, enqueue, retry_rows, row_values

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNTS = Path(__file__).resolve().parents[2] / "mappings" / "accounts.yaml"
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_KEPT_ONLY = (
    "references",
    "settled",
    "settled_for",
    "held",
    "dependents",
    "final",
    "final_references",
    "touched",
    "waits",
)


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _invoice(number: int, *, total: int = 5000, status: str = "paid") -> Record:
    invoice_id = f"in_{number:04d}"
    return Record(
        "invoices",
        invoice_id,
        {
            "id": invoice_id,
            "object": "invoice",
            "customer": "cus_1",
            "currency": "usd",
            "status": status,
            "total": total,
            "created": 1_767_225_600 + number,
            "lines": {"data": [{"amount": total, "quantity": 1, "description": "Plan"}]},
        },
    )


def _quickbooks(obj: str, remote_id: str, payload: dict[str, Any]) -> Record:
    return Record(obj, remote_id, {"Id": remote_id, **payload})


def _row(entity_id: str, obj: str = "Invoice", body: int = 0) -> PlannedWrite:
    op = WriteOp(
        idempotency_key=f"test:{entity_id}:{obj}:{body}",
        object=obj,
        action=WriteAction.CREATE,
        payload={"PrivateNote": f"ledgerlink stripe:{entity_id}", "n": body},
    )
    return PlannedWrite("quickbooks", op, entity_kind="ledger", entity_id=entity_id)


def _queue(store: Store, *writes: PlannedWrite) -> None:
    with store.engine.begin() as conn:
        enqueue(conn, list(writes), now=NOW)


def _set(store: Store, entity_id: str, **values: Any) -> None:
    """What the push worker records for the newest row of ``entity_id``."""
    with store.engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.entity_id == entity_id).values(**values))


def _row_id(store: Store, entity_id: str) -> int:
    with store.engine.connect() as conn:
        found = conn.execute(
            OUTBOX.select().where(OUTBOX.c.entity_id == entity_id).order_by(OUTBOX.c.id.desc())
        ).first()
    assert found is not None
    return int(found.id)


def _fields(world: LedgerWorld) -> dict[str, Any]:
    return {k: v for k, v in asdict(world).items() if k not in _KEPT_ONLY}


def _same_as_fresh(store: Store, kept: KeptLedgerWorld) -> int:
    """Refresh ``kept``, check it equals a fresh read, return how much it read again."""
    with store.engine.connect() as conn:
        world = kept.refresh(conn)
        fresh = load_world(conn)
    mine, theirs = _fields(world), _fields(fresh)
    for name, value in theirs.items():
        if isinstance(value, dict):
            wrong = {k for k in {*value, *mine[name]} if value.get(k) != mine[name].get(k)}
            assert not wrong, (name, {k: (mine[name].get(k), value.get(k)) for k in wrong})
        assert mine[name] == value, name
    return kept.reread


def _land_books(store: Store, invoices: int, *records: Record) -> None:
    """Land ``invoices`` Stripe invoices and the QuickBooks clearing account and item they
    post with (and ``records``), at :data:`NOW`."""
    store.land("stripe", [_invoice(n) for n in range(invoices)], now=NOW)
    store.land(
        "quickbooks",
        [
            _quickbooks("Account", "1", {"Name": "Stripe Clearing"}),
            _quickbooks("Item", "7", {"Name": "Plan"}),
            *records,
        ],
        now=NOW,
    )


def test_the_kept_world_follows_every_change(store: Store) -> None:
    """After each kind of change the kept world equals a fresh read, reading only the change."""
    at = NOW
    _land_books(
        store,
        30,
        _quickbooks("Customer", "58", {"DisplayName": "Acme", "CurrencyRef": {"value": "USD"}}),
    )
    _queue(store, *(_row(f"in_{n:04d}") for n in range(30)))
    kept = KeptLedgerWorld()
    assert _same_as_fresh(store, kept) >= 60  # the first refresh reads everything

    # Nothing changed: only the lookback window of landed records and rows is read again.
    at += timedelta(minutes=10)
    store.land("stripe", [_invoice(30)], now=at)
    reread = _same_as_fresh(store, kept)
    assert reread < 40

    # An amended invoice, a deleted one, a renamed account, a customer in another currency.
    at += timedelta(minutes=10)
    store.land("stripe", [_invoice(3, total=7000)], now=at)
    store.land("stripe", [Record("invoices", "in_0004", {}, deleted=True)], now=at)
    store.land(
        "quickbooks",
        [
            _quickbooks("Account", "1", {"Name": "Stripe Clearing (USD)"}),
            _quickbooks("Customer", "58", {"DisplayName": "Acme", "CurrencyRef": {"value": "EUR"}}),
        ],
        now=at,
    )
    references = kept.world.references
    _same_as_fresh(store, kept)
    assert "in_0004" not in kept.world.stripe["invoices"]
    assert kept.world.stripe["invoices"]["in_0003"]["total"] == 7000
    assert kept.world.references > references  # settled documents are compared again

    # Rows sent, failed, cancelled; a cancelled row retried; a newer row of a posted invoice.
    _set(store, "in_0001", status="done", remote_id="101")
    _set(store, "in_0002", status="failed", last_error="boom")
    cancel_row(store.engine, _row_id(store, "in_0005"))
    _same_as_fresh(store, kept)
    assert kept.world.created[("ledger", "in_0001", "Invoice")] == "101"
    assert ("ledger", "in_0005", "Invoice") not in kept.world.rows
    retry_rows(store.engine, [_row_id(store, "in_0005")])
    _queue(store, _row("in_0001", body=1))
    _same_as_fresh(store, kept)
    assert kept.world.rows[("ledger", "in_0005", "Invoice")].status == "pending"
    assert kept.world.rows[("ledger", "in_0001", "Invoice")].payload["n"] == 1
    cancel_row(store.engine, _row_id(store, "in_0001"))  # the newer row: the older one is back
    _same_as_fresh(store, kept)
    assert kept.world.rows[("ledger", "in_0001", "Invoice")].status == "done"

    # QuickBooks documents land naming their Stripe source; one is voided there.
    at += timedelta(minutes=10)
    store.land(
        "quickbooks",
        [
            _quickbooks("Invoice", "101", {"PrivateNote": "ledgerlink stripe:in_0001"}),
            _quickbooks("Invoice", "102", {"PrivateNote": "ledgerlink stripe:in_0006"}),
        ],
        now=at,
    )
    _same_as_fresh(store, kept)
    at += timedelta(minutes=10)
    store.land(
        "quickbooks",
        [_quickbooks("Invoice", "102", {"PrivateNote": "Voided - ledgerlink stripe:in_0006"})],
        now=at,
    )
    _same_as_fresh(store, kept)
    assert ("Invoice", "in_0006") in kept.world.voided
    at += timedelta(minutes=10)
    store.land("quickbooks", [Record("Invoice", "102", {}, deleted=True)], now=at)
    _same_as_fresh(store, kept)
    assert ("Invoice", "in_0006") not in kept.world.in_quickbooks


def test_only_a_name_resolving_to_another_id_compares_posted_documents_again(
    store: Store,
) -> None:
    """Posted documents are compared again when an account or item name they may use
    resolves to another id. A name resolving for the first time (an item the ledger created,
    once done and once landed; a new account) moves nothing: no posted document used it, so
    a kept plan does not walk every document again for it (it did, pass after pass, while
    the first cycle's items and accounts came in)."""
    at = NOW
    _land_books(store, 3)
    kept = KeptLedgerWorld()
    _same_as_fresh(store, kept)
    references = kept.world.references

    # The ledger creates the item "Setup Fee"; the create is done, then the item lands.
    op = WriteOp(
        idempotency_key="test:item:setup-fee",
        object="Item",
        action=WriteAction.CREATE,
        payload={"Name": "Setup Fee"},
    )
    _queue(store, PlannedWrite("quickbooks", op, entity_kind=ITEM_ENTITY, entity_id="Setup Fee"))
    _same_as_fresh(store, kept)
    _set(store, "Setup Fee", status="done", remote_id="12")
    _same_as_fresh(store, kept)
    assert kept.world.created[(ITEM_ENTITY, "Setup Fee", "Item")] == "12"
    at += timedelta(minutes=5)
    store.land("quickbooks", [_quickbooks("Item", "12", {"Name": "Setup Fee"})], now=at)
    store.land("quickbooks", [_quickbooks("Account", "2", {"Name": "Stripe Fees"})], now=at)
    _same_as_fresh(store, kept)
    assert kept.world.items["setup fee"] == "12"
    assert kept.world.references == references

    # Someone adds an older item of the same name: "Setup Fee" now means item 3.
    at += timedelta(minutes=5)
    store.land("quickbooks", [_quickbooks("Item", "3", {"Name": "Setup Fee"})], now=at)
    _same_as_fresh(store, kept)
    assert kept.world.items["setup fee"] == "3"
    assert kept.world.references > references
    references = kept.world.references

    # And renames the account: "Stripe Clearing" no longer resolves.
    at += timedelta(minutes=5)
    store.land("quickbooks", [_quickbooks("Account", "1", {"Name": "Clearing"})], now=at)
    _same_as_fresh(store, kept)
    assert kept.world.references > references


def test_a_kept_plan_queues_what_a_full_plan_queues(
    store: Store, mappings: MappingSet, tmp_path: Any
) -> None:
    """Plans through the kept world queue the writes of plans that read everything, including
    the update of an invoice amended after it was posted (compared again, not taken as settled)."""
    at = NOW
    store.land("stripe", [_invoice(n) for n in range(5)], now=at)
    kept = KeptLedgerWorld()
    first = plan_ledger(store, mappings, now=at, kept=kept, dry_run=True)
    full = plan_ledger(store, mappings, now=at, dry_run=True)
    assert [d.idempotency_key for d in first.documents] == [
        d.idempotency_key for d in full.documents
    ]
    assert first.waiting == full.waiting


def _charge(number: int, invoice: str) -> Record:
    charge_id = f"ch_{number:04d}"
    return Record(
        "charges",
        charge_id,
        {
            "id": charge_id,
            "object": "charge",
            "customer": "cus_1",
            "invoice": invoice,
            "currency": "usd",
            "amount": 5000,
            "status": "succeeded",
            "created": 1_767_225_700 + number,
        },
    )


def test_waiting_documents_are_looked_at_again_only_when_what_they_wait_on_moves(
    store: Store, mappings: MappingSet, link_customer: Any
) -> None:
    """Invoices waiting for their Stripe customer's match and payments waiting for their
    invoice's document are counted as waiting, not built again, by quiet kept plans; once
    the customer is matched, or the invoice sent, the kept plan queues what a full plan does."""
    at = NOW
    accounts = [
        _quickbooks("Account", str(n), {"Name": spec["name"]})
        for n, spec in enumerate(yaml.safe_load(ACCOUNTS.read_text())["accounts"].values())
    ]
    item = _quickbooks("Item", "9", {"Name": "Services"})
    store.land("quickbooks", [*accounts, item], now=at)
    store.land("stripe", [_invoice(1), _invoice(2), _charge(1, "in_0001")], now=at)
    kept = KeptLedgerWorld()

    def plan_both() -> tuple[Any, Any]:
        full = plan_ledger(store, mappings, now=at, dry_run=True)
        mine = plan_ledger(store, mappings, now=at, kept=kept)
        assert [d.idempotency_key for d in mine.documents] == [
            d.idempotency_key for d in full.documents
        ]
        assert mine.waiting == full.waiting
        return mine, full

    first, _ = plan_both()
    assert first.waiting == {
        "Stripe customer not matched to a customer yet": 2,
        "invoice not in QuickBooks yet": 1,
    }
    quiet, full = plan_both()
    assert quiet.unchanged == 3  # counted as waiting, not built again
    assert full.unchanged == 0
    assert not quiet.documents

    at += timedelta(minutes=10)
    link_customer(("stripe", "customers", "cus_1"), ("quickbooks", "Customer", "58"), at=at)
    store.land("quickbooks", [_quickbooks("Customer", "58", {"DisplayName": "Acme"})], now=at)
    matched, _ = plan_both()
    assert {(d.stripe_id, d.object) for d in matched.documents} == {
        ("in_0001", "Invoice"),
        ("in_0002", "Invoice"),
    }
    assert matched.waiting == {"invoice not in QuickBooks yet": 1}
    quiet, _ = plan_both()
    assert not quiet.documents

    _set(store, "in_0001", status="done", remote_id="101")
    sent, _ = plan_both()
    assert [(d.stripe_id, d.object) for d in sent.documents] == [("ch_0001", "Payment")]

    # A customer matched before its QuickBooks customer exists: its invoice waits for that.
    at += timedelta(minutes=10)
    other = {**_invoice(3).payload, "customer": "cus_2"}
    store.land("stripe", [Record("invoices", "in_0003", other)], now=at)
    link_customer(("stripe", "customers", "cus_2"), customer="c-2", at=at)
    waiting, _ = plan_both()
    assert waiting.waiting["customer not in QuickBooks yet"] == 1
    assert not plan_both()[0].documents
    at += timedelta(minutes=10)
    link_customer(("quickbooks", "Customer", "59"), customer="c-2", at=at)
    linked, _ = plan_both()
    assert linked.waiting == {"customer's QuickBooks record not landed yet": 1}
    assert not linked.documents
    # It lands a pass later, the links unchanged: the invoice is looked at again and posts.
    store.land("quickbooks", [_quickbooks("Customer", "59", {"DisplayName": "Bolt"})], now=at)
    landed, _ = plan_both()
    assert [(d.stripe_id, d.object) for d in landed.documents] == [("in_0003", "Invoice")]


def _acme_in_the_books(store: Store, link_customer: Any) -> None:
    """The ledger's accounts and item landed, and Stripe's cus_1 linked to QuickBooks
    customer 58 (Acme), as of NOW."""
    accounts = [
        _quickbooks("Account", str(n), {"Name": spec["name"]})
        for n, spec in enumerate(yaml.safe_load(ACCOUNTS.read_text())["accounts"].values())
    ]
    store.land("quickbooks", [*accounts, _quickbooks("Item", "9", {"Name": "Services"})], now=NOW)
    store.land("quickbooks", [_quickbooks("Customer", "58", {"DisplayName": "Acme"})], now=NOW)
    link_customer(("stripe", "customers", "cus_1"), ("quickbooks", "Customer", "58"), at=NOW)


def test_a_follow_up_plan_reads_links_and_sends_and_the_next_plan_what_landed(
    store: Store, mappings: MappingSet, link_customer: Any
) -> None:
    """A cycle's follow-up (``landed=False``, right after its push) reads no landed record but
    does read what the push did: an invoice's document sent, its payment queued in the same
    cycle. A Stripe invoice that landed meanwhile is not lost: the next plan posts it."""
    at = NOW
    _acme_in_the_books(store, link_customer)
    store.land("stripe", [_invoice(1), _charge(1, "in_0001")], now=at)
    kept = KeptLedgerWorld()
    first = plan_ledger(store, mappings, now=at, kept=kept)
    assert [(d.stripe_id, d.object) for d in first.documents] == [("in_0001", "Invoice")]

    _set(store, "in_0001", status="done", remote_id="101")  # the push sent it
    store.land("stripe", [_invoice(2)], now=at + timedelta(seconds=5))  # landed meanwhile
    follow_up = plan_ledger(store, mappings, now=at, kept=kept, landed=False)
    assert [(d.stripe_id, d.object) for d in follow_up.documents] == [("ch_0001", "Payment")]
    assert "in_0002" not in kept.world.stripe["invoices"]

    following = plan_ledger(store, mappings, now=at, kept=kept)
    full = plan_ledger(store, mappings, now=at, dry_run=True)
    assert [(d.stripe_id, d.object) for d in following.documents] == [("in_0002", "Invoice")]
    assert not full.documents  # the kept plans queued everything a full read wants


def test_an_invoice_found_equal_to_its_sent_document_is_not_looked_at_again(
    store: Store, mappings: MappingSet, link_customer: Any
) -> None:
    """Once a kept plan has built a posted invoice and found it equal to the document it sent,
    quiet plans after it count the invoice as unchanged without looking at it (the walk over
    every posted invoice that follows a rebuild of the world is paid once, not twice), and an
    amendment of the invoice is still compared and sent."""
    at = NOW
    _acme_in_the_books(store, link_customer)
    store.land("stripe", [_invoice(1)], now=at)
    kept = KeptLedgerWorld()
    first = plan_ledger(store, mappings, now=at, kept=kept)
    assert [(d.stripe_id, d.object) for d in first.documents] == [("in_0001", "Invoice")]
    _set(store, "in_0001", status="done", remote_id="101")  # the push sent it
    at += timedelta(seconds=5)
    note = {"PrivateNote": "ledgerlink stripe:in_0001"}
    store.land("quickbooks", [_quickbooks("Invoice", "101", note)], now=at)  # its echo

    compared = plan_ledger(store, mappings, now=at, kept=kept)
    assert not compared.documents
    assert compared.unchanged == 0  # built and compared with what was sent
    quiet = plan_ledger(store, mappings, now=at, kept=kept)
    assert not quiet.documents
    assert quiet.unchanged == 1  # final: not looked at
    assert not plan_ledger(store, mappings, now=at, dry_run=True).documents

    at += timedelta(seconds=5)
    store.land("stripe", [_invoice(1, total=7000)], now=at)  # amended in Stripe
    full = plan_ledger(store, mappings, now=at, dry_run=True)
    amended = plan_ledger(store, mappings, now=at, kept=kept)
    assert [(d.stripe_id, d.action) for d in amended.documents] == [("in_0001", WriteAction.UPDATE)]
    assert [d.idempotency_key for d in amended.documents] == [
        d.idempotency_key for d in full.documents
    ]


_IDS = st.sampled_from([f"in_{n}" for n in range(6)] + [f"ch_{n}" for n in range(6)])
_STEPS = st.lists(
    st.tuples(st.sampled_from(["land", "delete", "add", "discard", "clear", "ask"]), _IDS),
    max_size=60,
)


@given(steps=_STEPS)
def test_the_open_ids_a_kept_plan_walks_are_every_landed_object_not_final(
    steps: list[tuple[str, str]],
) -> None:
    # The planner asks for the objects left to look at without a pass over all of them: the
    # answer must be exactly the landed objects of that kind that are not final, whatever
    # landed, left or was found final or not final before.
    final = FinalIds()
    landed: dict[str, dict[str, None]] = {"in": {}, "ch": {}}
    for action, stripe_id in steps:
        kind = landed[stripe_id[:2]]
        if action == "land":
            kind[stripe_id] = None
            final.landed(stripe_id)
        elif action == "delete":
            kind.pop(stripe_id, None)
        elif action == "add":
            final.add(stripe_id)
        elif action == "discard":
            final.discard(stripe_id)
        elif action == "clear":
            final.clear()
        else:
            every = (k.keys() for k in landed.values())
            assert final.open_in(kind.keys(), every) == {i for i in kind if i not in final}
        assert len(final) == len(set(final))


def test_a_row_that_commits_after_a_higher_one_is_read(store: Store) -> None:
    """A plan takes its rows' ids before it commits: a row with a lower id than one the kept
    world read can become visible later. Within the lookback it is read, once; the rows of the
    window it read already are not read again."""
    _land_books(store, 6)
    _queue(store, *(_row(f"in_{n:04d}") for n in range(4)))
    kept = KeptLedgerWorld()
    _same_as_fresh(store, kept)
    # Another plan's rows: one holding a high id commits first, a lower one after it.
    with store.engine.begin() as conn:
        low = int(conn.execute(select(func.max(OUTBOX.c.id))).scalar_one()) + 1
        conn.execute(insert(OUTBOX), [{**row_values(_row("in_0005"), at=NOW), "id": low + 50}])
    _same_as_fresh(store, kept)
    with store.engine.begin() as conn:
        conn.execute(insert(OUTBOX), [{**row_values(_row("in_0004"), at=NOW), "id": low}])
    assert _same_as_fresh(store, kept) == 1  # the late row alone
    assert ("ledger", "in_0004", "Invoice") in kept.world.rows
    assert _same_as_fresh(store, kept) == 0  # and not again
