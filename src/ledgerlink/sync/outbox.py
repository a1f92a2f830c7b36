"""The outbox: durable write operations for target systems, keyed for exactly-once effect.

The planner computes what each target system must receive and calls :func:`enqueue` in *its
own* transaction, so the plan and its writes commit together or not at all. Each row carries a
deterministic idempotency key (:func:`idempotency_key`): planning the same change twice finds
the key already there (``INSERT .. ON CONFLICT DO NOTHING``) and queues nothing new.

Push workers take rows with :func:`claim`. A claim marks rows ``in_flight`` with a lease
(``claimed_by``, ``claimed_until``) in one transaction: on PostgreSQL the candidate rows are
locked with ``FOR UPDATE SKIP LOCKED``, so concurrent workers (replicas) never claim the same
row; SQLite serialises writers, so its claim transaction starts with ``BEGIN IMMEDIATE``.

Rules a claim follows:

* A row is claimable when it is ``pending`` and due (``next_attempt_at <= now``), or when it is
  ``in_flight`` and its lease expired (the worker holding it died): it is sent again with the
  same key, and the vendor's idempotency answers with the object it made the first time.
* Rows of one entity (same target, ``entity_kind`` and ``entity_id``) go out in order: a row
  waits while an earlier row of its entity is still pending or in flight.
* One claim holds rows of one ``(object, action)``, oldest first, at most ``limit`` of them.
* **Send groups.** The ``claimed_by`` value of a claim (the worker id plus a claim token) stays
  on rows that may have reached the vendor without a stored answer (an expired lease, a
  transient error of the whole call). Such rows are claimed again only together, as the same
  group, in the same order. Vendors whose idempotency covers a whole batch call (QuickBooks'
  ``requestid`` on ``/batch``) then see the very same batch and replay their first answer,
  instead of creating the objects again under a new batch.

Operators act on rows through :func:`list_rows`, :func:`get_row`, :func:`retry_rows` and
:func:`cancel_row` (the ``ledgerlink outbox`` commands).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ledgerlink.connector.protocol import WriteAction, WriteOp
from ledgerlink.faults import crash_point
from ledgerlink.store.db import SQLITE_IMMEDIATE, for_writing
from ledgerlink.store.models import Outbox, OutboxStatus
from ledgerlink.store.repository import canonical_json
from ledgerlink.store.types import utcnow

__all__ = [
    "KEY_MAX_LENGTH",
    "ClaimedRow",
    "OutboxError",
    "OutboxRow",
    "OutboxRowNotFoundError",
    "OutboxStateError",
    "PlannedWrite",
    "cancel_row",
    "claim",
    "count_by_status",
    "enqueue",
    "get_row",
    "idempotency_key",
    "list_rows",
    "retry_rows",
    "row_values",
]

OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
#: Longest key :func:`idempotency_key` returns; fits QuickBooks' 50-character ``requestid``,
#: Xero's 128-character and Stripe's 255-character ``Idempotency-Key``.
KEY_MAX_LENGTH = 47
_DIGEST_CHARS = 26  # 130 bits of sha256 in base32
_PREFIX_CHARS = 10
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_OPEN = (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value)


class OutboxError(Exception):
    """Base of the errors of operator actions on outbox rows."""


class OutboxRowNotFoundError(OutboxError):
    """No outbox row has the given id."""


class OutboxStateError(OutboxError):
    """The row's status does not allow the action (cancel a done row, retry a pending one)."""


def _slug(value: str, length: int) -> str:
    return _NOT_SLUG.sub("", value.lower())[:length] or "x"


def idempotency_key(
    target: str,
    object: str,
    action: WriteAction | str,
    entity_ref: str,
    content: Mapping[str, Any] | str,
    *,
    version: str | int | None = None,
) -> str:
    """Return the deterministic idempotency key of one write.

    The key is ``ll-<target>-<action>-<digest>``: up to 10 letters or digits of the target,
    the action, and 26 characters of lowercase base32 of the sha256 of the canonical JSON of
    ``[target, object, action, entity_ref, content, version]`` (130 bits). It is at most
    :data:`KEY_MAX_LENGTH` (47) characters of ``[a-z0-9-]``, valid for every vendor's key.

    The same write gives the same key, so re-planning it is harmless; a different content
    gives a new key. When a field can go back to an earlier value (A, then B, then A again),
    pass something that only moves forward as ``version`` (the golden record's version, the
    source record's change time) so the third write is not mistaken for the first.

    Args:
        target: the target system (connector name).
        object: the target object (``Invoice``, ``customers``).
        action: create, update, upsert or delete.
        entity_ref: the hub's reference of the entity (golden customer id, invoice ref).
        content: the fields written (a mapping of JSON values) or a content hash.
        version: optional monotonic version of the content.

    Returns:
        The key.

    Raises:
        TypeError: ``content`` holds a value that is not JSON.
    """
    action_name = action.value if isinstance(action, WriteAction) else str(action)
    body = content if isinstance(content, str) else canonical_json(content)
    material = canonical_json(
        {"t": target, "o": object, "a": action_name, "e": entity_ref, "c": body, "v": version}
    )
    digest = hashlib.sha256(material.encode()).digest()
    text = base64.b32encode(digest).decode().lower()[:_DIGEST_CHARS]
    return f"ll-{_slug(target, _PREFIX_CHARS)}-{_slug(action_name, 6)}-{text}"


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """A write the planner wants made: the operation and the entity it belongs to.

    ``op.remote_id`` (for update and delete) is stored in the row's ``remote_id``. For an
    upsert, the external-id value must be in ``op.payload`` under the writer's
    ``external_id_field``: the push worker reads it from there.

    Attributes:
        target: the connector that makes the write.
        op: the operation, with its idempotency key.
        entity_kind: kind of the hub entity (``customer``, ``invoice``), for ordering.
        entity_id: the hub's id of the entity; rows of one entity are sent in order.
    """

    target: str
    op: WriteOp
    entity_kind: str | None = None
    entity_id: str | None = None


def _connection(conn_or_session: Connection | Session) -> Connection:
    if isinstance(conn_or_session, Session):
        return conn_or_session.connection()
    return conn_or_session


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(OUTBOX)
    if dialect == "sqlite":
        return sqlite.insert(OUTBOX)
    raise ValueError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


def row_values(write: PlannedWrite, *, at: datetime) -> dict[str, Any]:
    """The outbox row :func:`enqueue` inserts for ``write`` at ``at`` (pending, no attempt)."""
    op = write.op
    return {
        "target": write.target,
        "object": op.object,
        "action": op.action.value,
        "payload": dict(op.payload),
        "idempotency_key": op.idempotency_key,
        "entity_kind": write.entity_kind,
        "entity_id": write.entity_id,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": at,
        "remote_id": op.remote_id,
        "created_at": at,
        "updated_at": at,
    }


def enqueue(
    conn_or_session: Connection | Session,
    writes: Iterable[PlannedWrite],
    *,
    now: datetime | None = None,
) -> int:
    """Insert outbox rows in the caller's transaction, skipping keys already queued.

    Nothing is committed here: the caller commits the plan and its writes together.

    Args:
        conn_or_session: a connection or ORM session inside the caller's transaction.
        writes: the writes to queue.
        now: creation time (timezone-aware UTC); the current time by default.

    Returns:
        How many rows were inserted (writes whose key already existed are not counted).

    Raises:
        ValueError: an upsert whose ``external_id`` is not a value of its payload, or an
            update or delete without ``remote_id``.
    """
    conn = _connection(conn_or_session)
    at = now or utcnow()
    inserted = 0
    rows: dict[str, dict[str, Any]] = {}
    for write in writes:
        op = write.op
        if (
            op.action is WriteAction.UPSERT
            and op.external_id is not None
            and op.external_id not in {str(v) for v in op.payload.values()}
        ):
            msg = f"upsert {op.idempotency_key}: external_id must be a value of the payload"
            raise ValueError(msg)
        if op.action in (WriteAction.UPDATE, WriteAction.DELETE) and not op.remote_id:
            raise ValueError(f"{op.action.value} {op.idempotency_key}: remote_id is required")
        rows.setdefault(op.idempotency_key, row_values(write, at=at))
        if len(rows) >= _ENQUEUE_CHUNK:
            inserted += _insert_rows(conn, rows)
            rows = {}
    return inserted + _insert_rows(conn, rows)


_ENQUEUE_CHUNK = 1000
"""Rows per insert: a first plan may queue hundreds of thousands of writes, given as a
generator, and holds only one chunk of rows at a time (a key queued by an earlier chunk of
the same call is skipped by the database, like one queued before)."""


def _insert_rows(conn: Connection, rows: dict[str, dict[str, Any]]) -> int:
    if not rows:
        return 0
    stmt = (
        _insert_for(conn.dialect.name)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OUTBOX.c.id)
    )
    result = conn.execute(stmt, list(rows.values()))
    return len(result.fetchall())


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """An outbox row claimed by a worker, ready to send.

    Attributes:
        id: the row id.
        target: the connector that makes the write.
        object: target object.
        action: create, update, upsert or delete.
        payload: fields to write.
        idempotency_key: the row's key, sent to the vendor on every attempt.
        remote_id: the target's id (known for update and delete).
        entity_kind: kind of the hub entity, if any.
        entity_id: the hub's id of the entity, if any.
        attempts: sends made before this one.
        claimed_by: the claim token (worker id and claim), the row's send group.
        claimed_until: end of the lease.
        resent: true when the row may already have reached the vendor (it belongs to a send
            group from an earlier claim).
    """

    id: int
    target: str
    object: str
    action: WriteAction
    payload: Mapping[str, Any]
    idempotency_key: str
    remote_id: str | None
    entity_kind: str | None
    entity_id: str | None
    attempts: int
    claimed_by: str
    claimed_until: datetime
    resent: bool

    def write_op(self, external_id_field: str | None = None) -> WriteOp:
        """Return the :class:`WriteOp` to hand the connector.

        Args:
            external_id_field: the writer's external-id field; an upsert takes its
                ``external_id`` from that field of the payload.
        """
        external_id = None
        if self.action is WriteAction.UPSERT and external_id_field:
            value = self.payload.get(external_id_field)
            external_id = None if value is None else str(value)
        return WriteOp(
            idempotency_key=self.idempotency_key,
            object=self.object,
            action=self.action,
            payload=self.payload,
            remote_id=self.remote_id,
            external_id=external_id,
        )


def _claimable(row: Any, target: str, now: datetime) -> ColumnElement[bool]:
    """Due pending rows and expired in-flight rows of ``target`` with no earlier open row."""
    earlier = OUTBOX.alias("earlier")
    blocked = exists().where(
        earlier.c.target == row.c.target,
        earlier.c.entity_kind == row.c.entity_kind,
        earlier.c.entity_id == row.c.entity_id,
        earlier.c.id < row.c.id,
        earlier.c.status.in_(_OPEN),
    )
    return and_(
        row.c.target == target,
        # Implied by the terms below, but written as the partial index ``ix_outbox_open`` says
        # it (literal values), so that SQLite may use that index: without it, every claim
        # walks past all the rows already done and a long push grows quadratic.
        row.c.status.in_([literal_column(f"'{status}'") for status in _OPEN]),
        or_(
            and_(
                row.c.status == OutboxStatus.PENDING.value,
                row.c.next_attempt_at <= now,
            ),
            and_(
                row.c.status == OutboxStatus.IN_FLIGHT.value,
                row.c.claimed_until <= now,
            ),
        ),
        ~blocked,
    )


def _claimed_row(row: RowMapping) -> ClaimedRow:
    return ClaimedRow(
        id=row["id"],
        target=row["target"],
        object=row["object"],
        action=WriteAction(row["action"]),
        payload=row["payload"] or {},
        idempotency_key=row["idempotency_key"],
        remote_id=row["remote_id"],
        entity_kind=row["entity_kind"],
        entity_id=row["entity_id"],
        attempts=row["attempts"],
        claimed_by=row["claimed_by"],
        claimed_until=row["claimed_until"],
        resent=False,
    )


def claim(
    engine: Engine,
    worker_id: str,
    target: str,
    limit: int,
    lease: timedelta,
    *,
    batch_sizes: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> list[ClaimedRow]:
    """Claim the next group of rows of ``target`` for ``worker_id``, in one transaction.

    The oldest claimable row chooses the group: its earlier send group when it has one,
    otherwise the unsent rows of its ``(object, action)``, oldest first. The rows become
    ``in_flight`` with ``claimed_by`` set to ``worker_id`` plus a fresh claim token, and
    ``claimed_until = now + lease``.

    Args:
        engine: the store's engine.
        worker_id: who claims (host, process); kept in ``claimed_by`` for operators.
        target: the connector whose rows to claim.
        limit: at most this many unsent rows in one claim.
        lease: how long the rows stay the worker's; after that another worker may resend them.
        batch_sizes: per-object limits (the connector's ``WriterSpec.batch_size``), used
            instead of ``limit`` for the objects they name.
        now: the current time (timezone-aware UTC); the clock by default.

    Returns:
        The claimed rows in id order (empty when nothing is due).

    Raises:
        ValueError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    at = now or utcnow()
    token = f"{worker_id}#{secrets.token_hex(4)}"
    until = at + lease
    postgres = engine.dialect.name == "postgresql"
    write_engine = engine if postgres else engine.execution_options(**{SQLITE_IMMEDIATE: True})
    # A race lost to another worker between the two statements leaves nothing to claim in
    # the chosen group: try the next oldest row a few times before reporting "nothing due".
    with write_engine.begin() as conn:
        for _ in range(3):
            first_query = (
                select(
                    OUTBOX.c.id,
                    OUTBOX.c.object,
                    OUTBOX.c.action,
                    OUTBOX.c.claimed_by,
                )
                .where(_claimable(OUTBOX, target, at))
                .order_by(OUTBOX.c.id)
                .limit(1)
            )
            if postgres:
                first_query = first_query.with_for_update(skip_locked=True, of=OUTBOX)
            first = conn.execute(first_query).mappings().first()
            if first is None:
                return []
            group = first["claimed_by"]
            size = (batch_sizes or {}).get(first["object"], limit)
            # An alias, so the subquery is not correlated with the UPDATE's own table.
            cand = OUTBOX.alias("cand")
            members = (
                select(cand.c.id)
                .where(
                    _claimable(cand, target, at),
                    cand.c.object == first["object"],
                    cand.c.action == first["action"],
                    cand.c.claimed_by.is_(None) if group is None else cand.c.claimed_by == group,
                )
                .order_by(cand.c.id)
            )
            if group is None:
                members = members.limit(max(size, 1))
            if postgres:
                members = members.with_for_update(skip_locked=True, of=cand)
            stmt = (
                update(OUTBOX)
                .values(
                    status=OutboxStatus.IN_FLIGHT.value,
                    claimed_by=token,
                    claimed_until=until,
                    updated_at=at,
                )
                .returning(*OUTBOX.c)
            )
            if postgres:
                picked = members.cte("picked")
                stmt = stmt.where(OUTBOX.c.id == picked.c.id)
            else:
                stmt = stmt.where(OUTBOX.c.id.in_(members))
            rows = conn.execute(stmt).mappings().all()
            if rows:
                claimed = sorted((_claimed_row(row) for row in rows), key=lambda r: r.id)
                if group is not None:
                    claimed = [_resent(row) for row in claimed]
                crash_point("outbox.claim")
                return claimed
    return []


def _resent(row: ClaimedRow) -> ClaimedRow:
    return replace(row, resent=True)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as operators see it."""

    id: int
    target: str
    object: str
    action: str
    status: str
    idempotency_key: str
    payload: Mapping[str, Any]
    entity_kind: str | None
    entity_id: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    remote_id: str | None
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None


def _outbox_row(row: RowMapping) -> OutboxRow:
    return OutboxRow(**{name: row[name] for name in OutboxRow.__slots__})


def list_rows(
    engine: Engine,
    *,
    status: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[OutboxRow]:
    """Return outbox rows, newest first.

    Args:
        engine: the store's engine.
        status: only rows with this status.
        target: only rows of this target.
        limit: at most this many rows.

    Raises:
        ValueError: ``status`` is not an outbox status.
    """
    query = select(OUTBOX).order_by(OUTBOX.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(OUTBOX.c.status == OutboxStatus(status).value)
    if target is not None:
        query = query.where(OUTBOX.c.target == target)
    with engine.connect() as conn:
        return [_outbox_row(row) for row in conn.execute(query).mappings()]


def count_by_status(engine: Engine, *, target: str | None = None) -> dict[str, int]:
    """Return how many rows have each status (statuses without rows are absent)."""
    query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
    if target is not None:
        query = query.where(OUTBOX.c.target == target)
    with engine.connect() as conn:
        return {status: int(count) for status, count in conn.execute(query).all()}


def get_row(engine: Engine, row_id: int) -> OutboxRow:
    """Return the outbox row ``row_id``.

    Raises:
        OutboxRowNotFoundError: no such row.
    """
    with engine.connect() as conn:
        row = conn.execute(select(OUTBOX).where(OUTBOX.c.id == row_id)).mappings().first()
    if row is None:
        raise OutboxRowNotFoundError(f"no outbox row {row_id}")
    return _outbox_row(row)


def retry_rows(
    engine: Engine,
    ids: Sequence[int] | None = None,
    *,
    all_failed: bool = False,
    target: str | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Make failed (or cancelled) rows pending again, due now, with their attempts reset.

    The key stays the same, so a retried write that had in fact reached the vendor is
    answered with the object made the first time.

    Args:
        engine: the store's engine.
        ids: rows to retry; each must be failed or cancelled.
        all_failed: retry every failed row instead (of ``target`` when given).
        target: with ``all_failed``, only this target's rows.
        now: the current time (timezone-aware UTC).

    Returns:
        The ids made pending.

    Raises:
        ValueError: neither or both of ``ids`` and ``all_failed`` given.
        OutboxRowNotFoundError: an id does not exist (nothing is changed).
        OutboxStateError: an id is pending, in flight or done (nothing is changed).
    """
    if bool(ids) == all_failed:
        raise ValueError("give row ids or all_failed, not both")
    at = now or utcnow()
    retryable = (OutboxStatus.FAILED.value, OutboxStatus.CANCELLED.value)
    with for_writing(engine).begin() as conn:
        if all_failed:
            query = select(OUTBOX.c.id).where(OUTBOX.c.status == OutboxStatus.FAILED.value)
            if target is not None:
                query = query.where(OUTBOX.c.target == target)
            chosen = list(conn.execute(query.order_by(OUTBOX.c.id)).scalars())
        else:
            wanted = list(dict.fromkeys(ids or ()))
            found: dict[int, str] = dict(
                conn.execute(
                    select(OUTBOX.c.id, OUTBOX.c.status).where(OUTBOX.c.id.in_(wanted))
                ).all()
            )
            for row_id in wanted:
                if row_id not in found:
                    raise OutboxRowNotFoundError(f"no outbox row {row_id}")
                if found[row_id] not in retryable:
                    raise OutboxStateError(
                        f"outbox row {row_id} is {found[row_id]}; only failed or cancelled "
                        "rows can be retried"
                    )
            chosen = wanted
        if chosen:
            conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_(chosen), OUTBOX.c.status.in_(retryable))
                .values(
                    status=OutboxStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=at,
                    claimed_until=None,
                    updated_at=at,
                )
            )
    return chosen


def cancel_row(engine: Engine, row_id: int, *, now: datetime | None = None) -> OutboxRow:
    """Cancel a pending or failed row: it will not be sent (``retry`` brings it back).

    An in-flight row cannot be cancelled: it may be reaching the vendor right now.

    Returns:
        The cancelled row.

    Raises:
        OutboxRowNotFoundError: no such row.
        OutboxStateError: the row is in flight, done or already cancelled.
    """
    at = now or utcnow()
    cancellable = (OutboxStatus.PENDING.value, OutboxStatus.FAILED.value)
    with for_writing(engine).begin() as conn:
        result = conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row_id, OUTBOX.c.status.in_(cancellable))
            .values(status=OutboxStatus.CANCELLED.value, claimed_until=None, updated_at=at)
        )
        if result.rowcount == 0:
            status = conn.execute(
                select(OUTBOX.c.status).where(OUTBOX.c.id == row_id)
            ).scalar_one_or_none()
            if status is None:
                raise OutboxRowNotFoundError(f"no outbox row {row_id}")
            raise OutboxStateError(
                f"outbox row {row_id} is {status}; only pending or failed rows can be cancelled"
            )
    return get_row(engine, row_id)
