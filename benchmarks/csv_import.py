"""Benchmark of ``ledgerlink import csv``: a large Stripe customer export, rows/s and peak RSS.

Run on demand (never in tests):

    .venv/bin/python benchmarks/csv_import.py                      # 1,000,000 rows, SQLite
    .venv/bin/python benchmarks/csv_import.py 200000               # another size
    .venv/bin/python benchmarks/csv_import.py 1000000 postgresql+psycopg://postgres@127.0.0.1/bench

It writes a Stripe dashboard customer export (id, Name, Email, Address columns, Created (UTC),
a metadata column) to a temporary file, row by row, then imports it in one transaction into a
fresh migrated database (a temporary SQLite file unless a URL is given; that database's
``source_record`` rows of system ``stripe`` are deleted first). It prints the file size, the
import's wall time and rows per second, and the process's peak RSS, which shows the file is
streamed rather than loaded (the ids seen are kept to report duplicates: that set is the one
structure that grows with the file).
"""

from __future__ import annotations

import csv
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from ledgerlink.csvimport import import_file
from ledgerlink.store import Store, create_engine_for, upgrade

HEADER = [
    "id",
    "Name",
    "Email",
    "Phone",
    "Address Line1",
    "Address City",
    "Address Country",
    "Address Zip",
    "Created (UTC)",
    "Currency",
    "Delinquent",
    "sf_account_id (metadata)",
]
COUNTRIES = ["US", "FR", "DE", "GB", "CA", "JP"]


def write_export(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [
                    f"cus_{i:014d}",
                    f"Customer {i} Ltd",
                    f"billing{i}@customer{i % 9973}.example",
                    f"+1 555 {i % 1000:03d} {i % 10000:04d}",
                    f"{i % 900 + 1} Main St",
                    "Springfield",
                    COUNTRIES[i % len(COUNTRIES)],
                    f"{i % 99999:05d}",
                    f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} 10:{i % 60:02d}:00",
                    "usd",
                    "false",
                    f"001{i:015d}" if i % 3 == 0 else "",
                ]
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{tmp}/bench.db"
        path = Path(tmp) / "customers.csv"
        started = time.perf_counter()
        write_export(path, rows)
        print(
            f"wrote {rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f} s; peak RSS so far {peak_rss_mb():.0f} MB"
        )
        upgrade(url)
        engine = create_engine_for(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM source_record WHERE system = 'stripe'"))
        store = Store(engine)
        started = time.perf_counter()
        summary = import_file(
            store,
            path,
            system="stripe",
            object_name="customers",
            now=datetime.now(UTC),
        )
        elapsed = time.perf_counter() - started
        engine.dispose()
        print(
            f"{engine.dialect.name}: imported {summary.rows:,} rows "
            f"({summary.result.inserted:,} inserted, {len(summary.problems)} problems) in "
            f"{elapsed:.1f} s = {summary.rows / elapsed:,.0f} rows/s; "
            f"peak RSS {peak_rss_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
