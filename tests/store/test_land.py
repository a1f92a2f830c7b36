"""Landing records: counts, no write for unchanged content, tombstones, and page atomicity."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ledgerlink.connector import Cursor, Page, Record
from ledgerlink.store import LandResult, SourceRecord, Store, content_hash

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


def account(
    record_id: str, name: str = "Acme", *, deleted: bool = False, modstamp: str | None = None
) -> Record:
    payload: dict[str, Any] = {"Id": record_id, "Name": name, "BillingCountry": "DE"}
    return Record(
        object="Account",
        id=record_id,
        payload=payload,
        deleted=deleted,
        cursor_value=modstamp,
    )


def row(store: Store, record_id: str, object_name: str = "Account") -> SourceRecord:
    found = store.get_source_record("salesforce", object_name, record_id)
    assert found is not None
    return found


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(SourceRecord)).scalar_one())


def test_content_hash_ignores_key_order_and_tracks_values() -> None:
    """The content hash is the same for reordered keys and differs when a value changes."""
    assert content_hash({"a": 1, "b": {"x": [1, 2], "y": None}}) == content_hash(
        {"b": {"y": None, "x": [1, 2]}, "a": 1}
    )
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert len(content_hash({})) == 64


def test_content_hash_refuses_values_that_are_not_json() -> None:
    """A payload with a NaN or a non-JSON value cannot be hashed (and so is never landed)."""
    with pytest.raises(ValueError, match="JSON"):
        content_hash({"amount": float("nan")})
    with pytest.raises(TypeError):
        content_hash({"at": T0})


def test_first_landing_inserts_every_record(store: Store) -> None:
    """New records are counted as inserted and stored with their payload, hash and times."""
    result = store.land("salesforce", [account("001A"), account("001B")], now=T0)
    assert result == LandResult(inserted=2)
    stored = row(store, "001A")
    assert stored.payload == {"Id": "001A", "Name": "Acme", "BillingCountry": "DE"}
    assert stored.content_hash == content_hash(stored.payload)
    assert stored.first_seen_at == stored.last_seen_at == stored.changed_at == T0
    assert stored.deleted_at is None


def test_unchanged_records_write_nothing(store: Store) -> None:
    """Landing the same content again counts it unchanged and moves no timestamp."""
    store.land("salesforce", [account("001A", modstamp="2026-01-01T09:00:00Z")], now=T0)
    before = row(store, "001A")
    result = store.land("salesforce", [account("001A", modstamp="2026-01-01T09:00:00Z")], now=T1)
    assert result == LandResult(unchanged=1)
    after = row(store, "001A")
    assert after == before
    assert after.last_seen_at == after.changed_at == T0


def test_changed_records_are_updated(store: Store) -> None:
    """A changed payload replaces the stored one, moves changed_at and keeps first_seen_at."""
    store.land("salesforce", [account("001A"), account("001B")], now=T0)
    result = store.land(
        "salesforce", [account("001A", "Acme GmbH", modstamp="m2"), account("001B")], now=T1
    )
    assert result == LandResult(updated=1, unchanged=1)
    stored = row(store, "001A")
    assert stored.payload["Name"] == "Acme GmbH"
    assert stored.cursor_value == "m2"
    assert stored.first_seen_at == T0
    assert stored.changed_at == stored.last_seen_at == T1


def test_tombstone_marks_deleted_and_keeps_the_last_payload(store: Store) -> None:
    """A tombstone sets deleted_at and changed_at but keeps the payload and last_seen_at."""
    store.land("salesforce", [account("001A", "Acme GmbH")], now=T0)
    tombstone = Record(object="Account", id="001A", payload={"Id": "001A"}, deleted=True)
    assert store.land("salesforce", [tombstone], now=T1) == LandResult(deleted=1)
    stored = row(store, "001A")
    assert stored.deleted_at == T1
    assert stored.changed_at == T1
    assert stored.last_seen_at == T0
    assert stored.payload["Name"] == "Acme GmbH"
    assert store.land("salesforce", [tombstone], now=T2) == LandResult(unchanged=1)
    assert row(store, "001A").deleted_at == T1


def test_tombstone_of_an_unknown_record_is_kept(store: Store) -> None:
    """A tombstone for a record never landed is stored as deleted, with its payload."""
    tombstone = Record(object="Account", id="001Z", payload={"Id": "001Z"}, deleted=True)
    assert store.land("salesforce", [tombstone], now=T0) == LandResult(deleted=1)
    stored = row(store, "001Z")
    assert stored.deleted_at == T0
    assert stored.payload == {"Id": "001Z"}


def test_deleted_record_coming_back_is_live_again(store: Store) -> None:
    """A live record landed after its tombstone clears deleted_at, even with the same content."""
    store.land("salesforce", [account("001A")], now=T0)
    store.land("salesforce", [account("001A", deleted=True)], now=T1)
    assert store.land("salesforce", [account("001A")], now=T2) == LandResult(updated=1)
    stored = row(store, "001A")
    assert stored.deleted_at is None
    assert stored.last_seen_at == stored.changed_at == T2


def test_duplicate_keys_in_one_call_keep_the_last(store: Store) -> None:
    """When one call holds a record twice, the later version is stored and counted once."""
    result = store.land("salesforce", [account("001A", "Old"), account("001A", "New")], now=T0)
    assert result == LandResult(inserted=1)
    assert row(store, "001A").payload["Name"] == "New"


def test_many_batches_and_objects_are_counted_exactly(engine: Engine) -> None:
    """Records spread over several statements and objects are all landed and counted."""
    store = Store(engine, batch_size=3)
    contacts = [
        Record(object="Contact", id=f"003{i}", payload={"Id": f"003{i}", "n": i}) for i in range(4)
    ]
    accounts = [account(f"001{i}") for i in range(7)]
    assert store.land("salesforce", accounts + contacts, now=T0) == LandResult(inserted=11)
    changed = [account(f"001{i}", "Renamed") for i in range(0, 7, 2)]
    assert store.land("salesforce", accounts[1::2] + changed + contacts, now=T1) == LandResult(
        updated=4, unchanged=7
    )
    assert count_rows(engine) == 11
    assert row(store, "0032", "Contact").payload == {"Id": "0032", "n": 2}


def test_same_id_in_two_systems_is_two_records(store: Store) -> None:
    """The key includes the system, so equal ids from two systems never collide."""
    store.land("salesforce", [account("X1")], now=T0)
    result = store.land("stripe", [account("X1", "Other")], now=T0)
    assert result == LandResult(inserted=1)
    assert store.get_source_record("stripe", "Account", "X1") is not None
    assert row(store, "X1").payload["Name"] == "Acme"


def test_naive_now_is_refused(store: Store) -> None:
    """Landing with a naive timestamp raises before anything is written."""
    with pytest.raises(ValueError, match="timezone-aware"):
        store.land("salesforce", [account("001A")], now=datetime(2026, 1, 1))


def test_bad_payload_lands_nothing_of_the_call(engine: Engine, store: Store) -> None:
    """A record whose payload is not JSON fails the call and none of its records are kept."""
    bad = Record(object="Account", id="001B", payload={"at": T0})
    with pytest.raises(TypeError):
        store.land("salesforce", [account("001A"), bad], now=T0)
    assert count_rows(engine) == 0


def test_cursor_starts_empty_and_round_trips(store: Store) -> None:
    """A stream never synced has the initial cursor; a saved cursor is loaded back equal."""
    assert store.load_cursor("salesforce", "Account") == Cursor()
    cursor = Cursor(
        value="2026-01-01T09:00:00Z", boundary_ids=frozenset({"001A"}), state={"mode": "bulk"}
    )
    store.save_cursor("salesforce", "Account", cursor, now=T0)
    assert store.load_cursor("salesforce", "Account") == cursor
    assert store.load_cursor("salesforce", "Contact") == Cursor()


def test_land_page_saves_records_and_cursor_together(store: Store) -> None:
    """Landing a page stores its records and its cursor, and marks the stream successful."""
    records = [account("001A", modstamp="m1"), account("001B", modstamp="m2")]
    page = Page(stream="Account", records=records, cursor=Cursor().observe(records))
    assert store.land_page("salesforce", page, connector="salesforce", now=T0) == LandResult(
        inserted=2
    )
    assert store.load_cursor("salesforce", "Account") == Cursor(
        value="m2", boundary_ids=frozenset({"001B"})
    )
    (state,) = store.sync_states()
    assert (state.connector, state.stream, state.last_success_at) == ("salesforce", "Account", T0)


def test_failing_page_keeps_neither_records_nor_cursor(engine: Engine, store: Store) -> None:
    """When saving the cursor fails, the page's records are rolled back with it."""
    first = Page(stream="Account", records=[account("001A")], cursor=Cursor(value="m1"))
    store.land_page("salesforce", first, connector="salesforce", now=T0)
    broken = Page(
        stream="Account",
        records=[account("001B"), account("001A", "Changed")],
        cursor=Cursor(value="m2", state={"job": object()}),
    )
    with pytest.raises(TypeError):
        store.land_page("salesforce", broken, connector="salesforce", now=T1)
    assert count_rows(engine) == 1
    assert row(store, "001A").payload["Name"] == "Acme"
    assert store.load_cursor("salesforce", "Account") == Cursor(value="m1")


def test_save_error_keeps_the_cursor(store: Store) -> None:
    """Recording a failed run stores the error and leaves the saved cursor as it was."""
    store.save_cursor("stripe", "invoices", Cursor(value="1700000000"), now=T0)
    store.save_error("stripe", "invoices", "RateLimitedError: slow down", now=T1)
    assert store.load_cursor("stripe", "invoices") == Cursor(value="1700000000")
    (state,) = store.sync_states()
    assert state.last_error == "RateLimitedError: slow down"
    assert state.last_success_at == T0
    assert state.updated_at == T1
    store.save_cursor("stripe", "invoices", Cursor(value="1700000100"), now=T2)
    assert store.sync_states()[0].last_error is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_bulk_landing_keeps_planner_statistics_fresh(engine: Engine, store: Store) -> None:
    """A bulk load on PostgreSQL analyzes source_record so the hash pre-read stays indexed."""
    object_name = f"Bulk{uuid.uuid4().hex[:8]}"
    records = [
        Record(object=object_name, id=f"001{i:05d}", payload={"Id": f"001{i:05d}"})
        for i in range(6000)
    ]
    store.land("salesforce", records, now=T0)
    with engine.connect() as conn:
        common = conn.exec_driver_sql(
            "SELECT most_common_vals::text FROM pg_stats WHERE schemaname = current_schema() "
            "AND tablename = 'source_record' AND attname = 'object'"
        ).scalar_one_or_none()
    assert common is not None
    assert object_name in common


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_records_landed_by_a_concurrent_writer_are_counted_as_they_are(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another writer stored records after the pre-read, counts say what really happened."""
    store.land("salesforce", [account("001A"), account("001B")], now=T0)

    def stale_pre_read(*args: Any) -> list[str]:
        args[-1]()  # what runs while the pre-read is in flight
        return [""] * len(args[-2])  # nothing stored, as before the other writer

    monkeypatch.setattr(store, "_stored_state", stale_pre_read)
    result = store.land(
        "salesforce", [account("001A"), account("001B", "Changed"), account("001C")], now=T1
    )
    assert result == LandResult(inserted=1, updated=1, unchanged=1)
    assert row(store, "001B").payload["Name"] == "Changed"
    assert row(store, "001A").changed_at == T0
