"""Tests of the daemon's HTTP endpoints over real loopback sockets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from daemon_testing import DaemonFactory, make_config, wait_until
from ledgerlink_slow import SlowPlugin
from pydantic import SecretStr

from ledgerlink.daemon import Daemon
from ledgerlink.daemon.status import ScheduledStream, check_readiness
from ledgerlink.store import Store, create_engine_for, downgrade

SECRET = "sk_live_TOPSECRET_123456"
TOKEN = "status-token-abcdef"


def client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30)


def pulled(daemon: Daemon) -> bool:
    return all(s.runs >= 1 for s in daemon.tracker.snapshot())


def test_healthy_and_ready_once_every_stream_pulled(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """/healthz is 200 while the scheduler lives; /readyz is 200 once the database and streams are fine."""
    daemon = start_daemon(make_config(database_url, pages=2, page_size=3))
    wait_until(lambda: pulled(daemon))
    with client(daemon) as http:
        health = http.get("/healthz")
        assert (health.status_code, health.json()["alive"]) == (200, True)
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert [c["name"] for c in ready.json()["checks"]] == ["database", "migrations", "streams"]
        status = http.get("/status").json()
    streams = {s["stream"]: s for s in status["streams"]}
    assert streams["ticks"]["last_success_at"] is not None
    assert streams["ticks"]["lag_seconds"] > 0  # cursor time is in the past
    assert {j["name"] for j in status["jobs"]} == {"pull:slow:ticks", "pull:slow:tocks"}


def test_readyz_is_503_and_names_the_streams_without_recent_success(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """A stream without success past its threshold makes /readyz 503 with the stream named."""
    now = [datetime.now(UTC)]
    daemon = start_daemon(make_config(database_url, fail=True), clock=lambda: now[0])
    wait_until(lambda: pulled(daemon))
    with client(daemon) as http:
        assert http.get("/readyz").status_code == 200  # within the threshold after start
        now[0] += timedelta(hours=1)
        ready = http.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["failing"] == ["streams"]
        detail = next(c["detail"] for c in body["checks"] if c["name"] == "streams")
        assert "slow.ticks" in detail
        assert http.get("/healthz").status_code == 200  # not ready is not dead


def test_readiness_names_migrations_not_at_head(database_url: str) -> None:
    """A database behind the code's migrations fails the migrations check."""
    engine = create_engine_for(database_url)
    try:
        downgrade(engine, "base")
        now = datetime.now(UTC)
        readiness = check_readiness(
            Store(engine), [ScheduledStream("slow", "ticks", 60, 180)], started_at=now, now=now
        )
    finally:
        engine.dispose()
    assert not readiness.ok
    failing = {c.name: c.detail for c in readiness.checks if not c.ok}
    assert list(failing) == ["migrations"]
    assert "database at None" in failing["migrations"]


def test_readiness_says_when_the_database_is_unreachable() -> None:
    """An unreachable database fails the database check, and the body says so."""
    engine = create_engine_for("postgresql+psycopg://ledgerlink@127.0.0.1:1/none?connect_timeout=2")
    try:
        now = datetime.now(UTC)
        readiness = check_readiness(Store(engine), [], started_at=now, now=now)
    finally:
        engine.dispose()
    assert readiness.to_json()["failing"] == ["database", "migrations"]


def test_metrics_expose_records_cycles_freshness_and_build(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """/metrics serves records read and landed, cycle durations, last success, lag and build info."""
    daemon = start_daemon(make_config(database_url, pages=2, page_size=3))
    wait_until(lambda: pulled(daemon))
    with client(daemon) as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for expected in (
        'ledgerlink_records_read_total{connector="slow",stream="ticks"}',
        'ledgerlink_records_landed_total{connector="slow",outcome="inserted",stream="ticks"}',
        'ledgerlink_job_duration_seconds_bucket{job="pull:slow:ticks",kind="pull"',
        'ledgerlink_job_runs_total{job="pull:slow:ticks",kind="pull",outcome="ok"}',
        'ledgerlink_stream_last_success_timestamp_seconds{connector="slow",stream="ticks"}',
        'ledgerlink_stream_lag_seconds{connector="slow",stream="ticks"}',
        "ledgerlink_build_info{",
        "ledgerlink_ready 1.0",
    ):
        assert expected in text, expected


def test_status_requires_the_bearer_token_when_one_is_set(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """/status answers 401 without the configured bearer token and 200 with it."""
    daemon = start_daemon(make_config(database_url), status_token=SecretStr(TOKEN))
    with client(daemon) as http:
        assert http.get("/status").status_code == 401
        assert http.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = http.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.json()["database"] == {"dialect": daemon.store.dialect}


def test_no_endpoint_shows_secrets_or_customer_data(
    database_url: str, start_daemon: DaemonFactory
) -> None:
    """Secrets, the status token and record contents (even inside errors) never appear on any endpoint."""
    daemon = start_daemon(
        make_config(database_url, api_key=SECRET, fail=True), status_token=SecretStr(TOKEN)
    )
    wait_until(lambda: pulled(daemon))
    with client(daemon) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bodies = [
            http.get(path, headers=auth).text
            for path in ("/healthz", "/readyz", "/metrics", "/status")
        ]
    status = json.loads(bodies[-1])
    ticks = next(s for s in status["streams"] if s["stream"] == "ticks")
    assert (ticks["failing"], ticks["last_error_kind"]) == (True, "retryable")
    for body in bodies:
        assert SECRET not in body
        assert TOKEN not in body
        assert "Customer Secretive" not in body
        assert "postgresql+psycopg://" not in body
        assert "sqlite:///" not in body


def test_webhook_goes_to_the_connector_handler_and_pulls_early(
    database_url: str, start_daemon: DaemonFactory, slow_plugin: SlowPlugin
) -> None:
    """POST /webhooks/NAME reaches the connector's handler, answers its status, and brings its pulls forward."""
    daemon = start_daemon(make_config(database_url, interval_seconds=3600))
    wait_until(lambda: pulled(daemon))
    wait_until(lambda: daemon.tracker.running == 0)
    with client(daemon) as http:
        accepted = http.post("/webhooks/slow", content=b'{"ok": true}')
        assert (accepted.status_code, accepted.json()) == (200, {"outcome": "accepted"})
        assert slow_plugin.intakes[0].received == [b'{"ok": true}']
        wait_until(lambda: all(s.runs >= 2 for s in daemon.tracker.snapshot()))

        rejected = http.post("/webhooks/slow", content=b"{}")
        assert (rejected.status_code, rejected.json()) == (400, {"outcome": "rejected"})
        assert http.post("/webhooks/nobody", content=b"{}").status_code == 404
        huge = http.post("/webhooks/slow", content=b"x" * (1024 * 1024 + 1))
        assert huge.status_code == 413
    assert len(slow_plugin.intakes[0].received) == 2
