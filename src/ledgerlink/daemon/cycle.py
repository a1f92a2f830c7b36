"""The daemon's jobs beyond pulling: match, plan, push and revenue refresh.

Each kind is registered with :func:`ledgerlink.daemon.jobs.register_job_factory` when this
module is imported (the daemon package imports it), so the scheduler, locks, quota gate,
metrics and ``/status`` treat them like the pulls. Intervals come from ``[daemon]``
(``match_interval_seconds``, ``plan_interval_seconds``, ``push_interval_seconds``,
``revenue_interval_seconds``; 0 turns a job off).

* ``match``: one singleton job (advisory lock on PostgreSQL). It keeps a
  :class:`~ledgerlink.matching.persist.Matcher` between runs, so a run re-matches only the
  parties changed since the previous one; when another replica matched in between (a newer
  ``match.run`` audit row than this replica's own), it rebuilds its state from the tables.
* ``plan``: one singleton job calling :func:`ledgerlink.sync.cycle.plan_all`: the customer
  planner, the billing of accepted quotes, then the ledger postings (valued with ``[ledger]``),
  the same writes ``ledgerlink sync run`` queues. The push jobs hand the planner's
  ``record_results`` to the push worker, so a record the hub created is linked to its
  customer in the transaction that marks its row done.
* ``push:TARGET``: one job per connector that declares writers. It runs on *every* replica at
  once: outbox rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
  share the rows without sending one twice. It draws on the target's API budget.
* ``revenue``: one singleton, low-priority job measuring this month's MRR per currency from
  the Stripe subscriptions in the store; the totals go to an ``audit_log`` row (action
  ``revenue.refresh``) from which every replica's ``/metrics`` reads them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from ledgerlink.connector.protocol import Connector
from ledgerlink.daemon.health import REVENUE_ACTION
from ledgerlink.daemon.jobs import Job, JobContext, JobReport, StopSignal, register_job_factory
from ledgerlink.daemon.quota import QuotaWait
from ledgerlink.log import get_logger
from ledgerlink.store import AuditLog, OutboxStatus, Store
from ledgerlink.store.db import for_writing
from ledgerlink.sync.outbox import OUTBOX
from ledgerlink.sync.push import push

__all__ = [
    "REVENUE_ACTION",
    "match_jobs",
    "plan_jobs",
    "push_jobs",
    "revenue_jobs",
    "worker_id",
]

_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]
_ACTOR = "ledgerlink-serve"

_log = get_logger(component="daemon.cycle")


def _now() -> datetime:
    return datetime.now(UTC)


def worker_id() -> str:
    """Return this replica's worker id (host and process), kept on the outbox rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Mappings:
    """The mappings, loaded on first use (a job that never runs never loads them)."""

    def __init__(self, context: JobContext) -> None:
        self._dir = context.config.mappings_dir
        self._loaded: Any = None

    def get(self) -> Any:
        if self._loaded is None:
            from ledgerlink.mapping import load_mappings

            self._loaded = load_mappings(self._dir)
        return self._loaded


def _mapping_failure(exc: Exception) -> JobReport:
    _log.error("job.mappings_invalid", error=type(exc).__name__)
    return JobReport(ok=False, detail="mappings invalid (run `ledgerlink mappings check`)")


# -- match -----------------------------------------------------------------------------------


def _last_match_at(engine: Engine) -> datetime | None:
    from ledgerlink.matching.persist import RUN_ACTION

    with engine.connect() as conn:
        last: datetime | None = conn.execute(
            select(func.max(_AUDIT.c.at)).where(_AUDIT.c.action == RUN_ACTION)
        ).scalar_one_or_none()
    return last


def _match_run(context: JobContext) -> Callable[[StopSignal], JobReport]:
    from ledgerlink.mapping import MappingError
    from ledgerlink.matching.persist import Matcher

    mappings = _Mappings(context)
    engine = context.store.engine
    state: dict[str, Any] = {"matcher": None, "last": None}

    def run(stop: StopSignal) -> JobReport:
        if stop.is_set():
            return JobReport(ok=True, detail="not started: stopping", interrupted=True)
        try:
            loaded = mappings.get()
        except MappingError as exc:
            return _mapping_failure(exc)
        latest = _last_match_at(engine)
        if state["matcher"] is None or latest != state["last"]:
            # First run here, or another replica matched since: rebuild from the tables.
            state["matcher"] = Matcher(engine, loaded)
        now = _now()
        summary = state["matcher"].run(now=now)
        state["last"] = now
        return JobReport(
            ok=True,
            detail=summary.mode,
            counts={
                "parties": summary.parties,
                "changed": summary.changed,
                "customers": summary.customers,
                "review_queue": summary.review_queue,
                "rows_written": summary.rows_written,
            },
        )

    return run


def match_jobs(context: JobContext) -> Iterator[Job]:
    """Yield the match job unless ``[daemon] match_interval_seconds`` is 0."""
    interval = context.config.daemon.match_interval_seconds
    if interval:
        yield Job(name="match", kind="match", interval_seconds=interval, run=_match_run(context))


# -- plan ------------------------------------------------------------------------------------


def _counts(prefix: str, report: Any) -> dict[str, int]:
    return {
        f"{prefix}{name}": value
        for name, value in report.as_dict().items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def _plan_run(context: JobContext) -> Callable[[StopSignal], JobReport]:
    from ledgerlink.mapping import MappingError
    from ledgerlink.sync.cycle import CycleCache, ledger_options, plan_all

    mappings = _Mappings(context)
    options = ledger_options(context.config)
    # What the plans of this process keep between runs: only what changed is read again.
    cache = CycleCache()

    def run(stop: StopSignal) -> JobReport:
        if stop.is_set():
            return JobReport(ok=True, detail="not started: stopping", interrupted=True)
        try:
            loaded = mappings.get()
        except MappingError as exc:
            return _mapping_failure(exc)
        # Customers, then the billing of accepted quotes, then the ledger: as in a cycle.
        with cache.holding():
            planned = plan_all(
                context.store,
                loaded,
                now=_now(),
                ledger=options,
                mapped=cache.mapped,
                kept_ledger=cache.ledger,
                kept_quotes=cache.quotes,
            )
        cache.park()  # what the plans keep stays out of the garbage collector's walks
        counts = _counts("", planned.plan)
        counts.update(_counts("quotes_", planned.quotes))
        counts.update(_counts("ledger_", planned.ledger))
        return JobReport(ok=True, counts=counts)

    return run


def plan_jobs(context: JobContext) -> Iterator[Job]:
    """Yield the plan job (customers, quotes, ledger) unless its interval is 0."""
    interval = context.config.daemon.plan_interval_seconds
    if interval:
        yield Job(name="plan", kind="plan", interval_seconds=interval, run=_plan_run(context))


# -- push ------------------------------------------------------------------------------------


def _next_due(engine: Engine, target: str) -> datetime | None:
    with engine.connect() as conn:
        due: datetime | None = conn.execute(
            select(func.min(OUTBOX.c.next_attempt_at)).where(
                OUTBOX.c.target == target, OUTBOX.c.status == OutboxStatus.PENDING.value
            )
        ).scalar_one_or_none()
    return due


_WAIT_KINDS = ("quota_exhausted", "rate_limited")


def _push_run(
    store: Store, connector: Connector, lease: timedelta, interval: float
) -> Callable[[StopSignal], JobReport]:
    from ledgerlink.sync.plan import record_results as on_result

    me = worker_id()

    def run(stop: StopSignal) -> JobReport:
        totals: dict[str, int] = dict.fromkeys(("batches", "done", "retried", "failed"), 0)
        stopped: str | None = None
        # One claim at a time, so a stop asked mid-run waits for one batch only.
        while not stop.is_set():
            report = push(
                store, connector, worker_id=me, lease=lease, max_batches=1, on_result=on_result
            )
            for name in totals:
                totals[name] += getattr(report, name)
            if report.stopped is not None:
                stopped = report.stopped
                break
            if report.batches == 0:
                break
        if stopped is None:
            return JobReport(
                ok=totals["failed"] == 0,
                detail="" if totals["failed"] == 0 else f"{totals['failed']} rows failed",
                interrupted=stop.is_set(),
                counts=totals,
            )
        kind = stopped.split(":", 1)[0]
        if kind in _WAIT_KINDS:
            due = _next_due(store.engine, connector.name)
            until = due if due is not None else _now() + timedelta(seconds=interval)
            wait = QuotaWait(f"{connector.name}.{kind}", until, "vendor")
            return JobReport(ok=True, detail=kind, counts=totals, wait=wait)
        return JobReport(ok=False, detail=kind, counts=totals)

    return run


def push_jobs(context: JobContext) -> Iterator[Job]:
    """Yield one push job per connector that can write, unless the push interval is 0."""
    daemon = context.config.daemon
    if not daemon.push_interval_seconds:
        return
    lease = timedelta(seconds=daemon.push_lease_seconds)
    for name, connector in sorted(context.connectors.items()):
        if not connector.writers():
            continue
        yield Job(
            name=f"push:{name}",
            kind="push",
            interval_seconds=daemon.push_interval_seconds,
            run=_push_run(context.store, connector, lease, daemon.push_interval_seconds),
            singleton=False,
            connector=name,
            budgets=(name,),
        )


# -- revenue ---------------------------------------------------------------------------------


def refresh_revenue(engine: Engine, mappings: Any, now: datetime) -> dict[str, Any]:
    """Measure this month's MRR per currency and store it as a ``revenue.refresh`` audit row.

    Returns:
        The stored details: month, MRR per currency in minor units, counted subscriptions.
    """
    from ledgerlink.domain.entities import Subscription
    from ledgerlink.mapping.normalize import iter_normalized
    from ledgerlink.revenue import Month, histories, measure_mrr, snapshot

    snapshots = [
        snapshot(outcome.entity)
        for outcome in iter_normalized(
            engine, mappings, "stripe", since=None, now=now, objects=["subscriptions"]
        )
        if isinstance(outcome.entity, Subscription)
    ]
    month = Month(now.year, now.month)
    measured = measure_mrr(histories(snapshots), month)
    details = {
        "month": str(month),
        "mrr_minor_units": {c: m.amount for c, m in sorted(measured.totals().items())},
        "customers": len({customer for customer, _ in measured.by_customer()}),
        "subscriptions": len(snapshots),
    }
    with for_writing(engine).begin() as conn:
        conn.execute(
            insert(_AUDIT).values(
                at=now, actor=_ACTOR, action=REVENUE_ACTION, subject=str(month), details=details
            )
        )
    return details


def _revenue_run(context: JobContext) -> Callable[[StopSignal], JobReport]:
    from ledgerlink.mapping import MappingError

    mappings = _Mappings(context)

    def run(stop: StopSignal) -> JobReport:
        if stop.is_set():
            return JobReport(ok=True, detail="not started: stopping", interrupted=True)
        try:
            loaded = mappings.get()
        except MappingError as exc:
            return _mapping_failure(exc)
        details = refresh_revenue(context.store.engine, loaded, _now())
        return JobReport(
            ok=True,
            counts={"subscriptions": details["subscriptions"], "customers": details["customers"]},
        )

    return run


def revenue_jobs(context: JobContext) -> Iterator[Job]:
    """Yield the revenue refresh job (low priority) unless its interval is 0."""
    interval = context.config.daemon.revenue_interval_seconds
    if interval:
        yield Job(
            name="revenue",
            kind="revenue",
            interval_seconds=interval,
            run=_revenue_run(context),
            priority="low",
        )


register_job_factory("match", match_jobs)
register_job_factory("plan", plan_jobs)
register_job_factory("push", push_jobs)
register_job_factory("revenue", revenue_jobs)
