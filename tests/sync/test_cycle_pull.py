"""``run_cycle``'s pull: the connectors read their systems at the same time."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledgerlink.connector import Cursor, Page
from ledgerlink.mapping import MappingSet, load_mappings
from ledgerlink.store import Store
from ledgerlink.sync.cycle import run_cycle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "thirdparty"))
from ledgerlink_echo import NOTES, EchoConnector, EchoSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings()


class Meeting(EchoConnector):
    """An echo connector under its own name whose reads start only once every connector in
    ``barrier`` is reading: alone (pulled after the others) it waits out the barrier's
    timeout and breaks."""

    def __init__(self, name: str, barrier: threading.Barrier) -> None:
        super().__init__(EchoSettings(page_size=10))
        self.name = name
        self.barrier = barrier
        self.threads: set[str] = set()

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()
        yield from super().read(stream, cursor)


class Broken(EchoConnector):
    """An echo connector whose read fails with an error that is not the vendor's (a bug)."""

    name = "broken"

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        raise RuntimeError("bug in a plugin")
        yield  # pragma: no cover


def test_the_connectors_are_pulled_at_the_same_time(store: Store, mappings: MappingSet) -> None:
    """Each connector reads while the others read; each lands all it read, reported in order."""
    barrier = threading.Barrier(2, timeout=10)
    first, second = Meeting("echo-a", barrier), Meeting("echo-b", barrier)
    report = run_cycle(store, {"echo-a": first, "echo-b": second}, mappings, now=NOW)
    assert [(r.connector, r.stream) for r in report.pulls] == [
        ("echo-a", "notes"),
        ("echo-b", "notes"),
    ]
    assert all(r.ok and r.inserted == len(NOTES) for r in report.pulls)
    assert first.threads.isdisjoint(second.threads)
    assert store.load_cursor("echo-b", "notes").value == NOTES[-1]["updated"]
    assert {line.system: line.read for line in report.systems.values()} == {
        "echo-a": len(NOTES),
        "echo-b": len(NOTES),
    }


def test_a_connector_that_breaks_stops_the_cycle_after_the_others_landed(
    store: Store, mappings: MappingSet
) -> None:
    """An error that is not the vendor's is raised, once the other connectors' pulls landed."""
    good = EchoConnector(EchoSettings(page_size=10))
    with pytest.raises(RuntimeError, match="bug in a plugin"):
        run_cycle(store, {"broken": Broken(EchoSettings()), "echo": good}, mappings, now=NOW)
    assert store.load_cursor("echo", "notes").value == NOTES[-1]["updated"]
