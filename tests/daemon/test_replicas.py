"""Replicas on one PostgreSQL database: singleton pulls, shared outbox, a replica killed mid-push."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from daemon_testing import DaemonFactory, make_config, wait_until
from sqlalchemy import func, select

from ledgerlink.connector import SandboxOptions, load_plugin
from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.connector.sandbox import Fault
from ledgerlink.daemon import Daemon
from ledgerlink.store import OutboxStatus, SourceRecord, Store
from ledgerlink.sync.outbox import OUTBOX, PlannedWrite, count_by_status, enqueue, idempotency_key

pytestmark = pytest.mark.slow


def outcome(daemon: Daemon, job: str) -> str | None:
    return next(s.last_outcome for s in daemon.tracker.snapshot() if s.name == job)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_daemons_on_postgresql_pull_a_stream_once(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """Two replicas fire the same pull together: one reads every page, the other skips it as locked."""
    config = make_config(database_url, pages=6, page_size=4, delay_seconds=1.0)
    first = start_daemon(config, serve_http=False)
    second = start_daemon(config, serve_http=False)
    job = "pull:slow:ticks"
    wait_until(lambda: None not in (outcome(first, job), outcome(second, job)), timeout=60)
    assert sorted([outcome(first, job), outcome(second, job)]) == ["locked", "ok"]
    pages = [d.connectors["slow"].pages_read for d in (first, second)]  # type: ignore[attr-defined]
    assert sorted(pages) == [0, 6]
    states = {s.stream: s for s in first.store.sync_states()}
    assert states["ticks"].cursor["state"]["next"] == 24


# -- three `ledgerlink serve` processes, one killed with SIGKILL mid-push ----------------------

WRITES = 300


def serve_config(directory: Path, database_url: str, stripe: dict[str, Any]) -> Path:
    """Write a ledgerlink.toml: the Stripe sandbox, quick pushes and short leases."""
    path = directory / "ledgerlink.toml"
    path.write_text(
        f"""[database]
url = {json.dumps(database_url)}
[logging]
format = "json"
[daemon]
push_interval_seconds = 5
push_lease_seconds = 5
match_interval_seconds = 0
plan_interval_seconds = 0
revenue_interval_seconds = 0
[connectors.stripe]
api_key = {json.dumps(stripe["api_key"])}
api_base = {json.dumps(stripe["api_base"])}
interval_seconds = 5
""",
        encoding="utf-8",
    )
    return path


def enqueue_customers(store: Store) -> None:
    """Queue WRITES Stripe customer creations, each with its deterministic idempotency key."""
    writes = []
    for index in range(WRITES):
        payload = {"name": f"Replica Test {index}", "golden_customer_id": f"g{index:04d}"}
        key = idempotency_key("stripe", "customers", "create", f"g{index:04d}", payload)
        writes.append(
            PlannedWrite(
                "stripe",
                WriteOp(key, "customers", WriteAction.CREATE, payload),
                "customer",
                f"g{index:04d}",
            )
        )
    with store.engine.begin() as conn:
        assert enqueue(conn, writes) == WRITES


def outbox_counts(store: Store) -> dict[str, int]:
    return count_by_status(store.engine, target="stripe")


def in_flight_pids(store: Store) -> set[int]:
    """Process ids of the workers holding outbox rows in flight right now."""
    with store.engine.connect() as conn:
        owners = conn.execute(
            select(OUTBOX.c.claimed_by).where(OUTBOX.c.status == OutboxStatus.IN_FLIGHT.value)
        ).scalars()
        return {int(owner.split("#", 1)[0].rsplit(":", 1)[1]) for owner in owners if owner}


def landed_customers(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(SourceRecord)
                .where(
                    SourceRecord.system == "stripe",
                    SourceRecord.object == "customers",
                    SourceRecord.deleted_at.is_(None),  # type: ignore[union-attr]
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_replicas_survive_a_sigkill_mid_push_with_every_write_made_once(
    database_url: str, store: Store, tmp_path: Path
) -> None:
    """Three serve processes push 300 Stripe writes; one is SIGKILLed holding rows in flight; each customer exists exactly once and the survivors finish pushing and pulling."""
    sandbox = load_plugin("stripe").start_sandbox(SandboxOptions(seed=11, size=150))
    # Slow answers keep rows in flight long enough to be caught mid-send.
    sandbox.faults.add(Fault(kind="delay", delay=0.03, method="POST"))
    processes: list[subprocess.Popen[str]] = []
    try:
        enqueue_customers(store)
        config = serve_config(tmp_path, database_url, dict(sandbox.connector_settings()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
        serve = [sys.executable, "-m", "ledgerlink", "--config", str(config), "serve"]
        # Logs go to files: a full stderr pipe would block a replica mid-run.
        logs = [(tmp_path / f"serve{n}.log").open("w", encoding="utf-8") for n in range(3)]
        processes.extend(
            subprocess.Popen(
                [*serve, "--port", "0"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
            for log in logs
        )
        pids = {p.pid: p for p in processes}
        wait_until(lambda: outbox_counts(store).get("done", 0) >= 30, timeout=60)
        victims: set[int] = set()

        def caught() -> bool:
            victims.update(in_flight_pids(store) & set(pids))
            return bool(victims)

        wait_until(caught, timeout=30)
        victim = min(victims)
        os.kill(victim, signal.SIGKILL)
        pids[victim].wait(timeout=10)
        killed_at = datetime.now(UTC)
        left = WRITES - outbox_counts(store).get("done", 0)
        assert left > 0, "the replica was killed while work remained"

        wait_until(lambda: outbox_counts(store) == {"done": WRITES}, timeout=60)
        created = [c for c in sandbox.state.store("customer").added.values() if c is not None]
        golden = Counter(c.get("metadata", {}).get("ledgerlink_customer_id") for c in created)
        expected = {f"g{index:04d}" for index in range(WRITES)}
        assert set(golden) == expected
        assert set(golden.values()) == {1}, "no customer was created twice"
        # The survivors keep pulling: every customer, seeded and new, lands with its cursor.
        total = sandbox.state.store("customer").seeded_count + len(created)
        wait_until(lambda: landed_customers(store) == total, timeout=60)
        states = {s.stream: s for s in store.sync_states() if s.connector == "stripe"}
        assert states["customers"].last_success_at is not None
        assert states["customers"].last_success_at > killed_at
        assert states["customers"].last_error is None
        survivors = [p for p in processes if p.pid != victim]
        for process in survivors:
            process.send_signal(signal.SIGTERM)
        for process in survivors:
            process.wait(timeout=40)
        for process, log in zip(processes, logs, strict=True):
            log.close()
            if process.pid != victim:
                text = Path(log.name).read_text(encoding="utf-8")
                assert process.returncode == 0, text[-2000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        sandbox.stop()
