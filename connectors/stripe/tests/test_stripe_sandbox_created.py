"""A ``created`` lower bound lists what a scan of every object lists, without generating it all.

Balance transactions are read with ``created[gte]`` every cycle; the sandbox serves such a list
from an index of its seeded objects by creation time. These tests compare the pages with the
objects a full scan keeps, for several bounds and small pages, with a changed seeded object.
"""

from __future__ import annotations

from typing import Any

import pytest
from ledgerlink_stripe.sandbox.app import _in_bounds, _lower_bound
from ledgerlink_stripe.sandbox.store import ObjectStore, SandboxState


def _pages(store: ObjectStore, bounds: dict[str, str], *, indexed: bool) -> list[str]:
    def match(obj: dict[str, Any]) -> bool:
        return _in_bounds(int(obj["created"]), bounds)

    ids: list[str] = []
    after = None
    while True:
        page, more = store.page(
            limit=7,
            starting_after=after,
            ending_before=None,
            match=match,
            created_since=_lower_bound(bounds) if indexed else None,
        )
        ids += [obj["id"] for obj in page]
        if not more:
            return ids
        after = page[-1]["id"]


@pytest.mark.parametrize("kind", ["balance_transaction", "charge", "payout"])
def test_created_lists_match_a_full_scan(kind: str) -> None:
    state = SandboxState(seed=3, size=120)
    store = state.store(kind)
    everything = list(store.iter_desc())
    oldest = everything[-1]
    store.put({**oldest, "created": max(int(o["created"]) for o in everything) + 60})
    times = sorted(int(o["created"]) for o in store.iter_desc())
    for lower in (times[0], times[len(times) // 2], times[-2], times[-1] + 1):
        for bounds in ({"gte": str(lower)}, {"gt": str(lower)}, {"eq": str(lower)}):
            expected = [o["id"] for o in store.iter_desc() if _in_bounds(int(o["created"]), bounds)]
            assert _pages(store, bounds, indexed=True) == expected
    assert oldest["id"] in _pages(store, {"gte": str(times[-1])}, indexed=True)
