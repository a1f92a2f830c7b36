"""The daemon's plan job bills accepted quotes after planning the customers, as a cycle does."""

from __future__ import annotations

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.daemon import JobContext, StopSignal
from ledgerlink.daemon.cycle import plan_jobs
from ledgerlink.store import Store


def test_plan_job_runs_the_quote_planner_and_reports_its_counts(store: Store) -> None:
    """One plan job run reports the customer plan's counts and the quote plan's, prefixed."""
    context = JobContext(
        config=LedgerlinkConfig(daemon={"plan_interval_seconds": 60}), store=store, connectors={}
    )
    (job,) = plan_jobs(context)
    report = job.run(StopSignal())
    assert report.ok
    assert {"customers", "queued", "quotes_deals", "quotes_queued", "quotes_held"} <= set(
        report.counts
    )
