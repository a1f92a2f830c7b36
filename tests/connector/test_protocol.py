"""Tests of the connector contract's values: cursors and results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledgerlink.connector import Cursor, Record, WriteResult
from ledgerlink.connector.errors import RecordError


def rec(rid: str, at: str | None) -> Record:
    return Record(object="o", id=rid, payload={}, cursor_value=at)


def test_observe_keeps_ids_at_the_newest_value() -> None:
    """The cursor moves to the newest value and remembers the ids seen exactly there."""
    cursor = Cursor().observe(
        [rec("a", "2026-01-01"), rec("b", "2026-01-02"), rec("c", "2026-01-02")]
    )
    assert cursor.value == "2026-01-02"
    assert cursor.boundary_ids == {"b", "c"}


def test_observe_merges_ids_when_the_value_does_not_move() -> None:
    """A later page at the same boundary value adds its ids to the boundary set."""
    cursor = Cursor(value="2026-01-02", boundary_ids=frozenset({"b"}))
    cursor = cursor.observe([rec("c", "2026-01-02"), rec("z", "2026-01-01")])
    assert cursor.boundary_ids == {"b", "c"}


def test_observe_ignores_records_without_cursor_value() -> None:
    """Tombstones without a cursor value do not move the cursor."""
    cursor = Cursor(value="x").observe([rec("a", None)])
    assert cursor == Cursor(value="x")


@given(
    value=st.none() | st.text(max_size=20),
    ids=st.frozensets(st.text(max_size=8), max_size=5),
    state=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_cursor_json_round_trip(
    value: str | None, ids: frozenset[str], state: dict[str, object]
) -> None:
    """A cursor survives storage as JSON unchanged."""
    cursor = Cursor(value=value, boundary_ids=ids, state=state)
    assert Cursor.from_json(cursor.to_json()) == cursor


def test_with_state_sets_and_removes_keys() -> None:
    """Connector state is updated immutably; None removes a key."""
    cursor = Cursor(state={"mode": "full", "job": "7"})
    changed = cursor.with_state(mode="events", job=None)
    assert changed.state == {"mode": "events"}
    assert cursor.state == {"mode": "full", "job": "7"}


def test_write_result_ok_reflects_error() -> None:
    """A write result is ok exactly when it carries no error."""
    assert WriteResult("k", remote_id="1").ok
    assert not WriteResult("k", error=RecordError("bad")).ok
