"""Landing a stream again: what a re-read finds changed, new or deleted is written exactly.

The store checks a re-read against the stored hashes of each batch, in the batch's order, and
encodes the records of a batch again when they turn out to be written after a batch that
wrote few records (see ``Store._land_batch``). These tests run a stream through several
passes, in an order unrelated to the ids, and check counts, stored text and hashes on both
databases.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledgerlink.connector import Cursor, Page, Record
from ledgerlink.store import LandResult, Store, content_hash

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(hours=3)


def record(n: int, version: int = 1, *, deleted: bool = False) -> Record:
    payload: dict[str, Any] = {"Id": f"001{n:05d}", "Name": f"Acme {n}", "v": version, "ß": "ü"}
    return Record(
        object="Account", id=payload["Id"], payload=payload, deleted=deleted, cursor_value=f"c{n}"
    )


def stored_rows(engine: Engine, store: Store) -> dict[str, tuple[str, str, bool, datetime]]:
    """external_id -> (payload text, content hash, deleted, changed_at) of every landed row."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT external_id, CAST(payload AS TEXT), content_hash FROM source_record")
        ).all()
    found = {}
    for external_id, payload_text, digest in rows:
        landed = store.get_source_record("salesforce", "Account", external_id)
        assert landed is not None
        found[external_id] = (
            payload_text,
            digest,
            landed.deleted_at is not None,
            landed.changed_at,
        )
    return found


def canonical_text(payload: dict[str, Any]) -> str:
    """The stored form: sorted keys, compact, non-ASCII as is."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_reread_in_any_order_finds_exactly_what_changed(engine: Engine) -> None:
    """After an unchanged re-read, a pass with a few changes writes those and nothing else."""
    store = Store(engine, batch_size=50)
    order = list(range(200))
    random.Random(7).shuffle(order)  # ids in no sorted order, across four batches
    assert store.land("salesforce", [record(n) for n in order], now=T0) == LandResult(inserted=200)
    assert store.land("salesforce", [record(n) for n in order], now=T1) == LandResult(unchanged=200)
    changed = {3, 77, 150}
    deleted = {10, 199}
    third = [record(n, 2 if n in changed else 1, deleted=n in deleted) for n in [*order, 200, 201]]
    assert store.land("salesforce", third, now=T2) == LandResult(
        inserted=2, updated=3, unchanged=195, deleted=2
    )

    rows = stored_rows(engine, store)
    assert len(rows) == 202
    for n in range(202):
        payload_text, digest, gone, changed_at = rows[f"001{n:05d}"]
        version = 2 if n in changed else 1
        expected = record(n, version).payload
        assert payload_text == canonical_text(expected)
        assert digest == content_hash(expected)
        assert digest == hashlib.sha256(payload_text.encode("utf-8")).hexdigest()
        assert gone == (n in deleted)
        assert changed_at == (T2 if n in changed | deleted | {200, 201} else T0)


def test_each_page_of_a_reread_is_checked_on_its_own(engine: Engine, store: Store) -> None:
    """Pages that change nothing, then a page that changes everything, then one that revives."""
    pages = [[record(n) for n in range(start, start + 30)] for start in (0, 30, 60)]
    for number, records in enumerate(pages):
        page = Page("Account", records, Cursor(value=f"p{number}"))
        store.land_page("salesforce", page, connector="salesforce", now=T0)
    for records in pages[:2]:  # unchanged
        page = Page("Account", records, Cursor(value="again"))
        assert store.land_page("salesforce", page, connector="salesforce", now=T1) == LandResult(
            unchanged=30
        )
    rewritten = Page("Account", [record(n, 3) for n in range(60, 90)], Cursor(value="v3"))
    assert store.land_page("salesforce", rewritten, connector="salesforce", now=T1) == LandResult(
        updated=30
    )
    gone = [record(n, 3, deleted=True) for n in range(60, 90)]
    assert store.land("salesforce", gone, now=T2) == LandResult(deleted=30)
    assert store.land("salesforce", gone, now=T2) == LandResult(unchanged=30)
    back = [record(n, 3) for n in range(60, 90)]
    assert store.land("salesforce", back, now=T3) == LandResult(updated=30)
    rows = stored_rows(engine, store)
    assert all(not rows[f"001{n:05d}"][2] for n in range(90))
    assert rows["00100075"][1] == content_hash(record(75, 3).payload)
    assert rows["00100075"][3] == T3
    assert rows["00100005"][3] == T0
    assert store.load_cursor("salesforce", "Account") == Cursor(value="v3")


def test_a_stored_hash_the_store_never_writes_is_replaced(engine: Engine, store: Store) -> None:
    """A stored hash holding a line break (written by hand) counts as a change and is healed."""
    records = [record(n) for n in range(5)]
    store.land("salesforce", records, now=T0)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE source_record SET content_hash = :bad WHERE external_id = '00100002'"),
            {"bad": "not\na*hash"},
        )
    assert store.land("salesforce", records, now=T1) == LandResult(updated=1, unchanged=4)
    rows = stored_rows(engine, store)
    assert rows["00100002"][1] == content_hash(records[2].payload)
    assert rows["00100002"][3] == T1
    assert rows["00100001"][3] == T0
    assert store.land("salesforce", records, now=T2) == LandResult(unchanged=5)
