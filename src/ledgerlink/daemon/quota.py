"""Vendor API budgets shared by every replica, and the gate that makes jobs wait for them.

A vendor limits calls per account, not per process: Salesforce counts API requests per org
per 24 hours, QuickBooks 500 requests per minute per company (realm), Stripe 25 requests per
second in test mode and 100 in live mode. Three replicas pulling and pushing at once must
therefore count together, so the count lives in the database (table ``api_budget``):

* **Counted budgets.** Each replica counts its own calls (the ``ledgerlink_api_calls_total``
  counter every connector feeds) and adds what it made since its last flush to the row of
  (connector, budget) with one atomic upsert: the row's window restarts when a flush falls in
  a later window. The sum over replicas is the budget's use in the current window.
* **Vendor-reported budgets.** When a connector knows the vendor's own count (Salesforce's
  ``Sforce-Limit-Info: api-usage=used/max`` feeds ``ledgerlink_vendor_limit_used`` and
  ``_max``), the latest report is stored in the same table and checked as well. The vendor
  does not say when its rolling window frees calls, so a job waiting on it checks again after
  :data:`VENDOR_RECHECK_SECONDS`.

:class:`QuotaGate` answers, before a job runs, whether it must wait: a *low-priority* job
(a stream's first full load, revenue refresh) waits once a budget is used beyond
``1 - quota_reserve`` of its limit, so the reserve stays for incremental pulls and pushes; a
*normal* job waits only when the budget is spent. Waiting is not failing: the run is
recorded with outcome ``waiting``, the job's next run moves to the end of the window, and
``/status`` and ``ledgerlink_jobs_waiting_for_quota`` say which job waits for which budget
until when.

Stripe's limit is per second; counting it per second across replicas would be pointless
bookkeeping (the connector's own rate limiter paces the seconds), so its default budget is
the same rate over a 60-second window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from pydantic import SecretStr
from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ledgerlink.config import LedgerlinkConfig
from ledgerlink.log import get_logger
from ledgerlink.metrics import API_CALLS, REGISTRY, VENDOR_LIMIT_MAX, VENDOR_LIMIT_USED
from ledgerlink.store.db import SQLITE_IMMEDIATE
from ledgerlink.store.models import ApiBudget

__all__ = [
    "COUNTED_BUDGET",
    "PRIORITIES",
    "QUOTA_HEADROOM",
    "QUOTA_LIMIT",
    "QUOTA_USED",
    "VENDOR_RECHECK_SECONDS",
    "Budget",
    "BudgetUsage",
    "QuotaGate",
    "QuotaWait",
    "default_budgets",
    "window_start",
]

API_BUDGET = ApiBudget.__table__  # type: ignore[attr-defined]
#: Name of the budget the hub counts itself (one per connector).
COUNTED_BUDGET = "requests"
#: Job priorities, lowest first.
PRIORITIES = ("low", "normal")
#: A job waiting on a vendor-reported budget checks again after this long.
VENDOR_RECHECK_SECONDS = 3600
#: Vendor-reported budgets and how long their window is, for the headroom shown.
_VENDOR_WINDOWS = {("salesforce", "api-usage"): 86_400}
# Defaults from the vendors' documentation (see docs/operations.md, "API budgets").
_STRIPE_LIVE_PER_SECOND = 100
_STRIPE_TEST_PER_SECOND = 25
_QUICKBOOKS_PER_MINUTE = 500

_log = get_logger(component="daemon.quota")

QUOTA_USED = Gauge(
    "ledgerlink_quota_used",
    "Vendor API calls used in the current window of a budget, by all replicas.",
    ["connector", "budget"],
    registry=REGISTRY,
)
QUOTA_LIMIT = Gauge(
    "ledgerlink_quota_limit",
    "Vendor API calls allowed in one window of a budget.",
    ["connector", "budget"],
    registry=REGISTRY,
)
QUOTA_HEADROOM = Gauge(
    "ledgerlink_quota_headroom_ratio",
    "Share of a budget still free in its current window (0 = spent, 1 = untouched).",
    ["connector", "budget"],
    registry=REGISTRY,
)


def _now() -> datetime:
    return datetime.now(UTC)


def window_start(moment: datetime, window_seconds: int) -> datetime:
    """Return the start of the fixed window of ``window_seconds`` that holds ``moment`` (UTC)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit of ``limit`` calls per ``window_seconds`` to one connector's vendor account.

    Attributes:
        connector: the connector whose calls count.
        name: ``requests`` for a budget the hub counts, else the vendor's limit name.
        limit: calls per window (for a vendor-reported budget: the last reported maximum).
        window_seconds: length of a window.
        vendor_reported: the count comes from the vendor, not from the hub's own counter.
    """

    connector: str
    name: str
    limit: int
    window_seconds: int
    vendor_reported: bool = False

    @property
    def key(self) -> str:
        """``connector.name``, as ``/status`` shows it."""
        return f"{self.connector}.{self.name}"


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget's use in its current window."""

    budget: Budget
    used: int
    window_end: datetime

    @property
    def headroom(self) -> float:
        """Share of the budget still free, 0..1."""
        if self.budget.limit <= 0:
            return 0.0
        return max(0.0, 1.0 - self.used / self.budget.limit)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {
            "connector": self.budget.connector,
            "budget": self.budget.name,
            "source": "vendor" if self.budget.vendor_reported else "counted",
            "used": self.used,
            "limit": self.budget.limit,
            "window_seconds": self.budget.window_seconds,
            "window_end": self.window_end.isoformat(),
            "headroom": round(self.headroom, 4),
        }


@dataclass(frozen=True, slots=True)
class QuotaWait:
    """Why a job does not run now: the budget it waits for, and until when."""

    budget: str
    until: datetime
    reason: str = "budget"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {"budget": self.budget, "until": self.until.isoformat(), "reason": self.reason}


def _stripe_test_mode(settings: Mapping[str, Any]) -> bool:
    # Only the key's documented prefix is looked at; the key itself is never kept or shown.
    key: Any = settings.get("api_key")
    value = key.get_secret_value() if isinstance(key, SecretStr) else str(key or "")
    return value.startswith(("sk_test_", "rk_test_"))


def default_budgets(config: LedgerlinkConfig) -> list[Budget]:
    """Return the counted budget of every configured connector that has one.

    ``[daemon.budgets.NAME]`` sets it for connector NAME; otherwise the vendor's documented
    limit applies: QuickBooks 500 requests per minute per realm, Stripe 25 (test mode keys)
    or 100 (live) requests per second counted over a minute. Salesforce's daily budget is the
    one the vendor reports, so it has no counted default.
    """
    budgets = []
    for name, settings in sorted(config.connectors.items()):
        override = config.daemon.budgets.get(name)
        if override is not None:
            budgets.append(Budget(name, COUNTED_BUDGET, override.limit, override.window_seconds))
        elif name == "quickbooks":
            budgets.append(Budget(name, COUNTED_BUDGET, _QUICKBOOKS_PER_MINUTE, 60))
        elif name == "stripe":
            rate = (
                _STRIPE_TEST_PER_SECOND if _stripe_test_mode(settings) else _STRIPE_LIVE_PER_SECOND
            )
            budgets.append(Budget(name, COUNTED_BUDGET, rate * 60, 60))
    return budgets


def _insert(engine: Engine) -> Any:
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(API_BUDGET)


def _calls_by_connector() -> dict[str, float]:
    """Return this process's vendor calls so far per connector (calls that got an answer)."""
    totals: dict[str, float] = {}
    for family in API_CALLS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("status") == "0":
                continue
            connector = sample.labels["connector"]
            totals[connector] = totals.get(connector, 0.0) + sample.value
    return totals


def _vendor_reports() -> dict[tuple[str, str], tuple[int, int]]:
    """Return the vendor-reported (used, max) of every limit seen by this process."""
    used: dict[tuple[str, str], float] = {}
    for family in VENDOR_LIMIT_USED.collect():
        for sample in family.samples:
            used[(sample.labels["connector"], sample.labels["limit"])] = sample.value
    reports = {}
    for family in VENDOR_LIMIT_MAX.collect():
        for sample in family.samples:
            key = (sample.labels["connector"], sample.labels["limit"])
            if key in used and sample.value > 0:
                reports[key] = (int(used[key]), int(sample.value))
    return reports


class QuotaGate:
    """Counts this replica's vendor calls into the shared budgets and tells jobs when to wait.

    Args:
        engine: the store's engine (table ``api_budget``).
        budgets: the counted budgets (see :func:`default_budgets`).
        reserve: share of each budget kept for normal-priority jobs.
        clock: current time (injectable for tests).
    """

    def __init__(
        self,
        engine: Engine,
        budgets: Iterable[Budget],
        *,
        reserve: float = 0.1,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.engine = engine
        self.budgets = {(b.connector, b.name): b for b in budgets}
        self.reserve = reserve
        self.clock = clock
        self._flushed = _calls_by_connector()  # calls made before the daemon started
        # Vendor reports seen before the daemon started count as stored: like the calls above,
        # they belong to whatever ran in this process before (nothing, in `ledgerlink serve`).
        self._reported: dict[tuple[str, str], tuple[int, int]] = _vendor_reports()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"QuotaGate(budgets={sorted(b.key for b in self.budgets.values())})"

    # -- counting ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Add the calls made since the last flush to the shared budgets, and store new vendor reports.

        Safe to call from every job thread: one flush runs at a time, and a delta is taken
        from the process counter only once.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached (the delta is kept
                for the next flush).
        """
        with self._lock:
            now = self.clock()
            totals = _calls_by_connector()
            deltas = {
                connector: int(total - self._flushed.get(connector, 0.0))
                for connector, total in totals.items()
                if (connector, COUNTED_BUDGET) in self.budgets
            }
            deltas = {c: d for c, d in deltas.items() if d > 0}
            reports = {k: v for k, v in _vendor_reports().items() if self._reported.get(k) != v}
            if not deltas and not reports:
                return
            engine = self.engine
            if engine.dialect.name == "sqlite":
                engine = engine.execution_options(**{SQLITE_IMMEDIATE: True})
            with engine.begin() as conn:
                for connector, delta in sorted(deltas.items()):
                    budget = self.budgets[(connector, COUNTED_BUDGET)]
                    conn.execute(self._count_statement(budget, delta, now))
                for (connector, name), (used, limit) in sorted(reports.items()):
                    conn.execute(self._report_statement(connector, name, used, limit, now))
            for connector in deltas:
                self._flushed[connector] = totals[connector]
            self._reported.update(reports)

    def _count_statement(self, budget: Budget, delta: int, now: datetime) -> Any:
        start = window_start(now, budget.window_seconds)
        stmt = _insert(self.engine).values(
            connector=budget.connector,
            budget=budget.name,
            window_start=start,
            window_seconds=budget.window_seconds,
            used=delta,
            updated_at=now,
        )
        new = stmt.excluded
        row = API_BUDGET.c
        # Same window: add. The stored window is later (a slow flush): keep it, this delta
        # belongs to a window already over. Else a new window starts with this delta.
        return stmt.on_conflict_do_update(
            index_elements=["connector", "budget"],
            set_={
                "used": case(
                    (row.window_start == new.window_start, row.used + new.used),
                    (row.window_start > new.window_start, row.used),
                    else_=new.used,
                ),
                "window_start": case(
                    (row.window_start > new.window_start, row.window_start),
                    else_=new.window_start,
                ),
                "window_seconds": new.window_seconds,
                "updated_at": new.updated_at,
            },
        )

    def _report_statement(
        self, connector: str, name: str, used: int, limit: int, now: datetime
    ) -> Any:
        window = _VENDOR_WINDOWS.get((connector, name), 86_400)
        stmt = _insert(self.engine).values(
            connector=connector,
            budget=name,
            window_start=now,
            window_seconds=window,
            used=0,
            vendor_used=used,
            vendor_limit=limit,
            updated_at=now,
        )
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=["connector", "budget"],
            set_={
                "vendor_used": new.vendor_used,
                "vendor_limit": new.vendor_limit,
                "updated_at": new.updated_at,
            },
        )

    # -- reading -----------------------------------------------------------------------------

    def usage(self, connectors: Sequence[str] | None = None) -> list[BudgetUsage]:
        """Return every budget's use in its current window (of ``connectors`` when given).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
        """
        now = self.clock()
        query = select(API_BUDGET)
        if connectors is not None:
            query = query.where(API_BUDGET.c.connector.in_(list(connectors)))
        with self.engine.connect() as conn:
            rows = {(r.connector, r.budget): r for r in conn.execute(query)}
        usages = []
        for key, budget in sorted(self.budgets.items()):
            if connectors is not None and budget.connector not in connectors:
                continue
            start = window_start(now, budget.window_seconds)
            row = rows.get(key)
            used = int(row.used) if row is not None and row.window_start == start else 0
            end = start + timedelta(seconds=budget.window_seconds)
            usages.append(BudgetUsage(budget, used, end))
        for key, row in sorted(rows.items()):
            if key in self.budgets or row.vendor_limit is None:
                continue
            budget = Budget(key[0], key[1], int(row.vendor_limit), int(row.window_seconds), True)
            recheck = now + timedelta(seconds=min(VENDOR_RECHECK_SECONDS, budget.window_seconds))
            usages.append(BudgetUsage(budget, int(row.vendor_used or 0), recheck))
        return usages

    def check(self, connectors: Sequence[str], priority: str) -> QuotaWait | None:
        """Return why a job of ``priority`` drawing on ``connectors`` must wait, or None.

        A low-priority job waits once a budget is used beyond ``1 - reserve`` of its limit;
        a normal one only once it is spent. The wait lasts until the window ends.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
        """
        if not connectors:
            return None
        threshold = 1.0 - self.reserve if priority == "low" else 1.0
        for usage in self.usage(connectors):
            if usage.used >= usage.budget.limit * threshold:
                reason = "reserve" if usage.used < usage.budget.limit else "spent"
                return QuotaWait(usage.budget.key, usage.window_end, reason)
        return None

    def window_end(self, connector: str) -> datetime | None:
        """Return when the current window of ``connector``'s counted budget ends, if it has one."""
        budget = self.budgets.get((connector, COUNTED_BUDGET))
        if budget is None:
            return None
        start = window_start(self.clock(), budget.window_seconds)
        return start + timedelta(seconds=budget.window_seconds)

    def update_gauges(self, usages: Sequence[BudgetUsage]) -> None:
        """Set the quota gauges from ``usages``."""
        for usage in usages:
            labels = (usage.budget.connector, usage.budget.name)
            QUOTA_USED.labels(*labels).set(usage.used)
            QUOTA_LIMIT.labels(*labels).set(usage.budget.limit)
            QUOTA_HEADROOM.labels(*labels).set(usage.headroom)
