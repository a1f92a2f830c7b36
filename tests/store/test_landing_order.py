"""Landings commit in the order of their ``changed_at``.

The daemon's planners keep what they read and ask only for the records whose ``changed_at`` is
at or after the newest change they saw (less a few seconds). That is only safe when a landing
that commits after a read cannot carry an earlier time than what the read saw: a landing that
waited for another one (SQLite's write lock, or a slow PostgreSQL transaction beside it) must be
stamped after the wait, not before it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from ledgerlink.connector import Cursor, Page, Record
from ledgerlink.store import SourceRecord, Store

_HOLD = 0.5


def _account(record_id: str) -> Record:
    return Record(object="Account", id=record_id, payload={"Id": record_id, "Name": record_id})


def _changed_at(store: Store, record_id: str) -> datetime:
    with store.engine.connect() as conn:
        return conn.execute(
            select(SourceRecord.changed_at).where(SourceRecord.external_id == record_id)
        ).scalar_one()


def test_a_landing_that_waits_for_another_is_stamped_after_it_commits(store: Store) -> None:
    """While one landing holds its transaction open, another (a page of a second stream, a
    webhook's record) waits, and its records carry a time after the first one committed."""
    started, committed_at = threading.Event(), []
    held_stamp: list[datetime] = []

    def hold() -> None:
        with store._write_engine.begin() as conn:
            stamp = store.landing_time(conn)
            held_stamp.append(stamp)
            store._land(conn, "salesforce", [_account("001A")], stamp)
            started.set()
            time.sleep(_HOLD)
            committed_at.append(datetime.now(UTC))

    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(10)
    asked = datetime.now(UTC)
    page = Page(stream="Account", records=[_account("001B")], cursor=Cursor(value="1"))
    store.land_page("salesforce", page, connector="salesforce")
    store.land("salesforce", [_account("001C")])
    holder.join()

    first, second, third = (_changed_at(store, i) for i in ("001A", "001B", "001C"))
    assert first == held_stamp[0] < asked
    # Both waited for the holder: stamped after its commit began, not when they were asked.
    assert second >= committed_at[0] > asked
    assert third >= second
    assert second.tzinfo is not None


def test_a_time_given_by_the_caller_is_kept(store: Store) -> None:
    """Replays and tests give the landing time; the store keeps it as it is."""
    given = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    store.land("salesforce", [_account("001A")], now=given)
    assert _changed_at(store, "001A") == given
