"""A crash between the vendor call and storing its result never duplicates a write (QuickBooks
sandbox over loopback), and the same scenario without stable keys does duplicate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.connector.protocol import (
    Connector,
    Sandbox,
    WriteAction,
    WriteOp,
    WriteResult,
    WriterSpec,
)
from ledgerlink.sync.outbox import PlannedWrite, idempotency_key
from ledgerlink.sync.push import push

from .conftest import Clock, queue, rows

INVOICES = 3


class MemorySecrets:
    """In-memory secret store for the connector's rotated refresh token."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


class ProcessDied(BaseException):
    """Stands for the worker process dying: nothing after it runs."""


class DiesAfterVendorCall:
    """Makes the vendor call, receives every answer, then dies before the worker stores them."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.name = inner.name

    def writers(self) -> Sequence[WriterSpec]:
        return self.inner.writers()

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        answers = list(self.inner.write(ops))
        assert all(answer.ok for answer in answers)
        raise ProcessDied


class FreshKeyEverySend:
    """A client that makes up a new random key on every send (what an SDK does by default)."""

    def __init__(self, inner: Connector | DiesAfterVendorCall) -> None:
        self.inner = inner
        self.name = inner.name

    def writers(self) -> Sequence[WriterSpec]:
        return self.inner.writers()

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        fresh = {uuid.uuid4().hex: op.idempotency_key for op in ops}
        renamed = [replace(op, idempotency_key=k) for k, op in zip(fresh, ops, strict=True)]
        for result in self.inner.write(renamed):
            yield replace(result, idempotency_key=fresh[result.idempotency_key])


@pytest.fixture
def quickbooks() -> Iterator[tuple[Sandbox, Connector]]:
    plugin = load_plugin("quickbooks")
    sandbox = plugin.start_sandbox(SandboxOptions(seed=3, size=10))
    sandbox.limits.requests_per_second = None  # type: ignore[attr-defined]
    settings = {
        **sandbox.connector_settings(),
        "requests_per_minute": 60_000,
        "batch_requests_per_minute": 60_000,
    }
    connector = plugin.connect(settings, ConnectorContext(secrets=MemorySecrets()))
    try:
        yield sandbox, connector
    finally:
        connector.close()
        sandbox.stop()


def our_invoices(sandbox: Any) -> list[dict[str, Any]]:
    """Invoices in the sandbox that this test's writes made."""
    return [
        invoice
        for invoice in sandbox.company.table("Invoice").by_id()
        if str(invoice.get("DocNumber", "")).startswith("LL-")
    ]


def queue_invoices(engine: Engine) -> None:
    writes = []
    for n in range(INVOICES):
        payload = {
            "DocNumber": f"LL-{n}",
            "CustomerRef": {"value": str(n + 1)},
            "Line": [
                {
                    "Amount": 100 + n,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1},
                }
            ],
        }
        key = idempotency_key("quickbooks", "Invoice", "create", f"inv-{n}", payload)
        op = WriteOp(key, "Invoice", WriteAction.CREATE, payload)
        writes.append(PlannedWrite("quickbooks", op, entity_kind="invoice", entity_id=f"inv-{n}"))
    queue(engine, *writes)


def crash_then_recover(
    engine: Engine, connector: Connector, clock: Clock, *, stable_keys: bool
) -> None:
    """Push once and die after the vendor call, wait out the lease, push again."""
    dying: Any = DiesAfterVendorCall(connector)
    healthy: Any = connector
    if not stable_keys:
        dying, healthy = FreshKeyEverySend(dying), FreshKeyEverySend(connector)
    with pytest.raises(ProcessDied):
        push(engine, dying, worker_id="worker-a", clock=clock)
    assert {r.status for r in rows(engine)} == {"in_flight"}
    clock.advance(minutes=6)
    report = push(engine, healthy, worker_id="worker-b", clock=clock)
    assert report.done == INVOICES


def test_crash_after_the_vendor_call_does_not_duplicate(
    engine: Engine, quickbooks: tuple[Sandbox, Connector], clock: Clock
) -> None:
    """After a worker dies between the QuickBooks call and storing its answer, the resend with the
    same keys gets the same invoices back: exactly one invoice per write."""
    sandbox, connector = quickbooks
    queue_invoices(engine)
    crash_then_recover(engine, connector, clock, stable_keys=True)
    made = our_invoices(sandbox)
    assert sorted(i["DocNumber"] for i in made) == ["LL-0", "LL-1", "LL-2"]
    stored = rows(engine)
    assert {r.status for r in stored} == {"done"}
    assert sorted(r.remote_id for r in stored) == sorted(str(i["Id"]) for i in made)


def test_resend_with_fresh_keys_duplicates(
    engine: Engine, quickbooks: tuple[Sandbox, Connector], clock: Clock
) -> None:
    """The same crash with a new random key on each send makes every invoice twice, so the test
    above would see a duplicate."""
    sandbox, connector = quickbooks
    queue_invoices(engine)
    crash_then_recover(engine, connector, clock, stable_keys=False)
    made = our_invoices(sandbox)
    assert len(made) == 2 * INVOICES
    assert sorted({i["DocNumber"] for i in made}) == ["LL-0", "LL-1", "LL-2"]
