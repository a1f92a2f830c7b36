"""Benchmark: land N Salesforce-account-like records (~1 KB of JSON each) into the store.

Runs two passes through ``Store.land_page`` (records and cursor per page, as the sync engine
does): a first pass that inserts every record, then a re-ingest of the same records unchanged.
Prints records/s for each pass (store time only, and wall time including generating the
payloads), the re-ingest's speed-up, the process's peak RSS, the machine's 1-minute load
average at the start and the end of the run, and the CPU time per record of each pass spent
by this process inside ``land_page`` (client) and by the PostgreSQL backends of the benchmark
database (server, read from ``/proc`` when the server runs on this host; ``-`` otherwise).
Payloads are generated lazily, page by page, so memory stays flat whatever N is.

    .venv/bin/python benchmarks/store_ingest.py                      # 1,000,000 on both
    .venv/bin/python benchmarks/store_ingest.py --records 100000 --database postgresql
    .venv/bin/python benchmarks/store_ingest.py --database postgresql --repeat 3

``--repeat N`` runs each database N times (a fresh database each time, one process per run)
and ends with the spread of the re-ingest speed-up: on a shared host, one run says little.

PostgreSQL: a database ``ledgerlink_bench_<pid>`` is created on the server named by
``LEDGERLINK_BENCH_DATABASE_URL`` (default: ``LEDGERLINK_TEST_DATABASE_URL``, then
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped at the end.
SQLite: a file in a temporary directory. Goals (issue 3): >= 20,000 records/s on PostgreSQL,
peak RSS < 500 MiB, re-ingest unchanged >= 3x faster than the first pass.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
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
    client_cpu_seconds: float
    server_cpu_seconds: float | None


class ServerCpu:
    """CPU time used by the PostgreSQL backends connected to one database, from ``/proc``.

    Only meaningful when the server runs on this host (as in the documented runs); otherwise
    :meth:`seconds` returns None. Background processes (checkpointer, writer) are not counted.
    """

    def __init__(self, admin: psycopg.Connection[Any] | None, database: str) -> None:
        self.admin = admin
        self.database = database
        self.tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float | None:
        """Return the user + system CPU seconds of the database's backends, or None."""
        if self.admin is None:
            return None
        pids = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
        ).fetchall()
        total = 0
        for (pid,) in pids:
            try:
                name, _, rest = Path(f"/proc/{pid}/stat").read_text().partition(") ")
            except OSError:
                return None  # the server runs elsewhere
            if not name.endswith("(postgres"):
                return None  # a process of this host with the same pid, not the backend
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.tick


def run_pass(store: Store, total: int, page_size: int, server: ServerCpu) -> PassResult:
    """Land every page once; return counts, timings and CPU times."""
    counts = LandResult()
    store_seconds = client_cpu = 0.0
    server_start = server.seconds()
    wall_start = time.perf_counter()
    now = datetime.now(UTC)
    for page in pages(total, page_size):
        start = time.perf_counter()
        cpu_start = time.process_time()
        counts += store.land_page("salesforce", page, connector="salesforce", now=now)
        client_cpu += time.process_time() - cpu_start
        store_seconds += time.perf_counter() - start
    wall = time.perf_counter() - wall_start
    server_end = server.seconds()
    server_cpu = None if server_start is None or server_end is None else server_end - server_start
    return PassResult(counts, store_seconds, wall, client_cpu, server_cpu)


def cpu_per_record(result: PassResult, total: int) -> str:
    """Client and server CPU microseconds per record of a pass, as ``client / server``."""
    server = (
        "-"
        if result.server_cpu_seconds is None
        else f"{result.server_cpu_seconds / total * 1e6:.1f}"
    )
    return f"{result.client_cpu_seconds / total * 1e6:.1f} / {server}"


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
    backends = ServerCpu(admin, bench_db)
    try:
        upgrade(engine)
        store = Store(engine)
        first = run_pass(store, total, page_size, backends)
        again = run_pass(store, total, page_size, backends)
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
    load_end = os.getloadavg()
    print(
        f"| {database} | {total:,} | {first_rate:,.0f} | {total / first.wall_seconds:,.0f} "
        f"| {again_rate:,.0f} | {total / again.wall_seconds:,.0f} "
        f"| {again_rate / first_rate:.2f}x | {peak_rss_mib():,.0f} "
        f"| {load_start[0]:.2f} to {load_end[0]:.2f} "
        f"| {cpu_per_record(first, total)} | {cpu_per_record(again, total)} |",
        flush=True,
    )
    print(
        f"{database}: load average (1, 5, 15 min) {load_start[0]:.2f} {load_start[1]:.2f} "
        f"{load_start[2]:.2f} at the start, {load_end[0]:.2f} {load_end[1]:.2f} "
        f"{load_end[2]:.2f} at the end, on {os.cpu_count()} CPUs",
        file=sys.stderr,
        flush=True,
    )


HEADER = (
    "| database | records | first pass rec/s (store) | first pass rec/s (wall) "
    "| re-ingest rec/s (store) | re-ingest rec/s (wall) | re-ingest speed-up | peak RSS MiB "
    "| load (1 min) | first pass CPU us/rec (client / server) "
    "| re-ingest CPU us/rec (client / server) |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)
SPEED_UP = re.compile(r"\| ([0-9.]+)x \|")


def summarize(database: str, lines: list[str]) -> None:
    """Print the spread of the re-ingest speed-up over the runs of one database."""
    ratios = sorted(float(match.group(1)) for line in lines if (match := SPEED_UP.search(line)))
    if len(ratios) < 2:
        return
    print(
        f"{database}: re-ingest speed-up over {len(ratios)} runs: min {ratios[0]:.2f}x, "
        f"median {statistics.median(ratios):.2f}x, max {ratios[-1]:.2f}x",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark; ``both`` runs each database in its own process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--page-size", type=int, default=2000, help="records per page")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per database, each in its own process"
    )
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.no_header:
        print(HEADER, flush=True)
    if args.database != "both" and args.repeat == 1:
        bench_one(args.database, args.records, args.page_size)
        return 0
    databases = ("postgresql", "sqlite") if args.database == "both" else (args.database,)
    lines: dict[str, list[str]] = {database: [] for database in databases}
    for _ in range(args.repeat):
        for database in databases:  # one process each: separate peak RSS
            run = subprocess.run(
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
                stdout=subprocess.PIPE,
                text=True,
            )
            print(run.stdout, end="", flush=True)
            lines[database].append(run.stdout)
    for database in databases:
        summarize(database, lines[database])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
