"""What the daemon knows about itself: job outcomes, stream freshness, readiness, metrics.

:class:`JobTracker` keeps the outcome of every job run in this process. The store's
``sync_state`` table is the shared truth about streams (every replica writes it), so stream
freshness, lag and readiness are computed from it, and each replica reports the same.

Nothing here exposes customer data or secrets: errors are reported by kind only
(``retryable``, ``authentication``, ...), and metric labels are connector, stream, job and
outcome names.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, Info
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ledgerlink import __version__
from ledgerlink.metrics import REGISTRY
from ledgerlink.store import Store, SyncState, current_revision, head_revision
from ledgerlink.sync.engine import StreamResult

if TYPE_CHECKING:
    from ledgerlink.daemon.jobs import StopSignal
    from ledgerlink.daemon.quota import QuotaWait

__all__ = [
    "BUILD_INFO",
    "JOBS_WAITING",
    "JOB_DURATION",
    "JOB_RUNS",
    "RECORDS_LANDED",
    "RECORDS_READ",
    "STREAM_LAG",
    "STREAM_LAST_SUCCESS",
    "Check",
    "JobState",
    "JobTracker",
    "Readiness",
    "ScheduledStream",
    "StreamView",
    "check_readiness",
    "cursor_time",
    "record_pull",
    "stream_views",
    "update_stream_gauges",
]

RECORDS_READ = Counter(
    "ledgerlink_records_read",
    "Records (and tombstones) read from a connector stream.",
    ["connector", "stream"],
    registry=REGISTRY,
)
RECORDS_LANDED = Counter(
    "ledgerlink_records_landed",
    "Records landed in the store, by outcome (inserted, updated, unchanged, deleted).",
    ["connector", "stream", "outcome"],
    registry=REGISTRY,
)
JOB_RUNS = Counter(
    "ledgerlink_job_runs",
    "Job runs by outcome: ok, error, interrupted, locked (another replica ran it), crashed.",
    ["kind", "job", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "ledgerlink_job_duration_seconds",
    "Duration of one run of a job (one pull cycle of a stream, ...).",
    ["kind", "job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
JOBS_RUNNING = Gauge(
    "ledgerlink_jobs_running",
    "Jobs running in this replica now.",
    registry=REGISTRY,
)
JOBS_WAITING = Gauge(
    "ledgerlink_jobs_waiting_for_quota",
    "Jobs of this replica waiting for the next window of a vendor API budget.",
    ["budget"],
    registry=REGISTRY,
)
STREAM_LAST_SUCCESS = Gauge(
    "ledgerlink_stream_last_success_timestamp_seconds",
    "Unix time of the last successful pull of a stream (by any replica).",
    ["connector", "stream"],
    registry=REGISTRY,
)
STREAM_LAG = Gauge(
    "ledgerlink_stream_lag_seconds",
    "Now minus the cursor time of the newest record landed, for streams with a time cursor.",
    ["connector", "stream"],
    registry=REGISTRY,
)
STREAM_FAILING = Gauge(
    "ledgerlink_stream_failing",
    "1 when the last pull of a stream failed, else 0.",
    ["connector", "stream"],
    registry=REGISTRY,
)
READY = Gauge(
    "ledgerlink_ready",
    "1 when this replica's readiness checks pass, else 0.",
    registry=REGISTRY,
)
BUILD_INFO = Info("ledgerlink_build", "Version of ledgerlink and Python.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})


def record_pull(result: StreamResult) -> None:
    """Add one pull's counts to the records metrics."""
    labels = (result.connector, result.stream)
    RECORDS_READ.labels(*labels).inc(result.read)
    for outcome in ("inserted", "updated", "unchanged", "deleted"):
        RECORDS_LANDED.labels(*labels, outcome).inc(getattr(result, outcome))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass
class JobState:
    """The latest known runs of one job in this replica."""

    name: str
    kind: str
    running: bool = False
    runs: int = 0
    last_outcome: str | None = None
    last_detail: str = ""
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_success_at: datetime | None = None
    last_duration_seconds: float | None = None
    next_run_at: datetime | None = None
    waiting: QuotaWait | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "running": self.running,
            "runs": self.runs,
            "last_outcome": self.last_outcome,
            "last_detail": self.last_detail,
            "last_started_at": _iso(self.last_started_at),
            "last_finished_at": _iso(self.last_finished_at),
            "last_success_at": _iso(self.last_success_at),
            "last_duration_seconds": (
                None if self.last_duration_seconds is None else round(self.last_duration_seconds, 3)
            ),
            "next_run_at": _iso(self.next_run_at),
            "waiting_for_quota": None if self.waiting is None else self.waiting.to_json(),
        }


class JobTracker:
    """Thread-safe record of job runs in this replica, and the in-flight count for shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._jobs: dict[str, JobState] = {}
        self._running = 0

    def __repr__(self) -> str:
        return f"JobTracker(jobs={len(self._jobs)}, running={self._running})"

    def register(self, name: str, kind: str) -> None:
        """Declare a scheduled job so that it is listed before its first run."""
        with self._lock:
            self._jobs.setdefault(name, JobState(name=name, kind=kind))

    def admit(self, stop: StopSignal) -> bool:
        """Count a job run as in flight unless ``stop`` is set (checked atomically with the count).

        Shutdown sets the stop signal and then waits for :meth:`wait_idle`: a run is either
        counted before that wait looks, or sees the signal and is refused.

        Returns:
            True when the run may go on; the caller must then call :meth:`leave`.
        """
        with self._lock:
            if stop.is_set():
                return False
            self._running += 1
            JOBS_RUNNING.set(self._running)
            return True

    def leave(self) -> None:
        """End a run admitted by :meth:`admit`."""
        with self._lock:
            self._running -= 1
            JOBS_RUNNING.set(self._running)
            self._lock.notify_all()

    def started(self, name: str, kind: str, now: datetime) -> None:
        """Note that ``name`` started running at ``now``."""
        with self._lock:
            state = self._jobs.setdefault(name, JobState(name=name, kind=kind))
            state.running = True
            state.last_started_at = now
            state.waiting = None

    def finished(self, name: str, outcome: str, detail: str, now: datetime, seconds: float) -> None:
        """Note that ``name`` finished at ``now`` with ``outcome`` after ``seconds``."""
        with self._lock:
            state = self._jobs[name]
            state.running = False
            state.runs += 1
            state.last_outcome = outcome
            state.last_detail = detail
            state.last_finished_at = now
            state.last_duration_seconds = seconds
            if outcome == "ok":
                state.last_success_at = now

    def waiting(self, name: str, wait: QuotaWait) -> None:
        """Note that ``name`` waits for ``wait.budget`` until ``wait.until``."""
        with self._lock:
            state = self._jobs.get(name)
            if state is not None:
                state.last_outcome = "waiting"
                state.last_detail = f"waiting for {wait.budget}"
                state.waiting = wait

    def update_waiting_gauge(self, now: datetime) -> None:
        """Set ``ledgerlink_jobs_waiting_for_quota`` from the jobs still waiting at ``now``."""
        counts: dict[str, int] = {}
        with self._lock:
            for state in self._jobs.values():
                if state.waiting is not None and state.waiting.until > now:
                    counts[state.waiting.budget] = counts.get(state.waiting.budget, 0) + 1
                elif state.waiting is not None:
                    counts.setdefault(state.waiting.budget, 0)
        for budget, count in counts.items():
            JOBS_WAITING.labels(budget).set(count)

    def skipped(self, name: str, outcome: str, detail: str) -> None:
        """Note a run that did not happen (locked by another replica, or stopping)."""
        with self._lock:
            state = self._jobs.get(name)
            if state is not None:
                state.last_outcome = outcome
                state.last_detail = detail

    def set_next_runs(self, next_runs: Mapping[str, datetime | None]) -> None:
        """Store the scheduler's next run time of each job."""
        with self._lock:
            for name, moment in next_runs.items():
                if name in self._jobs:
                    self._jobs[name].next_run_at = moment

    @property
    def running(self) -> int:
        """Number of job runs in flight now (admitted and not yet left)."""
        with self._lock:
            return self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs, at most ``timeout`` seconds; return True when idle."""
        with self._lock:
            return self._lock.wait_for(lambda: self._running == 0, timeout=timeout)

    def snapshot(self) -> list[JobState]:
        """Return copies of every job's state, sorted by name."""
        with self._lock:
            return [JobState(**vars(state)) for _, state in sorted(self._jobs.items())]


def cursor_time(cursor: Mapping[str, Any] | None) -> datetime | None:
    """Return the cursor's value as a UTC time when it is an ISO-8601 timestamp, else None."""
    value = (cursor or {}).get("value")
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StreamView:
    """Freshness of one scheduled stream, as ``/status`` and the metrics show it."""

    connector: str
    stream: str
    interval_seconds: float
    stale_after_seconds: float | None
    last_success_at: datetime | None
    failing: bool
    error_kind: str | None
    staleness_seconds: float | None
    lag_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {
            "connector": self.connector,
            "stream": self.stream,
            "interval_seconds": self.interval_seconds,
            "stale_after_seconds": self.stale_after_seconds,
            "last_success_at": _iso(self.last_success_at),
            "seconds_since_success": _round(self.staleness_seconds),
            "lag_seconds": _round(self.lag_seconds),
            "failing": self.failing,
            "last_error_kind": self.error_kind,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(frozen=True, slots=True)
class ScheduledStream:
    """A stream the daemon pulls, with its interval and staleness threshold."""

    connector: str
    stream: str
    interval_seconds: float
    stale_after_seconds: float | None


def stream_views(
    states: Sequence[SyncState], scheduled: Sequence[ScheduledStream], now: datetime
) -> list[StreamView]:
    """Combine the stored stream states with the schedule into per-stream freshness.

    Args:
        states: rows of ``sync_state`` (from :meth:`Store.sync_states`).
        scheduled: the streams this daemon pulls.
        now: the current time, timezone-aware.

    Returns:
        One view per scheduled stream, in schedule order.
    """
    by_key = {(s.connector, s.stream): s for s in states}
    views = []
    for item in scheduled:
        state = by_key.get((item.connector, item.stream))
        last_success = state.last_success_at if state is not None else None
        error = state.last_error if state is not None else None
        moment = cursor_time(state.cursor) if state is not None else None
        views.append(
            StreamView(
                connector=item.connector,
                stream=item.stream,
                interval_seconds=item.interval_seconds,
                stale_after_seconds=item.stale_after_seconds,
                last_success_at=last_success,
                failing=error is not None,
                error_kind=None if error is None else error.split(":", 1)[0],
                staleness_seconds=(
                    None if last_success is None else (now - last_success).total_seconds()
                ),
                lag_seconds=None if moment is None else max((now - moment).total_seconds(), 0.0),
            )
        )
    return views


def update_stream_gauges(views: Sequence[StreamView]) -> None:
    """Set the per-stream gauges from ``views``."""
    for view in views:
        labels = (view.connector, view.stream)
        if view.last_success_at is not None:
            STREAM_LAST_SUCCESS.labels(*labels).set(view.last_success_at.timestamp())
        if view.lag_seconds is not None:
            STREAM_LAG.labels(*labels).set(view.lag_seconds)
        STREAM_FAILING.labels(*labels).set(1 if view.failing else 0)


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: its name, whether it passed, and why not."""

    name: str
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/readyz``."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Readiness:
    """The result of every readiness check, and the stream views computed on the way."""

    checks: Sequence[Check]
    streams: Sequence[StreamView] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body of ``/readyz``."""
        return {
            "ready": self.ok,
            "failing": [check.name for check in self.checks if not check.ok],
            "checks": [check.to_json() for check in self.checks],
        }


def check_readiness(
    store: Store, scheduled: Sequence[ScheduledStream], *, started_at: datetime, now: datetime
) -> Readiness:
    """Run the readiness checks: database reachable, migrations at head, streams fresh.

    A stream is fresh when its last success is newer than its ``stale_after_seconds``; a stream
    that never succeeded is given that long from the daemon's start before it counts as stale.

    Args:
        store: the store.
        scheduled: the streams this daemon pulls.
        started_at: when the daemon started.
        now: the current time, timezone-aware.

    Returns:
        The checks, in order; later checks are skipped (reported failing) when the
        database cannot be reached.
    """
    checks: list[Check] = []
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks.append(Check("database", True))
        current = current_revision(store.engine)
        head = head_revision()
        checks.append(
            Check(
                "migrations",
                current == head,
                "" if current == head else f"database at {current}, code expects {head}",
            )
        )
        states = store.sync_states() if current == head else []
    except SQLAlchemyError as exc:
        checks.append(Check("database", False, f"unreachable ({type(exc).__name__})"))
        checks.append(Check("migrations", False, "database unreachable"))
        READY.set(0)
        return Readiness(checks)
    views = stream_views(states, scheduled, now)
    stale = []
    for view in views:
        if view.stale_after_seconds is None:
            continue
        since = view.last_success_at or started_at
        if (now - since).total_seconds() > view.stale_after_seconds:
            stale.append(f"{view.connector}.{view.stream}")
    checks.append(
        Check(
            "streams",
            not stale,
            "" if not stale else "no successful pull within threshold: " + ", ".join(stale),
        )
    )
    readiness = Readiness(checks, views)
    READY.set(1 if readiness.ok else 0)
    return readiness
