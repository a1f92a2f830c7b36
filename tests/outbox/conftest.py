"""Fixtures for the outbox tests: a scriptable fake connector, a movable clock, helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ledgerlink.connector.errors import ConnectorError
from ledgerlink.connector.protocol import (
    CheckReport,
    Cursor,
    Page,
    Stream,
    WriteAction,
    WriteOp,
    WriteResult,
    WriterSpec,
)
from ledgerlink.store import Outbox
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class FakeConnector:
    """A target that remembers every key it made an object for and replays it, like a vendor.

    ``errors`` maps an idempotency key to errors returned on its next sends (one per send);
    ``raise_after`` makes ``write`` raise after yielding that many results.
    """

    name: str = "fake"
    batch_size: int = 3
    errors: dict[str, list[ConnectorError]] = field(default_factory=dict)
    raise_after: int | None = None
    calls: list[list[WriteOp]] = field(default_factory=list)
    made: dict[str, str] = field(default_factory=dict)

    def streams(self) -> Sequence[Stream]:
        return ()

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        return iter(())

    def writers(self) -> Sequence[WriterSpec]:
        actions = frozenset(WriteAction)
        return (
            WriterSpec("Thing", actions, batch_size=self.batch_size, external_id_field="Ext__c"),
            WriterSpec("Other", actions, batch_size=1),
        )

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        self.calls.append(list(ops))
        for index, op in enumerate(ops):
            if self.raise_after is not None and index >= self.raise_after:
                raise ConnectionResetError("connection dropped")
            pending = self.errors.get(op.idempotency_key)
            if pending:
                yield WriteResult(op.idempotency_key, error=pending.pop(0))
                continue
            replayed = op.idempotency_key in self.made
            remote = self.made.setdefault(op.idempotency_key, f"R{len(self.made) + 1}")
            yield WriteResult(op.idempotency_key, remote_id=remote, replayed=replayed)

    def check(self) -> CheckReport:
        return CheckReport(())

    def close(self) -> None:
        return None


def planned(
    n: int,
    *,
    target: str = "fake",
    obj: str = "Thing",
    action: WriteAction = WriteAction.CREATE,
    entity: str | None = None,
    version: int = 0,
) -> PlannedWrite:
    """The n-th test write: a create of ``obj`` for entity ``entity`` (``e<n>`` by default)."""
    entity_id = entity or f"e{n}"
    payload: dict[str, Any] = {"Name": f"Company {n}", "Ext__c": f"X{n}"}
    key = idempotency_key(target, obj, action, entity_id, payload, version=version)
    remote = "R-existing" if action in (WriteAction.UPDATE, WriteAction.DELETE) else None
    op = WriteOp(key, obj, action, payload, remote_id=remote)
    return PlannedWrite(target, op, entity_kind="customer", entity_id=entity_id)


def queue(engine: Engine, *writes: PlannedWrite, now: datetime = T0) -> int:
    """Enqueue ``writes`` in a transaction of their own."""
    with engine.begin() as conn:
        return enqueue(conn, writes, now=now)


def rows(engine: Engine) -> list[Any]:
    """Every outbox row (attribute access by column name), in id order."""
    table = Outbox.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)).all())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake() -> FakeConnector:
    return FakeConnector()
