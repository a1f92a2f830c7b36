"""Tests of the pull loop: pages land with their cursor, failures keep what was landed."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledgerlink.connector import Cursor, Page, Record, RetryableError, SandboxOptions
from ledgerlink.connector.registry import load_plugin
from ledgerlink.store import DbSecretStore, Store, generate_key
from ledgerlink.sync import pull, pull_stream
from ledgerlink.sync.runtime import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "thirdparty"))
from ledgerlink_echo import NOTES, EchoConnector, EchoSettings


class FailingAfter(EchoConnector):
    """Echo connector whose read breaks after ``pages`` pages, as a network failure would."""

    def __init__(self, pages: int) -> None:
        super().__init__(EchoSettings(page_size=10))
        self.pages = pages

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        for index, page in enumerate(super().read(stream, cursor)):
            if index == self.pages:
                raise RetryableError("connection reset")
            yield page


def test_first_pull_lands_every_record_and_second_costs_nothing(store: Store) -> None:
    """A first pull lands all records page by page; a second finds nothing new and writes nothing."""
    connector = EchoConnector(EchoSettings(page_size=10))
    seen: list[int] = []
    (first,) = pull(store, connector, progress=lambda _s, n: seen.append(n))
    assert first.ok
    assert (first.read, first.inserted, first.pages) == (len(NOTES), len(NOTES), 3)
    assert seen == [10, 10, 5]
    (second,) = pull(store, connector)
    assert (second.read, second.inserted, second.updated) == (0, 0, 0)
    assert store.load_cursor("echo", "notes").value == NOTES[-1]["updated"]


def test_failure_mid_stream_keeps_landed_pages_and_resumes_after_them(store: Store) -> None:
    """When a read fails after two pages, those pages and their cursor stay; the next pull reads only the rest."""
    broken = pull_stream(store, FailingAfter(pages=2), "notes")
    assert not broken.ok
    assert "connection reset" in (broken.error or "")
    assert broken.inserted == 20
    states = {(s.connector, s.stream): s for s in store.sync_states()}
    assert states[("echo", "notes")].last_error is not None
    resumed = pull_stream(store, EchoConnector(EchoSettings(page_size=10)), "notes")
    assert resumed.ok
    assert (resumed.read, resumed.inserted) == (5, 5)


class Changing(EchoConnector):
    def __init__(self, records: Sequence[Record]) -> None:
        super().__init__(EchoSettings())
        self.records = records

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        yield Page(stream=stream, records=list(self.records), cursor=cursor.observe(self.records))


@pytest.mark.parametrize("deleted", [False, True])
def test_changes_and_tombstones_are_counted(store: Store, deleted: bool) -> None:
    """A changed payload counts as updated and a tombstone as deleted, never as new rows."""
    original = Record(object="notes", id="n1", payload={"text": "a"}, cursor_value="1")
    pull_stream(store, Changing([original]), "notes")
    changed = Record(
        object="notes", id="n1", payload={"text": "b"}, deleted=deleted, cursor_value="2"
    )
    result = pull_stream(store, Changing([changed]), "notes")
    assert (result.inserted, result.updated + result.deleted) == (0, 1)
    assert result.deleted == (1 if deleted else 0)


def test_a_pull_of_all_salesforce_streams_starts_them_in_two_calls(
    store: Store, settings_of: Any
) -> None:
    """The pull loop hands every stored cursor to a prefetching connector: the eight
    Salesforce streams cost two calls when nothing changed, and changes still land."""
    plugin = load_plugin("salesforce")
    sandbox = plugin.start_sandbox(SandboxOptions(seed=3, size=20))
    connector = connect(
        plugin, settings_of("salesforce", sandbox), DbSecretStore(store.engine, generate_key())
    )
    try:
        assert all(r.ok for r in pull(store, connector))  # first loads
        sandbox.faults.reset_counts()
        quiet = pull(store, connector)
        assert sandbox.faults.request_count == 2
        assert all(r.ok and r.inserted + r.updated == 0 for r in quiet)
        org = sandbox.org
        org.touch("Account", org.tables["Account"].id_for(1), Name="Renamed Ltd")
        org.touch("Quote", org.tables["Quote"].id_for(0), Status="Accepted")
        sandbox.faults.reset_counts()
        moved = {r.stream: r.updated for r in pull(store, connector) if r.updated}
        assert moved == {"Account": 1, "Quote": 1}
        assert sandbox.faults.request_count == 2
    finally:
        connector.close()
        sandbox.stop()
