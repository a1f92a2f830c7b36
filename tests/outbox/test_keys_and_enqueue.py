"""Idempotency keys and enqueueing: deterministic keys, one row per key, caller's transaction."""

from __future__ import annotations

import re

import pytest
from ledgerlink_quickbooks.writes import requestid_for
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.sync.outbox import KEY_MAX_LENGTH, PlannedWrite, enqueue, idempotency_key

from .conftest import planned, queue, rows


def test_key_is_deterministic_short_and_safe_for_every_vendor() -> None:
    """The same write always gets the same key, of at most 47 characters of [a-z0-9-]."""
    content = {"Amount": 12000, "Currency": "EUR", "Lines": [{"Item": "Pro"}]}
    key = idempotency_key("quickbooks", "Invoice", WriteAction.CREATE, "inv-42", content)
    again = idempotency_key(
        "quickbooks", "Invoice", "create", "inv-42", dict(reversed(content.items()))
    )
    assert key == again
    assert key.startswith("ll-quickbooks-create-")
    assert len(key) <= KEY_MAX_LENGTH <= 50
    assert re.fullmatch(r"[a-z0-9-]+", key)
    long_target = idempotency_key("a-very-long-connector-name", "X" * 200, "upsert", "e" * 300, {})
    assert len(long_target) <= KEY_MAX_LENGTH
    # QuickBooks sends such a key unchanged as its requestid.
    assert requestid_for(key) == key


def test_key_changes_with_what_the_write_does() -> None:
    """Another target, object, action, entity, content or version gives another key."""
    base = ("stripe", "customers", "create", "cust-1", {"name": "Acme"})
    key = idempotency_key(*base)
    variants = [
        idempotency_key("quickbooks", *base[1:]),
        idempotency_key("stripe", "invoices", *base[2:]),
        idempotency_key("stripe", "customers", "update", *base[3:]),
        idempotency_key("stripe", "customers", "create", "cust-2", {"name": "Acme"}),
        idempotency_key(*base[:4], {"name": "Acme Ltd"}),
        idempotency_key(*base, version=2),
    ]
    assert key not in variants
    assert len(set(variants)) == len(variants)


def test_enqueue_twice_keeps_one_row(engine: Engine) -> None:
    """Queuing the same write twice (re-planning an unchanged change) stores it once."""
    assert queue(engine, planned(1), planned(2)) == 2
    assert queue(engine, planned(1), planned(2), planned(3)) == 1
    assert queue(engine, planned(3), planned(3)) == 0
    stored = rows(engine)
    assert [r.entity_id for r in stored] == ["e1", "e2", "e3"]
    assert {r.status for r in stored} == {"pending"}
    assert stored[0].payload == {"Name": "Company 1", "Ext__c": "X1"}


def test_enqueue_of_many_writes_from_a_generator_stores_each_key_once(engine: Engine) -> None:
    """A first plan queues its writes as they come, more than one insert's worth (repeated
    keys across the inserts still stored once, and counted once)."""
    count = 2_600  # more than two inserts' worth
    writes = (planned(n % count + 1) for n in range(count + 700))  # 700 repeats, far apart
    assert queue(engine, *writes) == count
    stored = rows(engine)
    assert len(stored) == count
    assert len({r.idempotency_key for r in stored}) == count
    assert queue(engine, *(planned(n) for n in range(1, count + 1))) == 0


def test_enqueue_belongs_to_the_callers_transaction(engine: Engine) -> None:
    """Rows enqueued in a transaction that rolls back are not stored."""
    with engine.connect() as conn:
        transaction = conn.begin()
        enqueue(conn, [planned(1)])
        transaction.rollback()
    assert rows(engine) == []
    with Session(engine) as session:
        enqueue(session, [planned(2)])
        session.commit()
    assert [r.entity_id for r in rows(engine)] == ["e2"]


def test_enqueue_keeps_the_remote_id_of_updates_and_refuses_incomplete_ops(engine: Engine) -> None:
    """An update stores its target id; an update without one, or an upsert whose external id is
    missing from its payload, is refused."""
    queue(engine, planned(1, action=WriteAction.UPDATE))
    assert rows(engine)[0].remote_id == "R-existing"
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="remote_id"):
            enqueue(conn, [PlannedWrite("fake", WriteOp("k1", "Thing", WriteAction.UPDATE, {}))])
        bad = WriteOp("k2", "Thing", WriteAction.UPSERT, {"Ext__c": "A"}, external_id="B")
        with pytest.raises(ValueError, match="external_id"):
            enqueue(conn, [PlannedWrite("fake", bad)])
