"""What /status and /metrics tell operators about waiting work: outbox, review queue, unmatched, budgets, revenue."""

from __future__ import annotations

from datetime import timedelta

import httpx
from daemon_testing import DaemonFactory, make_config, wait_until

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.daemon import Daemon
from ledgerlink.store import Store, utcnow
from ledgerlink.sync.outbox import PlannedWrite, enqueue, idempotency_key

SECRET_NAME = "Acme Hidden Holdings"


def queue(store: Store, count: int, *, minutes_ago: float) -> None:
    """Queue ``count`` Stripe customer creations made ``minutes_ago``."""
    writes = []
    for index in range(count):
        payload = {"name": f"{SECRET_NAME} {index}", "golden_customer_id": f"c{index}"}
        key = idempotency_key("stripe", "customers", "create", f"c{index}", payload)
        op = WriteOp(key, "customers", WriteAction.CREATE, payload)
        writes.append(PlannedWrite("stripe", op, "customer", f"c{index}"))
    with store.engine.begin() as conn:
        enqueue(conn, writes, now=utcnow() - timedelta(minutes=minutes_ago))


def test_status_and_metrics_show_outbox_depth_and_age_without_contents(
    store: Store, database_url: str, start_daemon: DaemonFactory
) -> None:
    """Pending rows per target and the oldest row's age appear on /status and /metrics; their payloads never do."""
    queue(store, 3, minutes_ago=10)
    daemon = start_daemon(make_config(database_url))
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30) as http:
        status = http.get("/status")
        metrics = http.get("/metrics").text
    work = status.json()["work"]
    (stripe,) = work["outbox"]
    assert stripe["target"] == "stripe"
    assert stripe["rows"] == {"pending": 3, "in_flight": 0, "failed": 0}
    assert 590 < stripe["oldest_pending_age_seconds"] < 3600
    assert work["review_queue_records"] == 0
    assert 'ledgerlink_outbox_rows{status="pending",target="stripe"} 3.0' in metrics
    assert 'ledgerlink_outbox_oldest_pending_age_seconds{target="stripe"}' in metrics
    assert "ledgerlink_review_queue_records 0.0" in metrics
    for body in (status.text, metrics):
        assert SECRET_NAME not in body


def outcome(daemon: Daemon, job: str) -> str | None:
    return next((s.last_outcome for s in daemon.tracker.snapshot() if s.name == job), None)


def test_match_and_revenue_jobs_run_on_their_schedule_and_report(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """With their intervals set, match and revenue run as singleton jobs; the revenue refresh shows on /status."""
    config = make_config(
        database_url,
        daemon={
            "match_interval_seconds": 300,
            "revenue_interval_seconds": 300,
            "plan_interval_seconds": 0,
            "push_interval_seconds": 0,
        },
    )
    daemon = start_daemon(config, serve_http=False)
    wait_until(lambda: outcome(daemon, "match") == "ok" and outcome(daemon, "revenue") == "ok", 60)
    kinds = {job.name: job.kind for job in daemon.scheduler.jobs}
    assert kinds["match"] == "match"
    assert kinds["revenue"] == "revenue"
    assert "push:slow" not in kinds, "a connector without writers gets no push job"
    document = daemon.status()
    assert document["work"]["revenue"]["refreshed_at"] is not None
    assert document["quota"]["budgets"] == []
