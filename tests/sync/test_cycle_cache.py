"""``run_cycle`` for long-running callers: stage timings, and what a kept cache saves."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime, timedelta

import pytest

from ledgerlink.connector.protocol import Record
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import Store
from ledgerlink.sync.cycle import FULL_COLLECTION_EVERY, CycleCache, run_cycle

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNT = "001Hs00000ACME1AAA"


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    """The shipped mappings."""
    return load_mappings()


def _land(store: Store, name: str, at: datetime) -> None:
    store.land(
        "salesforce",
        [
            Record(
                "Account",
                ACCOUNT,
                {
                    "Id": ACCOUNT,
                    "Name": name,
                    "BillingCountry": "United States",
                    "LastModifiedDate": "2026-02-01T10:00:00.000+0000",
                    "SystemModstamp": "2026-02-01T10:00:00.000+0000",
                },
            )
        ],
        now=at,
    )


def test_stages_are_announced_and_timed(store: Store, mappings: MappingSet) -> None:
    """``on_stage`` hears each stage start in order, then ``done``; each stage has its time."""
    heard: list[str] = []
    report = run_cycle(store, {}, mappings, now=NOW, on_stage=heard.append)
    assert heard == ["pull", "match", "plan", "push", "done"]
    assert set(report.seconds) == {"pull", "match", "plan", "push"}
    assert all(seconds >= 0 for seconds in report.seconds.values())


def test_a_kept_cache_matches_only_what_changed(store: Store, mappings: MappingSet) -> None:
    """With a cache the second cycle re-matches the changed Account alone; without, everything."""
    _land(store, "Acme Analytics Inc", NOW)
    cache = CycleCache()
    first = run_cycle(store, {}, mappings, now=NOW, cache=cache)
    _land(store, "Acme Analytics Incorporated", NOW + timedelta(hours=1))
    second = run_cycle(store, {}, mappings, now=NOW + timedelta(hours=1), cache=cache)
    assert first.matching is not None
    assert first.matching.mode == "full"
    assert second.matching is not None
    assert second.matching.mode == "incremental"
    assert second.matching.changed == 1
    assert len(cache.mapped) == 1
    again = run_cycle(store, {}, mappings, now=NOW + timedelta(hours=2))
    assert again.matching is not None
    assert again.matching.mode == "full"


class _Node:
    """An object in a reference cycle: only the cyclic garbage collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_kept_cache_is_parked_out_of_the_collector_and_cycles_are_still_freed(
    store: Store, mappings: MappingSet
) -> None:
    """After a cycle with a kept cache, what survived is frozen (a full collection no longer
    walks it); cyclic garbage among frozen objects is freed at the periodic full collection."""
    cache = CycleCache()
    gc.unfreeze()
    try:
        node = _Node()
        gone = weakref.ref(node)
        _land(store, "Acme Corp", NOW)
        run_cycle(store, {}, mappings, now=NOW, cache=cache)
        assert gc.get_freeze_count() > 0
        assert gone() is not None
        del node  # now garbage, but frozen: no collection looks at it
        gc.collect()
        assert gone() is not None
        for _ in range(FULL_COLLECTION_EVERY - 1):
            cache.park()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_a_kept_cycle_runs_without_automatic_full_collections(
    store: Store, mappings: MappingSet
) -> None:
    """While a kept cycle runs, the collector's full collections are held off (each would
    walk the pass's growing working set again); young ones go on, and the thresholds are the
    caller's again once the cycle is over, also after nested holds."""
    cache = CycleCache()
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def on_stage(stage: str) -> None:
        seen.append(gc.get_threshold())

    _land(store, "Acme Corp", NOW)
    try:
        with cache.holding():
            run_cycle(store, {}, mappings, now=NOW, cache=cache, on_stage=on_stage)
            assert gc.get_threshold()[2] > before[2]  # still held: the outer hold is on
        assert gc.get_threshold() == before
        assert seen
        assert all(t[:2] == before[:2] and t[2] > 1000 * before[2] for t in seen)
        run_cycle(store, {}, mappings, now=NOW, on_stage=on_stage)  # no cache: nothing held
        assert seen[-1] == before
    finally:
        gc.unfreeze()


def test_a_park_collects_in_full_only_when_what_is_kept_grew_by_a_quarter() -> None:
    """Cyclic garbage that outlived a cycle is freed at the first park after the objects kept
    grew by a quarter, not only every hundred parks; kept objects a later cycle replaced (freed
    by their reference counts) are not growth, so they do not make a park walk everything."""
    cache = CycleCache()
    gc.unfreeze()
    try:
        cache.park()  # the first park collects in full and freezes
        node = _Node()
        gone = weakref.ref(node)
        cache.park()  # node is frozen
        del node
        cache.park()
        assert gone() is not None  # nothing grew: no full collection
        turnover = [[i] for i in range(gc.get_freeze_count() // 5)]
        cache.park()  # a fifth more: frozen, no full collection
        del turnover  # freed at once
        again = [[i] for i in range(gc.get_freeze_count() // 5)]
        cache.park()  # two fifths more than after the full one by the park's own count
        assert gone() is not None
        grown = [[i] for i in range(gc.get_freeze_count() // 3)]
        cache.park()  # now what is kept did grow by a quarter
        assert gone() is None
        del again, grown
    finally:
        gc.unfreeze()


def test_a_quiet_park_does_not_count_the_frozen_objects_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``gc.get_freeze_count`` walks every frozen object (seconds at full scale): a park that
    makes no full collection counts what it froze instead, and asks only after a full one."""
    cache = CycleCache()
    real = gc.get_freeze_count
    calls: list[int] = []

    def counted() -> int:
        calls.append(1)
        return real()

    gc.unfreeze()
    monkeypatch.setattr(gc, "get_freeze_count", counted)
    try:
        cache.park()  # the first park collects in full and freezes
        asked = len(calls)
        for _ in range(5):
            cache.park()
        assert len(calls) == asked
        grown = [[i] for i in range(real() // 3)]
        cache.park()  # grew by a quarter: the exact count, a full collection, the count after
        assert len(calls) == asked + 2
        del grown
    finally:
        gc.unfreeze()
