"""Operational health read from the store: outbox depth and age, review queue, unmatched records.

Every replica reads the same tables, so every replica reports the same figures on
``/metrics`` and ``/status``. Only counts and ages leave this module: no record contents, no
names, no ids.

* **Outbox.** Rows per target and status for the statuses that need attention (``pending``,
  ``in_flight``, ``failed``; rows sent are counted by ``ledgerlink_outbox_writes_total``), and
  the age of the oldest row still to send per target: the best single sign that pushing is
  stuck.
* **Review queue.** Source records whose link waits for a person (``customer_link.status =
  'review'``).
* **Unmatched.** Live source records of party objects (per the mappings) with no link yet.
* **Quarantine.** Records held back, per stage, not yet resolved.
* **Revenue.** This month's MRR per currency as the last ``revenue`` job measured it (the
  newest ``revenue.refresh`` audit row), and when.

The queries scan whole tables on large stores, so :class:`HealthProbe` keeps its answer for
``ttl_seconds`` (15 by default): scrapes from several Prometheus servers cost one read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Engine

from ledgerlink.metrics import REGISTRY
from ledgerlink.store import (
    AuditLog,
    CustomerLink,
    LinkStatus,
    OutboxStatus,
    Quarantine,
    SourceRecord,
)
from ledgerlink.sync.outbox import OUTBOX

__all__ = [
    "MRR",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_ROWS",
    "QUARANTINE_OPEN",
    "REVENUE_REFRESHED",
    "REVIEW_QUEUE",
    "UNMATCHED",
    "HealthProbe",
    "OutboxTarget",
    "StoreHealth",
    "party_objects",
    "read_store_health",
    "update_health_gauges",
]

_LINK = CustomerLink.__table__  # type: ignore[attr-defined]
_SOURCE = SourceRecord.__table__  # type: ignore[attr-defined]
_QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
_AUDIT = AuditLog.__table__  # type: ignore[attr-defined]
#: ``audit_log.action`` of the revenue job's rows (see :mod:`ledgerlink.daemon.cycle`).
REVENUE_ACTION = "revenue.refresh"
_WATCHED = (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value, OutboxStatus.FAILED.value)
_OPEN = (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value)

OUTBOX_ROWS = Gauge(
    "ledgerlink_outbox_rows",
    "Outbox rows per target in the statuses that need attention (pending, in_flight, failed).",
    ["target", "status"],
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "ledgerlink_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row of a target still to send (pending or in flight); 0 when none.",
    ["target"],
    registry=REGISTRY,
)
REVIEW_QUEUE = Gauge(
    "ledgerlink_review_queue_records",
    "Source records whose match waits for a person's decision (the review queue).",
    registry=REGISTRY,
)
UNMATCHED = Gauge(
    "ledgerlink_unmatched_records",
    "Live source records of party objects not linked to any customer yet.",
    ["system"],
    registry=REGISTRY,
)
QUARANTINE_OPEN = Gauge(
    "ledgerlink_quarantine_open_records",
    "Records held in quarantine and not resolved, per pipeline stage.",
    ["stage"],
    registry=REGISTRY,
)

MRR = Gauge(
    "ledgerlink_mrr_minor_units",
    "Total MRR of the current month per currency, in minor units, as last measured.",
    ["currency"],
    registry=REGISTRY,
)
REVENUE_REFRESHED = Gauge(
    "ledgerlink_revenue_refreshed_timestamp_seconds",
    "Unix time of the last revenue refresh (by any replica).",
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class OutboxTarget:
    """The outbox of one target: rows per watched status and the oldest row still to send."""

    target: str
    rows: Mapping[str, int]
    oldest_pending_age_seconds: float

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {
            "target": self.target,
            "rows": {status: self.rows.get(status, 0) for status in _WATCHED},
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 1),
        }


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What the store says about the work waiting: outbox, review queue, unmatched, quarantine."""

    outbox: Sequence[OutboxTarget] = ()
    review_queue: int = 0
    unmatched: Mapping[str, int] = field(default_factory=dict)
    quarantine: Mapping[str, int] = field(default_factory=dict)
    revenue_at: datetime | None = None
    mrr: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON view used by ``/status``."""
        return {
            "outbox": [target.to_json() for target in self.outbox],
            "review_queue_records": self.review_queue,
            "unmatched_records": dict(self.unmatched),
            "quarantine_open": dict(self.quarantine),
            "revenue": {
                "refreshed_at": None if self.revenue_at is None else self.revenue_at.isoformat(),
                "mrr_minor_units": dict(self.mrr),
            },
        }


def party_objects(mappings: Any) -> dict[str, list[str]]:
    """Return the objects of each system whose mapping makes a party (customer) entity."""
    objects: dict[str, list[str]] = {}
    for system, system_file in sorted(mappings.systems.items()):
        names = [n for n, m in sorted(system_file.objects.items()) if m.entity == "party"]
        if names:
            objects[system] = names
    return objects


def _outbox(engine: Engine, now: datetime) -> list[OutboxTarget]:
    counts_query = (
        select(OUTBOX.c.target, OUTBOX.c.status, func.count())
        .where(OUTBOX.c.status.in_(_WATCHED))
        .group_by(OUTBOX.c.target, OUTBOX.c.status)
    )
    oldest_query = (
        select(OUTBOX.c.target, func.min(OUTBOX.c.created_at))
        .where(OUTBOX.c.status.in_(_OPEN))
        .group_by(OUTBOX.c.target)
    )
    rows: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for target, status, count in conn.execute(counts_query):
            rows.setdefault(target, {})[status] = int(count)
        oldest: dict[str, datetime | str] = {
            str(target): created for target, created in conn.execute(oldest_query).all()
        }
    targets = []
    for target in sorted(rows):
        created = oldest.get(target)
        age = 0.0 if created is None else max((now - _aware(created)).total_seconds(), 0.0)
        targets.append(OutboxTarget(target, rows[target], age))
    return targets


def _aware(moment: datetime | str) -> datetime:
    # ``min()`` over a UTCDateTime column comes back untyped on SQLite (text).
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _unmatched(engine: Engine, objects: Mapping[str, Sequence[str]]) -> dict[str, int]:
    if not objects:
        return {}
    linked = exists().where(
        _LINK.c.system == _SOURCE.c.system,
        _LINK.c.object == _SOURCE.c.object,
        _LINK.c.external_id == _SOURCE.c.external_id,
    )
    scope = or_(
        *(
            and_(_SOURCE.c.system == system, _SOURCE.c.object.in_(list(names)))
            for system, names in objects.items()
        )
    )
    query = (
        select(_SOURCE.c.system, func.count())
        .where(scope, _SOURCE.c.deleted_at.is_(None), ~linked)
        .group_by(_SOURCE.c.system)
    )
    found = dict.fromkeys(objects, 0)
    with engine.connect() as conn:
        for system, count in conn.execute(query):
            found[system] = int(count)
    return found


def read_store_health(
    engine: Engine, objects: Mapping[str, Sequence[str]], now: datetime
) -> StoreHealth:
    """Read the outbox, review queue, unmatched and quarantine figures from the store.

    Args:
        engine: the store's engine.
        objects: party objects per system (see :func:`party_objects`).
        now: the current time, timezone-aware.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    outbox = _outbox(engine, now)
    with engine.connect() as conn:
        review = conn.execute(
            select(func.count()).where(_LINK.c.status == LinkStatus.REVIEW.value)
        ).scalar_one()
        quarantine = {
            stage: int(count)
            for stage, count in conn.execute(
                select(_QUARANTINE.c.stage, func.count())
                .where(_QUARANTINE.c.resolved_at.is_(None))
                .group_by(_QUARANTINE.c.stage)
            )
        }
        revenue = conn.execute(
            select(_AUDIT.c.at, _AUDIT.c.details)
            .where(_AUDIT.c.action == REVENUE_ACTION)
            .order_by(_AUDIT.c.at.desc())
            .limit(1)
        ).first()
    revenue_at = None if revenue is None else _aware(revenue.at)
    mrr = {} if revenue is None else dict((revenue.details or {}).get("mrr_minor_units") or {})
    return StoreHealth(
        outbox, int(review), _unmatched(engine, objects), quarantine, revenue_at, mrr
    )


def update_health_gauges(health: StoreHealth) -> None:
    """Set the outbox, review queue, unmatched and quarantine gauges from ``health``."""
    seen_targets = set()
    for view in health.outbox:
        seen_targets.add(view.target)
        for status in _WATCHED:
            OUTBOX_ROWS.labels(view.target, status).set(view.rows.get(status, 0))
        OUTBOX_OLDEST_AGE.labels(view.target).set(view.oldest_pending_age_seconds)
    # A target whose rows were all sent keeps its series, at zero.
    for family in OUTBOX_OLDEST_AGE.collect():
        for sample in family.samples:
            name = sample.labels["target"]
            if name not in seen_targets:
                OUTBOX_OLDEST_AGE.labels(name).set(0)
                for status in _WATCHED:
                    OUTBOX_ROWS.labels(name, status).set(0)
    REVIEW_QUEUE.set(health.review_queue)
    for system, count in health.unmatched.items():
        UNMATCHED.labels(system).set(count)
    for stage in ("map", "match", "plan", "push"):
        QUARANTINE_OPEN.labels(stage).set(health.quarantine.get(stage, 0))
    if health.revenue_at is not None:
        REVENUE_REFRESHED.set(health.revenue_at.timestamp())
    for currency, amount in health.mrr.items():
        MRR.labels(currency).set(amount)


class HealthProbe:
    """Reads :class:`StoreHealth` at most once per ``ttl_seconds``; thread-safe.

    Args:
        engine: the store's engine.
        objects: party objects per system, or a function returning them (mappings are
            loaded on first use).
        ttl_seconds: how long an answer is reused.
        clock: current time, timezone-aware.
    """

    def __init__(
        self,
        engine: Engine,
        objects: Callable[[], Mapping[str, Sequence[str]]],
        *,
        clock: Callable[[], datetime],
        ttl_seconds: float = 15.0,
    ) -> None:
        self.engine = engine
        self.objects = objects
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, StoreHealth] | None = None

    def __repr__(self) -> str:
        return f"HealthProbe(ttl_seconds={self.ttl_seconds})"

    def read(self) -> StoreHealth:
        """Return the store's health, from the cache when fresh.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
        """
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl_seconds:
                return self._cached[1]
            health = read_store_health(self.engine, self.objects(), self.clock())
            self._cached = (now, health)
            return health
