"""API budgets shared through the database, and jobs that wait for the next window instead of failing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from daemon_testing import make_config

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.connector.errors import QuotaExhaustedError
from ledgerlink.connector.protocol import Cursor, Page
from ledgerlink.daemon.jobs import Job, JobContext, JobReport, StopSignal, pull_jobs
from ledgerlink.daemon.locks import LocalJobLocks
from ledgerlink.daemon.quota import QuotaGate, QuotaWait, default_budgets, window_start
from ledgerlink.daemon.scheduler import JobRunner
from ledgerlink.daemon.status import JobTracker
from ledgerlink.metrics import API_CALLS, VENDOR_LIMIT_MAX, VENDOR_LIMIT_USED
from ledgerlink.store import Store

T0 = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def budget_config(name: str, limit: int = 100, window: int = 60) -> LedgerlinkConfig:
    return LedgerlinkConfig(
        connectors={name: {}},
        daemon={"budgets": {name: {"limit": limit, "window_seconds": window}}},
    )


def calls(connector: str, count: int) -> None:
    """Count ``count`` answered vendor calls of ``connector`` in this process."""
    API_CALLS.labels(connector, "GET", "200").inc(count)


def fresh_name() -> str:
    return f"vendor{uuid.uuid4().hex[:8]}"


def test_calls_of_every_replica_add_up_in_the_shared_window(store: Store) -> None:
    """Two replicas flushing their calls into one database see the sum, and a new window starts at zero."""
    name = fresh_name()
    clock = Clock(T0)
    config = budget_config(name)
    first = QuotaGate(store.engine, default_budgets(config), clock=clock)
    second = QuotaGate(store.engine, default_budgets(config), clock=clock)
    calls(name, 30)  # each gate counts the process's new calls: two replicas of 30 calls
    first.flush()
    second.flush()
    first.flush()  # nothing new: nothing added
    (usage,) = first.usage()
    assert (usage.used, usage.budget.limit) == (60, 100)
    assert usage.window_end == window_start(T0, 60) + timedelta(seconds=60)
    assert second.usage()[0].used == 60

    clock.now = T0 + timedelta(seconds=60)
    assert first.usage()[0].used == 0, "a new window starts empty"
    calls(name, 5)
    first.flush()
    assert second.usage()[0].used == 5


def test_low_priority_jobs_wait_beyond_the_reserve_and_normal_ones_only_when_spent(
    store: Store,
) -> None:
    """Near the limit a first load waits for the next window while incremental pulls go on; a spent budget stops both."""
    name = fresh_name()
    gate = QuotaGate(
        store.engine, default_budgets(budget_config(name)), reserve=0.1, clock=Clock(T0)
    )
    calls(name, 89)
    gate.flush()
    assert gate.check([name], "low") is None
    calls(name, 1)
    gate.flush()
    wait = gate.check([name], "low")
    assert wait is not None
    assert (wait.budget, wait.reason) == (f"{name}.requests", "reserve")
    assert wait.until == window_start(T0, 60) + timedelta(seconds=60)
    assert gate.check([name], "normal") is None
    calls(name, 10)
    gate.flush()
    spent = gate.check([name], "normal")
    assert spent is not None
    assert spent.reason == "spent"
    assert gate.check(["another"], "low") is None, "other connectors' budgets are not involved"


def test_the_vendors_own_usage_report_is_shared_and_checked(store: Store) -> None:
    """Usage a vendor reports (Salesforce api-usage) is stored for every replica and makes low jobs wait near its limit."""
    name = fresh_name()
    gate = QuotaGate(store.engine, [], reserve=0.1, clock=Clock(T0))
    VENDOR_LIMIT_USED.labels(name, "api-usage").set(14_000)
    VENDOR_LIMIT_MAX.labels(name, "api-usage").set(15_000)
    gate.flush()
    other = QuotaGate(store.engine, [], reserve=0.1, clock=Clock(T0))
    (usage,) = other.usage([name])
    assert (usage.used, usage.budget.limit, usage.budget.vendor_reported) == (14_000, 15_000, True)
    wait = other.check([name], "low")
    assert wait is not None
    assert wait.budget == f"{name}.api-usage"
    assert other.check([name], "normal") is None


def test_default_budgets_follow_the_vendors_documented_limits() -> None:
    """QuickBooks gets 500 calls a minute, Stripe 25/s in test mode and 100/s live (per minute); config overrides."""
    config = LedgerlinkConfig(
        connectors={
            "quickbooks": {},
            "stripe": {"api_key": "sk_test_abc"},
            "salesforce": {},
        }
    )
    budgets = {b.connector: (b.limit, b.window_seconds) for b in default_budgets(config)}
    assert budgets == {"quickbooks": (500, 60), "stripe": (1500, 60)}
    live = LedgerlinkConfig(connectors={"stripe": {"api_key": "sk_live_abc"}})
    assert [(b.limit, b.window_seconds) for b in default_budgets(live)] == [(6000, 60)]
    custom = budget_config("stripe", limit=10, window=1)
    assert [(b.limit, b.window_seconds) for b in default_budgets(custom)] == [(10, 1)]


def test_a_job_over_its_budget_does_not_run_and_is_deferred_to_the_window_end(
    store: Store,
) -> None:
    """The runner records outcome waiting with the budget and time, never calls the job, and moves its next run."""
    name = fresh_name()
    gate = QuotaGate(store.engine, default_budgets(budget_config(name, limit=10)), clock=Clock(T0))
    calls(name, 10)
    gate.flush()
    deferred: list[tuple[str, datetime]] = []
    tracker = JobTracker()
    runner = JobRunner(
        LocalJobLocks(),
        tracker,
        StopSignal(),
        gate=gate,
        defer=lambda job, until: deferred.append((job, until)),
    )
    ran: list[bool] = []

    def run(_stop: StopSignal) -> JobReport:
        ran.append(True)
        return JobReport(ok=True)

    job = Job("backfill", "pull", 60, run, budgets=(name,), priority="low")
    tracker.register(job.name, job.kind)
    assert runner.run(job) == "waiting"
    assert ran == []
    end = window_start(T0, 60) + timedelta(seconds=60)
    assert deferred == [("backfill", end)]
    (state,) = tracker.snapshot()
    assert state.last_outcome == "waiting"
    assert state.to_json()["waiting_for_quota"] == {
        "budget": f"{name}.requests",
        "until": end.isoformat(),
        "reason": "spent",
    }


class QuotaConnector:
    """A connector whose read stops with the vendor's quota error after one page."""

    name = "slow"

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def streams(self) -> list[object]:
        return self.inner.streams()  # type: ignore[attr-defined, no-any-return]

    def read(self, stream: str, cursor: Cursor) -> Iterator[Page]:
        yield Page(stream=stream, records=[], cursor=cursor)
        raise QuotaExhaustedError("daily budget spent", retry_after=3600)


def test_a_quota_error_from_the_vendor_makes_the_pull_wait_not_fail(store: Store) -> None:
    """A QuotaExhaustedError mid-pull ends the run as waiting until retry_after, not as an error or crash."""
    from ledgerlink_slow import SlowConnector, SlowSettings

    connector = QuotaConnector(SlowConnector(SlowSettings()))
    context = JobContext(
        config=make_config("sqlite://"), store=store, connectors={"slow": connector}
    )  # type: ignore[dict-item]
    job = next(j for j in pull_jobs(context) if j.stream == "ticks")
    deferred: list[tuple[str, datetime]] = []
    tracker = JobTracker()
    tracker.register(job.name, job.kind)
    runner = JobRunner(
        LocalJobLocks(), tracker, StopSignal(), defer=lambda j, until: deferred.append((j, until))
    )
    before = datetime.now(UTC)
    assert runner.run(job) == "waiting"
    (state,) = tracker.snapshot()
    assert isinstance(state.waiting, QuotaWait)
    assert state.waiting.budget == "slow.quota_exhausted"
    assert state.waiting.until >= before + timedelta(seconds=3600)
    assert deferred == [(job.name, state.waiting.until)]
