"""Fixtures of the daemon tests: the slow test connector and daemons that always stop."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from daemon_testing import DaemonFactory  # noqa: E402
from ledgerlink_slow import SlowPlugin  # noqa: E402

from ledgerlink.config import LedgerlinkConfig  # noqa: E402
from ledgerlink.daemon import Daemon, DaemonOptions  # noqa: E402


@pytest.fixture
def slow_plugin() -> SlowPlugin:
    """A fresh instance of the slow connector's plugin."""
    return SlowPlugin()


@pytest.fixture
def start_daemon(slow_plugin: SlowPlugin) -> Iterator[DaemonFactory]:
    """Start daemons with the slow plugin on loopback (port 0); shut them all down afterwards."""
    started: list[Daemon] = []

    def start(
        config: LedgerlinkConfig,
        *,
        serve_http: bool = True,
        clock: Callable[[], datetime] | None = None,
        **options: Any,
    ) -> Daemon:
        options.setdefault("port", 0)
        options.setdefault("first_run_within", 0.0)
        options.setdefault("shutdown_grace_seconds", 10.0)
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        daemon = Daemon(config, DaemonOptions(**options), plugins={"slow": slow_plugin}, **extra)
        started.append(daemon)
        daemon.start(serve_http=serve_http)
        return daemon

    yield start
    for daemon in started:
        daemon.shutdown()
