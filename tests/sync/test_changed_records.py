"""What a kept reader of landed records is given on each read (``ChangedRecords``).

The daemon's planners keep the records they mapped and read again only what changed: each read
looks at the records landed within :data:`~ledgerlink.sync._landed.LANDING_LOOKBACK` of the newest
change seen and fetches the payloads of those whose content or tombstone is not what it gave.
A record that lands late (its landing took its time before a newer one, then committed after
the read) must still be given; an unchanged record in the window must not be fetched again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledgerlink.connector.protocol import Record
from ledgerlink.store import Store
from ledgerlink.sync._landed import LANDING_LOOKBACK, ChangedRecords

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = (("stripe", "customers"), ("stripe", "invoices"))


def _customer(number: int, name: str = "Acme") -> Record:
    return Record("customers", f"cus_{number}", {"id": f"cus_{number}", "name": name})


def _invoice(number: int, total: int = 100) -> Record:
    return Record("invoices", f"in_{number}", {"id": f"in_{number}", "total": total})


def _read(store: Store, reader: ChangedRecords) -> dict[str, dict[str, object] | None]:
    """One read: external id -> payload (None for a tombstone)."""
    given: dict[str, dict[str, object] | None] = {}
    reader.begin()
    with store.engine.connect() as conn:
        for system, obj in KINDS:
            for row in reader.rows(conn, system, obj):
                given[row.external_id] = None if row.deleted_at is not None else row.payload
    reader.end()
    return given


def test_each_read_gives_what_changed_and_nothing_else(store: Store) -> None:
    """Changes, tombstones and late landings are given once; unchanged records are not."""
    reader = ChangedRecords()
    assert _read(store, reader) == {}  # nothing landed yet
    store.land("stripe", [_customer(n) for n in range(5)], now=NOW)
    store.land("stripe", [_invoice(1)], now=NOW + timedelta(seconds=1))
    first = _read(store, reader)
    assert set(first) == {"cus_0", "cus_1", "cus_2", "cus_3", "cus_4", "in_1"}
    assert reader.newest == NOW + timedelta(seconds=1)

    # Nothing new: the records in the window are looked at, none is fetched.
    assert _read(store, reader) == {}
    assert reader.read == 0

    # A rename, a tombstone, an unchanged re-landing (same content), a new invoice.
    at = NOW + timedelta(seconds=10)
    store.land("stripe", [_customer(1, "Acme Inc"), _customer(2)], now=at)
    store.land("stripe", [Record("customers", "cus_3", {}, deleted=True)], now=at)
    store.land("stripe", [_invoice(2)], now=at)
    assert _read(store, reader) == {
        "cus_1": {"id": "cus_1", "name": "Acme Inc"},
        "cus_3": None,
        "in_2": {"id": "in_2", "total": 100},
    }
    assert reader.read == 3

    # A landing stamped a little before the newest change (the clock stepped back) and
    # committed after the read.
    store.land("stripe", [_invoice(3)], now=at - LANDING_LOOKBACK)
    store.land("stripe", [_customer(0, "Acme Ltd")], now=at - LANDING_LOOKBACK / 2)
    assert _read(store, reader) == {
        "cus_0": {"id": "cus_0", "name": "Acme Ltd"},
        "in_3": {"id": "in_3", "total": 100},
    }
    assert _read(store, reader) == {}

    # Much later: the window moves on; a change within it is still given after a quiet read.
    later = at + LANDING_LOOKBACK * 3
    store.land("stripe", [_invoice(2, total=250)], now=later)
    assert _read(store, reader) == {"in_2": {"id": "in_2", "total": 250}}
    store.land("stripe", [_customer(4, "Bolt")], now=later - timedelta(seconds=1))
    assert _read(store, reader) == {"cus_4": {"id": "cus_4", "name": "Bolt"}}
    assert _read(store, reader) == {}
    assert reader.newest == later


def test_a_reader_started_at_the_newest_change_gives_only_what_lands_after(store: Store) -> None:
    """``start_at_newest`` (a reader that loaded the records another way) skips what is there."""
    store.land("stripe", [_customer(n) for n in range(3)], now=NOW)
    reader = ChangedRecords()
    with store.engine.connect() as conn:
        reader.start_at_newest(conn, KINDS)
    assert reader.newest == NOW
    # Within the lookback, records are fetched once (the reader has given nothing yet) ...
    assert set(_read(store, reader)) == {"cus_0", "cus_1", "cus_2"}
    # ... then only what changes.
    store.land("stripe", [_customer(1, "Acme Inc")], now=NOW + LANDING_LOOKBACK * 2)
    assert _read(store, reader) == {"cus_1": {"id": "cus_1", "name": "Acme Inc"}}
