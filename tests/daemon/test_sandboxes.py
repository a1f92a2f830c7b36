"""The daemon against a built-in connector's sandbox over loopback: every stream pulled, ready, no secret shown."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from daemon_testing import wait_until

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.connector import Sandbox, SandboxOptions, load_plugin
from ledgerlink.daemon import Daemon, DaemonOptions


@pytest.fixture
def stripe_sandbox() -> Iterator[Sandbox]:
    """The Stripe sandbox with a few seeded customers."""
    sandbox = load_plugin("stripe").start_sandbox(SandboxOptions(seed=3, size=5))
    yield sandbox
    sandbox.stop()


def test_daemon_pulls_every_stripe_stream_from_the_sandbox_and_becomes_ready(
    database_url: str, stripe_sandbox: Sandbox
) -> None:
    """With the Stripe sandbox configured, every stream is pulled, /readyz is 200 and the API key shows nowhere."""
    settings = stripe_sandbox.connector_settings()
    config = LedgerlinkConfig(database={"url": database_url}, connectors={"stripe": settings})
    daemon = Daemon(config, DaemonOptions(port=0, first_run_within=0, workers=2))
    daemon.start()
    try:
        wait_until(
            lambda: all(s.last_outcome == "ok" for s in daemon.tracker.snapshot()), timeout=60
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30) as http:
            ready = http.get("/readyz")
            status = http.get("/status")
            metrics = http.get("/metrics").text
    finally:
        assert daemon.shutdown()
    assert ready.status_code == 200, ready.text
    streams = {s["stream"] for s in status.json()["streams"] if s["last_success_at"]}
    assert {"customers", "invoices", "charges", "payouts"} <= streams
    assert stripe_sandbox.faults.request_count > 0
    for body in (ready.text, status.text, metrics):
        assert str(settings["api_key"]) not in body
