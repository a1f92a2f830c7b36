"""Two daemons on one PostgreSQL database: a stream is pulled by one replica at a time."""

from __future__ import annotations

import pytest
from daemon_testing import DaemonFactory, make_config, wait_until

from ledgerlink.daemon import Daemon


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
