"""Benchmark: push N outbox rows through a connector that answers at once, in batches.

Measures the outbox and push worker alone (no vendor latency): enqueue N create operations
in one transaction, then run :func:`ledgerlink.sync.push.push` until the outbox is empty.
Prints, per database, rows/s for enqueue and for push, and the database statements per row
(each ``execute`` and each ``executemany`` call counted once, as one round trip; BEGIN and
COMMIT excluded).

    .venv/bin/python benchmarks/outbox_push.py                        # 10,000 rows, batch 200
    .venv/bin/python benchmarks/outbox_push.py --ops 50000 --database postgresql

PostgreSQL: a database ``ledgerlink_bench_outbox_<pid>`` is created on the server named by
``LEDGERLINK_BENCH_DATABASE_URL`` (default: ``LEDGERLINK_TEST_DATABASE_URL``, then
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped at the end.
SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

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
from ledgerlink.store import create_engine_for, upgrade
from ledgerlink.sync.outbox import PlannedWrite, count_by_status, enqueue, idempotency_key
from ledgerlink.sync.push import push

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class InstantConnector:
    """A target that accepts every write at once and gives it an id."""

    name = "bench"

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.calls = 0

    def streams(self) -> Sequence[Stream]:
        return ()

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:  # noqa: ARG002 - writes only
        return iter(())

    def writers(self) -> Sequence[WriterSpec]:
        return (WriterSpec("Account", frozenset(WriteAction), batch_size=self.batch_size),)

    def write(self, ops: Sequence[WriteOp]) -> Iterator[WriteResult]:
        self.calls += 1
        for op in ops:
            yield WriteResult(op.idempotency_key, remote_id="001" + op.idempotency_key[-15:])

    def check(self) -> CheckReport:
        return CheckReport(())

    def close(self) -> None:
        return None


class StatementCounter:
    """Counts the statements an engine sends (executemany counted once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def planned_writes(n: int) -> Iterator[PlannedWrite]:
    for i in range(n):
        payload = {"Name": f"Company {i}", "BillingCity": "Lyon", "AnnualRevenue": 1000 * i}
        key = idempotency_key("bench", "Account", "create", f"cust-{i}", payload)
        op = WriteOp(key, "Account", WriteAction.CREATE, payload)
        yield PlannedWrite("bench", op, entity_kind="customer", entity_id=f"cust-{i}")


def run(engine: Engine, label: str, ops: int, batch: int) -> None:
    upgrade(engine)
    counter = StatementCounter(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        inserted = enqueue(conn, planned_writes(ops))
    enqueue_seconds = time.perf_counter() - started
    enqueue_statements = counter.count

    connector = InstantConnector(batch)
    counter.count = 0
    started = time.perf_counter()
    report = push(engine, connector, worker_id="bench")
    push_seconds = time.perf_counter() - started
    push_statements = counter.count
    counts = count_by_status(engine)
    assert inserted == ops
    assert counts == {"done": ops}, counts
    print(
        f"{label:10s} enqueue {ops:,} rows: {enqueue_seconds:6.2f} s "
        f"({ops / enqueue_seconds:8,.0f} rows/s, {enqueue_statements} statements)"
    )
    print(
        f"{label:10s} push    {ops:,} rows: {push_seconds:6.2f} s "
        f"({ops / push_seconds:8,.0f} rows/s), {report.batches} batches of {batch}, "
        f"{push_statements} statements = {push_statements / ops:.3f} per row, "
        f"{connector.calls} connector calls"
    )


def sqlite_run(ops: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine_for(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            run(engine, "sqlite", ops, batch)
        finally:
            engine.dispose()


def postgresql_run(ops: int, batch: int) -> None:
    server = make_url(
        os.environ.get("LEDGERLINK_BENCH_DATABASE_URL")
        or os.environ.get("LEDGERLINK_TEST_DATABASE_URL")
        or DEFAULT_SERVER
    ).set(drivername="postgresql+psycopg")
    name = f"ledgerlink_bench_outbox_{os.getpid()}"
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            engine = create_engine_for(server.set(database=name))
            try:
                run(engine, "postgresql", ops, batch)
            finally:
                engine.dispose()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000, help="outbox rows to push")
    parser.add_argument("--batch", type=int, default=200, help="rows per write call")
    parser.add_argument(
        "--database", choices=["sqlite", "postgresql", "both"], default="both", help="store"
    )
    args = parser.parse_args()
    if args.database in ("sqlite", "both"):
        sqlite_run(args.ops, args.batch)
    if args.database in ("postgresql", "both"):
        postgresql_run(args.ops, args.batch)


if __name__ == "__main__":
    main()
