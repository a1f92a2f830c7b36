"""``run_cycle``'s pull: the connectors read their systems at the same time."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy import text

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


class Slow(EchoConnector):
    """An echo connector under its own name that takes a while over each page (one note)."""

    def __init__(self, name: str = "slow") -> None:
        super().__init__(EchoSettings(page_size=1))
        self.name = name

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        for page in super().read(stream, cursor):
            time.sleep(0.1)
            yield page


def _landed(store: Store, system: str) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT external_id FROM source_record WHERE system = :s"), {"s": system}
        )
        return sorted(str(r[0]) for r in rows)


def _rerun_lands_the_rest(store: Store, mappings: MappingSet, connector: EchoConnector) -> None:
    again = run_cycle(store, {connector.name: connector}, mappings, now=NOW)
    (pulled,) = again.pulls
    assert pulled.ok
    assert len(_landed(store, connector.name)) == len(NOTES)
    assert store.load_cursor(connector.name, "notes").value == NOTES[-1]["updated"]


def test_a_connector_that_breaks_stops_the_cycle_and_the_others_after_their_page(
    store: Store, mappings: MappingSet
) -> None:
    """An error that is not the vendor's stops the cycle; the others stop after the page they
    land, and the next cycle lands the rest, each record once."""
    slow = Slow()
    with pytest.raises(RuntimeError, match="bug in a plugin"):
        run_cycle(store, {"slow": slow, "broken": Broken(EchoSettings())}, mappings, now=NOW)
    assert len(_landed(store, "slow")) < len(NOTES)
    _rerun_lands_the_rest(store, mappings, Slow())


def test_ctrl_c_stops_every_pull_after_its_page(store: Store, mappings: MappingSet) -> None:
    """Ctrl-C during the pull stops the cycle without waiting for the other pulls to finish:
    each stops after the page it lands, and the next cycle lands the rest, each record once."""
    pressed: list[str] = []
    handled: list[str] = []
    main = threading.main_thread().ident
    assert main is not None
    assert threading.current_thread() is threading.main_thread()

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        # Python's own handler, noting where the main thread was when it ran.
        handled.append("?" if frame is None else f"{frame.f_code.co_name}:{frame.f_lineno}")
        raise KeyboardInterrupt

    def progress(stage: str, detail: str, count: int) -> None:
        if stage == "pull" and detail.startswith("slow") and not handled:
            pressed.append(detail)  # the user presses Ctrl-C once the first page landed
            # Sent to the main thread (waiting on the pulls), as a terminal's Ctrl-C reaches
            # it: os.kill lets the kernel pick any thread of the test process (the worker of
            # pytest-xdist has several), and the main thread did not always see the signal
            # before the cycle was over. Pressed again at the next page until it was seen.
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_cycle(
                store,
                {"slow": Slow(), "other": Slow("other")},
                mappings,
                now=NOW,
                progress=progress,
            )
    except pytest.fail.Exception as exc:
        raise AssertionError(f"Ctrl-C pressed at {pressed}, handled in {handled}") from exc
    finally:
        signal.signal(signal.SIGINT, previous)
    assert pressed[0] == "slow notes"
    assert len(handled) == 1
    for name in ("slow", "other"):
        assert len(_landed(store, name)) < len(NOTES)
    assert _landed(store, "slow")
    _rerun_lands_the_rest(store, mappings, Slow())
