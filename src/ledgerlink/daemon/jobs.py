"""The daemon's job registry: what runs on a schedule, described as data.

A :class:`Job` is a name (also its lock name), an interval and a function that does one run
and reports how it went. Jobs are produced by *job factories* registered by kind: the pull
factory makes one job per configured connector and stream; later parts of the hub (match,
plan, push, revenue refresh) add their own kind with :func:`register_job_factory` and the
scheduler, locks, metrics and ``/status`` handle them without change.

A job receives a :class:`StopSignal`; long jobs check it between units of work (a pull checks
it between pages) so that a shutdown lets the running unit finish and takes no new one.

Intervals come from the configuration: ``[connectors.NAME] interval_seconds`` (and, per stream,
``[connectors.NAME.stream_intervals] STREAM = seconds``) when present, else
``[sync] interval_seconds``. These scheduling keys are removed from the connector's table before
the connector validates it (see :func:`connector_settings_without_schedule`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ledgerlink.config import ConfigError, LedgerlinkConfig
from ledgerlink.connector.errors import ConnectorError, QuotaExhaustedError, RateLimitedError
from ledgerlink.connector.protocol import Connector, Cursor, Page, Stream, WriteOp, WriterSpec
from ledgerlink.daemon.quota import QuotaWait
from ledgerlink.store import Store, SyncState
from ledgerlink.sync.engine import pull_stream
from ledgerlink.sync.runtime import SCHEDULE_KEYS, connector_settings_without_schedule

__all__ = [
    "DAEMON_CONNECTOR_KEYS",
    "MIN_INTERVAL_SECONDS",
    "Job",
    "JobContext",
    "JobFactory",
    "JobReport",
    "StopSignal",
    "StoppableConnector",
    "build_jobs",
    "connector_settings_without_schedule",
    "job_factories",
    "priority_of",
    "pull_jobs",
    "quota_wait",
    "register_job_factory",
    "stale_after_seconds",
    "stream_interval_seconds",
]

MIN_INTERVAL_SECONDS = 5
#: Keys of a ``[connectors.NAME]`` table that belong to the daemon, not to the connector.
DAEMON_CONNECTOR_KEYS = SCHEDULE_KEYS
#: A stream is stale (not ready) when it had no success for this many intervals.
STALE_INTERVALS = 3
MIN_STALE_SECONDS = 60


class StopSignal:
    """Set once when the daemon stops taking new work; jobs poll it between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __repr__(self) -> str:
        return f"StopSignal(set={self._event.is_set()})"

    def set(self) -> None:
        """Ask every job to stop after its current unit of work."""
        self._event.set()

    def is_set(self) -> bool:
        """Return True once a stop was asked."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on stop; return True when stopped."""
        return self._event.wait(timeout)


@dataclass(frozen=True, slots=True)
class JobReport:
    """How one run of a job went. ``detail`` is short and holds no customer data.

    ``wait`` is set when the job stopped because a vendor budget is spent (the vendor said
    so with a quota or rate-limit error): the run counts as ``waiting``, not as an error, and
    the job's next run moves to ``wait.until``.
    """

    ok: bool
    detail: str = ""
    interrupted: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    wait: QuotaWait | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One scheduled job.

    Attributes:
        name: unique name, also the name of its lock (``pull:stripe:invoices``).
        kind: the factory kind that made it (``pull``, later ``match``, ``push``, ...).
        interval_seconds: time between the starts of two runs (before jitter).
        run: does one run; must return promptly once the stop signal is set.
        singleton: at most one replica runs it at a time (takes the job's lock).
        connector: the connector it concerns, if any.
        stream: the stream it concerns, if any.
        stale_after_seconds: ``/readyz`` fails when the job had no success for this long
            (None: the job does not count for readiness).
        budgets: connectors whose vendor API budget the job draws on; before each run the
            quota gate may make it wait for the next window.
        priority: ``normal`` or ``low`` (or a function answering it at run time): low jobs
            leave the budgets' reserve to normal ones.
    """

    name: str
    kind: str
    interval_seconds: float
    run: Callable[[StopSignal], JobReport]
    singleton: bool = True
    connector: str | None = None
    stream: str | None = None
    stale_after_seconds: float | None = None
    budgets: tuple[str, ...] = ()
    priority: str | Callable[[], str] = "normal"


def priority_of(job: Job) -> str:
    """Return the priority of ``job``'s next run (``normal`` or ``low``)."""
    return job.priority() if callable(job.priority) else job.priority


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job factory may use: configuration, store, connections and the stop signal."""

    config: LedgerlinkConfig
    store: Store
    connectors: Mapping[str, Connector]


JobFactory = Callable[[JobContext], Iterable[Job]]
_FACTORIES: dict[str, JobFactory] = {}


def register_job_factory(kind: str, factory: JobFactory) -> None:
    """Register (or replace) the factory of job kind ``kind``.

    Args:
        kind: short name of the kind (``pull``, ``match``, ``push``, ``revenue``).
        factory: returns the jobs of that kind for a daemon's context.
    """
    _FACTORIES[kind] = factory


def job_factories() -> dict[str, JobFactory]:
    """Return the registered job factories by kind, in registration order."""
    return dict(_FACTORIES)


def build_jobs(context: JobContext) -> list[Job]:
    """Return every job of every registered kind for ``context``.

    Raises:
        ValueError: two jobs share a name.
        ConfigError: a schedule setting is invalid.
    """
    jobs: list[Job] = []
    seen: set[str] = set()
    for factory in _FACTORIES.values():
        for job in factory(context):
            if job.name in seen:
                msg = f"duplicate job name {job.name!r}"
                raise ValueError(msg)
            seen.add(job.name)
            jobs.append(job)
    return jobs


# -- configuration ---------------------------------------------------------------------------


def _seconds(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("configuration", key, "must be a whole number of seconds")
    if value < MIN_INTERVAL_SECONDS:
        raise ConfigError("configuration", key, f"must be at least {MIN_INTERVAL_SECONDS}")
    return value


def stream_interval_seconds(config: LedgerlinkConfig, connector: str, stream: str) -> int:
    """Return the pull interval of (``connector``, ``stream``).

    ``[connectors.NAME.stream_intervals] STREAM``, else ``[connectors.NAME] interval_seconds``,
    else ``[sync] interval_seconds``.

    Raises:
        ConfigError: a value is not a whole number of at least 5 seconds.
    """
    table = config.connectors.get(connector, {})
    per_stream = table.get("stream_intervals") or {}
    if not isinstance(per_stream, Mapping):
        raise ConfigError(
            "configuration", f"connectors.{connector}.stream_intervals", "must be a table"
        )
    if stream in per_stream:
        return _seconds(per_stream[stream], f"connectors.{connector}.stream_intervals.{stream}")
    if "interval_seconds" in table:
        return _seconds(table["interval_seconds"], f"connectors.{connector}.interval_seconds")
    return config.sync.interval_seconds


def stale_after_seconds(config: LedgerlinkConfig, connector: str, interval: float) -> float:
    """Return how long a stream of ``connector`` may go without success before it is not ready.

    ``[connectors.NAME] stale_after_seconds`` when set, else three intervals (at least 60 s).

    Raises:
        ConfigError: the value is not a whole number of at least 5 seconds.
    """
    table = config.connectors.get(connector, {})
    if "stale_after_seconds" in table:
        return _seconds(table["stale_after_seconds"], f"connectors.{connector}.stale_after_seconds")
    return max(STALE_INTERVALS * interval, MIN_STALE_SECONDS)


# -- pull ------------------------------------------------------------------------------------


class StoppableConnector:
    """A connector whose reads end cleanly between two pages once the stop signal is set.

    The sync engine lands a page and its cursor in one transaction before it asks for the next
    page; ending the page iterator at that point leaves only whole pages landed, and the next
    run resumes from the stored cursor.

    Args:
        inner: the real connection.
        stop: the daemon's stop signal.
    """

    def __init__(self, inner: Connector, stop: StopSignal) -> None:
        self.inner = inner
        self.stop = stop
        self.name = inner.name
        self.interrupted = False
        self.error: ConnectorError | None = None

    def __repr__(self) -> str:
        return f"StoppableConnector({self.name!r})"

    def streams(self) -> Sequence[Stream]:
        """Return the inner connector's streams."""
        return self.inner.streams()

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        """Yield the inner connector's pages until the stop signal is set between two pages."""
        pages = self.inner.read(stream, cursor)
        try:
            for page in pages:
                yield page
                if self.stop.is_set():
                    self.interrupted = True
                    return
        except ConnectorError as exc:
            self.error = exc  # kept for its class and retry_after; the engine records it
            raise
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def writers(self) -> Sequence[WriterSpec]:
        """Return the inner connector's writers."""
        return self.inner.writers()

    def write(self, ops: Sequence[WriteOp]) -> Iterator[Any]:
        """Delegate writes unchanged (pull jobs never write)."""
        return self.inner.write(ops)

    def check(self) -> Any:
        """Delegate to the inner connector."""
        return self.inner.check()

    def close(self) -> None:
        """Close the inner connector."""
        self.inner.close()


def quota_wait(
    error: ConnectorError | None, connector: str, fallback_seconds: float
) -> QuotaWait | None:
    """Return the wait a vendor's quota or rate-limit error asks for, or None for other errors.

    The wait lasts ``retry_after`` when the vendor gave one, else ``fallback_seconds``.
    """
    if not isinstance(error, QuotaExhaustedError | RateLimitedError):
        return None
    seconds = error.retry_after if error.retry_after is not None else fallback_seconds
    until = datetime.now(UTC) + timedelta(seconds=max(seconds, 1.0))
    return QuotaWait(f"{connector}.{error.kind}", until, "vendor")


def _first_load(store: Store, connector: str, stream: str) -> bool:
    """True while a stream never had a successful pull: its next run is a full load."""
    table = SyncState.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        last = conn.execute(
            select(table.c.last_success_at).where(
                table.c.connector == connector, table.c.stream == stream
            )
        ).scalar_one_or_none()
    return last is None


def _pull_run(
    store: Store, connector: Connector, stream: str, interval: float
) -> Callable[[StopSignal], JobReport]:
    from ledgerlink.daemon.status import record_pull

    def run(stop: StopSignal) -> JobReport:
        if stop.is_set():
            return JobReport(ok=True, detail="not started: stopping", interrupted=True)
        guarded = StoppableConnector(connector, stop)
        result = pull_stream(store, guarded, stream)
        record_pull(result)
        counts = {
            "pages": result.pages,
            "read": result.read,
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "deleted": result.deleted,
        }
        if result.error is not None:
            kind = result.error.split(":", 1)[0]
            wait = quota_wait(guarded.error, connector.name, interval)
            if wait is not None:
                return JobReport(ok=True, detail=kind, counts=counts, wait=wait)
            return JobReport(ok=False, detail=kind, counts=counts)
        return JobReport(
            ok=True,
            detail="stopped between pages" if guarded.interrupted else "",
            interrupted=guarded.interrupted,
            counts=counts,
        )

    return run


def pull_jobs(context: JobContext) -> Iterator[Job]:
    """Yield one pull job per configured connector and stream.

    Raises:
        ConfigError: a schedule setting is invalid.
    """
    for name, connector in sorted(context.connectors.items()):
        for stream in connector.streams():
            interval = stream_interval_seconds(context.config, name, stream.name)
            yield Job(
                name=f"pull:{name}:{stream.name}",
                kind="pull",
                interval_seconds=interval,
                run=_pull_run(context.store, connector, stream.name, interval),
                connector=name,
                stream=stream.name,
                stale_after_seconds=stale_after_seconds(context.config, name, interval),
                budgets=(name,),
                priority=_pull_priority(context.store, name, stream.name),
            )


def _pull_priority(store: Store, connector: str, stream: str) -> Callable[[], str]:
    """A stream's first load (a full list, a backfill) is low priority; later pulls are normal."""

    def priority() -> str:
        return "low" if _first_load(store, connector, stream) else "normal"

    return priority


register_job_factory("pull", pull_jobs)
