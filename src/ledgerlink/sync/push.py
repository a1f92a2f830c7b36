"""The push worker: send claimed outbox rows to their target and store what happened.

:func:`push` claims a group of rows (:func:`ledgerlink.sync.outbox.claim`: one object and
action, at most the writer's ``batch_size``), hands their operations to
``connector.write(ops)`` and stores every result in one transaction, together with the
status change and the ``on_result`` callback (which lets the caller update its links table in
that same transaction). It repeats until nothing is due, or until the target must stop.

What each outcome does to a row (one table, from the error class to the action):

=====================================  ==============================================================
outcome                                row becomes
=====================================  ==============================================================
success (or the vendor's replay)       ``done`` with ``remote_id``; handed to ``on_result``
RetryableError, StaleVersionError      ``pending``, ``attempts + 1``, due after a backoff; ``failed``
                                       once ``max_attempts`` is reached
RateLimitedError, QuotaExhaustedError  the same, waiting at least ``retry_after``; the target stops
RecordError                            ``failed`` with the reason, plus a quarantine row (stage push)
ConflictError                          ``failed``, plus a quarantine row whose reason starts
                                       ``conflict:`` (the review queue for writes)
AuthExpiredError, AuthenticationError  ``pending`` again, due now, attempts unchanged; the target
                                       stops (the next run connects afresh)
FatalError, ConfigurationError         ``failed``; the target stops
no result (the connector raised, or    stays ``in_flight`` in its send group with ``attempts + 1``;
gave fewer results than operations)    its lease ends after the backoff, then it is sent again
=====================================  ==============================================================

Exactly once: a row's key is stored before any call, and the same key goes out on every
attempt. A worker that dies after the vendor call and before storing the result leaves its
rows ``in_flight``; when the lease expires another worker claims the same send group and sends
the same operations, which the vendor answers from its idempotency store with the objects it
made the first time. Rows whose outcome is unknown (a transient error of a whole call) keep
their send group for the same reason.

Backoff is exponential (``base * 2 ** (attempts - 1)``, capped), passed through a jitter
function that tests replace, and never shorter than the vendor's ``retry_after``. One delay is
computed per group, so a send group stays due at one time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from ledgerlink.connector.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    FatalError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetryableError,
    StaleVersionError,
)
from ledgerlink.connector.protocol import Connector, WriteResult, WriterSpec
from ledgerlink.faults import crash_point
from ledgerlink.log import get_logger
from ledgerlink.mapping.normalize import quarantine_record
from ledgerlink.metrics import REGISTRY
from ledgerlink.store.db import SQLITE_IMMEDIATE
from ledgerlink.store.models import OutboxStatus, QuarantineStage
from ledgerlink.store.repository import Store
from ledgerlink.store.types import UTCDateTime, utcnow
from ledgerlink.sync.outbox import OUTBOX, ClaimedRow, claim

__all__ = [
    "OUTBOX_WRITES",
    "BackoffPolicy",
    "PushReport",
    "PushedWrite",
    "ResultCallback",
    "equal_jitter",
    "push",
]


OUTBOX_WRITES = Counter(
    "ledgerlink_outbox_writes",
    "Outbox rows sent by the push worker, by outcome.",
    ["target", "outcome"],
    registry=REGISTRY,
)


def equal_jitter(delay: float) -> float:
    """Return a random delay between half of ``delay`` and ``delay`` ("equal jitter")."""
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - spreading retries, not security


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """When to send a row again after a transient failure.

    Attributes:
        base: seconds before the first retry (before jitter).
        cap: longest wait in seconds (before ``retry_after``).
        max_attempts: sends after which a still-failing row becomes ``failed``.
        jitter: maps the computed delay to the one used (tests pass ``lambda d: d``).
    """

    base: float = 2.0
    cap: float = 3600.0
    max_attempts: int = 8
    jitter: Callable[[float], float] = equal_jitter

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Return seconds to wait after the ``attempts``-th failed send.

        Args:
            attempts: sends made so far (1 after the first failure).
            retry_after: what the vendor asked for, if anything; the delay is never shorter.
        """
        computed = self.jitter(min(self.cap, self.base * 2 ** max(attempts - 1, 0)))
        return max(computed, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class PushedWrite:
    """A write that took effect on the target, as handed to the result callback.

    Attributes:
        outbox_id: the outbox row.
        target: the connector that made it.
        object: target object.
        action: create, update, upsert or delete.
        idempotency_key: the row's key.
        entity_kind: kind of the hub entity, if any.
        entity_id: the hub's id of the entity, if any.
        remote_id: the target's id of the object.
        replayed: the vendor answered from its idempotency store (an earlier send made it).
        response: the vendor's record, when the connector returned it.
    """

    outbox_id: int
    target: str
    object: str
    action: str
    idempotency_key: str
    entity_kind: str | None
    entity_id: str | None
    remote_id: str | None
    replayed: bool = False
    response: Mapping[str, Any] | None = None


ResultCallback = Callable[[Connection, Sequence[PushedWrite]], None]
"""Called as ``on_result(conn, writes)`` inside the transaction that marks them done."""


@dataclass(slots=True)
class PushReport:
    """What one :func:`push` run did to the rows of one target."""

    target: str
    batches: int = 0
    sent: int = 0
    done: int = 0
    replayed: int = 0
    retried: int = 0
    failed: int = 0
    quarantined: int = 0
    released: int = 0
    unknown: int = 0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the run neither stopped the target nor left rows failed."""
        return self.stopped is None and self.failed == 0


@dataclass(slots=True)
class _Outcome:
    row: ClaimedRow
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    last_error: str | None
    remote_id: str | None
    quarantine_reason: str | None = None


_STOP_KINDS = (
    FatalError,
    ConfigurationError,
    AuthenticationError,
    RateLimitedError,
    QuotaExhaustedError,
)


def _classify(error: ConnectorError) -> str:
    """Name the action for ``error``: retry, quarantine, conflict, release or fail."""
    if isinstance(error, StaleVersionError | RetryableError):
        return "retry"
    if isinstance(error, ConflictError):
        return "conflict"
    if isinstance(error, RecordError):
        return "quarantine"
    if isinstance(error, AuthenticationError):
        return "release"
    return "fail"


def _describe(error: BaseException) -> str:
    kind = error.kind if isinstance(error, ConnectorError) else type(error).__name__
    return f"{kind}: {error}"


def _plan_outcomes(
    rows: Sequence[ClaimedRow],
    results: Mapping[str, WriteResult],
    failure: BaseException | None,
    backoff: BackoffPolicy,
    now: datetime,
) -> list[_Outcome]:
    """Turn each row's result (or its absence) into the row's new state."""
    retry_rows = [
        row
        for row in rows
        if (result := results.get(row.idempotency_key)) is None
        or (result.error is not None and _classify(result.error) == "retry")
    ]
    retry_after = max(
        (
            results[row.idempotency_key].error.retry_after or 0.0  # type: ignore[union-attr]
            for row in retry_rows
            if row.idempotency_key in results
        ),
        default=0.0,
    )
    due = now
    if retry_rows:
        attempts = max(row.attempts for row in retry_rows) + 1
        due = now + timedelta(seconds=backoff.delay(attempts, retry_after or None))
    outcomes: list[_Outcome] = []
    for row in rows:
        sent = row.attempts + 1
        result = results.get(row.idempotency_key)
        error = None if result is None else result.error
        action = "unknown" if result is None else "done" if error is None else _classify(error)
        reason: str | None
        if result is None:
            reason = _describe(failure) if failure else "the connector gave no result"
        else:
            reason = None if error is None else _describe(error)
        group = row.claimed_by
        state: tuple[OutboxStatus, int, datetime, str | None, datetime | None]
        if action in ("unknown", "retry") and sent >= backoff.max_attempts:
            state = (OutboxStatus.FAILED, sent, now, group, None)
            reason = f"gave up after {sent} attempts: {reason}"
        elif action == "unknown":
            # Sent, maybe: keep the send group in flight until its lease (the backoff) ends.
            state = (OutboxStatus.IN_FLIGHT, sent, due, group, due)
            reason = f"outcome unknown: {reason}"
        elif action == "retry":
            state = (OutboxStatus.PENDING, sent, due, group, None)
        elif action == "release":
            # The call was refused before it did anything: no send group to keep.
            state = (OutboxStatus.PENDING, row.attempts, now, None, None)
        elif action == "done":
            state = (OutboxStatus.DONE, sent, now, group, None)
        else:  # quarantine, conflict, fail
            state = (OutboxStatus.FAILED, sent, now, group, None)
        status, attempts, next_attempt_at, claimed_by, claimed_until = state
        remote_id = row.remote_id
        if result is not None and error is None and result.remote_id:
            remote_id = result.remote_id
        outcomes.append(
            _Outcome(
                row=row,
                status=status.value,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                claimed_by=claimed_by,
                claimed_until=claimed_until,
                last_error=reason,
                remote_id=remote_id,
                quarantine_reason=reason if action in ("quarantine", "conflict") else None,
            )
        )
    return outcomes


_STORE_OUTCOME = (
    update(OUTBOX)
    .where(
        OUTBOX.c.id == bindparam("o_id"),
        OUTBOX.c.claimed_by == bindparam("o_token"),
        OUTBOX.c.status == OutboxStatus.IN_FLIGHT.value,
    )
    .values(
        status=bindparam("o_status"),
        attempts=bindparam("o_attempts"),
        next_attempt_at=bindparam("o_next", type_=UTCDateTime()),
        claimed_by=bindparam("o_claimed_by"),
        claimed_until=bindparam("o_claimed_until", type_=UTCDateTime()),
        last_error=bindparam("o_error"),
        remote_id=bindparam("o_remote_id"),
        updated_at=bindparam("o_now", type_=UTCDateTime()),
    )
)


def _store_outcomes(
    engine: Engine,
    outcomes: Sequence[_Outcome],
    results: Mapping[str, WriteResult],
    on_result: ResultCallback | None,
    now: datetime,
) -> tuple[list[_Outcome], list[PushedWrite]]:
    """Store every outcome, the quarantine rows and the callback's changes in one transaction.

    Returns the outcomes stored and the writes handed to the callback.

    Only rows this claim still holds are touched: when the lease ran out during the call and
    another worker took the rows over, that worker's outcome stands and nothing is stored
    twice (no second quarantine row, no second callback).
    """
    write_engine = (
        engine.execution_options(**{SQLITE_IMMEDIATE: True})
        if engine.dialect.name == "sqlite"
        else engine
    )
    with write_engine.begin() as conn:
        token = outcomes[0].row.claimed_by
        held_query = select(OUTBOX.c.id).where(
            OUTBOX.c.id.in_([o.row.id for o in outcomes]),
            OUTBOX.c.claimed_by == token,
            OUTBOX.c.status == OutboxStatus.IN_FLIGHT.value,
        )
        if engine.dialect.name == "postgresql":
            held_query = held_query.with_for_update()
        held = set(conn.execute(held_query).scalars())
        outcomes = [o for o in outcomes if o.row.id in held]
        if not outcomes:
            return [], []
        done = [
            PushedWrite(
                outbox_id=o.row.id,
                target=o.row.target,
                object=o.row.object,
                action=o.row.action.value,
                idempotency_key=o.row.idempotency_key,
                entity_kind=o.row.entity_kind,
                entity_id=o.row.entity_id,
                remote_id=o.remote_id,
                replayed=results[o.row.idempotency_key].replayed,
                response=results[o.row.idempotency_key].response,
            )
            for o in outcomes
            if o.status == OutboxStatus.DONE.value
        ]
        conn.execute(
            _STORE_OUTCOME,
            [
                {
                    "o_id": o.row.id,
                    "o_token": o.row.claimed_by,
                    "o_status": o.status,
                    "o_attempts": o.attempts,
                    "o_next": o.next_attempt_at,
                    "o_claimed_by": o.claimed_by,
                    "o_claimed_until": o.claimed_until,
                    "o_error": o.last_error,
                    "o_remote_id": o.remote_id,
                    "o_now": now,
                }
                for o in outcomes
            ],
        )
        quarantined = [o for o in outcomes if o.quarantine_reason is not None]
        for o in quarantined:
            # One row per record and stage: a second failure of the same write updates it.
            quarantine_record(
                conn,
                system=o.row.target,
                object_name=o.row.object,
                external_id=o.row.remote_id or o.row.entity_id or o.row.idempotency_key,
                stage=QuarantineStage.PUSH.value,
                reason=o.quarantine_reason or "",
                payload={
                    "outbox_id": o.row.id,
                    "idempotency_key": o.row.idempotency_key,
                    "action": o.row.action.value,
                    "entity_kind": o.row.entity_kind,
                    "entity_id": o.row.entity_id,
                    "payload": dict(o.row.payload),
                },
                now=now,
            )
        if done and on_result is not None:
            on_result(conn, done)
        crash_point("push.store_outcome")
    return outcomes, done


def _stop_reason(results: Mapping[str, WriteResult], failure: BaseException | None) -> str | None:
    errors = [r.error for r in results.values() if r.error is not None]
    if isinstance(failure, ConnectorError):
        errors.append(failure)
    for kind in _STOP_KINDS:
        for error in errors:
            if isinstance(error, kind):
                return _describe(error)
    if failure is not None:
        return _describe(failure)
    return None


def _send(
    connector: Connector,
    rows: Sequence[ClaimedRow],
    specs: Mapping[str, WriterSpec],
) -> tuple[dict[str, WriteResult], Exception | None]:
    """Call ``connector.write`` for ``rows``; return the results and what it raised, if any."""
    ops = []
    for row in rows:
        spec = specs.get(row.object)
        ops.append(row.write_op(spec.external_id_field if spec else None))
    wanted = {op.idempotency_key for op in ops}
    results: dict[str, WriteResult] = {}
    try:
        for result in connector.write(ops):
            if result.idempotency_key in wanted:
                results[result.idempotency_key] = result
            crash_point("push.write_result")
    except Exception as exc:  # noqa: BLE001 - stored as the rows' outcome, re-raised unless mapped
        return results, exc
    return results, None


def push(
    store: Store | Engine,
    connector: Connector,
    *,
    worker_id: str,
    target: str | None = None,
    batch_size: int | None = None,
    lease: timedelta = timedelta(minutes=5),
    backoff: BackoffPolicy | None = None,
    on_result: ResultCallback | None = None,
    max_batches: int | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> PushReport:
    """Send the due outbox rows of one target through ``connector`` and store the outcomes.

    Args:
        store: the store (or its engine).
        connector: a connection to the target system.
        worker_id: who is pushing (host and process), kept on claimed rows.
        target: the rows' target; ``connector.name`` by default.
        batch_size: rows per claim and ``write`` call; by default each object's
            ``WriterSpec.batch_size`` (1 for objects the connector does not declare).
        lease: how long claimed rows stay this worker's; longer than one ``write`` call.
        backoff: retry timing; :class:`BackoffPolicy` defaults when None.
        on_result: called with the rows that took effect, in the transaction marking them
            done (update the links there).
        max_batches: stop after this many claims (None: until nothing is due).
        clock: the current time (timezone-aware UTC).

    Returns:
        The run's counts and, when the target had to stop, why.

    Raises:
        Exception: whatever a connector raised that is not a :class:`ConnectorError`, after
            the rows it concerned were stored as "outcome unknown".
    """
    engine = store.engine if isinstance(store, Store) else store
    name = target or connector.name
    policy = backoff or BackoffPolicy()
    specs = {spec.object: spec for spec in connector.writers()}
    sizes = {obj: batch_size or max(spec.batch_size, 1) for obj, spec in specs.items()}
    report = PushReport(target=name)
    log = get_logger(target=name, worker=worker_id)
    while max_batches is None or report.batches < max_batches:
        rows = claim(
            engine, worker_id, name, batch_size or 1, lease, batch_sizes=sizes, now=clock()
        )
        if not rows:
            break
        report.batches += 1
        report.sent += len(rows)
        crash_point("push.claimed")
        results, failure = _send(connector, rows, specs)
        crash_point("push.sent")
        now = clock()
        outcomes = _plan_outcomes(rows, results, failure, policy, now)
        outcomes, done = _store_outcomes(engine, outcomes, results, on_result, now)
        crash_point("push.stored")
        _count(report, outcomes, done)
        for outcome in outcomes:
            if outcome.last_error and outcome.status != OutboxStatus.DONE.value:
                report.errors.append(f"outbox {outcome.row.id}: {outcome.last_error}")
        log.info(
            "outbox.pushed",
            object=rows[0].object,
            action=rows[0].action.value,
            rows=len(rows),
            resent=rows[0].resent,
            done=len(done),
        )
        if failure is not None and not isinstance(failure, ConnectorError):
            log.error("outbox.connector_raised", error=type(failure).__name__)
            raise failure
        stop = _stop_reason(results, failure)
        if stop is not None:
            report.stopped = stop
            log.warning("outbox.target_stopped", reason=stop)
            break
    return report


def _count(report: PushReport, outcomes: Sequence[_Outcome], done: Sequence[PushedWrite]) -> None:
    report.done += len(done)
    report.replayed += sum(1 for write in done if write.replayed)
    for outcome in outcomes:
        status = outcome.status
        if status == OutboxStatus.FAILED.value:
            report.failed += 1
        elif status == OutboxStatus.IN_FLIGHT.value:
            report.unknown += 1
        elif status == OutboxStatus.PENDING.value and outcome.claimed_by is None:
            report.released += 1
        elif status == OutboxStatus.PENDING.value:
            report.retried += 1
        if outcome.quarantine_reason is not None:
            report.quarantined += 1
        OUTBOX_WRITES.labels(target=report.target, outcome=status).inc()
