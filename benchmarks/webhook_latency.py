"""Latency from a Stripe payment to the QuickBooks payment and the Salesforce account update.

Through ``ledgerlink serve`` with the default schedule: the Stripe sandbox delivers its signed
webhooks to the daemon's ``POST /webhooks/stripe``, which brings the Stripe pulls forward; the
landed news starts the plan (customers, quotes, ledger) and the queued writes start the pushes.

Set-up: the three sandboxes run in this process; a Salesforce Account and its Stripe customer
get N open USD invoices, and ``ledgerlink sync run`` cycles put the customer and the invoices in
QuickBooks before the daemon starts (so each measured event is one payment, not a first sync).
Then, one at a time, an invoice is paid in the Stripe sandbox (card, its charge settled with its
fee at once) and the clock runs until QuickBooks holds one more payment and the Salesforce
Account has changed.

    .venv/bin/python benchmarks/webhook_latency.py --events 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.connector.registry import load_plugin
from ledgerlink.log import configure_logging
from ledgerlink.store import DbSecretStore, create_engine_for, generate_key, upgrade
from ledgerlink.sync.runtime import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_kill as kill
import reliability_pg_restart as restart

TIMEOUT = 180.0
ACCOUNT_WAIT = 15.0
"""Seconds after the QuickBooks payment that the Salesforce Account update is waited for."""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _open_invoices(sandboxes: kill.Sandboxes, secrets: DbSecretStore, count: int) -> list[str]:
    """``count`` open USD invoices of the customer linked to the Salesforce Account."""
    state = sandboxes.running["stripe"].state
    customer = next(
        c["id"]
        for c in state.store("customer").added.values()
        if c and c.get("name") == "Northwind Traders"
    )
    stripe = connect(load_plugin("stripe"), sandboxes.settings("stripe"), secrets)
    try:
        invoices = []
        for n in range(count):
            (written,) = stripe.write(
                [
                    WriteOp(
                        f"latency-invoice-{n}",
                        "invoices",
                        WriteAction.CREATE,
                        {
                            "customer": customer,
                            "currency": "usd",
                            "lines": [{"unit_amount": 10_000 + n, "quantity": 1}],
                        },
                    )
                ]
            )
            invoices.append(str(written.remote_id))
        return invoices
    finally:
        stripe.close()


def _account(sandboxes: kill.Sandboxes) -> dict[str, Any]:
    table = sandboxes.running["salesforce"].org.table("Account")
    created = table.id_for(table.base_count)  # the Account the set-up created
    return dict(table.get(created) or {})


def _payments(sandboxes: kill.Sandboxes) -> int:
    return sum(1 for _ in sandboxes.running["quickbooks"].company.table("Payment").by_id())


def run(events: int, folder: Path) -> list[tuple[float | None, float | None]]:
    """Measure ``events`` payments; return (QuickBooks payment, Salesforce update) seconds."""
    sandboxes = kill.Sandboxes(seed=3, size=3)
    process: subprocess.Popen[bytes] | None = None
    database_url = f"sqlite:///{folder / 'latency.db'}"
    engine = create_engine_for(database_url)
    upgrade(engine)
    try:
        key = generate_key()
        secrets = DbSecretStore(create_engine(database_url), key)
        sandboxes.seed_linked_customer(secrets)
        invoices = _open_invoices(sandboxes, secrets, events)
        port = restart._free_port()
        endpoint = httpx.post(
            f"{sandboxes.settings('stripe')['api_base']}/v1/webhook_endpoints",
            data={"url": f"http://127.0.0.1:{port}/webhooks/stripe"},
            headers={"Authorization": f"Bearer {sandboxes.settings('stripe')['api_key']}"},
        ).json()
        config = folder / "ledgerlink.toml"
        kill._write_config(config, database_url, key, sandboxes)
        text = config.read_text(encoding="utf-8").replace(
            "[connectors.stripe]\n",
            f'[connectors.stripe]\nwebhook_secrets = ["{endpoint["secret"]}"]\n',
        )
        config.write_text(text, encoding="utf-8")
        # Settle the set-up with plain cycles: customers, items and invoices in QuickBooks.
        previous = -1
        for _ in range(kill.MAX_RUNS):
            kill._sync_run(config, crash_at=None, fresh_keys=False)
            rows, settled = kill._settled(database_url)
            if rows == previous and settled:
                break
            previous = rows
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ledgerlink",
                "-c",
                str(config),
                "--log-level",
                "WARNING",
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "serve.log").open("wb"),
        )
        restart._wait(lambda: restart._readyz(port)[0] == 200, 180)
        time.sleep(5)  # let the first runs of every job pass
        billing = sandboxes.running["stripe"].billing
        figures = []
        for invoice in invoices:
            payments, account = _payments(sandboxes), _account(sandboxes)
            started = time.monotonic()
            billing.pay_invoice(invoice, {"payment_method": "pm_card_visa"})
            billing.settle_charges()
            paid_at = updated_at = None
            while time.monotonic() - started < TIMEOUT and paid_at is None:
                if _payments(sandboxes) > payments:
                    paid_at = time.monotonic() - started
                time.sleep(0.02)
            # The Account's open balance comes from the QuickBooks invoice's balance, which the
            # hub reads back on the QuickBooks pull: wait for it a bounded time only.
            while time.monotonic() - started < (paid_at or TIMEOUT) + ACCOUNT_WAIT:
                if _account(sandboxes) != account:
                    updated_at = time.monotonic() - started
                    break
                time.sleep(0.05)
            figures.append((paid_at, updated_at))
            print(
                f"{invoice}: QuickBooks payment {paid_at} s, Salesforce account {updated_at} s",
                flush=True,
            )
        return figures
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        sandboxes.stop()
        engine.dispose()


def main() -> None:
    """Measure and print p50 / p99 per target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args.events, Path(tmp))
    for name, column in (("QuickBooks payment", 0), ("Salesforce account update", 1)):
        values = [f[column] for f in figures if f[column] is not None]
        late = len(figures) - len(values)
        if not values:
            print(f"{name}: none of {len(figures)} within the wait")
            continue
        print(
            f"{name}: p50 {_percentile(values, 0.5):.2f} s, p99 {_percentile(values, 0.99):.2f} s, "
            f"max {max(values):.2f} s over {len(values)} payments ({late} not within the wait)"
        )


if __name__ == "__main__":
    main()
