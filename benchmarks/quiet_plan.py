"""Quiet passes on a kept store: what matching and planning cost when nothing changed.

A long-running ledgerlink (the daemon, ``run_cycle`` with a ``CycleCache``) keeps a matcher and
the planners' worlds between passes; a pass with nothing new should cost next to nothing. This
copies a store left by a full-cycle run (``full_cycle.py --keep FILE``), then on the copy runs
the kept matcher and ``plan_all`` ``--runs`` times with one ``CycleCache``, as passes do, and
prints each run's wall time (the first reads everything; the later ones are quiet). It also
prints what the ledger plan of the last run looked at again and what it counted as waiting.
``--profile FILE`` writes a cProfile of the last run's match and plan.

    .venv/bin/python benchmarks/full_cycle.py --companies 10000 --invoices 100000 --keep /tmp/k10.db
    .venv/bin/python benchmarks/quiet_plan.py /tmp/k10.db

Without a store it first makes one with ``full_cycle.py --companies 1000 --invoices 10000``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ledgerlink.cli.demo import DEMO_RATES
from ledgerlink.log import configure_logging
from ledgerlink.mapping import load_mappings
from ledgerlink.store import Store
from ledgerlink.store.db import create_engine_for
from ledgerlink.sync.cycle import CycleCache, plan_all
from ledgerlink.sync.ledger import LedgerOptions


def main() -> int:
    """Run the quiet passes and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "store", nargs="?", help="SQLite file left by full_cycle.py --keep (default: make one)"
    )
    parser.add_argument("--runs", type=int, default=4, help="match and plan runs (default 4)")
    parser.add_argument(
        "--profile", help="write a cProfile of the last run (match and plan) to this file"
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        if args.store is None:
            args.store = str(Path(tmp) / "kept.db")
            print("making a store: full_cycle.py --companies 1000 --invoices 10000", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("full_cycle.py")),
                    "--companies",
                    "1000",
                    "--invoices",
                    "10000",
                    "--keep",
                    args.store,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        copy = Path(tmp) / "store.db"
        shutil.copyfile(args.store, copy)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(args.store + suffix):
                shutil.copyfile(args.store + suffix, str(copy) + suffix)
        engine = create_engine_for(f"sqlite:///{copy}")
        store = Store(engine)
        mappings = load_mappings()
        ledger = LedgerOptions(rates={c: Decimal(r) for c, r in DEMO_RATES.items()})
        cache = CycleCache()
        now = datetime.now(UTC)
        print(f"quiet passes on a copy of {args.store}; load {os.getloadavg()[0]:.2f}")
        for run in range(args.runs):
            profiler = cProfile.Profile() if args.profile and run == args.runs - 1 else None
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            cache.matcher_for(store, mappings).run(now=now)
            matched = time.perf_counter() - started
            started = time.perf_counter()
            planned = plan_all(
                store,
                mappings,
                now=now,
                ledger=ledger,
                mapped=cache.mapped,
                kept_ledger=cache.ledger,
                kept_quotes=cache.quotes,
            )
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            seconds = time.perf_counter() - started
            print(
                f"run {run + 1}: match {matched:.2f} s, plan {seconds:.2f} s (customers "
                f"{planned.plan.seconds:.2f} s, ledger {planned.ledger.seconds:.2f} s), "
                f"writes wanted {len(planned.plan.ops) + len(planned.quotes.ops) + len(planned.ledger.documents)}"
            )
        report = planned.ledger
        print(
            f"last ledger plan: {report.posted} documents looked at and found posted, "
            f"{report.unchanged} Stripe objects not looked at again, waiting {dict(report.waiting)}"
        )
        print(f"load at the end {os.getloadavg()[0]:.2f}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
