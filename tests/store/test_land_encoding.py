"""Landing payloads the fast encoder must treat exactly: text that needs escaping, non-ASCII,
numbers beyond 64 bits, nested NaN, and the stored text matching the hash, on both databases."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ledgerlink.connector import Record
from ledgerlink.store import LandResult, Store, content_hash

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)

AWKWARD: dict[str, Any] = {
    "Name": "Müller & Söhne\tGmbH \\ Zweigstelle\nNord \r 東京 \u2028 😀",
    "Path": "C:\\temp\\new",
    "Quote": 'say "hi"',
    "Control": "\x01\x1f",
    "Big": 2**70,
    "Negative": -(2**63),
    "Ratio": 0.1,
    "Nested": {"z": [1, {"b": None, "a": True}], "a": []},
}


def test_awkward_payloads_land_and_read_back_unchanged(store: Store) -> None:
    """Payloads and ids with tabs, backslashes, newlines and non-ASCII text land intact."""
    records = [
        Record(object="Account", id="id\twith\\odd\nchars", payload=AWKWARD, cursor_value="c\\1"),
        Record(object="Account", id="plain", payload={"Name": "Zoë"}),
    ]
    assert store.land("salesforce", records, now=T0) == LandResult(inserted=2)
    stored = store.get_source_record("salesforce", "Account", "id\twith\\odd\nchars")
    assert stored is not None
    assert stored.payload == AWKWARD
    assert stored.cursor_value == "c\\1"
    assert stored.content_hash == content_hash(AWKWARD)
    assert store.land("salesforce", records, now=T1) == LandResult(unchanged=2)


def test_changed_awkward_payload_goes_through_the_upsert(store: Store) -> None:
    """A changed payload with characters COPY must escape is updated exactly."""
    store.land("salesforce", [Record("Account", "a1", {"Name": "x"})], now=T0)
    result = store.land("salesforce", [Record("Account", "a1", AWKWARD, cursor_value="\t")], now=T1)
    assert result == LandResult(updated=1)
    stored = store.get_source_record("salesforce", "Account", "a1")
    assert stored is not None
    assert (stored.payload, stored.cursor_value, stored.changed_at) == (AWKWARD, "\t", T1)


def test_stored_text_is_the_hashed_canonical_json(engine: Engine, store: Store) -> None:
    """The stored payload text is the sorted, compact UTF-8 JSON whose sha256 is the hash."""
    store.land("salesforce", [Record("Account", "a1", {"b": "ü", "a": [1, 2]})], now=T0)
    with engine.connect() as conn:
        raw, digest = conn.execute(
            text("SELECT CAST(payload AS TEXT), content_hash FROM source_record")
        ).one()
    assert raw == '{"a":[1,2],"b":"ü"}'
    assert digest == hashlib.sha256(raw.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "payload",
    [
        {"a": {"b": [1, float("nan")]}},
        {"a": [float("inf")]},
        {"a": ({"b": float("-inf")},)},
    ],
)
def test_nested_non_finite_floats_are_refused(store: Store, payload: dict[str, Any]) -> None:
    """A NaN or an infinity at any depth refuses the call and lands nothing."""
    with pytest.raises(ValueError, match="JSON"):
        store.land("salesforce", [Record("Account", "a1", payload)], now=T0)
    assert store.get_source_record("salesforce", "Account", "a1") is None


def test_hash_accepts_what_json_allows_beyond_the_fast_encoder() -> None:
    """Integers beyond 64 bits hash deterministically and differ from their neighbours."""
    assert content_hash({"n": 2**70}) == content_hash({"n": 2**70})
    assert content_hash({"n": 2**70}) != content_hash({"n": 2**70 + 1})


def test_a_large_mixed_batch_is_landed_and_counted_exactly(store: Store) -> None:
    """A batch of new, changed, unchanged and deleted records spanning many chunks lands exactly."""
    first = [Record("Account", f"a{n:04d}", {"n": n}) for n in range(0, 1200, 2)]
    assert store.land("salesforce", first, now=T0) == LandResult(inserted=600)
    second = [
        Record("Account", f"a{n:04d}", {"n": n, "v": 2} if n % 4 == 0 else {"n": n})
        for n in range(1200)
    ] + [Record("Account", f"a{n:04d}", {"n": n}, deleted=True) for n in range(2, 1200, 20)]
    result = store.land("salesforce", second, now=T1)
    assert result == LandResult(inserted=600, updated=300, unchanged=240, deleted=60)
    new = store.get_source_record("salesforce", "Account", "a0001")
    changed = store.get_source_record("salesforce", "Account", "a0004")
    gone = store.get_source_record("salesforce", "Account", "a0002")
    assert new is not None
    assert (new.payload, new.first_seen_at) == ({"n": 1}, T1)
    assert changed is not None
    assert (changed.payload, changed.changed_at) == ({"n": 4, "v": 2}, T1)
    assert gone is not None
    assert gone.deleted_at == T1
