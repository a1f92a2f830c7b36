"""Running jobs on their intervals: APScheduler for timing, :class:`JobRunner` for each run.

Every job is an APScheduler interval job with jitter (so replicas and streams do not all fire
at once), ``coalesce=True`` (missed runs collapse into one) and a misfire grace of one interval.
A job runs one run at a time in a replica: a run that falls due while it runs (its interval,
a webhook, the webhook chain) is run right after the current one ends, once however often it
was asked, instead of being dropped as APScheduler's ``max_instances=1`` would. Each run goes through
:class:`JobRunner`, which takes the job's lock (an advisory lock on PostgreSQL, so that one
replica does the work), records the outcome for ``/status`` and the metrics, and never lets a
failing job stop the scheduler.

Before a job that draws on vendor API budgets runs, the runner asks the
:class:`~ledgerlink.daemon.quota.QuotaGate` whether it must wait for the next window (a
low-priority job near the limit, any job once a budget is spent); after each run it flushes
the calls made into the shared budgets. A waiting job, or one stopped by a vendor's quota or
rate-limit error, ends with outcome ``waiting`` and its next run moves to the window's end.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError

from ledgerlink.daemon.jobs import Job, JobReport, StopSignal, priority_of
from ledgerlink.daemon.locks import JobLocks
from ledgerlink.daemon.quota import QuotaGate, QuotaWait
from ledgerlink.daemon.status import JOB_DURATION, JOB_RUNS, JobTracker
from ledgerlink.log import get_logger

__all__ = ["JobRunner", "JobScheduler", "Outcome"]

Outcome = str
"""``ok``, ``error``, ``interrupted``, ``crashed``, ``locked``, ``waiting``, ``stopping`` or
``coalesced`` (folded into the run in progress, which runs the job again when it ends)."""

Defer = Callable[[str, datetime], None]
"""Moves the next run of the named job to no earlier than the given time."""

_log = get_logger(component="daemon.scheduler")


def _now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Runs one job once: lock, run, record. Safe to call from several threads at once.

    Args:
        locks: the job locks (advisory locks on PostgreSQL).
        tracker: where outcomes are recorded.
        stop: the daemon's stop signal; no run starts once it is set.
        clock: current time (injectable for tests).
        gate: the quota gate (None: jobs never wait for budgets).
        defer: moves a job's next run (set by :class:`JobScheduler`).
    """

    def __init__(
        self,
        locks: JobLocks,
        tracker: JobTracker,
        stop: StopSignal,
        *,
        clock: Callable[[], datetime] = _now,
        gate: QuotaGate | None = None,
        defer: Defer | None = None,
    ) -> None:
        self.locks = locks
        self.tracker = tracker
        self.stop = stop
        self.clock = clock
        self.gate = gate
        self.defer = defer

    def __repr__(self) -> str:
        return f"JobRunner(locks={self.locks!r})"

    def run(self, job: Job) -> Outcome:
        """Run ``job`` once unless stopping or another replica holds its lock.

        Returns:
            The outcome; errors of the job are recorded, logged and never raised.
        """
        if not self.tracker.admit(self.stop):
            self.tracker.skipped(job.name, "stopping", "daemon is stopping")
            return "stopping"
        try:
            return self._run_admitted(job)
        finally:
            self.tracker.leave()

    def _run_admitted(self, job: Job) -> Outcome:
        lock: AbstractContextManager[bool] = (
            self.locks.hold(job.name) if job.singleton else nullcontext(True)
        )
        try:
            wait = self._quota_wait(job)
            if wait is not None:
                JOB_RUNS.labels(job.kind, job.name, "waiting").inc()
                self._wait(job, wait)
                return "waiting"
            with lock as acquired:
                if not acquired:
                    JOB_RUNS.labels(job.kind, job.name, "locked").inc()
                    self.tracker.skipped(job.name, "locked", "running in another replica")
                    _log.debug("job.locked_elsewhere", job=job.name)
                    return "locked"
                return self._run_locked(job)
        except SQLAlchemyError as exc:
            # Taking or releasing the lock failed: the database is unreachable.
            JOB_RUNS.labels(job.kind, job.name, "error").inc()
            self.tracker.skipped(job.name, "error", "database unreachable")
            _log.warning("job.lock_failed", job=job.name, error=type(exc).__name__)
            return "error"

    def _quota_wait(self, job: Job) -> QuotaWait | None:
        if self.gate is None or not job.budgets:
            return None
        self.gate.flush()  # count this replica's latest calls before judging
        return self.gate.check(job.budgets, priority_of(job))

    def _wait(self, job: Job, wait: QuotaWait) -> None:
        """Record that ``job`` waits for a budget and move its next run to the window's end."""
        self.tracker.waiting(job.name, wait)
        if self.defer is not None:
            self.defer(job.name, wait.until)
        _log.info(
            "job.waiting_for_quota",
            job=job.name,
            budget=wait.budget,
            until=wait.until.isoformat(),
            reason=wait.reason,
        )

    def _flush_quota(self, job: Job) -> None:
        if self.gate is None or not job.budgets:
            return
        try:
            self.gate.flush()
        except SQLAlchemyError as exc:  # counted again at the next flush
            _log.warning("quota.flush_failed", job=job.name, error=type(exc).__name__)

    def _run_locked(self, job: Job) -> Outcome:
        log = _log.bind(job=job.name)
        self.tracker.started(job.name, job.kind, self.clock())
        started = time.perf_counter()
        outcome: Outcome = "crashed"
        detail = ""
        wait: QuotaWait | None = None
        try:
            report: JobReport = job.run(self.stop)
            wait = report.wait
            if wait is not None:
                outcome = "waiting"
            elif not report.ok:
                outcome = "error"
            elif report.interrupted:
                outcome = "interrupted"
            else:
                outcome = "ok"
            detail = report.detail
        except Exception as exc:  # one broken job must not stop the daemon (logged, traceback)
            detail = type(exc).__name__
            log.exception("job.crashed", error=detail)
        finally:
            seconds = time.perf_counter() - started
            JOB_DURATION.labels(job.kind, job.name).observe(seconds)
            JOB_RUNS.labels(job.kind, job.name, outcome).inc()
            self.tracker.finished(job.name, outcome, detail, self.clock(), seconds)
            self._flush_quota(job)
        log.info("job.finished", outcome=outcome, detail=detail, seconds=round(seconds, 3))
        if wait is not None:
            self._wait(job, wait)
        return outcome


class JobScheduler:
    """APScheduler's background scheduler set up for ledgerlink's jobs.

    Args:
        runner: runs each job.
        workers: threads running jobs at once in this replica.
        jitter_fraction: random delay added to each run, as a fraction of the interval.
        first_run_within: the first run of each job starts at a random time within this many
            seconds of :meth:`start` (spreads the start of many jobs and replicas).
        rng: random source (injectable for tests).
    """

    def __init__(
        self,
        runner: JobRunner,
        *,
        workers: int = 4,
        jitter_fraction: float = 0.1,
        first_run_within: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.runner = runner
        self.jitter_fraction = jitter_fraction
        self.first_run_within = first_run_within
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not security
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 2},
        )
        self._jobs: dict[str, Job] = {}
        # Jobs running now, and those asked to run again meanwhile (see _run). APScheduler's
        # own ``max_instances=1`` would drop such a run instead of deferring it.
        self._guard = threading.Lock()
        self._running: set[str] = set()
        self._again: set[str] = set()
        if runner.defer is None:
            runner.defer = self.defer

    def __repr__(self) -> str:
        return f"JobScheduler(jobs={len(self._jobs)}, running={self.running})"

    def add(self, jobs: Iterable[Job]) -> None:
        """Schedule ``jobs`` (before or after :meth:`start`)."""
        now = _now()
        for job in jobs:
            self._jobs[job.name] = job
            self.runner.tracker.register(job.name, job.kind)
            delay = self._rng.uniform(0, min(self.first_run_within, job.interval_seconds))
            self._scheduler.add_job(
                self._run,
                trigger=IntervalTrigger(
                    seconds=job.interval_seconds,
                    jitter=max(int(job.interval_seconds * self.jitter_fraction), 0) or None,
                    timezone=UTC,
                ),
                args=[job],
                id=job.name,
                name=job.name,
                next_run_time=now + timedelta(seconds=delay),
                misfire_grace_time=max(int(job.interval_seconds), 1),
                replace_existing=True,
            )

    def _run(self, job: Job) -> Outcome:
        """Run ``job`` through the runner, one run at a time, again while asked to.

        A run that falls due while the job runs (its interval, or :meth:`run_soon`) does not
        start a second run: it is noted, and the running one runs the job once more as soon as
        it ends, so news that arrives during a run is never left to the next interval.
        """
        with self._guard:
            if job.name in self._running:
                self._again.add(job.name)
                return "coalesced"
            self._running.add(job.name)
        try:
            while True:
                outcome = self.runner.run(job)
                with self._guard:
                    if job.name not in self._again or outcome == "stopping" or not self.running:
                        self._again.discard(job.name)
                        return outcome
                    self._again.discard(job.name)
        finally:
            with self._guard:
                self._running.discard(job.name)

    def _move(self, name: str, when: datetime) -> bool:
        """Bring job ``name``'s next run forward to ``when``; True when it was later."""
        if not self.running:
            return False
        scheduled = self._scheduler.get_job(name)
        if scheduled is None or scheduled.next_run_time is None:
            return False
        if scheduled.next_run_time <= when:
            return False
        scheduled.modify(next_run_time=when)
        return True

    @property
    def jobs(self) -> list[Job]:
        """Return the scheduled jobs."""
        return list(self._jobs.values())

    @property
    def running(self) -> bool:
        """True while the scheduler is started and not shut down."""
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start the scheduler thread."""
        self._scheduler.start()
        _log.info("scheduler.started", jobs=len(self._jobs))

    def alive(self) -> bool:
        """True when the scheduler is running and its thread is alive (liveness)."""
        thread = getattr(self._scheduler, "_thread", None)
        return self.running and thread is not None and thread.is_alive()

    def next_runs(self) -> dict[str, datetime | None]:
        """Return the next run time of each scheduled job (None when paused or shut down)."""
        if not self.running:
            return dict.fromkeys(self._jobs)
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def run_soon(self, names: Sequence[str], *, within: float = 1.0) -> list[str]:
        """Bring the next run of the named jobs forward to at most ``within`` seconds from now.

        A job already due sooner keeps its time. A job running now runs again as soon as that
        run ends (however often it is asked meanwhile: the requests coalesce into one run), so
        news that arrives during a run is never left to the next interval. Used when a webhook
        says that a stream has news, and along the webhook chain.

        Returns:
            The names of the jobs that were moved or marked to run again.
        """
        if not self.running:
            return []
        soon = _now() + timedelta(seconds=within)
        moved = []
        for name in names:
            with self._guard:
                if name in self._running:
                    self._again.add(name)
                    moved.append(name)
                    continue
            if self._move(name, soon):
                moved.append(name)
        return moved

    def defer(self, name: str, until: datetime) -> None:
        """Move the next run of job ``name`` to ``until`` when it is due earlier (quota waits)."""
        if not self.running:
            return
        job = self._scheduler.get_job(name)
        if job is None or job.next_run_time is None or job.next_run_time >= until:
            return
        job.modify(next_run_time=until)

    def shutdown(self) -> None:
        """Stop scheduling new runs; running jobs go on (they watch the stop signal)."""
        if self.running:
            self._scheduler.shutdown(wait=False)
            _log.info("scheduler.stopped")
