"""Reliability run: pull and push thousands of records through the sandboxes under injected faults.

The QuickBooks sandbox answers over loopback with faults switched on for every API call:
5% 429 with ``Retry-After``, 2% 503, 1% dropped connections (the answer starts, then the
connection is cut) and 1% answers slower than the client's timeout (the vendor applies the
write, the client never hears back and sends it again). Then:

* **push**: N invoices go into the outbox, each with its deterministic idempotency key, and
  :func:`ledgerlink.sync.push.push` runs until the outbox is empty (retries due later are made
  due by moving the push clock, never by sleeping);
* **pull**: every stream is pulled from an empty cursor, repeated until each stream succeeds.

Then the sandbox's own tables are counted: an invoice made twice is a duplicate, an outbox row
without its invoice is missing; a pulled record is missing when the sandbox has it and the
store does not. The connector's waits (Retry-After, backoff) are recorded, not slept.

    .venv/bin/python benchmarks/reliability_faults.py                  # 3,000 invoices, SQLite
    .venv/bin/python benchmarks/reliability_faults.py --invoices 5000 --database postgresql

``tests/reliability/test_fault_run.py`` runs the same code with a few hundred records in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import Engine, make_url

from ledgerlink.connector import ConnectorContext, SandboxOptions, load_plugin
from ledgerlink.connector.http import RetryPolicy
from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.connector.sandbox import Fault
from ledgerlink.log import configure_logging
from ledgerlink.store import Store, create_engine_for, upgrade
from ledgerlink.sync.engine import pull
from ledgerlink.sync.outbox import PlannedWrite, count_by_status, enqueue, idempotency_key
from ledgerlink.sync.push import push

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DOC_PREFIX = "RF-"
CLIENT_TIMEOUT = 0.5
SLOW_DELAY = 1.0


class MemorySecrets:
    """In-memory secret store for the connector's rotated refresh token."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


class FreshRequestIdTransport(httpx.HTTPTransport):
    """Sends every HTTP attempt with a new random ``requestid`` (what an SDK does by default).

    The control run: retries of a write whose answer was lost are then new writes to the
    vendor, so the run must show duplicates, proving that the count can see them.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "requestid" in request.url.params:
            request.url = request.url.copy_set_param("requestid", uuid.uuid4().hex)
        return super().handle_request(request)


class MovableClock:
    """The push clock: moved forward to make retries due instead of sleeping."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class FaultRunResult:
    """What a run injected and what the sandbox holds afterwards."""

    invoices: int
    batch_size: int = 10
    pulled_expected: int = 0
    pulled_landed: int = 0
    pull_attempts: int = 0
    push_rounds: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    duplicates: int = 0
    missing_writes: int = 0
    missing_reads: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    waited_seconds: float = 0.0
    seconds: float = 0.0

    def table(self) -> str:
        """The figures as a Markdown table."""
        lines = ["| figure | value |", "| --- | --- |"]
        rows: list[tuple[str, object]] = [
            ("invoices pushed", self.invoices),
            ("invoices per write call", self.batch_size),
            ("records pulled (sandbox / landed)", f"{self.pulled_expected} / {self.pulled_landed}"),
            ("HTTP requests to the sandbox", self.requests),
            *((f"injected {kind}", count) for kind, count in sorted(self.injected.items())),
            ("push rounds / pull attempts", f"{self.push_rounds} / {self.pull_attempts}"),
            ("waits asked by the vendor or backoff (s, not slept)", round(self.waited_seconds)),
            (
                "outbox rows by status",
                ", ".join(f"{k} {v}" for k, v in sorted(self.outbox.items())),
            ),
            ("duplicate invoices", self.duplicates),
            ("missing invoices", self.missing_writes),
            ("missing pulled records", self.missing_reads),
            ("wall time (s)", round(self.seconds, 1)),
        ]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines)


class SlowAnswers:
    """Applies the request, then answers only after the client's timeout: the answer is lost.

    The sandbox's own ``delay`` fault waits *before* the request is handled, and a client that
    gave up by then has also taken its body away, so nothing is written; this one writes first,
    which is the case that makes duplicates when a retry is not idempotent.
    """

    def __init__(self, app: Any, *, rate: float, delay: float, seed: int, path_prefix: str) -> None:
        self.app = app
        self.rate = rate
        self.delay = delay
        self.path_prefix = path_prefix
        self.hits = 0
        self._random = random.Random(seed)  # fault sampling, not security

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(self.path_prefix)
            or self._random.random() >= self.rate
        ):
            await self.app(scope, receive, send)
            return
        self.hits += 1
        held: list[Any] = []

        async def hold(message: Any) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(self.delay)
        for message in held:
            await send(message)


def _faults(sandbox: Any, seed: int) -> dict[str, Any]:
    api = "/v3/"
    sandbox.faults._random.seed(seed)  # reproducible sampling for the run
    slow = SlowAnswers(
        sandbox.faults.app, rate=0.01 / 0.92, delay=SLOW_DELAY, seed=seed, path_prefix=api
    )
    sandbox.faults.app = slow
    return {
        "429 with Retry-After": sandbox.faults.add(
            Fault(kind="status", status=429, rate=0.05, retry_after=1, path_prefix=api)
        ),
        "503": sandbox.faults.add(
            Fault(kind="status", status=503, rate=0.02 / 0.95, path_prefix=api)
        ),
        "dropped connection": sandbox.faults.add(
            Fault(kind="drop", rate=0.01 / 0.93, path_prefix=api)
        ),
        "slower than the client timeout (write applied, answer lost)": slow,
    }


def _invoice_writes(count: int, customer_ids: list[str], item_id: str) -> list[PlannedWrite]:
    writes = []
    for n in range(count):
        payload = {
            "DocNumber": f"{DOC_PREFIX}{n}",
            "CustomerRef": {"value": customer_ids[n % len(customer_ids)]},
            "Line": [
                {
                    "Amount": 100 + n,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 1},
                }
            ],
        }
        key = idempotency_key("quickbooks", "Invoice", "create", f"rf-{n}", payload)
        op = WriteOp(key, "Invoice", WriteAction.CREATE, payload)
        writes.append(PlannedWrite("quickbooks", op, entity_kind="invoice", entity_id=f"rf-{n}"))
    return writes


def fault_run(
    engine: Engine,
    *,
    invoices: int,
    pull_size: int,
    batch_size: int = 10,
    seed: int = 7,
    fresh_keys: bool = False,
) -> FaultRunResult:
    """Pull and push through the QuickBooks sandbox with faults; count duplicates and losses."""
    started = time.perf_counter()
    result = FaultRunResult(invoices=invoices, batch_size=batch_size)
    waits: list[float] = []
    plugin = load_plugin("quickbooks")
    sandbox: Any = plugin.start_sandbox(SandboxOptions(seed=seed, size=pull_size))
    # The injected 429s stand for throttling: the sandbox's own per-minute limits count in
    # real time while the connector's waits are only recorded, so they are switched off.
    sandbox.limits.requests_per_second = None
    sandbox.limits.requests_per_minute = None
    sandbox.limits.batch_per_minute = None
    settings = {
        **sandbox.connector_settings(),
        "requests_per_minute": 600_000,
        "batch_requests_per_minute": 600_000,
        "timeout": CLIENT_TIMEOUT,
    }
    from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings

    connector = QuickBooksConnector(
        QuickBooksSettings.model_validate(settings),
        ConnectorContext(secrets=MemorySecrets()),
        retry=RetryPolicy(max_attempts=8, sleep=waits.append, jitter=lambda _d: 0.0),
        transport=FreshRequestIdTransport() if fresh_keys else None,
    )
    try:
        connector.http.rate_limiter = None  # type: ignore[assignment]
        store = Store(engine)
        expected = {
            (entity, str(row["Id"]))
            for entity in ("Customer", "Item", "Invoice", "Payment")
            for row in sandbox.company.table(entity).by_id()
        }
        customer_ids = sorted(str(c["Id"]) for c in sandbox.company.table("Customer").by_id())
        item_id = str(next(iter(sandbox.company.table("Item").by_id()))["Id"])
        injected = _faults(sandbox, seed)

        # -- pull every stream until each one succeeded -------------------------------------
        pending = [s.name for s in connector.streams()]
        while pending and result.pull_attempts < 50:
            result.pull_attempts += 1
            pending = [r.stream for r in pull(store, connector, pending) if not r.ok]
        landed = {
            (entity, rid)
            for entity, rid in expected
            if store.get_source_record("quickbooks", entity, rid) is not None
        }
        result.pulled_expected = len(expected)
        result.pulled_landed = len(landed)
        result.missing_reads = len(expected - landed)

        # -- push the invoices through the outbox until it is empty -------------------------
        clock = MovableClock()
        with engine.begin() as conn:
            enqueue(conn, _invoice_writes(invoices, customer_ids, item_id), now=clock())
        while result.push_rounds < 200:
            result.push_rounds += 1
            push(engine, connector, worker_id="fault-run", batch_size=batch_size, clock=clock)
            counts = count_by_status(engine, target="quickbooks")
            if not any(counts.get(s, 0) for s in ("pending", "failed", "in_flight")):
                break
            clock.advance(3600)  # make every retry due and every lease expire
        result.outbox = {k: v for k, v in count_by_status(engine, target="quickbooks").items() if v}

        made = Counter(
            str(i.get("DocNumber"))
            for i in sandbox.company.table("Invoice").by_id()
            if str(i.get("DocNumber", "")).startswith(DOC_PREFIX)
        )
        result.duplicates = sum(n - 1 for n in made.values() if n > 1)
        result.missing_writes = sum(1 for n in range(invoices) if f"{DOC_PREFIX}{n}" not in made)
        result.injected = {name: fault.hits for name, fault in injected.items()}
        result.requests = sandbox.faults.request_count
        result.waited_seconds = sum(waits)
    finally:
        connector.close()
        sandbox.stop()
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def _database(kind: str) -> Iterator[Engine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            engine = create_engine_for(f"sqlite:///{Path(folder) / 'faults.db'}")
            upgrade(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    server = make_url(
        os.environ.get("LEDGERLINK_BENCH_DATABASE_URL")
        or os.environ.get("LEDGERLINK_TEST_DATABASE_URL")
        or DEFAULT_SERVER
    )
    name = f"ledgerlink_bench_faults_{os.getpid()}"
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        engine = create_engine_for(server.set(database=name))
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--invoices", type=int, default=3000)
    parser.add_argument("--pull-size", type=int, default=300, help="sandbox seed size")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch-size", type=int, default=10, help="invoices per write call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--fresh-keys",
        action="store_true",
        help="control run: a new random key on every send (must show duplicates)",
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with _database(args.database) as engine:
        result = fault_run(
            engine,
            invoices=args.invoices,
            pull_size=args.pull_size,
            batch_size=args.batch_size,
            seed=args.seed,
            fresh_keys=args.fresh_keys,
        )
    print(f"reliability under faults ({args.database}, QuickBooks sandbox, seed {args.seed})")
    print(result.table())
    if args.fresh_keys:
        print("control run without stable idempotency keys: duplicates are expected")
    elif result.duplicates or result.missing_writes or result.missing_reads:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
