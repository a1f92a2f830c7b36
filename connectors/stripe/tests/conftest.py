"""Shared fixtures for the Stripe connector tests: sandboxes, connections, a webhook sink."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.sandbox import StripeSandbox
from ledgerlink_stripe.settings import StripeSettings
from ledgerlink_stripe.webhooks import WebhookEvent

from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import Cursor, Page, SandboxOptions

SCHEMAS = json.loads((Path(__file__).parent / "fixtures" / "stripe_schemas.json").read_text())


def fast_retry(attempts: int = 4) -> RetryPolicy:
    """A retry policy that does not sleep."""
    return RetryPolicy(max_attempts=attempts, sleep=lambda _s: None, jitter=lambda _d: 0.0)


_OPEN: list[StripeConnector] = []


def connect(sandbox: StripeSandbox, **kwargs: Any) -> StripeConnector:
    """Connect to ``sandbox`` with a non-sleeping retry policy (closed after the test)."""
    settings = StripeSettings(**sandbox.connector_settings())
    conn = StripeConnector(settings, retry=kwargs.pop("retry", fast_retry()), **kwargs)
    _OPEN.append(conn)
    return conn


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def drain(connector: StripeConnector, stream: str, cursor: Cursor) -> tuple[list[Page], Cursor]:
    """Read ``stream`` to its end; return the pages and the final cursor."""
    pages = list(connector.read(stream, cursor))
    return pages, pages[-1].cursor if pages else cursor


def load_all(connector: StripeConnector) -> dict[str, Cursor]:
    """First-load every stream and return the final cursor of each."""
    return {s.name: drain(connector, s.name, Cursor())[1] for s in connector.streams()}


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[StripeSandbox]:
    """A read-mostly sandbox shared by a test module."""
    with StripeSandbox(SandboxOptions(seed=11, size=60)) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    """A fresh sandbox for a test that changes state; charges settle only on clock moves."""
    with StripeSandbox(
        SandboxOptions(seed=5, size=12), settle_after=-1, webhook_retry_delays=(0.05, 0.1)
    ) as fresh:
        yield fresh


@pytest.fixture
def connector(sandbox: StripeSandbox) -> Iterator[StripeConnector]:
    """A connection to the fresh sandbox."""
    conn = connect(sandbox)
    yield conn
    conn.close()


class ListSink:
    """An in-memory EventSink that can be told to fail."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self.fail = False
        self.fail_times = 0

    def accept(self, event: WebhookEvent) -> None:
        if self.fail or self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("store unavailable")
        self.events.append(event)


def validate(obj: dict[str, Any], name: str | None = None) -> list[str]:
    """Return the ways ``obj`` departs from Stripe's published schema of its object."""
    schema = SCHEMAS[name or obj["object"]]
    problems = [
        f"{name or obj['object']}: missing {field}"
        for field in schema["required"]
        if field not in obj
    ]
    type_of = {
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        dict: "object",
        list: "array",
    }
    for key, value in obj.items():
        prop = schema["properties"].get(key)
        if prop is None:
            continue
        if value is None:
            if not prop["nullable"]:
                problems.append(f"{obj.get('object')}.{key}: null not allowed")
            continue
        kind = type_of.get(type(value), "?")
        allowed = set(prop["types"])
        if kind == "integer" and "number" in allowed:
            continue
        if kind not in allowed:
            problems.append(f"{obj.get('object')}.{key}: {kind} not in {sorted(allowed)}")
        elif "enum" in prop and isinstance(value, str) and value not in prop["enum"]:
            problems.append(f"{obj.get('object')}.{key}: {value!r} not in enum")
    return problems


@pytest.fixture(scope="session")
def st() -> Any:
    """The helpers above, for test modules (importlib mode does not import conftest by name)."""
    import types

    return types.SimpleNamespace(
        fast_retry=fast_retry,
        connect=connect,
        drain=drain,
        load_all=load_all,
        ListSink=ListSink,
        validate=validate,
        schemas=SCHEMAS,
    )
