"""The daemon as one object: store, connections, scheduled jobs, HTTP server, clean stop.

:class:`Daemon` is what ``ledgerlink serve`` runs. :meth:`Daemon.start` refuses a second
replica on SQLite, checks (or applies, with ``migrate``) the migrations, connects every
configured connector, schedules the jobs of every registered kind and serves HTTP on a thread.
:meth:`Daemon.shutdown` stops taking new work, lets running jobs finish their current unit
(a pull finishes its page), releases locks and connections, all within a grace period.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import uvicorn
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from ledgerlink import __version__
from ledgerlink.config import LedgerlinkConfig
from ledgerlink.connector.errors import ConfigurationError
from ledgerlink.connector.protocol import Connector, ConnectorPlugin
from ledgerlink.connector.registry import load_plugin
from ledgerlink.daemon import cycle  # noqa: F401 - registers the match, plan, push and revenue jobs
from ledgerlink.daemon.health import HealthProbe, StoreHealth, party_objects, update_health_gauges
from ledgerlink.daemon.http import WebhookAnswer, create_app
from ledgerlink.daemon.jobs import (
    Job,
    JobContext,
    JobReport,
    StopSignal,
    build_jobs,
    connector_settings_without_schedule,
)
from ledgerlink.daemon.locks import JobLocks, ReplicaGuard, advisory_key, locks_for
from ledgerlink.daemon.quota import BudgetUsage, QuotaGate, default_budgets
from ledgerlink.daemon.scheduler import JobRunner, JobScheduler
from ledgerlink.daemon.status import (
    JobTracker,
    Readiness,
    ScheduledStream,
    check_readiness,
    update_stream_gauges,
)
from ledgerlink.log import get_logger, register_secret
from ledgerlink.store import Store, create_engine_for, current_revision, head_revision, upgrade
from ledgerlink.sync.runtime import connect, secret_store_for

__all__ = ["Daemon", "DaemonOptions", "DaemonStartError"]

_log = get_logger(component="daemon")

CHAIN_WITHIN = 0.2
"""Seconds within which a webhook's landed news starts the plan, and queued writes the pushes."""
CHAIN_SECONDS = 60.0
"""How long after a webhook the pushes that wrote something bring their target's pulls forward."""


def _now() -> datetime:
    return datetime.now(UTC)


class DaemonStartError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """How the daemon runs (command-line options of ``ledgerlink serve``).

    Attributes:
        host: address the HTTP server binds.
        port: TCP port, 0 for any free port (see :attr:`Daemon.port`).
        workers: jobs running at once in this replica.
        shutdown_grace_seconds: how long running jobs may take to finish on stop.
        first_run_within: first runs start at random within this many seconds.
        jitter_fraction: random delay of each run, as a fraction of its interval.
        status_token: bearer token ``/status`` requires (None: open).
        migrate: apply pending migrations at start instead of refusing to start.
        webhook_pull_within: a webhook brings the connector's pulls forward to this many seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 4
    shutdown_grace_seconds: float = 25.0
    first_run_within: float = 5.0
    jitter_fraction: float = 0.1
    status_token: SecretStr | None = None
    migrate: bool = False
    webhook_pull_within: float = 2.0


class Daemon:
    """The ``ledgerlink serve`` process: scheduled jobs plus the HTTP endpoints.

    Args:
        config: the validated configuration.
        options: run options.
        plugins: connector plugins by name (default: loaded from entry points for every
            ``[connectors.NAME]`` table).
        clock: current time (injectable for tests).
    """

    def __init__(
        self,
        config: LedgerlinkConfig,
        options: DaemonOptions | None = None,
        *,
        plugins: Mapping[str, ConnectorPlugin] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.config = config
        self.options = options or DaemonOptions()
        self.clock = clock
        self.engine = create_engine_for(config.database.url)
        self.store = Store(self.engine)
        self.stop_signal = StopSignal()
        self.tracker = JobTracker()
        self.locks: JobLocks = locks_for(self.engine)
        self.quota = QuotaGate(
            self.engine,
            default_budgets(config),
            reserve=config.daemon.quota_reserve,
            clock=clock,
        )
        self.health = HealthProbe(self.engine, self._party_objects, clock=clock)
        self._parties: dict[str, list[str]] | None = None
        self.runner = JobRunner(
            self.locks, self.tracker, self.stop_signal, clock=clock, gate=self.quota
        )
        self.scheduler = JobScheduler(
            self.runner,
            workers=self.options.workers,
            jitter_fraction=self.options.jitter_fraction,
            first_run_within=self.options.first_run_within,
        )
        self.started_at = clock()
        self.connectors: dict[str, Connector] = {}
        self._plugins = dict(plugins) if plugins is not None else None
        self._webhooks: dict[str, Any] = {}
        self._webhook_news: set[str] = set()
        self._chain_until = 0.0
        self._scheduled: list[ScheduledStream] = []
        self._guard = ReplicaGuard(self.engine)
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._clean: bool | None = None
        if self.options.status_token is not None:
            register_secret(self.options.status_token.get_secret_value())

    def __repr__(self) -> str:
        return f"Daemon(dialect={self.store.dialect!r}, jobs={len(self.scheduler.jobs)})"

    # -- start ------------------------------------------------------------------------------

    def start(self, *, serve_http: bool = True) -> None:
        """Start: replica guard, migrations, connections, jobs, then the HTTP server.

        Args:
            serve_http: also start the HTTP server (tests of the scheduler alone pass False).

        Raises:
            DaemonStartError: another replica on SQLite, database not at head, the HTTP port
                cannot be bound.
            ConfigurationError: a connector is unknown or its settings are invalid.
            ConfigError: a schedule setting is invalid.
        """
        from ledgerlink.daemon.locks import ReplicaRefusedError

        try:
            self._guard.acquire()
        except ReplicaRefusedError as exc:
            raise DaemonStartError(str(exc)) from None
        try:
            self._prepare_database()
            self._connect_all()
            jobs = self._chain_after_webhooks(
                build_jobs(
                    JobContext(config=self.config, store=self.store, connectors=self.connectors)
                )
            )
            self._scheduled = [
                ScheduledStream(
                    job.connector, job.stream, job.interval_seconds, job.stale_after_seconds
                )
                for job in jobs
                if job.connector is not None and job.stream is not None
            ]
            self.scheduler.add(jobs)
            self.started_at = self.clock()
            self.scheduler.start()
            if serve_http:
                self._serve_http()
        except BaseException:
            self.shutdown()
            raise
        _log.info(
            "daemon.started",
            version=__version__,
            database=self.store.dialect,
            jobs=len(jobs),
            connectors=sorted(self.connectors),
        )

    def _chain_after_webhooks(self, jobs: list[Job]) -> list[Job]:
        """Let a webhook's news run through plan and push at once, not on their intervals.

        A webhook brings its connector's pulls forward; the plan (every 120 s by default) and
        the push (30 s) would still wait for their next runs, so a payment would reach the
        ledger minutes later. Wrapped here: a pull that lands changes while its connector has
        webhook news brings the plan forward (each such pull, until :data:`CHAIN_SECONDS` after
        the webhook), and a plan that queued writes brings the pushes
        forward. Within :data:`CHAIN_SECONDS` of a webhook, a push that wrote something also
        brings its target's pulls forward, so that what the target derived from the write (a
        QuickBooks invoice's balance after a payment) reaches the other systems in the same
        chain. Without webhooks the schedule is unchanged.
        """
        pushes = [job.name for job in jobs if job.kind == "push"]
        pulls: dict[str, list[str]] = {}
        for job in jobs:
            if job.kind == "pull" and job.connector is not None:
                pulls.setdefault(job.connector, []).append(job.name)
        chained: list[Job] = []
        for job in jobs:
            if job.kind == "pull" and job.connector is not None:
                chained.append(replace(job, run=self._after_pull(job.connector, job.run)))
            elif job.kind == "plan":
                chained.append(replace(job, run=self._after_plan(pushes, job.run)))
            elif job.kind == "push" and job.connector is not None:
                target_pulls = pulls.get(job.connector, [])
                chained.append(
                    replace(job, run=self._after_push(job.connector, target_pulls, job.run))
                )
            else:
                chained.append(job)
        return chained

    def _after_pull(
        self, connector: str, run: Callable[[StopSignal], JobReport]
    ) -> Callable[[StopSignal], JobReport]:
        def chained(stop: StopSignal) -> JobReport:
            report = run(stop)
            landed = sum(report.counts.get(k, 0) for k in ("inserted", "updated", "deleted"))
            # Every landing pull of the connector while the chain lasts starts the plan (the
            # scheduler coalesces them): the streams of one connector land one after the other,
            # and what the plan needs (an invoice's new balance) may come with a later one.
            if landed and connector in self._webhook_news and time.monotonic() < self._chain_until:
                self.scheduler.run_soon(["plan"], within=CHAIN_WITHIN)
            return report

        return chained

    def _after_push(
        self, target: str, pulls: list[str], run: Callable[[StopSignal], JobReport]
    ) -> Callable[[StopSignal], JobReport]:
        def chained(stop: StopSignal) -> JobReport:
            report = run(stop)
            if report.counts.get("done", 0) and time.monotonic() < self._chain_until:
                self._webhook_news.add(target)
                self.scheduler.run_soon(pulls, within=CHAIN_WITHIN)
            return report

        return chained

    def _after_plan(
        self, pushes: list[str], run: Callable[[StopSignal], JobReport]
    ) -> Callable[[StopSignal], JobReport]:
        def chained(stop: StopSignal) -> JobReport:
            report = run(stop)
            if any(v for k, v in report.counts.items() if k.endswith("queued")):
                self.scheduler.run_soon(pushes, within=CHAIN_WITHIN)
            return report

        return chained

    def _prepare_database(self) -> None:
        head = head_revision()
        current = current_revision(self.engine)
        if current == head:
            return
        if not self.options.migrate:
            msg = (
                f"the database is at migration {current or 'none'} and this version needs "
                f"{head}: run `ledgerlink db upgrade` or start with --migrate"
            )
            raise DaemonStartError(msg)
        # Several replicas may start together: one migrates, the others wait for it.
        if self.store.dialect == "postgresql":
            from sqlalchemy import text

            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": advisory_key("migrate")})
                conn.commit()
                try:
                    upgrade(self.engine)
                finally:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key("migrate")}
                    )
                    conn.commit()
        else:
            upgrade(self.engine)
        _log.info("daemon.migrated", revision=head)

    def _connect_all(self) -> None:
        secrets = secret_store_for(self.config)
        for name, table in sorted(self.config.connectors.items()):
            plugin = self._plugin(name)
            settings = connector_settings_without_schedule(table)
            self.connectors[name] = connect(plugin, settings, secrets, run_id="serve")
            factory = getattr(plugin, "webhook_handler", None)
            handler = factory(settings, self.store) if callable(factory) else None
            if handler is not None:
                self._webhooks[name] = handler

    def _plugin(self, name: str) -> ConnectorPlugin:
        if self._plugins is None:
            return load_plugin(name)
        if name not in self._plugins:
            msg = f"unknown connector {name!r} (installed: {', '.join(self._plugins) or 'none'})"
            raise ConfigurationError(msg)
        return self._plugins[name]

    def _serve_http(self) -> None:
        config = uvicorn.Config(
            create_app(self),
            host=self.options.host,
            port=self.options.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="ledgerlink-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"cannot serve HTTP on {self.options.host}:{self.options.port}"
                raise DaemonStartError(msg)
            time.sleep(0.02)
        self._server, self._server_thread = server, thread
        _log.info("daemon.listening", host=self.options.host, port=self.port)

    @property
    def port(self) -> int:
        """The TCP port the HTTP server listens on (useful with port 0)."""
        if self._server is None or not self._server.servers:
            return self.options.port
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    # -- stop -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop taking new work now; running jobs finish their current unit."""
        if not self.stop_signal.is_set():
            _log.info("daemon.stopping", running=self.tracker.running)
        self.stop_signal.set()
        self.scheduler.shutdown()

    def shutdown(self) -> bool:
        """Stop: no new work, wait for running jobs (up to the grace), release everything.

        Calling it again returns the first call's answer and does nothing else.

        Returns:
            True when every running job finished within the grace period.
        """
        if self._clean is not None:
            return self._clean
        self.request_stop()
        idle = self.tracker.wait_idle(self.options.shutdown_grace_seconds)
        if not idle:
            _log.error("daemon.jobs_still_running", running=self.tracker.running)
        if self._server is not None and self._server_thread is not None:
            self._server.should_exit = True
            self._server_thread.join(timeout=5)
        for connector in self.connectors.values():
            try:
                connector.close()
            except Exception as exc:  # noqa: BLE001 - closing must go on for the others
                _log.warning(
                    "connector.close_failed", connector=connector.name, error=type(exc).__name__
                )
        self.engine.dispose()
        self._guard.release()
        self._clean = idle
        _log.info("daemon.stopped", clean=idle)
        return idle

    # -- what the HTTP surface shows ----------------------------------------------------------

    def liveness(self) -> tuple[bool, str]:
        """Return (alive, reason): the scheduler thread must be alive unless stopping."""
        if self.stop_signal.is_set():
            return True, "stopping"
        if not self.scheduler.alive():
            return False, "scheduler thread is not running"
        return True, ""

    def readiness(self) -> Readiness:
        """Run the readiness checks (database, migrations, stream freshness)."""
        return check_readiness(
            self.store, self._scheduled, started_at=self.started_at, now=self.clock()
        )

    def _party_objects(self) -> dict[str, list[str]]:
        """Party objects per system, from the mappings (loaded once; none when they are invalid)."""
        if self._parties is None:
            from ledgerlink.mapping import MappingError, load_mappings

            try:
                self._parties = party_objects(load_mappings(self.config.mappings_dir))
            except MappingError:
                _log.warning("daemon.mappings_invalid", effect="unmatched records not counted")
                self._parties = {}
        return self._parties

    def _operations(self) -> tuple[StoreHealth | None, list[BudgetUsage]]:
        """Read the store's health and the API budgets; (None, []) when the database is down."""
        try:
            health = self.health.read()
            usages = self.quota.usage()
        except SQLAlchemyError as exc:
            _log.warning("daemon.health_unreadable", error=type(exc).__name__)
            return None, []
        update_health_gauges(health)
        self.quota.update_gauges(usages)
        self.tracker.update_waiting_gauge(self.clock())
        return health, usages

    def refresh_metrics(self) -> None:
        """Update the gauges computed from the store: streams, readiness, outbox, budgets."""
        readiness = self.readiness()
        update_stream_gauges(readiness.streams)
        self._operations()

    def status_token(self) -> str | None:
        """Return the bearer token of ``/status``, or None."""
        token = self.options.status_token
        return None if token is None else token.get_secret_value()

    def status(self) -> dict[str, Any]:
        """Return the ``/status`` document: readiness, streams, jobs. No secrets, no customer data."""
        now = self.clock()
        readiness = self.readiness()
        update_stream_gauges(readiness.streams)
        self.tracker.set_next_runs(self.scheduler.next_runs())
        health, usages = self._operations()
        return {
            "version": __version__,
            "now": now.isoformat(),
            "started_at": self.started_at.isoformat(),
            "uptime_seconds": round((now - self.started_at).total_seconds(), 1),
            "stopping": self.stop_signal.is_set(),
            "database": {"dialect": self.store.dialect},
            "ready": readiness.ok,
            "checks": [check.to_json() for check in readiness.checks],
            "streams": [view.to_json() for view in readiness.streams],
            "jobs": [state.to_json() for state in self.tracker.snapshot()],
            "webhooks": sorted(self._webhooks),
            "quota": {
                "reserve": self.config.daemon.quota_reserve,
                "budgets": [usage.to_json() for usage in usages],
            },
            "work": None if health is None else health.to_json(),
        }

    def webhook(self, name: str, body: bytes, headers: Mapping[str, str]) -> WebhookAnswer | None:
        """Hand a delivery to connector ``name``'s webhook handler, then pull its streams soon.

        The handler's answer is either a ``(status, body)`` pair or an object with ``status``
        (and optionally ``outcome`` and ``streams``, the streams to pull early). Accepted
        deliveries (2xx, not ``duplicate``) bring the connector's pull jobs forward.

        Returns:
            The status and JSON body to answer, or None when ``name`` takes no webhooks.
        """
        handler = self._webhooks.get(name)
        if handler is None:
            return None
        try:
            result = handler.handle(body, headers)
        except Exception as exc:  # noqa: BLE001 - answer 500 so the sender retries
            _log.exception("webhook.failed", connector=name, error=type(exc).__name__)
            return 500, {"error": "webhook handler failed"}
        code, document, outcome, streams = _webhook_answer(result)
        if 200 <= code < 300 and outcome not in ("duplicate", "superseded"):
            wanted = streams or [s.stream for s in self._scheduled if s.connector == name]
            moved = self.scheduler.run_soon(
                [f"pull:{name}:{stream}" for stream in wanted],
                within=self.options.webhook_pull_within,
            )
            self._webhook_news.add(name)
            self._chain_until = time.monotonic() + CHAIN_SECONDS
            _log.info("webhook.accepted", connector=name, outcome=outcome, pulls_moved=len(moved))
        return code, document


def _webhook_answer(result: Any) -> tuple[int, dict[str, Any], str | None, list[str]]:
    """Normalize a handler's answer to (status, JSON body, outcome, streams to pull)."""
    if isinstance(result, tuple) and len(result) == 2:
        code, raw = result
        if isinstance(raw, bytes | str):
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {"detail": raw.decode(errors="replace") if isinstance(raw, bytes) else raw}
            document = parsed if isinstance(parsed, dict) else {"detail": parsed}
        else:
            document = dict(raw or {})
        return int(code), document, document.get("outcome"), []
    code = int(result.status)
    outcome = getattr(result, "outcome", None)
    document = {"outcome": outcome} if outcome is not None else {}
    return code, document, outcome, list(getattr(result, "streams", None) or [])
