"""``ledgerlink serve``: run the daemon until SIGTERM or SIGINT, then stop cleanly.

The HTTP server runs on a thread; the main thread only waits for a signal, so a signal is
handled at once: no new job starts, running pulls finish the page they are on, locks and
connections are released, and the process exits 0 within the grace period (1 when a job
did not finish in time).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import SecretStr

from ledgerlink.cli._common import EXIT_CONFIG, EXIT_FAILED, fail, state

__all__ = ["serve"]

STATUS_TOKEN_ENV = "LEDGERLINK_STATUS_TOKEN"  # noqa: S105 - the variable's name, not a secret


def _status_token(path: Path | None) -> SecretStr | None:
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"cannot read the status token file {path}: {exc.strerror}", EXIT_CONFIG)
        return SecretStr(value) if value else None
    value = os.environ.get(STATUS_TOKEN_ENV, "").strip()
    return SecretStr(value) if value else None


def serve(
    ctx: typer.Context,
    *,
    host: Annotated[str, typer.Option(help="Address to bind the HTTP server to.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="TCP port of /healthz, /readyz, /metrics, /status and webhooks.")
    ] = 8080,
    workers: Annotated[
        int, typer.Option(help="Jobs running at once in this replica.", min=1, max=64)
    ] = 4,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply pending database migrations at start.")
    ] = False,
    status_token_file: Annotated[
        Path | None,
        typer.Option(
            help=f"File holding the bearer token /status requires (else ${STATUS_TOKEN_ENV}).",
            dir_okay=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(help="Seconds running jobs get to finish on SIGTERM.", min=1, max=300),
    ] = 25.0,
) -> None:
    """Run the sync daemon: scheduled pulls, health and metrics endpoints, webhook intake.

    Every configured connector's streams are pulled on their interval (sync.interval_seconds,
    or interval_seconds in the connector's table). Several replicas may share one PostgreSQL
    database; on SQLite only one may run.
    """
    from ledgerlink.daemon import Daemon, DaemonOptions, DaemonStartError

    config = state(ctx).config()
    options = DaemonOptions(
        host=host,
        port=port,
        workers=workers,
        migrate=migrate,
        status_token=_status_token(status_token_file),
        shutdown_grace_seconds=grace,
    )
    daemon = Daemon(config, options)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set() and signum == signal.SIGINT:
            os._exit(EXIT_FAILED)  # a second Ctrl-C: the operator wants out now
        stopping.set()
        daemon.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            daemon.start()
        except DaemonStartError as exc:
            fail(str(exc))
        while not stopping.wait(1.0):
            pass
        clean = daemon.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        sys.stderr.flush()
        # Threads of unfinished jobs would keep the interpreter alive past the grace period.
        os._exit(EXIT_FAILED)
