"""Fixtures for the Salesforce connector tests: sandboxes, connections, a secret store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ledgerlink_salesforce import plugin
from ledgerlink_salesforce.client import SalesforceRetryPolicy
from ledgerlink_salesforce.connector import SalesforceConnector
from ledgerlink_salesforce.sandbox import SalesforceSandbox, start_sandbox

from ledgerlink.connector.protocol import ConnectorContext, Cursor, Page, SandboxOptions


class DictSecrets:
    """A SecretStore kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


_OPEN: list[SalesforceConnector] = []


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    sb = start_sandbox(SandboxOptions(seed=11, size=40))
    try:
        yield sb
    finally:
        while _OPEN:
            _OPEN.pop().close()
        sb.stop()


def connect(sb: SalesforceSandbox, **overrides: Any) -> SalesforceConnector:
    """Connect to ``sb`` with retries that do not sleep."""
    auth = overrides.pop("auth", "jwt")
    settings = {**sb.connector_settings(auth), **overrides}
    conn = plugin.connect(settings, ConnectorContext(secrets=DictSecrets()))
    conn.client.retry = SalesforceRetryPolicy(max_attempts=4, sleep=lambda _s: None)
    conn.client.sleep = lambda _s: None
    _OPEN.append(conn)
    return conn


def drain(conn: SalesforceConnector, stream: str, cursor: Cursor) -> tuple[list[Page], Cursor]:
    """Read ``stream`` to the end, returning the pages and the final cursor."""
    pages = list(conn.read(stream, cursor))
    return pages, pages[-1].cursor if pages else cursor


@pytest.fixture
def connect_to() -> Any:
    return connect
