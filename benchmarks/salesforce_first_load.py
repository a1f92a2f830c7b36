"""Benchmark: first load of Salesforce accounts through Bulk API 2.0, then a no-change cycle.

Starts the sandbox in its own process with N accounts, reads the ``Account`` stream from an
empty cursor through the real connector (above the 10,000-row threshold that is one Bulk 2.0
query job), lands every page into a SQLite store with its cursor (``--no-store`` to skip), and
prints the API calls the sandbox counted, the time, records per second and the client's peak
RSS. Then it reads again from the final cursor of every stream, started as the pull loop
starts them (``prefetch``: five queries per ``/composite`` call), and prints the calls of a
cycle in which nothing changed (goal: one per five streams).

    .venv/bin/python benchmarks/salesforce_first_load.py --accounts 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from salesforce_common import SandboxProcess, connect, peak_rss_mib

from ledgerlink.connector.protocol import Cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--no-store", action="store_true")
    args = parser.parse_args()
    sandbox = SandboxProcess(args.accounts)
    tmp = tempfile.TemporaryDirectory()
    store = None
    if not args.no_store:
        from ledgerlink.store.db import create_engine_for, upgrade
        from ledgerlink.store.repository import Store

        engine = create_engine_for(f"sqlite:///{Path(tmp.name) / 'bench.db'}")
        upgrade(engine)
        store = Store(engine)
    conn = connect(sandbox)
    try:
        conn.client.auth.session()  # the token call is not a data API call
        sandbox.reset()
        started = time.perf_counter()
        cursor, count = Cursor(), 0
        for page in conn.read("Account", cursor):
            if store is not None:
                store.land_page("salesforce", page, connector="salesforce", now=datetime.now(UTC))
            count += len(page.records)
            cursor = page.cursor
        elapsed = time.perf_counter() - started
        calls = sandbox.requests()
        print(
            f"first load: {count} accounts, {calls} API calls (goal <= 10), "
            f"{elapsed:.1f} s, {count / elapsed:,.0f} records/s "
            f"{'landed in SQLite' if store else 'read'}, client peak RSS {peak_rss_mib():.0f} MiB"
        )

        cursors = {"Account": cursor}
        for stream in conn.streams():
            if stream.name != "Account":
                cursors[stream.name] = list(conn.read(stream.name, Cursor()))[-1].cursor
        sandbox.reset()
        started = time.perf_counter()
        conn.prefetch(cursors)  # as the pull loop does: five queries per /composite call
        changed = sum(len(p.records) for name, c in cursors.items() for p in conn.read(name, c))
        calls = sandbox.requests()
        print(
            f"no-change cycle: {len(cursors)} streams, {calls} API calls "
            f"(goal <= {-(-len(cursors) // 5)}), {changed} records, "
            f"{time.perf_counter() - started:.2f} s"
        )
    finally:
        conn.close()
        sandbox.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
