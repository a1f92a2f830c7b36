"""Benchmark: land N Salesforce-account-like records (~1 KB of JSON each) into the store.

Runs two passes through ``Store.land_page`` (records and cursor per page, as the sync engine
does): a first pass that inserts every record, then a re-ingest of the same records unchanged.
Prints records/s for each pass (store time only, and wall time including generating the
payloads) and the process's peak RSS, and on stderr the machine's load average. Payloads are generated lazily, page by page, so memory
stays flat whatever N is.

    .venv/bin/python benchmarks/store_ingest.py                      # 1,000,000 on both
    .venv/bin/python benchmarks/store_ingest.py --records 100000 --database postgresql

PostgreSQL: a database ``ledgerlink_bench_<pid>`` is created on the server named by
``LEDGERLINK_BENCH_DATABASE_URL`` (default: ``LEDGERLINK_TEST_DATABASE_URL``, then
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped at the end.
SQLite: a file in a temporary directory. Goals (issue 3): >= 20,000 records/s on PostgreSQL,
peak RSS < 500 MiB, re-ingest unchanged >= 3x faster than the first pass.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from ledgerlink.connector import Cursor, Page, Record
from ledgerlink.store import LandResult, Store, create_engine_for, upgrade

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INDUSTRIES = ["Manufacturing", "Software", "Retail", "Healthcare", "Logistics", "Energy"]
CITIES = [
    ("Springfield", "IL", "62704", "United States"),
    ("München", "BY", "80331", "Germany"),
    ("Lyon", "ARA", "69002", "France"),
    ("Toronto", "ON", "M5H 2N2", "Canada"),
    ("Leeds", "ENG", "LS1 4DY", "United Kingdom"),
]
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Tyrell"]
SUFFIXES = ["GmbH", "Inc.", "Ltd", "SAS", "LLC", "AG"]
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def sf_id(prefix: str, n: int) -> str:
    """Return an 18-character Salesforce-style id."""
    return f"{prefix}{n:012d}AAA"[:18]


def account_payload(n: int) -> dict[str, Any]:
    """Return a realistic Account payload (about 1 KB as JSON), deterministic in ``n``."""
    city, state, postal, country = CITIES[n % len(CITIES)]
    name = f"{WORDS[n % len(WORDS)]} {WORDS[(n // 7) % len(WORDS)]} {n} {SUFFIXES[n % 6]}"
    modified = (BASE_TIME + timedelta(seconds=n * 7)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    created = (BASE_TIME - timedelta(days=n % 900)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    account_id = sf_id("001", n)
    street = f"{100 + n % 900} Main Street, Suite {n % 50}"
    return {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/v61.0/sobjects/Account/{account_id}",
        },
        "Id": account_id,
        "IsDeleted": False,
        "Name": name,
        "Type": "Customer - Direct" if n % 3 else "Customer - Channel",
        "ParentId": None,
        "BillingStreet": street,
        "BillingCity": city,
        "BillingState": state,
        "BillingPostalCode": postal,
        "BillingCountry": country,
        "ShippingStreet": street,
        "ShippingCity": city,
        "ShippingState": state,
        "ShippingPostalCode": postal,
        "ShippingCountry": country,
        "Phone": f"+1 (217) 555-{n % 10000:04d}",
        "Fax": None,
        "AccountNumber": f"CD{n:08d}",
        "Website": f"https://www.{WORDS[n % len(WORDS)].lower()}-{n}.example.com",
        "Sic": str(3000 + n % 999),
        "Industry": INDUSTRIES[n % len(INDUSTRIES)],
        "AnnualRevenue": 1_000_000 + (n % 1000) * 12_500,
        "NumberOfEmployees": 10 + n % 5000,
        "Ownership": "Private",
        "Rating": ["Hot", "Warm", "Cold"][n % 3],
        "Description": (
            f"Account {n} in the {city} region; renewal due in Q{1 + n % 4}. "
            "Primary contact prefers e-mail. Net 30 payment terms agreed with finance."
        ),
        "OwnerId": sf_id("005", n % 40),
        "CreatedDate": created,
        "CreatedById": sf_id("005", 1),
        "LastModifiedDate": modified,
        "LastModifiedById": sf_id("005", n % 40),
        "SystemModstamp": modified,
        "Tax_Id__c": f"DE{100000000 + n}",
        "Stripe_Customer_Id__c": f"cus_{n:014d}",
    }


def pages(total: int, page_size: int) -> Iterator[Page]:
    """Yield pages of records with the cursor valid after each, generated on demand."""
    cursor = Cursor()
    for start in range(0, total, page_size):
        records = []
        for n in range(start, min(total, start + page_size)):
            payload = account_payload(n)
            records.append(
                Record(
                    object="Account",
                    id=payload["Id"],
                    payload=payload,
                    cursor_value=payload["SystemModstamp"],
                )
            )
        cursor = Cursor(value=records[-1].cursor_value, boundary_ids=frozenset({records[-1].id}))
        yield Page(stream="Account", records=records, cursor=cursor)


@dataclass
class PassResult:
    """Figures of one pass."""

    counts: LandResult
    store_seconds: float
    wall_seconds: float


def run_pass(store: Store, total: int, page_size: int) -> PassResult:
    """Land every page once; return counts and timings."""
    counts = LandResult()
    store_seconds = 0.0
    wall_start = time.perf_counter()
    now = datetime.now(UTC)
    for page in pages(total, page_size):
        start = time.perf_counter()
        counts += store.land_page("salesforce", page, connector="salesforce", now=now)
        store_seconds += time.perf_counter() - start
    return PassResult(counts, store_seconds, time.perf_counter() - wall_start)


def peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_one(database: str, total: int, page_size: int) -> None:
    """Run both passes on one database and print a result line (the load average on stderr)."""
    load_start = os.getloadavg()
    admin: psycopg.Connection[Any] | None = None
    bench_db = ""
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if database == "postgresql":
        server = make_url(
            os.environ.get("LEDGERLINK_BENCH_DATABASE_URL")
            or os.environ.get("LEDGERLINK_TEST_DATABASE_URL")
            or DEFAULT_SERVER
        ).set(drivername="postgresql+psycopg")
        bench_db = f"ledgerlink_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = psycopg.connect(
            server.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        )
        admin.execute(f'CREATE DATABASE "{bench_db}"')
        url = server.set(database=bench_db).render_as_string(hide_password=False)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ledgerlink-bench-")
        url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = create_engine_for(url)
    try:
        upgrade(engine)
        store = Store(engine)
        first = run_pass(store, total, page_size)
        again = run_pass(store, total, page_size)
    finally:
        engine.dispose()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
            admin.close()
        if tmp is not None:
            tmp.cleanup()
    assert first.counts.inserted == total, first.counts
    assert again.counts.unchanged == total, again.counts
    first_rate = total / first.store_seconds
    again_rate = total / again.store_seconds
    print(
        f"| {database} | {total:,} | {first_rate:,.0f} | {total / first.wall_seconds:,.0f} "
        f"| {again_rate:,.0f} | {total / again.wall_seconds:,.0f} "
        f"| {again_rate / first_rate:.1f}x | {peak_rss_mib():,.0f} |",
        flush=True,
    )
    load_end = os.getloadavg()
    print(
        f"{database}: load average (1, 5, 15 min) {load_start[0]:.2f} {load_start[1]:.2f} "
        f"{load_start[2]:.2f} at the start, {load_end[0]:.2f} {load_end[1]:.2f} "
        f"{load_end[2]:.2f} at the end, on {os.cpu_count()} CPUs",
        file=sys.stderr,
        flush=True,
    )


HEADER = (
    "| database | records | first pass rec/s (store) | first pass rec/s (wall) "
    "| re-ingest rec/s (store) | re-ingest rec/s (wall) | re-ingest speed-up | peak RSS MiB |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark; ``both`` runs each database in its own process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--page-size", type=int, default=2000, help="records per page")
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.no_header:
        print(HEADER, flush=True)
    if args.database != "both":
        bench_one(args.database, args.records, args.page_size)
        return 0
    for database in ("postgresql", "sqlite"):  # one process each: separate peak RSS
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--records",
                str(args.records),
                "--database",
                database,
                "--page-size",
                str(args.page_size),
                "--no-header",
            ],
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
