"""Benchmark: peak RSS of the client while streaming N accounts (goal: < 300 MiB for 1,000,000).

The sandbox runs in its own process; the client reads the ``Account`` stream through a Bulk
2.0 job page by page, keeping nothing but the cursor, as the sync engine does.

    .venv/bin/python benchmarks/salesforce_memory.py --accounts 1000000
"""

from __future__ import annotations

import argparse
import time

from salesforce_common import SandboxProcess, connect, peak_rss_mib

from ledgerlink.connector.protocol import Cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1_000_000)
    args = parser.parse_args()
    sandbox = SandboxProcess(args.accounts)
    conn = connect(sandbox)
    try:
        baseline = peak_rss_mib()
        started = time.perf_counter()
        count, cursor, pages = 0, Cursor(), 0
        for page in conn.read("Account", cursor):
            count += len(page.records)
            cursor = page.cursor
            pages += 1
        elapsed = time.perf_counter() - started
        print(
            f"streamed {count} accounts in {pages} pages, {sandbox.requests()} API calls, "
            f"{elapsed:.0f} s, {count / elapsed:,.0f} records/s"
        )
        print(
            f"client peak RSS {peak_rss_mib():.0f} MiB (before reading {baseline:.0f} MiB; "
            f"goal < 300), sandbox process peak RSS {sandbox.peak_rss_mib():.0f} MiB"
        )
    finally:
        conn.close()
        sandbox.stop()


if __name__ == "__main__":
    main()
