"""The daemon behind ``ledgerlink serve``: scheduled jobs, HTTP endpoints, locks, clean stop.

* :mod:`ledgerlink.daemon.jobs`: the job registry (pull per connector and stream) and the
  stop signal.
* :mod:`ledgerlink.daemon.cycle`: the match, plan, push and revenue jobs.
* :mod:`ledgerlink.daemon.quota`: vendor API budgets shared through the database, and the
  gate that makes jobs wait for the next window.
* :mod:`ledgerlink.daemon.health`: outbox, review queue, unmatched and revenue figures.
* :mod:`ledgerlink.daemon.scheduler`: APScheduler timing and the lock-taking job runner.
* :mod:`ledgerlink.daemon.locks`: advisory locks on PostgreSQL, the single-replica guard on SQLite.
* :mod:`ledgerlink.daemon.status`: job outcomes, stream freshness, readiness and metrics.
* :mod:`ledgerlink.daemon.http`: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``, webhooks.
* :mod:`ledgerlink.daemon.service`: the :class:`Daemon` tying them together.
"""

from __future__ import annotations

from ledgerlink.daemon.jobs import (
    Job,
    JobContext,
    JobFactory,
    JobReport,
    StopSignal,
    build_jobs,
    register_job_factory,
)
from ledgerlink.daemon.service import Daemon, DaemonOptions, DaemonStartError

__all__ = [
    "Daemon",
    "DaemonOptions",
    "DaemonStartError",
    "Job",
    "JobContext",
    "JobFactory",
    "JobReport",
    "StopSignal",
    "build_jobs",
    "register_job_factory",
]
