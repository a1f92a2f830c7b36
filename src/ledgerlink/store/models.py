"""The store's tables, as SQLModel classes (SQLAlchemy 2 underneath).

The initial Alembic migration (``migrations/versions/0001_initial.py``) creates exactly these
tables; a test compares this metadata with the migrated schema on SQLite and PostgreSQL.

* ``source_record``: raw records landed from each system, keyed by (system, object,
  external_id), with the sha256 of their canonical JSON so that an unchanged record costs
  nothing. ``first_seen_at`` is the first landing; ``changed_at`` the last landing that changed
  the content or the deleted state; ``last_seen_at`` the last landing that wrote the record as
  live (a tombstone leaves it alone, so for a deleted record it says when the source last showed
  it alive). Re-reading an unchanged record writes nothing and moves none of them.
* ``sync_state``: the cursor per (connector, stream), saved with the page it covers.
* ``customer``, ``customer_link``, ``match_decision``: the golden record, the links of source
  records to it, and the human decisions that automation never overrides.
* ``outbox``: write operations for target systems, each with a unique idempotency key.
* ``quarantine``: records that failed a stage, with the reason. ``audit_log``: who did what.
* ``credential``: secrets a connector rotates, encrypted (see :mod:`ledgerlink.store.secrets`).
* ``api_budget``: vendor API calls made in the current window per (connector, budget), by
  every replica, and the usage the vendor last reported (see :mod:`ledgerlink.daemon.quota`).

Every timestamp is timezone-aware UTC (:class:`~ledgerlink.store.types.UTCDateTime`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from ledgerlink.store.types import BIG_ID, JSON_TYPE, UTCDateTime, utcnow

__all__ = [
    "ApiBudget",
    "AuditLog",
    "Credential",
    "Customer",
    "CustomerLink",
    "DecisionKind",
    "LinkMethod",
    "LinkStatus",
    "MatchDecision",
    "Outbox",
    "OutboxStatus",
    "Quarantine",
    "QuarantineStage",
    "SourceRecord",
    "SyncState",
]

_NAME = 64  # systems, objects, connectors, streams, statuses
_EXTERNAL_ID = 255  # vendor ids: Salesforce 18, Stripe ~30, QuickBooks numeric


class LinkMethod(enum.StrEnum):
    """How a source record was linked to a customer."""

    XREF = "xref"
    PROBABILISTIC = "probabilistic"
    MANUAL = "manual"
    CREATED = "created"


class LinkStatus(enum.StrEnum):
    """Whether a link is in effect, waiting for review, or split off by a person."""

    LINKED = "linked"
    REVIEW = "review"
    SPLIT = "split"


class DecisionKind(enum.StrEnum):
    """A human match decision."""

    LINK = "link"
    SPLIT = "split"
    NEVER_LINK = "never_link"


class OutboxStatus(enum.StrEnum):
    """Life cycle of an outbox row."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QuarantineStage(enum.StrEnum):
    """The pipeline stage at which a record was quarantined."""

    MAP = "map"
    MATCH = "match"
    PLAN = "plan"
    PUSH = "push"


def _in(column: str, enum_type: type[enum.StrEnum], name: str) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return CheckConstraint(f"{column} IN ({values})", name=name)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    column: Column[datetime] = Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _json(*, nullable: bool = False) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON_TYPE, nullable=nullable))


def _str(length: int, *, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(String(length), nullable=nullable, index=index))


def _text(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(Text(), nullable=nullable))


def _big_id() -> Any:
    return Field(default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True))


class SourceRecord(SQLModel, table=True):
    """A raw record landed from a system (or its tombstone, with the last payload kept)."""

    __tablename__ = "source_record"
    __table_args__ = (
        UniqueConstraint("system", "object", "external_id", name="uq_source_record_key"),
        Index("ix_source_record_changed", "system", "object", "changed_at"),
    )

    id: int | None = _big_id()
    system: str = _str(_NAME)
    object: str = _str(_NAME)
    external_id: str = _str(_EXTERNAL_ID)
    # ``json`` on PostgreSQL, not ``jsonb``: the canonical text is stored as landed (validated,
    # not parsed into a tree), which more than halves the server's work of a bulk load.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON(), nullable=False))
    content_hash: str = _str(64)
    first_seen_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    changed_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)
    cursor_value: str | None = _str(_EXTERNAL_ID, nullable=True)


class SyncState(SQLModel, table=True):
    """The cursor of one stream of one connector, and how its last run went."""

    __tablename__ = "sync_state"

    connector: str = Field(sa_column=Column(String(_NAME), primary_key=True))
    stream: str = Field(sa_column=Column(String(_NAME), primary_key=True))
    cursor: dict[str, Any] = _json()
    updated_at: datetime = _ts()
    last_success_at: datetime | None = _ts(nullable=True)
    last_error: str | None = _text()


class Customer(SQLModel, table=True):
    """The golden customer record: surviving field values and where each came from."""

    __tablename__ = "customer"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    display_name: str = Field(default="", sa_column=Column(String(_EXTERNAL_ID), nullable=False))
    fields: dict[str, Any] = _json()
    lineage: dict[str, Any] = _json()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    version: int = Field(default=1, sa_column=Column(Integer(), nullable=False))


class CustomerLink(SQLModel, table=True):
    """A source record linked to a customer, with the score and reasons of the match."""

    __tablename__ = "customer_link"
    __table_args__ = (
        UniqueConstraint("system", "object", "external_id", name="uq_customer_link_ref"),
        # The cycle summary's counts of links by system and status, from the index alone.
        Index("ix_customer_link_system_status", "system", "status"),
        _in("method", LinkMethod, "ck_customer_link_method"),
        _in("status", LinkStatus, "ck_customer_link_status"),
    )

    id: int | None = _big_id()
    system: str = _str(_NAME)
    object: str = _str(_NAME)
    external_id: str = _str(_EXTERNAL_ID)
    customer_id: str = Field(
        sa_column=Column(
            String(36),
            ForeignKey("customer.id", name="fk_customer_link_customer"),
            nullable=False,
            index=True,
        )
    )
    score: float = Field(default=0.0, sa_column=Column(Float(), nullable=False))
    method: str = _str(16)
    status: str = _str(16)
    reasons: list[Any] = Field(default_factory=list, sa_column=Column(JSON_TYPE, nullable=False))
    content_hash: str | None = _str(64, nullable=True)
    """Digest of the record's company details (name, e-mails, phones, website, address,
    tax id) as last matched."""
    content_changed_at: datetime | None = _ts(nullable=True)
    """The record's modification time when those details last changed: survivorship's
    recency, which a write of other fields (the hub's open balance) does not move."""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class MatchDecision(SQLModel, table=True):
    """A person's decision about two records, or a record and a customer; revocable."""

    __tablename__ = "match_decision"
    __table_args__ = (
        Index("ix_match_decision_left", "left_system", "left_object", "left_external_id"),
        Index("ix_match_decision_right", "right_system", "right_object", "right_external_id"),
        _in("decision", DecisionKind, "ck_match_decision_decision"),
    )

    id: int | None = _big_id()
    left_system: str = _str(_NAME)
    left_object: str = _str(_NAME)
    left_external_id: str = _str(_EXTERNAL_ID)
    right_system: str | None = _str(_NAME, nullable=True)
    right_object: str | None = _str(_NAME, nullable=True)
    right_external_id: str | None = _str(_EXTERNAL_ID, nullable=True)
    customer_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(36),
            ForeignKey("customer.id", name="fk_match_decision_customer"),
            nullable=True,
            index=True,
        ),
    )
    decision: str = _str(16)
    reason: str = Field(default="", sa_column=Column(Text(), nullable=False))
    actor: str = _str(_EXTERNAL_ID)
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    revoked_by: str | None = _str(_EXTERNAL_ID, nullable=True)


_OPEN_OUTBOX = text("status IN ('pending', 'in_flight')")


class Outbox(SQLModel, table=True):
    """One write to a target system, persisted with its idempotency key before any call."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_outbox_entity", "entity_kind", "entity_id"),
        # A plan's read of every create of its kind, and of the updates a target refused,
        # without walking every update ever sent (they grow with each cycle, the creates
        # with the customers).
        Index("ix_outbox_kind_action", "entity_kind", "action", "status"),
        # The rows still to push, by target: what the push worker scans.
        Index(
            "ix_outbox_open",
            "target",
            "id",
            postgresql_where=_OPEN_OUTBOX,
            sqlite_where=_OPEN_OUTBOX,
        ),
        _in("status", OutboxStatus, "ck_outbox_status"),
    )

    id: int | None = _big_id()
    target: str = _str(_NAME)
    object: str = _str(_NAME)
    action: str = _str(16)
    payload: dict[str, Any] = _json()
    idempotency_key: str = _str(_EXTERNAL_ID)
    entity_kind: str | None = _str(_NAME, nullable=True)
    entity_id: str | None = _str(_EXTERNAL_ID, nullable=True)
    status: str = Field(
        default=OutboxStatus.PENDING.value, sa_column=Column(String(16), nullable=False)
    )
    attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    next_attempt_at: datetime = _ts()
    last_error: str | None = _text()
    remote_id: str | None = _str(_EXTERNAL_ID, nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    claimed_by: str | None = _str(_EXTERNAL_ID, nullable=True)
    claimed_until: datetime | None = _ts(nullable=True)


class Quarantine(SQLModel, table=True):
    """A record that failed a stage, kept with the reason until someone resolves it."""

    __tablename__ = "quarantine"
    __table_args__ = (
        # One row per record and stage: two replicas quarantining the same record at once
        # upsert the same row (ON CONFLICT) instead of racing a duplicate.
        Index("uq_quarantine_ref_stage", "system", "object", "external_id", "stage", unique=True),
        _in("stage", QuarantineStage, "ck_quarantine_stage"),
    )

    id: int | None = _big_id()
    system: str = _str(_NAME)
    object: str = _str(_NAME)
    external_id: str = _str(_EXTERNAL_ID)
    stage: str = _str(16)
    reason: str = Field(default="", sa_column=Column(Text(), nullable=False))
    payload: dict[str, Any] = _json()
    created_at: datetime = _ts()
    resolved_at: datetime | None = _ts(nullable=True)
    updated_at: datetime | None = _ts(nullable=True)


class AuditLog(SQLModel, table=True):
    """Who did what to which subject, and when."""

    __tablename__ = "audit_log"

    id: int | None = _big_id()
    at: datetime = _ts(index=True)
    actor: str = _str(_EXTERNAL_ID)
    action: str = _str(_NAME)
    subject: str = _str(_EXTERNAL_ID)
    details: dict[str, Any] = _json()


class Credential(SQLModel, table=True):
    """A secret stored encrypted (a Fernet token); never the plain value."""

    __tablename__ = "credential"

    name: str = Field(sa_column=Column(String(_EXTERNAL_ID), primary_key=True))
    ciphertext: str = Field(sa_column=Column(Text(), nullable=False))
    updated_at: datetime = _ts()


class ApiBudget(SQLModel, table=True):
    """Vendor API calls counted in one budget's current window, shared by every replica."""

    __tablename__ = "api_budget"

    connector: str = Field(sa_column=Column(String(_NAME), primary_key=True))
    budget: str = Field(sa_column=Column(String(_NAME), primary_key=True))
    window_start: datetime = _ts()
    window_seconds: int = Field(default=60, sa_column=Column(Integer(), nullable=False))
    used: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    vendor_used: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    vendor_limit: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    updated_at: datetime = _ts()
