"""Fuzzing for minutes: the suite's property tests on hostile input, with many more examples.

The normal suite runs each of these with 60 to 150 generated cases. This runs the same tests
with ``--examples`` cases each (``LEDGERLINK_FUZZ_EXAMPLES``) and prints per test file
how long it ran and whether it held:

* vendor JSON for every mapped object with fields removed, nulled, retyped, 1 MB strings,
  odd unicode, edge amounts and unknown currencies (an entity or a quarantine reason);
* raw bytes and mutations of the shipped mapping files and of config files (located problems,
  exit 2, never another exception);
* raw bytes and mutated deliveries at the daemon's Stripe webhook endpoint (never a 500, never
  stored unless signed);
* SOQL and QuickBooks query injection in every looked-up field (exactly one record found).

    .venv/bin/python benchmarks/reliability_fuzz.py                 # 5,000 examples per test
    .venv/bin/python benchmarks/reliability_fuzz.py --examples 500

A failing case is printed by hypothesis with the input that broke it, and the script exits 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/reliability/test_vendor_payloads.py",
    "tests/reliability/test_bad_files.py",
    "tests/security/test_webhook_attacks.py",
    "tests/security/test_query_injection.py",
]


def main(argv: list[str] | None = None) -> int:
    """Run each fuzzed test file with the number of examples asked; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="cases per property test")
    args = parser.parse_args(argv)
    env = {**os.environ, "LEDGERLINK_FUZZ_EXAMPLES": str(args.examples)}
    print("| test file | examples per property | result | seconds |\n| --- | ---: | --- | ---: |")
    failed = False
    for test in TESTS:
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                test,
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                "--timeout=0",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"| `{test}` | {args.examples:,} | {summary} | {seconds:,.0f} |", flush=True)
        if result.returncode != 0:
            failed = True
            print(result.stdout[-4000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
