"""The daemon's plan job plans customers, bills accepted quotes and posts the ledger, as a cycle does."""

from __future__ import annotations

from decimal import Decimal

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.daemon import JobContext, StopSignal
from ledgerlink.daemon.cycle import plan_jobs
from ledgerlink.store import Store
from ledgerlink.sync.cycle import ledger_options


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
    assert {"ledger_documents", "ledger_queued", "ledger_quarantined"} <= set(report.counts)


def test_ledger_options_come_from_the_ledger_section() -> None:
    """The home currency and fallback rates of [ledger] reach the ledger planner exactly."""
    config = LedgerlinkConfig(ledger={"home_currency": "EUR", "rates": {"USD": "0.9210"}})
    options = ledger_options(config)
    assert options.home_currency == "EUR"
    assert options.rates == {"USD": Decimal("0.9210")}
    assert ledger_options(None).home_currency == "USD"
