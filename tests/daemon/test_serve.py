"""Tests of `ledgerlink serve` as operators run it: start-up refusals and SIGTERM mid-cycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_testing import DaemonFactory, make_config, wait_until
from ledgerlink_slow import SlowConnector, SlowSettings
from sqlalchemy import func, select

from ledgerlink.daemon import DaemonStartError
from ledgerlink.store import (
    SourceRecord,
    Store,
    create_engine_for,
    current_revision,
    head_revision,
    upgrade,
)
from ledgerlink.sync import pull_stream

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PAGES, PAGE_SIZE = 40, 5


def test_a_second_replica_on_sqlite_refuses_to_start(
    tmp_path: Path, start_daemon: DaemonFactory
) -> None:
    """A second daemon on the same SQLite file refuses with a message that points to PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    start_daemon(make_config(url), serve_http=False, migrate=True)
    with pytest.raises(DaemonStartError, match="SQLite supports one replica only"):
        start_daemon(make_config(url), serve_http=False)


def test_start_refuses_a_database_behind_migrations_unless_asked_to_migrate(
    empty_database_url: str, start_daemon: DaemonFactory
) -> None:
    """A database not at head stops the start with the fix named; --migrate brings it to head."""
    with pytest.raises(DaemonStartError, match="ledgerlink db upgrade"):
        start_daemon(make_config(empty_database_url), serve_http=False)
    daemon = start_daemon(make_config(empty_database_url), serve_http=False, migrate=True)
    assert current_revision(daemon.engine) == head_revision()


def landed(url: str) -> tuple[int, int]:
    """Return (records landed, position of the stored cursor) of the slow ticks stream."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(SourceRecord).where(SourceRecord.system == "slow")
            ).scalar_one()
        cursor = Store(engine).load_cursor("slow", "ticks")
        return count, int(cursor.state.get("next", 0))
    finally:
        engine.dispose()


def test_sigterm_mid_cycle_exits_0_with_whole_pages_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    """SIGTERM during a pull exits 0 within 30 s, leaves only whole pages with their cursor, and a new run lands exactly the rest."""
    database = tmp_path / "serve.db"
    url = f"sqlite:///{database}"
    (tmp_path / "ledgerlink.toml").write_text(
        f'[database]\nurl = "{url}"\n[logging]\nformat = "json"\n'
        f"[connectors.slow]\npages = {PAGES}\npage_size = {PAGE_SIZE}\ndelay_seconds = 0.2\n",
        encoding="utf-8",
    )
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINK_")}
    env["PYTHONPATH"] = str(FIXTURES)
    process = subprocess.Popen(
        [sys.executable, "-m", "ledgerlink", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: landed(url)[0] >= 2 * PAGE_SIZE, timeout=120)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "daemon.stopping" in events
    assert events[-1] == "daemon.stopped"
    count, position = landed(url)
    assert count == position, "records and cursor were stored together"
    assert count % PAGE_SIZE == 0, "only whole pages were landed"
    assert 0 < count < PAGES * PAGE_SIZE, "the signal arrived mid-cycle"

    engine = create_engine_for(url)
    try:
        connector = SlowConnector(SlowSettings(pages=PAGES, page_size=PAGE_SIZE))
        rest = pull_stream(Store(engine), connector, "ticks")
    finally:
        engine.dispose()
    assert rest.ok
    assert (rest.read, rest.inserted, rest.updated) == (PAGES * PAGE_SIZE - count,) * 2 + (0,)
    assert landed(url) == (PAGES * PAGE_SIZE, PAGES * PAGE_SIZE)
