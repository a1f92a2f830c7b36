"""Tests of running jobs: outcomes, locks across replicas, the APScheduler loop."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from daemon_testing import wait_until
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from ledgerlink.daemon import Job, JobReport, StopSignal
from ledgerlink.daemon.locks import LocalJobLocks, PostgresJobLocks, advisory_key
from ledgerlink.daemon.scheduler import JobRunner, JobScheduler
from ledgerlink.daemon.status import JobTracker
from ledgerlink.store import create_engine_for


def job(name: str, run: object, interval: float = 60) -> Job:
    return Job(name=name, kind="test", interval_seconds=interval, run=run)  # type: ignore[arg-type]


def crash(_stop: StopSignal) -> JobReport:
    raise RuntimeError("boom")


def test_runner_records_ok_error_and_crash_and_keeps_going() -> None:
    """A job's success, reported failure and exception are each recorded; none escapes the runner."""
    tracker = JobTracker()
    runner = JobRunner(LocalJobLocks(), tracker, StopSignal())
    assert runner.run(job("a", lambda _s: JobReport(ok=True))) == "ok"
    assert runner.run(job("b", lambda _s: JobReport(ok=False, detail="retryable"))) == "error"
    assert runner.run(job("c", crash)) == "crashed"
    states = {s.name: s for s in tracker.snapshot()}
    assert (states["a"].last_outcome, states["a"].last_success_at is not None) == ("ok", True)
    assert (states["b"].last_outcome, states["b"].last_detail) == ("error", "retryable")
    assert (states["c"].last_outcome, states["c"].last_detail) == ("crashed", "RuntimeError")
    assert tracker.running == 0


def test_no_job_starts_once_the_daemon_is_stopping() -> None:
    """After the stop signal the runner starts no job."""
    stop = StopSignal()
    stop.set()
    ran: list[str] = []
    runner = JobRunner(LocalJobLocks(), JobTracker(), stop)
    assert runner.run(job("a", lambda _s: ran.append("a") or JobReport(ok=True))) == "stopping"
    assert ran == []


def run_twice_at_once(first: JobRunner, second: JobRunner) -> tuple[list[str], int]:
    """Run the same job in both runners at the same moment; return outcomes and work done."""
    inside = threading.Event()
    release = threading.Event()
    work = []

    def body(_stop: StopSignal) -> JobReport:
        work.append(1)
        inside.set()
        release.wait(30)
        return JobReport(ok=True)

    shared = job("pull:stripe:invoices", body)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(first.run, shared)
        assert inside.wait(30)
        b = pool.submit(second.run, shared)
        b_outcome = b.result(timeout=30)
        release.set()
        outcomes = sorted([a.result(timeout=30), b_outcome])
    return outcomes, len(work)


def test_one_process_never_runs_a_job_twice_at_once() -> None:
    """Within one replica, a job still running is not started a second time."""
    locks = LocalJobLocks()
    runners = [JobRunner(locks, JobTracker(), StopSignal()) for _ in range(2)]
    assert run_twice_at_once(*runners) == (["locked", "ok"], 1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replicas_on_postgresql_run_a_singleton_job_once(database_url: str) -> None:
    """Two replicas firing the same job together on one PostgreSQL: one does the work, one skips."""
    engines = [create_engine_for(database_url) for _ in range(2)]
    try:
        runners = [JobRunner(PostgresJobLocks(e), JobTracker(), StopSignal()) for e in engines]
        assert run_twice_at_once(*runners) == (["locked", "ok"], 1)
        # The lock was released: the other replica may run it now.
        assert runners[1].run(job("pull:stripe:invoices", lambda _s: JobReport(ok=True))) == "ok"
    finally:
        for engine in engines:
            engine.dispose()


def _session_alive(engine: Engine, backend_pid: int) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend_pid}
            ).scalar_one()
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_lock_of_a_dead_replica_is_released_with_its_session(database_url: str) -> None:
    """A lock held by a session that dies (a killed replica) is free again for the others."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    dead = psycopg.connect(dsn, autocommit=True)
    dead.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key("push"),))
    engine = create_engine_for(database_url)
    try:
        locks = PostgresJobLocks(engine)
        with locks.hold("push") as acquired:
            assert not acquired
        backend = dead.info.backend_pid
        dead.close()
        # The server ends the session (and frees its locks) just after the client hangs up.
        wait_until(lambda: not _session_alive(engine, backend), timeout=30)
        with locks.hold("push") as acquired:
            assert acquired
    finally:
        engine.dispose()


def test_scheduler_runs_jobs_and_a_webhook_can_bring_a_run_forward() -> None:
    """Jobs run on their schedule in the background, and run_soon moves a distant run to now."""
    tracker = JobTracker()
    ran = {"soon": threading.Event(), "later": threading.Event()}
    scheduler = JobScheduler(
        JobRunner(LocalJobLocks(), tracker, StopSignal()), workers=2, first_run_within=0
    )
    scheduler.add([job("soon", lambda _s: ran["soon"].set() or JobReport(ok=True), interval=3600)])
    scheduler.start()
    try:
        assert ran["soon"].wait(30)
        assert scheduler.alive()
        scheduler.add(
            [job("later", lambda _s: ran["later"].set() or JobReport(ok=True), interval=3600)]
        )
        # Its first run was placed within first_run_within (0 s): run it, then it is an hour away.
        assert ran["later"].wait(30)
        ran["later"].clear()
        assert tracker.wait_idle(30)
        assert scheduler.run_soon(["later"], within=1.0) == ["later"]
        assert ran["later"].wait(30)
    finally:
        scheduler.shutdown()
    assert not scheduler.alive()


def test_a_run_asked_for_while_the_job_runs_follows_it_once() -> None:
    """News that arrives during a run (a webhook, the chain) is run right after, not dropped.

    APScheduler alone would skip such a run (one instance at a time) and leave the news to the
    job's next interval, an hour away here. Two requests during one run give one more run.
    """
    tracker = JobTracker()
    runs: list[int] = []
    running, release, second = threading.Event(), threading.Event(), threading.Event()

    def work(_stop: StopSignal) -> JobReport:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            running.set()
            assert release.wait(30)
        else:
            second.set()
        return JobReport(ok=True)

    scheduler = JobScheduler(
        JobRunner(LocalJobLocks(), tracker, StopSignal()), workers=2, first_run_within=0
    )
    scheduler.add([job("pull", work, interval=3600)])
    scheduler.start()
    try:
        assert running.wait(30)
        assert scheduler.run_soon(["pull"], within=0.1) == ["pull"]
        assert scheduler.run_soon(["pull"], within=0.1) == ["pull"]
        release.set()
        assert second.wait(30)
        assert tracker.wait_idle(30)
        assert runs == [1, 2]
        assert scheduler.next_runs()["pull"] is not None
    finally:
        scheduler.shutdown()
