"""Payloads a long-running planner keeps as JSON bytes read back as they were landed."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from ledgerlink.sync._packed import PackedPayloads

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), _JSON, max_size=6))
@example({"created": [None]})  # not a time: kept all the same
@example({"created": "soon"})
def test_a_payload_reads_back_equal(payload: dict[str, Any]) -> None:
    kept = PackedPayloads()
    kept["in_1"] = payload
    assert kept["in_1"] == payload
    assert list(kept["in_1"]) == list(payload)  # key order too (documents are compared by JSON)


def test_a_lone_surrogate_is_kept() -> None:
    kept = PackedPayloads()
    kept["cus_1"] = {"name": "Caf\ud800"}
    assert kept["cus_1"] == {"name": "Caf\ud800"}


def test_a_read_is_a_copy_the_caller_may_change() -> None:
    kept = PackedPayloads()
    kept["in_1"] = {"id": "in_1", "lines": [{"amount": 100}]}
    read = kept["in_1"]
    read["lines"][0]["amount"] = 1
    assert kept["in_1"]["lines"][0]["amount"] == 100


def test_by_created_gives_oldest_first_then_by_id_and_only_the_ids_asked() -> None:
    kept = PackedPayloads()
    for stripe_id, created in (("ch_c", 30), ("ch_b", 10), ("ch_a", 10), ("ch_d", None)):
        kept[stripe_id] = {"id": stripe_id, "created": created}
    assert [p["id"] for p in kept.by_created()] == ["ch_d", "ch_a", "ch_b", "ch_c"]
    assert [p["id"] for p in kept.by_created({"ch_c", "ch_b"})] == ["ch_b", "ch_c"]
    del kept["ch_b"]
    assert "ch_b" not in kept
    assert [p["id"] for p in kept.by_created()] == ["ch_d", "ch_a", "ch_c"]
    assert len(kept) == 3
    assert kept.get("ch_b") is None


def test_a_kept_payload_costs_about_its_json_size() -> None:
    """What a kept payload costs is what makes a long-running process fit its host."""
    payload = {"id": "ch_1", "amount": 4_900, "currency": "usd", "created": 1_767_225_600}
    kept = PackedPayloads()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1_000):
            kept[f"ch_{n}"] = payload
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / 1_000 < 4 * len(orjson.dumps(payload)) + 300  # bytes + the two dict entries


def test_repr_shows_no_payload() -> None:
    kept = PackedPayloads()
    kept["cus_1"] = {"email": "ana@example.com"}
    assert "ana@example.com" not in repr(kept)
