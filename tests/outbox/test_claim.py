"""Claiming outbox rows: leases, expiry, entity order, send groups, concurrent workers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from ledgerlink.store import Outbox, create_engine_for
from ledgerlink.sync.outbox import claim

from .conftest import T0, planned, queue, rows

LEASE = timedelta(minutes=5)
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]


def test_claim_marks_rows_in_flight_for_the_worker(engine: Engine) -> None:
    """A claim takes the oldest due rows, marks them in flight with the worker and lease end."""
    queue(engine, *(planned(n) for n in range(5)))
    claimed = claim(engine, "w1", "fake", 3, LEASE, now=T0)
    assert [r.entity_id for r in claimed] == ["e0", "e1", "e2"]
    assert all(r.claimed_by.startswith("w1#") for r in claimed)
    assert len({r.claimed_by for r in claimed}) == 1
    stored = rows(engine)
    assert [r.status for r in stored] == ["in_flight"] * 3 + ["pending"] * 2
    assert stored[0].claimed_until == T0 + LEASE
    assert [r.entity_id for r in claim(engine, "w2", "fake", 3, LEASE, now=T0)] == ["e3", "e4"]
    assert claim(engine, "w3", "fake", 3, LEASE, now=T0) == []


def test_claim_takes_only_the_target_and_due_rows(engine: Engine) -> None:
    """Rows of another target, or not yet due, are left alone."""
    queue(engine, planned(1, target="other"), planned(2))
    with engine.begin() as conn:
        conn.execute(
            update(OUTBOX).where(OUTBOX.c.entity_id == "e2").values(next_attempt_at=T0 + LEASE)
        )
    assert claim(engine, "w1", "fake", 10, LEASE, now=T0) == []
    assert [r.entity_id for r in claim(engine, "w1", "fake", 10, LEASE, now=T0 + LEASE)] == ["e2"]


def test_one_claim_holds_one_object_and_action_up_to_its_batch_size(engine: Engine) -> None:
    """A claim groups rows of the oldest row's object and action, at most that object's batch."""
    queue(
        engine,
        planned(1),
        planned(2, obj="Other"),
        planned(3),
        planned(4),
        planned(5, obj="Other"),
    )
    sizes = {"Thing": 2, "Other": 5}
    first = claim(engine, "w", "fake", 10, LEASE, batch_sizes=sizes, now=T0)
    assert [(r.object, r.entity_id) for r in first] == [("Thing", "e1"), ("Thing", "e3")]
    second = claim(engine, "w", "fake", 10, LEASE, batch_sizes=sizes, now=T0)
    assert [r.entity_id for r in second] == ["e2", "e5"]
    assert [r.entity_id for r in claim(engine, "w", "fake", 10, LEASE, now=T0)] == ["e4"]


def test_expired_lease_makes_rows_claimable_again_as_the_same_group(engine: Engine) -> None:
    """When a worker dies, its rows come back after the lease, together and marked as resent."""
    queue(engine, *(planned(n) for n in range(4)))
    lost = claim(engine, "dead", "fake", 3, LEASE, now=T0)
    before = claim(engine, "w2", "fake", 10, LEASE, now=T0 + LEASE - timedelta(seconds=1))
    assert [r.entity_id for r in before] == ["e3"]
    assert not before[0].resent
    again = claim(engine, "w2", "fake", 10, LEASE, now=T0 + LEASE + timedelta(seconds=1))
    assert [r.id for r in again] == [r.id for r in lost]
    assert all(r.resent for r in again)
    assert {r.claimed_by for r in again} != {lost[0].claimed_by}


def test_lease_not_expired_keeps_rows_with_their_worker(engine: Engine) -> None:
    """Until the lease ends, no other worker can claim the rows."""
    queue(engine, planned(1))
    claim(engine, "w1", "fake", 10, LEASE, now=T0)
    assert claim(engine, "w2", "fake", 10, LEASE, now=T0 + LEASE - timedelta(seconds=1)) == []
    assert len(claim(engine, "w2", "fake", 10, LEASE, now=T0 + LEASE)) == 1


def test_rows_of_one_entity_are_sent_in_order(engine: Engine) -> None:
    """A row waits while an earlier row of the same entity is pending or in flight."""
    queue(engine, planned(1, entity="acme"), planned(2, entity="acme"), planned(3, entity="beta"))
    first = claim(engine, "w", "fake", 10, LEASE, now=T0)
    assert [r.payload["Name"] for r in first] == ["Company 1", "Company 3"]
    assert claim(engine, "w", "fake", 10, LEASE, now=T0) == []
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == first[0].id).values(status="done"))
    assert [r.payload["Name"] for r in claim(engine, "w", "fake", 10, LEASE, now=T0)] == [
        "Company 2"
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_workers_never_claim_the_same_row(database_url: str, engine: Engine) -> None:
    """Four workers claiming at once on PostgreSQL, each on its own connection, share the rows
    without any row going to two of them."""
    total = 400
    queue(engine, *(planned(n) for n in range(total)))
    claimed: dict[str, list[int]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def work(worker: str) -> None:
        own = create_engine_for(database_url)
        mine: list[int] = []
        try:
            start.wait()
            while batch := claim(own, worker, "fake", 7, LEASE, now=T0):
                mine.extend(r.id for r in batch)
        except BaseException as exc:
            failures.append(exc)
        finally:
            own.dispose()
            claimed[worker] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    every = [row_id for ids in claimed.values() for row_id in ids]
    assert len(every) == total
    assert len(set(every)) == total
    assert {r.status for r in rows(engine)} == {"in_flight"}
