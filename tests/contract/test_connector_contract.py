"""One contract suite, run against every installed connector and its sandbox.

Whatever a connector's vendor, the core relies on the same promises: it loads from its entry
point, its sandbox serves the same data for the same seed, a full read lands every record once,
a read from the final cursor with nothing changed costs at most one API call, and bad settings
are a configuration error that reveals no secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledgerlink.connector import (
    ConfigurationError,
    Connector,
    ConnectorContext,
    ConnectorPlugin,
    Cursor,
    Sandbox,
    SandboxOptions,
    discover,
    load_plugin,
)
from ledgerlink.store import Store

BUILT_IN = ["salesforce", "stripe", "quickbooks"]


class MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


@pytest.fixture(scope="module", params=BUILT_IN)
def plugin(request: pytest.FixtureRequest) -> ConnectorPlugin:
    return load_plugin(request.param)


@pytest.fixture(scope="module")
def sandbox(plugin: ConnectorPlugin) -> Iterator[Sandbox]:
    running = plugin.start_sandbox(SandboxOptions(seed=11, size=12))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def connector(plugin: ConnectorPlugin, sandbox: Sandbox) -> Iterator[Connector]:
    conn = plugin.connect(sandbox.connector_settings(), ConnectorContext(secrets=MemorySecrets()))
    yield conn
    conn.close()


def read_all(connector: Connector, stream: str, cursor: Cursor) -> tuple[list[Any], Cursor]:
    records = []
    for page in connector.read(stream, cursor):
        json.dumps(page.cursor.to_json())
        records.extend(page.records)
        cursor = page.cursor
    return records, cursor


def test_every_built_in_connector_is_registered() -> None:
    """The three built-in connectors are found through the entry-point group and load cleanly."""
    found = discover()
    for name in BUILT_IN:
        assert name in found, f"{name} is not registered"
        assert found[name].error is None, found[name].error


def test_plugin_describes_itself(plugin: ConnectorPlugin) -> None:
    """A plugin has a name, a version and a catalogue of uniquely named streams."""
    assert plugin.name in BUILT_IN
    assert plugin.version
    catalog = plugin.stream_catalog()
    names = [s.name for s in catalog]
    assert names
    assert len(names) == len(set(names))
    assert all(s.entity for s in catalog)


def test_check_passes_against_the_sandbox(connector: Connector) -> None:
    """Credentials the sandbox hands out pass the connector's own check."""
    report = connector.check()
    assert report.ok, report.items


def test_full_read_then_nothing_changed_costs_at_most_one_call(
    connector: Connector, sandbox: Sandbox
) -> None:
    """Every stream reads to its end with unique ids; re-reading from the final cursor finds nothing in at most one call."""
    total = 0
    for stream in connector.streams():
        records, cursor = read_all(connector, stream.name, Cursor())
        ids = [r.id for r in records if not r.deleted]
        assert all(isinstance(i, str) and i for i in ids), stream.name
        assert len(ids) == len(set(ids)), f"{stream.name} returned an id twice"
        assert all(r.object == stream.name for r in records)
        total += len(records)
        before = sandbox.faults.request_count
        again, _ = read_all(connector, stream.name, cursor)
        assert [r for r in again if not r.deleted] == [], f"{stream.name} re-read records"
        assert sandbox.faults.request_count - before <= 1, f"{stream.name} used several calls"
    assert total > 0


def test_same_seed_gives_same_data(plugin: ConnectorPlugin) -> None:
    """Two sandboxes started with the same seed serve the same records."""
    first_stream = plugin.stream_catalog()[0].name
    seen = []
    for _ in range(2):
        running = plugin.start_sandbox(SandboxOptions(seed=5, size=10))
        try:
            conn = plugin.connect(
                running.connector_settings(), ConnectorContext(secrets=MemorySecrets())
            )
            records, _ = read_all(conn, first_stream, Cursor())
            conn.close()
        finally:
            running.stop()
        seen.append(sorted(r.id for r in records))
    assert seen[0] == seen[1]


def test_bad_settings_are_a_configuration_error(plugin: ConnectorPlugin) -> None:
    """Settings of the wrong shape raise ConfigurationError instead of failing later."""
    with pytest.raises(ConfigurationError):
        plugin.connect({"no_such_setting": object()}, ConnectorContext(secrets=MemorySecrets()))


def test_pull_into_the_store_then_an_unchanged_cycle_writes_nothing(
    plugin: ConnectorPlugin, sandbox: Sandbox, store: Store
) -> None:
    """Pulling every stream lands each record once; a second cycle finds nothing to write."""
    from ledgerlink.sync import pull

    conn = plugin.connect(sandbox.connector_settings(), ConnectorContext(secrets=MemorySecrets()))
    try:
        first = pull(store, conn)
        assert all(r.ok for r in first), [r.error for r in first if not r.ok]
        assert sum(r.inserted for r in first) == sum(r.read for r in first) > 0
        second = pull(store, conn)
    finally:
        conn.close()
    assert all(r.ok for r in second)
    assert sum(r.inserted + r.updated + r.deleted for r in second) == 0
