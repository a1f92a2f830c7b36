"""Benchmark: upsert of N accounts by external id through sObject Collections.

Prints the API calls the sandbox counted (goal for 10,000: ceil(10,000 / 200) = 50), the time
and the failures; then repeats the same writes to show they land on the same records.

    .venv/bin/python benchmarks/salesforce_upsert.py --accounts 10000
"""

from __future__ import annotations

import argparse
import time

from salesforce_common import SandboxProcess, connect

from ledgerlink.connector.protocol import WriteAction, WriteOp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    sandbox = SandboxProcess(100)
    conn = connect(sandbox)
    ops = [
        WriteOp(
            f"outbox-{i}",
            "Account",
            WriteAction.UPSERT,
            {"Name": f"Customer {i} GmbH", "BillingCountry": "DE"},
            external_id=f"ll-{i:08d}",
        )
        for i in range(args.accounts)
    ]
    try:
        conn.client.auth.session()
        for attempt in ("first", "repeat"):
            sandbox.reset()
            started = time.perf_counter()
            results = list(conn.write(ops))
            calls = sandbox.requests()
            failed = sum(1 for r in results if not r.ok)
            created = sum(1 for r in results if r.response and r.response.get("created"))
            print(
                f"{attempt} upsert: {len(results)} accounts, {calls} API calls "
                f"(goal <= {-(-args.accounts // 200)}), {created} created, {failed} failed, "
                f"{time.perf_counter() - started:.1f} s"
            )
    finally:
        conn.close()
        sandbox.stop()


if __name__ == "__main__":
    main()
