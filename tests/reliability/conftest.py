"""Fixtures of the reliability tests: realistic vendor payloads read from every sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ledgerlink.connector import ConnectorContext, Cursor, SandboxOptions, load_plugin
from ledgerlink.mapping import Normalizer, load_mappings

SYSTEMS = ("salesforce", "stripe", "quickbooks")


class MemorySecrets:
    """In-memory secret store (the QuickBooks connector persists its rotated refresh token)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


def _first_records(system: str) -> dict[str, dict[str, Any]]:
    """One live record per stream of ``system``, read from its sandbox over loopback."""
    plugin = load_plugin(system)
    sandbox = plugin.start_sandbox(SandboxOptions(seed=5, size=6))
    found: dict[str, dict[str, Any]] = {}
    try:
        connector = plugin.connect(
            sandbox.connector_settings(), ConnectorContext(secrets=MemorySecrets())
        )
        try:
            for stream in connector.streams():
                for page in connector.read(stream.name, Cursor()):
                    live = [r for r in page.records if not r.deleted]
                    if live:
                        found[stream.name] = dict(live[0].payload)
                        break
        finally:
            connector.close()
    finally:
        sandbox.stop()
    return found


@pytest.fixture(scope="session")
def normalizer() -> Normalizer:
    """A normalizer on the shipped mappings."""
    return Normalizer(load_mappings())


@pytest.fixture(scope="session")
def vendor_samples(normalizer: Normalizer) -> Mapping[tuple[str, str], dict[str, Any]]:
    """(system, object) -> one realistic payload that maps, for every mapped object a sandbox serves."""
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    for system in SYSTEMS:
        for object_name, payload in _first_records(system).items():
            if normalizer.mapper(system, object_name) is None:
                continue
            normalizer.map_record(system, object_name, "sample", payload)
            samples[(system, object_name)] = payload
    return samples
