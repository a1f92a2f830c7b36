"""Benchmark: first load of Stripe invoices, then a cycle with no change.

Starts the Stripe sandbox in a separate process (so its memory and CPU are not the client's),
reads the ``invoices`` stream from scratch through the real connector, and reports API calls,
records per second and the client's peak RSS; then reads again from the final cursor and
reports the calls a no-change cycle costs.

    .venv/bin/python benchmarks/stripe_first_load.py --invoices 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from ledgerlink_stripe.connector import StripeConnector
from ledgerlink_stripe.settings import StripeSettings

from ledgerlink.connector.protocol import Cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    args = parser.parse_args()
    size = args.invoices // 2  # the sandbox seeds two invoices per customer
    server = subprocess.Popen(
        [sys.executable, "-m", "ledgerlink_stripe.sandbox", "--size", str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        settings = StripeSettings(**json.loads(server.stdout.readline()))
        connector = StripeConnector(settings)
        started = time.perf_counter()
        records = pages = 0
        cursor = Cursor()
        for page in connector.read("invoices", cursor):
            records += len(page.records)
            pages += 1
            cursor = page.cursor
        seconds = time.perf_counter() - started
        first_calls = connector.api.stats.calls
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        again = sum(len(p.records) for p in connector.read("invoices", cursor))
        idle_calls = connector.api.stats.calls - first_calls
        connector.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        json.dumps(
            {
                "invoices": records,
                "pages": pages,
                "api_calls": first_calls,
                "seconds": round(seconds, 1),
                "records_per_second": round(records / seconds),
                "peak_rss_mib": round(rss_mib, 1),
                "no_change_cycle_calls": idle_calls,
                "no_change_cycle_records": again,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
