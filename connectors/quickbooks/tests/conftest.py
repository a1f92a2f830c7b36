"""Fixtures for the QuickBooks connector tests: a sandbox per test and a connector on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings
from ledgerlink_quickbooks.sandbox import QuickBooksSandbox

from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import ConnectorContext, Cursor, Page, SandboxOptions


class DictSecretStore:
    """In-memory SecretStore that records every put."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.puts: list[tuple[str, str]] = []

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value
        self.puts.append((name, value))


class Sleeps:
    """Fake sleep recording requested waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sandbox() -> Iterator[QuickBooksSandbox]:
    box = QuickBooksSandbox(SandboxOptions(seed=11, size=40))
    # Tests run the client unpaced; the per-minute and concurrency limits stay real.
    box.limits.requests_per_second = None
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def secrets() -> DictSecretStore:
    return DictSecretStore()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_connector(
    sandbox: QuickBooksSandbox, secrets: DictSecretStore, sleeps: Sleeps
) -> Iterator[Callable[..., QuickBooksConnector]]:
    made: list[QuickBooksConnector] = []

    def make(clock: Any = None, **overrides: Any) -> QuickBooksConnector:
        raw = {
            **sandbox.connector_settings(),
            "requests_per_minute": 60_000,
            "batch_requests_per_minute": 60_000,
            **overrides,
        }
        conn = QuickBooksConnector(
            QuickBooksSettings.model_validate(raw),
            ConnectorContext(secrets=secrets),
            retry=RetryPolicy(sleep=sleeps, jitter=lambda d: 0.0),
            clock=clock or sandbox.clock.now,
        )
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()


@pytest.fixture
def connector(make_connector: Callable[..., QuickBooksConnector]) -> QuickBooksConnector:
    return make_connector()


def _read_all(conn: QuickBooksConnector, stream: str, cursor: Cursor) -> tuple[list[Page], Cursor]:
    pages = list(conn.read(stream, cursor))
    return pages, pages[-1].cursor if pages else cursor


@pytest.fixture
def read_all() -> Callable[[QuickBooksConnector, str, Cursor], tuple[list[Page], Cursor]]:
    """Read every page of a stream from a cursor; returns the pages and the final cursor."""
    return _read_all
