"""QuickBooks connector benchmarks against the loopback sandbox (run on demand, not in tests).

Measures, counting requests on the server side (the sandbox's fault injector):
  1. API calls of a sync cycle in which nothing changed (all eleven streams);
  2. API calls to post 10,000 invoices (batches of 30);
  3. records/s of a first load of 100,000 customers, and peak RSS.

Usage: .venv/bin/python benchmarks/quickbooks_cycle.py [--customers N] [--invoices N]
       [--only cycle|post|load]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time

from ledgerlink_quickbooks import QuickBooksConnector, QuickBooksSettings, posting
from ledgerlink_quickbooks.sandbox import QuickBooksSandbox
from ledgerlink_quickbooks.streams import STREAMS

from ledgerlink.connector.protocol import (
    ConnectorContext,
    Cursor,
    SandboxOptions,
    WriteAction,
    WriteOp,
)
from ledgerlink.domain.money import Money
from ledgerlink.log import configure_logging


class Store:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def api_calls(box: QuickBooksSandbox) -> int:
    return sum(1 for _, path in box.faults.requests if path.startswith("/v3/"))


def connect(box: QuickBooksSandbox, store: Store, **extra: object) -> QuickBooksConnector:
    raw = {**box.connector_settings(), **extra}
    return QuickBooksConnector(
        QuickBooksSettings.model_validate(raw), ConnectorContext(secrets=store)
    )


def unchanged_cycle() -> None:
    box = QuickBooksSandbox(SandboxOptions(seed=1, size=2000))
    box.limits.requests_per_second = None
    store = Store()
    try:
        conn = connect(box, store, requests_per_minute=100_000)
        cursors = {}
        for stream in STREAMS:
            pages = list(conn.read(stream.name, Cursor()))
            cursors[stream.name] = pages[-1].cursor
        conn.close()
        first_load = api_calls(box)
        box.faults.reset_counts()
        conn = connect(box, store, requests_per_minute=100_000)
        landed = 0
        for stream in STREAMS:
            for page in conn.read(stream.name, cursors[stream.name]):
                landed += len(page.records)
        conn.close()
        cdc = sum(1 for _, p in box.faults.requests if p.endswith("/cdc"))
        print(f"first load of 11 streams (2,000 customers): {first_load} API calls")
        print(
            f"unchanged cycle, 11 streams: {api_calls(box)} API calls "
            f"({cdc} CDC + {api_calls(box) - cdc} other; TaxCode, which has no CDC, is re-queried "
            f"once an hour), {landed} records"
        )
    finally:
        box.stop()


def post_invoices(count: int) -> None:
    box = QuickBooksSandbox(SandboxOptions(seed=2, size=500))
    box.limits.requests_per_minute = None
    box.limits.requests_per_second = None
    box.limits.batch_per_minute = None
    store = Store()
    try:
        conn = connect(box, store, requests_per_minute=100_000, batch_requests_per_minute=100_000)
        ops = []
        for n in range(count):
            body = posting.invoice(
                customer_id=str(n % 500 + 1),
                lines=[
                    posting.InvoiceLine("1", 1, Money(200_000, "USD")),
                    posting.InvoiceLine("3", n % 7 + 1, Money(1_500, "USD")),
                ],
                currency="USD",
                txn_date=dt.date(2026, 3, 1),
                doc_number=f"in_{n}",
            )
            ops.append(WriteOp(f"stripe:in_{n}:qbo-invoice", "Invoice", WriteAction.CREATE, body))
        box.faults.reset_counts()
        started = time.perf_counter()
        results = list(conn.write(ops))
        seconds = time.perf_counter() - started
        conn.close()
        ok = sum(r.ok for r in results)
        print(
            f"posting {count:,} invoices: {api_calls(box)} API calls, {ok:,} created, "
            f"{seconds:.1f} s against the sandbox with limits off; at Intuit's 40 batch "
            f"calls/min that is at least {api_calls(box) / 40:.1f} min"
        )
    finally:
        box.stop()


def first_load(customers: int) -> None:
    box = QuickBooksSandbox(SandboxOptions(seed=3, size=customers))
    box.limits.requests_per_minute = None
    box.limits.requests_per_second = None
    store = Store()
    try:
        conn = connect(box, store, requests_per_minute=100_000)
        rss_before = rss_mb()
        started = time.perf_counter()
        landed = 0
        for page in conn.read("Customer", Cursor()):
            landed += len(page.records)
        seconds = time.perf_counter() - started
        conn.close()
        print(
            f"first load of {customers:,} customers: {landed:,} records in {seconds:.1f} s = "
            f"{landed / seconds:,.0f} records/s, {api_calls(box)} API calls; "
            f"peak RSS {rss_before:.0f} MB before, {rss_mb():.0f} MB after (client and "
            "sandbox in one process)"
        )
    finally:
        box.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument(
        "--only", choices=["cycle", "post", "load"], help="run one part (peak RSS is per process)"
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    if args.only in (None, "cycle"):
        unchanged_cycle()
    if args.only in (None, "post"):
        post_invoices(args.invoices)
    if args.only in (None, "load"):
        first_load(args.customers)


if __name__ == "__main__":
    main()
